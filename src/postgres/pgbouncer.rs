//! PgBouncer's own errors. PgBouncer accepts the client's login itself and reports most of its
//! conditions as SQLSTATE 08P01 (protocol_violation) with fixed texts, often only when the
//! first query runs. For those the text *is* the structured field, so it is read here — and
//! only here, for 08P01, where a real server's error stays permanent.
//!
//! The texts are PgBouncer's (1.18 sends the first five; older releases the last two).

/// Conditions that pass: the server behind PgBouncer is down or restarting, PgBouncer is
/// out of capacity, restarting, or paused past its wait limit.
const TRANSIENT: &[&str] = &[
    "server login has been failing, try again later",
    "query_wait_timeout",
    "client_login_timeout",
    "server conn crashed",
    "no more connections allowed",
    "pgbouncer cannot connect to server",
    "pooler is shutting down",
];

/// Whether an 08P01 error with `message` is one of PgBouncer's transient conditions. Its
/// authentication failures (`SASL authentication failed`, `password authentication failed`)
/// and `no such database` stay permanent, as does anything else.
pub(crate) fn is_transient(message: &str) -> bool {
    TRANSIENT.iter().any(|text| message.contains(text))
}

/// What to check for an error PgBouncer sent, if it is one of its known ones.
pub(crate) fn hint(message: &str) -> Option<&'static str> {
    if message.contains("server login has been failing") {
        Some(
            "PgBouncer cannot log in to the server behind it (down, or rejecting it); it tries \
             again after server_login_retry",
        )
    } else if message.contains("query_wait_timeout") {
        Some(
            "PgBouncer found no free server connection within query_wait_timeout (server down, \
             pool full, or PAUSE)",
        )
    } else if message.contains("no such database") {
        Some("the database is not in PgBouncer's [databases] section")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncers_outages_are_transient_and_its_auth_errors_permanent() {
        for transient in [
            "server login has been failing, try again later (server_login_retry)",
            "query_wait_timeout",
            "client_login_timeout (server down)",
            "server conn crashed?",
            "no more connections allowed (max_client_conn)",
        ] {
            assert!(is_transient(transient), "{transient}");
        }
        for permanent in [
            "SASL authentication failed",
            "password authentication failed",
            "no such database: nope",
            "invalid startup packet",
        ] {
            assert!(!is_transient(permanent), "{permanent}");
        }
    }
}
