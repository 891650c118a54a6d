use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::ConfigError;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn no_jitter() -> RetryPolicy {
    RetryPolicy::builder().jitter(false).build().unwrap()
}

#[test]
fn default_timeline_without_jitter_is_exactly_100_200_400_800_ms() {
    let delays: Vec<_> = no_jitter().schedule().collect();
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800)]);
}

#[test]
fn default_timeline_with_jitter_stays_within_ten_percent() {
    for seed in 0..500 {
        let policy = RetryPolicy::builder().seed(seed).build().unwrap();
        let delays: Vec<_> = policy.schedule().collect();
        assert_eq!(delays.len(), 4);
        for (delay, nominal) in delays.iter().zip([0.1, 0.2, 0.4, 0.8]) {
            let secs = delay.as_secs_f64();
            assert!(
                (nominal * 0.9..=nominal * 1.1).contains(&secs),
                "seed {seed}: {secs} not within 10% of {nominal}"
            );
        }
    }
}

#[test]
fn jitter_actually_varies_the_delays() {
    let first: Vec<_> = (0..20)
        .map(|seed| {
            RetryPolicy::builder()
                .seed(seed)
                .build()
                .unwrap()
                .schedule()
                .next()
        })
        .collect();
    let distinct: std::collections::HashSet<_> = first.iter().collect();
    assert!(distinct.len() > 10, "jitter produced {distinct:?}");
}

#[test]
fn same_seed_gives_the_same_schedule() {
    let policy = RetryPolicy::builder()
        .seed(7)
        .max_attempts(10)
        .build()
        .unwrap();
    let a: Vec<_> = policy.schedule().collect();
    let b: Vec<_> = policy.schedule().collect();
    assert_eq!(a, b);
}

#[test]
fn delays_saturate_at_max_delay() {
    let policy = RetryPolicy::builder()
        .jitter(false)
        .max_attempts(20)
        .max_delay(Duration::from_secs(1))
        .build()
        .unwrap();
    let delays: Vec<_> = policy.schedule().collect();
    assert_eq!(delays.len(), 19);
    assert_eq!(&delays[..5], [ms(100), ms(200), ms(400), ms(800), ms(1000)]);
    assert!(delays[4..].iter().all(|d| *d == ms(1000)));
}

#[test]
fn huge_retry_numbers_neither_overflow_nor_panic() {
    let policy = RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .exponential_base(1e300)
        .build()
        .unwrap();
    assert_eq!(policy.base_delay(u32::MAX), policy.max_delay());
    assert_eq!(policy.base_delay(0), ms(100));
    let mut schedule = policy.schedule();
    for _ in 0..10_000 {
        assert!(schedule.next_delay() <= policy.max_delay());
    }
}

#[test]
fn full_jitter_stays_between_zero_and_the_delay() {
    let policy = RetryPolicy::builder()
        .jitter_strategy(JitterStrategy::Full)
        .seed(3)
        .max_attempts(6)
        .build()
        .unwrap();
    for (retry, delay) in (1..).zip(policy.schedule()) {
        assert!(delay <= policy.base_delay(retry));
    }
}

#[test]
fn equal_jitter_keeps_at_least_half_the_delay() {
    let policy = RetryPolicy::builder()
        .jitter_strategy(JitterStrategy::Equal)
        .seed(4)
        .max_attempts(6)
        .build()
        .unwrap();
    for (retry, delay) in (1..).zip(policy.schedule()) {
        let base = policy.base_delay(retry);
        assert!(delay >= base / 2 && delay <= base, "{delay:?} vs {base:?}");
    }
}

#[test]
fn decorrelated_jitter_stays_between_initial_and_three_times_the_previous() {
    let policy = RetryPolicy::builder()
        .jitter_strategy(JitterStrategy::Decorrelated)
        .max_delay(Duration::from_secs(5))
        .seed(5)
        .max_attempts(30)
        .build()
        .unwrap();
    let mut previous = policy.initial_delay();
    for delay in policy.schedule() {
        assert!(delay >= policy.initial_delay());
        assert!(delay <= (previous * 3).min(policy.max_delay()));
        previous = delay;
    }
}

#[test]
fn jitter_off_ignores_the_strategy() {
    let policy = RetryPolicy::builder()
        .jitter(false)
        .jitter_strategy(JitterStrategy::Full)
        .build()
        .unwrap();
    assert_eq!(policy.jitter(), Jitter::None);
}

fn rejected(config: RetryConfig) -> ConfigError {
    config.build().expect_err("the setting should be rejected")
}

const DURATION_SYNTAX: &str =
    "seconds (0.5) or a number with a unit (500ms, 2s, 1m, 1h), up to 1 year (31536000 s)";

#[test]
fn zero_attempts_are_rejected_naming_the_builder_method() {
    let error = rejected(RetryPolicy::builder().max_attempts(0));
    assert_eq!(error.setting(), "`max_attempts`");
    assert_eq!(error.place(), Some("RetryConfig::max_attempts"));
    assert_eq!(
        error.to_string(),
        "invalid `max_attempts` = 0 (RetryConfig::max_attempts): expected an integer from 1 to 4294967295"
    );
}

#[test]
fn exponential_base_below_one_is_rejected() {
    let error = rejected(RetryPolicy::builder().exponential_base(0.5));
    assert_eq!(
        error.to_string(),
        "invalid `exponential_base` = 0.5 (RetryConfig::exponential_base): expected a finite number ≥ 1"
    );
}

#[test]
fn nan_and_infinite_numbers_are_rejected() {
    let error = rejected(RetryPolicy::builder().exponential_base(f64::NAN));
    assert_eq!(error.setting(), "`exponential_base`");
    let error = rejected(RetryPolicy::builder().exponential_base(f64::INFINITY));
    assert_eq!(error.value(), Some("inf"));
    let error = rejected(RetryPolicy::builder().jitter_factor(f64::NAN));
    assert_eq!(error.setting(), "`jitter_factor`");
}

#[test]
fn durations_longer_than_a_year_are_rejected_from_code_too() {
    let error = rejected(RetryPolicy::builder().max_delay(Duration::MAX));
    assert_eq!(error.setting(), "`max_delay`");
    assert_eq!(
        error.expected(),
        format!("a duration ≥ 0: {DURATION_SYNTAX}")
    );
    let error = rejected(RetryPolicy::builder().max_elapsed(MAX_DURATION + ms(1)));
    assert_eq!(error.setting(), "`max_elapsed`");
    assert!(
        RetryPolicy::builder()
            .max_elapsed(MAX_DURATION)
            .build()
            .is_ok()
    );
}

#[test]
fn with_max_elapsed_caps_at_the_maximum_duration() {
    let policy = RetryPolicy::default().with_max_elapsed(Some(Duration::MAX));
    assert_eq!(policy.max_elapsed(), Some(MAX_DURATION));
}

#[test]
fn jitter_factor_outside_zero_to_one_is_rejected() {
    for factor in [-0.1, 1.5] {
        let error = rejected(RetryPolicy::builder().jitter_factor(factor));
        assert_eq!(error.setting(), "`jitter_factor`");
        assert_eq!(error.expected(), "a number in [0, 1]");
    }
}

#[test]
fn max_delay_below_initial_delay_set_in_code_names_both() {
    let error = rejected(
        RetryPolicy::builder()
            .initial_delay(Duration::from_secs(2))
            .max_delay(Duration::from_secs(1)),
    );
    assert_eq!(
        error.to_string(),
        "invalid `max_delay` = 1 s (RetryConfig::max_delay): expected a duration ≥ the initial \
         delay, 2 s from `initial_delay` (RetryConfig::initial_delay)"
    );
}

#[test]
fn an_unset_max_delay_follows_a_larger_initial_delay_and_vice_versa() {
    let policy = RetryPolicy::builder()
        .initial_delay(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(policy.max_delay(), Duration::from_secs(60));
    let policy = RetryPolicy::builder().max_delay(ms(50)).build().unwrap();
    assert_eq!(policy.initial_delay(), ms(50));
}

#[test]
fn defaults_give_way_to_a_conflicting_setting_from_a_later_layer() {
    let defaults = RetryPolicy::builder()
        .max_delay(Duration::from_secs(1))
        .as_defaults();
    let policy = defaults
        .clone()
        .merge(RetryPolicy::builder().initial_delay(Duration::from_secs(2)))
        .build()
        .unwrap();
    assert_eq!(policy.max_delay(), Duration::from_secs(2));
    let defaults = RetryPolicy::builder()
        .initial_delay(Duration::from_secs(2))
        .as_defaults();
    let policy = defaults
        .merge(RetryPolicy::builder().max_delay(Duration::from_secs(1)))
        .build()
        .unwrap();
    assert_eq!(policy.initial_delay(), Duration::from_secs(1));
}

#[test]
fn a_conflict_across_layers_is_blamed_on_the_later_layer_naming_both() {
    let file: RetryConfig = toml::from_str("initial_delay = 2").unwrap();
    let env = from_vars_config(&[("DB_RETRY_MAX_DELAY", "1")]).unwrap();
    let error = rejected(file.clone().merge(env));
    assert_eq!(
        error.to_string(),
        "invalid DB_RETRY_MAX_DELAY = 1 s: expected a duration ≥ the initial delay, 2 s from \
         `initial_delay` (configuration)"
    );
    let code = RetryPolicy::builder().max_delay(ms(250));
    let env = from_vars_config(&[("DB_RETRY_INITIAL_DELAY", "2")]).unwrap();
    assert_eq!(
        rejected(code.merge(env)).to_string(),
        "invalid DB_RETRY_INITIAL_DELAY = 2 s: expected a duration ≤ the maximum delay, 250 ms \
         from `max_delay` (RetryConfig::max_delay)"
    );
}

#[test]
fn config_file_values_out_of_range_are_rejected_when_read() {
    let error = toml::from_str::<RetryConfig>("initial_delay = -1.0").unwrap_err();
    assert_eq!(
        error.message(),
        format!(
            "invalid `initial_delay` = -1 s (configuration): expected a duration ≥ 0: {DURATION_SYNTAX}"
        )
    );
}

#[test]
fn zero_deadline_and_zero_attempt_timeout_are_rejected() {
    let error = rejected(RetryPolicy::builder().max_elapsed(Duration::ZERO));
    assert_eq!(error.setting(), "`max_elapsed`");
    let error = rejected(RetryPolicy::builder().attempt_timeout(Duration::ZERO));
    assert_eq!(error.setting(), "`attempt_timeout`");
}

#[test]
fn config_file_uses_the_builder_names_and_takes_numbers_or_durations() {
    let config: RetryConfig = toml::from_str(
        "max_attempts = 3\ninitial_delay = \"50ms\"\nmax_delay = 1\nexponential_base = 3\n\
         jitter = true\njitter_factor = 0.2\njitter_strategy = \"equal\"\nmax_elapsed = \"10s\"\n\
         attempt_timeout = 2.5",
    )
    .unwrap();
    let policy = config.build().unwrap();
    assert_eq!(policy.max_attempts(), 3);
    assert_eq!(policy.initial_delay(), ms(50));
    assert_eq!(policy.max_delay(), Duration::from_secs(1));
    assert_eq!(policy.exponential_base(), 3.0);
    assert_eq!(policy.jitter(), Jitter::Equal);
    assert_eq!(policy.max_elapsed(), Some(Duration::from_secs(10)));
    assert_eq!(policy.attempt_timeout(), Some(ms(2500)));
}

#[test]
fn unknown_config_keys_are_rejected_naming_the_closest_one() {
    let typo = toml::from_str::<RetryConfig>("max_atempts = 3").unwrap_err();
    assert_eq!(
        typo.message(),
        "unknown key `max_atempts` (configuration): did you mean max_attempts? (known: \
         max_attempts, initial_delay, max_delay, exponential_base, jitter, jitter_factor, \
         jitter_strategy, max_elapsed, attempt_timeout, seed)"
    );
}

#[test]
fn a_wrong_type_in_a_config_section_is_described_not_quoted() {
    for text in [
        r#"max_delay = "postgres://app:TOPSECRET@h/d""#,
        r#"max_attempts = "postgres://app:TOPSECRET@h/d""#,
        r#"jitter = ["postgres://app:TOPSECRET@h/d"]"#,
        r#"seed = { url = "postgres://app:TOPSECRET@h/d" }"#,
        r#"jitter_strategy = "TOPSECRET""#,
    ] {
        let error = toml::from_str::<RetryConfig>(text).unwrap_err();
        assert!(
            !error.message().contains("TOPSECRET"),
            "{}",
            error.message()
        );
    }
    let json = r#"{"max_delay": "postgres://app:TOPSECRET@h/d"}"#;
    let error = serde_json::from_str::<RetryConfig>(json).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "invalid `max_delay` (configuration): not a duration; expected a duration ≥ 0: \
             {DURATION_SYNTAX} at line 1 column 45"
        )
    );
}

#[test]
fn a_config_section_round_trips_through_serde() {
    let config = RetryPolicy::builder()
        .max_attempts(7)
        .max_delay(ms(1500))
        .jitter_strategy(JitterStrategy::Full)
        .seed(3);
    let text = toml::to_string(&config).unwrap();
    assert_eq!(
        text,
        "max_attempts = 7\nmax_delay = 1.5\njitter_strategy = \"full\"\nseed = 3\n"
    );
    let back: RetryConfig = toml::from_str(&text).unwrap();
    assert_eq!(back.build().unwrap(), config.build().unwrap());
}

fn vars(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn from_vars_config(pairs: &[(&str, &str)]) -> Result<RetryConfig, ConfigError> {
    RetryConfig::from_vars(vars(pairs))
}

fn from_vars(pairs: &[(&str, &str)]) -> Result<RetryPolicy, ConfigError> {
    from_vars_config(pairs)?.build()
}

#[test]
fn no_variables_give_the_defaults() {
    assert_eq!(from_vars(&[]).unwrap(), RetryPolicy::default());
    assert_eq!(
        from_vars(&[("PATH", "/bin"), ("DATABASE_URL", "x")]).unwrap(),
        RetryPolicy::default()
    );
}

#[test]
fn every_variable_is_read() {
    let policy = from_vars(&[
        ("DB_RETRY_MAX_ATTEMPTS", "7"),
        ("DB_RETRY_INITIAL_DELAY", "0.25"),
        ("DB_RETRY_MAX_DELAY", "4s"),
        ("DB_RETRY_EXPONENTIAL_BASE", "1.5"),
        ("DB_RETRY_JITTER", "yes"),
        ("DB_RETRY_JITTER_FACTOR", "0.3"),
        ("DB_RETRY_MAX_ELAPSED", "12000ms"),
        ("DB_RETRY_ATTEMPT_TIMEOUT", "3"),
        ("DB_RETRY_SEED", "99"),
    ])
    .unwrap();
    let expected = RetryPolicy::builder()
        .max_attempts(7)
        .initial_delay(ms(250))
        .max_delay(Duration::from_secs(4))
        .exponential_base(1.5)
        .jitter_factor(0.3)
        .max_elapsed(Duration::from_secs(12))
        .attempt_timeout(Duration::from_secs(3))
        .seed(99)
        .build()
        .unwrap();
    assert_eq!(policy, expected);
    let off = from_vars(&[("DB_RETRY_JITTER", "off")]).unwrap();
    assert_eq!(off.jitter(), Jitter::None);
    let full = from_vars(&[("DB_RETRY_JITTER_STRATEGY", "Full")]).unwrap();
    assert_eq!(full.jitter(), Jitter::Full);
    let lookup =
        RetryConfig::from_lookup(|name| (name == "DB_RETRY_MAX_DELAY").then(|| "1m".into()));
    assert_eq!(
        lookup.unwrap().build().unwrap().max_delay(),
        Duration::from_secs(60)
    );
}

#[test]
fn initial_delay_alone_in_the_environment_is_accepted() {
    let policy = from_vars(&[("DB_RETRY_INITIAL_DELAY", "2")]).unwrap();
    assert_eq!(policy.initial_delay(), Duration::from_secs(2));
    assert_eq!(policy.max_delay(), Duration::from_secs(30));
    let policy = from_vars(&[("DB_RETRY_INITIAL_DELAY", "1m")]).unwrap();
    assert_eq!(policy.max_delay(), Duration::from_secs(60));
}

#[test]
fn misspelled_variables_are_errors_naming_the_closest_known_name() {
    let known = "DB_RETRY_MAX_ATTEMPTS, DB_RETRY_INITIAL_DELAY, DB_RETRY_MAX_DELAY, \
                 DB_RETRY_EXPONENTIAL_BASE, DB_RETRY_JITTER, DB_RETRY_JITTER_FACTOR, \
                 DB_RETRY_JITTER_STRATEGY, DB_RETRY_MAX_ELAPSED, DB_RETRY_ATTEMPT_TIMEOUT, \
                 DB_RETRY_SEED";
    let cases = [
        ("DB_RETRY_MAX_ATTEMPT", "0", "DB_RETRY_MAX_ATTEMPTS"),
        ("DB_RETRY_MAXDELAY", "abc", "DB_RETRY_MAX_DELAY"),
        ("db_retry_seed", "1", "DB_RETRY_SEED"),
        ("DB_RETRY_ATEMPT_TIMEOUT", "1", "DB_RETRY_ATTEMPT_TIMEOUT"),
    ];
    for (var, value, closest) in cases {
        let error = from_vars(&[(var, value)]).expect_err(var);
        assert_eq!(error.closest(), Some(closest), "{var}");
        assert_eq!(
            error.to_string(),
            format!("unknown variable {var}: did you mean {closest}? (known: {known})")
        );
    }
}

#[test]
fn each_invalid_variable_is_named_with_its_range_and_text_is_never_quoted() {
    let duration_from_zero = format!("a duration ≥ 0: {DURATION_SYNTAX}");
    let positive_duration = format!("a duration > 0: {DURATION_SYNTAX}");
    let cases = [
        (
            ("DB_RETRY_MAX_ATTEMPTS", "five"),
            "invalid DB_RETRY_MAX_ATTEMPTS: not an integer; expected an integer from 1 to 4294967295".to_owned(),
        ),
        (
            ("DB_RETRY_MAX_ATTEMPTS", "0"),
            "invalid DB_RETRY_MAX_ATTEMPTS = 0: expected an integer from 1 to 4294967295".to_owned(),
        ),
        (
            ("DB_RETRY_MAX_ATTEMPTS", "99999999999"),
            "invalid DB_RETRY_MAX_ATTEMPTS = 99999999999: expected an integer from 1 to 4294967295".to_owned(),
        ),
        (
            ("DB_RETRY_INITIAL_DELAY", "-0.5"),
            format!("invalid DB_RETRY_INITIAL_DELAY = -0.5 s: expected {duration_from_zero}"),
        ),
        (
            ("DB_RETRY_MAX_DELAY", "1e20"),
            format!("invalid DB_RETRY_MAX_DELAY = 1e20 s: expected {duration_from_zero}"),
        ),
        (
            ("DB_RETRY_MAX_DELAY", "soon"),
            format!("invalid DB_RETRY_MAX_DELAY: not a duration; expected {duration_from_zero}"),
        ),
        (
            ("DB_RETRY_MAX_DELAY", "NaN"),
            format!("invalid DB_RETRY_MAX_DELAY: not a duration; expected {duration_from_zero}"),
        ),
        (
            ("DB_RETRY_EXPONENTIAL_BASE", "0.9"),
            "invalid DB_RETRY_EXPONENTIAL_BASE = 0.9: expected a finite number ≥ 1".to_owned(),
        ),
        (
            ("DB_RETRY_EXPONENTIAL_BASE", "NaN"),
            "invalid DB_RETRY_EXPONENTIAL_BASE: not a number; expected a finite number ≥ 1".to_owned(),
        ),
        (
            ("DB_RETRY_JITTER", "maybe"),
            "invalid DB_RETRY_JITTER: not a boolean; expected true or false (also 1/0, yes/no, on/off)".to_owned(),
        ),
        (
            ("DB_RETRY_JITTER_FACTOR", "2"),
            "invalid DB_RETRY_JITTER_FACTOR = 2: expected a number in [0, 1]".to_owned(),
        ),
        (
            ("DB_RETRY_JITTER_STRATEGY", "wild"),
            "invalid DB_RETRY_JITTER_STRATEGY: not a strategy name; expected one of proportional, full, equal, decorrelated".to_owned(),
        ),
        (
            ("DB_RETRY_MAX_ELAPSED", "0"),
            format!("invalid DB_RETRY_MAX_ELAPSED = 0 s: expected {positive_duration}"),
        ),
        (
            ("DB_RETRY_ATTEMPT_TIMEOUT", "soon"),
            format!("invalid DB_RETRY_ATTEMPT_TIMEOUT: not a duration; expected {positive_duration}"),
        ),
        (
            ("DB_RETRY_SEED", "-1"),
            "invalid DB_RETRY_SEED = -1: expected an integer from 0 to 18446744073709551615".to_owned(),
        ),
    ];
    for ((var, value), message) in cases {
        let error = from_vars(&[(var, value)]).expect_err(var);
        assert_eq!(error.setting(), var);
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn merge_lets_later_settings_win() {
    let file = RetryPolicy::builder().max_attempts(3).jitter(false);
    let env = RetryPolicy::builder().max_attempts(9);
    let policy = file.merge(env).build().unwrap();
    assert_eq!(policy.max_attempts(), 9);
    assert_eq!(policy.jitter(), Jitter::None);
}

#[test]
fn debug_shows_each_setting_with_where_it_came_from() {
    let config = RetryPolicy::builder()
        .max_attempts(3)
        .merge(from_vars_config(&[("DB_RETRY_MAX_DELAY", "2s")]).unwrap());
    assert_eq!(
        format!("{config:?}"),
        "RetryConfig { max_attempts: 3 (RetryConfig::max_attempts), max_delay: 2 s \
         (DB_RETRY_MAX_DELAY) }"
    );
}

fn any_valid_config() -> impl Strategy<Value = RetryConfig> {
    (
        1u32..=u32::MAX,
        0.0f64..5.0,
        0.0f64..100.0,
        1.0f64..50.0,
        any::<bool>(),
        0.0f64..=1.0,
        prop_oneof![
            Just(JitterStrategy::Proportional),
            Just(JitterStrategy::Full),
            Just(JitterStrategy::Equal),
            Just(JitterStrategy::Decorrelated),
        ],
        any::<u64>(),
    )
        .prop_map(
            |(attempts, initial, extra, base, jitter, factor, strategy, seed)| {
                RetryPolicy::builder()
                    .max_attempts(attempts)
                    .initial_delay(Duration::from_secs_f64(initial))
                    .max_delay(Duration::from_secs_f64(initial + extra))
                    .exponential_base(base)
                    .jitter(jitter)
                    .jitter_factor(factor)
                    .jitter_strategy(strategy)
                    .seed(seed)
            },
        )
}

proptest! {
    #[test]
    fn every_delay_is_between_zero_and_max_delay(config in any_valid_config()) {
        let policy = config.build().unwrap();
        let mut schedule = policy.schedule();
        for _ in 0..200 {
            let delay = schedule.next_delay();
            prop_assert!(delay <= policy.max_delay(), "{delay:?} > {:?}", policy.max_delay());
        }
    }

    #[test]
    fn schedule_length_is_attempts_minus_one(attempts in 1u32..200) {
        let policy = RetryPolicy::builder().max_attempts(attempts).build().unwrap();
        prop_assert_eq!(policy.schedule().count(), attempts as usize - 1);
    }
}
