//! The transaction helper on real PostgreSQL servers: conflicts and lost sessions re-run the
//! transaction, each effect lands exactly once, and a COMMIT whose reply is lost is never
//! re-run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbretry::bb8::Pool as Bb8Pool;
use dbretry::bb8_postgres::PostgresConnectionManager;
use dbretry::deadpool_postgres::{Manager, Pool};
use dbretry::{ErrorKind, Retrier, RetryPolicy};
use tokio::sync::Barrier;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};

use crate::support::{self, FaultProxy, Mode, PgCluster};

fn deadpool(config: tokio_postgres::Config) -> Pool {
    Pool::builder(Manager::new(config, NoTls))
        .max_size(4)
        .build()
        .unwrap()
}

async fn bb8(config: tokio_postgres::Config) -> Bb8Pool<PostgresConnectionManager<NoTls>> {
    Bb8Pool::new(
        bb8::Pool::builder().max_size(4),
        PostgresConnectionManager::new(config, NoTls),
    )
    .await
    .unwrap()
}

/// Conflicts retried at once, and without limit but a deadline: the retries under test are
/// counted, not timed.
fn conflict_retrier() -> Retrier {
    Retrier::new(RetryPolicy::LOCK_CONFLICTS)
}

/// Runs `$body` once with a deadpool pool and once with a bb8 pool on `$pg`, both named
/// `$pool` (the closure's transaction type differs; the code reads the same).
macro_rules! on_both_pools {
    ($pg:expr, |$pool:ident| $body:block) => {{
        {
            let $pool = deadpool($pg.config());
            $body
        }
        {
            let $pool = bb8($pg.config()).await;
            $body
        }
    }};
}

async fn count(pg: &PgCluster, sql: &str) -> i64 {
    pg.admin().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_serializable_transactions_both_complete_and_apply_once_each() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE ledger (source text NOT NULL)")
        .await;
    on_both_pools!(pg, |pool| {
        pg.execute("TRUNCATE ledger").await;
        let retrier = conflict_retrier();
        // Both read before either writes (on their first run): a write skew that SERIALIZABLE
        // must break by failing one of them with 40001.
        let both_read = Barrier::new(2);
        let runs = [AtomicU32::new(0), AtomicU32::new(0)];
        let transfer = |who: usize| {
            let (retrier, pool, both_read, runs) = (&retrier, &pool, &both_read, &runs);
            async move {
                retrier
                    .transaction(pool)
                    .isolation_level(IsolationLevel::Serializable)
                    .run(async |tx| {
                        let run = runs[who].fetch_add(1, Ordering::SeqCst);
                        let seen: i64 = tx
                            .query_one("SELECT count(*) FROM ledger", &[])
                            .await?
                            .get(0);
                        if run == 0 {
                            both_read.wait().await;
                        }
                        let source = format!("writer {who}");
                        tx.execute("INSERT INTO ledger (source) VALUES ($1)", &[&source])
                            .await?;
                        Ok::<_, tokio_postgres::Error>(seen)
                    })
                    .await
            }
        };
        let (first, second) = tokio::join!(transfer(0), transfer(1));
        let seen = [first.unwrap(), second.unwrap()];
        let runs = runs.map(|r| r.into_inner());
        assert_eq!(runs.iter().sum::<u32>(), 3, "the loser ran twice: {runs:?}");
        // The loser's re-run saw the winner's row: the serial order is real.
        let loser = runs.iter().position(|&r| r == 2).unwrap();
        assert_eq!(seen[loser], 1);
        assert_eq!(seen[1 - loser], 0);
        for who in 0..2 {
            let rows = count(
                &pg,
                &format!("SELECT count(*) FROM ledger WHERE source = 'writer {who}'"),
            )
            .await;
            assert_eq!(rows, 1, "writer {who}'s row is applied exactly once");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transactions_that_deadlock_both_complete() {
    let pg = PgCluster::start().await;
    pg.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
         CREATE TABLE transfers (source text NOT NULL)",
    )
    .await;
    on_both_pools!(pg, |pool| {
        pg.execute("TRUNCATE accounts, transfers; INSERT INTO accounts VALUES (1, 0), (2, 0)")
            .await;
        let retrier = conflict_retrier();
        let both_locked = Barrier::new(2);
        let runs = AtomicU32::new(0);
        let deadlocks = Arc::new(AtomicU32::new(0));
        let counted = deadlocks.clone();
        let retrier = retrier.on_retry(move |event| {
            let deadlocked = event
                .error
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::code)
                == Some(&SqlState::T_R_DEADLOCK_DETECTED);
            if deadlocked {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Each locks one row, waits for the other to lock the other row, then wants it.
        let transfer = |first: i32, second: i32| {
            let (retrier, pool, both_locked, runs) = (&retrier, &pool, &both_locked, &runs);
            async move {
                let first_run = AtomicU32::new(0);
                retrier
                    .transaction(pool)
                    .run(async |tx| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tx.batch_execute("SET LOCAL deadlock_timeout = '20ms'")
                            .await?;
                        let update = "UPDATE accounts SET balance = balance + 1 WHERE id = $1";
                        tx.execute(update, &[&first]).await?;
                        if first_run.fetch_add(1, Ordering::SeqCst) == 0 {
                            both_locked.wait().await;
                        }
                        tx.execute(update, &[&second]).await?;
                        let source = format!("{first}->{second}");
                        tx.execute("INSERT INTO transfers VALUES ($1)", &[&source])
                            .await?;
                        Ok::<_, tokio_postgres::Error>(())
                    })
                    .await
            }
        };
        let (a, b) = tokio::join!(transfer(1, 2), transfer(2, 1));
        a.unwrap();
        b.unwrap();
        assert_eq!(
            deadlocks.load(Ordering::SeqCst),
            1,
            "one of them was the victim"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(count(&pg, "SELECT count(*) FROM transfers").await, 2);
        // Each transfer added 1 to both accounts, exactly once.
        assert_eq!(
            count(&pg, "SELECT sum(balance)::int8 FROM accounts").await,
            4
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_terminated_before_commit_is_re_run_on_a_new_connection_and_applied_once() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE visits (backend int NOT NULL)")
        .await;
    on_both_pools!(pg, |pool| {
        pg.execute("TRUNCATE visits").await;
        let policy = RetryPolicy::builder()
            .initial_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        let retrier = Retrier::new(policy);
        let backends = std::sync::Mutex::new(Vec::new());
        retrier
            .transaction(&pool)
            .run(async |tx| {
                let backend: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
                tx.execute("INSERT INTO visits VALUES ($1)", &[&backend])
                    .await?;
                let first = {
                    let mut backends = backends.lock().unwrap();
                    backends.push(backend);
                    backends.len() == 1
                };
                if first {
                    // The server ends the session while the closure runs.
                    assert!(pg.terminate_backends().await >= 1);
                }
                tx.query_one("SELECT 1", &[]).await?;
                Ok::<_, tokio_postgres::Error>(())
            })
            .await
            .unwrap();
        let backends = backends.into_inner().unwrap();
        assert_eq!(backends.len(), 2, "re-run once");
        assert_ne!(backends[0], backends[1], "on a new connection");
        assert_eq!(count(&pg, "SELECT count(*) FROM visits").await, 1);
        let applied = count(&pg, "SELECT min(backend)::int8 FROM visits").await;
        assert_eq!(
            applied,
            i64::from(backends[1]),
            "the re-run's insert is the one applied"
        );
    });
}

/// The fault the next two tests inject: the connection goes while its COMMIT is in flight.
#[derive(Clone, Copy, Debug)]
enum CommitFault {
    /// The proxy resets it: the client learns at once.
    Reset,
    /// The proxy drops everything silently: only the try's bound ends the wait.
    Silence,
}

/// Sets up a table whose COMMIT blocks (a deferred trigger takes an advisory lock the test
/// holds), runs one transaction through a proxy, injects `fault` once the COMMIT is seen
/// waiting on the server, then lets the server commit. Returns the helper's error, the runs
/// of the closure and the rows applied.
async fn commit_in_flight(fault: CommitFault, on_bb8: bool) -> (dbretry::Error, u32, i64) {
    let pg = PgCluster::start().await;
    pg.execute(
        "CREATE TABLE orders (note text NOT NULL);
         CREATE FUNCTION wait_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON orders
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wait_for_test()",
    )
    .await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    // The bound only ends the silent wait; everything before COMMIT takes a few round trips.
    let attempt_timeout =
        (support::time_to_connect(&pg.config()).await * 20).max(Duration::from_secs(2));
    let policy = RetryPolicy::builder()
        .initial_delay(Duration::from_millis(10))
        .attempt_timeout(attempt_timeout)
        .build()
        .unwrap();
    let retrier = Retrier::new(policy);
    let holder = pg.admin().await;
    holder
        .batch_execute("SELECT pg_advisory_lock(4242)")
        .await
        .unwrap();
    let runs = AtomicU32::new(0);
    let body = async |tx: &tokio_postgres::Transaction<'_>| {
        runs.fetch_add(1, Ordering::SeqCst);
        tx.execute("INSERT INTO orders VALUES ('one')", &[]).await?;
        Ok::<_, tokio_postgres::Error>(())
    };
    let inject = async {
        // Wait until the COMMIT is on the server, blocked on the test's lock.
        loop {
            let waiting = count(
                &pg,
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query = 'COMMIT' AND wait_event_type = 'Lock'",
            )
            .await;
            if waiting == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match fault {
            CommitFault::Reset => proxy.set_mode(Mode::Reset).await,
            CommitFault::Silence => assert!(proxy.silence_open_connections() >= 1),
        }
        holder
            .batch_execute("SELECT pg_advisory_unlock(4242)")
            .await
            .unwrap();
    };
    let config = pg.config_via(proxy.addr());
    let (error, ()) = if on_bb8 {
        let pool = bb8(config).await;
        let run = retrier.transaction(&pool).run(async |tx| body(tx).await);
        tokio::join!(run, inject)
    } else {
        let pool = deadpool(config);
        let run = retrier.transaction(&pool).run(async |tx| body(tx).await);
        tokio::join!(run, inject)
    };
    let error = dbretry::Error::from(error.expect_err("the commit's outcome is unknown"));
    // The server goes on with the COMMIT it received: wait until it is done.
    let started = Instant::now();
    let committing =
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'COMMIT' AND state = 'active'";
    while count(&pg, committing).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "COMMIT never finished"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rows = count(&pg, "SELECT count(*) FROM orders").await;
    (error, runs.into_inner(), rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_while_commit_is_in_flight_is_reported_as_unknown_and_not_re_run() {
    for on_bb8 in [false, true] {
        let (error, runs, rows) = commit_in_flight(CommitFault::Reset, on_bb8).await;
        assert_eq!(error.kind(), ErrorKind::CommitOutcomeUnknown, "{error}");
        assert_eq!(runs, 1, "not re-run");
        // The server did commit: a re-run would have applied the order twice.
        assert_eq!(rows, 1);
        assert!(
            error.to_string().starts_with("commit outcome unknown"),
            "{error}"
        );
        assert!(error.cause().is_some(), "the cause is kept: {error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reply_never_comes_is_reported_as_unknown_when_the_try_times_out() {
    let (error, runs, rows) = commit_in_flight(CommitFault::Silence, false).await;
    assert_eq!(error.kind(), ErrorKind::CommitOutcomeUnknown, "{error}");
    assert_eq!(runs, 1, "not re-run");
    assert_eq!(rows, 1);
    assert!(
        error.find_cause::<dbretry::AttemptTimedOut>().is_some(),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closures_own_error_comes_back_unchanged_and_the_transaction_is_rolled_back() {
    #[derive(Debug, thiserror::Error)]
    enum TransferError {
        #[error("insufficient funds")]
        InsufficientFunds,
        #[error(transparent)]
        Db(#[from] tokio_postgres::Error),
    }
    impl dbretry::Classify for TransferError {
        fn classify(&self, phase: dbretry::Phase) -> dbretry::ErrorClass {
            match self {
                Self::InsufficientFunds => dbretry::ErrorClass::Permanent,
                Self::Db(e) => e.classify(phase),
            }
        }
    }
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE moves (n int)").await;
    on_both_pools!(pg, |pool| {
        let runs = AtomicU32::new(0);
        let error = Retrier::new(RetryPolicy::default())
            .transaction(&pool)
            .run(async |tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                tx.execute("INSERT INTO moves VALUES (1)", &[]).await?;
                Err::<(), _>(TransferError::InsufficientFunds)
            })
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Query);
        assert!(matches!(
            error.into_operation_error(),
            Ok(TransferError::InsufficientFunds)
        ));
        assert_eq!(runs.into_inner(), 1);
        assert_eq!(
            count(&pg, "SELECT count(*) FROM moves").await,
            0,
            "rolled back"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_future_is_send_and_runs_on_a_spawned_task() {
    let pg = PgCluster::start().await;
    let pool = deadpool(pg.config());
    let bb8_pool = bb8(pg.config()).await;
    let retrier = Retrier::new(RetryPolicy::default());
    let spawned = tokio::spawn(async move {
        let a = retrier
            .transaction(&pool)
            .run(async |tx| {
                let row = tx.query_one("SELECT 1", &[]).await?;
                Ok::<i32, tokio_postgres::Error>(row.get(0))
            })
            .await
            .unwrap();
        let b = retrier
            .transaction(&bb8_pool)
            .read_only(true)
            .run(async |tx| {
                let row = tx.query_one("SELECT 2", &[]).await?;
                Ok::<i32, tokio_postgres::Error>(row.get(0))
            })
            .await
            .unwrap();
        a + b
    });
    assert_eq!(spawned.await.unwrap(), 3);
}
