//! Transient or permanent for tokio-postgres errors, by SQLSTATE, `is_closed()` and the I/O
//! cause — never by message text, except for PgBouncer's own 08P01 errors (see
//! [`pgbouncer`](super::pgbouncer)), whose text is their only structured field.

use std::io;

use tokio_postgres::error::SqlState;

use crate::classify::{Classify, ErrorClass, Phase, classify_io};

impl Classify for tokio_postgres::Error {
    fn classify(&self, phase: Phase) -> ErrorClass {
        if let Some(code) = self.code() {
            if *code == SqlState::PROTOCOL_VIOLATION
                && self
                    .as_db_error()
                    .is_some_and(|db| super::pgbouncer::is_transient(db.message()))
            {
                return ErrorClass::Transient;
            }
            return classify_sqlstate(code, phase);
        }
        if self.is_closed() {
            return ErrorClass::Transient;
        }
        match io_cause(self) {
            Some(io) if is_session_attrs_mismatch(io) => ErrorClass::Transient,
            Some(io) => classify_io(io),
            // TLS, configuration, authentication-method and protocol errors.
            None => ErrorClass::Permanent,
        }
    }

    fn breaks_connection(&self) -> bool {
        match self.code() {
            Some(code) => breaks_connection(code),
            None => self.is_closed() || io_cause(self).is_some(),
        }
    }
}

/// Transient or permanent for a SQLSTATE the server sent.
///
/// Transient in both phases: 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
/// cannot_connect_now, class 53 (insufficient resources, 53300 too_many_connections among
/// them), 58000/58030 system and I/O errors, class 08 (connection exceptions) except 08P01
/// protocol_violation. In the operation phase also 40001 serialization_failure, 40P01
/// deadlock_detected (re-run the transaction) and 25006 read_only_sql_transaction (a failover
/// left this session on a standby: a new connection finds the primary). Everything else —
/// 28000/28P01 authentication, 3D000 no such database, 57P04 database_dropped, 08P01 — is
/// permanent.
pub fn classify_sqlstate(code: &SqlState, phase: Phase) -> ErrorClass {
    let text = code.code();
    let transient = *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || text.starts_with("53")
        || *code == SqlState::SYSTEM_ERROR
        || *code == SqlState::IO_ERROR
        || (text.starts_with("08") && *code != SqlState::PROTOCOL_VIOLATION)
        || (phase == Phase::Operation
            && (*code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION));
    if transient {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// PgBouncer's 08P01 errors end the session (FATAL), like a real server's class 08.
fn breaks_connection(code: &SqlState) -> bool {
    *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || code.code().starts_with("08")
}

fn io_cause(error: &tokio_postgres::Error) -> Option<&io::Error> {
    std::error::Error::source(error)?.downcast_ref::<io::Error>()
}

/// With `target_session_attrs=read-write`, tokio-postgres reports a server that does not
/// (yet) accept writes as a `PermissionDenied` I/O error it makes itself (no OS error code).
/// During a failover that is exactly the transient state to wait out.
fn is_session_attrs_mismatch(io: &io::Error) -> bool {
    io.kind() == io::ErrorKind::PermissionDenied && io.raw_os_error().is_none()
}
