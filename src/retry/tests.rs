use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::{ErrorClass, ErrorKind};

fn refused() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionRefused)
}

fn denied() -> io::Error {
    io::Error::from(io::ErrorKind::PermissionDenied)
}

/// Runs an operation that fails transiently `failures` times, recording when each try began.
async fn run_failing(
    retrier: &Retrier,
    failures: usize,
) -> (Result<usize, RetryError<io::Error>>, Vec<Duration>) {
    let start = Instant::now();
    let tries = Arc::new(Mutex::new(Vec::new()));
    let result = retrier
        .run(|| {
            let tries = tries.clone();
            async move {
                let mut tries = tries.lock().unwrap();
                tries.push(start.elapsed());
                if tries.len() <= failures {
                    Err(refused())
                } else {
                    Ok(tries.len())
                }
            }
        })
        .await;
    let tries = tries.lock().unwrap().clone();
    (result, tries)
}

fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn default_policy_without_jitter_sleeps_exactly_100_200_400_800_ms() {
    let retrier = Retrier::new(RetryPolicy::builder().jitter(false).build().unwrap());
    let (result, tries) = run_failing(&retrier, 4).await;
    assert_eq!(result.unwrap(), 5);
    assert_eq!(
        gaps(&tries),
        [100, 200, 400, 800].map(Duration::from_millis)
    );
}

#[tokio::test(start_paused = true)]
async fn default_policy_with_jitter_sleeps_within_ten_percent_of_the_timeline() {
    let retrier = Retrier::new(RetryPolicy::default());
    let (result, tries) = run_failing(&retrier, 4).await;
    assert_eq!(result.unwrap(), 5);
    for (gap, nominal) in gaps(&tries).iter().zip([0.1, 0.2, 0.4, 0.8]) {
        let secs = gap.as_secs_f64();
        assert!(
            (nominal * 0.9..=nominal * 1.1).contains(&secs),
            "{secs} vs {nominal}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_report_attempts_elapsed_and_last_cause() {
    let retrier = Retrier::new(RetryPolicy::builder().jitter(false).build().unwrap());
    let (result, tries) = run_failing(&retrier, usize::MAX).await;
    let error = result.unwrap_err();
    assert_eq!(tries.len(), 5);
    assert_eq!(error.kind(), ErrorKind::RetryExhausted);
    assert_eq!(error.attempts(), 5);
    assert_eq!(error.elapsed(), Duration::from_millis(1500));
    assert_eq!(error.error().class(), Some(ErrorClass::Transient));
    let cause = error
        .error()
        .find_cause::<io::Error>()
        .expect("the io error is the cause");
    assert_eq!(cause.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(
        error.to_string(),
        "database still unavailable after 5 attempts over 1.50s (max_attempts reached); \
         last error: connection refused"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_error_returns_after_exactly_one_attempt() {
    let calls = Arc::new(Mutex::new(0));
    let error = execute_with_retry(&RetryPolicy::default(), || {
        let calls = calls.clone();
        async move {
            *calls.lock().unwrap() += 1;
            Err::<(), _>(denied())
        }
    })
    .await
    .unwrap_err();
    assert_eq!(*calls.lock().unwrap(), 1);
    assert_eq!(error.kind(), ErrorKind::Query);
    assert_eq!(error.attempts(), 1);
    assert_eq!(error.elapsed(), Duration::ZERO);
    assert_eq!(error.class(), Some(ErrorClass::Permanent));
}

#[tokio::test(start_paused = true)]
async fn permanent_error_while_connecting_is_a_connection_error() {
    let retrier = Retrier::new(RetryPolicy::default()).phase(Phase::Connect);
    let error = retrier
        .run(|| async { Err::<(), _>(denied()) })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert!(
        error
            .to_string()
            .starts_with("cannot connect to the database (permanent error, not retried)")
    );
    assert_eq!(
        error.into_operation_error().unwrap().kind(),
        io::ErrorKind::PermissionDenied
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_squeezes_in_one_last_try_instead_of_sleeping_past_it() {
    let policy = RetryPolicy::builder()
        .jitter(false)
        .max_attempts(100)
        .max_elapsed(Duration::from_millis(1000))
        .build()
        .unwrap();
    let (result, tries) = run_failing(&Retrier::new(policy), usize::MAX).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    // Tries at 0, 0.1, 0.3, 0.7 s; the next would start at 1.5 s, past the deadline, so a
    // last one is made at 0.85 s (the deadline less half the 0.3 s left).
    assert_eq!(tries, [0, 100, 300, 700, 850].map(Duration::from_millis));
    assert_eq!(error.attempts(), 5);
    assert_eq!(error.elapsed(), Duration::from_millis(850));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_bounds_a_hung_try_and_counts_as_transient() {
    let policy = RetryPolicy::builder()
        .jitter(false)
        .max_attempts(3)
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = Instant::now();
    let error = Retrier::new(policy)
        .run(std::future::pending::<Result<(), io::Error>>)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RetryExhausted);
    assert_eq!(error.attempts(), 3);
    // 3 tries of 2 s plus sleeps of 0.1 and 0.2 s.
    assert_eq!(start.elapsed(), Duration::from_millis(6300));
    assert!(
        error.operation_error().is_none(),
        "a cut try has no error of its own"
    );
    let cause = error
        .error()
        .find_cause::<crate::AttemptTimedOut>()
        .unwrap();
    assert_eq!(cause.timeout, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn deadline_also_bounds_time_spent_inside_attempts() {
    let policy = RetryPolicy::builder()
        .max_attempts(100)
        .max_elapsed(Duration::from_secs(3))
        .build()
        .unwrap();
    let start = Instant::now();
    let error = Retrier::new(policy)
        .run(std::future::pending::<Result<(), io::Error>>)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.attempts(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn hooks_see_each_retry_the_give_up_and_the_success() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let retrier = Retrier::new(RetryPolicy::builder().jitter(false).build().unwrap())
        .on_retry(move |e| {
            l1.lock().unwrap().push(format!(
                "retry {} in {:?} ({}): {}",
                e.attempt,
                e.delay,
                e.class.as_str(),
                e.error
            ))
        })
        .on_success(move |e| {
            l2.lock()
                .unwrap()
                .push(format!("success after {} in {:?}", e.attempts, e.elapsed))
        })
        .on_give_up(move |e| {
            l3.lock()
                .unwrap()
                .push(format!("give up: {}", e.kind().as_str()))
        });
    run_failing(&retrier, 2).await.0.unwrap();
    run_failing(&retrier, 9).await.0.unwrap_err();
    let log = log.lock().unwrap();
    assert_eq!(
        log[..3],
        [
            "retry 1 in 100ms (transient): connection refused",
            "retry 2 in 200ms (transient): connection refused",
            "success after 3 in 300ms",
        ]
    );
    assert_eq!(log.last().unwrap(), "give up: retry_exhausted");
    assert_eq!(log.len(), 3 + 4 + 1);
}

#[tokio::test(start_paused = true)]
async fn the_operations_own_error_comes_back_by_value_and_converts_with_question_mark() {
    #[derive(Debug, thiserror::Error)]
    enum AppError {
        #[error("no such account")]
        NoSuchAccount,
        #[error(transparent)]
        Retry(#[from] Error),
    }
    impl Classify for AppError {
        fn classify(&self, phase: Phase) -> ErrorClass {
            match self {
                Self::NoSuchAccount => ErrorClass::Permanent,
                Self::Retry(e) => e.classify(phase),
            }
        }
    }
    impl From<RetryError<AppError>> for AppError {
        fn from(error: RetryError<AppError>) -> Self {
            error.into_inner()
        }
    }
    async fn caller(retrier: &Retrier) -> Result<(), AppError> {
        retrier
            .run(|| async { Err(AppError::NoSuchAccount) })
            .await?;
        Ok(())
    }
    let retrier = Retrier::new(RetryPolicy::default());
    assert!(matches!(
        caller(&retrier).await,
        Err(AppError::NoSuchAccount)
    ));

    // Into this crate's error, the operation's error as the cause; and out of a hook's view.
    async fn erased(retrier: &Retrier) -> Result<(), Error> {
        retrier.run(|| async { Err(denied()) }).await?;
        Ok(())
    }
    let error = erased(&retrier).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Query);
    assert_eq!(
        error.find_cause::<io::Error>().unwrap().kind(),
        io::ErrorKind::PermissionDenied
    );
}

#[tokio::test(start_paused = true)]
async fn a_give_up_hook_that_keeps_the_error_still_sees_the_cause_and_leaves_it_by_reference() {
    let kept = Arc::new(Mutex::new(None));
    let keep = kept.clone();
    let retrier = Retrier::new(RetryPolicy::default())
        .on_give_up(move |error| *keep.lock().unwrap() = Some(error.clone()));
    let error = retrier
        .run(|| async { Err::<(), _>(denied()) })
        .await
        .unwrap_err();
    let seen = kept.lock().unwrap().clone().unwrap();
    assert!(seen.find_cause::<io::Error>().is_some(), "{seen:?}");
    assert_eq!(
        error.operation_error().unwrap().kind(),
        io::ErrorKind::PermissionDenied
    );
    // The hook still shares it: it comes back inside the crate's error.
    let shared = error.into_operation_error().unwrap_err();
    assert!(shared.find_cause::<io::Error>().is_some());
    // Without the hook's clone it comes back by value.
    drop(kept.lock().unwrap().take());
    let error = retrier
        .run(|| async { Err::<(), _>(denied()) })
        .await
        .unwrap_err();
    drop(kept.lock().unwrap().take());
    assert!(error.into_operation_error().is_ok());
}

#[tokio::test(start_paused = true)]
async fn boxed_errors_run_through_run_boxed_and_come_back_as_the_cause() {
    let error = Retrier::new(RetryPolicy::default())
        .run_boxed(|| async {
            Err::<(), Box<dyn std::error::Error + Send + Sync>>(Box::new(denied()))
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Query);
    assert_eq!(error.attempts(), 1);
    assert!(error.find_cause::<io::Error>().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_connect_error_met_inside_an_operation_is_a_connection_error() {
    let inner = Retrier::new(RetryPolicy::default())
        .phase(Phase::Connect)
        .run(|| async { Err::<(), _>(denied()) })
        .await
        .map_err(Error::from)
        .unwrap_err();
    let error = Retrier::new(RetryPolicy::default())
        .run(|| {
            let inner = inner.clone();
            async move { Err::<(), _>(inner) }
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
}

#[tokio::test(start_paused = true)]
async fn a_wrapped_permanent_open_error_reads_as_a_connection_error_with_its_hint_once() {
    let missing = std::env::temp_dir().join("dbretry-no-such-dir/x/db.sqlite3");
    let open = || {
        let missing = missing.clone();
        async move { rusqlite::Connection::open(missing).map(drop) }
    };
    let inner = Retrier::new(RetryPolicy::default())
        .phase(Phase::Connect)
        .run(open)
        .await
        .map_err(Error::from)
        .unwrap_err();
    let error = Retrier::new(RetryPolicy::default())
        .run(|| {
            let inner = inner.clone();
            async move { Err::<(), _>(inner) }
        })
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    let message = error.to_string();
    let hint = "check that the directory exists";
    assert_eq!(message.matches(hint).count(), 1, "{message}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_budget_refuses_retries_past_its_share_but_never_first_attempts() {
    let budget = RetryBudget::new(0.1, 0, Duration::from_secs(60)).unwrap();
    let policy = RetryPolicy::builder()
        .initial_delay(Duration::ZERO)
        .max_attempts(5)
        .build()
        .unwrap();
    let retrier = Retrier::new(policy).budget(budget);
    let mut first_attempts = 0;
    let mut tries = 0;
    let mut refused = 0;
    for _ in 0..100 {
        let (result, made) = run_failing(&retrier, usize::MAX).await;
        first_attempts += 1;
        tries += made.len();
        if result.unwrap_err().kind() == ErrorKind::BudgetExhausted {
            refused += 1;
        }
    }
    let retries = tries - first_attempts;
    // 10 % of 100 first attempts: 10 retries in all, every first attempt made.
    assert_eq!(retries, 10);
    assert_eq!(first_attempts, 100);
    // Every run ended on the budget: none had its 4 retries.
    assert_eq!(refused, 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sleeps_never_pass_the_deadline(
        attempts in 1u32..50,
        initial_ms in 0u64..500,
        extra_ms in 0u64..5_000,
        deadline_ms in 1u64..10_000,
        seed in any::<u64>(),
    ) {
        let policy = RetryPolicy::builder()
            .max_attempts(attempts)
            .initial_delay(Duration::from_millis(initial_ms))
            .max_delay(Duration::from_millis(initial_ms + extra_ms))
            .max_elapsed(Duration::from_millis(deadline_ms))
            .seed(seed)
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (result, tries) = runtime.block_on(run_failing(&Retrier::new(policy), usize::MAX));
        prop_assert!(result.is_err());
        prop_assert!(tries.len() <= attempts as usize);
        let last_start = *tries.last().unwrap();
        prop_assert!(last_start < Duration::from_millis(deadline_ms));
    }
}

/// Each try runs in a `dbretry.attempt` span that names the pool, the phase and the attempt,
/// and records the try's class when it ends.
#[test]
fn every_try_runs_in_a_span_with_its_attempt_and_outcome() {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    // Interest is cached per callsite across threads; a second dispatcher makes tracing ask
    // the live ones each time.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let retrier = Retrier::new(RetryPolicy::default()).name("reports");
        let (result, _) = runtime.block_on(run_failing(&retrier, 1));
        assert_eq!(result.unwrap(), 2);
    });
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let closed: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("dbretry.attempt{") && line.contains(": close"))
        .collect();
    assert_eq!(closed.len(), 2, "{text}");
    // The first try's span closes with the try, before the retry is announced and the
    // backoff begins.
    let first_closed = text.find(closed[0]).unwrap();
    let retried = text
        .find("transient failure, retrying")
        .expect("the retry event");
    assert!(first_closed < retried, "{text}");
    for (line, (attempt, class)) in closed.iter().zip([(1, "transient"), (2, "success")]) {
        assert!(
            line.contains("pool=\"reports\"") || line.contains("pool=reports"),
            "{line}"
        );
        assert!(
            line.contains("phase=") && line.contains("operation"),
            "{line}"
        );
        assert!(line.contains(&format!("attempt={attempt}")), "{line}");
        assert!(line.contains(class), "{line}");
    }
}
