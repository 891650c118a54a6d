//! The deadline of the checkout running on a task: `dbretry::bb8::Pool::get` and
//! `dbretry::deadpool::Pool::get` set it, so that the connects and checks the pool runs for
//! that checkout (on the same task) end by then — one budget per `get()`; and the checkout's
//! `tracing` span.

use tokio::time::Instant;

tokio::task_local! {
    pub(crate) static CHECKOUT_DEADLINE: Instant;
}

/// The deadline of the checkout this task is running, if it runs one of ours.
pub(crate) fn checkout_deadline() -> Option<Instant> {
    CHECKOUT_DEADLINE.try_with(|deadline| *deadline).ok()
}

/// The span of one checkout (`dbretry.checkout`, DEBUG, target `dbretry::checkout`), with the
/// pool's name: the connect attempts and checks made for it are its children.
#[cfg_attr(not(pools), allow(dead_code))]
pub(crate) fn checkout_span(pool: &str) -> tracing::Span {
    tracing::debug_span!(target: "dbretry::checkout", "dbretry.checkout", pool)
}
