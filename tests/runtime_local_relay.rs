//! The provider runtime against a real relay (`LocalRelay` on 127.0.0.1): answering customers
//! that are plain nostr-sdk clients, not this crate's `Customer`; surviving a restart; and,
//! with `CustomerRuntime` customers, a panicking task and a job cancelled while it runs.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

use std::sync::Arc;

use nostr_dvm::customer::CustomerConfig;
use nostr_dvm::nostr::{Event, EventBuilder, EventId, Filter, Keys, Kind, Tag};
use nostr_dvm::provider::{Notification as ProviderNote, PaymentPolicy, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::{
    CustomerRuntime, FileStore, LightningBackend, ProviderRuntime, RequestRelays,
    TestLightningBackend,
};
use nostr_dvm::task::{FixedPrice, Progress, Task, TaskError, TaskOutput, TaskRequest};
use nostr_dvm::testing::TestLightningNode;
use support::{
    cancel_while_waiting, panic_fails_job_and_next_is_served, provider_note, relay, wait_for,
    Gated, Running, Shout, KIND, WAIT,
};
use tokio::sync::{broadcast, mpsc, Semaphore};

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

/// Panics on the text "panic", upper-cases anything else.
struct Fragile;

#[async_trait::async_trait]
impl Task for Fragile {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(KIND)]
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        let text: String = request.texts().collect();
        assert_ne!(text, "panic", "the task panics on purpose");
        Ok(TaskOutput::new(text.to_uppercase()))
    }
}

/// A free provider with `task` on `url`, and its notifications.
fn free_provider(
    keys: &Keys,
    url: &str,
    task: Arc<dyn Task>,
) -> (ProviderRuntime, mpsc::UnboundedReceiver<ProviderNote>) {
    let config = ProviderConfig::new([Kind::from(KIND)]).relays([url.to_owned()]);
    free_provider_with(keys, config, task)
}

/// A provider with `config` and `task`, and its notifications.
fn free_provider_with(
    keys: &Keys,
    config: ProviderConfig,
    task: Arc<dyn Task>,
) -> (ProviderRuntime, mpsc::UnboundedReceiver<ProviderNote>) {
    let (notes_tx, notes) = mpsc::unbounded_channel();
    let runtime = ProviderRuntime::new(keys.clone(), config)
        .task(task)
        .on_notification(move |note| {
            let _ = notes_tx.send(note.clone());
        });
    (runtime, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_fails_its_job_and_the_provider_serves_the_next() {
    let (_relay, url) = relay().await;
    let provider = Keys::generate();
    let (runtime, _notes) = free_provider(&provider, &url, Arc::new(Fragile));
    let running = Running::start(runtime);
    let mut customer = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([&url]))
        .await
        .unwrap();

    panic_fails_job_and_next_is_served(&mut customer, &provider).await;

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_running_is_aborted_and_gets_no_result() {
    let (_relay, url) = relay().await;
    let provider = Keys::generate();
    let gate = Arc::new(Semaphore::new(0));
    let (runtime, mut notes) = free_provider(&provider, &url, Arc::new(Gated(gate.clone())));
    let running = Running::start(runtime);
    let mut customer = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([&url]))
        .await
        .unwrap();

    cancel_while_waiting(&mut customer, &provider, &mut notes, &gate, "never mind").await;

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_to_the_relays_a_request_names_when_the_policy_allows() {
    let (_provider_relay, provider_url) = relay().await;
    let (_customer_relay, customer_url) = relay().await;
    let provider = Keys::generate();

    // The customer listens only on its own relay and names it in the request, which it
    // publishes on the provider's relay.
    let listener = Client::default();
    listener.add_relay(&customer_url).await.unwrap();
    listener.connect().await;
    listener.wait_for_connection(WAIT).await;
    let mut notifications = listener.notifications();
    listener
        .subscribe(Filter::new().kind(Kind::from(KIND + 1000)), None)
        .await
        .unwrap();
    let ask = |text: &str| {
        EventBuilder::new(Kind::from(KIND), "")
            .tags([
                Tag::parse(["i", text, "text"]).unwrap(),
                Tag::parse(["p", &provider.public_key().to_hex()]).unwrap(),
                Tag::parse(["relays", &customer_url]).unwrap(),
            ])
            .sign_with_keys(&Keys::generate())
            .unwrap()
    };
    let sender = Client::default();
    sender.add_relay(&provider_url).await.unwrap();
    sender.connect().await;
    sender.wait_for_connection(WAIT).await;

    // Default policy: the answer stays on the provider's relay.
    let config = ProviderConfig::new([Kind::from(KIND)]).relays([provider_url.clone()]);
    let (runtime, mut notes) = free_provider_with(&provider, config, Arc::new(Shout));
    let running = Running::start(runtime);
    let first = ask("not there");
    sender.send_event(&first).await.unwrap();
    provider_note(&mut notes, |n| match n {
        ProviderNote::JobCompleted { job } if *job == first.id => Some(()),
        _ => None,
    })
    .await;
    running.stop().await;
    let answer = Filter::new().kind(Kind::from(KIND + 1000)).event(first.id);
    let on = |client: &Client, url: &str| {
        let (client, filter, url) = (client.clone(), answer.clone(), url.to_owned());
        async move { client.fetch_events_from([url], filter, WAIT).await.unwrap() }
    };
    let answered = on(&sender, &provider_url).await;
    assert_eq!(answered.len(), 1, "answered on the provider's relay");
    let elsewhere = on(&listener, &customer_url).await;
    assert!(elsewhere.is_empty(), "and there only");

    // With a policy that allows it (a local relay needs `allow_insecure`), it goes there too.
    let config = ProviderConfig::new([Kind::from(KIND)]).relays([provider_url.clone()]);
    let (runtime, _notes) = free_provider_with(&provider, config, Arc::new(Shout));
    let runtime = runtime.request_relays(RequestRelays {
        max_extra: 4,
        allow_insecure: true,
    });
    let running = Running::start(runtime);
    let second = ask("over there");
    sender.send_event(&second).await.unwrap();
    let content = wait_for(&mut notifications, result_for(second.id)).await;
    assert_eq!(content, "OVER THERE");
    running.stop().await;
    listener.disconnect().await;
    sender.disconnect().await;
}

#[test]
fn the_request_relay_policy_refuses_plain_and_local_urls_by_default() {
    let strict = RequestRelays {
        max_extra: 4,
        allow_insecure: false,
    };
    let allowed = |url: &str| strict.allows_url(url);
    assert!(allowed("wss://relay.example.com"));
    for url in [
        "ws://relay.example.com",
        "wss://127.0.0.1:7777",
        "wss://[::1]",
        "wss://localhost",
        "wss://relay.localhost",
    ] {
        assert!(!allowed(url), "{url}");
    }
}
