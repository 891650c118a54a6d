//! Printing connection targets without their secrets.

/// A connection string with its password replaced by `***`: the `user:password@` part of a URL,
/// a `password=` query parameter, or a `password=` key of a key-value connection string.
///
/// ```
/// use dbretry::redact_url;
///
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db:5432/app?sslmode=require"),
///     "postgres://app:***@db:5432/app?sslmode=require"
/// );
/// assert_eq!(redact_url("host=db user=app password=s3cret"), "host=db user=app password=***");
/// assert_eq!(redact_url("postgres://db/app?password=s3cret&x=1"), "postgres://db/app?password=***&x=1");
/// ```
pub fn redact_url(target: &str) -> String {
    let mut redacted = match target.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", redact_userinfo(rest)),
        None => target.to_owned(),
    };
    redacted = redact_key_values(&redacted);
    redacted
}

fn redact_userinfo(rest: &str) -> String {
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}{tail}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    }
}

/// Replaces the value of every `password=` key, whether separated by `&` (URL query) or
/// whitespace (key-value connection string).
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_password_key(rest) {
        let value_start = at + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value = &rest[value_start..];
        let value_end = if let Some(quoted) = value.strip_prefix('\'') {
            quoted.find('\'').map_or(value.len(), |end| end + 2)
        } else {
            value.find(['&', ' ', '\t', '\n']).unwrap_or(value.len())
        };
        rest = &value[value_end..];
    }
    out.push_str(rest);
    out
}

fn find_password_key(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password=") {
        let at = from + found;
        let starts_key = at == 0 || matches!(text.as_bytes()[at - 1], b'?' | b'&' | b' ' | b'\t');
        if starts_key {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn no_secret_leaves_the_target_unchanged() {
        for target in [
            "postgres://db:5432/app",
            "postgres://app@db/app",
            "sqlite:///var/lib/app.db",
            "host=db user=app",
        ] {
            assert_eq!(redact_url(target), target);
        }
    }

    #[test]
    fn passwords_are_hidden_wherever_they_are() {
        let cases = [
            ("postgresql://u:p%40ss@h/d", "postgresql://u:***@h/d"),
            (
                "postgres://u:pw@h1,h2/d?target_session_attrs=read-write",
                "postgres://u:***@h1,h2/d?target_session_attrs=read-write",
            ),
            (
                "postgres://u@h/d?sslmode=require&password=pw",
                "postgres://u@h/d?sslmode=require&password=***",
            ),
            (
                "host=h password='a b c' user=u",
                "host=h password=*** user=u",
            ),
            ("PASSWORD=pw host=h", "PASSWORD=*** host=h"),
        ];
        for (target, expected) in cases {
            assert_eq!(redact_url(target), expected);
        }
    }
}
