//! The loop every retried operation runs: one try at a time, each bounded, the policy and the
//! budget deciding after each failure. [`Retrier::run`](super::Retrier::run) and the
//! transaction helpers differ only in what one try does.

use std::error::Error as StdError;
use std::time::Duration;

use super::{Retrier, RetryError, Run};
use crate::classify::Classify;
use crate::error::{Error, ErrorKind};
use crate::failure::Failure;

/// What one try came to.
pub(crate) enum Tried<T, E> {
    /// It succeeded.
    Succeeded(T),
    /// The operation returned its own error (handed back by value if it ends the run).
    Failed(E),
    /// Something around the operation failed: a checkout, `BEGIN`, a lost connection.
    Broke(Failure),
    /// The try was cut at this bound (attempt timeout or deadline), with no outcome.
    TimedOut(Duration),
    /// Stop now, whatever the policy says: retrying could apply the operation twice.
    Stop(ErrorKind, Failure),
    /// Stop with this error, made by someone who retried already (a pool's checkout).
    GiveUp(Error),
}

/// Runs tries made by `attempt` (given the bound of each) under `retrier` until one succeeds
/// or the retrier gives up.
pub(crate) async fn drive<T, E, A>(retrier: &Retrier, mut attempt: A) -> Result<T, RetryError<E>>
where
    A: AsyncFnMut(Option<Duration>) -> Tried<T, E>,
    E: Classify + StdError + Send + Sync + 'static,
{
    let mut run = Run::start(retrier);
    let mut schedule = retrier.policy.schedule();
    if let Some(budget) = &retrier.budget {
        budget.deposit();
    }
    loop {
        let bound = run.bound();
        let began = run.begin_attempt();
        let failure = match attempt(bound).await {
            Tried::Succeeded(value) => {
                run.record_attempt(began, "success");
                run.succeeded();
                return Ok(value);
            }
            Tried::Failed(error) => {
                let class = error.classify(retrier.phase);
                run.record_attempt(began, class.as_str());
                match run.next_try(class, &error, schedule.next_delay()) {
                    Ok(delay) => {
                        run.retry_after(Failure::new(error, retrier.phase), delay)
                            .await;
                        continue;
                    }
                    Err(kind) => return Err(run.give_up_with(kind, error)),
                }
            }
            Tried::Stop(kind, failure) => {
                run.record_attempt(began, failure.class().as_str());
                return Err(RetryError::new(run.give_up(kind, Some(&failure)), None));
            }
            Tried::GiveUp(error) => {
                let outcome = error.class().map_or("permanent", |class| class.as_str());
                run.record_attempt(began, outcome);
                return Err(RetryError::new(run.announce_give_up(error), None));
            }
            Tried::Broke(failure) => failure,
            Tried::TimedOut(bound) => run.timed_out(bound),
        };
        run.record_attempt(began, failure.class().as_str());
        match run.next_try(failure.class(), failure.cause(), schedule.next_delay()) {
            Ok(delay) => run.retry_after(failure, delay).await,
            Err(kind) => return Err(RetryError::new(run.give_up(kind, Some(&failure)), None)),
        }
    }
}
