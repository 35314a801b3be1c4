//! The provider runtime on relays that fail: one that drops every connection mid-job (twice:
//! while the receipt is published, and while the result is), and one that answers with
//! garbage. A paid job is never lost: the runtime reconnects, the relay re-sends what was
//! published meanwhile (the subscriptions' `since` reaches back before the outage), and a
//! result that could not be published is retried until a relay takes it.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::customer::{CustomerConfig, Delivery, Notification as CustomerNote, Output};
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{EventId, Keys, Kind, PublicKey, Timestamp};
use nostr_dvm::provider::{Notification as ProviderNote, PaymentPolicy, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::RelayOptions;
use nostr_dvm::runtime::{
    ConnectOptions, CustomerRuntime, MemoryStore, ProviderRuntime, RuntimeError, SnapshotStore,
    TestLightningBackend,
};
use nostr_dvm::task::FixedPrice;
use nostr_dvm::testing::{keys_from_seed, TestLightningNode, TestZapper};
use rand::rngs::OsRng;
use support::faults::{GarbageRelay, Proxy, SilentRelay};
use support::{customer_output, provider_note, relay, Gated, Running, KIND, WAIT};
use tokio::sync::{mpsc, Semaphore};

const PRICE_MSAT: u64 = 21_000;

/// A priced, pay-first provider (invoices from a test node) paid by zaps from `zapper`, on `relays`, reconnecting fast.
fn provider_runtime(
    keys: &Keys,
    zapper: &TestZapper,
    relays: &[&str],
    gate: Arc<Semaphore>,
) -> (ProviderRuntime, mpsc::UnboundedReceiver<ProviderNote>) {
    let config = ProviderConfig::new([Kind::from(KIND)])
        .pricing(FixedPrice(PRICE_MSAT))
        .payment(PaymentPolicy::PayFirst)
        .zappers([zapper.pubkey()])
        .relays(relays.iter().map(|r| r.to_string()));
    let (notes_tx, notes) = mpsc::unbounded_channel();
    let runtime = ProviderRuntime::new(keys.clone(), config)
        .task(Arc::new(Gated(gate)))
        .lightning(TestLightningBackend::new(TestLightningNode::new(7)))
        .connect_timeout(Duration::from_secs(2))
        .relay_options(fast_reconnect_relays())
        .on_notification(move |note| {
            let _ = notes_tx.send(note.clone());
        });
    (runtime, notes)
}

/// Submits a job to `provider` and waits for its payment request.
async fn submit_and_wait_for_invoice(
    customer: &mut CustomerRuntime,
    provider: PublicKey,
    text: &str,
) -> EventId {
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text(text));
    let job = customer
        .submit(request, Delivery::To(provider))
        .await
        .unwrap();
    customer_output(customer, |o| match o {
        Output::Notify(CustomerNote::PaymentRequested { amount_msat, .. }) => {
            assert_eq!(amount_msat, PRICE_MSAT);
            Some(())
        }
        _ => None,
    })
    .await;
    job
}

/// Zaps the job's payment request: the zapper's receipt goes to the customer's relays.
async fn pay_by_zap(
    customer: &mut CustomerRuntime,
    zapper: &TestZapper,
    job: EventId,
    provider: PublicKey,
) {
    customer.zap(job, provider).await.unwrap();
    let (zap_request, amount) = customer_output(customer, |o| match o {
        Output::SendZap {
            zap_request,
            amount_msat,
            ..
        } => Some((zap_request, amount_msat)),
        _ => None,
    })
    .await;
    let now = Timestamp::now();
    let invoice = zapper.invoice_for(&zap_request, amount, now, &mut OsRng);
    let receipt = zapper.receipt(&zap_request, &invoice, now, &mut OsRng);
    customer.publish(&receipt).await.unwrap();
}

/// Relay options that reconnect every 200 ms.
fn fast_reconnect_relays() -> RelayOptions {
    RelayOptions::new()
        .retry_interval(Duration::from_millis(200))
        .adjust_retry_interval(false)
}

/// A customer's connection options that reconnect every 200 ms.
fn fast_reconnect() -> ConnectOptions {
    ConnectOptions {
        relay_options: fast_reconnect_relays(),
        ..ConnectOptions::default()
    }
}

/// Waits until the provider has started the task of `job`.
async fn job_started(notes: &mut mpsc::UnboundedReceiver<ProviderNote>, job: EventId) {
    provider_note(notes, |n| match n {
        ProviderNote::JobStarted { job: j, .. } if *j == job => Some(()),
        _ => None,
    })
    .await;
}

/// Waits until the provider has completed `job` (its result is out of the state machine).
async fn job_completed(notes: &mut mpsc::UnboundedReceiver<ProviderNote>, job: EventId) {
    provider_note(notes, |n| match n {
        ProviderNote::JobCompleted { job: j, .. } if *j == job => Some(()),
        _ => None,
    })
    .await;
}

/// Waits for the job's result at the customer.
async fn result_of(customer: &mut CustomerRuntime, job: EventId) -> String {
    customer_output(customer, |o| match o {
        Output::Notify(CustomerNote::Result {
            job: j, content, ..
        }) if j == job => Some(content),
        Output::Notify(CustomerNote::Failed { reason, .. }) => panic!("job failed: {reason}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_job_survives_a_relay_that_drops_twice_mid_job() {
    let (_relay, url) = relay().await;
    let proxy = Proxy::start(&url).await;
    let zapper = TestZapper::new(keys_from_seed(9), TestLightningNode::new(10));
    let provider = Keys::generate();
    let gate = Arc::new(Semaphore::new(0));
    let (runtime, mut notes) = provider_runtime(&provider, &zapper, &[proxy.url()], gate.clone());
    let running = Running::start(runtime);

    let mut customer = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([&url]))
        .await
        .unwrap();
    let job =
        submit_and_wait_for_invoice(&mut customer, provider.public_key(), "no job lost").await;

    // The provider's relay goes away; the customer pays meanwhile: the receipt reaches the
    // relay, not the provider.
    proxy.cut();
    pay_by_zap(&mut customer, &zapper, job, provider.public_key()).await;
    let early = tokio::time::timeout(
        Duration::from_millis(500),
        provider_note(&mut notes, |n| {
            matches!(n, ProviderNote::PaymentReceived { .. }).then_some(())
        }),
    )
    .await;
    assert!(early.is_err(), "the proxy really cut the provider off");

    // Back: the provider reconnects, the relay re-sends the receipt, the work starts.
    let before = proxy.accepted();
    proxy.restore();
    job_started(&mut notes, job).await;
    assert!(proxy.accepted() > before, "the runtime reconnected");

    // Gone again while the task runs: the result cannot be published when it is ready.
    proxy.cut();
    gate.add_permits(1);
    job_completed(&mut notes, job).await;
    let early = tokio::time::timeout(Duration::from_millis(500), result_of(&mut customer, job));
    assert!(
        early.await.is_err(),
        "no result while the provider is cut off"
    );

    // Back: the runtime publishes the result it kept.
    proxy.restore();
    assert_eq!(result_of(&mut customer, job).await, "NO JOB LOST");

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_sends_garbage_does_not_stop_a_paid_job() {
    let (_relay, url) = relay().await;
    let garbage = GarbageRelay::start().await;
    let zapper = TestZapper::new(keys_from_seed(9), TestLightningNode::new(10));
    let provider = Keys::generate();
    let gate = Arc::new(Semaphore::new(1));
    let (runtime, mut notes) =
        provider_runtime(&provider, &zapper, &[garbage.url(), &url], gate.clone());
    let running = Running::start(runtime);

    let mut customer = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([&url]))
        .await
        .unwrap();
    let job = submit_and_wait_for_invoice(&mut customer, provider.public_key(), "garbage in").await;
    pay_by_zap(&mut customer, &zapper, job, provider.public_key()).await;
    assert_eq!(result_of(&mut customer, job).await, "GARBAGE IN");

    // The garbage relay's reserved opcode dropped the connection after its second REQ; the
    // runtime reconnects to it and subscribes again (more garbage), and still serves jobs.
    tokio::time::timeout(WAIT, async {
        while garbage.requests() < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the runtime reconnects to the garbage relay and subscribes again");
    gate.add_permits(1);
    let job = submit_and_wait_for_invoice(&mut customer, provider.public_key(), "still up").await;
    pay_by_zap(&mut customer, &zapper, job, provider.public_key()).await;
    assert_eq!(result_of(&mut customer, job).await, "STILL UP");
    assert!(
        garbage.garbage() >= 4 * 8,
        "the garbage relay answered with garbage"
    );

    // Nothing the garbage relay sent became a job event: the provider saw two jobs.
    let mut received = 0;
    while let Ok(note) = notes.try_recv() {
        if matches!(note, ProviderNote::JobReceived { .. }) {
            received += 1;
        }
    }
    assert_eq!(received, 2);

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_relay_takes_is_an_error_not_a_silent_wait() {
    let garbage = GarbageRelay::steady().await;
    let config = CustomerConfig::new([garbage.url()]);
    let options = ConnectOptions {
        timeout: WAIT,
        ..ConnectOptions::default()
    };
    let mut customer = CustomerRuntime::connect_with(Keys::generate(), config, options)
        .await
        .unwrap();
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("anyone?"));
    let refused = customer.submit(request, Delivery::Public).await;
    match refused {
        Err(RuntimeError::NotPublished { job, reason }) => {
            assert!(reason.contains("blocked: garbage relay"), "{reason}");
            // The job is still tracked: it can be cancelled.
            customer.cancel(job).await.unwrap();
        }
        other => panic!("expected NotPublished, got {other:?}"),
    }
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_made_while_every_relay_is_down_is_published_after_a_restart() {
    let (_relay, url) = relay().await;
    let proxy = Proxy::start(&url).await;
    let zapper = TestZapper::new(keys_from_seed(9), TestLightningNode::new(10));
    let provider = Keys::generate();
    let store = Arc::new(MemoryStore::new());
    let gate = Arc::new(Semaphore::new(0));
    let runtime = |gate: Arc<Semaphore>| {
        let (runtime, notes) = provider_runtime(&provider, &zapper, &[proxy.url()], gate);
        let runtime = runtime
            .store_shared(store.clone() as Arc<dyn SnapshotStore>)
            .flush_timeout(Duration::from_millis(300));
        (runtime, notes)
    };
    let (first, mut notes) = runtime(gate.clone());
    let running = Running::start(first);

    let mut customer = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([&url]))
        .await
        .unwrap();
    let job = submit_and_wait_for_invoice(&mut customer, provider.public_key(), "kept").await;
    pay_by_zap(&mut customer, &zapper, job, provider.public_key()).await;
    job_started(&mut notes, job).await;

    // Every relay goes away, the result is made, and the provider stops before any relay
    // could take it.
    proxy.cut();
    gate.add_permits(1);
    job_completed(&mut notes, job).await;
    running.stop().await;
    let early = tokio::time::timeout(Duration::from_millis(300), result_of(&mut customer, job));
    assert!(early.await.is_err(), "no relay had the result");

    // The next start publishes it from the snapshot; the task does not run again (its gate
    // is closed: a re-run would never finish).
    proxy.restore();
    let (second, _notes) = runtime(Arc::new(Semaphore::new(0)));
    let running = Running::start(second);
    assert_eq!(result_of(&mut customer, job).await, "KEPT");

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cut_off_from_its_relay_gets_the_result_when_it_is_back() {
    let (_relay, url) = relay().await;
    let proxy = Proxy::start(&url).await;
    let zapper = TestZapper::new(keys_from_seed(9), TestLightningNode::new(10));
    let provider = Keys::generate();
    let gate = Arc::new(Semaphore::new(0));
    let (runtime, mut notes) = provider_runtime(&provider, &zapper, &[&url], gate.clone());
    let running = Running::start(runtime);

    // The customer is the one behind the proxy this time.
    let config = CustomerConfig::new([proxy.url()]);
    let mut customer = CustomerRuntime::connect_with(Keys::generate(), config, fast_reconnect())
        .await
        .unwrap();
    let job = submit_and_wait_for_invoice(&mut customer, provider.public_key(), "later").await;
    pay_by_zap(&mut customer, &zapper, job, provider.public_key()).await;
    job_started(&mut notes, job).await;

    // The result goes out while the customer is away; the relay keeps it.
    proxy.cut();
    gate.add_permits(1);
    job_completed(&mut notes, job).await;
    let early = tokio::time::timeout(Duration::from_millis(300), result_of(&mut customer, job));
    assert!(early.await.is_err(), "the customer is cut off");

    // Back: the customer reconnects, subscribes again and the relay sends the stored result.
    proxy.restore();
    assert_eq!(result_of(&mut customer, job).await, "LATER");

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_never_answers_holds_nothing_back() {
    let (_relay, url) = relay().await;
    let silent = SilentRelay::start().await;
    let zapper = TestZapper::new(keys_from_seed(9), TestLightningNode::new(10));
    let provider = Keys::generate();
    let gate = Arc::new(Semaphore::new(3));
    let (runtime, _notes) = provider_runtime(&provider, &zapper, &[silent.url(), &url], gate);
    let running = Running::start(runtime);

    // The customer has the silent relay too.
    let config = CustomerConfig::new([silent.url(), &url]);
    let mut customer = CustomerRuntime::connect(Keys::generate(), config)
        .await
        .unwrap();
    // Three paid jobs in a row, all within less than one OK timeout (10 s) of the silent
    // relay: neither side holds an event until the silent relay's OK times out.
    let jobs = async {
        for text in ["one", "two", "three"] {
            let job = submit_and_wait_for_invoice(&mut customer, provider.public_key(), text).await;
            pay_by_zap(&mut customer, &zapper, job, provider.public_key()).await;
            assert_eq!(result_of(&mut customer, job).await, text.to_uppercase());
        }
    };
    tokio::time::timeout(Duration::from_secs(8), jobs)
        .await
        .expect("no event waits for the silent relay");
    // Both sides sent it their events too (3 requests, 3 receipts, and the provider's
    // feedback and results): the silent relay was in use, not skipped.
    tokio::time::timeout(WAIT, async {
        while silent.events() < 3 * 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the silent relay gets every event");

    running.stop().await;
    customer.disconnect().await;
}
