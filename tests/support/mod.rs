//! What the runtime tests share: a real relay on 127.0.0.1, a provider runtime on its own
//! task, and a relay that misbehaves on purpose. Each test file uses a part of it.
#![allow(dead_code)]

#[cfg(unix)]
pub mod children;
pub mod faults;
#[cfg(feature = "lnbits")]
pub mod lnbits;
#[path = "../../examples/support/local_relay.rs"]
pub mod local_relay;
#[cfg(all(feature = "nwc", feature = "lnbits", unix))]
pub mod nwc;
#[cfg(all(feature = "postgres", unix))]
pub mod postgres;
#[cfg(feature = "lnbits")]
pub mod zapper;

use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::customer::Output;
use nostr_dvm::provider::Notification as ProviderNote;
use nostr_dvm::runtime::CustomerRuntime;
use tokio::sync::{mpsc, Semaphore};

use nostr_dvm::nostr::{Event, Kind};
use nostr_dvm::runtime::nostr_sdk::RelayPoolNotification;
use nostr_dvm::runtime::{ProviderRuntime, RuntimeError};
use nostr_dvm::task::{Progress, Task, TaskError, TaskOutput, TaskRequest};
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// The job kind the test tasks serve.
pub const KIND: u16 = 5050;
/// The longest wait for any one step.
pub const WAIT: Duration = Duration::from_secs(10);

/// Upper-cases its text inputs.
pub struct Shout;

#[async_trait::async_trait]
impl Task for Shout {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(KIND)]
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        Ok(TaskOutput::new(
            request.texts().collect::<String>().to_uppercase(),
        ))
    }
}

/// Upper-cases its text inputs and counts its runs.
pub struct CountingShout(pub Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl Task for CountingShout {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(KIND)]
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(TaskOutput::new(
            request.texts().collect::<String>().to_uppercase(),
        ))
    }
}

/// A real relay (`LocalRelay`) on 127.0.0.1, and its `ws://` URL.
pub async fn relay() -> (LocalRelay, String) {
    let relay = LocalRelay::new(RelayBuilder::default());
    let url = local_relay::serve(relay.clone()).await.expect("relay runs");
    (relay, url)
}

/// A provider runtime running on its own task, and the means to stop it.
pub struct Running {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), RuntimeError>>,
}

impl Running {
    /// Runs `runtime` until [`stop`](Self::stop).
    pub fn start(runtime: ProviderRuntime) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(runtime.run(async {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    /// Stops the runtime and checks that it ended cleanly and in time.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the runtime stops in time")
            .expect("the runtime task does not panic")
            .expect("the runtime ends cleanly");
    }
}

/// Waits (up to [`WAIT`]) for the first event from the relay that `pick` maps to `Some`.
pub async fn wait_for<T>(
    notifications: &mut broadcast::Receiver<RelayPoolNotification>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let RelayPoolNotification::Event { event, .. } = notifications.recv().await.unwrap()
            {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        }
    })
    .await
    .expect("the event arrives in time")
}

/// Upper-cases its text inputs once the test opens its gate.
pub struct Gated(pub Arc<Semaphore>);

#[async_trait::async_trait]
impl Task for Gated {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(KIND)]
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        self.0
            .acquire()
            .await
            .map_err(|_| TaskError::new("gate closed"))?
            .forget();
        Ok(TaskOutput::new(
            request.texts().collect::<String>().to_uppercase(),
        ))
    }
}

/// Waits for the provider's first notification that `pick` maps to `Some`.
pub async fn provider_note<T>(
    notes: &mut mpsc::UnboundedReceiver<ProviderNote>,
    mut pick: impl FnMut(&ProviderNote) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let note = notes.recv().await.expect("the provider runs");
            if let Some(found) = pick(&note) {
                return found;
            }
        }
    })
    .await
    .expect("the provider gets there in time")
}

/// Waits for the customer's first output that `pick` maps to `Some`.
pub async fn customer_output<T>(
    customer: &mut CustomerRuntime,
    mut pick: impl FnMut(Output) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let output = customer.next().await.expect("the customer's relay is up");
            if let Some(found) = pick(output) {
                return found;
            }
        }
    })
    .await
    .expect("the customer gets there in time")
}

/// Waits for the content of the result of `job`.
pub async fn result_content(
    customer: &mut CustomerRuntime,
    job: nostr_dvm::nostr::EventId,
) -> String {
    customer_output(customer, |o| match o {
        Output::Notify(nostr_dvm::customer::Notification::Result {
            job: j, content, ..
        }) if j == job => Some(content),
        _ => None,
    })
    .await
}

/// Submits a job with text input `text` to `provider`, a job whose run waits for a permit of
/// `gate`, cancels it while it runs, and checks that its run was aborted: the provider tells
/// of the cancellation (never of its completion), and a second job, given the one permit,
/// completes while the first never took it.
pub async fn cancel_while_waiting(
    customer: &mut CustomerRuntime,
    provider: &nostr_dvm::nostr::Keys,
    notes: &mut mpsc::UnboundedReceiver<ProviderNote>,
    gate: &Semaphore,
    text: &str,
) {
    let job = submit_text(customer, provider, text).await;
    provider_note(notes, |n| match n {
        ProviderNote::JobStarted { job: j, .. } if *j == job => Some(()),
        _ => None,
    })
    .await;
    customer.cancel(job).await.unwrap();
    provider_note(notes, |n| match n {
        ProviderNote::JobCancelled { job: j } if *j == job => Some(()),
        ProviderNote::JobCompleted { .. } => panic!("a cancelled job completed"),
        _ => None,
    })
    .await;

    // The aborted run never takes its permit: a second job takes it and completes, and the
    // provider publishes no result for the first.
    gate.add_permits(1);
    let second = submit_text(customer, provider, text).await;
    let completed = provider_note(notes, |n| match n {
        ProviderNote::JobCompleted { job } => Some(*job),
        _ => None,
    })
    .await;
    assert_eq!(completed, second);
    assert_eq!(gate.available_permits(), 0);
}

/// Submits a job of [`KIND`] with text input `text`, to `provider`.
pub async fn submit_text(
    customer: &mut CustomerRuntime,
    provider: &nostr_dvm::nostr::Keys,
    text: &str,
) -> nostr_dvm::nostr::EventId {
    let request = nostr_dvm::nip90::JobRequest::builder(Kind::from(KIND))
        .input(nostr_dvm::nip90::JobInput::text(text));
    customer
        .submit(
            request,
            nostr_dvm::customer::Delivery::To(provider.public_key()),
        )
        .await
        .unwrap()
}

/// Submits a job with text input `panic`, whose task panics, and checks that it fails with a
/// reason that keeps the panic's message private, then that the provider serves the next job
/// (`still here`, upper-cased).
pub async fn panic_fails_job_and_next_is_served(
    customer: &mut CustomerRuntime,
    provider: &nostr_dvm::nostr::Keys,
) {
    use nostr_dvm::customer::Notification as CustomerNote;
    let job = submit_text(customer, provider, "panic").await;
    let reason = customer_output(customer, |o| match o {
        Output::Notify(CustomerNote::Failed { job: j, reason, .. }) if j == job => Some(reason),
        Output::Notify(CustomerNote::Result { .. }) => panic!("a panicking task has no result"),
        _ => None,
    })
    .await;
    assert_eq!(reason, "the task failed", "the panic message stays private");

    let job = submit_text(customer, provider, "still here").await;
    assert_eq!(result_content(customer, job).await, "STILL HERE");
}

/// A provider whose keys, run counter and snapshot store outlive its runtimes (restarts
/// share them).
pub struct CountedProvider {
    /// Its keys.
    pub keys: nostr_dvm::nostr::Keys,
    /// How many times its [`CountingShout`] task ran.
    pub runs: Arc<std::sync::atomic::AtomicUsize>,
    /// Its snapshot store.
    pub store: Arc<nostr_dvm::runtime::MemoryStore>,
}

impl CountedProvider {
    /// New keys, no runs, an empty store.
    pub fn new() -> Self {
        Self {
            keys: nostr_dvm::nostr::Keys::generate(),
            runs: Arc::default(),
            store: Arc::default(),
        }
    }

    /// A runtime of this provider with `config`, `backend` and the [`CountingShout`] task,
    /// and its notifications.
    pub fn runtime(
        &self,
        config: nostr_dvm::provider::ProviderConfig,
        backend: impl nostr_dvm::runtime::LightningBackend + 'static,
    ) -> (ProviderRuntime, mpsc::UnboundedReceiver<ProviderNote>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let store: Arc<dyn nostr_dvm::runtime::SnapshotStore> = self.store.clone();
        let runtime = ProviderRuntime::new(self.keys.clone(), config)
            .task(Arc::new(CountingShout(self.runs.clone())))
            .lightning(backend)
            .store_shared(store)
            .on_notification(move |note| {
                let _ = tx.send(note.clone());
            });
        (runtime, rx)
    }
}

/// Waits for a payment request with an invoice: its BOLT11.
pub async fn requested_invoice(customer: &mut CustomerRuntime) -> String {
    customer_output(customer, |o| match o {
        Output::Notify(nostr_dvm::customer::Notification::PaymentRequested {
            bolt11: Some(bolt11),
            ..
        }) => Some(bolt11),
        _ => None,
    })
    .await
}
