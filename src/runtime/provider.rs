//! [`ProviderRuntime`]: a [`Provider`] on tokio and nostr-sdk.

use crate::relay::RelayCommand;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nostr::{ClientMessage, Event, EventId, Filter, Keys, RelayMessage};
use nostr_sdk::{
    Client, RelayOptions, RelayPoolNotification, RelayServiceFlags, RelayUrl, SubscriptionId,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::capacity::Capacity;
use super::outbox::{Outbox, RETRY_FIRST_DELAY, RETRY_MAX_DELAY};
use super::resubscribe::{RelayHandles, SeenTimes};
use super::store_writer::{Done, StoreWriter};
use super::task_runs::{self, EarlyPartials, FirstPoll};
use super::{
    now, until, watch_reconnections, InvoiceRequest, LightningBackend, NoLightning, PendingInvoice,
    RecordStore, RuntimeError, Settlements, SnapshotStore, COMMAND_CAPACITY, REPORT_CAPACITY,
    SETTLEMENT_CAPACITY,
};
use crate::provider::{Notification, Output, PaymentProof, Provider, ProviderConfig, RefundDue};
use crate::task::{Progress, Task, TaskError, TaskOutput, TaskStart};

type NotifyHook = Arc<dyn Fn(&Notification) + Send + Sync>;
type RefundHook = Arc<dyn Fn(&RefundDue) + Send + Sync>;

/// Whether and how far a [`ProviderRuntime`] follows the relays a request names.
///
/// NIP-90 says providers SHOULD publish their answers on the relays of a request's `relays`
/// tag. That lets anyone who can send a request make the provider open connections, so the
/// runtime does it only within these bounds: at most `max_extra` relays besides the
/// configured ones (connected for writing only, kept for the runtime's life), and only
/// `wss://` URLs with a host name (not an IP address, not `localhost`) unless
/// `allow_insecure`. Answers always go to the configured relays too, where the request was
/// read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestRelays {
    /// The most relays the runtime connects to besides its configured ones (0: none, the
    /// default).
    pub max_extra: usize,
    /// Accept any URL, `ws://` and local addresses included (tests on a local relay).
    pub allow_insecure: bool,
}

impl RequestRelays {
    /// Whether the relay at `url` may be connected to under this policy (the count aside).
    pub fn allows_url(&self, url: &str) -> bool {
        RelayUrl::parse(url).is_ok_and(|url| self.allows(&url))
    }

    fn allows(&self, url: &RelayUrl) -> bool {
        if self.allow_insecure {
            return true;
        }
        let local = |host: &str| host == "localhost" || host.ends_with(".localhost");
        url.as_str().starts_with("wss://") && url.domain().is_some_and(|host| !local(host))
    }
}

/// The relays the worker publishes on.
struct Relays {
    /// The configured relays (read and write).
    pool: HashSet<RelayUrl>,
    /// Relays named by requests that the runtime connected to for writing.
    extra: HashSet<RelayUrl>,
    policy: RequestRelays,
}

/// Runs a [`Provider`] over real relays. See the [module docs](super).
///
/// Built from the provider's keys and config (whose `relays` are the relays it connects
/// to), one or more [`Task`]s, a [`LightningBackend`] and a [`SnapshotStore`]; then
/// [`run`](Self::run) until a shutdown signal.
///
/// Published events go to the configured relays an output names (answers name the request's
/// relays and the configured ones), or to all configured relays when it names none of them.
/// Relays a request names that are not configured are used only under a
/// [`RequestRelays`] policy ([`request_relays`](Self::request_relays)); by default they are
/// not.
pub struct ProviderRuntime {
    keys: Keys,
    config: ProviderConfig,
    tasks: Vec<Arc<dyn Task>>,
    backend: Arc<dyn LightningBackend>,
    store: Option<Arc<dyn SnapshotStore>>,
    records: Option<Arc<dyn RecordStore>>,
    on_notify: Option<NotifyHook>,
    on_refund: Option<RefundHook>,
    connect_timeout: Duration,
    flush_timeout: Duration,
    relay_options: RelayOptions,
    request_relays: RequestRelays,
    settlements_tx: mpsc::Sender<(EventId, PaymentProof)>,
    settlements_rx: mpsc::Receiver<(EventId, PaymentProof)>,
    /// Whether a Lightning backend was set ([`lightning`](Self::lightning)).
    has_backend: bool,
    /// The most tasks running at once ([`max_running_tasks`](Self::max_running_tasks)).
    max_running_tasks: Option<usize>,
    /// The lightning address whose zaps pay, resolved when `run` starts.
    #[cfg(feature = "lnurl")]
    lightning_address: Option<(String, super::LnurlClient)>,
}

/// What the spawned work reports back to the loop.
enum Report {
    Progress(EventId, String),
    Done(EventId, Result<TaskOutput, TaskError>),
    Invoice(EventId, Result<String, String>),
}

/// What the relay worker does, in order.
enum Command {
    Publish(Event, Vec<String>),
    Subscribe(String, Filter),
    Unsubscribe(String),
    /// Send every live subscription to every relay again (after missed notifications), each
    /// reaching back to before what was missed.
    Resubscribe,
}

impl ProviderRuntime {
    /// A runtime for a provider with `keys` and `config`; it connects to `config.relays`.
    /// Without [`task`](Self::task) it serves nothing; without
    /// [`lightning`](Self::lightning) priced pay-first jobs fail; without
    /// [`store`](Self::store) nothing survives a restart.
    pub fn new(keys: Keys, config: ProviderConfig) -> Self {
        let (settlements_tx, settlements_rx) = mpsc::channel(SETTLEMENT_CAPACITY);
        Self {
            keys,
            config,
            tasks: Vec::new(),
            backend: Arc::new(NoLightning),
            store: None,
            records: None,
            on_notify: None,
            on_refund: None,
            connect_timeout: Duration::from_secs(10),
            flush_timeout: Duration::from_secs(5),
            relay_options: RelayOptions::new(),
            request_relays: RequestRelays::default(),
            settlements_tx,
            settlements_rx,
            has_backend: false,
            max_running_tasks: None,
            #[cfg(feature = "lnurl")]
            lightning_address: None,
        }
    }

    /// Runs at most `n` tasks at once (at least 1): the jobs beyond wait, in order, and start
    /// as running ones end (their run deadline counts from when the provider asked, so keep
    /// [`ProviderConfig::run_timeout_secs`] above the wait). In a fleet
    /// ([`RecordStore::lease_renewal`]), this process also claims a new job only while it has
    /// room for it (tasks running or waiting, and claims unanswered, below `n`), so a busy
    /// process leaves new jobs to the others. Default: no limit.
    pub fn max_running_tasks(mut self, n: usize) -> Self {
        self.max_running_tasks = Some(n.max(1));
        self
    }

    /// Adds a task. A job runs on the first task whose [`Task::kinds`] has its request kind,
    /// started as its [`Task::start`] says.
    pub fn task(mut self, task: Arc<dyn Task>) -> Self {
        self.tasks.push(task);
        self
    }

    /// Sets the Lightning backend that issues invoices and reports settlements.
    pub fn lightning(mut self, backend: impl LightningBackend + 'static) -> Self {
        self.backend = Arc::new(backend);
        self.has_backend = true;
        self
    }

    /// Sets the Lightning backend, shared.
    pub fn lightning_shared(mut self, backend: Arc<dyn LightningBackend>) -> Self {
        self.backend = backend;
        self.has_backend = true;
        self
    }

    /// Takes NIP-57 zaps to the lightning address `address` (`name@domain`, feature
    /// `lnurl`): when [`run`](Self::run) starts, it reads the address's LNURL-pay service
    /// through `lnurl`, and refuses to start
    /// ([`RuntimeError::LightningAddress`](super::RuntimeError::LightningAddress)) unless
    /// the service takes zaps; then it trusts only the service's `nostrPubkey` as zapper and
    /// its LNURL in zap requests ([`ProviderConfig::zaps_via`]), and names the address
    /// (`lud16`) in the announcement. Without a [`lightning`](Self::lightning) backend the
    /// provider is paid by zaps alone ([`ProviderConfig::zaps_only`]): its payment requests
    /// carry the amount and no invoice.
    ///
    /// Customers find the address in the provider's profile (kind 0, NIP-57): publish one
    /// naming it (`lud16`) with the provider's keys.
    #[cfg(feature = "lnurl")]
    pub fn lightning_address(
        mut self,
        address: impl Into<String>,
        lnurl: super::LnurlClient,
    ) -> Self {
        self.lightning_address = Some((address.into(), lnurl));
        self
    }

    /// Sets where the provider's snapshot is kept (replaces a
    /// [`record_store`](Self::record_store)).
    pub fn store(mut self, store: impl SnapshotStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self.records = None;
        self
    }

    /// Sets where the provider's snapshot is kept, shared.
    pub fn store_shared(mut self, store: Arc<dyn SnapshotStore>) -> Self {
        self.store = Some(store);
        self.records = None;
        self
    }

    /// Persists by updates into `store` (replaces a [`store`](Self::store)): the
    /// recommended way, with [`SqliteStore`](super::SqliteStore). Each loop turn hands the
    /// store only what changed, written by a thread of its own (group commit), and every
    /// output waits until the update before it is durable: no answer reaches a relay, no paid
    /// task starts and no invoice is asked for before the state behind it is stored (see
    /// [`persist`](crate::provider::persist)). A failing store is retried; the provider waits
    /// meanwhile instead of losing anything.
    pub fn record_store(mut self, store: impl RecordStore + 'static) -> Self {
        self.records = Some(Arc::new(store));
        self.store = None;
        self
    }

    /// Like [`record_store`](Self::record_store), shared.
    pub fn record_store_shared(mut self, store: Arc<dyn RecordStore>) -> Self {
        self.records = Some(store);
        self.store = None;
        self
    }

    /// Calls `hook` with every [`Notification`] of the provider (they are also logged with
    /// `tracing` at `info`).
    pub fn on_notification(mut self, hook: impl Fn(&Notification) + Send + Sync + 'static) -> Self {
        self.on_notify = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` with every payment the provider hands back ([`RefundDue`]: it came after
    /// the payment window, for an ended job, or for a job already paid). Without a hook they
    /// are logged with `tracing` at `warn`, and giving the money back is up to the operator.
    pub fn on_refund(mut self, hook: impl Fn(&RefundDue) + Send + Sync + 'static) -> Self {
        self.on_refund = Some(Arc::new(hook));
        self
    }

    /// How long [`run`](Self::run) waits for the relays to connect before it goes on anyway
    /// (nostr-sdk keeps reconnecting in the background). Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long [`run`](Self::run), on shutdown, waits for the events it published to reach a
    /// relay. The ones that did not are saved with the snapshot and published on the next
    /// start. Default: 5 s.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// The nostr-sdk options of every relay connection (reconnection interval, limits...).
    /// Default: nostr-sdk's defaults (reconnect after 10 s, growing to 60 s while a relay
    /// stays down).
    pub fn relay_options(mut self, options: RelayOptions) -> Self {
        self.relay_options = options;
        self
    }

    /// Whether to answer on the relays a request names too (NIP-90's `relays` tag, where
    /// providers SHOULD publish). Off by default: it lets whoever writes a request choose
    /// where the provider connects. See [`RequestRelays`].
    pub fn request_relays(mut self, policy: RequestRelays) -> Self {
        // The core hands requester-chosen relays to the host only when told to.
        self.config.max_request_relays = policy.max_extra;
        self.request_relays = policy;
        self
    }

    /// Where a Lightning backend reports settled invoices (also given to it through
    /// [`LightningBackend::attach`] when the runtime starts).
    pub fn settlements(&self) -> Settlements {
        Settlements {
            tx: self.settlements_tx.clone(),
        }
    }

    /// Connects, restores the stored snapshot (if any) and resumes its jobs, publishes the
    /// NIP-89 announcement when the config has one
    /// ([`ProviderConfig::announcement`]), then serves jobs
    /// until `shutdown` completes. On shutdown it stops taking events, aborts running tasks
    /// (a restart re-runs them), waits up to the [`flush_timeout`](Self::flush_timeout) for
    /// its events to reach a relay, saves a last snapshot (with the events that did not, to
    /// publish on the next start) and disconnects.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RuntimeError> {
        let ProviderRuntime {
            keys,
            config,
            tasks,
            backend,
            store,
            records,
            on_notify,
            on_refund,
            connect_timeout,
            flush_timeout,
            relay_options,
            request_relays,
            settlements_tx,
            mut settlements_rx,
            has_backend,
            max_running_tasks,
            #[cfg(feature = "lnurl")]
            lightning_address,
        } = self;
        #[cfg(feature = "lnurl")]
        let config = match lightning_address {
            Some((address, lnurl)) => {
                zaps_to_address(config, &address, &lnurl, has_backend).await?
            }
            None => config,
        };
        #[cfg(not(feature = "lnurl"))]
        let _ = has_backend;

        let client = Client::default();
        for relay in &config.relays {
            client
                .pool()
                .add_relay(relay.as_str(), relay_options.clone())
                .await
                .map_err(|e| RuntimeError::Client(format!("{relay}: {e}")))?;
        }
        let mut notifications = client.notifications();
        client.connect().await;
        client.wait_for_connection(connect_timeout).await;
        let handles = client.relays().await;
        let pool: HashSet<RelayUrl> = handles.keys().cloned().collect();
        // The configured relays as the provider names them in its publishes.
        let config_relay_texts: HashMap<String, RelayUrl> = config
            .relays
            .iter()
            .filter_map(|text| {
                let url = RelayUrl::parse(text).ok()?;
                handles.contains_key(&url).then(|| (text.clone(), url))
            })
            .collect();

        let announce = config.announcement.is_some();
        let stored = match (&records, &store) {
            (Some(records), _) => {
                // A store may block (a database client): off the async threads.
                let records = records.clone();
                tokio::task::spawn_blocking(move || records.load())
                    .await
                    .map_err(|e| RuntimeError::Store(format!("loading the store: {e}")))??
            }
            (None, Some(store)) => store.load()?,
            (None, None) => None,
        };
        // A store shared by a fleet: every new job is claimed in it first.
        let fleet = records
            .as_ref()
            .is_some_and(|r| r.lease_renewal().is_some());
        let mut config = config;
        config.claim_jobs = fleet;
        let tracking = records.is_some();
        let mut provider = match stored {
            Some(snapshot) => {
                let mut provider = Provider::restore(keys, config, snapshot)?;
                if tracking {
                    provider.track_updates();
                }
                provider.resume(now());
                tracing::info!(jobs = provider.jobs().count(), "provider restored");
                provider
            }
            None => {
                let mut provider = Provider::new(keys, config, now());
                if tracking {
                    provider.track_updates();
                }
                provider
            }
        };
        let mut writer = match &records {
            Some(records) => Some(
                StoreWriter::start(records.clone())
                    .map_err(|e| RuntimeError::Store(format!("cannot start the writer: {e}")))?,
            ),
            None => None,
        };
        if announce {
            if let Err(e) = provider.announce(now()) {
                tracing::error!("cannot announce the provider: {e}");
            }
        }
        watch_awaiting(backend.as_ref(), &provider);
        backend.attach(Settlements {
            tx: settlements_tx.clone(),
        });
        drop(settlements_tx);

        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let seen = SeenTimes::default();
        let reconnected_rx = watch_reconnections(&client).await;
        let mut connections = RelayHandles::new(client.clone());
        let unpublished = SharedUnpublished::default();
        {
            let mut unpublished = unpublished.lock();
            unpublished.tracking = tracking;
            // Without a store nothing is saved: the events need no copy here.
            unpublished.keep = records.is_some() || store.is_some();
        }
        // The relays' `OK`s reach the worker through the loop (the one reader of the relay
        // pool's notifications), so the worker is not woken by every other notification.
        let oks = WorkerBooks::default();
        let worker = tokio::spawn(relay_worker(
            client.clone(),
            Relays {
                pool,
                extra: HashSet::new(),
                policy: request_relays,
            },
            commands_rx,
            reconnected_rx,
            oks.clone(),
            unpublished.clone(),
            seen.clone(),
        ));
        let (reports_tx, mut reports_rx) = mpsc::channel(REPORT_CAPACITY);
        let mut host = Host {
            tasks,
            backend,
            on_notify,
            on_refund,
            commands: commands_tx,
            backlog: VecDeque::new(),
            reports: reports_tx,
            running: HashMap::new(),
            unpublished: unpublished.clone(),
            fleet,
            capacity: Capacity::new(max_running_tasks),
            relay_texts: config_relay_texts,
            relays: handles,
            books: oks.clone(),
        };
        let mut lease_lost = false;

        tokio::pin!(shutdown);
        // One timer for the provider's wake-ups, set again only when the wake-up time
        // changes (a new timer every turn costs two trips through tokio's timer wheel).
        let sleep = tokio::time::sleep(super::MAX_SLEEP);
        tokio::pin!(sleep);
        let mut sleeping_until: Option<Option<nostr::Timestamp>> = None;
        loop {
            // The reports of runs that finished meanwhile come before new requests: a job
            // started is answered before the next is taken (otherwise, with several inputs
            // ready, tokio's select! picks the relays' most of the time and results wait
            // behind a burst). At most `REPORTS_A_TURN`, so relay events are never starved.
            if host.backlog.is_empty() {
                for _ in 0..REPORTS_A_TURN {
                    match reports_rx.try_recv() {
                        Ok(report) => host.report(&mut provider, report),
                        Err(_) => break,
                    }
                }
            }
            host.drain(&mut provider);
            let mut write_at = None;
            match &mut writer {
                Some(writer) => {
                    for record in host.capacity.claims_to_make(host.running.len()) {
                        writer.claim(record);
                    }
                    write_at = send_update(writer, &mut provider, &unpublished);
                }
                None if provider.needs_persistence() => {
                    if let Some(store) = &store {
                        if let Err(e) = save(store.as_ref(), &mut provider, &unpublished) {
                            tracing::error!("cannot save the provider snapshot: {e}");
                        }
                    }
                }
                None => {}
            }
            let wake = provider.poll_timeout();
            if sleeping_until != Some(wake) {
                let after = wake.map(until).unwrap_or(Duration::from_secs(3600));
                sleep.as_mut().reset(tokio::time::Instant::now() + after);
                sleeping_until = Some(wake);
            }
            // While the relay worker is behind (the command queue is full and this turn's
            // commands wait in the backlog), no input is taken: the backlog stays within one
            // turn's outputs, and relay events wait in nostr-sdk's buffer.
            let taking = host.backlog.is_empty();
            let room = host.commands.clone().reserve_owned();
            tokio::select! {
                () = &mut shutdown => break,
                permit = room, if !taking => match permit {
                    Ok(permit) => host.flush(permit),
                    Err(_) => {
                        tracing::error!("relay worker stopped");
                        host.backlog.clear();
                    }
                },
                note = notifications.recv(), if taking => match note {
                    Ok(RelayPoolNotification::Event { relay_url, subscription_id, event }) => {
                        connections.note(&seen, &relay_url).await;
                        let now = now();
                        seen.event(&relay_url, subscription_id.as_str(), event.created_at, now);
                        // nostr-sdk checked its signature before handing it over.
                        provider.handle_verified_event(now, *event);
                    }
                    Ok(RelayPoolNotification::Shutdown) | Err(broadcast::error::RecvError::Closed) => {
                        tracing::warn!("relay pool shut down");
                        oks.close();
                        break;
                    }
                    Ok(RelayPoolNotification::Message {
                        relay_url,
                        message: RelayMessage::EndOfStoredEvents(id),
                    }) => {
                        connections.note(&seen, &relay_url).await;
                        seen.end_of_stored(&relay_url, id.as_str());
                    }
                    Ok(RelayPoolNotification::Message { relay_url, message }) => {
                        oks.push(relay_url, message, false);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // The relays still have what was missed: ask for it again.
                        tracing::warn!("missed {n} relay notifications: subscribing again");
                        seen.lagged();
                        host.send(Command::Resubscribe);
                    }
                },
                Some(report) = reports_rx.recv(), if taking => host.report(&mut provider, report),
                Some(done) = persisted(&mut writer), if taking => match done {
                    Done::Persisted(id) => {
                        if let Err(e) = provider.handle_persisted(id) {
                            tracing::error!("the store writer reported update {id}: {e}");
                        }
                    }
                    Done::Claimed(answers) => {
                        host.capacity.answered(answers.len());
                        let now = now();
                        for (job, won) in answers {
                            if let Err(e) = provider.handle_claim(now, job, won) {
                                tracing::error!(%job, "claim answer not taken: {e}");
                            }
                        }
                    }
                    Done::TakenOver(snapshots) => {
                        for snapshot in snapshots {
                            match provider.adopt(now(), snapshot) {
                                Ok(jobs) => tracing::warn!(jobs, "took over the jobs of a process whose lease ran out"),
                                Err(e) => tracing::error!("cannot take over a process's jobs: {e}"),
                            }
                        }
                        // Their invoices are watched here now.
                        watch_awaiting(host.backend.as_ref(), &provider);
                    }
                    Done::LeaseLost => {
                        tracing::error!("this process's lease was taken over: stopping");
                        lease_lost = true;
                        break;
                    }
                },
                Some((job, proof)) = settlements_rx.recv(), if taking => {
                    if let Err(e) = provider.handle_payment(now(), job, proof) {
                        tracing::warn!(%job, "settlement refused: {e}");
                        if let Some(hook) = &host.on_notify {
                            hook(&Notification::PaymentRefused {
                                job: Some(job),
                                reason: format!("the Lightning backend's proof: {e}"),
                            });
                        }
                    }
                }
                () = &mut sleep, if taking && wake.is_some() => {
                    // Fired: set again next turn, whatever the wake-up time is then.
                    sleeping_until = None;
                    provider.handle_timeout(now());
                }
                () = sleep_until(write_at), if write_at.is_some() => {}
            }
        }

        for (_, task) in host.running.drain() {
            task.abort();
        }
        if lease_lost {
            // Its jobs are another process's: nothing more is published or written.
            drop(writer.take());
            client.disconnect().await;
            return Err(RuntimeError::LeaseLost);
        }
        host.drain(&mut provider);
        // The backlog goes to the worker (it waits for room), then the worker finishes,
        // hearing the relays' `OK`s from a forwarder that reads on where the loop stopped.
        let Host {
            commands, backlog, ..
        } = host;
        let forwarder = tokio::spawn(async move {
            loop {
                match notifications.recv().await {
                    Ok(RelayPoolNotification::Message { relay_url, message }) => {
                        oks.push(relay_url, message, true);
                    }
                    Ok(RelayPoolNotification::Shutdown)
                    | Err(broadcast::error::RecvError::Closed) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                }
            }
            oks.close();
        });
        let finish = async move {
            for command in backlog {
                if commands.send(command).await.is_err() {
                    break;
                }
            }
            drop(commands);
            let _ = worker.await;
        };
        if tokio::time::timeout(flush_timeout, finish).await.is_err() {
            tracing::warn!("relay worker did not finish in time");
        }
        forwarder.abort();
        let saved = match (writer.take(), &store) {
            (Some(mut writer), _) => {
                writer
                    .wait_idle(flush_timeout.max(Duration::from_secs(5)))
                    .await;
                if let Some(id) = writer.last_persisted() {
                    let _ = provider.handle_persisted(id);
                }
                if let Some(at) = send_update(&mut writer, &mut provider, &unpublished) {
                    tokio::time::sleep_until(at).await;
                    send_update(&mut writer, &mut provider, &unpublished);
                }
                writer
                    .finish(flush_timeout.max(Duration::from_secs(5)))
                    .await;
                Ok(())
            }
            (None, Some(store)) => save(store.as_ref(), &mut provider, &unpublished),
            (None, None) => Ok(()),
        };
        client.disconnect().await;
        saved
    }
}

/// Tells the provider which of its events the relays took (their records go), then hands the
/// writer what changed, unless the writer is still on the last update: then the changes wait
/// and go out together with the next ones (one update per write, whatever the turns).
/// While the last write started less than [`MIN_WRITE_INTERVAL`](super::store_writer::MIN_WRITE_INTERVAL)
/// ago, the changes wait too (group commit): returns when to try again, if so.
fn send_update(
    writer: &mut StoreWriter,
    provider: &mut Provider,
    unpublished: &SharedUnpublished,
) -> Option<tokio::time::Instant> {
    for id in std::mem::take(&mut unpublished.lock().published) {
        provider.handle_published(id);
    }
    if writer.busy() {
        return None;
    }
    if let Some(at) = writer.next_write_at() {
        return Some(at.into());
    }
    if let Some(update) = provider.poll_update() {
        writer.send(update);
    }
    None
}

/// Hands the backend the invoices of the jobs that await payment, to report their settlements
/// (those paid while nobody watched too).
fn watch_awaiting(backend: &dyn LightningBackend, provider: &Provider) {
    backend.watch(
        provider
            .awaiting_payment()
            .map(|(job, bolt11, payment_hash)| PendingInvoice {
                job,
                bolt11: bolt11.to_owned(),
                payment_hash,
            })
            .collect(),
    );
}

/// Sleeps until `at`; never, without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the writer did next; never, without one.
async fn persisted(writer: &mut Option<StoreWriter>) -> Option<Done> {
    match writer {
        Some(writer) => writer.persisted().await,
        None => std::future::pending().await,
    }
}

/// Saves the provider's snapshot with the events no relay has taken yet, for a restart to
/// publish them.
fn save(
    store: &dyn SnapshotStore,
    provider: &mut Provider,
    unpublished: &SharedUnpublished,
) -> Result<(), RuntimeError> {
    let mut snapshot = provider.snapshot();
    for (event, relays) in unpublished.lock().events.values() {
        snapshot.push_publish(event.clone(), relays.clone());
    }
    store.save(&snapshot)
}

/// The events handed to the relay worker that no relay has taken yet, in publish order. The
/// provider counts them as published once drained; these are saved with its snapshot
/// ([`ProviderSnapshot::push_publish`](crate::provider::ProviderSnapshot::push_publish)), so
/// a result computed while every relay was down survives a restart.
#[derive(Default)]
struct Unpublished {
    next: u64,
    events: BTreeMap<u64, (Event, Vec<String>)>,
    order: HashMap<EventId, u64>,
    /// Whether the provider persists by updates: then the events relays took are reported to
    /// it ([`Provider::handle_published`]), from `published`.
    tracking: bool,
    published: Vec<EventId>,
    /// Whether a store saves them (without one, nothing is kept here).
    keep: bool,
}

impl Unpublished {
    fn add(&mut self, event: &Event, relays: &[String]) {
        if !self.keep {
            return;
        }
        self.next += 1;
        self.order.insert(event.id, self.next);
        self.events
            .insert(self.next, (event.clone(), relays.to_vec()));
    }

    /// A relay took the event (or it was given up).
    fn done(&mut self, id: &EventId) {
        if let Some(seq) = self.order.remove(id) {
            self.events.remove(&seq);
            if self.tracking {
                self.published.push(*id);
            }
        }
    }
}

/// [`Unpublished`], shared by the loop (which adds) and the relay worker (which removes).
#[derive(Default, Clone)]
struct SharedUnpublished(Arc<Mutex<Unpublished>>);

impl SharedUnpublished {
    fn lock(&self) -> MutexGuard<'_, Unpublished> {
        // Nothing panics while holding it; if something did, the data is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The runtime's side of the provider's outputs.
struct Host {
    tasks: Vec<Arc<dyn Task>>,
    backend: Arc<dyn LightningBackend>,
    on_notify: Option<NotifyHook>,
    on_refund: Option<RefundHook>,
    /// To the relay worker: [`COMMAND_CAPACITY`] commands at most.
    commands: mpsc::Sender<Command>,
    /// Commands of this turn that did not fit in `commands`, in order; the loop takes no
    /// input until they are handed over.
    backlog: VecDeque<Command>,
    reports: mpsc::Sender<Report>,
    running: HashMap<EventId, AbortHandle>,
    unpublished: SharedUnpublished,
    /// The record store is shared by a fleet: claims go to it.
    fleet: bool,
    /// Tasks and claims waiting for room.
    capacity: Capacity,
    /// The configured relays: an event for them only is handed to them here, at once (a
    /// relay's send only queues the message), and the worker is told after (see `WorkerBooks`).
    relays: HashMap<RelayUrl, nostr_sdk::Relay>,
    /// The configured relays' URLs by the text the configuration gives (no parsing a URL for
    /// each event).
    relay_texts: HashMap<String, RelayUrl>,
    /// What the worker reads when it wakes.
    books: WorkerBooks,
}

impl Host {
    /// The relays `relays` names, when they are all configured ones (all of them when it
    /// names none); `None` when one is not (a relay a request named: the worker connects).
    fn direct_targets(&self, relays: &[String]) -> Option<HashSet<RelayUrl>> {
        let mut targets = HashSet::new();
        let parsed = relays.iter().filter_map(|r| match self.relay_texts.get(r) {
            Some(url) => Some(url.clone()),
            None => RelayUrl::parse(r).ok(),
        });
        for relay in parsed {
            if !self.relays.contains_key(&relay) {
                return None;
            }
            targets.insert(relay);
        }
        if targets.is_empty() {
            targets = self.relays.keys().cloned().collect();
        }
        Some(targets)
    }

    /// Hands `event` to `targets` (configured relays) at once (a relay's send only queues
    /// the message), and tells the worker, which keeps the books and sends it again if no
    /// relay takes it.
    fn publish_directly(&self, event: Event, targets: HashSet<RelayUrl>) {
        let mut handed = true;
        for relay in &targets {
            if let Some(handle) = self.relays.get(relay) {
                let message = ClientMessage::Event(std::borrow::Cow::Borrowed(&event));
                if let Err(e) = handle.send_msg(message) {
                    tracing::debug!(%relay, id = %event.id, "cannot send the event: {e}");
                    handed = false;
                }
            }
        }
        self.books.sent(SentByLoop {
            event,
            targets,
            handed,
            at: Instant::now(),
        });
    }

    /// Does everything the provider asks until it asks for nothing.
    fn drain(&mut self, provider: &mut Provider) {
        while let Some(output) = provider.poll_output() {
            match output {
                Output::Relay(RelayCommand::Publish { event, relays }) => {
                    self.unpublished.lock().add(&event, &relays);
                    match self.direct_targets(&relays) {
                        Some(targets) => self.publish_directly(event, targets),
                        None => self.send(Command::Publish(event, relays)),
                    }
                }
                Output::Relay(RelayCommand::Subscribe { id, filter }) => {
                    self.send(Command::Subscribe(id, filter))
                }
                Output::Relay(RelayCommand::Unsubscribe(id)) => self.send(Command::Unsubscribe(id)),
                Output::RunTask(request) => {
                    if let Some(request) = self.capacity.task(self.running.len(), *request) {
                        self.start_task(provider, request);
                    }
                }
                Output::CancelTask(job) => {
                    if let Some(task) = self.running.remove(&job) {
                        task.abort();
                        self.start_waiting(provider);
                    } else {
                        self.capacity.cancel(&job);
                    }
                }
                Output::ClaimJob(record) => {
                    if self.fleet {
                        self.capacity.claim(*record);
                    } else if let Err(e) = provider.handle_claim(now(), record.id(), true) {
                        tracing::debug!("claim not taken: {e}");
                    }
                }
                Output::RequestInvoice {
                    job,
                    amount_msat,
                    description,
                    expiry_secs,
                } => {
                    let backend = self.backend.clone();
                    let reports = self.reports.clone();
                    let request = InvoiceRequest {
                        job,
                        amount_msat,
                        description,
                        expiry_secs,
                    };
                    tokio::spawn(async move {
                        let invoice = backend.create_invoice(request).await;
                        let _ = reports.send(Report::Invoice(job, invoice)).await;
                    });
                }
                Output::Refund(refund) => match &self.on_refund {
                    Some(hook) => hook(&refund),
                    None => tracing::warn!("refund due, no refund hook: {refund:?}"),
                },
                Output::Notify(note) => {
                    tracing::info!("{note:?}");
                    if let Some(hook) = &self.on_notify {
                        hook(&note);
                    }
                }
            }
        }
    }

    /// Hands `command` to the relay worker, or to the backlog (in order) when its queue is
    /// full.
    fn send(&mut self, command: Command) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(command);
            return;
        }
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                tracing::debug!("the relay worker is behind: commands wait");
                self.backlog.push_back(command);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => tracing::error!("relay worker stopped"),
        }
    }

    /// The worker made room: hands it the backlog, in order, as far as it fits.
    fn flush(&mut self, permit: mpsc::OwnedPermit<Command>) {
        let Some(first) = self.backlog.pop_front() else {
            return;
        };
        permit.send(first);
        while let Some(command) = self.backlog.pop_front() {
            match self.commands.try_send(command) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(command)) => {
                    self.backlog.push_front(command);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::error!("relay worker stopped");
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Starts the task of `request` (or fails the job when no task serves its kind): as a
    /// tokio task, or first polled here ([`TaskStart::FirstPollOnLoop`]) and spawned only if it
    /// is not finished then. A panic becomes a task error; an aborted run reports nothing.
    fn start_task(&mut self, provider: &mut Provider, request: crate::task::TaskRequest) {
        let job = request.job;
        let kind = request.request.kind;
        let Some(task) = self
            .tasks
            .iter()
            .find(|t| t.kinds().contains(&kind))
            .cloned()
        else {
            let error = TaskError::new(format!("no task serves kind {kind}"));
            self.take_result(provider, job, Err(error));
            return;
        };
        let on_loop = task.start() == TaskStart::FirstPollOnLoop;
        let early = if on_loop {
            EarlyPartials::keeping(REPORT_CAPACITY)
        } else {
            EarlyPartials::none()
        };
        let progress_tx = self.reports.clone();
        let partials = early.clone();
        // Progress only says how far the task got: when the queue is full it is dropped
        // rather than making the task wait.
        let progress = Progress::new(move |partial| {
            let Some(partial) = partials.offer(partial) else {
                return;
            };
            if progress_tx
                .try_send(Report::Progress(job, partial))
                .is_err()
            {
                tracing::debug!(%job, "report queue full or closed: progress dropped");
            }
        });
        // The run owns its task (a tokio task outlives this call).
        let run: task_runs::Run = Box::pin(async move { task.run(request, progress).await });
        let run = if on_loop {
            let first = task_runs::first_poll(run);
            for partial in early.finish() {
                self.report(provider, Report::Progress(job, partial));
            }
            match first {
                FirstPoll::Finished(result) => {
                    self.take_result(provider, job, result);
                    return;
                }
                FirstPoll::Pending(run) => run,
            }
        } else {
            run
        };
        let handle = self.spawn_run(job, run);
        if let Some(old) = self.running.insert(job, handle) {
            old.abort();
        }
    }

    /// Starts the tasks that wait, as far as there is room.
    fn start_waiting(&mut self, provider: &mut Provider) {
        while let Some(request) = self.capacity.next_task(self.running.len()) {
            self.start_task(provider, request);
        }
    }

    /// One tokio task per run: the run, a panic in it caught, then its report. Aborting it
    /// drops both (an aborted job reports nothing).
    fn spawn_run(&self, job: EventId, run: task_runs::Run) -> AbortHandle {
        let reports = self.reports.clone();
        let handle = tokio::spawn(async move {
            let result = match futures_util::FutureExt::catch_unwind(AssertUnwindSafe(run)).await {
                Ok(result) => result,
                Err(_) => Err(TaskError::new("the task failed")),
            };
            // The result waits for room in the queue.
            let _ = reports.send(Report::Done(job, result)).await;
        });
        handle.abort_handle()
    }

    /// Hands a run's result to the provider.
    fn take_result(
        &mut self,
        provider: &mut Provider,
        job: EventId,
        result: Result<TaskOutput, TaskError>,
    ) {
        let taken = provider.handle_task_result(now(), job, result);
        Self::log_refusal(taken);
    }

    fn report(&mut self, provider: &mut Provider, report: Report) {
        let taken = match report {
            Report::Progress(job, partial) => provider.handle_task_progress(now(), job, partial),
            Report::Done(job, result) => {
                self.running.remove(&job);
                self.start_waiting(provider);
                provider.handle_task_result(now(), job, result)
            }
            Report::Invoice(job, invoice) => provider.handle_invoice(now(), job, invoice),
        };
        Self::log_refusal(taken);
    }

    /// Logs why the provider did not take a report.
    fn log_refusal(taken: Result<(), crate::provider::Error>) {
        match taken {
            Ok(()) => {}
            // The backend's invoice was refused: the job failed, and the operator must know.
            Err(e @ crate::provider::Error::InvalidInvoice { .. }) => {
                tracing::error!("the Lightning backend's invoice was refused: {e}");
            }
            // A late report for a job that was cancelled or timed out.
            Err(e) => tracing::debug!("report not taken: {e}"),
        }
    }
}

/// A subscription some relays did not take, and when to try it on them again.
struct PendingSubscription {
    filter: Filter,
    relays: Vec<RelayUrl>,
    at: Instant,
    delay: Duration,
}

/// Carries out the provider's relay commands, in order, so its loop never waits for a relay.
///
/// - An event for the configured relays only is handed to them by the loop itself (a relay's
///   send only queues the message) and reaches the worker's books through [`WorkerBooks`], read
///   at every wake-up and at least every [`BOOKS_INTERVAL`]; an event for a relay a request
///   named comes as a command (the worker connects first). Either way it is kept until
///   each relay answers `OK` (a `duplicate:` answer counts as taken; `blocked:`, `invalid:`,
///   `pow:`, `restricted:` and `error:` are final). A relay that fails, refuses for now
///   (`rate-limited:`) or does not answer within 10 s gets the event again later, with a
///   growing delay, and at once when it reconnects, in the original order. Relays
///   deduplicate by id, so sending again is harmless. An event no relay took is retried for
///   an hour; one that some relay took, 5 times ([`Outbox`] keeps the books).
/// - Subscriptions a relay did not take (it was down) are tried on it again with a growing
///   delay until it does, or until the provider drops them. Each time a relay reconnects,
///   every live subscription is sent to it again, its `since` moved up to the newest event
///   that relay sent on it minus a margin ([`resubscription_since`](super::resubscription_since)):
///   what was published meanwhile arrives then (the provider ignores what it has seen), not
///   everything since the start. nostr-sdk resubscribes on its own too (with the filter last
///   sent), but not when the reconnection comes within the second of the subscription, nor
///   after a `CLOSED` with an error prefix.
/// - Commands come through a queue of [`COMMAND_CAPACITY`]; the loop waits when it is full.
///
/// When the provider stops, the worker goes on until every event is on at least one relay
/// (the runtime bounds that wait).
async fn relay_worker(
    client: Client,
    relays: Relays,
    mut commands: mpsc::Receiver<Command>,
    mut reconnected: mpsc::Receiver<RelayUrl>,
    oks: WorkerBooks,
    unpublished: SharedUnpublished,
    seen: SeenTimes,
) {
    let mut worker = RelayWorker {
        client,
        relays,
        unpublished,
        seen,
        live: HashMap::new(),
        pending: HashMap::new(),
        outbox: Outbox::default(),
    };
    let mut open = true;
    let mut pool_closed = worker.read_books(&oks);
    while !pool_closed && (open || worker.outbox.untaken() > 0) {
        // The loop's events and the `OK`s are read at every wake-up, and at least every
        // `BOOKS_INTERVAL`: an event the loop sent is sent again from here if no relay takes it.
        let wake = worker
            .next_wake()
            .map_or(Instant::now() + BOOKS_INTERVAL, |at| {
                at.min(Instant::now() + BOOKS_INTERVAL)
            });
        let step = tokio::select! {
            command = commands.recv(), if open => match command {
                Some(command) => Step::Command(command),
                None => Step::Closed,
            },
            Some(relay) = reconnected.recv() => Step::Reconnected(relay),
            () = oks.woken() => Step::Oks,
            () = tokio::time::sleep_until(wake) => Step::Due,
        };
        // What the loop sent and the `OK`s that came meanwhile first: what they settle is
        // not sent again.
        pool_closed = worker.read_books(&oks);
        match step {
            Step::Command(command) => worker.command(command).await,
            Step::Closed => open = false,
            Step::Reconnected(relay) => worker.reconnected(relay).await,
            Step::Oks => {}
            Step::Due => worker.due().await,
        }
        pool_closed |= worker.read_books(&oks);
    }
}

/// How often at least the relay worker reads the events the loop sent and the `OK`s.
const BOOKS_INTERVAL: Duration = Duration::from_secs(1);
/// How many ready task reports the provider loop takes each turn before any other input.
const REPORTS_A_TURN: usize = 64;

/// What woke the relay worker.
enum Step {
    Command(Command),
    /// The loop stopped sending commands.
    Closed,
    Reconnected(RelayUrl),
    /// `OK`s came while the loop is stopping.
    Oks,
    /// A retry is due.
    Due,
}

/// A relay's `OK` to an event the worker sent.
struct RelayOk {
    relay: RelayUrl,
    event: EventId,
    status: bool,
    message: String,
}

/// The relays' `OK`s, from the loop to the relay worker. The worker reads them whenever it
/// wakes for anything else (a command, or its retry timer at the latest), so an `OK` costs
/// no wake-up of its own; once the loop has stopped, each one wakes it (it is finishing).
#[derive(Clone, Default)]
struct WorkerBooks {
    /// The events the loop sent, the `OK`s, both not read yet, and whether the relay pool
    /// shut down.
    queue: Arc<std::sync::Mutex<Books>>,
    wake: Arc<tokio::sync::Notify>,
}

/// What [`WorkerBooks`] holds.
#[derive(Default)]
struct Books {
    sent: Vec<SentByLoop>,
    oks: Vec<RelayOk>,
    closed: bool,
}

/// An event the loop handed to the relays itself, for the worker's books.
struct SentByLoop {
    event: Event,
    targets: HashSet<RelayUrl>,
    /// Whether every relay took the message into its queue.
    handed: bool,
    at: Instant,
}

impl WorkerBooks {
    /// Queues `message` if it is an `OK` (other messages are not the worker's business);
    /// wakes the worker when `wake`.
    fn push(&self, relay: RelayUrl, message: RelayMessage<'_>, wake: bool) {
        let RelayMessage::Ok {
            event_id,
            status,
            message,
        } = message
        else {
            return;
        };
        self.lock().oks.push(RelayOk {
            relay,
            event: event_id,
            status,
            message: message.into_owned(),
        });
        if wake {
            self.wake.notify_one();
        }
    }

    /// The loop sent an event itself.
    fn sent(&self, sent: SentByLoop) {
        self.lock().sent.push(sent);
    }

    /// The relay pool shut down: the worker stops.
    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The events sent and the `OK`s queued, and whether the pool shut down.
    fn take(&self) -> (Vec<SentByLoop>, Vec<RelayOk>, bool) {
        let mut books = self.lock();
        (
            std::mem::take(&mut books.sent),
            std::mem::take(&mut books.oks),
            books.closed,
        )
    }

    async fn woken(&self) {
        self.wake.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The relay worker's state.
struct RelayWorker {
    client: Client,
    relays: Relays,
    /// Shared with the loop: the events no relay has taken yet.
    unpublished: SharedUnpublished,
    /// Shared with the loop: the newest event each relay sent on each subscription.
    seen: SeenTimes,
    /// Every subscription the provider holds, to send again on reconnection.
    live: HashMap<String, Filter>,
    /// Subscriptions some relays did not take.
    pending: HashMap<String, PendingSubscription>,
    /// Events some relays have not acknowledged.
    outbox: Outbox,
}

impl RelayWorker {
    fn next_wake(&self) -> Option<Instant> {
        let subscriptions = self.pending.values().map(|p| p.at);
        subscriptions.chain(self.outbox.next_wake()).min()
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Publish(event, relays) => self.publish(event, relays).await,
            Command::Subscribe(id, filter) => {
                self.pending.remove(&id);
                self.seen.forget(&id);
                self.live.insert(id.clone(), filter.clone());
                let relays: Vec<RelayUrl> = self.relays.pool.iter().cloned().collect();
                self.subscribe(id, filter, relays, RETRY_FIRST_DELAY).await;
            }
            Command::Unsubscribe(id) => {
                self.pending.remove(&id);
                self.seen.forget(&id);
                self.live.remove(&id);
                self.client.unsubscribe(&SubscriptionId::new(id)).await;
            }
            Command::Resubscribe => {
                let relays: Vec<RelayUrl> = self.relays.pool.iter().cloned().collect();
                for relay in relays {
                    self.reconnected(relay).await;
                }
            }
        }
    }

    async fn publish(&mut self, event: Event, relays: Vec<String>) {
        let mut targets = HashSet::new();
        for relay in relays.iter().filter_map(|r| RelayUrl::parse(r).ok()) {
            let known = self.relays.pool.contains(&relay) || self.relays.extra.contains(&relay);
            if known || self.connect_extra(&relay).await {
                targets.insert(relay);
            }
        }
        if targets.is_empty() {
            targets = self.relays.pool.clone();
        }
        let seq = self.outbox.add(event, targets, Instant::now());
        self.send(seq, None).await;
    }

    /// Connects, for writing, to a relay a request named, if the [`RequestRelays`] policy
    /// allows it.
    async fn connect_extra(&mut self, relay: &RelayUrl) -> bool {
        let policy = self.relays.policy;
        if self.relays.extra.len() >= policy.max_extra || !policy.allows(relay) {
            return false;
        }
        let options = RelayOptions::new().flags(RelayServiceFlags::WRITE);
        if let Err(e) = self.client.pool().add_relay(relay.clone(), options).await {
            tracing::debug!(%relay, "cannot add a request's relay: {e}");
            return false;
        }
        if let Err(e) = self.client.connect_relay(relay.clone()).await {
            tracing::debug!(%relay, "cannot connect to a request's relay: {e}");
            return false;
        }
        tracing::info!(%relay, "publishing on a relay a request named");
        self.relays.extra.insert(relay.clone());
        true
    }

    /// Sends an event of the outbox to the relays that have not taken it (or only to
    /// `only`), and tells the outbox whether the relays took the message.
    async fn send(&mut self, seq: u64, only: Option<&RelayUrl>) {
        let Some((event, targets)) = self.outbox.send(seq, only) else {
            return;
        };
        let id = event.id;
        let handed = match self
            .client
            .send_msg_to(targets, ClientMessage::event(event))
            .await
        {
            Ok(output) => output.failed.is_empty(),
            Err(e) => {
                tracing::debug!(%id, "cannot send the event: {e}");
                false
            }
        };
        self.outbox.sent(seq, handed, Instant::now());
        self.settle();
    }

    /// Takes into the books the events the loop sent and the `OK`s (in that order: an `OK`
    /// follows its event); whether the relay pool shut down.
    fn read_books(&mut self, books: &WorkerBooks) -> bool {
        let (sent, oks, closed) = books.take();
        for sent in sent {
            let seq = self.outbox.add(sent.event, sent.targets, sent.at);
            let _ = self.outbox.send(seq, None);
            self.outbox.sent(seq, sent.handed, sent.at);
        }
        for ok in oks {
            self.ok(&ok.relay, ok.event, ok.status, &ok.message);
        }
        self.settle();
        closed
    }

    /// A relay's `OK` (or not) for an event.
    fn ok(&mut self, relay: &RelayUrl, id: EventId, status: bool, message: &str) {
        self.outbox.ok(relay, &id, status, message, Instant::now());
        self.settle();
    }

    /// The events that reached a relay (or were dropped) leave the unpublished set.
    fn settle(&mut self) {
        let settled = self.outbox.take_settled();
        if !settled.is_empty() {
            let mut unpublished = self.unpublished.lock();
            for id in settled {
                unpublished.done(&id);
            }
        }
    }

    /// Sends again what is due: subscriptions, then events in publish order.
    async fn due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(p) = self.pending.remove(&id) {
                let delay = (p.delay * 2).min(RETRY_MAX_DELAY);
                self.subscribe(id, p.filter, p.relays, delay).await;
            }
        }
        for seq in self.outbox.due(now) {
            self.send(seq, None).await;
        }
        self.settle();
    }

    /// A relay (re)connected: it gets every live subscription and, in order, every event it
    /// has not taken.
    async fn reconnected(&mut self, relay: RelayUrl) {
        tracing::debug!(%relay, subscriptions = self.live.len(), "relay connected, subscribing again");
        let live: Vec<(String, Filter)> = self
            .live
            .iter()
            .map(|(id, filter)| (id.clone(), filter.clone()))
            .collect();
        for (id, filter) in live {
            if let Some(p) = self.pending.get_mut(&id) {
                p.relays.retain(|r| *r != relay);
                if p.relays.is_empty() {
                    self.pending.remove(&id);
                }
            }
            self.subscribe(id, filter, vec![relay.clone()], RETRY_FIRST_DELAY)
                .await;
        }
        for seq in self.outbox.waiting_for(&relay) {
            self.send(seq, Some(&relay)).await;
        }
    }

    /// Subscribes `relays` to `filter` under `id`; the relays that fail join the `pending`
    /// entry of `id` (made if there is none), to be tried again after `delay`.
    async fn subscribe(
        &mut self,
        id: String,
        filter: Filter,
        relays: Vec<RelayUrl>,
        delay: Duration,
    ) {
        let mut failed: Vec<RelayUrl> = Vec::new();
        for relay in relays {
            // Each relay is asked only for what it may not have sent yet.
            let sent = self.seen.request(&relay, &id, &filter);
            let sub = SubscriptionId::new(id.clone());
            match self
                .client
                .subscribe_with_id_to([relay.clone()], sub, sent, None)
                .await
            {
                Ok(output) => failed.extend(output.failed.into_keys()),
                Err(e) => {
                    tracing::warn!(%id, %relay, "cannot subscribe: {e}");
                    failed.push(relay);
                }
            }
        }
        if failed.is_empty() {
            return;
        }
        tracing::debug!(%id, ?failed, "subscription not taken, retrying in {delay:?}");
        let at = Instant::now() + delay;
        let entry = self
            .pending
            .entry(id)
            .or_insert_with(|| PendingSubscription {
                filter,
                relays: Vec::new(),
                at,
                delay,
            });
        for relay in failed {
            if !entry.relays.contains(&relay) {
                entry.relays.push(relay);
            }
        }
        entry.at = entry.at.min(at);
    }
}

/// `config` taking the zaps of the lightning address `address`, read through `lnurl`.
#[cfg(feature = "lnurl")]
async fn zaps_to_address(
    config: ProviderConfig,
    address: &str,
    lnurl: &super::LnurlClient,
    has_backend: bool,
) -> Result<ProviderConfig, RuntimeError> {
    let refused = |reason: String| RuntimeError::LightningAddress {
        address: address.to_owned(),
        reason,
    };
    let pay = lnurl
        .resolve_address(address)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let mut config = config.zaps_via(&pay).map_err(|e| refused(e.to_string()))?;
    config.zaps_only = !has_backend;
    if let Some(metadata) = config.announcement.as_mut() {
        metadata.lud16 = Some(address.to_owned());
    }
    tracing::info!(address, zapper = ?pay.nostr_pubkey, "takes zaps to its lightning address");
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(capacity: usize) -> (Host, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(capacity);
        let (reports, _) = mpsc::channel(1);
        let host = Host {
            tasks: Vec::new(),
            backend: Arc::new(NoLightning),
            on_notify: None,
            on_refund: None,
            commands,
            backlog: VecDeque::new(),
            reports,
            running: HashMap::new(),
            unpublished: SharedUnpublished::default(),
            fleet: false,
            capacity: Capacity::new(None),
            relays: HashMap::new(),
            relay_texts: HashMap::new(),
            books: WorkerBooks::default(),
        };
        (host, rx)
    }

    fn id(command: Command) -> String {
        match command {
            Command::Unsubscribe(id) => id,
            _ => panic!("only unsubscriptions here"),
        }
    }

    #[tokio::test]
    async fn a_slow_worker_fills_the_queue_then_the_backlog_keeps_order_and_loses_nothing() {
        let (mut host, mut rx) = host(4);
        for i in 0..10 {
            host.send(Command::Unsubscribe(i.to_string()));
        }
        // The queue holds its capacity; the rest waits in order, and the loop takes no input.
        assert_eq!(host.commands.capacity(), 0);
        assert_eq!(host.backlog.len(), 6);
        // Once the backlog is not empty, new commands go behind it, never ahead.
        host.send(Command::Unsubscribe("10".into()));
        assert_eq!(host.backlog.len(), 7);

        let mut got = Vec::new();
        while !host.backlog.is_empty() {
            got.push(id(rx.recv().await.unwrap()));
            let permit = host.commands.clone().reserve_owned().await.unwrap();
            host.flush(permit);
            assert!(host.backlog.len() + (4 - host.commands.capacity()) <= 11);
        }
        while let Ok(command) = rx.try_recv() {
            got.push(id(command));
        }
        let want: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn commands_for_a_stopped_worker_are_not_kept() {
        let (mut host, rx) = host(1);
        drop(rx);
        host.send(Command::Resubscribe);
        assert!(host.backlog.is_empty());
    }
}
