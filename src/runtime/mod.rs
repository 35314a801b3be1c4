//! A tokio + nostr-sdk driver for the sans-IO state machines (feature `runtime`).
//!
//! The core ([`Provider`](crate::provider::Provider), [`Customer`](crate::customer::Customer))
//! never reads the clock or touches the network; this module is where both live. It is the
//! "quinn over quinn-proto" half of the crate:
//!
//! - [`ProviderRuntime`] connects a nostr-sdk `Client` to the provider's relays, feeds every
//!   relay event to the provider, runs each [`Task`](crate::task::Task) on tokio (progress and
//!   results come back through a channel; a task whose runs start quickly may have them first
//!   polled on the loop, [`TaskStart`](crate::task::TaskStart)), asks a [`LightningBackend`] for invoices and takes
//!   its settlements, sleeps until [`Provider::poll_timeout`](crate::provider::Provider::poll_timeout),
//!   and hands what changed in each turn to a [`RecordStore`] ([`SqliteStore`], the
//!   recommended one: one file, written by a thread of its own with group commit), holding
//!   every output until the change before it is durable (or saves a whole
//!   [`ProviderSnapshot`](crate::provider::ProviderSnapshot) to a [`SnapshotStore`] after
//!   every turn that changed something). On start it restores the stored state and resumes
//!   the jobs in flight. With a store shared by a fleet (`PostgresStore`, feature
//!   `postgres`), several processes with the same keys serve together: each job is claimed in
//!   the database first and answered by one of them, leases are renewed by the writer thread,
//!   and the jobs of a process whose lease ran out are taken over
//!   ([`Provider::adopt`](crate::provider::Provider::adopt)).
//! - [`CustomerRuntime`] drives a [`Customer`](crate::customer::Customer) the same way,
//!   pull-style: the application calls [`CustomerRuntime::next`] and gets the notifications and
//!   payment requests it must act on.
//!
//! The clock here is the real one (`Timestamp::now()`), with the core's one-second resolution.
//!
//! Relays fail; the runtimes are built so that a paid job survives it:
//!
//! - every event the provider publishes is kept until each relay answers `OK`, sent again
//!   with a growing delay and at once when a relay reconnects, in publish order; on shutdown
//!   the events no relay took yet go into the snapshot and out on the next start;
//! - on every (re)connection of a relay, and after missed notifications, both runtimes send
//!   their subscriptions to it again, asking only for what they may have missed: a filter's
//!   `since` moves up to the newest event that relay sent on it, minus a margin
//!   ([`RESUBSCRIBE_MARGIN_SECS`], or [`GIFT_WRAP_RESUBSCRIBE_MARGIN_SECS`] for gift wraps,
//!   which are back-dated; see [`resubscription_since`]). What was published meanwhile (a
//!   zap receipt, a result) arrives then, and the core ignores what it has already seen;
//! - every queue between the runtime's tasks is bounded (see [Queues](#queues));
//! - remote garbage (malformed messages, bad signatures, forged events) is dropped by
//!   nostr-sdk or refused by the core with a reason; it never stops the loop.
//!
//! `tests/runtime_bad_relays.rs` checks this through a proxy that cuts the connections
//! mid-job and a relay that answers with garbage.
//!
//! # Queues
//!
//! A flood of relay events, of settlements or a stuck relay cannot grow the runtime's memory
//! without bound: every channel between its tasks has a fixed capacity, and a full one makes
//! its producer wait; nothing that matters for money or for a job's completion is dropped.
//!
//! - The provider loop hands its relay work (publishes, subscriptions) to the relay worker
//!   through a queue of [`COMMAND_CAPACITY`] commands. When it is full, the loop keeps the
//!   commands of the current turn in order and takes no new input (relay events, task
//!   reports, settlements, timers) until the worker has made room: the backlog is at most one
//!   turn's outputs. Relay events that arrive meanwhile wait in nostr-sdk's notification
//!   buffer; if that overflows, the runtime subscribes again for what it missed.
//! - Tasks report results, and the Lightning backend invoices, through a queue of
//!   [`REPORT_CAPACITY`]: a task's result (or an invoice) waits for room. Progress
//!   updates, which only say how far a task got, are dropped (and logged) when it is full.
//!   Each turn the loop takes the reports that are ready (up to 64) before any other input,
//!   so under a burst the jobs it started are answered before it takes new ones.
//! - [`Settlements`] hold at most [`SETTLEMENT_CAPACITY`]:
//!   [`settle`](Settlements::settle) waits for room, and
//!   [`try_settle`](Settlements::try_settle) hands the settlement back.
//! - Relay (re)connections are reported through a queue of [`RECONNECTION_CAPACITY`].
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use nostr_dvm::nostr::{Keys, Kind};
//! use nostr_dvm::provider::ProviderConfig;
//! use nostr_dvm::runtime::{ProviderRuntime, SqliteStore};
//! use nostr_dvm::task::{Progress, Task, TaskError, TaskOutput, TaskRequest};
//!
//! struct Echo;
//! #[async_trait::async_trait]
//! impl Task for Echo {
//!     fn kinds(&self) -> Vec<Kind> { vec![Kind::from(5050)] }
//!     async fn run(&self, r: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
//!         Ok(TaskOutput::new(r.texts().collect::<Vec<_>>().join(" ")))
//!     }
//! }
//!
//! let config = ProviderConfig::new([Kind::from(5050)]).relays(["wss://relay.example"]);
//! let runtime = ProviderRuntime::new(Keys::generate(), config)
//!     .task(Arc::new(Echo))
//!     .record_store(SqliteStore::open("provider.sqlite")?);
//! runtime.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod capacity;
mod customer;
#[cfg(feature = "lnurl")]
mod customer_zaps;
#[cfg(feature = "lnbits")]
mod lnbits;
#[cfg(feature = "lnurl")]
mod lnurl;
mod outbox;
#[cfg(any(feature = "lnbits", feature = "nwc"))]
mod pending_invoices;
#[cfg(feature = "postgres")]
mod postgres_store;
#[cfg(feature = "postgres")]
mod postgres_tls;
mod provider;
mod record_store;
mod resubscribe;
#[cfg(feature = "sqlite")]
mod sqlite_store;
mod store;
mod store_writer;
mod task_runs;
#[cfg(feature = "test-util")]
mod test_backend;
mod wallet;
#[cfg(feature = "nwc")]
mod wallet_connect;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nostr::{EventId, Timestamp};
use nostr_sdk::{Client, RelayUrl};
use tokio::sync::mpsc;

pub use customer::{ConnectOptions, CustomerRuntime};
#[cfg(feature = "lnbits")]
pub use lnbits::{LnbitsBackend, LnbitsError, LnbitsWallet};
#[cfg(feature = "lnurl")]
pub use lnurl::{LnurlClient, LnurlError, LnurlPay};
#[cfg(feature = "postgres")]
pub use postgres_store::{PostgresSettings, PostgresStore};
pub use provider::{ProviderRuntime, RequestRelays};
pub use record_store::{MemoryRecordStore, RecordStore};
pub use resubscribe::{
    resubscription_since, GIFT_WRAP_RESUBSCRIBE_MARGIN_SECS, RESUBSCRIBE_MARGIN_SECS,
};
#[cfg(feature = "sqlite")]
pub use sqlite_store::{SqliteStore, SyncMode};
pub use store::{FileStore, MemoryStore, SnapshotStore};
pub use store_writer::{MAX_RETRY_PAUSE, MIN_WRITE_INTERVAL};
#[cfg(feature = "test-util")]
pub use test_backend::TestLightningBackend;
pub use wallet::Wallet;
#[cfg(feature = "nwc")]
pub use wallet_connect::{
    NwcBackend, NwcError, NwcWallet, DEFAULT_POLL_INTERVAL as NWC_DEFAULT_POLL_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT as NWC_DEFAULT_REQUEST_TIMEOUT,
};

use crate::provider::PaymentProof;

/// How many relay commands (publishes, subscriptions) the provider loop queues for its relay
/// worker before it stops taking input. See [Queues](self#queues).
pub const COMMAND_CAPACITY: usize = 256;
/// How many task results, progress updates and invoices wait for the provider loop at most.
pub const REPORT_CAPACITY: usize = 256;
/// How many settlements a [`Settlements`] handle queues for the provider loop at most.
pub const SETTLEMENT_CAPACITY: usize = 256;
/// How many relay (re)connections wait for a runtime at most.
pub const RECONNECTION_CAPACITY: usize = 64;

/// How often the runtimes look whether a relay reconnected (to send it their subscriptions
/// and unconfirmed events again).
pub const RECONNECTION_POLL: Duration = Duration::from_millis(250);

/// Re-export of the `nostr-sdk` version the runtime is built on.
pub use nostr_sdk;

/// What can go wrong in a runtime. Remote garbage is never one of these: the core drops it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The relay client failed (a bad relay URL, for instance).
    #[error("relay client: {0}")]
    Client(String),
    /// The snapshot or record store failed.
    #[error("store: {0}")]
    Store(String),
    /// Another process (or another store in this one) has this store open: one provider
    /// process per SQLite file.
    #[error("{} is in use by another process", .0.display())]
    StoreInUse(std::path::PathBuf),
    /// This process's lease in a store shared by a fleet was taken over (it could not renew
    /// it in time, or another process started with its name): its jobs belong to another
    /// process now, and it stops rather than answer them twice.
    #[error("the lease of this process was taken over: its jobs belong to another process")]
    LeaseLost,
    /// The stored snapshot could not be restored.
    #[error(transparent)]
    Provider(#[from] crate::provider::Error),
    /// The customer state machine refused a command.
    #[error(transparent)]
    Customer(#[from] crate::customer::Error),
    /// The provider's lightning address cannot take the zap (no profile with one, a service
    /// that does not take zaps, or it could not be reached): nothing was signed or paid.
    #[error("cannot zap {provider}: {reason}")]
    ZapService {
        /// The provider.
        provider: nostr::PublicKey,
        /// Why.
        reason: String,
    },
    /// The provider's lightning address cannot pay it by zaps
    /// (`ProviderRuntime::lightning_address`, feature `lnurl`): it could not be read, or its
    /// LNURL-pay service does not take zaps. The provider did not start.
    #[error("lightning address {address}: {reason}")]
    LightningAddress {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// No relay took a submitted job request.
    #[error("no relay took the request of job {job}: {reason}")]
    NotPublished {
        /// The job (still tracked by the customer).
        job: EventId,
        /// What the relays said.
        reason: String,
    },
}

/// An invoice the provider asks its Lightning backend for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRequest {
    /// The job it pays for: report its settlement with this id.
    pub job: EventId,
    /// The amount, in millisats.
    pub amount_msat: u64,
    /// A description for the invoice.
    pub description: String,
    /// How long it should be valid, in seconds.
    pub expiry_secs: u64,
}

/// The provider's Lightning node or wallet service.
///
/// It issues invoices for jobs and reports the ones that get paid through the [`Settlements`]
/// handle the runtime gives it with [`attach`](Self::attach).
#[async_trait::async_trait]
pub trait LightningBackend: Send + Sync {
    /// Issues a BOLT11 invoice for `request.amount_msat`, or says why it cannot.
    async fn create_invoice(&self, request: InvoiceRequest) -> Result<String, String>;

    /// Called by [`ProviderRuntime::run`] when it starts (again after a restart): report
    /// settled invoices to `settlements`. The default ignores it, for backends whose invoices
    /// are paid by zaps only (the provider then learns of payments from the zap receipts of
    /// its configured zappers).
    fn attach(&self, settlements: Settlements) {
        let _ = settlements;
    }

    /// Called by [`ProviderRuntime::run`] before [`attach`](Self::attach), with the invoices
    /// of the jobs that await payment in the restored state: issued before a restart, they are
    /// unknown to a fresh backend, which must watch them too, so that a job paid while the
    /// provider was down starts once it is back. The default ignores them.
    fn watch(&self, invoices: Vec<PendingInvoice>) {
        let _ = invoices;
    }
}

/// An invoice a job awaits payment on (see [`LightningBackend::watch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInvoice {
    /// The job it pays for: report its settlement with this id.
    pub job: EventId,
    /// The invoice.
    pub bolt11: String,
    /// Its payment hash.
    pub payment_hash: [u8; 32],
}

/// A backend that issues no invoices: priced pay-first jobs then fail with `error` feedback.
/// The default of [`ProviderRuntime`]; fine for free providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLightning;

#[async_trait::async_trait]
impl LightningBackend for NoLightning {
    async fn create_invoice(&self, _request: InvoiceRequest) -> Result<String, String> {
        Err("this provider has no Lightning backend".into())
    }
}

/// Where a [`LightningBackend`] reports settled invoices. Cheap to clone.
///
/// Its queue holds [`SETTLEMENT_CAPACITY`] settlements; the runtime takes them one per turn.
#[derive(Debug, Clone)]
pub struct Settlements {
    tx: mpsc::Sender<(EventId, PaymentProof)>,
}

/// A settlement [`Settlements::try_settle`] could not queue, handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// The queue is full ([`SETTLEMENT_CAPACITY`]): try again, or
    /// [`settle`](Settlements::settle), which waits.
    #[error("the settlement queue is full")]
    Full(EventId, PaymentProof),
    /// The runtime that made the handle has stopped: keep the settlement for the next one.
    #[error("the runtime has stopped")]
    Stopped(EventId, PaymentProof),
}

impl Settlements {
    /// Reports that the invoice of `job` was paid, waiting while the queue is full. Returns
    /// `false` when the runtime that made this handle has stopped.
    pub async fn settle(&self, job: EventId, proof: PaymentProof) -> bool {
        self.tx.send((job, proof)).await.is_ok()
    }

    /// Reports that the invoice of `job` was paid, without waiting: when the queue is full or
    /// the runtime has stopped the settlement comes back in the error, never lost.
    pub fn try_settle(&self, job: EventId, proof: PaymentProof) -> Result<(), SettleError> {
        self.tx.try_send((job, proof)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((job, proof)) => SettleError::Full(job, proof),
            mpsc::error::TrySendError::Closed((job, proof)) => SettleError::Stopped(job, proof),
        })
    }

    /// How many settlements wait for the runtime (at most [`SETTLEMENT_CAPACITY`]).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Reports each (re)connection of any relay of `client`, from now on, by its URL.
///
/// nostr-sdk re-sends a relay's subscriptions when it reconnects, but not when the
/// reconnection comes within the second of the subscription, nor after the relay sent
/// `CLOSED` with an error prefix; the runtimes re-send theirs on every report. A watcher
/// reads each relay's count of connections (nostr-sdk's stats, an atomic) every
/// [`RECONNECTION_POLL`] rather than listening to the relay's notifications, which carry
/// every message it sends (a wake-up per message). A relay that reconnected twice between
/// two looks is reported once. The queue holds [`RECONNECTION_CAPACITY`] reports; the
/// watcher waits for room, and stops when the queue's reader is gone.
async fn watch_reconnections(client: &Client) -> mpsc::Receiver<RelayUrl> {
    let (tx, rx) = mpsc::channel(RECONNECTION_CAPACITY);
    let relays: Vec<(RelayUrl, nostr_sdk::Relay)> = client.relays().await.into_iter().collect();
    let mut counts: Vec<usize> = relays.iter().map(|(_, r)| r.stats().success()).collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECONNECTION_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            for ((url, relay), count) in relays.iter().zip(counts.iter_mut()) {
                let connections = relay.stats().success();
                if connections != *count {
                    *count = connections;
                    if tx.send(url.clone()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The current time, at the core's one-second resolution.
fn now() -> Timestamp {
    Timestamp::now()
}

/// The longest the runtimes sleep at once: a wake-up time far ahead (from a remote
/// `expiration`, say) only means waking up to look again.
const MAX_SLEEP: Duration = Duration::from_secs(3_600);

/// How long from now until the wall clock reaches `at` (zero when it has), at most
/// [`MAX_SLEEP`]. Never overflows, whatever `at` is.
fn until(at: Timestamp) -> Duration {
    match UNIX_EPOCH.checked_add(Duration::from_secs(at.as_secs())) {
        // Past what the system clock can hold: as far as can be.
        None => MAX_SLEEP,
        Some(target) => target
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_never_overflow() {
        assert_eq!(until(Timestamp::from(u64::MAX)), MAX_SLEEP);
        assert_eq!(until(Timestamp::from(u64::MAX / 2)), MAX_SLEEP);
        assert_eq!(until(Timestamp::from(0)), Duration::ZERO);
        let soon = until(Timestamp::from(now().as_secs() + 10));
        assert!(soon <= Duration::from_secs(10) && soon > Duration::from_secs(8));
    }
}
