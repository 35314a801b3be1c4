//! `ProviderRuntime::record_store` over a real relay: nothing is published while the store
//! cannot write (the writes are retried, not dropped), the answer goes out once they succeed,
//! and a runtime started again on the same records does not run a job twice.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::job::JobState;
use nostr_dvm::nostr::{Event, EventBuilder, Filter, Keys, Kind, Tag};
use nostr_dvm::provider::{ProviderConfig, ProviderSnapshot, StoreUpdate};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::{MemoryRecordStore, ProviderRuntime, RecordStore, RuntimeError};
use support::{relay, wait_for, CountingShout, Running, KIND};
use tokio::sync::broadcast;

/// Records in memory, whose writes fail while `failing` is set.
#[derive(Default)]
struct FlakyStore {
    records: MemoryRecordStore,
    failing: AtomicBool,
    attempts: AtomicUsize,
}

impl RecordStore for FlakyStore {
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError> {
        self.records.load()
    }

    fn apply(&self, updates: &[StoreUpdate]) -> Result<(), RuntimeError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(RuntimeError::Store("disk full (on purpose)".into()));
        }
        self.records.apply(updates)
    }
}

fn runtime(url: &str, keys: &Keys, store: Arc<FlakyStore>, runs: Arc<AtomicUsize>) -> Running {
    let mut config = ProviderConfig::new([Kind::from(KIND)]).relays([url.to_owned()]);
    config.lookback_secs = 3_600;
    Running::start(
        ProviderRuntime::new(keys.clone(), config)
            .task(Arc::new(CountingShout(runs)))
            .record_store_shared(store),
    )
}

/// A plain client that publishes a request to `provider` and listens to its answers.
async fn customer(
    url: &str,
    provider: &Keys,
) -> (Client, broadcast::Receiver<RelayPoolNotification>, Event) {
    let client = Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(10)).await;
    let notifications = client.notifications();
    let request = EventBuilder::new(Kind::from(KIND), "")
        .tags([
            Tag::parse(["i", "persist me", "text"]).unwrap(),
            Tag::parse(["p", &provider.public_key().to_hex()]).unwrap(),
        ])
        .sign_with_keys(&Keys::generate())
        .unwrap();
    let filter = Filter::new()
        .kinds([Kind::from(KIND + 1000), Kind::JobFeedback])
        .event(request.id);
    client.subscribe(filter, None).await.unwrap();
    client.send_event(&request).await.unwrap();
    (client, notifications, request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_goes_out_while_the_store_fails_and_the_answer_follows_the_write() {
    let (_relay, url) = relay().await;
    let keys = Keys::generate();
    let store = Arc::new(FlakyStore::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let running = runtime(&url, &keys, store.clone(), runs.clone());
    // Let the provider start and store its first state, then break the disk.
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.records.records().last_update == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first write");
    store.failing.store(true, Ordering::SeqCst);
    let attempts = store.attempts.load(Ordering::SeqCst);

    let (client, mut notifications, request) = customer(&url, &keys).await;
    // The job is received, but its writes fail: no feedback, no result.
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.attempts.load(Ordering::SeqCst) < attempts + 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the writer retries");
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Ok(RelayPoolNotification::Event { event, .. }) = notifications.recv().await {
                return event;
            }
        }
    })
    .await;
    assert!(early.is_err(), "published before it was stored: {early:?}");
    // A free job's task may run meanwhile (nothing is paid, nothing published): its result
    // waits for the job's state to be written. A paid job's task waits for its payment's
    // ledger entry (tests/provider_updates.rs).

    // The disk is back: the same updates are written, then everything goes out.
    store.failing.store(false, Ordering::SeqCst);
    let result = wait_for(&mut notifications, |e| {
        (e.kind == Kind::from(KIND + 1000)).then(|| e.content.clone())
    })
    .await;
    assert_eq!(result, "PERSIST ME");
    running.stop().await;
    let stored = store.records.records();
    let job = stored.job(&request.id).expect("the job is stored");
    assert!(
        matches!(job.state(), JobState::Delivered { .. }),
        "{:?}",
        job.state()
    );
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_started_again_on_the_same_records_does_not_run_a_job_twice() {
    let (_relay, url) = relay().await;
    let keys = Keys::generate();
    let store = Arc::new(FlakyStore::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let running = runtime(&url, &keys, store.clone(), runs.clone());
    let (client, mut notifications, request) = customer(&url, &keys).await;
    wait_for(&mut notifications, |e| {
        (e.kind == Kind::from(KIND + 1000)).then_some(())
    })
    .await;
    running.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // Again, on the same records: the relay hands it the request again (lookback).
    let running = runtime(&url, &keys, store.clone(), runs.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the stored job is not run again"
    );
    assert!(store.records.records().job(&request.id).is_some());
    client.disconnect().await;
}
