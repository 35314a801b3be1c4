//! How a provider runs: kinds, payment policy, admission limits, timers.

use std::collections::BTreeSet;
use std::sync::Arc;

use lightning_invoice::Currency;
use nostr::{Kind, PublicKey};

use crate::nip89::HandlerMetadata;
use crate::nip90::KindRegistry;
use crate::rng::SeedSource;
use crate::task::{FreePricing, Pricing};

/// When the customer pays, relative to the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PaymentPolicy {
    /// Priced jobs send `payment-required` with an invoice first; work starts only after a
    /// verified zap receipt or a wallet proof for that invoice.
    PayFirst,
    /// Work starts at once; the result is published as soon as it is ready, then
    /// `payment-required` feedback with the amount and an invoice. The first verified payment
    /// (the invoice, or a zap of the result, of that feedback or of the request) is recorded;
    /// later ones are handed back as [`Output::Refund`](super::Output::Refund). For trusted or
    /// low-value work.
    PayAfterResult,
    /// Work starts at once; when done, the result is built and signed but held, the task's
    /// sample (if any) goes out as `partial` feedback with `payment-required`, and the held
    /// result is released after a verified payment. Nothing else the task reports as
    /// progress is published before payment.
    PartialThenPay,
}

/// Who may submit jobs and how much, so memory stays bounded under a flood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// When set, only these customers are served.
    pub allow: Option<BTreeSet<PublicKey>>,
    /// These customers are never served.
    pub deny: BTreeSet<PublicKey>,
    /// Per customer: at most `max_requests` admitted in any `window_secs` (`None`: no limit).
    /// A per-key limit cannot stop a flood from fresh keys, which cost nothing to make:
    /// [`global_rate_limit`](Self::global_rate_limit) and the caps below do.
    pub rate_limit: Option<RateLimit>,
    /// All customers together: at most `max_requests` requests become jobs in any
    /// `window_secs` (`None`: no limit). Default 6,000 a minute (100 a second).
    pub global_rate_limit: Option<RateLimit>,
    /// All customers together: at most `max_requests` invoices asked of the Lightning backend
    /// in any `window_secs`, so a flood of priced requests from throw-away keys cannot make
    /// the host's node create invoices without bound (`None`: no limit). A priced request
    /// beyond it is refused with `error` feedback. Default 120 a minute. Not counted under
    /// [`ProviderConfig::zaps_only`], which asks for no invoice.
    pub invoice_rate_limit: Option<RateLimit>,
    /// The most jobs waiting to be paid before any work (pay-first: an invoice being made or
    /// `payment-required` sent). When a new one would exceed it, the oldest unpaid job
    /// expires (with `error` feedback) to make room, so unpaid requests cannot hold every
    /// live slot. Default 250, a quarter of `max_live_jobs`.
    pub max_unpaid_jobs: usize,
    /// The most spent receipts and payment hashes the replay ledger holds. When it is full,
    /// priced requests are refused ([`RejectReason::AtCapacity`](super::RejectReason)) until
    /// entries expire: a payment is never forgotten to make room. Default 100,000.
    pub max_ledger_entries: usize,
    /// The most jobs that are not terminal at once; requests beyond it are dropped.
    pub max_live_jobs: usize,
    /// The most jobs kept in total, terminal ones included (kept for deduplication and
    /// late payments until they age out); the oldest terminal jobs are dropped first. A
    /// dropped job's id is remembered until its request turns stale (at most `max_jobs` ids):
    /// when that memory is full too, new requests are refused
    /// ([`RejectReason::AtCapacity`](super::RejectReason)) rather than risk running a job
    /// twice. When persisting by updates, an ended job is kept as a summary (under 1 KB; see
    /// [`persist`](super::persist)).
    pub max_jobs: usize,
    /// The largest request accepted: content plus tag values, in bytes.
    pub max_request_bytes: usize,
    /// The NIP-13 difficulty (leading zero bits of the id) a request must have; 0 for none.
    /// Gift-wrapped requests must have it on the wrap's id.
    pub min_pow: u8,
    /// Refused requests told per customer a minute (`error` feedback saying why); 0 tells
    /// none. Default 3.
    pub refusals_told_per_customer: u32,
    /// Refused requests told a minute in all; 0 tells none. Default 60.
    pub refusals_told_per_minute: u32,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            allow: None,
            deny: BTreeSet::new(),
            rate_limit: Some(RateLimit {
                max_requests: 30,
                window_secs: 60,
            }),
            global_rate_limit: Some(RateLimit {
                max_requests: 6_000,
                window_secs: 60,
            }),
            invoice_rate_limit: Some(RateLimit {
                max_requests: 120,
                window_secs: 60,
            }),
            max_unpaid_jobs: 250,
            max_ledger_entries: 100_000,
            max_live_jobs: 1_000,
            max_jobs: 10_000,
            max_request_bytes: 64 * 1024,
            min_pow: 0,
            refusals_told_per_customer: 3,
            refusals_told_per_minute: 60,
        }
    }
}

/// A per-customer rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests admitted per window.
    pub max_requests: u32,
    /// The window, in seconds.
    pub window_secs: u64,
}

/// A periodic liveness event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Seconds between heartbeats.
    pub interval_secs: u64,
    /// The event kind (nothing standard exists; 11998 is what some DVMs use).
    pub kind: Kind,
}

/// Everything a [`Provider`](super::Provider) needs to know besides its keys.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The job request kinds served.
    pub kinds: Vec<Kind>,
    /// The request/result/feedback kind triples (NIP-90's `+1000` by default).
    pub registry: KindRegistry,
    /// Decides each job's price.
    pub pricing: Arc<dyn Pricing>,
    /// When priced jobs are paid.
    pub payment: PaymentPolicy,
    /// The zappers (LNURL servers' `nostrPubkey`) whose receipts count as payment. With none,
    /// only wallet proofs through `handle_payment` pay for jobs.
    pub zappers: Vec<PublicKey>,
    /// The provider's LNURL (bech32), checked against zap requests when set.
    pub lnurl: Option<String>,
    /// Priced jobs are paid by zaps alone: the host is asked for no invoice (no
    /// [`Output::RequestInvoice`](super::Output::RequestInvoice)), and `payment-required`
    /// carries the amount without one (NIP-90 makes the invoice optional), for the customer
    /// to zap. For a provider whose only way to be paid is its lightning address; it needs
    /// [`zappers`](Self::zappers), or nobody can pay. Default `false`: every payment request
    /// carries an invoice from the host's backend, and zaps pay too when zappers are trusted.
    pub zaps_only: bool,
    /// The Lightning network invoices must be on.
    pub network: Currency,
    /// Accept receipts whose invoice has no matching description hash (NIP-57 SHOULD).
    pub lenient_description_hash: bool,
    /// Accept receipts that do not carry their zap request's `e`/`a` tags (NIP-57 Appendix E
    /// says they MUST). Default `false`: strict.
    pub lenient_receipt_tags: bool,
    /// Relays to publish on (the provider's own).
    pub relays: Vec<String>,
    /// How many of the relays a request names (its `relays` tag) replies also go to, first
    /// come first (NIP-90 says a provider SHOULD answer there). Default 0: none, since they
    /// are URLs a stranger chose, and a host that follows them connects wherever it is told.
    /// The runtime sets it from its `RequestRelays` policy, and filters the URLs.
    pub max_request_relays: usize,
    /// Admission limits.
    pub admission: Admission,
    /// Start admitted jobs at once (`true`), or wait for the host's `accept`.
    pub auto_accept: bool,
    /// Without automatic acceptance: seconds the host has to `accept` or `reject` a job;
    /// then it expires, with `error` feedback. Default 600.
    pub accept_timeout_secs: u64,
    /// Send `processing` feedback when a task starts.
    pub processing_feedback: bool,
    /// Send `success` feedback after the result.
    pub success_feedback: bool,
    /// Seconds a `payment-required` job waits for payment. The invoice is asked for with an
    /// expiry of this plus `invoice_timeout_secs`, and the window ends at the invoice's own
    /// expiry when that is earlier. A payment seen after the window closed never starts work:
    /// it is handed back as [`Output::Refund`](super::Output::Refund).
    pub payment_window_secs: u64,
    /// Seconds a task may run before it is cancelled.
    pub run_timeout_secs: u64,
    /// Seconds a job waits for the result of a job it takes as input.
    pub input_wait_secs: u64,
    /// Providers whose results a chained job (`i <id> job`) takes as input, besides this
    /// provider's own. Default: none.
    pub trusted_input_providers: Vec<PublicKey>,
    /// Also take as input a result from a provider the customer named (`p` tag) in the
    /// dependency's own request, proven by that request's signature (the result's `request`
    /// tag must hold it, signed by the chained job's customer). Default: `true`.
    pub inputs_from_named_providers: bool,
    /// Seconds the host's Lightning backend has to answer an invoice request.
    pub invoice_timeout_secs: u64,
    /// Seconds a terminal job is kept (for deduplication and late payments). A request older
    /// than this is refused as stale, since its job may have been done and dropped.
    pub retention_secs: u64,
    /// Seconds a request (or a gift-wrapped rumor) may be dated in the future; later ones are
    /// refused ([`RejectReason::FutureDated`](super::RejectReason)), since a request that
    /// never turns stale could be replayed forever. Default 300.
    pub max_future_skew_secs: u64,
    /// The least time, in seconds, a spent receipt or payment hash stays in the replay ledger
    /// after it paid: at least the longest expiry of the invoices it could come from. It also
    /// stays until its job's request is stale. Default 86,400 (a day).
    pub spent_retention_secs: u64,
    /// What the Lightning backend can invoice: prices are rounded up to a multiple of this
    /// many millisats before the bid check, and the `amount` tag, the notifications and the
    /// ledger carry the rounded amount. Default 1,000 (whole sats, what LNbits and most
    /// wallet APIs take); 1 for a backend that invoices millisats.
    pub invoice_unit_msat: u64,
    /// How far back, in seconds, the request subscription reaches on start.
    pub lookback_secs: u64,
    /// NIP-89 handler information to announce (`announce`), if any.
    pub announcement: Option<HandlerMetadata>,
    /// The NIP-89 `d` identifier of the announcement.
    pub announcement_id: String,
    /// Seconds between publications of the announcement once `announce` was called (at
    /// least 60; `None`: only when asked). Default a day.
    pub announce_interval_secs: Option<u64>,
    /// A periodic liveness event, if any.
    pub heartbeat: Option<Heartbeat>,
    /// Where the provider's CSPRNG (nonces, IVs, one-time keys, signature aux data) gets its
    /// seed: the operating system by default, drawn anew by every `Provider::new` and mixed in
    /// again by every `restore`; a fixed seed only for reproducible tests
    /// ([`deterministic_seed`](Self::deterministic_seed)).
    pub seed: SeedSource,
    /// Whether NIP-44 replies (encrypted results and feedback, gift wraps) may use the
    /// extended length prefix for plaintexts over 65,535 bytes. Off by default: most readers
    /// (rust-nostr, nostr-tools, the reference Python framework) refuse it, so a reply that
    /// does not fit fails the job with `error` feedback naming the limit instead of reaching
    /// the customer unreadable. Turn it on only for customers known to read it.
    pub nip44_extended_prefix: bool,
    /// The provider is one process of a fleet (several processes with the same keys, the
    /// same relays and one database): each admitted job is claimed first
    /// ([`Output::ClaimJob`](super::Output::ClaimJob)), and only the process that wins the
    /// claim prices, invoices, runs and answers it. Default `false` (one process: no
    /// claims). The bundled runtime sets it when its record store is shared.
    pub claim_jobs: bool,
}

impl ProviderConfig {
    /// A free provider of `kinds`, pay-first when priced, with default limits and timers.
    pub fn new(kinds: impl IntoIterator<Item = Kind>) -> Self {
        Self {
            kinds: kinds.into_iter().collect(),
            registry: KindRegistry::nip90(),
            pricing: Arc::new(FreePricing),
            payment: PaymentPolicy::PayFirst,
            zappers: Vec::new(),
            lnurl: None,
            zaps_only: false,
            network: Currency::Bitcoin,
            lenient_description_hash: false,
            lenient_receipt_tags: false,
            relays: Vec::new(),
            max_request_relays: 0,
            admission: Admission::default(),
            auto_accept: true,
            accept_timeout_secs: 600,
            processing_feedback: true,
            success_feedback: false,
            payment_window_secs: 600,
            run_timeout_secs: 300,
            input_wait_secs: 600,
            trusted_input_providers: Vec::new(),
            inputs_from_named_providers: true,
            invoice_timeout_secs: 60,
            retention_secs: 3_600,
            max_future_skew_secs: 300,
            spent_retention_secs: 86_400,
            invoice_unit_msat: 1_000,
            lookback_secs: 60,
            announcement: None,
            announcement_id: "nostr-dvm".into(),
            announce_interval_secs: Some(86_400),
            heartbeat: None,
            seed: SeedSource::OperatingSystem,
            nip44_extended_prefix: false,
            claim_jobs: false,
        }
    }

    /// Sets the pricing hook.
    pub fn pricing(mut self, pricing: impl Pricing + 'static) -> Self {
        self.pricing = Arc::new(pricing);
        self
    }

    /// Sets the payment policy.
    pub fn payment(mut self, policy: PaymentPolicy) -> Self {
        self.payment = policy;
        self
    }

    /// Trusts these zappers' receipts.
    pub fn zappers(mut self, zappers: impl IntoIterator<Item = PublicKey>) -> Self {
        self.zappers = zappers.into_iter().collect();
        self
    }

    /// Sets the relays to publish on.
    pub fn relays<S: Into<String>>(mut self, relays: impl IntoIterator<Item = S>) -> Self {
        self.relays = relays.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the admission limits.
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Makes the provider's randomness reproducible from `seed`: for tests and simulations
    /// only, since anyone who knows the seed can predict its nonces and one-time keys.
    pub fn deterministic_seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = SeedSource::Deterministic(seed);
        self
    }

    /// Sets the NIP-89 announcement.
    pub fn announcement(mut self, metadata: HandlerMetadata) -> Self {
        self.announcement = Some(metadata);
        self
    }

    /// Whether `kind` is one of the request kinds served.
    pub fn serves(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

impl core::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kinds", &self.kinds)
            .field("payment", &self.payment)
            .field("zappers", &self.zappers)
            .field("zaps_only", &self.zaps_only)
            .field("claim_jobs", &self.claim_jobs)
            .field("admission", &self.admission)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}
