//! What persistence costs (the storage issue's figures), printed as ratios to their limits:
//!
//! 1. **throughput**: bursts of [`BURST`] free jobs from [`CUSTOMERS`] customers through an
//!    in-process relay (`LocalRelay`, 127.0.0.1; at most [`WINDOW`] jobs in flight, which that
//!    relay needs not to drop events) to a provider runtime with no store and to one with a
//!    `SqliteStore` (default sync mode, `synchronous=NORMAL`), running side by side and taking
//!    bursts in turn: jobs/s and CPU per job of each, and the median ratio of the pairs
//!    (limit: >= 0.8);
//! 2. **one job's persistence**: `SqliteStore::apply` of an update that changes one job (and
//!    the meta record), into a store that holds 100 terminal jobs, then 100,000: their ratio
//!    (limit: <= 1.2, O(change), not O(state)). Next to it, for scale, what `FileStore`
//!    (a whole snapshot per save) costs with 100 and 10,000 jobs.
//!
//! Admission limits are lifted for the load (one customer sends thousands of jobs); the
//! customers are plain nostr-sdk clients; requests are signed outside the timed region.
//! `STORE_BENCH_ONLY_THROUGHPUT=1` runs the throughput part alone.

use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, Timestamp};
use nostr_dvm::provider::{
    Admission, Provider, ProviderConfig, ProviderSnapshot, StoreChange, StoreUpdate,
};
use nostr_dvm::runtime::{FileStore, ProviderRuntime, RecordStore, SnapshotStore, SqliteStore};
use nostr_dvm::task::TaskOutput;
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

#[path = "support/burst.rs"]
mod burst;
#[path = "support/echo.rs"]
mod echo;
#[path = "../examples/support/local_relay.rs"]
mod local_relay;

use burst::{burst_of_kind, process_cpu_secs, run_window, Customer};
use echo::{Echo, KIND, OTHER_KIND};

/// Jobs per burst.
const BURST: usize = 2_000;
/// Customers the burst comes from (one client each).
const CUSTOMERS: usize = 4;
/// The most jobs of a burst in flight at once (see `burst::run_window`).
const WINDOW: usize = 250;

fn config(url: &str, kind: u16) -> ProviderConfig {
    ProviderConfig::new([Kind::from(kind)])
        .relays([url.to_owned()])
        .admission(Admission {
            max_live_jobs: 4 * BURST,
            max_jobs: 100_000,
            rate_limit: None,
            global_rate_limit: None,
            ..Admission::default()
        })
}

/// Bursts each side runs before the measured ones.
const WARM_UP: usize = 2;
/// Measured bursts on each side.
const PAIRS: usize = 12;

/// One side of the throughput figure: its bursts' jobs/s and CPU per job.
#[derive(Default)]
struct Side {
    rates: Vec<f64>,
    cpu_per_job: Vec<f64>,
}

/// Runs both runtimes side by side on one relay, each serving its own kind, and sends each
/// burst to one then to the other (the first of a pair alternates), so both sides see the
/// machine in the same state (2 cores shared with the relay and the customers; a burst alone
/// varies by a third from one minute to the next). Returns each side and the ratio of every
/// pair (`stored / bare`).
fn paired_throughput(
    rt: &Runtime,
    url: &str,
    bare: ProviderRuntime,
    stored: ProviderRuntime,
) -> (Side, Side, Vec<f64>) {
    let mut stops = Vec::new();
    let mut providers = Vec::new();
    for runtime in [bare, stored] {
        let (stop, stopped) = oneshot::channel::<()>();
        providers.push(rt.spawn(runtime.run(async {
            let _ = stopped.await;
        })));
        stops.push(stop);
    }
    let mut customers = rt.block_on(async {
        let mut customers = Vec::new();
        for _ in 0..CUSTOMERS {
            customers.push(Customer::connect(url).await);
        }
        customers
    });
    let mut n = 0usize;
    let mut sides = [Side::default(), Side::default()];
    let mut ratios = Vec::new();
    for round in 0..WARM_UP + PAIRS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut rate = [0.0; 2];
        for side in order {
            let requests = burst_of_kind(&customers, [KIND, OTHER_KIND][side], BURST, &mut n);
            let cpu = process_cpu_secs();
            let start = Instant::now();
            rt.block_on(run_window(&mut customers, requests, WINDOW));
            let took = start.elapsed().as_secs_f64();
            rate[side] = BURST as f64 / took;
            if round >= WARM_UP {
                sides[side].rates.push(rate[side]);
                sides[side]
                    .cpu_per_job
                    .push((process_cpu_secs() - cpu) / BURST as f64);
            }
        }
        if round >= WARM_UP {
            ratios.push(rate[1] / rate[0]);
        }
    }
    for stop in stops {
        let _ = stop.send(());
    }
    rt.block_on(async {
        for provider in providers {
            provider.await.unwrap().unwrap();
        }
        for customer in customers {
            customer.client.disconnect().await;
        }
    });
    let [bare, stored] = sides;
    (bare, stored, ratios)
}

/// A provider persisting by updates with `jobs` jobs answered: its updates so far, merged
/// into one, and an update that changes one job (its record and the meta).
fn provider_with_jobs(jobs: usize) -> (StoreUpdate, StoreUpdate, Provider) {
    let keys = Keys::generate();
    let customer = Keys::generate();
    let mut config = config("wss://relay.example", KIND);
    config.retention_secs = 30 * 24 * 3_600;
    let mut provider = Provider::new(keys, config, Timestamp::from(1_700_000_000));
    provider.track_updates();
    let mut all = StoreUpdate {
        id: 0,
        changes: Vec::new(),
        meta: provider.snapshot(),
    };
    let mut t = 1_700_000_000u64;
    for n in 0..jobs {
        t += 1;
        let now = Timestamp::from(t);
        let request = echo_request(&customer, n, now);
        provider.handle_event(now, request.clone());
        drain(&mut provider, &mut all);
        provider
            .handle_task_result(now, request.id, Ok(TaskOutput::new(format!("job {n}"))))
            .unwrap();
        drain(&mut provider, &mut all);
    }
    let now = Timestamp::from(t + 1);
    let request = echo_request(&customer, jobs, now);
    provider.handle_event(now, request);
    let one = provider.poll_update().unwrap();
    (all, one, provider)
}

fn echo_request(customer: &Keys, n: usize, now: Timestamp) -> Event {
    nostr_dvm::nip90::JobRequest::builder(Kind::from(KIND))
        .input(nostr_dvm::nip90::JobInput::text(format!("job {n}")))
        .sign(customer, now, &mut rand::rngs::OsRng)
        .unwrap()
}

/// Takes and acknowledges every update, merging them into `all`.
fn drain(provider: &mut Provider, all: &mut StoreUpdate) {
    while let Some(update) = provider.poll_update() {
        provider.handle_persisted(update.id).unwrap();
        while provider.poll_output().is_some() {}
        all.changes.extend(update.changes);
        all.meta = update.meta;
    }
}

/// `base` with the job records repeated under fresh ids up to `count` records.
fn widened(base: &StoreUpdate, count: usize) -> StoreUpdate {
    let records: Vec<serde_json::Value> = base
        .changes
        .iter()
        .filter_map(|c| match c {
            StoreChange::Job(record) if record.is_terminal() => {
                Some(serde_json::to_value(record.as_ref()).unwrap())
            }
            _ => None,
        })
        .collect();
    let mut changes = Vec::with_capacity(count);
    for n in 0..count {
        let mut record = records[n % records.len()].clone();
        let id = EventId::from_byte_array(rand::random::<[u8; 32]>());
        record["id"] = serde_json::Value::String(id.to_hex());
        changes.push(StoreChange::Job(Box::new(
            serde_json::from_value(record).unwrap(),
        )));
    }
    StoreUpdate {
        id: 1,
        changes,
        meta: base.meta.clone(),
    }
}

/// The median time of `apply(one)` into a SQLite store holding `held` terminal jobs.
fn sqlite_one_job(c: &mut Criterion, base: &StoreUpdate, one: &StoreUpdate, held: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!(
        "nostr-dvm-bench-store-{held}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("provider.sqlite")).unwrap();
    for chunk in widened(base, held).changes.chunks(10_000) {
        let part = StoreUpdate {
            id: 1,
            changes: chunk.to_vec(),
            meta: base.meta.clone(),
        };
        store.apply(&[part]).unwrap();
    }
    let mut times = Vec::new();
    c.bench_function(&format!("store/sqlite_one_job/{held}_held"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                store.apply(std::slice::from_ref(one)).unwrap();
            }
            let total = start.elapsed();
            times.push(total.as_secs_f64() / iters as f64);
            total
        })
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    median(&mut times)
}

/// The median time of a `FileStore` save of `snapshot`.
fn file_save(c: &mut Criterion, snapshot: &ProviderSnapshot, jobs: usize) -> f64 {
    let path = std::env::temp_dir().join(format!(
        "nostr-dvm-bench-file-{jobs}-{}.json",
        std::process::id()
    ));
    let store = FileStore::new(&path);
    let mut times = Vec::new();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.bench_function(format!("file_save/{jobs}_jobs"), |b| {
        b.iter_batched(
            || (),
            |()| {
                let start = Instant::now();
                store.save(snapshot).unwrap();
                times.push(start.elapsed().as_secs_f64());
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let _ = std::fs::remove_file(&path);
    median(&mut times)
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let only_throughput = std::env::var("STORE_BENCH_ONLY_THROUGHPUT").is_ok();

    // 2. One job's persistence, with 100 and with 100,000 terminal jobs held.
    let (mut small, mut large, mut file_100, mut file_10k) =
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    if !only_throughput {
        let (base, one, _) = provider_with_jobs(100);
        small = sqlite_one_job(&mut c, &base, &one, 100);
        large = sqlite_one_job(&mut c, &base, &one, 100_000);
        let (_, _, mut with_100) = provider_with_jobs(100);
        file_100 = file_save(&mut c, &with_100.snapshot(), 100);
        let (_, _, mut with_10k) = provider_with_jobs(10_000);
        file_10k = file_save(&mut c, &with_10k.snapshot(), 10_000);
    }

    // 1. Throughput, with no store and with a SqliteStore.
    let rt = Runtime::new().unwrap();
    let (_relay, url) = rt.block_on(async {
        // LocalRelay's default limit is 60 events a minute per connection.
        let limit = RateLimit {
            max_reqs: 500,
            notes_per_minute: u32::MAX,
        };
        let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
        let url = local_relay::serve(relay.clone()).await.unwrap();
        (relay, url)
    });
    let bare =
        ProviderRuntime::new(Keys::generate(), config(&url, KIND)).task(Arc::new(Echo::default()));
    let dir = std::env::temp_dir().join(format!("nostr-dvm-bench-runtime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = SqliteStore::open(dir.join("provider.sqlite")).unwrap();
    let stored = ProviderRuntime::new(Keys::generate(), config(&url, OTHER_KIND))
        .task(Arc::new(Echo::default()))
        .record_store(sqlite);
    let (bare, stored, mut ratios) = paired_throughput(&rt, &url, bare, stored);
    let _ = std::fs::remove_dir_all(&dir);

    let ratio = median(&mut ratios);
    let (lowest, highest) = (ratios[0], ratios[ratios.len() - 1]);
    let describe = |name: &str, mut side: Side| {
        let (rate, cpu) = (median(&mut side.rates), median(&mut side.cpu_per_job));
        format!(
            "{name} {rate:.0} jobs/s ({:.0} us of process CPU a job)",
            cpu * 1e6
        )
    };
    println!(
        "\nthroughput, {PAIRS} pairs of bursts of {BURST} jobs from {CUSTOMERS} customers ({WINDOW} in \
         flight; the process holds the relay, the customers and the provider), medians: {}, {}; \
         SqliteStore vs no store, the median pair: {ratio:.2}x (pairs {lowest:.2} to \
         {highest:.2}; {:.2} of the 0.8x floor)",
        describe("no store", bare),
        describe("SqliteStore", stored),
        ratio / 0.8
    );
    let growth = large / small;
    println!(
        "one job's update into SQLite: {:.1} us with 100 jobs held, {:.1} us with 100,000: \
         {growth:.2}x ({:.2} of the 1.2x limit)",
        small * 1e6,
        large * 1e6,
        growth / 1.2
    );
    println!(
        "for scale, a FileStore save (the whole snapshot): {:.2} ms with 100 jobs, {:.1} ms \
         with 10,000",
        file_100 * 1e3,
        file_10k * 1e3
    );
}
