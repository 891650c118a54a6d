use proptest::prelude::*;

use super::*;

fn error(text: &str) -> String {
    parse("dbretry.toml", text).expect_err(text)
}

#[test]
fn databases_keep_the_order_of_the_file() {
    let file = parse(
        "dbretry.toml",
        "[databases.zeta]\nurl = \"sqlite:z.db\"\n\n[databases.alpha]\nurl = \"sqlite:a.db\"\n\
         [databases.mid]\nurl = 'sqlite:m.db'\n",
    )
    .unwrap();
    let names: Vec<_> = file.databases.iter().map(|db| db.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
    assert_eq!(file.databases[1].at, "dbretry.toml:5");
    assert_eq!(file.databases[2].url, "sqlite:m.db");
}

#[test]
fn inline_tables_and_dotted_keys_are_read_too() {
    let file = parse(
        "f.toml",
        "databases.a.url = \"sqlite:a.db\"\n[databases]\nb = { url = \"sqlite:b.db\" }\n",
    );
    // TOML forbids defining `databases` twice; the message says so without the values.
    let message = file.unwrap_err();
    assert!(!message.contains("sqlite:"), "{message}");
    let file = parse("f.toml", "[databases]\nb = { url = \"sqlite:b.db\" }\n").unwrap();
    assert_eq!(file.databases[0].name, "b");
    assert_eq!(file.databases[0].at, "f.toml:2");
}

#[test]
fn the_retry_section_is_read_with_the_file_line_and_key_of_each_setting() {
    let file = parse(
        "dbretry.toml",
        "[retry]\nmax_attempts = 4\nmax_delay = \"250ms\"\njitter = false\n",
    )
    .unwrap();
    let policy = file.retry.build().unwrap();
    assert_eq!(policy.max_attempts(), 4);
    assert_eq!(policy.max_delay(), std::time::Duration::from_millis(250));
    let message = error("[retry]\nmax_attempts = 4\nmax_delay = 1e20\n");
    assert_eq!(
        message,
        "invalid `retry.max_delay` = 1e20 s (dbretry.toml:3): expected a duration ≥ 0: seconds \
         (0.5) or a number with a unit (500ms, 2s, 1m, 1h), up to 1 year (31536000 s)"
    );
    assert_eq!(
        error("[retry]\nmax_atempts = 4\n"),
        "unknown key `retry.max_atempts` (dbretry.toml:2): did you mean max_attempts? (known: \
         max_attempts, initial_delay, max_delay, exponential_base, jitter, jitter_factor, \
         jitter_strategy, max_elapsed, attempt_timeout, seed)"
    );
}

/// The four ways the issue found to print the offending line, each now told without it.
#[test]
fn config_file_errors_name_file_line_and_key_but_never_quote_the_line() {
    let cases = [
        (
            "[databases.default]\nurl = [\"postgres://app:TOPSECRET@h/d\"\n",
            "invalid TOML at dbretry.toml:2, key `databases.default.url`: invalid array; \
             expected `]`",
        ),
        (
            "[databases.default]\nurl = \"postgres://app:TOPSECRET@h/d\"\nurl = \"postgres://app:TOPSECRET@h/d\"\n",
            "invalid TOML at dbretry.toml:3, key `databases.default.url`: duplicate key `url` \
             in table `databases.default`",
        ),
        (
            "[databases]\ndefault = { url = \"postgres://app:TOPSECRET@h/d\"\n",
            "invalid TOML at dbretry.toml:2, key `databases.default`: invalid inline table; \
             expected `}`",
        ),
        (
            "[databases.default]\nurl = [\"postgres://app:TOPSECRET@h/d\"]\n",
            "invalid `databases.default.url` (dbretry.toml:2): found a list; expected a \
             connection string (a quoted string)",
        ),
        (
            "[databases.default]\nurl = postgres://app:TOPSECRET@h/d\n",
            "invalid TOML at dbretry.toml:2, key `databases.default.url`: invalid string; \
             expected `\"`, `'`",
        ),
        (
            "[retry]\nmax_delay = \"postgres://app:TOPSECRET@h/d\"\n",
            "invalid `retry.max_delay` (dbretry.toml:2): not a duration; expected a duration ≥ \
             0: seconds (0.5) or a number with a unit (500ms, 2s, 1m, 1h), up to 1 year \
             (31536000 s)",
        ),
        (
            "[databases.default]\nurl = \"postgres://app:TOPSECRET@h/d\"\npassword = \"TOPSECRET\"\n",
            "unknown key `databases.default.password` (dbretry.toml:3): expected only `url` here",
        ),
        (
            "[databases.default]\nurl = \"postgres://app:TOP\\qSECRET@h/d\"\n",
            "invalid TOML at dbretry.toml:2, key `databases.default.url`: invalid escape \
             sequence; expected `b`, `f`, `n`, `r`, `t`, `u`, `U`, `\\`, `\"`",
        ),
        (
            "[databases.default]\n",
            "`databases.default` (dbretry.toml:1) has no `url`",
        ),
        (
            "databases = \"postgres://app:TOPSECRET@h/d\"\n",
            "invalid `databases` (dbretry.toml:1): found a string; expected a table of \
             [databases.NAME] sections",
        ),
        (
            "[databse]\n",
            "unknown key `databse` (dbretry.toml:1): expected one of retry, databases",
        ),
        (
            "[databases.default]\nurl = \"sqlite:a\"\n\"TOP SECRET\" = 1\n",
            "unknown key (not shown: not a plain name) (dbretry.toml:3): expected only `url` here",
        ),
        (
            "[databases.default]\n\"TOP SECRET\" = 1\n\"TOP SECRET\" = 2\n",
            "invalid TOML at dbretry.toml:3: duplicate key (a key not shown) in table \
             `databases.default`",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

/// Characters that need no escape in a TOML basic string, and the escapes for those that do.
fn in_basic_string(secret: &str) -> String {
    secret
        .chars()
        .map(|c| match c {
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c if c.is_control() => format!("\\u{:04X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// The ways a line holding a secret can be wrong (or right).
fn line_with(secret: &str, shape: u8) -> String {
    let basic = in_basic_string(secret);
    let url = format!("postgres://app:{basic}@h/d");
    match shape % 12 {
        0 => format!("url = \"{url}\""),
        1 => format!("url = [\"{url}\""),
        2 => format!("url = [\"{url}\"]"),
        3 => format!("url = {{ x = \"{url}\""),
        4 => format!("url = {{ x = \"{url}\" }}"),
        5 => format!("url = \"{url}"),
        6 => format!("url = {url}"),
        7 => format!("url = \"{url}\" trailing"),
        8 => format!("url = \"{url}\"\nurl = \"{url}\""),
        9 => format!("url = 42\npassword = \"{basic}\""),
        10 => format!("\"{basic}\" = 1"),
        _ => format!("url = '{}'", secret.replace(['\'', '\n', '\r'], "")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Whatever the line, a message about it never contains the secret on it.
    #[test]
    fn no_config_file_error_contains_the_secret(
        secret in "[ -~\u{a0}-\u{17f}\u{1F600}]{8,24}",
        shape in any::<u8>(),
        section in prop_oneof![Just("[databases.default]\n"), Just("[retry]\n"), Just("")],
    ) {
        let text = format!("{section}{}\n", line_with(&secret, shape));
        // The one documented exception: a plain (bare) key is named, whatever it is.
        prop_assume!(!(shape % 12 == 10 && bare_key(&secret).is_some()));
        if let Err(message) = parse("f.toml", &text) {
            prop_assert!(!message.contains(&secret), "{message}");
            prop_assert!(!message.contains(&in_basic_string(&secret)), "{message}");
        }
    }
}
