//! The provider runtime against a real relay (`LocalRelay` on 127.0.0.1), answering
//! customers that are plain nostr-sdk clients, not this crate's `Customer`.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

use std::sync::Arc;

use nostr_dvm::nostr::{Event, EventBuilder, EventId, Filter, Keys, Kind, Tag};
use nostr_dvm::provider::{PaymentPolicy, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::{FileStore, LightningBackend, ProviderRuntime, TestLightningBackend};
use nostr_dvm::task::FixedPrice;
use nostr_dvm::testing::TestLightningNode;
use support::{relay, wait_for, Running, Shout, KIND, WAIT};
use tokio::sync::broadcast;

/// A plain nostr-sdk client, subscribed to the answers to `request` before publishing it
/// (a client gets no notification of its own events).
async fn customer(
    url: &str,
    request: &Event,
) -> (Client, broadcast::Receiver<RelayPoolNotification>) {
    let client = Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    let notifications = client.notifications();
    let filter = Filter::new()
        .kinds([Kind::from(KIND + 1000), Kind::JobFeedback])
        .event(request.id);
    client.subscribe(filter, None).await.unwrap();
    client.send_event(request).await.unwrap();
    (client, notifications)
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

fn result_for(job: EventId) -> impl FnMut(&Event) -> Option<String> {
    move |event| {
        (event.kind == Kind::from(KIND + 1000) && event.tags.event_ids().any(|id| *id == job))
            .then(|| event.content.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_job_from_a_plain_client_gets_its_result() {
    let (_relay, url) = relay().await;
    let provider = Keys::generate();
    let config = ProviderConfig::new([Kind::from(KIND)]).relays([url.clone()]);
    let running =
        Running::start(ProviderRuntime::new(provider.clone(), config).task(Arc::new(Shout)));

    let event = request(&Keys::generate(), "hello relay", &provider);
    let (client, mut notifications) = customer(&url, &event).await;
    let content = wait_for(&mut notifications, result_for(event.id)).await;
    assert_eq!(content, "HELLO RELAY");

    running.stop().await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_job_survives_a_provider_restart_while_waiting_for_payment() {
    let (_relay, url) = relay().await;
    let dir = std::env::temp_dir().join(format!("nostr-dvm-runtime-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snapshot = dir.join("provider.json");
    let _ = std::fs::remove_file(&snapshot);

    let provider = Keys::generate();
    let backend = Arc::new(TestLightningBackend::new(TestLightningNode::new(5)));
    let runtime = || {
        let config = ProviderConfig::new([Kind::from(KIND)])
            .pricing(FixedPrice(21_000))
            .payment(PaymentPolicy::PayFirst)
            .relays([url.clone()]);
        ProviderRuntime::new(provider.clone(), config)
            .task(Arc::new(Shout))
            .lightning_shared(backend.clone() as Arc<dyn LightningBackend>)
            .store(FileStore::new(&snapshot))
    };

    let running = Running::start(runtime());
    let event = request(&Keys::generate(), "pay me first", &provider);
    let (client, mut notifications) = customer(&url, &event).await;
    let bolt11 = wait_for(&mut notifications, |e| {
        if e.kind != Kind::JobFeedback {
            return None;
        }
        let required = e
            .tags
            .iter()
            .any(|t| t.as_slice().get(..2) == Some(&["status".into(), "payment-required".into()]));
        let amount = e
            .tags
            .iter()
            .find(|t| t.as_slice().first().is_some_and(|n| n == "amount"))?;
        required
            .then(|| amount.as_slice().get(2).cloned())
            .flatten()
    })
    .await;

    // The provider stops while the job waits for payment; the snapshot is on disk.
    running.stop().await;
    assert!(snapshot.exists(), "the runtime saved a snapshot");

    // The customer pays while it is down; the wallet reports it when the provider is back.
    backend.pay(&bolt11).expect("the invoice is the backend's");
    let running = Running::start(runtime());
    let content = wait_for(&mut notifications, result_for(event.id)).await;
    assert_eq!(content, "PAY ME FIRST");

    running.stop().await;
    client.disconnect().await;
    let _ = std::fs::remove_dir_all(&dir);
}
