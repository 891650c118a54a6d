//! Printing connection targets without their secrets: by parsing, never by cutting strings.
//!
//! A target is printed from the *parsed* configuration (user, hosts, ports, database, a few
//! modes) so that what counts as the password is exactly what the driver takes as the password:
//! tokio-postgres reads URL credentials up to the first `@` (a base64 password full of `/` is
//! fine), accepts spaces around `=` and quoted values with `\'` escapes in key=value strings.
//! Parse errors say what is wrong without quoting the input, since the driver's own messages
//! can quote part of it (`unknown option` names the text before an `=`, which may be the tail
//! of an unquoted password).

#[cfg(feature = "postgres")]
use std::fmt;

#[cfg(feature = "postgres")]
use crate::ConfigError;

/// What a connection string that does not parse is printed as.
pub(crate) const UNPARSABLE: &str = "<unparsable connection string, not shown>";

/// A connection target as it may be printed: parsed, with the password replaced by `***`.
///
/// PostgreSQL URLs and key=value strings are printed as a URL built from the parsed settings
/// (`postgres://user:***@host:port/db`); `sqlite:` targets keep their path, with the values of
/// key parameters (`?key=…`, SQLCipher's) hidden. A string that does not parse is not printed
/// at all.
///
/// ```
/// use dbretry::redact_url;
///
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db:5432/app?sslmode=require"),
///     "postgres://app:***@db:5432/app?sslmode=require"
/// );
/// // tokio-postgres takes credentials up to the first `@`: a password may hold `/` and `?`.
/// assert_eq!(redact_url("postgres://b64:q8Z/x+Kp3w==@db/app"), "postgres://b64:***@db:5432/app");
/// assert_eq!(redact_url("host=db user=app password = 'a\\'b c'"), "postgres://app:***@db:5432");
/// assert_eq!(redact_url("postgres://db/app?password=s3cret"), "postgres://:***@db:5432/app");
/// assert_eq!(redact_url("postgres://app:s3cret@db/app?bogus"), "<unparsable connection string, not shown>");
/// ```
pub fn redact_url(target: &str) -> String {
    if let Some(path) = target.strip_prefix("sqlite:") {
        return format!("sqlite:{}", redact_sqlite_path(path));
    }
    #[cfg(feature = "postgres")]
    if let Ok(config) = parse_postgres_config(target) {
        return RedactedConfig(&config).to_string();
    }
    UNPARSABLE.to_owned()
}

/// An SQLite path or URI filename with the values of key parameters hidden
/// (`file:app.db?mode=ro&key=***`).
pub(crate) fn redact_sqlite_path(path: &str) -> String {
    let Some((file, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if is_key_parameter(name) => format!("{name}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{file}?{}", params.join("&"))
}

/// SQLite (SQLCipher, SEE) parameters and pragmas that carry an encryption key.
pub(crate) fn is_key_parameter(name: &str) -> bool {
    const KEYS: [&str; 7] = [
        "key",
        "hexkey",
        "textkey",
        "rekey",
        "hexrekey",
        "textrekey",
        "password",
    ];
    KEYS.iter().any(|key| key.eq_ignore_ascii_case(name.trim()))
}

/// The expected form of a PostgreSQL connection string, for messages.
#[cfg(feature = "postgres")]
const POSTGRES_FORMS: &str = "a PostgreSQL URL (postgres://user:password@host:port/db?param=value, \
     an `@` in the password written %40) or key=value pairs (host=… user=… password='…')";

/// Parses a PostgreSQL connection string (URL or key=value) with tokio-postgres, with errors
/// that never quote the input.
///
/// Besides tokio-postgres's own checks, it refuses what tokio-postgres would silently misread
/// when a password holds an unencoded `@`: an `@` in the host or database part of a URL, or a
/// `/` or `?` in the user name (`postgres://host/db?password=a@b` would make
/// `host/db?password=a` the user).
///
/// # Errors
/// A [`ConfigError`] for the setting `connection string`, saying what is wrong (an unknown
/// option is named only when it is one of libpq's that tokio-postgres does not support, since
/// any other name may be the tail of an unquoted password).
#[cfg(feature = "postgres")]
pub fn parse_postgres_config(text: &str) -> Result<tokio_postgres::Config, ConfigError> {
    let refuse =
        |problem: String| ConfigError::unshown("connection string", problem, POSTGRES_FORMS);
    if let Some(problem) = misplaced_at(text) {
        return Err(refuse(problem.to_owned()));
    }
    let config: tokio_postgres::Config = text.parse().map_err(|e| refuse(parse_problem(&e)))?;
    if config.get_hosts().iter().any(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => name.contains('@'),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => false,
    }) {
        return Err(refuse("a host name contains `@`".to_owned()));
    }
    Ok(config)
}

/// An unencoded `@` that tokio-postgres would take as the end of the credentials although it
/// is not: the rest of the password would become the host, database or user name.
#[cfg(feature = "postgres")]
fn misplaced_at(text: &str) -> Option<&'static str> {
    let rest = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))?;
    let (credentials, after) = rest.split_once('@')?;
    let user = credentials.split(':').next().unwrap_or_default();
    if user.contains(['/', '?']) {
        return Some(
            "the part before the first `@` is not `user:password` (an `@` in a password or \
             parameter must be written %40)",
        );
    }
    let host_and_path = after.split('?').next().unwrap_or_default();
    host_and_path.contains('@').then_some(
        "more than one `@` before the parameters (an `@` in the password must be written %40)",
    )
}

/// What is wrong with a connection string, from tokio-postgres's error, without its quotes of
/// the input.
#[cfg(feature = "postgres")]
pub(crate) fn parse_problem(error: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    let Some(cause) = error.source() else {
        return "it does not parse".to_owned();
    };
    if cause.downcast_ref::<std::str::Utf8Error>().is_some() {
        return "a percent-encoded part is not valid UTF-8".to_owned();
    }
    let message = cause.to_string();
    if let Some(name) = message
        .strip_prefix("unknown option `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return unknown_option(name);
    }
    if let Some(option) = message
        .strip_prefix("invalid value for option `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        // tokio-postgres names a fixed option here, never text from the input.
        if SUPPORTED_OPTIONS.contains(&option) {
            return format!("invalid value for option `{option}`");
        }
    }
    if let Some(rest) = message.strip_prefix("unexpected character at byte ") {
        let byte: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return format!(
            "expected `=` at byte {byte} (a key without a value, or an unquoted value with a \
             space: quote it as key='…')"
        );
    }
    match message.as_str() {
        "unexpected EOF" => "it ends where a value was expected (a key without `= value`?)",
        "unterminated quoted connection parameter value" => "a quoted value is not closed",
        "unterminated parameter" => "a URL parameter has no `=`",
        _ => "it does not parse (the parser's message is not shown: it may quote the input)",
    }
    .to_owned()
}

/// The options tokio-postgres reads.
#[cfg(feature = "postgres")]
const SUPPORTED_OPTIONS: [&str; 19] = [
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// libpq options that tokio-postgres does not read: naming one of these cannot leak anything.
#[cfg(feature = "postgres")]
const LIBPQ_ONLY_OPTIONS: [&str; 20] = [
    "passfile",
    "service",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcompression",
    "sslsni",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
    "require_auth",
    "gssencmode",
    "krbsrvname",
    "requirepeer",
    "client_encoding",
    "fallback_application_name",
];

#[cfg(feature = "postgres")]
fn unknown_option(name: &str) -> String {
    if LIBPQ_ONLY_OPTIONS.contains(&name) {
        return format!(
            "option `{name}` is libpq's, not supported by tokio-postgres (for a CA certificate, \
             use the TLS connector's settings)"
        );
    }
    let hidden = "an unknown option (its name is not shown: it may be the tail of an unquoted \
                  password; quote values with spaces as key='…')";
    // Only a near miss of a real option is suggested: that says little about the name, whereas
    // the closest of all options would be a guess.
    let near = SUPPORTED_OPTIONS.iter().find(|option| {
        name.len() >= 4
            && option.len().abs_diff(name.len()) <= 2
            && crate::policy::edit_distance(name, option) <= 2
    });
    match near {
        Some(option) => format!("{hidden}; did you mean `{option}`?"),
        None => hidden.to_owned(),
    }
}

/// A tokio-postgres configuration printed as a URL without its password:
/// `postgres://app:***@db-1:5432,db-2:5432/app?sslmode=require`. Its `Debug` is the same text.
///
/// Printed: the user, whether a password is set (`:***`), hosts (unix socket directories
/// percent-encoded) with their ports, the database, and `sslmode` / `target_session_attrs` when
/// not the default. The text parses back to the same target.
#[cfg(feature = "postgres")]
#[derive(Clone, Copy)]
pub struct RedactedConfig<'a>(pub &'a tokio_postgres::Config);

#[cfg(feature = "postgres")]
impl fmt::Display for RedactedConfig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
        let config = self.0;
        f.write_str("postgres://")?;
        let user = config.get_user().unwrap_or_default();
        write!(f, "{}", Encoded(user))?;
        if config.get_password().is_some() {
            f.write_str(":***")?;
        }
        if !user.is_empty() || config.get_password().is_some() {
            f.write_str("@")?;
        }
        let ports = config.get_ports();
        let port = |i: usize| match ports {
            [] => 5432,
            [only] => *only,
            many => many.get(i).copied().unwrap_or(5432),
        };
        let hosts = config.get_hosts();
        for (i, host) in hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                Host::Tcp(name) if name.contains(':') => write!(f, "[{}]", Encoded(name))?,
                Host::Tcp(name) => write!(f, "{}", Encoded(name))?,
                #[cfg(unix)]
                Host::Unix(path) => write!(f, "{}", Encoded(&path.to_string_lossy()))?,
            }
            write!(f, ":{}", port(i))?;
        }
        if hosts.is_empty() {
            for (i, addr) in config.get_hostaddrs().iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                match addr {
                    std::net::IpAddr::V4(v4) => write!(f, "{sep}{v4}:{}", port(i))?,
                    std::net::IpAddr::V6(v6) => write!(f, "{sep}[{v6}]:{}", port(i))?,
                }
            }
        }
        if let Some(db) = config.get_dbname() {
            write!(f, "/{}", Encoded(db))?;
        }
        let mut params = Vec::new();
        match config.get_ssl_mode() {
            SslMode::Disable => params.push("sslmode=disable"),
            SslMode::Require => params.push("sslmode=require"),
            _ => {}
        }
        match config.get_target_session_attrs() {
            TargetSessionAttrs::ReadWrite => params.push("target_session_attrs=read-write"),
            TargetSessionAttrs::ReadOnly => params.push("target_session_attrs=read-only"),
            _ => {}
        }
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
impl fmt::Debug for RedactedConfig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Percent-encodes all but unreserved characters, so the printed URL parses back.
#[cfg(feature = "postgres")]
struct Encoded<'a>(&'a str);

#[cfg(feature = "postgres")]
impl fmt::Display for Encoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    fn problem(text: &str) -> String {
        let error = parse_postgres_config(text).expect_err(text);
        error.problem().unwrap_or_default().to_owned()
    }

    #[test]
    fn targets_print_from_the_parsed_configuration() {
        let cases = [
            ("postgres://db:5432/app", "postgres://db:5432/app"),
            ("postgres://app@db/app", "postgres://app@db:5432/app"),
            ("postgresql://u:p%40ss@h/d", "postgres://u:***@h:5432/d"),
            (
                "postgres://u:pw@h1,h2:6000/d?target_session_attrs=read-write",
                "postgres://u:***@h1:5432,h2:6000/d?target_session_attrs=read-write",
            ),
            (
                "postgres://u@h/d?sslmode=require&password=pw",
                "postgres://u:***@h:5432/d?sslmode=require",
            ),
            ("host=h password='a b c' user=u", "postgres://u:***@h:5432"),
            ("host=h password = s3cret user=u", "postgres://u:***@h:5432"),
            ("host=h password='a\\'b' user=u", "postgres://u:***@h:5432"),
            (
                "host=/run/pg port=5433 user=u",
                "postgres://u@%2Frun%2Fpg:5433",
            ),
            ("host=::1 user=u", "postgres://u@[%3A%3A1]:5432"),
            ("sqlite:///var/lib/app.db", "sqlite:///var/lib/app.db"),
            (
                "sqlite:file:x.db?mode=ro&key=k3y",
                "sqlite:file:x.db?mode=ro&key=***",
            ),
        ];
        for (target, expected) in cases {
            assert_eq!(redact_url(target), expected, "{target}");
        }
    }

    #[test]
    fn a_printed_target_parses_back_to_the_same_target() {
        for target in [
            "postgres://us%20er:pw@h1,h2:6000/d%2Fb?target_session_attrs=read-write",
            "host=/run/pg port=5433 user=u dbname='my db'",
        ] {
            let config = parse_postgres_config(target).unwrap();
            let printed = RedactedConfig(&config).to_string();
            let back = parse_postgres_config(&printed).unwrap();
            assert_eq!(back.get_user(), config.get_user());
            assert_eq!(back.get_hosts(), config.get_hosts());
            assert_eq!(back.get_ports().last(), config.get_ports().last());
            assert_eq!(back.get_dbname(), config.get_dbname());
        }
    }

    #[test]
    fn parse_errors_do_not_quote_the_input() {
        let cases = [
            (
                "host=h password=abc defgh=x",
                "an unknown option (its name is not shown: it may be the tail of an unquoted \
                 password; quote values with spaces as key='…')",
            ),
            (
                "host=h password=abc defgh",
                "it ends where a value was expected (a key without `= value`?)",
            ),
            (
                "host=h password s3cret",
                "expected `=` at byte 16 (a key without a value, or an unquoted value with a \
                 space: quote it as key='…')",
            ),
            ("host=h password='s3cret", "a quoted value is not closed"),
            (
                "postgres://u:s3cret@h/d?s3cret",
                "a URL parameter has no `=`",
            ),
            (
                "postgres://u:s3cret@h/d?sslmode=s3cret",
                "invalid value for option `sslmode`",
            ),
            (
                "postgres://u:s3cret@h/d?port=s3cret",
                "invalid value for option `port`",
            ),
            (
                "postgres://u:s3cret@h/%FF",
                "a percent-encoded part is not valid UTF-8",
            ),
            (
                "postgres://u:pa@ss@h/d",
                "more than one `@` before the parameters (an `@` in the password must be \
                 written %40)",
            ),
            (
                "postgres://h/d?password=se@cret",
                "the part before the first `@` is not `user:password` (an `@` in a password or \
                 parameter must be written %40)",
            ),
            (
                "host=h sslrootcert=/ca.pem",
                "option `sslrootcert` is libpq's, not supported by tokio-postgres (for a CA \
                 certificate, use the TLS connector's settings)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(problem(text), expected, "{text}");
            let message = parse_postgres_config(text).unwrap_err().to_string();
            assert!(
                !message.contains("s3cret") && !message.contains("defgh"),
                "{message}"
            );
        }
        assert!(problem("host=h passwrd=s3cret").ends_with("did you mean `password`?"));
    }

    #[test]
    fn an_unparsable_string_is_not_printed() {
        assert_eq!(redact_url("host=h password=abc defgh=x"), UNPARSABLE);
        assert_eq!(redact_url("mysql://u:s3cret@h/d"), UNPARSABLE);
    }
}
