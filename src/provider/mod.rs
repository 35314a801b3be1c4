//! The provider: a sans-IO state machine that owns jobs, timers, the replay ledger and the
//! outbox of a Data Vending Machine.
//!
//! The host feeds it events from relays, task results, invoices, payment proofs and the time,
//! and drains what it must do from [`Provider::poll_output`]:
//!
//! ```
//! use nostr_dvm::provider::{Output, Provider, ProviderConfig, RelayCommand};
//! use nostr_dvm::nostr::{Keys, Kind, Timestamp};
//!
//! let keys = Keys::parse("0000000000000000000000000000000000000000000000000000000000000003")?;
//! let now = Timestamp::from(1_700_000_000);
//! let mut provider = Provider::new(keys, ProviderConfig::new([Kind::from(5050)]), now);
//! // ... provider.handle_event(now, event) for each event from the relays ...
//! while let Some(output) = provider.poll_output() {
//!     match output {
//!         Output::Relay(RelayCommand::Publish { event, relays }) => { /* send to relays */ }
//!         Output::Relay(RelayCommand::Subscribe { id, filter }) => { /* REQ */ }
//!         Output::Relay(RelayCommand::Unsubscribe(id)) => { /* CLOSE */ }
//!         Output::RunTask(request) => { /* run the Task, then handle_task_result */ }
//!         Output::CancelTask(job) => { /* abort it */ }
//!         Output::ClaimJob(record) => { /* a fleet only: claim it in the shared store, then handle_claim */ }
//!         Output::RequestInvoice { job, amount_msat, .. } => { /* ask the wallet, then handle_invoice */ }
//!         Output::Refund(refund) => { /* a payment that must not pay for work: give it back */ }
//!         Output::Notify(note) => { /* log */ }
//!     }
//! }
//! let _wake_at = provider.poll_timeout(); // call handle_timeout then
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - **No internal clock**: every input takes `now`.
//! - **Remote input never panics or errors**: a malformed, forged or replayed event is dropped
//!   or refused with a typed reason ([`Notification::EventRefused`],
//!   [`Notification::JobRejected`], [`Notification::PaymentRefused`]). `Err` is only for the
//!   host's own misuse (a result for an unknown job, an invoice for the wrong amount).
//! - **Pay-first means pay first**: under [`PaymentPolicy::PayFirst`] no [`Output::RunTask`]
//!   is emitted for a priced job before a zap receipt passes
//!   [`verify_zap_receipt`](crate::nip57::verify_zap_receipt) (bound to the job's request or
//!   its `payment-required` feedback, paying at least the price, signed by a trusted zapper),
//!   or the host's wallet proves the job's own invoice paid.
//! - **A payment pays once**: receipt ids and payment hashes go into a replay ledger that is
//!   part of the snapshot.
//! - **Idempotent**: the same request from five relays is one job; the job id is the request
//!   id (for a gift-wrapped request, the rumor's id).
//! - **Replies use the request's scheme**: plain, NIP-04, NIP-44, or a NIP-59 gift wrap to the
//!   sender.
//! - **Nothing is lost on restart**: [`Provider::snapshot`] captures jobs, ledger, RNG and the
//!   undrained outbox; [`Provider::restore`] continues from it; [`Provider::resume`] re-issues
//!   the work that was in flight when the host stopped. A host with a database persists by
//!   updates instead ([`Provider::track_updates`], [`persist`]): each
//!   [`poll_update`](Provider::poll_update) holds only what changed, and outputs wait until
//!   the update before them is durable, so no relay sees an answer the store does not know.
//!   Then an ended job whose record is stored stays in memory as a summary only.
//! - **Randomness from the operating system**: every NIP-44 nonce, NIP-04 IV, gift-wrap
//!   one-time key and timestamp tweak, and every signature's aux data comes from the
//!   provider's own CSPRNG, seeded as [`ProviderConfig::seed`] says: fresh OS entropy in each
//!   `Provider::new` and mixed in again by each `restore`, unless a test set a deterministic
//!   seed.

mod admission;
mod cancellation;
mod chaining;
mod claims;
mod config;
mod ended;
mod jobs;
mod ledger;
mod outbox;
mod output;
mod payment;
pub mod persist;
mod refusals;
mod replies;
mod snapshot;
mod timers;
mod words;

use std::collections::{BTreeSet, HashMap, VecDeque};

use nostr::{Event, EventId, Filter, Keys, Kind, PublicKey, Tag, Timestamp};

pub use admission::MAX_SEEN_WRAPS;
pub use cancellation::{MAX_DELETION_TAGS, MAX_TOMBSTONES};
pub use chaining::MAX_JOB_INPUTS;
pub use claims::MAX_ADOPTED_RECEIPT_IDS;
pub use config::{Admission, Heartbeat, PaymentPolicy, ProviderConfig, RateLimit};
pub use ledger::{ReplayLedger, SpentKey};
pub use output::{
    Notification, Output, PaymentProof, PaymentVia, RefundDue, RefundReason, RejectReason,
    RelayCommand,
};
pub use persist::{JobRecord, RecordSet, StoreChange, StoreUpdate};
pub use snapshot::ProviderSnapshot;

use crate::job::JobState;
use crate::nip57::ZAP_RECEIPT_KIND;
use crate::nip59;
use crate::nip89::HandlerInfo;
use crate::nip90::{FeedbackStatus, JobRequest};
use crate::rng::DvmRng;
use crate::task::{TaskError, TaskOutput};

/// Subscription id for job requests.
pub const SUB_REQUESTS: &str = "dvm-requests";
/// Subscription id for gift wraps and zap receipts addressed to the provider.
pub const SUB_INBOX: &str = "dvm-inbox";
/// Subscription id for kind-5 deletions of live jobs.
pub const SUB_DELETIONS: &str = "dvm-deletions";
/// Subscription id for the results the chained jobs wait for (one for all of them).
pub const SUB_INPUTS: &str = "dvm-inputs";
/// Subscription id for the zap receipts of jobs adopted from another process of a fleet
/// ([`Provider::adopt`]).
pub const SUB_ADOPTED: &str = "dvm-adopted";

/// What a provider's host did wrong. Remote input never produces one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No job has this id.
    #[error("no job {0}")]
    UnknownJob(EventId),
    /// The job is not in a state where this input makes sense.
    #[error("job {job} is {state}, which does not take this input")]
    WrongState {
        /// The job.
        job: EventId,
        /// Its state's name.
        state: &'static str,
    },
    /// The invoice the host returned is not a valid BOLT11 invoice, or not for the price.
    #[error("invalid invoice for job {job}: {reason}")]
    InvalidInvoice {
        /// The job.
        job: EventId,
        /// Why.
        reason: String,
    },
    /// The wallet's proof is for another invoice than the job's.
    #[error("payment proof does not match job {0}'s invoice")]
    ProofMismatch(EventId),
    /// An event could not be built or signed.
    #[error("cannot build an event: {0}")]
    Build(String),
    /// A snapshot could not be restored.
    #[error("cannot restore snapshot: {0}")]
    Restore(String),
    /// No announcement is configured.
    #[error("no NIP-89 announcement is configured")]
    NoAnnouncement,
    /// An update id the provider never handed out ([`Provider::handle_persisted`]).
    #[error("no update {0} was handed out")]
    UnknownUpdate(u64),
}

/// How replies reach the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Reply {
    /// Published as they are (encrypted inside when the request was).
    Direct,
    /// Gift-wrapped to the customer, who sent the request gift-wrapped.
    GiftWrap,
}

/// One job and everything the provider keeps about it.
#[derive(Debug, Clone)]
struct Job {
    request: JobRequest,
    reply: Reply,
    state: JobState,
    price_msat: u64,
    /// Boxed: most jobs never get an invoice, and a small `Job` keeps the table compact.
    invoice: Option<Box<JobInvoice>>,
    /// A result built and signed but held until payment (partial-then-pay).
    held: Option<Box<HeldResult>>,
    /// The id of the published result, as the customer sees it, while a payment for it is
    /// still possible (pay-after-result): zaps of it pay for the job.
    /// Boxed: only pay-after-result jobs have one, and a small `Job` keeps the table compact.
    result_id: Option<Box<EventId>>,
    /// The jobs whose results it takes as input, and the inputs received; boxed, since most
    /// jobs have none.
    chain: Option<Box<Chain>>,
    deadline: Option<Timestamp>,
    updated_at: Timestamp,
    seq: u64,
    /// When the job is in the timer index, if it is (derived from the fields above).
    wake: Option<Timestamp>,
    /// Admitted, but claimed by this process of a fleet only once the host says so
    /// ([`Provider::handle_claim`]): nothing is priced, sent or stored for it until then.
    unclaimed: bool,
    /// Ended, and kept as a summary: the store holds its full record (see `ended`).
    summary: bool,
}

/// A result ready to publish (gift-wrapped already when the job replies so), and the sample
/// the task chose to show before payment.
#[derive(Debug, Clone)]
struct HeldResult {
    event: Event,
    sample: Option<String>,
}

/// How a priced job asked to be paid: its invoice and payment hash (none when the provider
/// is paid by zaps alone), and the feedback that asked.
#[derive(Debug, Clone)]
struct JobInvoice {
    invoice: Option<(String, [u8; 32])>,
    feedback: Option<EventId>,
}

/// A chained job's inputs.
#[derive(Debug, Clone, Default)]
struct Chain {
    waiting_for: Vec<EventId>,
    resolved: Vec<(EventId, String)>,
}

impl Job {
    /// The jobs whose results this one takes as input.
    fn waiting_for(&self) -> &[EventId] {
        self.chain.as_ref().map_or(&[], |c| &c.waiting_for)
    }

    /// The inputs received so far: `(job, its result's content)`.
    fn resolved(&self) -> &[(EventId, String)] {
        self.chain.as_ref().map_or(&[], |c| &c.resolved)
    }

    fn bolt11(&self) -> Option<&str> {
        let (bolt11, _) = self.invoice.as_ref()?.invoice.as_ref()?;
        // A summary keeps the payment hash only.
        (!bolt11.is_empty()).then_some(bolt11.as_str())
    }

    fn payment_hash(&self) -> Option<[u8; 32]> {
        let (_, hash) = self.invoice.as_ref()?.invoice.as_ref()?;
        Some(*hash)
    }

    fn payment_feedback(&self) -> Option<EventId> {
        self.invoice.as_ref().and_then(|i| i.feedback)
    }

    fn id(&self) -> EventId {
        self.request.id
    }

    fn customer(&self) -> PublicKey {
        self.request.author
    }

    /// The next moment something happens to this job on its own.
    fn wake_at(&self, retention: u64) -> Option<Timestamp> {
        if self.state.is_terminal() {
            return Some(Timestamp::from(
                self.updated_at.as_secs().saturating_add(retention),
            ));
        }
        match (self.deadline, self.request.expiration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A Data Vending Machine's provider side, sans IO. See the [module docs](self).
///
/// # Driving it
///
/// Its methods come in four families:
///
/// - **inputs**, `handle_*`: what happened outside. [`handle_event`](Self::handle_event) for
///   every event a relay delivers on the provider's subscriptions;
///   [`handle_task_result`](Self::handle_task_result) and
///   [`handle_task_progress`](Self::handle_task_progress) for the tasks it asked to run;
///   [`handle_invoice`](Self::handle_invoice) for the invoices it asked for;
///   [`handle_payment`](Self::handle_payment) for payments the host's wallet saw; and
///   [`handle_timeout`](Self::handle_timeout) once the time from `poll_timeout` has come.
///   Remote input never makes them fail; `Err` means the host misused the provider.
/// - **commands**: what the host decides. [`accept`](Self::accept),
///   [`reject`](Self::reject), [`cancel`](Self::cancel), [`announce`](Self::announce), and
///   [`resume`](Self::resume) after a restore.
/// - **outputs**, `poll_*`: what the host must do. After every input and every command,
///   drain [`poll_output`](Self::poll_output) until `None` and carry each output out in order;
///   then read [`poll_timeout`](Self::poll_timeout) and call `handle_timeout` at that time
///   (or earlier: it is harmless).
/// - **getters**: [`job_state`](Self::job_state), [`jobs`](Self::jobs),
///   [`ledger`](Self::ledger), [`needs_persistence`](Self::needs_persistence) (then save
///   [`snapshot`](Self::snapshot)), and the like.
///
/// Every input takes `now`, the host's wall-clock time; the provider reads no clock.
///
/// Inside, each concern has its own file: `admission` (every check a request passes, cheapest
/// first), `jobs` (a job's life), `payment` (invoices, receipts, wallet proofs, the ledger,
/// refunds), `replies`, `timers`, `chaining`, `cancellation`, and `snapshot`.
pub struct Provider {
    keys: Keys,
    config: ProviderConfig,
    rng: DvmRng,
    /// Boxed so the table's empty slots stay small.
    jobs: HashMap<EventId, Box<Job>>,
    /// Payment-required feedback id -> job id.
    bindings: HashMap<EventId, EventId>,
    /// Dependency job id -> jobs waiting for its result.
    dependents: HashMap<EventId, Vec<EventId>>,
    ledger: ReplayLedger,
    /// Deleted request ids (with their author) seen before the request itself.
    tombstones: cancellation::Tombstones,
    /// Per-customer admission times within the rate window.
    rate: HashMap<PublicKey, VecDeque<Timestamp>>,
    /// When empty rate windows were last dropped (see `prune_rate`).
    rate_pruned_at: Option<Timestamp>,
    outbox: outbox::Outbox,
    /// What changed since the last update, when persisting by updates.
    changes: persist::Changes,
    next_heartbeat: Option<Timestamp>,
    /// When to publish the announcement again (set by `announce`).
    next_announce: Option<Timestamp>,
    /// When to re-send the deletion subscription after the set of live jobs changed.
    deletion_refresh_at: Option<Timestamp>,
    /// Every job's next wake-up, ordered: `(when, seq, job)`.
    timers: BTreeSet<(Timestamp, u64, EventId)>,
    /// Terminal jobs, oldest first: `(ended at, seq, job)`.
    terminal: BTreeSet<(Timestamp, u64, EventId)>,
    /// How many jobs are not terminal.
    live: usize,
    /// Ids of jobs dropped from the table (retention passed, or evicted) with the moment
    /// their request turns stale, soonest first, so a replayed request cannot run again
    /// until the stale check refuses it; bounded by twice `max_jobs` (see
    /// `remember_forgotten`).
    forgotten: BTreeSet<(Timestamp, EventId)>,
    forgotten_set: HashMap<EventId, Timestamp>,
    /// Jobs waiting to be paid before any work, oldest first: `(seq, job)`.
    unpaid: BTreeSet<(u64, EventId)>,
    /// Admission times of all customers within the global window.
    global_rate: VecDeque<Timestamp>,
    /// Times of the invoices asked for within the invoice-rate window.
    invoice_times: VecDeque<Timestamp>,
    /// When the merged input subscription was last sent.
    inputs_pushed_at: Option<Timestamp>,
    /// The caps on telling refused customers why.
    tell_budget: refusals::TellBudget,
    /// NIP-44 conversation keys with the customers of encrypted jobs, so reading a request
    /// and sending its replies (processing, partial, result, success) cost one ECDH per
    /// customer, not one each. Bounded by
    /// [`CONVERSATION_CACHE`]; not in the snapshot (a restart derives them again).
    conversations: crate::nip44::ConversationKeyCache,
    /// The latest `now` the provider was given (see `tick`).
    clock: Timestamp,
    /// The provider's public key in lowercase hex, for cheap `p` tag checks.
    my_hex: String,
    /// Gift wraps seen lately: the same wrap from several relays is opened once.
    seen_wraps: admission::SeenIds,
    /// Zap receipts from a trusted zapper, signature checked, for an event we do not know
    /// (yet): a zap on a request that reaches us before the request does. Bounded; part of
    /// the snapshot.
    early_receipts: VecDeque<EarlyReceipt>,
    seq: u64,
    dirty: bool,
    /// Jobs another process of the fleet won the claim of: dropped when delivered again.
    claimed_elsewhere: admission::SeenIds,
    /// The event being handled by [`Provider::handle_verified_event`]: its signature was
    /// checked by the host.
    signed_by_host: Option<EventId>,
}

/// The most zap receipts kept for requests not seen yet (see [`EARLY_RECEIPT_SECS`]).
pub const MAX_EARLY_RECEIPTS: usize = 64;
/// Seconds a zap receipt for a request not seen yet is kept, waiting for the request (or
/// the provider's `lookback_secs`, when longer). Relays deliver the events of different
/// subscriptions in any order, so a zap on a request can come first.
pub const EARLY_RECEIPT_SECS: u64 = 120;

/// A zap receipt waiting for the request it pays for.
#[derive(Debug, Clone)]
struct EarlyReceipt {
    received_at: Timestamp,
    /// The event it is bound to (its `e` tag).
    target: EventId,
    receipt: Event,
}

/// How many NIP-44 conversation keys the provider keeps (with the customers of encrypted
/// jobs); about 100 bytes each.
pub const CONVERSATION_CACHE: usize = 1_024;

/// The furthest ahead a request's NIP-40 expiration is taken (one year): a later one is
/// clamped, as no job lives that long, so no wake-up time can overflow.
pub const MAX_EXPIRATION_SECS: u64 = 365 * 24 * 3_600;

/// Seconds between a change in the set of live jobs and the refresh of the deletion
/// subscription: refreshing on every request would cost O(live jobs) per request.
pub const DELETION_REFRESH_SECS: u64 = 5;

impl Provider {
    /// A provider with `keys` and `config`, started at `now`. Its first outputs are the
    /// subscriptions it needs. Its CSPRNG is seeded as [`ProviderConfig::seed`] says (from
    /// the operating system by default).
    ///
    /// # Panics
    ///
    /// Only when the seed source is the operating system and it has no randomness to give.
    pub fn new(keys: Keys, config: ProviderConfig, now: Timestamp) -> Self {
        let rng = DvmRng::from_source(&config.seed);
        let next_heartbeat = config
            .heartbeat
            .as_ref()
            .map(|h| Timestamp::from(now.as_secs().saturating_add(h.interval_secs)));
        let my_hex = keys.public_key().to_hex();
        let conversations =
            crate::nip44::ConversationKeyCache::new(keys.secret_key().clone(), CONVERSATION_CACHE);
        let mut provider = Self {
            conversations,
            tell_budget: refusals::TellBudget::default(),
            inputs_pushed_at: None,
            clock: now,
            my_hex,
            seen_wraps: admission::SeenIds::default(),
            keys,
            config,
            rng,
            jobs: HashMap::new(),
            bindings: HashMap::new(),
            dependents: HashMap::new(),
            ledger: ReplayLedger::default(),
            tombstones: cancellation::Tombstones::default(),
            rate: HashMap::new(),
            rate_pruned_at: None,
            outbox: outbox::Outbox::default(),
            changes: persist::Changes::default(),
            next_heartbeat,
            next_announce: None,
            deletion_refresh_at: None,
            timers: BTreeSet::new(),
            terminal: BTreeSet::new(),
            live: 0,
            forgotten: BTreeSet::new(),
            forgotten_set: HashMap::new(),
            unpaid: BTreeSet::new(),
            global_rate: VecDeque::new(),
            invoice_times: VecDeque::new(),
            early_receipts: VecDeque::new(),
            seq: 0,
            dirty: true,
            claimed_elsewhere: admission::SeenIds::default(),
            signed_by_host: None,
        };
        provider.subscribe_base(now);
        provider
    }

    fn subscribe_base(&mut self, now: Timestamp) {
        let since = Timestamp::from(now.as_secs().saturating_sub(self.config.lookback_secs));
        // `"kinds": []` reads as "any kind" to some relays: with no kinds, no such filter.
        if !self.config.kinds.is_empty() {
            self.outbox
                .push_back(Output::Relay(RelayCommand::Subscribe {
                    id: SUB_REQUESTS.into(),
                    filter: Filter::new().kinds(self.config.kinds.clone()).since(since),
                }));
        }
        self.outbox
            .push_back(Output::Relay(RelayCommand::Subscribe {
                id: SUB_INBOX.into(),
                filter: Filter::new()
                    .kinds([
                        Kind::from(nip59::GIFT_WRAP_KIND),
                        Kind::from(nip59::EPHEMERAL_GIFT_WRAP_KIND),
                        Kind::from(ZAP_RECEIPT_KIND),
                    ])
                    .pubkey(self.keys.public_key())
                    // gift wraps are back-dated up to two days
                    .since(Timestamp::from(
                        since.as_secs().saturating_sub(nip59::MAX_TIMESTAMP_TWEAK),
                    )),
            }));
    }

    /// The time the provider acts on: never earlier than a `now` it was given before, so a
    /// wall clock that steps backwards cannot reopen a closed window or make a timer fire
    /// twice.
    fn tick(&mut self, now: Timestamp) -> Timestamp {
        if now > self.clock {
            self.clock = now;
        }
        self.clock
    }

    // ---- getters ------------------------------------------------------------------------

    /// The provider's public key.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// The configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The state of a job, if the provider knows it.
    pub fn job_state(&self, job: &EventId) -> Option<&JobState> {
        self.jobs.get(job).map(|j| &j.state)
    }

    /// The parsed request of a job; `None` for an ended job kept as a summary (when
    /// persisting by updates, an ended job's request is in the store, not in memory).
    pub fn job_request(&self, job: &EventId) -> Option<&JobRequest> {
        self.jobs
            .get(job)
            .filter(|j| !j.summary)
            .map(|j| &j.request)
    }

    /// Every job the provider keeps, with its state.
    pub fn jobs(&self) -> impl Iterator<Item = (&EventId, &JobState)> {
        self.jobs.iter().map(|(id, job)| (id, &job.state))
    }

    /// The invoices of the jobs that await payment, as `(job, bolt11, payment_hash)`: for a
    /// Lightning backend to watch after a restart (the bundled runtime hands them to
    /// `LightningBackend::watch`).
    pub fn awaiting_payment(&self) -> impl Iterator<Item = (EventId, &str, [u8; 32])> {
        self.jobs.values().filter_map(|job| {
            let awaiting = matches!(
                job.state,
                JobState::AwaitingPayment | JobState::AwaitingPaymentForResult
            );
            let (bolt11, hash) = job.invoice.as_ref()?.invoice.as_ref()?;
            awaiting.then(|| (job.id(), bolt11.as_str(), *hash))
        })
    }

    /// How many jobs are not terminal.
    pub fn live_jobs(&self) -> usize {
        self.live
    }

    /// The NIP-44 conversation-key cache's `(hits, misses)`: each miss cost one ECDH.
    pub fn conversation_cache_stats(&self) -> (u64, u64) {
        self.conversations.stats()
    }

    /// The replay ledger: every receipt and payment hash that has paid for a job.
    pub fn ledger(&self) -> &ReplayLedger {
        &self.ledger
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next thing for the host to do. Drain until `None` after every input or command.
    /// When persisting by updates ([`track_updates`](Self::track_updates)), an output waits
    /// until the update taken after it is acknowledged
    /// ([`handle_persisted`](Self::handle_persisted)): `None` until then.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.outbox.pop_front()?;
        if self.changes.tracking && persist::kept_in_meta(&output) {
            // The stored meta still holds it: the next update drops it, so a restart does
            // not carry it out again.
            self.dirty = true;
        }
        Some(output)
    }

    /// The job `id`, to change it: recorded as changed for the next update.
    fn job_mut(&mut self, id: &EventId) -> Option<&mut Job> {
        self.changes.job(*id);
        self.jobs.get_mut(id).map(|j| &mut **j)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if anything is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers
            .first()
            .map(|(t, _, _)| *t)
            .into_iter()
            .chain(self.next_heartbeat)
            .chain(self.next_announce)
            .chain(self.deletion_refresh_at)
            .chain(self.ledger.next_expiry())
            .chain(self.forgotten.first().map(|(t, _)| *t))
            .min()
    }

    /// Whether the state changed since the last [`snapshot`](Self::snapshot).
    pub fn needs_persistence(&self) -> bool {
        self.dirty
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Feeds an event from a relay: a job request, a gift wrap, a zap receipt, a kind-5
    /// deletion, or the result of a job another job waits for. Anything else is ignored.
    pub fn handle_event(&mut self, now: Timestamp, event: Event) {
        let now = self.tick(now);
        let kind = event.kind;
        if self.config.serves(kind) {
            self.on_request_event(now, event);
        } else if kind.as_u16() == nip59::GIFT_WRAP_KIND
            || kind.as_u16() == nip59::EPHEMERAL_GIFT_WRAP_KIND
        {
            self.on_gift_wrap(now, event);
        } else if kind.as_u16() == ZAP_RECEIPT_KIND {
            self.on_zap_receipt(now, event);
        } else if kind == Kind::EventDeletion {
            self.on_deletion(now, event);
        } else if self.config.registry.for_result(kind).is_some() {
            self.on_result_event(now, event);
        }
    }

    /// [`handle_event`](Self::handle_event) for an event whose signature the host checked
    /// already: nostr-sdk checks every event it delivers from a subscription, so the bundled
    /// runtime hands them in here and the provider spares a second signature check of each
    /// request, gift wrap, deletion and early zap receipt. The id is still checked against the content (one
    /// hash), so the host's check of any event with this id vouches for exactly this one. The
    /// events inside it (a gift wrap's seal, a zap receipt's zap request, the request a
    /// result carries) are checked as always. Hand in only events whose signature was
    /// checked: this skips the check that proves who wrote them.
    pub fn handle_verified_event(&mut self, now: Timestamp, event: Event) {
        self.signed_by_host = Some(event.id);
        self.handle_event(now, event);
        self.signed_by_host = None;
    }

    /// Whether `event` has a valid id and signature: the signature is not checked again when
    /// the host checked it ([`handle_verified_event`](Self::handle_verified_event)).
    fn authentic(&self, event: &Event) -> bool {
        if self.signed_by_host == Some(event.id) {
            return crate::nip01::verify_id(event);
        }
        crate::nip01::verify(event)
    }

    /// Runs the timers due at `now`: payment windows, run deadlines, input waits, request
    /// expirations, heartbeats, and the pruning of old terminal jobs.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.tick(now);
        self.on_timeout(now);
    }

    /// Reports partial output of a running task: sent as `partial` feedback. Under
    /// [`PaymentPolicy::PartialThenPay`], a priced job that is not paid yet publishes nothing
    /// before payment but the sample of its [`TaskOutput`]: progress is dropped.
    pub fn handle_task_progress(
        &mut self,
        now: Timestamp,
        job: EventId,
        partial: impl Into<String>,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        self.expect_state(job, JobState::Running)?;
        let priced = self.jobs.get(&job).is_some_and(|j| j.price_msat > 0);
        if priced
            && self.config.payment == PaymentPolicy::PartialThenPay
            && !self.ledger.paid_job(&job)
        {
            return Ok(());
        }
        let content = partial.into();
        self.send_feedback(
            now,
            job,
            FeedbackStatus::Partial,
            None,
            Some(content),
            false,
        )?;
        Ok(())
    }

    /// Reports a task's outcome.
    pub fn handle_task_result(
        &mut self,
        now: Timestamp,
        job: EventId,
        result: Result<TaskOutput, TaskError>,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        self.expect_state(job, JobState::Running)?;
        match result {
            Err(err) => {
                self.fail(now, job, err.message);
                Ok(())
            }
            Ok(output) => self.on_task_output(now, job, output),
        }
    }

    /// Reports the Lightning backend's answer to [`Output::RequestInvoice`]: a BOLT11
    /// invoice for the job's price, or why there is none (the job then fails; under
    /// pay-after-result, whose result is out already, it ends unpaid). An answer for a job
    /// that no longer waits for an invoice (paid by a zap on the request in the meantime,
    /// cancelled, or expired) is ignored.
    ///
    /// The invoice must be for exactly the amount asked, on
    /// [`ProviderConfig::network`], and not expired at `now`; otherwise this is the host's
    /// error (`Err`), and the job fails at once with `error` feedback rather than wait for
    /// the invoice timeout. The payment window ends at the earlier of
    /// `now + payment_window_secs` and the invoice's expiry.
    pub fn handle_invoice(
        &mut self,
        now: Timestamp,
        job: EventId,
        invoice: Result<String, String>,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        self.on_invoice(now, job, invoice)
    }

    /// Reports a payment the host's own wallet saw: the preimage, or the payment hash of a
    /// settled invoice. It must be the job's invoice (`Err` otherwise: the host's error). A
    /// payment that comes too late, for an ended job or for one already paid starts nothing
    /// and becomes an [`Output::Refund`].
    pub fn handle_payment(
        &mut self,
        now: Timestamp,
        job: EventId,
        proof: PaymentProof,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        self.on_wallet_payment(now, job, proof)
    }

    // ---- commands -----------------------------------------------------------------------

    /// Starts a job that waits in [`JobState::Received`] (automatic acceptance off).
    pub fn accept(&mut self, now: Timestamp, job: EventId) -> Result<(), Error> {
        let now = self.tick(now);
        self.expect_state(job, JobState::Received)?;
        self.proceed(now, job);
        Ok(())
    }

    /// Refuses a job that is not terminal: `error` feedback with `reason`.
    pub fn reject(&mut self, now: Timestamp, job: EventId, reason: &str) -> Result<(), Error> {
        let now = self.tick(now);
        let j = self.jobs.get(&job).ok_or(Error::UnknownJob(job))?;
        if j.state.is_terminal() {
            return Err(Error::WrongState {
                job,
                state: j.state.name(),
            });
        }
        let running = j.state == JobState::Running;
        if running {
            self.outbox.push_back(Output::CancelTask(job));
        }
        self.send_feedback(
            now,
            job,
            FeedbackStatus::Error,
            Some(reason.to_owned()),
            None,
            false,
        )?;
        self.finish(
            now,
            job,
            JobState::Rejected {
                reason: reason.to_owned(),
            },
        );
        self.notify(Notification::JobRejected {
            job,
            reason: RejectReason::ByHost(reason.to_owned()),
        });
        Ok(())
    }

    /// Cancels a job that is not terminal (its task too, if running). No feedback is sent.
    pub fn cancel(&mut self, now: Timestamp, job: EventId) -> Result<(), Error> {
        let now = self.tick(now);
        let j = self.jobs.get(&job).ok_or(Error::UnknownJob(job))?;
        if j.state.is_terminal() {
            return Err(Error::WrongState {
                job,
                state: j.state.name(),
            });
        }
        self.cancel_job(now, job);
        Ok(())
    }

    /// Publishes the NIP-89 announcement (kind 31990) of the configured handler metadata, and
    /// again every [`ProviderConfig::announce_interval_secs`] from then on.
    pub fn announce(&mut self, now: Timestamp) -> Result<(), Error> {
        let now = self.tick(now);
        self.announce_at(now)
    }

    fn announce_at(&mut self, now: Timestamp) -> Result<(), Error> {
        let metadata = self
            .config
            .announcement
            .clone()
            .ok_or(Error::NoAnnouncement)?;
        let event = HandlerInfo::builder(self.config.announcement_id.clone())
            .kinds(self.config.kinds.clone())
            .metadata(metadata)
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| Error::Build(e.to_string()))?;
        let relays = self.config.relays.clone();
        self.outbox
            .push_back(Output::Relay(RelayCommand::Publish { event, relays }));
        self.next_announce = self
            .config
            .announce_interval_secs
            .map(|secs| Timestamp::from(now.as_secs().saturating_add(secs.max(60))));
        self.dirty = true;
        Ok(())
    }

    /// Replaces the NIP-89 handler metadata and publishes the new announcement at once.
    pub fn set_announcement(
        &mut self,
        now: Timestamp,
        metadata: crate::nip89::HandlerMetadata,
    ) -> Result<(), Error> {
        self.config.announcement = Some(metadata);
        self.announce(now)
    }

    /// After [`restore`](Self::restore) from a host that stopped: re-issues the work that was
    /// in flight (tasks that were running, invoices that were requested) and the
    /// subscriptions, since none of them survived the host.
    pub fn resume(&mut self, now: Timestamp) {
        let now = self.tick(now);
        self.subscribe_base(now);
        // What fell due while the host was down happens first: a task whose request expired
        // meanwhile is not started again.
        self.on_timeout(now);
        let mut ids: Vec<(u64, EventId)> = self.jobs.values().map(|j| (j.seq, j.id())).collect();
        ids.sort();
        for (_, id) in ids {
            self.resume_job(now, id);
        }
        self.deletion_refresh_at = None;
        self.push_deletion_filter();
        self.push_inputs_filter();
        self.dirty = true;
    }

    // ---- requests -----------------------------------------------------------------------
}

/// `amount` rounded up to a multiple of `unit` (a unit of 0 counts as 1); `None` on overflow.
fn round_up(amount: u64, unit: u64) -> Option<u64> {
    let unit = unit.max(1);
    amount.div_ceil(unit).checked_mul(unit)
}

/// The size of a request for admission: content plus tag values.
fn tags_size<'a>(tags: impl Iterator<Item = &'a Tag>) -> usize {
    tags.map(|t| t.as_slice().iter().map(String::len).sum::<usize>())
        .sum()
}

/// Lowercase hex, without `nostr`'s slower general-purpose encoder (this runs once per priced
/// request).
fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lower_matches_nostr() {
        let id = EventId::from_byte_array(core::array::from_fn(|i| (i * 37) as u8));
        assert_eq!(hex_lower(id.as_bytes()), id.to_hex());
    }
}
