//! One retried run: the attempt counter, the clock and the give-up rules, shared by the plain
//! retry loop and the pools' shared reconnect.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::hooks::{RetryEvent, SuccessEvent};
use super::{OperationError, Retrier};
use crate::classify::{AttemptTimedOut, ErrorClass, Phase};
use crate::error::{Error, ErrorChain, ErrorKind, SharedCause};

/// The outcome of one try.
pub(crate) enum Attempt<T> {
    Succeeded(T),
    Failed(Failure),
}

/// A failed try: its error and class. Cheap to clone so that one failure can be reported to
/// every caller waiting on the same reconnect.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) cause: SharedCause,
    pub(crate) class: ErrorClass,
}

impl Failure {
    pub(crate) fn new<E: OperationError>(error: E, phase: Phase) -> Self {
        Self {
            class: error.classify(phase),
            cause: Arc::from(error.into()),
        }
    }
}

pub(crate) struct Run<'r> {
    retrier: &'r Retrier,
    start: Instant,
    deadline: Option<Instant>,
    attempts: u32,
    last_failure: Option<Failure>,
}

impl<'r> Run<'r> {
    pub(crate) fn start(retrier: &'r Retrier) -> Self {
        let start = Instant::now();
        Self {
            retrier,
            start,
            deadline: retrier.policy.max_elapsed.map(|limit| start + limit),
            attempts: 0,
            last_failure: None,
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Makes one try, bounded by `attempt_timeout` and by what is left of the deadline.
    pub(crate) async fn attempt<T, E, Fut>(&mut self, attempt: Fut) -> Attempt<T>
    where
        Fut: Future<Output = Result<T, E>>,
        E: OperationError,
    {
        self.attempts += 1;
        let outcome = match self.attempt_bound() {
            None => attempt
                .await
                .map_err(|e| Failure::new(e, self.retrier.phase)),
            Some(bound) => match tokio::time::timeout(bound, attempt).await {
                Ok(result) => result.map_err(|e| Failure::new(e, self.retrier.phase)),
                Err(_) => Err(self.timed_out(bound)),
            },
        };
        match outcome {
            Ok(value) => {
                self.succeeded();
                Attempt::Succeeded(value)
            }
            Err(failure) => {
                self.last_failure = Some(failure.clone());
                Attempt::Failed(failure)
            }
        }
    }

    /// The failure of a try cut short: [`AttemptTimedOut`] when `attempt_timeout` cut it; when
    /// the deadline did, the previous try's real error if there was one, since that says more
    /// about why the database is unavailable than "ran out of time".
    fn timed_out(&self, bound: Duration) -> Failure {
        let cut_by_deadline = self
            .retrier
            .policy
            .attempt_timeout
            .is_none_or(|timeout| bound < timeout);
        match &self.last_failure {
            Some(previous) if cut_by_deadline => previous.clone(),
            _ => Failure::new(AttemptTimedOut { timeout: bound }, self.retrier.phase),
        }
    }

    fn attempt_bound(&self) -> Option<Duration> {
        let left = self
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match (self.retrier.policy.attempt_timeout, left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts a try made on this run's behalf by someone else (the pool's shared reconnect).
    pub(crate) fn observed(&mut self) {
        self.attempts += 1;
    }

    pub(crate) fn succeeded(&self) {
        let event = SuccessEvent {
            attempts: self.attempts,
            elapsed: self.start.elapsed(),
        };
        if self.attempts > 1 {
            tracing::info!(
                target: "dbretry",
                attempts = event.attempts,
                elapsed_ms = millis(event.elapsed),
                "succeeded after retrying"
            );
        }
        if let Some(hook) = &self.retrier.hooks.on_success {
            hook(&event);
        }
    }

    /// After a failed try: gives up with the final error, or sleeps `delay` so the caller can
    /// try again.
    pub(crate) async fn settle(&mut self, failure: Failure, delay: Duration) -> Result<(), Error> {
        self.check_continue(&failure, delay)?;
        self.announce_retry(&failure, delay);
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Gives up if `failure` is permanent, the attempts are spent, or waiting `delay` would pass
    /// the deadline.
    pub(crate) fn check_continue(&self, failure: &Failure, delay: Duration) -> Result<(), Error> {
        if failure.class == ErrorClass::Permanent {
            let kind = match self.retrier.phase {
                Phase::Connect => ErrorKind::Connection,
                _ => ErrorKind::Query,
            };
            return Err(self.give_up(kind, Some(failure)));
        }
        if self.attempts >= self.retrier.policy.max_attempts {
            return Err(self.give_up(ErrorKind::RetryExhausted, Some(failure)));
        }
        if self.deadline.is_some_and(|d| Instant::now() + delay >= d) {
            return Err(self.give_up(ErrorKind::Timeout, Some(failure)));
        }
        Ok(())
    }

    pub(crate) fn announce_retry(&self, failure: &Failure, delay: Duration) {
        let event = RetryEvent {
            attempt: self.attempts,
            delay,
            elapsed: self.start.elapsed(),
            class: failure.class,
            error: &*failure.cause,
        };
        tracing::warn!(
            target: "dbretry",
            attempt = event.attempt,
            max_attempts = self.retrier.policy.max_attempts,
            delay_ms = millis(delay),
            class = failure.class.as_str(),
            error = %ErrorChain(&*failure.cause),
            "transient failure, retrying"
        );
        if let Some(hook) = &self.retrier.hooks.on_retry {
            hook(&event);
        }
    }

    /// The final error, announced to the log and the give-up hook.
    pub(crate) fn give_up(&self, kind: ErrorKind, failure: Option<&Failure>) -> Error {
        let error = Error::new(
            kind,
            self.attempts,
            self.start.elapsed(),
            failure.map(|f| f.class),
            failure.map(|f| f.cause.clone()),
        );
        tracing::error!(
            target: "dbretry",
            reason = kind.as_str(),
            attempts = self.attempts,
            elapsed_ms = millis(error.elapsed()),
            error = %error,
            "giving up"
        );
        if let Some(hook) = &self.retrier.hooks.on_give_up {
            hook(&error);
        }
        error
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
