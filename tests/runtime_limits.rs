//! The runtime's limits against remote input: a flood of paid requests and of settlements
//! keeps every queue within its capacity and loses no job and no payment; and a reconnection
//! asks the relay only for what was missed (the newest event seen minus a margin), yet still
//! gets what was published while the provider was away.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr_dvm::nostr::{Event, EventBuilder, EventId, Filter, Keys, Kind, Tag, Timestamp};
use nostr_dvm::provider::{
    Admission, Notification as ProviderNote, PaymentPolicy, PaymentProof, ProviderConfig,
};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayOptions, RelayPoolNotification};
use nostr_dvm::runtime::{
    LightningBackend, ProviderRuntime, TestLightningBackend, RECONNECTION_POLL,
    RESUBSCRIBE_MARGIN_SECS, SETTLEMENT_CAPACITY,
};
use nostr_dvm::task::FixedPrice;
use nostr_dvm::testing::TestLightningNode;
use nostr_relay_builder::prelude::{BoxedFuture, PolicyResult, QueryPolicy};
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use support::faults::Proxy;
use support::{local_relay, provider_note, Running, Shout, KIND, WAIT};
use tokio::sync::{broadcast, mpsc};

/// Records every filter of every `REQ` the relay is sent.
#[derive(Debug, Default, Clone)]
struct Recorder(Arc<Mutex<Vec<Filter>>>);

impl QueryPolicy for Recorder {
    fn admit_query<'a>(
        &'a self,
        query: &'a Filter,
        _addr: &'a SocketAddr,
    ) -> BoxedFuture<'a, PolicyResult> {
        self.0.lock().unwrap().push(query.clone());
        Box::pin(async { PolicyResult::Accept })
    }
}

impl Recorder {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The `since` of the provider's request subscriptions (`kinds: [5050]`) recorded from
    /// the `from`th filter on.
    fn request_sinces(&self, from: usize) -> Vec<Option<Timestamp>> {
        let kinds = BTreeSet::from([Kind::from(KIND)]);
        self.0.lock().unwrap()[from..]
            .iter()
            .filter(|f| f.kinds.as_ref() == Some(&kinds))
            .map(|f| f.since)
            .collect()
    }
}

/// A relay on 127.0.0.1 without its per-connection event rate limit, recording `REQ`s.
async fn relay(recorder: Recorder) -> (LocalRelay, String) {
    let limits = nostr_relay_builder::builder::RateLimit {
        max_reqs: 500,
        notes_per_minute: 1_000_000,
    };
    let builder = RelayBuilder::default()
        .rate_limit(limits)
        .query_policy(recorder);
    let relay = LocalRelay::new(builder);
    let url = local_relay::serve(relay.clone()).await.expect("relay runs");
    (relay, url)
}

fn request(keys: &Keys, text: &str, provider: &Keys) -> Event {
    EventBuilder::new(Kind::from(KIND), "")
        .tags([
            Tag::parse(["i", text, "text"]).unwrap(),
            Tag::parse(["p", &provider.public_key().to_hex()]).unwrap(),
        ])
        .sign_with_keys(keys)
        .unwrap()
}

/// A plain client on `url` that receives what `provider` publishes.
async fn watcher(
    url: &str,
    provider: &Keys,
) -> (Client, broadcast::Receiver<RelayPoolNotification>) {
    let client = Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    let notifications = client.notifications();
    let filter = Filter::new()
        .kinds([Kind::from(KIND + 1000), Kind::JobFeedback])
        .author(provider.public_key());
    client.subscribe(filter, None).await.unwrap();
    (client, notifications)
}

/// The job a result or feedback answers, and the invoice of a `payment-required` feedback.
fn answer(event: &Event) -> Option<(EventId, Option<String>)> {
    let job = *event.tags.event_ids().next()?;
    let required = event
        .tags
        .iter()
        .any(|t| t.as_slice().get(..2) == Some(&["status".into(), "payment-required".into()]));
    let bolt11 = event
        .tags
        .iter()
        .find(|t| t.as_slice().first().is_some_and(|n| n == "amount"))
        .and_then(|t| t.as_slice().get(2).cloned());
    Some((job, if required { bolt11 } else { None }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_paid_requests_and_settlements_loses_no_job_and_no_payment() {
    const JOBS: usize = 150;
    const BOGUS: usize = 4_000;
    let (_relay, url) = relay(Recorder::default()).await;
    let provider = Keys::generate();
    let backend = Arc::new(TestLightningBackend::new(TestLightningNode::new(7)));
    let admission = Admission {
        rate_limit: None,
        invoice_rate_limit: None,
        ..Admission::default()
    };
    let config = ProviderConfig::new([Kind::from(KIND)])
        .pricing(FixedPrice(1_000))
        .payment(PaymentPolicy::PayFirst)
        .admission(admission)
        .relays([url.clone()]);
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let runtime = ProviderRuntime::new(provider.clone(), config)
        .task(Arc::new(Shout))
        .lightning_shared(backend.clone() as Arc<dyn LightningBackend>)
        .on_notification(move |note| {
            let _ = notes_tx.send(note.clone());
        });
    let settlements = runtime.settlements();
    let running = Running::start(runtime);
    let (client, mut answers) = watcher(&url, &provider).await;

    // Thousands of settlements for jobs that do not exist, from many tasks at once, while
    // the paid jobs come in: the queue never holds more than its capacity.
    let most_queued = Arc::new(AtomicUsize::new(0));
    let flood = {
        let settlements = settlements.clone();
        let most_queued = most_queued.clone();
        tokio::spawn(async move {
            let senders: Vec<_> = (0..8)
                .map(|t| {
                    let settlements = settlements.clone();
                    tokio::spawn(async move {
                        for i in 0..BOGUS / 8 {
                            let job = EventId::from_byte_array([t as u8 + 1; 32]);
                            let proof = PaymentProof::Preimage([(i % 251) as u8; 32]);
                            assert!(settlements.settle(job, proof).await, "the runtime runs");
                        }
                    })
                })
                .collect();
            let sampler = tokio::spawn(async move {
                loop {
                    most_queued.fetch_max(settlements.queued(), Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            });
            for sender in senders {
                sender.await.unwrap();
            }
            sampler.abort();
        })
    };

    let customer = Keys::generate();
    let mut texts = std::collections::HashMap::new();
    for i in 0..JOBS {
        let event = request(&customer, &format!("job {i}"), &provider);
        texts.insert(event.id, format!("JOB {i}"));
        client.send_event(&event).await.unwrap();
    }

    // Every job asks for payment, is paid through the backend (whose settlements wait in
    // the same flooded queue), and gets its result.
    let mut paid = HashSet::new();
    let mut results = HashSet::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while results.len() < JOBS {
            let RelayPoolNotification::Event { event, .. } = answers.recv().await.unwrap() else {
                continue;
            };
            let Some((job, bolt11)) = answer(&event) else {
                continue;
            };
            if let Some(bolt11) = bolt11 {
                if paid.insert(job) {
                    backend.pay(&bolt11).expect("the invoice is the backend's");
                }
            }
            if event.kind == Kind::from(KIND + 1000) {
                assert_eq!(Some(&event.content), texts.get(&job), "the right result");
                results.insert(job);
            }
        }
    })
    .await
    .expect("every paid job gets its result despite the flood");
    assert_eq!(paid.len(), JOBS);

    tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the flooded settlements are all taken")
        .unwrap();
    let most = most_queued.load(Ordering::SeqCst);
    assert!(
        most <= SETTLEMENT_CAPACITY,
        "{most} settlements queued, more than {SETTLEMENT_CAPACITY}"
    );
    assert!(
        most >= SETTLEMENT_CAPACITY / 2,
        "the flood filled the queue ({most} at most): back-pressure was tested"
    );

    // The provider saw every payment, and handed none back.
    let mut payments = 0;
    while let Ok(note) = notes.try_recv() {
        match note {
            ProviderNote::PaymentReceived { .. } => payments += 1,
            ProviderNote::JobFailed { reason, .. } => panic!("a job failed: {reason}"),
            _ => {}
        }
    }
    assert_eq!(payments, JOBS);

    running.stop().await;
    client.disconnect().await;
}

/// Waits for the result of `job`.
async fn result_of(
    answers: &mut broadcast::Receiver<RelayPoolNotification>,
    job: EventId,
) -> String {
    support::wait_for(answers, |e| {
        (e.kind == Kind::from(KIND + 1000) && answer(e).is_some_and(|(j, _)| j == job))
            .then(|| e.content.clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_asks_only_for_what_was_missed_and_gets_it() {
    let recorder = Recorder::default();
    let (_relay, url) = relay(recorder.clone()).await;
    let proxy = Proxy::start(&url).await;
    let provider = Keys::generate();
    let mut config = ProviderConfig::new([Kind::from(KIND)]).relays([proxy.url().to_owned()]);
    // The first subscription reaches back an hour: far from what a re-subscription needs.
    config.lookback_secs = 3_600;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let runtime = ProviderRuntime::new(provider.clone(), config)
        .task(Arc::new(Shout))
        .relay_options(
            RelayOptions::new()
                .retry_interval(Duration::from_millis(200))
                .adjust_retry_interval(false),
        )
        .connect_timeout(Duration::from_secs(2))
        .on_notification(move |note| {
            let _ = notes_tx.send(note.clone());
        });
    let started = Timestamp::now();
    let running = Running::start(runtime);
    let (client, mut answers) = watcher(&url, &provider).await;

    // A first job, seen live by the provider.
    let customer = Keys::generate();
    let first = request(&customer, "first", &provider);
    client.send_event(&first).await.unwrap();
    assert_eq!(result_of(&mut answers, first.id).await, "FIRST");
    let original = recorder.request_sinces(0);
    assert_eq!(original.len(), 1, "one subscription to requests so far");
    let original = original[0].expect("the request filter has a since");
    assert!(original.as_secs() <= started.as_secs() - 3_500);

    // Cut off, a second job is published meanwhile; back, the provider gets it.
    let mark = recorder.len();
    proxy.cut();
    let second = request(&customer, "second", &provider);
    client.send_event(&second).await.unwrap();
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        provider_note(&mut notes, |n| {
            matches!(n, ProviderNote::JobReceived { job, .. } if *job == second.id).then_some(())
        }),
    );
    assert!(
        early.await.is_err(),
        "the proxy really cut the provider off"
    );
    proxy.restore();
    assert_eq!(result_of(&mut answers, second.id).await, "SECOND");
    let later = Timestamp::from(first.created_at.as_secs() - RESUBSCRIBE_MARGIN_SECS);
    // The runtime sees the reconnection within `RECONNECTION_POLL` (nostr-sdk may have sent
    // its own re-subscription, with the old filter, before).
    let deadline = tokio::time::Instant::now() + RECONNECTION_POLL * 8;
    let mut sinces = recorder.request_sinces(mark);
    while !sinces.contains(&Some(later)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sinces = recorder.request_sinces(mark);
    }
    assert!(
        sinces.contains(&Some(later)),
        "the runtime re-subscribed from the first job minus the margin: {sinces:?}"
    );

    // Again: now every re-subscription (nostr-sdk's own too, which re-sends the last filter
    // given) asks only for the last minutes, and the job published meanwhile still arrives.
    let mark = recorder.len();
    proxy.cut();
    let third = request(&customer, "third", &provider);
    client.send_event(&third).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    assert_eq!(result_of(&mut answers, third.id).await, "THIRD");
    let sinces = recorder.request_sinces(mark);
    assert!(!sinces.is_empty(), "the runtime subscribed again");
    for since in &sinces {
        let since = since.expect("a since");
        assert!(since >= later, "{since:?} reaches back before {later:?}");
    }

    running.stop().await;
    client.disconnect().await;
}
