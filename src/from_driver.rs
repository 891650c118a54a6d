//! A driver's error as this crate's [`Error`]: one attempt, not retried.
//!
//! The pools' backend error is [`Error`], so code written for deadpool-postgres that used
//! `tokio_postgres::Error` there (`HookError::Backend(e)`, `?` into a `PoolError`) writes
//! `e.into()`; the orphan rule forbids the `From` that would make `?` into deadpool's
//! `PoolError<Error>` work by itself.

use std::time::Duration;

use crate::classify::{OperationError, Phase};
use crate::error::{Error, ErrorKind};
use crate::failure::Failure;

/// A failed operation (not a connect), made once, as an [`Error`] of kind
/// [`ErrorKind::Query`] whose class ([`Classify`](crate::Classify)) is the driver error's.
fn not_retried<E: OperationError>(error: E) -> Error {
    let failure = Failure::new(error, Phase::Operation);
    Error::new(ErrorKind::Query, 1, Duration::ZERO, Some(failure))
}

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
impl From<tokio_postgres::Error> for Error {
    /// One failed operation, not retried; its SQLSTATE and class are kept.
    fn from(error: tokio_postgres::Error) -> Self {
        not_retried(error)
    }
}

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
impl From<rusqlite::Error> for Error {
    /// One failed operation, not retried; its result code and class are kept.
    fn from(error: rusqlite::Error) -> Self {
        not_retried(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classify, ErrorClass};

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_converted_driver_error_keeps_its_code_and_class() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let duplicate = conn
            .execute_batch("CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1), (1)")
            .unwrap_err();
        let error = Error::from(duplicate);
        assert_eq!(error.kind(), ErrorKind::Query);
        assert_eq!(error.attempts(), 1);
        assert_eq!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        assert_eq!(error.class(), Some(ErrorClass::Permanent));

        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        let error = Error::from(busy);
        assert_eq!(error.kind(), ErrorKind::Query);
        assert!(
            error.to_string().contains("transient error, not retried"),
            "{error}"
        );
        assert_eq!(error.sqlite_code(), Some(5));
        assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    }
}
