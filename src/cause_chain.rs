//! Classifying an error nobody typed: searching a cause chain for an error this crate knows
//! (a driver's, an I/O error, this crate's own), as for a boxed error from a user's closure.

use std::error::Error as StdError;
use std::io;

use crate::classify::{AttemptTimedOut, Classify, ErrorClass, Phase};

impl Classify for Box<dyn StdError + Send + Sync> {
    fn classify(&self, phase: Phase) -> ErrorClass {
        classify_dyn(&**self, phase)
    }

    fn breaks_connection(&self) -> bool {
        breaks_connection_dyn(&**self)
    }
}

/// Classifies any error by searching its cause chain for an error this crate knows (a
/// database driver's, an I/O error, this crate's own). Unknown errors are permanent: retrying
/// what is not understood hides bugs.
pub fn classify_dyn(error: &(dyn StdError + 'static), phase: Phase) -> ErrorClass {
    find_known(error, |known| known.classify(phase)).unwrap_or(ErrorClass::Permanent)
}

/// Like [`Classify::breaks_connection`] for any error, by its cause chain.
pub fn breaks_connection_dyn(error: &(dyn StdError + 'static)) -> bool {
    find_known(error, |known| known.breaks_connection()).unwrap_or(false)
}

fn find_known<T>(
    error: &(dyn StdError + 'static),
    answer: impl Fn(&dyn Classify) -> T,
) -> Option<T> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(known) = as_known(error) {
            return Some(answer(known));
        }
        next = error.source();
    }
    None
}

fn as_known<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e dyn Classify> {
    #[cfg(feature = "postgres")]
    if let Some(e) = error.downcast_ref::<tokio_postgres::Error>() {
        return Some(e);
    }
    #[cfg(feature = "sqlite")]
    if let Some(e) = error.downcast_ref::<rusqlite::Error>() {
        return Some(e);
    }
    #[cfg(feature = "postgres")]
    if let Some(e) = error.downcast_ref::<crate::postgres::ServerTurnedReadOnly>() {
        return Some(e);
    }
    #[cfg(feature = "postgres")]
    if let Some(e) = error.downcast_ref::<crate::postgres::HostFailures>() {
        return Some(e);
    }
    #[cfg(all(feature = "sqlite", any(feature = "deadpool", feature = "bb8")))]
    if let Some(e) = error.downcast_ref::<crate::transaction::AttemptInterrupted>() {
        return Some(e);
    }
    #[cfg(feature = "sqlite")]
    if let Some(e) = error.downcast_ref::<crate::sqlite::InteractError>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<crate::Error>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<AttemptTimedOut>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<io::Error>() {
        return Some(e);
    }
    None
}
