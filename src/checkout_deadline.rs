//! The deadline of the checkout running on a task: `dbretry::bb8::Pool::get` and
//! `dbretry::deadpool::Pool::get` set it, so that the connects and checks the pool runs for
//! that checkout (on the same task) end by then — one budget per `get()`.

use tokio::time::Instant;

tokio::task_local! {
    pub(crate) static CHECKOUT_DEADLINE: Instant;
}

/// The deadline of the checkout this task is running, if it runs one of ours.
pub(crate) fn checkout_deadline() -> Option<Instant> {
    CHECKOUT_DEADLINE.try_with(|deadline| *deadline).ok()
}
