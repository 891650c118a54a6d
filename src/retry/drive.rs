//! The loop every retried operation runs: one try at a time, each bounded, the policy and the
//! budget deciding after each failure. [`Retrier::run`](super::Retrier::run) and the
//! transaction helpers differ only in what one try does; each writes the loop as
//!
//! ```text
//! let mut driver = Driver::start(retrier);
//! loop {
//!     let bound = driver.begin();
//!     let tried = one_try(bound).instrument(driver.span()).await;
//!     if let Some(result) = driver.settle(tried).await {
//!         return result;
//!     }
//! }
//! ```
//!
//! (a loop in the caller rather than a closure given to a function, so that the caller's
//! future stays `Send` whatever it borrows).

use std::error::Error as StdError;
use std::time::Duration;

use tokio::time::Instant;

use super::{Retrier, RetryError, Run};
use crate::classify::Classify;
use crate::error::{Error, ErrorKind};
use crate::failure::Failure;
use crate::policy::Schedule;

/// What one try came to. (Some kinds are only met on SQLite or with pools.)
#[cfg_attr(not(all(feature = "sqlite", pools)), allow(dead_code))]
pub(crate) enum Tried<T, E> {
    /// It succeeded.
    Succeeded(T),
    /// The operation returned its own error (handed back by value if it ends the run).
    Failed(E),
    /// Something around the operation failed: a checkout, `BEGIN`, a lost connection.
    Broke(Failure),
    /// The try was cut at this bound (attempt timeout or deadline), with no outcome.
    TimedOut(Duration),
    /// The try was cut at this bound and stopped, as `failure` says; when the deadline cut
    /// it, an earlier try's real error says more.
    Cut(Duration, Failure),
    /// Stop now, whatever the policy says: retrying could apply the operation twice.
    Stop(ErrorKind, Failure),
    /// Stop with this error, made by someone who retried already (a pool's checkout).
    GiveUp(Error),
}

/// One retried operation's run: tries counted, the schedule, the budget.
pub(crate) struct Driver<'r> {
    run: Run<'r>,
    /// Made at the first failure: seeding it costs a system call a successful run never needs.
    schedule: Option<Schedule<rand::rngs::SmallRng>>,
    began: Instant,
    /// The current try's span.
    span: tracing::Span,
}

impl<'r> Driver<'r> {
    /// Starts a run under `retrier`; the first try counts towards its budget.
    pub(crate) fn start(retrier: &'r Retrier) -> Self {
        retrier.register_operations();
        if let Some(budget) = &retrier.budget {
            budget.deposit();
        }
        Self {
            run: Run::start(retrier),
            schedule: None,
            began: Instant::now(),
            span: tracing::Span::none(),
        }
    }

    /// Counts the next try; returns its bound (`attempt_timeout`, or less near the deadline).
    pub(crate) fn begin(&mut self) -> Option<Duration> {
        let bound = self.run.bound();
        self.began = self.run.begin_attempt();
        self.span = self.run.attempt_span();
        bound
    }

    /// The current try's span (`dbretry.attempt`), for the caller to run the try in.
    pub(crate) fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    fn next_delay(&mut self) -> Duration {
        let policy = &self.run.retrier().policy;
        self.schedule
            .get_or_insert_with(|| policy.schedule())
            .next_delay()
    }

    /// The run's deadline (`max_elapsed` from its start), if any.
    #[cfg_attr(not(all(feature = "sqlite", pools)), allow(dead_code))]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.run.deadline()
    }

    /// Records the try's outcome; after a failure, sleeps before the next try (`None`) or
    /// gives up (`Some(Err)`); after a success, `Some(Ok)`.
    pub(crate) async fn settle<T, E>(
        &mut self,
        tried: Tried<T, E>,
    ) -> Option<Result<T, RetryError<E>>>
    where
        E: Classify + StdError + Send + Sync + 'static,
    {
        let phase = self.run.phase_kind();
        let failure = match tried {
            Tried::Succeeded(value) => {
                self.span.record("class", "success");
                self.run.record_attempt(self.began, "success");
                self.run.succeeded();
                return Some(Ok(value));
            }
            Tried::Failed(error) => {
                let class = error.classify(phase);
                self.span.record("class", class.as_str());
                self.run.record_attempt(self.began, class.as_str());
                let delay = self.next_delay();
                return match self.run.next_try(class, &error, delay) {
                    Ok(delay) => {
                        // The try is over: its span closes before the backoff.
                        self.span = tracing::Span::none();
                        self.run
                            .retry_after(Failure::new(error, phase), delay)
                            .await;
                        None
                    }
                    Err(kind) => Some(Err(self.run.give_up_with(kind, error))),
                };
            }
            Tried::Stop(kind, failure) => {
                super::run::record_failure(&self.span, &failure);
                self.run
                    .record_attempt(self.began, failure.class().as_str());
                let error = self.run.give_up(kind, Some(&failure));
                return Some(Err(RetryError::new(error, None)));
            }
            Tried::GiveUp(error) => {
                let outcome = error.class().map_or("permanent", |class| class.as_str());
                self.span.record("class", outcome);
                self.run.record_attempt(self.began, outcome);
                return Some(Err(RetryError::new(self.run.announce_give_up(error), None)));
            }
            Tried::Broke(failure) => failure,
            Tried::TimedOut(bound) => self.run.timed_out(bound),
            Tried::Cut(bound, failure) => self.run.cut(bound, failure),
        };
        super::run::record_failure(&self.span, &failure);
        self.run
            .record_attempt(self.began, failure.class().as_str());
        let delay = self.next_delay();
        match self.run.next_try(failure.class(), failure.cause(), delay) {
            Ok(delay) => {
                self.span = tracing::Span::none();
                self.run.retry_after(failure, delay).await;
                None
            }
            Err(kind) => Some(Err(RetryError::new(
                self.run.give_up(kind, Some(&failure)),
                None,
            ))),
        }
    }
}
