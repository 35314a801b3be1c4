//! What a fleet serves (the storage issue's fleet figure), printed as ratios to its limits:
//! provider runtimes with the same keys on one in-process relay (`LocalRelay`, 127.0.0.1) and
//! one real PostgreSQL (`PostgresStore`, a throw-away durable cluster started here from the
//! system's `postgresql` server binaries). Each serves a task that sleeps [`TASK`] with at
//! most [`TASKS_PER_PROCESS`] of them running at once
//! (`ProviderRuntime::max_running_tasks`), so one process can serve at most 4 / 50 ms = 80
//! jobs/s: the figure shows how close one gets, and what a second process adds (limit: two at
//! least 1.7x one), every job claimed in the database by exactly one of them (a process claims
//! only while it has room for the job).
//!
//! Bursts of [`BURST`] free jobs from [`CUSTOMERS`] customers (plain nostr-sdk clients), at
//! most [`WINDOW`] in flight; admission limits lifted for the load. The "processes" are
//! runtimes in this process, each on a tokio runtime of its own (2 worker threads), each
//! with its own store connection under its own name.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use nostr_dvm::nostr::{Keys, Kind};
use nostr_dvm::provider::{Admission, ProviderConfig};
use nostr_dvm::runtime::{PostgresStore, ProviderRuntime};
use nostr_dvm::task::{Progress, Task, TaskError, TaskOutput, TaskRequest};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

#[path = "support/burst.rs"]
mod burst;
#[path = "support/echo.rs"]
#[allow(dead_code)]
mod echo;
#[path = "../examples/support/local_relay.rs"]
mod local_relay;
#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use burst::{median_rate, timed_bursts, Customer};
use echo::KIND;

/// Jobs per burst.
const BURST: usize = 240;
/// Customers the burst comes from.
const CUSTOMERS: usize = 4;
/// The most jobs in flight at once.
const WINDOW: usize = 64;
/// How long the task works.
const TASK: Duration = Duration::from_millis(50);
/// The most tasks running at once in one process.
const TASKS_PER_PROCESS: usize = 4;
/// What one process can serve at most, in jobs/s.
const ONE_PROCESS_CEILING: f64 = TASKS_PER_PROCESS as f64 / 0.050;

/// Sleeps [`TASK`] and echoes its input.
struct SleepyEcho;

#[async_trait::async_trait]
impl Task for SleepyEcho {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(KIND)]
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        tokio::time::sleep(TASK).await;
        Ok(TaskOutput::new(request.texts().collect::<String>()))
    }
}

/// A provider process of the fleet: a runtime on a tokio runtime of its own, until stopped.
struct Member {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start_member(keys: &Keys, relay: &str, db: &str, node: &str) -> Member {
    let mut config = ProviderConfig::new([Kind::from(KIND)])
        .relays([relay.to_owned()])
        .admission(Admission {
            max_live_jobs: 4 * BURST,
            rate_limit: None,
            global_rate_limit: None,
            ..Admission::default()
        });
    config.run_timeout_secs = 600;
    // Untargeted requests of an earlier run on this relay are not this fleet's load.
    config.lookback_secs = 0;
    let store = PostgresStore::connect(db, node).expect("the fleet's database");
    let runtime = ProviderRuntime::new(keys.clone(), config)
        .task(Arc::new(SleepyEcho))
        .max_running_tasks(TASKS_PER_PROCESS)
        .record_store(store);
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(runtime.run(async {
                let _ = stopped.await;
            }))
            .unwrap();
    });
    Member { stop, thread }
}

/// Runs bursts through `processes` members on a fresh database until criterion has its
/// samples; the median burst's jobs/s.
fn fleet(c: &mut Criterion, rt: &Runtime, relay: &str, processes: usize) -> f64 {
    let postgres = postgres::TestPostgres::start();
    let db = postgres.url();
    let keys = Keys::generate();
    let members: Vec<Member> = (0..processes)
        .map(|n| start_member(&keys, relay, &db, &format!("node-{n}")))
        .collect();
    let mut customers = rt.block_on(async {
        let mut customers = Vec::new();
        for _ in 0..CUSTOMERS {
            customers.push(Customer::connect(relay).await);
        }
        // The members subscribe.
        tokio::time::sleep(Duration::from_secs(1)).await;
        customers
    });
    let mut n = 0usize;
    let mut rates: Vec<f64> = Vec::new();
    let mut group = c.benchmark_group("fleet");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function(format!("{processes} process(es)"), |b| {
        b.iter_custom(|iters| {
            timed_bursts(
                rt,
                &mut customers,
                (BURST, WINDOW),
                iters,
                &mut n,
                &mut rates,
            )
        })
    });
    group.finish();
    for member in members {
        let _ = member.stop.send(());
        member.thread.join().unwrap();
    }
    rt.block_on(async {
        for customer in customers {
            customer.client.disconnect().await;
        }
    });
    drop(postgres);
    median_rate(&format!("fleet of {processes}"), rates)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = Runtime::new().unwrap();
    let limit = RateLimit {
        max_reqs: 10_000,
        notes_per_minute: u32::MAX,
    };
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
    let url = rt.block_on(local_relay::serve(relay)).unwrap();

    let one = fleet(&mut c, &rt, &url, 1);
    let two = fleet(&mut c, &rt, &url, 2);
    c.final_summary();
    let ratio = two / one;
    println!(
        "fleet (median bursts): one process {one:.0} jobs/s ({:.2} of its ceiling of {ONE_PROCESS_CEILING:.0}: \
         4 tasks of 50 ms), two processes {two:.0} jobs/s: {ratio:.2}x one (limit >= 1.7x: \
         {:.2} of it)",
        one / ONE_PROCESS_CEILING,
        ratio / 1.7,
    );
}
