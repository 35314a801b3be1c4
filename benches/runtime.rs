//! Jobs through a real relay: the provider runtime (tokio + nostr-sdk) serving a trivial task
//! on an in-process `LocalRelay` on 127.0.0.1 (Nagle off), customers being plain nostr-sdk
//! clients.
//!
//! `cargo bench --bench runtime` measures
//!
//! 1. **round trip**: one free job, from publishing the signed request to receiving the
//!    result (request -> relay -> provider -> task -> result -> relay -> customer);
//! 2. **throughput**: a batch of [`BATCH`] free jobs from [`CUSTOMERS`] customers published at
//!    once, until every result is in: jobs per second through the relay.
//!
//! The provider issue names no limit for these; they are figures (printed as jobs/s after
//! criterion's own lines). Requests are signed outside the timed region.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use nostr_dvm::nostr::{Event, Keys, Kind};
use nostr_dvm::provider::{Admission, ProviderConfig};
use nostr_dvm::runtime::ProviderRuntime;
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::runtime::Runtime;

#[path = "support/burst.rs"]
mod burst;
#[path = "support/echo.rs"]
mod echo;
#[path = "../examples/support/local_relay.rs"]
mod local_relay;

use burst::{run_batch, Customer};
use echo::{Echo, KIND};

/// Jobs per throughput batch.
const BATCH: usize = 200;
/// Customers the batch comes from (one client each).
const CUSTOMERS: usize = 4;

fn main() {
    let rt = Runtime::new().unwrap();
    let (mut customers, _relay) = rt.block_on(async {
        // LocalRelay's default limit is 60 events a minute per connection.
        let limit = RateLimit {
            max_reqs: 500,
            notes_per_minute: u32::MAX,
        };
        let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
        let url = local_relay::serve(relay.clone()).await.unwrap();
        let admission = Admission {
            max_live_jobs: 10 * BATCH,
            rate_limit: None,        // one customer sends thousands of jobs here
            global_rate_limit: None, // and criterion repeats bursts within a minute
            ..Admission::default()
        };
        let config = ProviderConfig::new([Kind::from(KIND)])
            .relays([url.clone()])
            .admission(admission);
        let runtime =
            ProviderRuntime::new(Keys::generate(), config).task(Arc::new(Echo::default()));
        tokio::spawn(runtime.run(std::future::pending()));
        let mut customers = Vec::new();
        for _ in 0..CUSTOMERS {
            customers.push(Customer::connect(&url).await);
        }
        (customers, relay)
    });

    let mut c = Criterion::default().configure_from_args();
    let mut n = 0usize;
    let mut round_trip = Duration::ZERO;
    let mut round_trips = 0u32;
    c.bench_function("runtime/round_trip", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let request = vec![vec![customers[0].request(n)]];
                let start = Instant::now();
                rt.block_on(run_batch(&mut customers[..1], request));
                total += start.elapsed();
            }
            round_trip += total;
            round_trips += iters as u32;
            total
        })
    });

    let mut group = c.benchmark_group("runtime");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut batch_time = Duration::ZERO;
    let mut batches = 0u32;
    group.bench_function("throughput", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let requests: Vec<Vec<Event>> = (0..CUSTOMERS)
                    .map(|c| {
                        (0..BATCH / CUSTOMERS)
                            .map(|_| {
                                n += 1;
                                customers[c].request(n)
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(run_batch(&mut customers, requests));
                total += start.elapsed();
            }
            batch_time += total;
            batches += iters as u32;
            total
        })
    });
    group.finish();

    if round_trips > 0 && batches > 0 {
        let rt_ms = round_trip.as_secs_f64() * 1e3 / f64::from(round_trips);
        let jobs_per_sec = f64::from(batches) * BATCH as f64 / batch_time.as_secs_f64();
        println!("\nround trip, one free job through the relay: {rt_ms:.2} ms");
        println!(
            "throughput, {BATCH} jobs from {CUSTOMERS} customers at once: {jobs_per_sec:.0} jobs/s"
        );
    }
}
