//! Model-based tests of the gate: every short sequence of events, and many seeded random
//! ones, checked against the contract's invariants (DESIGN §12):
//!
//! * no wedge: whatever happened, once the database is healthy, a caller that arrives one
//!   probe interval later is let through to an attempt, and it succeeds;
//! * while the pool is down, at most one attempt (admitted during that outage) is in flight;
//! * a probe slot is always held by an attempt that is really in flight, so the breaker always
//!   leaves half-open;
//! * every caller's wait ends by its own deadline (driver tests, on tokio's paused clock);
//! * cancellation at any await point (a caller dropped while waiting, sleeping or attempting)
//!   leaks nothing.
//!
//! Two levels: the pure [`Machine`] explored exhaustively (it is cheap to clone), and the
//! real driver ([`Gate::connect`] with concurrent callers on a scripted backend).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use super::machine::{Admission, Event, Machine, Outcome, State, Ticket};
use super::{Gate, PoolEvents};
use crate::{CircuitBreaker, ErrorKind, Retrier, RetryPolicy};

const INITIAL_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_millis(40);
const COOL_DOWN: Duration = Duration::from_millis(100);

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .initial_delay(INITIAL_DELAY)
        .max_delay(MAX_DELAY)
        .max_elapsed(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(500))
        .jitter(false)
        .build()
        .unwrap()
}

fn breaker(on: bool) -> Option<CircuitBreaker> {
    on.then(|| CircuitBreaker::new(2, COOL_DOWN).unwrap())
}

// ----- the pure machine, exhaustively -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Success,
    Transient,
    Permanent,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Success, Kind::Transient, Kind::Permanent];

    fn outcome(self) -> Outcome<u8> {
        match self {
            Kind::Success => Outcome::Success,
            Kind::Transient => Outcome::Transient(0),
            Kind::Permanent => Outcome::Permanent(1),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    /// A caller asks to connect.
    Admit,
    /// The i-th oldest attempt in flight ends.
    End(usize, Kind),
    /// The caller of the i-th oldest attempt goes away (a probe is reported abandoned).
    Cancel(usize),
    /// A pooled connection is found dead.
    Lost,
    /// Time passes.
    Advance(Duration),
}

fn steps() -> Vec<Step> {
    let mut steps = vec![Step::Admit, Step::Lost];
    for i in 0..2 {
        for kind in Kind::ALL {
            steps.push(Step::End(i, kind));
        }
        steps.push(Step::Cancel(i));
    }
    steps.push(Step::Advance(INITIAL_DELAY));
    steps.push(Step::Advance(COOL_DOWN));
    steps
}

#[derive(Clone, Debug)]
struct Attempt {
    ticket: Ticket,
    probe: bool,
    /// The outage it was admitted in, if the pool was not up.
    outage: Option<u64>,
}

#[derive(Clone, Debug)]
struct Model {
    machine: Machine<u8, SmallRng>,
    now: Instant,
    in_flight: Vec<Attempt>,
}

impl Model {
    fn new(with_breaker: bool) -> Self {
        let schedule = policy().schedule_with_rng(SmallRng::seed_from_u64(7));
        Self {
            machine: Machine::new(schedule, breaker(with_breaker)),
            now: Instant::now(),
            in_flight: Vec::new(),
        }
    }

    /// Applies `step`; false if it was a no-op (so the sequence equals a shorter one).
    fn apply(&mut self, step: Step) -> Result<bool, String> {
        match step {
            Step::Admit => {
                let circuit_before = self.machine.circuit();
                let (admission, _) = self.machine.admit(self.now);
                match admission {
                    Admission::Direct(ticket) => {
                        self.in_flight.push(Attempt {
                            ticket,
                            probe: false,
                            outage: None,
                        });
                    }
                    Admission::Probe(ticket) => self.in_flight.push(Attempt {
                        ticket,
                        probe: true,
                        outage: Some(self.machine.outages()),
                    }),
                    Admission::Wait { until, probe, .. } => {
                        check_wait(self, until, probe)?;
                        return Ok(false);
                    }
                    Admission::Reject => {
                        if circuit_before == super::machine::Circuit::Closed {
                            return Err("rejected while the circuit is closed".into());
                        }
                        return Ok(false);
                    }
                }
            }
            Step::End(i, kind) => {
                if i >= self.in_flight.len() {
                    return Ok(false);
                }
                let attempt = self.in_flight.remove(i);
                self.machine
                    .on(Event::Ended(attempt.ticket, kind.outcome()), self.now);
            }
            Step::Cancel(i) => {
                if i >= self.in_flight.len() {
                    return Ok(false);
                }
                let attempt = self.in_flight.remove(i);
                if attempt.probe {
                    self.machine.on(Event::Abandoned(attempt.ticket), self.now);
                }
            }
            Step::Lost => {
                self.machine.on(
                    Event::ConnectionLost {
                        last_alive: self.now,
                    },
                    self.now,
                );
            }
            Step::Advance(by) => self.now += by,
        }
        Ok(true)
    }

    fn check(&self) -> Result<(), String> {
        let in_flight_probe = |ticket: Ticket| {
            self.in_flight
                .iter()
                .any(|attempt| attempt.ticket == ticket && attempt.probe)
        };
        match *self.machine.state() {
            State::Down {
                probe: Some(probe), ..
            }
            | State::HalfOpen { probe } => {
                if !in_flight_probe(probe) {
                    return Err(format!(
                        "the probe slot is held by {probe:?}, not in flight"
                    ));
                }
            }
            State::Down {
                next_probe_at,
                probe: None,
                ..
            } => {
                if next_probe_at > self.now + MAX_DELAY {
                    return Err("the next probe is further away than max_delay".into());
                }
            }
            State::Open { until, probe } => {
                if probe.is_some_and(|probe| !in_flight_probe(probe)) {
                    return Err("the open circuit carries a probe not in flight".into());
                }
                if until > self.now + COOL_DOWN {
                    return Err("open for longer than the cool-down".into());
                }
            }
            State::Up { .. } => {}
        }
        if !matches!(self.machine.state(), State::Up { .. }) {
            let outage = self.machine.outages();
            let admitted_now = self
                .in_flight
                .iter()
                .filter(|attempt| attempt.outage == Some(outage))
                .count();
            if admitted_now > 1 {
                return Err(format!("{admitted_now} attempts in flight in one outage"));
            }
        }
        self.heals_when_callers_vanish()?;
        self.heals_when_attempts_succeed()
    }

    /// Every caller in flight goes away; a caller arriving one probe interval (or cool-down)
    /// later must be let through to an attempt.
    fn heals_when_callers_vanish(&self) -> Result<(), String> {
        let mut healed = self.clone();
        for attempt in std::mem::take(&mut healed.in_flight) {
            if attempt.probe {
                healed
                    .machine
                    .on(Event::Abandoned(attempt.ticket), healed.now);
            }
        }
        healed.now += MAX_DELAY.max(COOL_DOWN);
        match healed.machine.admit(healed.now).0 {
            Admission::Direct(_) | Admission::Probe(_) => Ok(()),
            other => Err(format!(
                "wedged: after every caller left, a new one gets {other:?} in {:?}",
                healed.machine.state()
            )),
        }
    }

    /// Every attempt in flight succeeds: the pool is up.
    fn heals_when_attempts_succeed(&self) -> Result<(), String> {
        let mut healed = self.clone();
        for attempt in std::mem::take(&mut healed.in_flight) {
            healed
                .machine
                .on(Event::Ended(attempt.ticket, Outcome::Success), healed.now);
        }
        if self.in_flight.is_empty() {
            return Ok(());
        }
        match healed.machine.admit(healed.now).0 {
            Admission::Direct(_) => Ok(()),
            other => Err(format!("after successes a caller gets {other:?}")),
        }
    }
}

fn check_wait(model: &Model, until: Option<Instant>, probe: Option<Ticket>) -> Result<(), String> {
    match (until, probe) {
        (Some(until), None) if until > model.now => Ok(()),
        (None, Some(probe)) if model.in_flight.iter().any(|a| a.ticket == probe) => Ok(()),
        other => Err(format!("a wait with nothing to end it: {other:?}")),
    }
}

/// Depth-first over every sequence of `depth` steps (no-ops pruned), checking after each.
fn explore(model: &Model, depth: usize, trail: &mut Vec<Step>, visited: &mut u64) {
    if depth == 0 {
        return;
    }
    for step in steps() {
        let mut next = model.clone();
        trail.push(step);
        let applied = next.apply(step);
        let result = applied.and_then(|changed| next.check().map(|()| changed));
        match result {
            Err(violation) => panic!(
                "{violation}\nafter {trail:?}\nstate {:?}",
                next.machine.state()
            ),
            Ok(true) => {
                *visited += 1;
                explore(&next, depth - 1, trail, visited);
            }
            Ok(false) => {}
        }
        trail.pop();
    }
}

#[test]
fn every_sequence_of_up_to_seven_machine_events_keeps_the_invariants() {
    for with_breaker in [false, true] {
        let mut visited = 0;
        explore(&Model::new(with_breaker), 7, &mut Vec::new(), &mut visited);
        assert!(visited > 100_000, "explored only {visited} sequences");
        println!("machine, breaker {with_breaker}: {visited} sequences checked");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn random_machine_sequences_keep_the_invariants(
        with_breaker in any::<bool>(),
        picks in proptest::collection::vec(0usize..13, 1..40),
    ) {
        let steps = steps();
        let mut model = Model::new(with_breaker);
        for (at, pick) in picks.iter().enumerate() {
            let step = steps[pick % steps.len()];
            model.apply(step).map_err(|e| TestCaseError::fail(format!("{e} at step {at}")))?;
            model.check().map_err(|e| TestCaseError::fail(format!("{e} at step {at}: {step:?}")))?;
        }
    }
}

// ----- the driver: concurrent callers on tokio's paused clock -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// Caller k calls `connect()`.
    Arrive(usize),
    /// The oldest pending attempt ends so.
    Resolve(Kind),
    /// Caller k's future is dropped, wherever it is waiting.
    Cancel(usize),
    /// Time passes.
    Tick(Duration),
}

const CALLERS: usize = 3;
const BUDGET: Duration = Duration::from_secs(1);

fn script_steps(callers: usize) -> Vec<Script> {
    let mut steps = Vec::new();
    for k in 0..callers {
        steps.push(Script::Arrive(k));
        steps.push(Script::Cancel(k));
    }
    for kind in Kind::ALL {
        steps.push(Script::Resolve(kind));
    }
    steps.push(Script::Tick(Duration::from_millis(30)));
    steps.push(Script::Tick(Duration::from_millis(300)));
    steps
}

/// The scripted database: each attempt waits until the script resolves it, or succeeds at
/// once once the database is healthy. It checks, as each attempt starts, that no other
/// attempt admitted in the same outage is in flight.
#[derive(Default)]
struct Database {
    pending: VecDeque<(Option<u64>, tokio::sync::oneshot::Sender<Kind>)>,
    healthy: bool,
    violation: Option<String>,
}

type Shared = Arc<Mutex<Database>>;

fn lock(db: &Shared) -> std::sync::MutexGuard<'_, Database> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn attempt(db: Shared, gate: Arc<Gate>) -> Result<(), io::Error> {
    let receiver = {
        let mut db = lock(&db);
        if db.healthy {
            return Ok(());
        }
        let (state, outage) = {
            let machine = gate.lock();
            (machine.state().clone(), machine.outages())
        };
        let outage = (!matches!(state, State::Up { .. })).then_some(outage);
        db.pending.retain(|(_, sender)| !sender.is_closed());
        if let Some(outage) = outage {
            if matches!(state, State::Open { .. }) {
                db.violation = Some("an attempt started while the circuit was open".into());
            }
            if db.pending.iter().any(|(seen, _)| *seen == Some(outage)) {
                db.violation = Some(format!("two attempts in flight in outage {outage}"));
            }
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        db.pending.push_back((outage, sender));
        receiver
    };
    match receiver.await {
        Ok(Kind::Success) => Ok(()),
        Ok(Kind::Transient) => Err(io::ErrorKind::ConnectionRefused.into()),
        Ok(Kind::Permanent) => Err(io::ErrorKind::PermissionDenied.into()),
        // Dropped unresolved: the database went healthy.
        Err(_) => Ok(()),
    }
}

struct Caller {
    started: Instant,
    task: tokio::task::JoinHandle<(Instant, Result<(), crate::Error>)>,
}

async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// Runs `script` against a fresh gate with `callers` callers, then heals the database and
/// checks every invariant. Returns a description of the first violation.
async fn run_script(script: &[Script], with_breaker: bool) -> Result<(), String> {
    let gate = Arc::new(Gate::new(Retrier::new(policy()), breaker(with_breaker)));
    let events = Arc::new(PoolEvents::new("model"));
    let db: Shared = Arc::default();
    let spawn_caller = || {
        let (gate, events, db) = (gate.clone(), events.clone(), db.clone());
        Caller {
            started: Instant::now(),
            task: tokio::spawn(async move {
                let result = gate
                    .connect(&events, || attempt(db.clone(), gate.clone()))
                    .await;
                (Instant::now(), result)
            }),
        }
    };
    let mut callers: Vec<Option<Caller>> = (0..CALLERS).map(|_| None).collect();
    let mut cancelled = Vec::new();
    for &step in script {
        match step {
            Script::Arrive(k) => {
                if callers[k].is_none() {
                    callers[k] = Some(spawn_caller());
                }
            }
            Script::Cancel(k) => {
                if let Some(caller) = callers[k].take() {
                    caller.task.abort();
                    cancelled.push(caller.task);
                }
            }
            Script::Resolve(kind) => {
                let sender = {
                    let mut db = lock(&db);
                    db.pending.retain(|(_, sender)| !sender.is_closed());
                    db.pending.pop_front()
                };
                if let Some((_, sender)) = sender {
                    let _ = sender.send(kind);
                }
            }
            // Sleeping lets the paused clock jump from timer to timer, so each fires on time.
            Script::Tick(by) => tokio::time::sleep(by).await,
        }
        settle().await;
        if let Some(violation) = lock(&db).violation.take() {
            return Err(violation);
        }
    }
    // The database is healthy from now on.
    {
        let mut db = lock(&db);
        db.healthy = true;
        for (_, sender) in db.pending.drain(..) {
            let _ = sender.send(Kind::Success);
        }
    }
    for caller in callers.into_iter().flatten() {
        // The paused clock jumps to each next timer, so a caller ends exactly when its own
        // timers say (tokio rounds them up to the millisecond).
        let deadline = caller.started + BUDGET + Duration::from_millis(1);
        let (ended, _) = tokio::time::timeout(BUDGET * 2, caller.task)
            .await
            .map_err(|_| "a caller is still waiting a second past its deadline".to_owned())?
            .map_err(|e| e.to_string())?;
        if ended > deadline {
            return Err(format!(
                "a caller ended {:?} after it started, past its budget",
                ended - caller.started
            ));
        }
    }
    for task in cancelled {
        if let Ok(output) = task.await {
            drop(output);
        }
    }
    // No wedge: one probe interval (or cool-down) later a new caller connects.
    tokio::time::sleep(MAX_DELAY.max(COOL_DOWN)).await;
    let fresh = spawn_caller();
    let Ok(joined) = tokio::time::timeout(BUDGET, fresh.task).await else {
        return Err(format!(
            "wedged: a fresh caller is still waiting in {:?}",
            gate.state()
        ));
    };
    match joined.map_err(|e| e.to_string())?.1 {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::CircuitOpen => {
            return Err(format!("the circuit never closed: {error}"));
        }
        Err(error) => {
            return Err(format!(
                "a fresh caller failed on a healthy database: {error}"
            ));
        }
    }
    if let Some(violation) = lock(&db).violation.take() {
        return Err(violation);
    }
    Ok(())
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Every script of up to `depth` steps in which each caller arrives at most once and is
/// cancelled only after arriving.
fn scripts(depth: usize, callers: usize) -> Vec<Vec<Script>> {
    fn extend(
        prefix: &mut Vec<Script>,
        depth: usize,
        steps: &[Script],
        out: &mut Vec<Vec<Script>>,
    ) {
        out.push(prefix.clone());
        if depth == 0 {
            return;
        }
        for &step in steps {
            let valid = match step {
                Script::Arrive(k) => !prefix.contains(&Script::Arrive(k)),
                Script::Cancel(k) => {
                    prefix.contains(&Script::Arrive(k)) && !prefix.contains(&Script::Cancel(k))
                }
                _ => true,
            };
            if valid {
                prefix.push(step);
                extend(prefix, depth - 1, steps, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    extend(&mut Vec::new(), depth, &script_steps(callers), &mut out);
    out
}

#[test]
fn every_script_of_up_to_five_steps_with_two_callers_keeps_the_driver_invariants() {
    let runtime = paused_runtime();
    let all = scripts(5, 2);
    for with_breaker in [false, true] {
        for script in &all {
            if let Err(violation) = runtime.block_on(run_script(script, with_breaker)) {
                panic!("{violation}\nscript {script:?}, breaker {with_breaker}");
            }
        }
    }
    println!(
        "driver: {} scripts checked, with and without a breaker",
        all.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn random_scripts_with_three_callers_keep_the_driver_invariants(
        with_breaker in any::<bool>(),
        picks in proptest::collection::vec(0usize..11, 1..16),
    ) {
        let steps = script_steps(CALLERS);
        let script: Vec<Script> = picks.iter().map(|pick| steps[pick % steps.len()]).collect();
        let runtime = paused_runtime();
        runtime
            .block_on(run_script(&script, with_breaker))
            .map_err(TestCaseError::fail)?;
    }
}
