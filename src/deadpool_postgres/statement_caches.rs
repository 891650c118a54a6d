use std::sync::{Arc, Mutex, Weak};

use deadpool_postgres::StatementCache;
use tokio_postgres::types::Type;

/// The statement caches of every client a [`Manager`](super::Manager) handed out, to clear
/// them all or drop one statement from all of them (after a schema change, say) — as
/// deadpool-postgres's `StatementCaches`.
#[derive(Debug, Default)]
pub struct StatementCaches {
    caches: Mutex<Vec<Weak<StatementCache>>>,
}

impl StatementCaches {
    pub(crate) fn attach(&self, cache: &Arc<StatementCache>) {
        self.lock().push(Arc::downgrade(cache));
    }

    pub(crate) fn detach(&self, cache: &Arc<StatementCache>) {
        let cache = Arc::downgrade(cache);
        self.lock().retain(|known| !known.ptr_eq(&cache));
    }

    /// Clears the statement cache of every live client.
    pub fn clear(&self) {
        self.each(|cache| cache.clear());
    }

    /// Removes one statement from the cache of every live client.
    pub fn remove(&self, query: &str, types: &[Type]) {
        self.each(|cache| drop(cache.remove(query, types)));
    }

    fn each(&self, action: impl Fn(&StatementCache)) {
        for cache in self.lock().iter().filter_map(Weak::upgrade) {
            action(&cache);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<StatementCache>>> {
        self.caches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
