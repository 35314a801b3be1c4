//! What persistence costs (the storage issue's figures), printed as ratios to their limits:
//!
//! 1. **throughput**: bursts of [`BURST`] free jobs from [`CUSTOMERS`] customers through an
//!    in-process relay (`LocalRelay`, 127.0.0.1; at most [`WINDOW`] jobs in flight, which that
//!    relay needs not to drop events) to a provider runtime with no store, then to one with a
//!    `SqliteStore` (default sync mode, `synchronous=NORMAL`): jobs/s of each, and their ratio
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

use criterion::{BatchSize, Criterion, Throughput};
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

use burst::{median_rate, timed_bursts, Customer};
use echo::{Echo, KIND};

/// Jobs per burst.
const BURST: usize = 2_000;
/// Customers the burst comes from (one client each).
const CUSTOMERS: usize = 4;
/// The most jobs of a burst in flight at once (see `burst::run_window`).
const WINDOW: usize = 250;

fn config(url: &str) -> ProviderConfig {
    ProviderConfig::new([Kind::from(KIND)])
        .relays([url.to_owned()])
        .admission(Admission {
            max_live_jobs: 4 * BURST,
            max_jobs: 100_000,
            rate_limit: None,
            global_rate_limit: None,
            ..Admission::default()
        })
}

/// Runs bursts through a provider made by `runtime`, until stopped; the median burst's jobs/s.
fn throughput(
    c: &mut Criterion,
    rt: &Runtime,
    url: &str,
    name: &str,
    runtime: ProviderRuntime,
) -> f64 {
    let (stop, stopped) = oneshot::channel::<()>();
    let provider = rt.spawn(runtime.run(async {
        let _ = stopped.await;
    }));
    let mut customers = rt.block_on(async {
        let mut customers = Vec::new();
        for _ in 0..CUSTOMERS {
            customers.push(Customer::connect(url).await);
        }
        customers
    });
    let mut n = 0usize;
    let mut rates: Vec<f64> = Vec::new();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function(name, |b| {
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
    let _ = stop.send(());
    rt.block_on(async {
        provider.await.unwrap().unwrap();
        for customer in customers {
            customer.client.disconnect().await;
        }
    });
    median_rate(name, rates)
}

/// A provider persisting by updates with `jobs` jobs answered: its updates so far, merged
/// into one, and an update that changes one job (its record and the meta).
fn provider_with_jobs(jobs: usize) -> (StoreUpdate, StoreUpdate, Provider) {
    let keys = Keys::generate();
    let customer = Keys::generate();
    let mut config = config("wss://relay.example");
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
    let bare = ProviderRuntime::new(Keys::generate(), config(&url)).task(Arc::new(Echo));
    let no_store = throughput(&mut c, &rt, &url, "throughput/no_store", bare);
    let dir = std::env::temp_dir().join(format!("nostr-dvm-bench-runtime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = SqliteStore::open(dir.join("provider.sqlite")).unwrap();
    let stored = ProviderRuntime::new(Keys::generate(), config(&url))
        .task(Arc::new(Echo))
        .record_store(sqlite);
    let with_sqlite = throughput(&mut c, &rt, &url, "throughput/sqlite", stored);
    let _ = std::fs::remove_dir_all(&dir);

    let ratio = with_sqlite / no_store;
    println!(
        "\nthroughput (median bursts), bursts of {BURST} jobs from {CUSTOMERS} customers ({WINDOW} in flight): no \
         store {no_store:.0} \
         jobs/s, SqliteStore {with_sqlite:.0} jobs/s: {ratio:.2}x ({:.2} of the 0.8x floor)",
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
