//! Turns to use an SQLite database file, taken first come first served by this process's
//! transactions on it, whatever pool they come from.
//!
//! SQLite lets one connection write at a time and leaves the others to poll for the lock in
//! its busy handler, which sleeps up to 100 ms between polls: whoever polls most often wins,
//! and a transaction that has waited longest can wait past its deadline while newer ones
//! commit. So writers take turns here (a fair read-write lock: first in, first out), and only
//! the writer whose turn it is waits on SQLite's lock — held by another process, say. In
//! rollback-journal mode readers and writers exclude each other too (a commit locks readers
//! out), so there readers take (shared) turns as well; in WAL mode readers never wait for
//! writers and take none. Waiting transactions hold no connection and no blocking thread.
//!
//! A pool learns its file and journal mode from a connection before its first transaction.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::events::{Diagnostics, PoolEvents};

/// The turns on one database file.
#[derive(Clone)]
pub(super) struct Turns {
    lock: Arc<RwLock<()>>,
    /// Readers take turns too (rollback-journal mode).
    readers: bool,
}

/// A transaction's turn, held until its try ends.
pub(super) enum Turn {
    /// Nobody else of this process writes meanwhile.
    Write(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
    /// Nobody of this process writes meanwhile.
    Read(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    /// A reader in WAL mode: it needs no turn.
    Free,
}

impl Turns {
    /// Waits for a turn to write (`writes`) or to read.
    pub(super) async fn take(&self, writes: bool) -> Turn {
        if writes {
            Turn::Write(self.lock.clone().write_owned().await)
        } else if self.readers {
            Turn::Read(self.lock.clone().read_owned().await)
        } else {
            Turn::Free
        }
    }
}

impl Turn {
    /// The try may write: it is the only one of this process waiting on SQLite's lock.
    pub(super) fn writes(&self) -> bool {
        matches!(self, Self::Write(_))
    }
}

/// The turns of each pool (found by its diagnostics' identity, which its clones share), and of
/// each file (shared by the pools on it).
struct Registry {
    pools: Vec<(Weak<PoolEvents>, Turns)>,
    files: Vec<(String, Weak<RwLock<()>>)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pools: Vec::new(),
    files: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The turns of this pool's file, once known.
pub(super) fn known(pool: &Diagnostics) -> Option<Turns> {
    registry()
        .pools
        .iter()
        .find(|(known, _)| std::ptr::eq(known.as_ptr(), Arc::as_ptr(&pool.0)))
        .map(|(_, turns)| turns.clone())
}

/// Records that this pool's connections open `file` (`None`: a private in-memory database,
/// with turns of its own), in WAL mode or not, and returns its turns. When the journal mode
/// could not be read (the file was locked), readers take turns too and nothing is recorded:
/// the next transaction asks again.
pub(super) fn learn(pool: &Diagnostics, file: Option<String>, wal: Option<bool>) -> Turns {
    let mut registry = registry();
    registry.pools.retain(|(known, _)| known.strong_count() > 0);
    registry.files.retain(|(_, lock)| lock.strong_count() > 0);
    if let Some((_, turns)) = registry
        .pools
        .iter()
        .find(|(known, _)| std::ptr::eq(known.as_ptr(), Arc::as_ptr(&pool.0)))
    {
        return turns.clone();
    }
    let shared = file.as_ref().and_then(|file| {
        registry
            .files
            .iter()
            .find(|(known, _)| known == file)
            .and_then(|(_, lock)| lock.upgrade())
    });
    let lock = shared.unwrap_or_default();
    if let Some(file) = file {
        registry.files.push((file, Arc::downgrade(&lock)));
    }
    let turns = Turns {
        lock,
        readers: wal != Some(true),
    };
    if wal.is_some() {
        registry
            .pools
            .push((Arc::downgrade(&pool.0), turns.clone()));
    }
    turns
}
