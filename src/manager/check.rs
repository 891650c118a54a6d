//! A check of a pooled connection (a ping, a recycle query), bounded in time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::{AttemptTimedOut, OperationError, Phase};
use crate::error::{Error, ErrorKind};
use crate::failure::Failure;

/// Runs `check`, bounded by `bound`; a failure is an [`ErrorKind::Connection`] error carrying
/// the check's error or [`AttemptTimedOut`].
pub(crate) async fn check_within<E: OperationError>(
    bound: Duration,
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), Error> {
    let started = Instant::now();
    let failure = match tokio::time::timeout(bound, check).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(error)) => Failure::new(error, Phase::Connect),
        Err(_) => Failure::new(AttemptTimedOut { timeout: bound }, Phase::Connect),
    };
    Err(Error::new(
        ErrorKind::Connection,
        1,
        started.elapsed(),
        Some(failure),
    ))
}
