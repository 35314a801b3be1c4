//! A deterministic simulated network: an in-memory relay, a Lightning wallet, a zapper,
//! customers and virtual time around one [`Provider`].
//!
//! Nothing is mocked. Events are signed, requests are really encrypted or gift-wrapped,
//! invoices are real BOLT11 strings signed by a test node key, zap receipts are real NIP-57
//! receipts signed by a test zapper. Only the wire and the clock are simulated:
//!
//! - [`SimRelay`] stores events and serves subscriptions with NIP-01 filter matching.
//! - [`TestWallet`] issues the provider's invoices, remembers their preimages and settles them.
//! - [`Network`] owns the provider, the relay, the wallet, a [`TestZapper`], customers and the
//!   time. [`Network::run_until_idle`] plays the host: it drains the provider's outputs and
//!   carries each one out (publish on the relay, open or close a subscription, run a task,
//!   make an invoice), and delivers what the relay's subscriptions match back to the provider.
//!
//! Everything is deterministic: every key, nonce and signature comes from the seed, so the
//! same seed and the same calls give byte-identical events.
//!
//! ```
//! use nostr_dvm::nip90::{JobInput, JobRequest};
//! use nostr_dvm::task::{FixedPrice, TaskOutput};
//! use nostr_dvm::testing::sim::Network;
//!
//! let mut net = Network::builder()
//!     .seed(7)
//!     .task(|request| Ok(TaskOutput::new(request.texts().collect::<Vec<_>>().join(" "))))
//!     .build(|config| config.pricing(FixedPrice(21_000)));
//! let alice = net.add_customer();
//! let job = net.submit(alice, JobRequest::builder(5050).input(JobInput::text("hi")));
//! // pay-first: the customer is asked to pay, pays with a zap, and gets the result
//! let asked = net.payment_request(job).expect("payment-required feedback");
//! net.pay_by_zap(job, asked.amount_msat);
//! assert_eq!(net.results(job)[0].content, "hi");
//! ```

use crate::relay::RelayCommand;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use nostr::filter::MatchEventOptions;
use nostr::{
    Event, EventId, Filter, JsonUtil, Keys, Kind, PublicKey, SecretKey, Tag, Timestamp,
    UnsignedEvent,
};
use rand_core::RngCore;

use super::{sign, InvoiceDescription, InvoiceParams, TestInvoice, TestLightningNode, TestZapper};
use crate::nip57::ZapRequestBuilder;
use crate::nip59;
use crate::nip90::{FeedbackStatus, JobFeedback, JobRequestBuilder, JobResult};
use crate::provider::{
    Error as ProviderError, Notification, Output, PaymentProof, Provider, ProviderConfig, RecordSet,
};
use crate::rng::DvmRng;
use crate::task::{TaskError, TaskOutput, TaskRequest};

/// The time a [`Network`] starts at unless told otherwise (2025-10-09).
pub const SIM_EPOCH: u64 = 1_760_000_000;
/// The URL of a [`Network`]'s relay.
pub const SIM_RELAY_URL: &str = "wss://relay.sim";
/// The request kind a [`Network`]'s provider serves unless configured otherwise
/// (NIP-90 text extraction).
pub const SIM_KIND: u16 = 5050;
/// The relay client id of a [`Network`]'s provider.
pub const PROVIDER_CLIENT: ClientId = ClientId(0);
/// The most steps [`Network::run_until_idle`] takes before it decides the provider and the
/// relay are looping, and panics.
pub const MAX_STEPS: usize = 1_000_000;

// ---- relay ------------------------------------------------------------------------------

/// A connection to a [`SimRelay`]: subscriptions and deliveries belong to one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

/// What a [`SimRelay`] answered to a published event (its `OK` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Stored and delivered to the matching subscriptions.
    Stored,
    /// Stored, replacing an older replaceable or addressable event (whose id is given), and
    /// delivered.
    Replaced(EventId),
    /// An ephemeral event (kinds 20000..30000): delivered, not stored.
    Ephemeral,
    /// The relay has this event already: nothing delivered.
    Duplicate,
    /// A newer version of this replaceable or addressable event is stored: dropped.
    Outdated,
    /// Refused (`OK false`): the id or the signature is wrong.
    Rejected(String),
}

impl PublishOutcome {
    /// Whether the relay accepted the event (`OK true`).
    pub fn accepted(&self) -> bool {
        !matches!(self, PublishOutcome::Rejected(_))
    }
}

/// An event a subscription matched, waiting for its client to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The subscription that matched.
    pub subscription: String,
    /// The event.
    pub event: Event,
}

/// Whether `filter` matches `event` under NIP-01: every condition the filter sets holds
/// (`ids`, `authors`, `kinds`, the single-letter tag filters such as `#e` and `#p`, `since`,
/// `until`, and NIP-50 `search` as a case-insensitive substring).
///
/// This is [`Filter::match_event`] with one correction: that method takes an empty `ids`,
/// `authors` or `kinds` list as "anything" (while it takes an empty tag list as "nothing");
/// under NIP-01 a list is a set of allowed values, so an empty one matches nothing.
pub fn filter_matches(filter: &Filter, event: &Event) -> bool {
    let empty = filter.ids.as_ref().is_some_and(BTreeSet::is_empty)
        || filter.authors.as_ref().is_some_and(BTreeSet::is_empty)
        || filter.kinds.as_ref().is_some_and(BTreeSet::is_empty);
    !empty && filter.match_event(event, MatchEventOptions::new())
}

/// Where a replaceable or addressable event lives: one per address.
fn address(event: &Event) -> Option<(Kind, PublicKey, String)> {
    if event.kind.is_replaceable() {
        Some((event.kind, event.pubkey, String::new()))
    } else if event.kind.is_addressable() {
        let d = event.tags.identifier().unwrap_or_default().to_owned();
        Some((event.kind, event.pubkey, d))
    } else {
        None
    }
}

/// Sorts events the way a relay answers a `REQ`: newest first, ties by the lowest id.
fn newest_first(events: &mut [Event]) {
    events.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
}

/// An in-memory Nostr relay.
///
/// It checks ids and signatures (unless told not to), stores regular events, keeps only the
/// newest replaceable (kinds 0, 3, 10000..20000) and addressable (30000..40000, per `d` tag)
/// event, forwards ephemeral events (20000..30000) without storing them, and serves
/// subscriptions: a `REQ` is answered with the stored matches (newest first, at most `limit`),
/// then every new matching event is delivered, to each subscription it matches. Deliveries
/// queue per client until the client takes them ([`SimRelay::pop_delivery`]).
///
/// Deletions (NIP-09) and expirations (NIP-40) are not applied: the relay keeps what it gets.
#[derive(Debug, Clone)]
pub struct SimRelay {
    url: String,
    verify: bool,
    /// Stored events, in arrival order.
    stored: Vec<Event>,
    /// Every id the relay has accepted, stored or not.
    seen: BTreeSet<EventId>,
    subscriptions: BTreeMap<ClientId, BTreeMap<String, Filter>>,
    inbox: BTreeMap<ClientId, VecDeque<Delivery>>,
}

impl SimRelay {
    /// An empty relay at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            verify: true,
            stored: Vec::new(),
            seen: BTreeSet::new(),
            subscriptions: BTreeMap::new(),
            inbox: BTreeMap::new(),
        }
    }

    /// Whether published events must have a valid id and signature (the default, as every
    /// real relay does).
    pub fn verify_signatures(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// The relay's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Takes an event (an `EVENT` message): stores it and delivers it to every subscription
    /// it matches.
    pub fn publish(&mut self, event: Event) -> PublishOutcome {
        if self.seen.contains(&event.id) {
            return PublishOutcome::Duplicate;
        }
        if self.verify {
            if let Err(e) = event.verify() {
                return PublishOutcome::Rejected(format!("invalid: {e}"));
            }
        }
        let outcome = if event.kind.is_ephemeral() {
            PublishOutcome::Ephemeral
        } else if let Some(addr) = address(&event) {
            let old = self
                .stored
                .iter()
                .position(|e| address(e).as_ref() == Some(&addr));
            match old {
                Some(i) => {
                    let kept = &self.stored[i];
                    // NIP-01: the newest wins; on a tie, the lowest id.
                    let newer = event.created_at > kept.created_at
                        || (event.created_at == kept.created_at && event.id < kept.id);
                    if !newer {
                        return PublishOutcome::Outdated;
                    }
                    let old = self.stored.remove(i);
                    self.stored.push(event.clone());
                    PublishOutcome::Replaced(old.id)
                }
                None => {
                    self.stored.push(event.clone());
                    PublishOutcome::Stored
                }
            }
        } else {
            self.stored.push(event.clone());
            PublishOutcome::Stored
        };
        self.seen.insert(event.id);
        for (client, subs) in &self.subscriptions {
            for (id, filter) in subs {
                if filter_matches(filter, &event) {
                    self.inbox.entry(*client).or_default().push_back(Delivery {
                        subscription: id.clone(),
                        event: event.clone(),
                    });
                }
            }
        }
        outcome
    }

    /// Opens, or replaces, the subscription `id` of `client` (a `REQ`), and queues the stored
    /// events it matches (newest first, at most `limit`) for the client. Returns how many.
    pub fn subscribe(&mut self, client: ClientId, id: impl Into<String>, filter: Filter) -> usize {
        let id = id.into();
        let matches = self.query(&filter);
        let count = matches.len();
        let inbox = self.inbox.entry(client).or_default();
        for event in matches {
            inbox.push_back(Delivery {
                subscription: id.clone(),
                event,
            });
        }
        self.subscriptions
            .entry(client)
            .or_default()
            .insert(id, filter);
        count
    }

    /// Closes the subscription `id` of `client` (a `CLOSE`); whether it was open. Events it
    /// matched before and the client has not taken yet stay queued, as they would be in
    /// flight on a real connection.
    pub fn unsubscribe(&mut self, client: ClientId, id: &str) -> bool {
        self.subscriptions
            .get_mut(&client)
            .is_some_and(|subs| subs.remove(id).is_some())
    }

    /// Drops a client's subscriptions and undelivered events, as a closed connection does.
    pub fn disconnect(&mut self, client: ClientId) {
        self.subscriptions.remove(&client);
        self.inbox.remove(&client);
    }

    /// The stored events `filter` matches, newest first, at most its `limit`.
    pub fn query(&self, filter: &Filter) -> Vec<Event> {
        let mut matches: Vec<Event> = self
            .stored
            .iter()
            .filter(|e| filter_matches(filter, e))
            .cloned()
            .collect();
        newest_first(&mut matches);
        if let Some(limit) = filter.limit {
            matches.truncate(limit);
        }
        matches
    }

    /// The stored events, in the order they arrived.
    pub fn events(&self) -> &[Event] {
        &self.stored
    }

    /// A stored event by id.
    pub fn get(&self, id: &EventId) -> Option<&Event> {
        self.stored.iter().find(|e| e.id == *id)
    }

    /// The open subscriptions of `client`, by id.
    pub fn subscriptions(&self, client: ClientId) -> impl Iterator<Item = (&str, &Filter)> {
        self.subscriptions
            .get(&client)
            .into_iter()
            .flat_map(|subs| subs.iter().map(|(id, f)| (id.as_str(), f)))
    }

    /// The filter of one open subscription.
    pub fn subscription(&self, client: ClientId, id: &str) -> Option<&Filter> {
        self.subscriptions.get(&client).and_then(|s| s.get(id))
    }

    /// How many deliveries wait for `client`.
    pub fn pending(&self, client: ClientId) -> usize {
        self.inbox.get(&client).map_or(0, VecDeque::len)
    }

    /// The next delivery for `client`, if any.
    pub fn pop_delivery(&mut self, client: ClientId) -> Option<Delivery> {
        self.inbox.get_mut(&client).and_then(VecDeque::pop_front)
    }

    /// Every delivery waiting for `client`, in order.
    pub fn take_deliveries(&mut self, client: ClientId) -> Vec<Delivery> {
        self.inbox
            .get_mut(&client)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

// ---- wallet -----------------------------------------------------------------------------

/// An invoice a [`TestWallet`] issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletInvoice {
    /// The job it was made for, if any.
    pub job: Option<EventId>,
    /// The amount, in millisats.
    pub amount_msat: u64,
    /// The BOLT11 string, preimage and payment hash.
    pub invoice: TestInvoice,
    /// Whether it has been paid.
    pub settled: bool,
}

/// The provider's Lightning wallet: issues real BOLT11 invoices through a
/// [`TestLightningNode`], remembers their preimages, and settles them when paid.
#[derive(Debug, Clone)]
pub struct TestWallet {
    node: TestLightningNode,
    rng: DvmRng,
    invoices: Vec<WalletInvoice>,
}

impl TestWallet {
    /// A wallet invoicing through `node`, drawing preimages from a CSPRNG seeded with `seed`.
    pub fn new(node: TestLightningNode, seed: [u8; 32]) -> Self {
        Self {
            node,
            rng: DvmRng::from_seed(seed),
            invoices: Vec::new(),
        }
    }

    /// The node that signs the invoices.
    pub fn node(&self) -> &TestLightningNode {
        &self.node
    }

    /// Issues an invoice for `amount_msat` with a plain description (cut to the 639 bytes
    /// BOLT11 allows), dated `now`, valid `expiry_secs`, with a fresh preimage.
    pub fn issue(
        &mut self,
        job: Option<EventId>,
        amount_msat: u64,
        description: &str,
        expiry_secs: u64,
        now: Timestamp,
    ) -> TestInvoice {
        let mut description = description.to_owned();
        while description.len() > 639 {
            description.pop();
        }
        let mut preimage = [0u8; 32];
        self.rng.fill_bytes(&mut preimage);
        let invoice = self.node.invoice(&InvoiceParams {
            amount_msat: Some(amount_msat),
            description: InvoiceDescription::Direct(description),
            created_at: now,
            expiry_secs,
            preimage,
        });
        self.invoices.push(WalletInvoice {
            job,
            amount_msat,
            invoice: invoice.clone(),
            settled: false,
        });
        invoice
    }

    /// Every invoice issued, oldest first.
    pub fn invoices(&self) -> &[WalletInvoice] {
        &self.invoices
    }

    /// The invoice with this BOLT11 string.
    pub fn invoice(&self, bolt11: &str) -> Option<&WalletInvoice> {
        self.invoices.iter().find(|i| i.invoice.bolt11 == bolt11)
    }

    /// The latest invoice issued for `job`.
    pub fn invoice_for_job(&self, job: &EventId) -> Option<&WalletInvoice> {
        self.invoices.iter().rev().find(|i| i.job == Some(*job))
    }

    /// Pays an invoice of this wallet: settles it and returns the proof the wallet gives its
    /// owner (the preimage). `None` when the wallet did not issue it.
    pub fn pay(&mut self, bolt11: &str) -> Option<PaymentProof> {
        let invoice = self
            .invoices
            .iter_mut()
            .find(|i| i.invoice.bolt11 == bolt11.trim())?;
        invoice.settled = true;
        Some(PaymentProof::Preimage(invoice.invoice.preimage))
    }

    /// Settles the invoice with this payment hash; returns the proof, or `None` when the
    /// wallet did not issue it.
    pub fn settle(&mut self, payment_hash: &[u8; 32]) -> Option<PaymentProof> {
        let invoice = self
            .invoices
            .iter_mut()
            .find(|i| i.invoice.payment_hash == *payment_hash)?;
        invoice.settled = true;
        Some(PaymentProof::SettledPaymentHash(*payment_hash))
    }

    /// Whether the invoice with this BOLT11 string has been paid.
    pub fn is_settled(&self, bolt11: &str) -> bool {
        self.invoice(bolt11).is_some_and(|i| i.settled)
    }
}

// ---- network ----------------------------------------------------------------------------

/// The work a [`Network`] runs for [`Output::RunTask`]: synchronous, deterministic.
pub type TaskFn = Arc<dyn Fn(&TaskRequest) -> Result<TaskOutput, TaskError> + Send + Sync>;

/// When a [`Network`] runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskMode {
    /// As soon as the provider asks: the result is reported at the same instant.
    #[default]
    Immediate,
    /// Kept pending until the test completes them ([`Network::complete_task`],
    /// [`Network::finish_task`]), so that it can cancel, expire or restart mid-run.
    Deferred,
}

/// How a [`Network`]'s wallet answers [`Output::RequestInvoice`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InvoiceMode {
    /// With an invoice at once.
    #[default]
    Immediate,
    /// Kept pending until the test answers ([`Network::answer_invoice`]).
    Deferred,
    /// With this error at once (the Lightning backend is down).
    Fail(String),
}

/// How a customer sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// As a signed event, public (its private part encrypted if the builder says so).
    #[default]
    Public,
    /// As the rumor of a NIP-59 gift wrap to the provider.
    GiftWrap,
}

/// A customer of a [`Network`], by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerId(pub usize);

/// A customer: keys, a relay connection and what the relay delivered to it.
#[derive(Debug, Clone)]
pub struct SimCustomer {
    /// The customer's keys.
    pub keys: Keys,
    /// Its relay connection.
    pub client: ClientId,
    /// Every event the relay delivered to it (replies tagged with its key), in order.
    pub received: Vec<Event>,
}

/// A reply of the provider, as its customer reads it (gift wraps opened, encryption removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimReply {
    /// A feedback event.
    Feedback(JobFeedback),
    /// A result event.
    Result(JobResult),
}

impl SimReply {
    /// The job (request id) it is about.
    pub fn job(&self) -> EventId {
        match self {
            SimReply::Feedback(f) => f.request_id,
            SimReply::Result(r) => r.request_id,
        }
    }
}

/// A `payment-required` feedback, as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The feedback's id (for a gift-wrapped job, its rumor's): zaps may bind to it.
    pub feedback: EventId,
    /// The amount asked, in millisats.
    pub amount_msat: u64,
    /// The invoice, when the provider gave one.
    pub bolt11: Option<String>,
}

/// Builds a [`Network`].
pub struct NetworkBuilder {
    seed: u64,
    start: Timestamp,
    kind: Kind,
    task: TaskFn,
    task_mode: TaskMode,
    invoice_mode: InvoiceMode,
    updates: bool,
}

impl core::fmt::Debug for NetworkBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetworkBuilder")
            .field("seed", &self.seed)
            .field("start", &self.start)
            .field("kind", &self.kind)
            .field("task_mode", &self.task_mode)
            .field("invoice_mode", &self.invoice_mode)
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}

impl Default for NetworkBuilder {
    fn default() -> Self {
        Self {
            seed: 0,
            start: Timestamp::from(SIM_EPOCH),
            kind: Kind::from(SIM_KIND),
            task: Arc::new(|request: &TaskRequest| {
                Ok(TaskOutput::new(
                    request.texts().collect::<Vec<_>>().join("\n"),
                ))
            }),
            task_mode: TaskMode::Immediate,
            invoice_mode: InvoiceMode::Immediate,
            updates: false,
        }
    }
}

impl NetworkBuilder {
    /// The seed every key, nonce and signature of the network derives from (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The virtual time the network starts at (default [`SIM_EPOCH`]).
    pub fn start(mut self, at: Timestamp) -> Self {
        self.start = at;
        self
    }

    /// The request kind the provider serves (default [`SIM_KIND`]).
    pub fn kind(mut self, kind: impl Into<Kind>) -> Self {
        self.kind = kind.into();
        self
    }

    /// The task the host runs (default: the text inputs joined by newlines).
    pub fn task(
        mut self,
        task: impl Fn(&TaskRequest) -> Result<TaskOutput, TaskError> + Send + Sync + 'static,
    ) -> Self {
        self.task = Arc::new(task);
        self
    }

    /// Keeps tasks pending until the test completes them.
    pub fn deferred_tasks(mut self) -> Self {
        self.task_mode = TaskMode::Deferred;
        self
    }

    /// How the wallet answers invoice requests.
    pub fn invoices(mut self, mode: InvoiceMode) -> Self {
        self.invoice_mode = mode;
        self
    }

    /// The host persists by updates ([`Provider::track_updates`]): it applies each update to
    /// a [`RecordSet`] and acknowledges it at once, and restarts, crashes and forks restore
    /// from those records instead of a snapshot.
    pub fn updates(mut self) -> Self {
        self.updates = true;
        self
    }

    /// Builds the network and starts its provider. `configure` receives the provider's
    /// config with the kind, the network's zapper as the one trusted zapper, the relay's URL
    /// and an RNG seed derived from the network's seed already set, and may change anything.
    pub fn build(self, configure: impl FnOnce(ProviderConfig) -> ProviderConfig) -> Network {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        seed[8..16].copy_from_slice(b"nostrdvm");
        let mut rng = DvmRng::from_seed(seed);
        let keys = random_keys(&mut rng);
        let zapper = TestZapper::new(random_keys(&mut rng), node(&mut rng));
        let untrusted_zapper = TestZapper::new(random_keys(&mut rng), node(&mut rng));
        let stranger = random_keys(&mut rng);
        let mut wallet_seed = [0u8; 32];
        rng.fill_bytes(&mut wallet_seed);
        let wallet = TestWallet::new(node(&mut rng), wallet_seed);
        let mut provider_seed = [0u8; 32];
        rng.fill_bytes(&mut provider_seed);
        let config = configure(
            ProviderConfig::new([self.kind])
                .zappers([zapper.pubkey()])
                .relays([SIM_RELAY_URL])
                .deterministic_seed(provider_seed),
        );
        let mut provider = Provider::new(keys.clone(), config.clone(), self.start);
        if self.updates {
            provider.track_updates();
        }
        let mut net = Network {
            records: self.updates.then(RecordSet::default),
            saved: None,
            provider,
            keys,
            config,
            relay: SimRelay::new(SIM_RELAY_URL),
            wallet,
            zapper,
            untrusted_zapper,
            stranger,
            customers: Vec::new(),
            jobs: BTreeMap::new(),
            now: self.start,
            rng,
            task: self.task,
            task_mode: self.task_mode,
            invoice_mode: self.invoice_mode,
            pending_tasks: Vec::new(),
            pending_invoices: Vec::new(),
            cancelled_tasks: Vec::new(),
            refunds: Vec::new(),
            outputs: Vec::new(),
            output_times: Vec::new(),
            published: Vec::new(),
            handled: Vec::new(),
            host_errors: Vec::new(),
        };
        net.run_until_idle();
        net
    }
}

/// Keys with a secret key drawn from `rng`.
fn random_keys(rng: &mut DvmRng) -> Keys {
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(secret) = SecretKey::from_slice(&bytes) {
            return Keys::new(secret);
        }
    }
}

/// A Lightning node whose key is derived from `rng`.
fn node(rng: &mut DvmRng) -> TestLightningNode {
    let mut b = [0u8; 1];
    rng.fill_bytes(&mut b);
    TestLightningNode::new(b[0])
}

/// A rumor as an event with an all-zero signature, for the parsers that take events.
fn rumor_event(mut rumor: UnsignedEvent) -> Option<Event> {
    let id = rumor.id();
    let sig = nostr::secp256k1::schnorr::Signature::from_slice(&[0u8; 64]).ok()?;
    Some(Event::new(
        id,
        rumor.pubkey,
        rumor.created_at,
        rumor.kind,
        rumor.tags.to_vec(),
        rumor.content,
        sig,
    ))
}

/// An invoice request the host has not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInvoice {
    /// The job.
    pub job: EventId,
    /// The amount, in millisats.
    pub amount_msat: u64,
    /// The description the provider asked for.
    pub description: String,
    /// The expiry the provider asked for, in seconds.
    pub expiry_secs: u64,
}

/// A simulated world around one [`Provider`]: the host loop, a relay, a wallet, a zapper,
/// customers and virtual time. See the [module docs](self).
///
/// Every input method runs the world until it is idle before it returns, so the effects of
/// an input (the provider's outputs, the relay's deliveries, tasks and invoices in immediate
/// mode) are all visible afterwards: [`outputs`](Self::outputs) is the log of every output
/// the provider produced, [`mark`](Self::mark) and [`outputs_since`](Self::outputs_since)
/// slice it per input.
pub struct Network {
    provider: Provider,
    /// What the host stored, when it persists by updates.
    records: Option<RecordSet>,
    /// The last snapshot `save_if_dirty` took, as JSON.
    saved: Option<String>,
    keys: Keys,
    config: ProviderConfig,
    relay: SimRelay,
    wallet: TestWallet,
    zapper: TestZapper,
    untrusted_zapper: TestZapper,
    stranger: Keys,
    customers: Vec<SimCustomer>,
    /// Job id -> the customer who submitted it.
    jobs: BTreeMap<EventId, CustomerId>,
    now: Timestamp,
    rng: DvmRng,
    task: TaskFn,
    task_mode: TaskMode,
    invoice_mode: InvoiceMode,
    pending_tasks: Vec<TaskRequest>,
    pending_invoices: Vec<PendingInvoice>,
    cancelled_tasks: Vec<EventId>,
    refunds: Vec<crate::provider::RefundDue>,
    outputs: Vec<Output>,
    /// When each output was produced (the clock then), in the order of `outputs`.
    output_times: Vec<Timestamp>,
    published: Vec<Event>,
    handled: Vec<Event>,
    host_errors: Vec<String>,
}

impl core::fmt::Debug for Network {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Network")
            .field("now", &self.now)
            .field("customers", &self.customers.len())
            .field("jobs", &self.jobs.len())
            .field("outputs", &self.outputs.len())
            .field("pending_tasks", &self.pending_tasks.len())
            .field("pending_invoices", &self.pending_invoices.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// A builder with the defaults: seed 0, [`SIM_EPOCH`], kind [`SIM_KIND`], a task that
    /// echoes the text inputs, tasks and invoices answered at once.
    pub fn builder() -> NetworkBuilder {
        NetworkBuilder::default()
    }

    // ---- parts ----------------------------------------------------------------------------

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The provider, to call commands on it directly; call
    /// [`run_until_idle`](Self::run_until_idle) afterwards.
    pub fn provider_mut(&mut self) -> &mut Provider {
        &mut self.provider
    }

    /// The provider's keys.
    pub fn provider_keys(&self) -> &Keys {
        &self.keys
    }

    /// The provider's public key.
    pub fn provider_pubkey(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// The provider's config.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The relay.
    pub fn relay(&self) -> &SimRelay {
        &self.relay
    }

    /// The relay, to publish or subscribe directly.
    pub fn relay_mut(&mut self) -> &mut SimRelay {
        &mut self.relay
    }

    /// The provider's wallet.
    pub fn wallet(&self) -> &TestWallet {
        &self.wallet
    }

    /// The provider's wallet, mutably.
    pub fn wallet_mut(&mut self) -> &mut TestWallet {
        &mut self.wallet
    }

    /// The zapper the provider trusts (its LNURL server).
    pub fn zapper(&self) -> &TestZapper {
        &self.zapper
    }

    /// A zapper the provider does not trust: its receipts are forgeries.
    pub fn untrusted_zapper(&self) -> &TestZapper {
        &self.untrusted_zapper
    }

    /// Keys of someone who is neither the provider nor a customer.
    pub fn stranger(&self) -> &Keys {
        &self.stranger
    }

    /// The network's RNG, for tests that sign their own events.
    pub fn rng_mut(&mut self) -> &mut DvmRng {
        &mut self.rng
    }

    /// The task the host runs.
    pub fn set_task(
        &mut self,
        task: impl Fn(&TaskRequest) -> Result<TaskOutput, TaskError> + Send + Sync + 'static,
    ) {
        self.task = Arc::new(task);
    }

    /// Changes when tasks run (pending ones stay pending).
    pub fn set_task_mode(&mut self, mode: TaskMode) {
        self.task_mode = mode;
    }

    /// Changes how invoice requests are answered (pending ones stay pending).
    pub fn set_invoice_mode(&mut self, mode: InvoiceMode) {
        self.invoice_mode = mode;
    }

    // ---- logs -----------------------------------------------------------------------------

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Every output the provider produced, in order.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// A position in the output log, for [`outputs_since`](Self::outputs_since).
    pub fn mark(&self) -> usize {
        self.outputs.len()
    }

    /// The outputs produced since `mark`.
    pub fn outputs_since(&self, mark: usize) -> &[Output] {
        self.outputs.get(mark..).unwrap_or_default()
    }

    /// The outputs produced since `mark`, each with the time it was produced at (one
    /// [`advance`](Self::advance) runs the timers due on the way, each at its own time).
    pub fn timed_outputs_since(&self, mark: usize) -> impl Iterator<Item = (Timestamp, &Output)> {
        let times = self.output_times.get(mark..).unwrap_or_default();
        times.iter().copied().zip(self.outputs_since(mark))
    }

    /// Every notification the provider produced, in order.
    pub fn notifications(&self) -> impl Iterator<Item = &Notification> {
        self.outputs.iter().filter_map(|o| match o {
            Output::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// Every event the provider published, in order.
    pub fn published(&self) -> &[Event] {
        &self.published
    }

    /// Every event handed to the provider's `handle_event`, in order (relay deliveries and
    /// [`deliver`](Self::deliver)).
    pub fn handled(&self) -> &[Event] {
        &self.handled
    }

    /// What went wrong on the host's side: a `handle_*` call the network made that returned
    /// an error, or an event the provider published that the relay refused. A correct
    /// provider driven by this network leaves it empty.
    pub fn host_errors(&self) -> &[String] {
        &self.host_errors
    }

    /// The tasks started and not finished or cancelled (deferred mode), in start order.
    pub fn pending_tasks(&self) -> &[TaskRequest] {
        &self.pending_tasks
    }

    /// The invoice requests not answered yet (deferred mode), in order.
    pub fn pending_invoices(&self) -> &[PendingInvoice] {
        &self.pending_invoices
    }

    /// Every job whose task the provider cancelled, in order.
    pub fn cancelled_tasks(&self) -> &[EventId] {
        &self.cancelled_tasks
    }

    /// The payments the provider handed back, in order.
    pub fn refunds(&self) -> &[crate::provider::RefundDue] {
        &self.refunds
    }

    // ---- the host loop --------------------------------------------------------------------

    /// One unit of the host's work: carries out the provider's next output, or else hands it
    /// the next event its subscriptions matched. `false` when there was nothing to do.
    pub fn step(&mut self) -> bool {
        if let Some(output) = self.provider.poll_output() {
            self.outputs.push(output.clone());
            self.output_times.push(self.now);
            self.carry_out(output);
            return true;
        }
        if let Some(records) = &mut self.records {
            if let Some(update) = self.provider.poll_update() {
                records.apply(&update);
                if let Err(e) = self.provider.handle_persisted(update.id) {
                    self.host_errors
                        .push(format!("persisted {}: {e}", update.id));
                }
                return true;
            }
        }
        for customer in &mut self.customers {
            for delivery in self.relay.take_deliveries(customer.client) {
                customer.received.push(delivery.event);
            }
        }
        if let Some(delivery) = self.relay.pop_delivery(PROVIDER_CLIENT) {
            self.handled.push(delivery.event.clone());
            self.provider.handle_event(self.now, delivery.event);
            return true;
        }
        false
    }

    /// Steps until nothing is left to do; returns how many steps it took.
    ///
    /// # Panics
    ///
    /// After [`MAX_STEPS`] steps: the provider and the relay feed each other forever.
    pub fn run_until_idle(&mut self) -> usize {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(
                steps < MAX_STEPS,
                "the simulation does not settle: {MAX_STEPS} steps at {}",
                self.now.as_secs()
            );
        }
        steps
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Relay(RelayCommand::Publish { event, .. }) => {
                self.published.push(event.clone());
                let id = event.id;
                if let PublishOutcome::Rejected(why) = self.relay.publish(event) {
                    self.host_errors.push(format!(
                        "the relay refused the provider's event {id}: {why}"
                    ));
                }
                // The relay answered (OK, or a refusal the host gives up on).
                self.provider.handle_published(id);
            }
            Output::Relay(RelayCommand::Subscribe { id, filter }) => {
                self.relay.subscribe(PROVIDER_CLIENT, id, filter);
            }
            Output::Relay(RelayCommand::Unsubscribe(id)) => {
                self.relay.unsubscribe(PROVIDER_CLIENT, &id);
            }
            Output::RunTask(request) => match self.task_mode {
                TaskMode::Immediate => {
                    let result = (self.task)(&request);
                    let r = self
                        .provider
                        .handle_task_result(self.now, request.job, result);
                    self.note("handle_task_result", r);
                }
                TaskMode::Deferred => {
                    self.pending_tasks.retain(|t| t.job != request.job);
                    self.pending_tasks.push(*request);
                }
            },
            Output::ClaimJob(record) => {
                // One process: every claim is won.
                let r = self.provider.handle_claim(self.now, record.id(), true);
                self.note("handle_claim", r);
            }
            Output::CancelTask(job) => {
                self.pending_tasks.retain(|t| t.job != job);
                self.cancelled_tasks.push(job);
            }
            Output::Refund(refund) => self.refunds.push(refund),
            Output::RequestInvoice {
                job,
                amount_msat,
                description,
                expiry_secs,
            } => {
                let pending = PendingInvoice {
                    job,
                    amount_msat,
                    description,
                    expiry_secs,
                };
                match self.invoice_mode.clone() {
                    InvoiceMode::Immediate => {
                        let r = self.invoice_now(&pending);
                        self.note("handle_invoice", r);
                    }
                    InvoiceMode::Deferred => self.pending_invoices.push(pending),
                    InvoiceMode::Fail(reason) => {
                        let r = self.provider.handle_invoice(self.now, job, Err(reason));
                        self.note("handle_invoice", r);
                    }
                }
            }
            Output::Notify(_) => {}
        }
    }

    fn note(&mut self, what: &str, result: Result<(), ProviderError>) {
        if let Err(e) = result {
            self.host_errors.push(format!("{what}: {e}"));
        }
    }

    fn invoice_now(&mut self, pending: &PendingInvoice) -> Result<(), ProviderError> {
        let invoice = self.wallet.issue(
            Some(pending.job),
            pending.amount_msat,
            &pending.description,
            pending.expiry_secs,
            self.now,
        );
        self.provider
            .handle_invoice(self.now, pending.job, Ok(invoice.bolt11))
    }

    // ---- time -----------------------------------------------------------------------------

    /// Moves time forward by `secs`, running every timer that falls due on the way at its
    /// own time.
    pub fn advance(&mut self, secs: u64) {
        let to = Timestamp::from(self.now.as_secs().saturating_add(secs));
        self.advance_to(to);
    }

    /// Moves the clock forward by `secs` without running the provider's due timers: a host
    /// whose timer fires late, so that other inputs reach the provider first. The next
    /// [`advance`](Self::advance) runs them.
    pub fn advance_without_timers(&mut self, secs: u64) {
        self.run_until_idle();
        self.now = Timestamp::from(self.now.as_secs().saturating_add(secs));
    }

    /// Moves time forward to `to` (never back), running every timer due by then at its own
    /// time.
    pub fn advance_to(&mut self, to: Timestamp) {
        self.run_until_idle();
        let mut rounds = 0usize;
        while let Some(at) = self.provider.poll_timeout() {
            if at > to {
                break;
            }
            self.now = self.now.max(at);
            self.provider.handle_timeout(self.now);
            self.run_until_idle();
            rounds += 1;
            assert!(
                rounds < MAX_STEPS,
                "poll_timeout stays at {} after handle_timeout",
                at.as_secs()
            );
        }
        self.now = self.now.max(to);
        self.run_until_idle();
    }

    /// Jumps to the provider's next timeout and runs it; returns the new time, or `None`
    /// (and stays) when nothing is scheduled.
    pub fn advance_to_next_timeout(&mut self) -> Option<Timestamp> {
        self.run_until_idle();
        let at = self.provider.poll_timeout()?;
        self.now = self.now.max(at);
        self.provider.handle_timeout(self.now);
        self.run_until_idle();
        Some(self.now)
    }

    // ---- persistence ----------------------------------------------------------------------

    fn reloaded(&mut self) -> Provider {
        if let Some(records) = &self.records {
            return self.restored_from_records(records);
        }
        let snapshot = self.provider.snapshot();
        let json = serde_json::to_string(&snapshot)
            .unwrap_or_else(|e| panic!("snapshot does not serialize: {e}"));
        let snapshot = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("snapshot does not deserialize: {e}"));
        Provider::restore(self.keys.clone(), self.config.clone(), snapshot)
            .unwrap_or_else(|e| panic!("snapshot does not restore: {e}"))
    }

    /// A provider restored from `records` (its meta through JSON), tracking updates.
    fn restored_from_records(&self, records: &RecordSet) -> Provider {
        let snapshot = records
            .snapshot()
            .unwrap_or_else(|| panic!("no update was stored"));
        let json = serde_json::to_string(&snapshot)
            .unwrap_or_else(|e| panic!("records do not serialize: {e}"));
        let snapshot = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("records do not deserialize: {e}"));
        let mut provider = Provider::restore(self.keys.clone(), self.config.clone(), snapshot)
            .unwrap_or_else(|e| panic!("records do not restore: {e}"));
        provider.track_updates();
        provider
    }

    /// The records the host stored, when it persists by updates.
    pub fn records(&self) -> Option<&RecordSet> {
        self.records.as_ref()
    }

    /// Replaces the provider with one restored from its snapshot (through JSON), as a host
    /// that persists and reloads it in place would; nothing else changes (tasks keep running,
    /// subscriptions stay open).
    ///
    /// # Panics
    ///
    /// When the snapshot does not round-trip or restore.
    pub fn restart(&mut self) {
        self.run_until_idle();
        self.provider = self.reloaded();
        self.run_until_idle();
    }

    /// Simulates a host crash: the provider is restored from its last state (through JSON),
    /// the host's running tasks, pending invoice requests and relay connection are lost, and
    /// the provider is [`resume`](Provider::resume)d.
    ///
    /// # Panics
    ///
    /// When the snapshot does not round-trip or restore.
    pub fn crash_and_resume(&mut self) {
        self.run_until_idle();
        self.provider = self.reloaded();
        self.pending_tasks.clear();
        self.pending_invoices.clear();
        self.relay.disconnect(PROVIDER_CLIENT);
        self.provider.resume(self.now);
        self.run_until_idle();
    }

    /// A copy of the whole world whose provider is restored from this one's snapshot
    /// (through JSON): fed the same inputs, both must produce the same outputs.
    ///
    /// # Panics
    ///
    /// When the snapshot does not round-trip or restore.
    pub fn fork(&mut self) -> Network {
        self.run_until_idle();
        let provider = self.reloaded();
        self.fork_with(provider)
    }

    /// Saves the provider's snapshot (as JSON) if, and only if, it says it needs persistence:
    /// what a host that saves only when told does after each loop turn.
    ///
    /// # Panics
    ///
    /// When the snapshot does not serialize.
    pub fn save_if_dirty(&mut self) {
        self.run_until_idle();
        if self.records.is_some() {
            // Every update is stored as it comes.
            return;
        }
        if self.provider.needs_persistence() {
            let snapshot = self.provider.snapshot();
            self.saved = Some(
                serde_json::to_string(&snapshot)
                    .unwrap_or_else(|e| panic!("snapshot does not serialize: {e}")),
            );
        }
    }

    /// Like [`fork`](Self::fork), with the twin's provider restored from the last snapshot
    /// [`save_if_dirty`](Self::save_if_dirty) took (or a fresh snapshot when none was taken):
    /// a host that crashed after its last save. If some state change did not mark the
    /// provider as needing persistence, the twin misses it.
    ///
    /// # Panics
    ///
    /// When the snapshot does not restore.
    pub fn fork_from_saved(&mut self) -> Network {
        self.run_until_idle();
        if let Some(records) = &self.records {
            let provider = self.restored_from_records(records);
            return self.fork_with(provider);
        }
        let provider = match &self.saved {
            Some(json) => {
                let snapshot = serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("snapshot does not deserialize: {e}"));
                Provider::restore(self.keys.clone(), self.config.clone(), snapshot)
                    .unwrap_or_else(|e| panic!("snapshot does not restore: {e}"))
            }
            None => self.reloaded(),
        };
        self.fork_with(provider)
    }

    fn fork_with(&mut self, provider: Provider) -> Network {
        Network {
            records: self.records.clone(),
            saved: self.saved.clone(),
            provider,
            keys: self.keys.clone(),
            config: self.config.clone(),
            relay: self.relay.clone(),
            wallet: self.wallet.clone(),
            zapper: self.zapper.clone(),
            untrusted_zapper: self.untrusted_zapper.clone(),
            stranger: self.stranger.clone(),
            customers: self.customers.clone(),
            jobs: self.jobs.clone(),
            now: self.now,
            rng: self.rng.clone(),
            task: Arc::clone(&self.task),
            task_mode: self.task_mode,
            invoice_mode: self.invoice_mode.clone(),
            pending_tasks: self.pending_tasks.clone(),
            pending_invoices: self.pending_invoices.clone(),
            cancelled_tasks: self.cancelled_tasks.clone(),
            refunds: self.refunds.clone(),
            outputs: self.outputs.clone(),
            output_times: self.output_times.clone(),
            published: self.published.clone(),
            handled: self.handled.clone(),
            host_errors: self.host_errors.clone(),
        }
    }

    // ---- customers ------------------------------------------------------------------------

    /// A new customer with keys from the network's RNG, connected to the relay and
    /// subscribed to every event tagged with its key.
    pub fn add_customer(&mut self) -> CustomerId {
        let keys = random_keys(&mut self.rng);
        self.add_customer_with_keys(keys)
    }

    /// A new customer with these keys.
    pub fn add_customer_with_keys(&mut self, keys: Keys) -> CustomerId {
        let id = CustomerId(self.customers.len());
        let client = ClientId(u32::try_from(self.customers.len() + 1).unwrap_or(u32::MAX));
        self.relay
            .subscribe(client, "replies", Filter::new().pubkey(keys.public_key()));
        self.customers.push(SimCustomer {
            keys,
            client,
            received: Vec::new(),
        });
        self.run_until_idle();
        id
    }

    /// A customer.
    ///
    /// # Panics
    ///
    /// When there is no such customer.
    pub fn customer(&self, customer: CustomerId) -> &SimCustomer {
        &self.customers[customer.0]
    }

    /// Every customer.
    pub fn customers(&self) -> &[SimCustomer] {
        &self.customers
    }

    /// Who submitted `job` through this network.
    pub fn customer_of(&self, job: &EventId) -> Option<CustomerId> {
        self.jobs.get(job).copied()
    }

    /// Signs a request from `customer` (gift-wrapped to the provider for
    /// [`Via::GiftWrap`]) without publishing it. Returns the job id and the event to
    /// publish. Mind that an encrypted request must name the provider
    /// (`builder.provider(net.provider_pubkey())`).
    ///
    /// # Panics
    ///
    /// When the builder cannot sign (an encrypted request without exactly one provider).
    pub fn sign_request(
        &mut self,
        customer: CustomerId,
        builder: JobRequestBuilder,
        how: Via,
    ) -> (EventId, Event) {
        let now = self.now;
        self.sign_request_dated(customer, builder, how, now)
    }

    /// Like [`sign_request`](Self::sign_request), with the request (the rumor, when
    /// gift-wrapped) dated `created_at`: a customer whose clock is off, or an attacker.
    ///
    /// # Panics
    ///
    /// When the builder cannot sign (an encrypted request without exactly one provider).
    pub fn sign_request_dated(
        &mut self,
        customer: CustomerId,
        builder: JobRequestBuilder,
        how: Via,
        created_at: Timestamp,
    ) -> (EventId, Event) {
        let keys = self.customers[customer.0].keys.clone();
        let request = builder
            .sign(&keys, created_at, &mut self.rng)
            .unwrap_or_else(|e| panic!("the request cannot be signed: {e}"));
        let job = request.id;
        self.jobs.insert(job, customer);
        let event = match how {
            Via::Public => request,
            Via::GiftWrap => nip59::gift_wrap(
                &keys,
                &self.keys.public_key(),
                UnsignedEvent::from(request),
                self.now,
                &mut self.rng,
            )
            .unwrap_or_else(|e| panic!("the request cannot be gift-wrapped: {e}")),
        };
        (job, event)
    }

    /// Signs and publishes a public request from `customer`; returns the job id.
    pub fn submit(&mut self, customer: CustomerId, builder: JobRequestBuilder) -> EventId {
        self.submit_with(customer, builder, Via::Public)
    }

    /// Signs and publishes a request from `customer`, public or gift-wrapped; returns the
    /// job id.
    pub fn submit_with(
        &mut self,
        customer: CustomerId,
        builder: JobRequestBuilder,
        how: Via,
    ) -> EventId {
        let (job, event) = self.sign_request(customer, builder, how);
        self.publish(event);
        job
    }

    /// Publishes an event on the relay (as any client would) and runs until idle.
    pub fn publish(&mut self, event: Event) -> PublishOutcome {
        let outcome = self.relay.publish(event);
        self.run_until_idle();
        outcome
    }

    /// Hands an event straight to the provider, as if a relay that this network does not
    /// model delivered it (a duplicate from a fifth relay, garbage, a forgery the relay would
    /// have refused), and runs until idle.
    pub fn deliver(&mut self, event: Event) {
        self.handled.push(event.clone());
        self.provider.handle_event(self.now, event);
        self.run_until_idle();
    }

    /// Signs a kind-5 deletion of `job` by `customer` and publishes it; returns it.
    pub fn delete(&mut self, customer: CustomerId, job: EventId) -> Event {
        let keys = self.customers[customer.0].keys.clone();
        self.delete_as(&keys, job)
    }

    /// Signs a kind-5 deletion of `job` by `keys` and publishes it; returns it.
    pub fn delete_as(&mut self, keys: &Keys, job: EventId) -> Event {
        let tags = vec![Tag::event(job)];
        let event = sign(keys, Kind::EventDeletion, tags, "", self.now, &mut self.rng);
        self.publish(event.clone());
        event
    }

    // ---- payments -------------------------------------------------------------------------

    /// A zap receipt for a zap of `amount_msat` from `sender` to the provider, bound to
    /// `bind_to` (a request or a feedback id), issued and signed by `zapper`, dated now.
    /// Not published.
    ///
    /// # Panics
    ///
    /// When the zap request cannot be built.
    pub fn zap_receipt(
        &mut self,
        sender: &Keys,
        bind_to: EventId,
        amount_msat: u64,
        zapper: &TestZapper,
    ) -> Event {
        let request = ZapRequestBuilder::new(self.keys.public_key(), [SIM_RELAY_URL])
            .amount_msat(amount_msat)
            .event(bind_to)
            .sign(sender, self.now, &mut self.rng)
            .unwrap_or_else(|e| panic!("the zap request cannot be built: {e}"));
        let invoice = zapper.invoice_for(&request, amount_msat, self.now, &mut self.rng);
        zapper.receipt(&request, &invoice, self.now, &mut self.rng)
    }

    /// The job's customer zaps `amount_msat` through the trusted zapper, bound to the job's
    /// `payment-required` feedback when there is one, else to the request; the receipt is
    /// published on the relay. Returns it, or `None` when the job was not submitted through
    /// this network.
    pub fn pay_by_zap(&mut self, job: EventId, amount_msat: u64) -> Option<Event> {
        let customer = self.customer_of(&job)?;
        let bind_to = self.payment_request(job).map_or(job, |p| p.feedback);
        let keys = self.customers[customer.0].keys.clone();
        let zapper = self.zapper.clone();
        let receipt = self.zap_receipt(&keys, bind_to, amount_msat, &zapper);
        self.publish(receipt.clone());
        Some(receipt)
    }

    /// The job's customer pays the invoice of its `payment-required` feedback (or, when it
    /// has none yet, the wallet's latest invoice for the job) and the wallet reports the
    /// proof to the provider. Returns the proof and what the provider answered, or `None`
    /// when there is no invoice to pay.
    pub fn pay_by_wallet(
        &mut self,
        job: EventId,
    ) -> Option<(PaymentProof, Result<(), ProviderError>)> {
        let bolt11 = self
            .payment_request(job)
            .and_then(|p| p.bolt11)
            .or_else(|| {
                self.wallet
                    .invoice_for_job(&job)
                    .map(|i| i.invoice.bolt11.clone())
            })?;
        let proof = self.wallet.pay(&bolt11)?;
        let result = self.handle_payment(job, proof);
        Some((proof, result))
    }

    /// Reports a payment proof to the provider as the host's wallet would, and runs until
    /// idle.
    pub fn handle_payment(
        &mut self,
        job: EventId,
        proof: PaymentProof,
    ) -> Result<(), ProviderError> {
        let result = self.provider.handle_payment(self.now, job, proof);
        self.run_until_idle();
        result
    }

    // ---- tasks and invoices (deferred modes) ----------------------------------------------

    /// Runs the pending task of `job` with the network's task and reports its result; `None`
    /// when no task is pending for the job.
    pub fn complete_task(&mut self, job: EventId) -> Option<Result<(), ProviderError>> {
        let index = self.pending_tasks.iter().position(|t| t.job == job)?;
        let request = self.pending_tasks.remove(index);
        let result = (self.task)(&request);
        let answer = self.provider.handle_task_result(self.now, job, result);
        self.run_until_idle();
        Some(answer)
    }

    /// Reports `result` for `job` (its pending task, if any, is done), and runs until idle.
    pub fn finish_task(
        &mut self,
        job: EventId,
        result: Result<TaskOutput, TaskError>,
    ) -> Result<(), ProviderError> {
        self.pending_tasks.retain(|t| t.job != job);
        let answer = self.provider.handle_task_result(self.now, job, result);
        self.run_until_idle();
        answer
    }

    /// Reports partial output of `job`'s task, and runs until idle.
    pub fn task_progress(&mut self, job: EventId, partial: &str) -> Result<(), ProviderError> {
        let answer = self.provider.handle_task_progress(self.now, job, partial);
        self.run_until_idle();
        answer
    }

    /// Answers the pending invoice request of `job` with an invoice from the wallet; `None`
    /// when none is pending.
    pub fn answer_invoice(&mut self, job: EventId) -> Option<Result<(), ProviderError>> {
        let index = self.pending_invoices.iter().position(|i| i.job == job)?;
        let pending = self.pending_invoices.remove(index);
        let answer = self.invoice_now(&pending);
        self.run_until_idle();
        Some(answer)
    }

    /// Answers the pending invoice request of `job` with an error from the Lightning backend;
    /// `None` when none is pending.
    pub fn fail_invoice(
        &mut self,
        job: EventId,
        reason: &str,
    ) -> Option<Result<(), ProviderError>> {
        let index = self.pending_invoices.iter().position(|i| i.job == job)?;
        self.pending_invoices.remove(index);
        let answer = self
            .provider
            .handle_invoice(self.now, job, Err(reason.to_owned()));
        self.run_until_idle();
        Some(answer)
    }

    // ---- reading replies ------------------------------------------------------------------

    /// Reads an event the provider published as its customer would: opens a gift wrap to a
    /// customer of this network, decrypts an encrypted reply, and parses feedback or a
    /// result. `None` for anything else (announcements, heartbeats, ...).
    pub fn read_reply(&self, event: &Event) -> Option<SimReply> {
        let addressee = event
            .tags
            .public_keys()
            .find_map(|pk| self.customers.iter().find(|c| c.keys.public_key() == *pk));
        let keys = addressee.map(|c| &c.keys);
        let kind = event.kind.as_u16();
        let (event, verified) =
            if kind == nip59::GIFT_WRAP_KIND || kind == nip59::EPHEMERAL_GIFT_WRAP_KIND {
                let gift = nip59::unwrap(keys?, event).ok()?;
                (rumor_event(gift.rumor)?, true)
            } else {
                (event.clone(), false)
            };
        let registry = &self.config.registry;
        if registry.is_feedback(event.kind) {
            let parsed = if verified {
                JobFeedback::from_verified_event_with(&event, keys, registry)
            } else {
                JobFeedback::from_event_with(&event, keys, registry)
            };
            parsed.ok().map(SimReply::Feedback)
        } else if registry.is_result(event.kind) {
            let parsed = if verified {
                JobResult::from_verified_event_with(&event, keys, registry)
            } else {
                JobResult::from_event_with(&event, keys, registry)
            };
            parsed.ok().map(SimReply::Result)
        } else {
            None
        }
    }

    /// Every reply the provider published about `job`, read as its customer reads them.
    pub fn replies(&self, job: EventId) -> Vec<SimReply> {
        self.published
            .iter()
            .filter_map(|e| self.read_reply(e))
            .filter(|r| r.job() == job)
            .collect()
    }

    /// Every result published for `job`.
    pub fn results(&self, job: EventId) -> Vec<JobResult> {
        self.replies(job)
            .into_iter()
            .filter_map(|r| match r {
                SimReply::Result(r) => Some(r),
                SimReply::Feedback(_) => None,
            })
            .collect()
    }

    /// Every feedback published for `job`.
    pub fn feedback(&self, job: EventId) -> Vec<JobFeedback> {
        self.replies(job)
            .into_iter()
            .filter_map(|r| match r {
                SimReply::Feedback(f) => Some(f),
                SimReply::Result(_) => None,
            })
            .collect()
    }

    /// The latest `payment-required` feedback for `job`, as its customer sees it.
    pub fn payment_request(&self, job: EventId) -> Option<PaymentRequest> {
        self.feedback(job)
            .into_iter()
            .rev()
            .find(|f| f.status == FeedbackStatus::PaymentRequired)
            .map(|f| PaymentRequest {
                feedback: f.id,
                amount_msat: f.amount.as_ref().map_or(0, |a| a.msat),
                bolt11: f.amount.and_then(|a| a.bolt11),
            })
    }

    /// The events of the relay and of the provider's log as one JSON document: equal for two
    /// runs exactly when they produced byte-identical events.
    pub fn transcript(&self) -> String {
        let mut out = String::new();
        for event in self.relay.events().iter().chain(&self.published) {
            out.push_str(&event.as_json());
            out.push('\n');
        }
        out
    }
}
