//! The policy's delay computation: what each retry costs before it sleeps.
//!
//! ```text
//! cargo bench --bench policy
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dbretry::{JitterStrategy, RetryPolicy};

fn delays(c: &mut Criterion) {
    let mut group = c.benchmark_group("next_delay");
    let strategies = [
        ("none", None),
        ("proportional", Some(JitterStrategy::Proportional)),
        ("full", Some(JitterStrategy::Full)),
        ("equal", Some(JitterStrategy::Equal)),
        ("decorrelated", Some(JitterStrategy::Decorrelated)),
    ];
    for (name, strategy) in strategies {
        let mut builder = RetryPolicy::builder()
            .max_attempts(u32::MAX)
            .max_delay(Duration::from_secs(30))
            .seed(7);
        builder = match strategy {
            Some(strategy) => builder.jitter_strategy(strategy),
            None => builder.jitter(false),
        };
        let policy = builder.build().unwrap();
        let mut schedule = policy.schedule();
        group.bench_function(name, |b| b.iter(|| black_box(schedule.next_delay())));
    }
    group.finish();
    c.bench_function("build policy from config", |b| {
        b.iter(|| black_box(RetryPolicy::builder().max_attempts(black_box(7)).build()))
    });
}

criterion_group!(benches, delays);
criterion_main!(benches);
