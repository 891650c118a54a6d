//! One retried run: the attempt counter, the clock and the give-up rules, shared by the plain
//! retry loop and the pools' shared reconnect.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use tokio::time::Instant;

use super::Retrier;
use super::hooks::{RetryEvent, SuccessEvent};
use super::retry_error::{Lent, RetryError};
use crate::classify::{AttemptTimedOut, Classify, ErrorClass, OperationError, Phase};
use crate::error::{Error, ErrorKind};
use crate::failure::{ErrorChain, Failure};
use crate::metrics;

/// The outcome of one try.
pub(crate) enum Attempt<T> {
    Succeeded(T),
    Failed(Failure),
}

pub(crate) struct Run<'r> {
    retrier: &'r Retrier,
    start: Instant,
    deadline: Option<Instant>,
    attempts: u32,
    last_failure: Option<Failure>,
    squeezed_last_try: bool,
}

impl<'r> Run<'r> {
    pub(crate) fn start(retrier: &'r Retrier) -> Self {
        let start = Instant::now();
        Self {
            retrier,
            start,
            deadline: retrier
                .policy
                .max_elapsed
                .map(|limit| crate::time::later(start, limit)),
            attempts: 0,
            last_failure: None,
            squeezed_last_try: false,
        }
    }

    /// Ends this run by `deadline` too, if it is earlier than the policy's (the deadline of
    /// the checkout a pool's connect is made for).
    pub(crate) fn within(mut self, deadline: Option<Instant>) -> Self {
        if let Some(deadline) = deadline {
            self.deadline = Some(self.deadline.map_or(deadline, |own| own.min(deadline)));
        }
        self
    }

    pub(crate) fn retrier(&self) -> &'r Retrier {
        self.retrier
    }

    fn label(&self) -> &str {
        &self.retrier.name
    }

    fn phase(&self) -> &'static str {
        self.retrier.phase.as_str()
    }

    /// The phase errors are classified in.
    pub(crate) fn phase_kind(&self) -> Phase {
        self.retrier.phase
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
        let bound = self.bound();
        let began = self.begin_attempt();
        let span = self.attempt_span();
        let attempt = attempt.instrument(span.clone());
        let outcome = match bound {
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
                span.record("class", "success");
                self.record_attempt(began, "success");
                self.succeeded();
                Attempt::Succeeded(value)
            }
            Err(failure) => {
                record_failure(&span, &failure);
                self.record_attempt(began, failure.class().as_str());
                self.last_failure = Some(failure.clone());
                Attempt::Failed(failure)
            }
        }
    }

    /// Counts the try about to be made; returns when it began.
    pub(crate) fn begin_attempt(&mut self) -> Instant {
        self.attempts += 1;
        Instant::now()
    }

    /// The span of the try just begun (`dbretry.attempt`, DEBUG, target `dbretry::attempt`):
    /// pool, phase and attempt number; its outcome's class and SQLSTATE are recorded when it
    /// ends.
    pub(crate) fn attempt_span(&self) -> tracing::Span {
        tracing::debug_span!(
            target: "dbretry::attempt",
            "dbretry.attempt",
            pool = self.label(),
            phase = self.phase(),
            attempt = self.attempts,
            class = tracing::field::Empty,
            sqlstate = tracing::field::Empty,
        )
    }

    /// Records the outcome (`success`, `transient`, `permanent`) of the try begun at `began`.
    pub(crate) fn record_attempt(&self, began: Instant, outcome: &'static str) {
        metrics::attempt(self.label(), self.phase(), outcome, began.elapsed());
    }

    /// The failure of a try cut short: [`AttemptTimedOut`] when `attempt_timeout` cut it; when
    /// the deadline did, the previous try's real error if there was one, since that says more
    /// about why the database is unavailable than "ran out of time".
    pub(crate) fn timed_out(&self, bound: Duration) -> Failure {
        self.cut(
            bound,
            Failure::new(AttemptTimedOut { timeout: bound }, self.retrier.phase),
        )
    }

    /// Like [`Run::timed_out`], with `failure` saying how the try was cut.
    pub(crate) fn cut(&self, bound: Duration, failure: Failure) -> Failure {
        let cut_by_deadline = self
            .retrier
            .policy
            .attempt_timeout
            .is_none_or(|timeout| bound < timeout);
        match &self.last_failure {
            Some(previous) if cut_by_deadline => previous.clone(),
            _ => failure,
        }
    }

    /// How long the next try may take: `attempt_timeout`, or less when the deadline is nearer.
    pub(crate) fn bound(&self) -> Option<Duration> {
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
                target: "dbretry::retry",
                pool = self.label(),
                phase = self.phase(),
                attempts = event.attempts,
                elapsed_ms = millis(event.elapsed),
                "succeeded after retrying"
            );
        }
        if let Some(hook) = &self.retrier.hooks.on_success {
            hook(&event);
        }
    }

    /// After a failed try of an operation: the delay before the next try, or why to stop —
    /// the policy's rules, then the retry budget. When `delay` would reach the deadline, one
    /// last try is made shortly before it instead (sleeping until
    /// `deadline - min(left / 2, 250 ms)`), so that a caller is not given up on long before
    /// its deadline just because the next backoff step is long.
    pub(crate) fn next_try(
        &mut self,
        class: ErrorClass,
        cause: &(dyn StdError + 'static),
        delay: Duration,
    ) -> Result<Duration, ErrorKind> {
        let delay = match self.stop_kind(class, cause, delay) {
            None => delay,
            Some(ErrorKind::Timeout) => {
                self.last_try_before_deadline().ok_or(ErrorKind::Timeout)?
            }
            Some(kind) => return Err(kind),
        };
        if let Some(budget) = &self.retrier.budget
            && !budget.withdraw()
        {
            return Err(ErrorKind::BudgetExhausted);
        }
        Ok(delay)
    }

    /// Announces the retry after `failure` and sleeps `delay`.
    pub(crate) async fn retry_after(&mut self, failure: Failure, delay: Duration) {
        self.announce_retry(&failure, delay);
        self.last_failure = Some(failure);
        tokio::time::sleep(delay).await;
    }

    /// The sleep before a last try squeezed in before the deadline, once per run, if enough
    /// time is left for one.
    fn last_try_before_deadline(&mut self) -> Option<Duration> {
        const LONGEST_LAST_WINDOW: Duration = Duration::from_millis(250);
        const SHORTEST_LAST_WINDOW: Duration = Duration::from_millis(10);
        let left = self.deadline?.saturating_duration_since(Instant::now());
        if self.squeezed_last_try || left < SHORTEST_LAST_WINDOW * 2 {
            return None;
        }
        self.squeezed_last_try = true;
        Some(left - (left / 2).min(LONGEST_LAST_WINDOW))
    }

    /// Gives up if `failure` is permanent, the attempts are spent, or waiting `delay` would pass
    /// the deadline.
    pub(crate) fn check_continue(&self, failure: &Failure, delay: Duration) -> Result<(), Error> {
        self.check_continue_quietly(failure, delay)
            .map_err(|error| self.announce_give_up(error))
    }

    fn check_continue_quietly(&self, failure: &Failure, delay: Duration) -> Result<(), Error> {
        match self.stop_kind(failure.class(), failure.cause(), delay) {
            None => Ok(()),
            Some(kind) => Err(self.final_error(kind, Some(failure))),
        }
    }

    /// Why to stop after a failure of `class` when the next try would come after `delay`, if
    /// the policy says so.
    fn stop_kind(
        &self,
        class: ErrorClass,
        cause: &(dyn StdError + 'static),
        delay: Duration,
    ) -> Option<ErrorKind> {
        if class == ErrorClass::Permanent {
            Some(self.permanent_kind(cause))
        } else if self.attempts >= self.retrier.policy.max_attempts {
            Some(ErrorKind::RetryExhausted)
        } else if self.deadline.is_some_and(|d| {
            crate::time::later(Instant::now(), delay.saturating_add(TIMER_GRANULARITY)) >= d
        }) {
            Some(ErrorKind::Timeout)
        } else {
            None
        }
    }

    /// A permanent failure is a connection error when connecting, or when the operation failed
    /// on a pool's permanent connect error (a `get()` inside it); otherwise a query error.
    fn permanent_kind(&self, cause: &(dyn StdError + 'static)) -> ErrorKind {
        let connecting = self.retrier.phase == Phase::Connect
            || chain(cause).any(|e| {
                e.downcast_ref::<Error>()
                    .is_some_and(|inner| inner.kind() == ErrorKind::Connection)
            });
        if connecting {
            ErrorKind::Connection
        } else {
            ErrorKind::Query
        }
    }

    pub(crate) fn announce_retry(&self, failure: &Failure, delay: Duration) {
        let event = RetryEvent {
            attempt: self.attempts,
            delay,
            elapsed: self.start.elapsed(),
            class: failure.class(),
            error: failure.cause(),
        };
        metrics::retry(self.label(), self.phase(), delay);
        tracing::warn!(
            target: "dbretry::retry",
            pool = self.label(),
            phase = self.phase(),
            attempt = event.attempt,
            max_attempts = self.retrier.policy.max_attempts,
            delay_ms = millis(delay),
            class = failure.class().as_str(),
            error = %ErrorChain(failure.cause()),
            "transient failure, retrying"
        );
        if let Some(hook) = &self.retrier.hooks.on_retry {
            hook(&event);
        }
    }

    /// The final error, announced to the log, the metrics and the give-up hook.
    pub(crate) fn give_up(&self, kind: ErrorKind, failure: Option<&Failure>) -> Error {
        self.announce_give_up(self.final_error(kind, failure))
    }

    /// The final error with the operation's own error lent to it as the last cause, for the
    /// log and the give-up hook, and handed back by value.
    pub(crate) fn give_up_with<E>(&self, kind: ErrorKind, own: E) -> RetryError<E>
    where
        E: Classify + StdError + Send + Sync + 'static,
    {
        let own = Arc::new(own);
        let failure = Failure::new(Lent(own.clone()), self.retrier.phase);
        let error = self.give_up(kind, Some(&failure));
        drop(failure);
        RetryError::new(error, Some(own))
    }

    fn final_error(&self, kind: ErrorKind, failure: Option<&Failure>) -> Error {
        Error::new(kind, self.attempts, self.start.elapsed(), failure.cloned())
    }

    pub(crate) fn announce_give_up(&self, error: Error) -> Error {
        let kind = error.kind();
        metrics::give_up(self.label(), self.phase(), kind.give_up_reason());
        tracing::error!(
            target: "dbretry::retry",
            pool = self.label(),
            phase = self.phase(),
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

/// tokio's timers round a sleep up to the next millisecond: a try planned just before the
/// deadline could otherwise start at it, with no time left.
const TIMER_GRANULARITY: Duration = Duration::from_millis(1);

/// An error and its sources.
pub(crate) fn chain<'e>(
    error: &'e (dyn StdError + 'static),
) -> impl Iterator<Item = &'e (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'e (dyn StdError + 'static)| {
        (*e).source()
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Records a failed try's class and SQLSTATE (or SQLite code) on its span.
pub(crate) fn record_failure(span: &tracing::Span, failure: &Failure) {
    span.record("class", failure.class().as_str());
    if let Some(code) = failure.sqlstate() {
        span.record("sqlstate", code);
    } else if let Some(code) = failure.sqlite_code() {
        span.record("sqlstate", code);
    }
}
