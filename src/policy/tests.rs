use std::collections::HashMap;
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

#[test]
fn zero_attempts_are_rejected_naming_the_field() {
    let error = rejected(RetryPolicy::builder().max_attempts(0));
    assert_eq!(error.setting(), "`max_attempts`");
    assert_eq!(
        error.to_string(),
        "invalid `max_attempts` = 0: expected an integer ≥ 1"
    );
}

#[test]
fn exponential_base_below_one_is_rejected() {
    let error = rejected(RetryPolicy::builder().exponential_base(0.5));
    assert_eq!(
        error.to_string(),
        "invalid `exponential_base` = 0.5: expected a finite number ≥ 1"
    );
}

#[test]
fn nan_and_infinite_numbers_are_rejected() {
    let error = rejected(RetryPolicy::builder().exponential_base(f64::NAN));
    assert_eq!(error.setting(), "`exponential_base`");
    let error = rejected(RetryPolicy::builder().jitter_factor(f64::NAN));
    assert_eq!(error.setting(), "`jitter_factor`");
    let config = RetryConfig {
        max_delay: Some(f64::INFINITY),
        ..RetryConfig::default()
    };
    assert_eq!(rejected(config).setting(), "`max_delay`");
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
fn max_delay_below_initial_delay_is_rejected_naming_both() {
    let error = rejected(
        RetryPolicy::builder()
            .initial_delay(Duration::from_secs(2))
            .max_delay(Duration::from_secs(1)),
    );
    assert_eq!(
        error.to_string(),
        "invalid `max_delay` = 1: expected seconds ≥ `initial_delay` (2)"
    );
}

#[test]
fn negative_durations_from_a_config_file_are_rejected() {
    let config: RetryConfig = toml::from_str("initial_delay = -1.0").unwrap();
    assert_eq!(
        rejected(config).to_string(),
        "invalid `initial_delay` = -1: expected a finite number of seconds ≥ 0"
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
fn config_file_uses_the_builder_names_and_rejects_unknown_keys() {
    let config: RetryConfig = toml::from_str(
        "max_attempts = 3\ninitial_delay = 0.05\nmax_delay = 1\nexponential_base = 3\n\
         jitter = true\njitter_factor = 0.2\njitter_strategy = \"equal\"\nmax_elapsed = 10\n\
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

    let typo = toml::from_str::<RetryConfig>("max_atempts = 3").unwrap_err();
    assert!(
        typo.to_string().contains("unknown field `max_atempts`"),
        "{typo}"
    );
}

fn from_vars(vars: &[(&str, &str)]) -> Result<RetryPolicy, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RetryConfig::from_lookup(|name| vars.get(name).cloned())?.build()
}

#[test]
fn no_variables_give_the_defaults() {
    assert_eq!(from_vars(&[]).unwrap(), RetryPolicy::default());
}

#[test]
fn every_variable_is_read() {
    let policy = from_vars(&[
        ("DB_RETRY_MAX_ATTEMPTS", "7"),
        ("DB_RETRY_INITIAL_DELAY", "0.25"),
        ("DB_RETRY_MAX_DELAY", "4"),
        ("DB_RETRY_EXPONENTIAL_BASE", "1.5"),
        ("DB_RETRY_JITTER", "yes"),
        ("DB_RETRY_JITTER_FACTOR", "0.3"),
        ("DB_RETRY_MAX_ELAPSED", "12"),
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
}

#[test]
fn each_invalid_variable_is_named_with_its_value_and_range() {
    let cases = [
        (
            ("DB_RETRY_MAX_ATTEMPTS", "five"),
            "invalid DB_RETRY_MAX_ATTEMPTS = \"five\": expected an integer ≥ 1",
        ),
        (
            ("DB_RETRY_MAX_ATTEMPTS", "0"),
            "invalid DB_RETRY_MAX_ATTEMPTS = 0: expected an integer ≥ 1",
        ),
        (
            ("DB_RETRY_INITIAL_DELAY", "-0.5"),
            "invalid DB_RETRY_INITIAL_DELAY = -0.5: expected a finite number of seconds ≥ 0",
        ),
        (
            ("DB_RETRY_MAX_DELAY", "0.01"),
            "invalid DB_RETRY_MAX_DELAY = 0.01: expected seconds ≥ DB_RETRY_INITIAL_DELAY (0.1)",
        ),
        (
            ("DB_RETRY_EXPONENTIAL_BASE", "0.9"),
            "invalid DB_RETRY_EXPONENTIAL_BASE = 0.9: expected a finite number ≥ 1",
        ),
        (
            ("DB_RETRY_EXPONENTIAL_BASE", "NaN"),
            "invalid DB_RETRY_EXPONENTIAL_BASE = NaN: expected a finite number ≥ 1",
        ),
        (
            ("DB_RETRY_JITTER", "maybe"),
            "invalid DB_RETRY_JITTER = \"maybe\": expected true or false",
        ),
        (
            ("DB_RETRY_JITTER_FACTOR", "2"),
            "invalid DB_RETRY_JITTER_FACTOR = 2: expected a number in [0, 1]",
        ),
        (
            ("DB_RETRY_JITTER_STRATEGY", "wild"),
            "invalid DB_RETRY_JITTER_STRATEGY = \"wild\": expected one of proportional, full, equal, decorrelated",
        ),
        (
            ("DB_RETRY_MAX_ELAPSED", "0"),
            "invalid DB_RETRY_MAX_ELAPSED = 0: expected a finite number of seconds > 0",
        ),
        (
            ("DB_RETRY_ATTEMPT_TIMEOUT", "soon"),
            "invalid DB_RETRY_ATTEMPT_TIMEOUT = \"soon\": expected a number of seconds",
        ),
        (
            ("DB_RETRY_SEED", "-1"),
            "invalid DB_RETRY_SEED = \"-1\": expected an unsigned integer",
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
            |(attempts, initial, extra, base, jitter, factor, strategy, seed)| RetryConfig {
                max_attempts: Some(attempts),
                initial_delay: Some(initial),
                max_delay: Some(initial + extra),
                exponential_base: Some(base),
                jitter: Some(jitter),
                jitter_factor: Some(factor),
                jitter_strategy: Some(strategy),
                seed: Some(seed),
                ..RetryConfig::default()
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
