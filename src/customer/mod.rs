//! The customer: a sans-IO state machine that submits jobs, tracks the providers that answer,
//! and pays only what it checked, within a budget per job.
//!
//! ```
//! use nostr_dvm::customer::{Customer, CustomerConfig, Delivery, Output};
//! use nostr_dvm::nip90::{JobInput, JobRequest};
//! use nostr_dvm::nostr::{Keys, Kind, Timestamp};
//!
//! let keys = Keys::parse("0000000000000000000000000000000000000000000000000000000000000004")?;
//! let now = Timestamp::from(1_700_000_000);
//! let mut customer = Customer::new(keys, CustomerConfig::new(["wss://relay.example"]), now);
//! let request = JobRequest::builder(Kind::from(5050)).input(JobInput::text("Hello?"));
//! let job = customer.submit(now, request, Delivery::Public)?;
//! while let Some(output) = customer.poll_output() {
//!     match output {
//!         Output::Relay(_) => {} // a RelayCommand: publish, subscribe, unsubscribe
//!         Output::PayInvoice { .. } | Output::SendZap { .. } | Output::LookupPayment { .. } => {}
//!         Output::Notify(_) => {}
//!     }
//! }
//! # let _ = job;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What counts as an answer
//!
//! Feedback and results are refused ([`Notification::Refused`]) unless they are validly
//! signed (or come inside a valid gift wrap), answer one of our jobs (`e` tag, the right
//! kind, our key in `p`, and a `request` tag, when present, naming the same job), come from a
//! provider the job may be answered by (a job addressed to one provider: only that one), use
//! the request's scheme (an encrypted job's answers encrypted with its scheme, a plaintext
//! job's in plaintext), and decrypt when they are encrypted. At most
//! [`CustomerConfig::max_answers_per_job`] providers are heard per job. An event already
//! counted (the same id, delivered again) is ignored. Once a result is accepted, only its
//! provider is heard, and only until the job is done: when that provider is paid (or being
//! paid), or when [`CustomerConfig::payment_after_result_secs`] have passed (a provider paid
//! after the result asks for it once the result is out). Once a job is done, timed out or
//! cancelled, its answers are ignored; it is forgotten
//! [`CustomerConfig::done_retention_secs`] later.
//!
//! Every NIP-44 nonce, NIP-04 IV, gift-wrap one-time key and timestamp tweak, and every
//! signature's aux data comes from the customer's own CSPRNG, seeded from the operating system
//! in [`Customer::new`] unless [`CustomerConfig::seed`] is deterministic (tests only).
//!
//! # Money
//!
//! Nothing is paid unless the host calls [`Customer::pay`] or [`Customer::zap`], or an
//! auto-pay limit is set. The customer pays what the invoice says, so it reads the invoice
//! ([`check_invoice`]): it must be for the configured network, for exactly the `amount`
//! tag, and not expired; an invoice that fails is never paid ([`Notification::InvoiceRefused`]).
//! Amounts are budgeted per job: each payment commits its amount plus the fee allowance
//! ([`CustomerConfig::max_fee_msat`]) against the auto-pay limit, and its amount (what the
//! provider gets) against the bid, and
//!
//! - auto-pay pays only the job's payee (the provider it is addressed to, or for a public job
//!   the first provider paid or whose result is accepted), once per provider and job, and
//!   only while the job's committed millisats, fees included, stay within the auto-pay limit
//!   and the amounts paid to providers within the bid;
//! - the host's own `pay`/`zap` may go above the auto-pay limit but never pay a provider
//!   more than the bid (the request's `bid` tag, or its second, maximum value when that is
//!   larger), and
//!   never pays a provider twice for a job (`pay` then `zap` is refused) nor hands the same
//!   invoice to the wallet twice.
//!
//! The intent to pay is recorded before [`Output::PayInvoice`] or [`Output::SendZap`] goes
//! out; the host reports the outcome with [`Customer::handle_payment_outcome`]. Persist the
//! customer ([`Customer::snapshot`]) before paying: a restored customer asks the host to look
//! up every payment without an outcome ([`Output::LookupPayment`]), never to pay it again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use nostr::{Event, EventId, Filter, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use serde::{Deserialize, Serialize};

use crate::encryption::Scheme;
use crate::nip44::LengthPrefix;
use crate::nip59;
use crate::nip90::{
    Amount, BuildError, Encryption, FeedbackStatus, JobFeedback, JobRequest, JobRequestBuilder,
    JobResult,
};
use crate::rng::DvmRng;

mod announcements;
mod config;
mod invoice;
mod output;
mod payment;
mod snapshot;

pub use announcements::MAX_ANNOUNCEMENTS;
pub use config::CustomerConfig;
pub use invoice::{check_invoice, CheckedInvoice, InvoiceError};
/// The Lightning networks ([`CustomerConfig::network`]).
pub use lightning_invoice::Currency;
pub use output::{Error, Notification, Output, RelayCommand};
pub use payment::{
    Payment, PaymentOutcome, PaymentRef, PaymentRequest, PaymentState, WalletFailure,
};
pub use snapshot::CustomerSnapshot;

/// The most event ids remembered per job to ignore re-delivered answers.
pub const MAX_SEEN_PER_JOB: usize = 256;

/// How a request reaches providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Public, for any provider of the kind.
    Public,
    /// Public, addressed to one provider (others may still answer; only its answers count).
    To(PublicKey),
    /// Inputs and params encrypted to one provider, with NIP-44 or (for old providers) NIP-04.
    Encrypted(PublicKey, Scheme),
    /// Gift-wrapped (NIP-59) to one provider: relays see neither the customer nor the kind.
    GiftWrap(PublicKey),
}

impl Delivery {
    fn provider(&self) -> Option<PublicKey> {
        match self {
            Delivery::Public => None,
            Delivery::To(p) | Delivery::Encrypted(p, _) | Delivery::GiftWrap(p) => Some(*p),
        }
    }

    /// Why an answer encrypted as `encrypted` does not fit this delivery, if it does not.
    fn scheme_mismatch(&self, encrypted: Option<&Encryption>) -> Option<&'static str> {
        match (self, encrypted) {
            (Delivery::GiftWrap(_), _) => None,
            (Delivery::Encrypted(_, scheme), Some(e)) if e.scheme == *scheme => None,
            (Delivery::Encrypted(..), Some(_)) => {
                Some("answer encrypted with another scheme than the request")
            }
            (Delivery::Encrypted(..), None) => Some("plaintext answer to an encrypted job"),
            (Delivery::Public | Delivery::To(_), Some(_)) => {
                Some("encrypted answer to a plaintext job")
            }
            (Delivery::Public | Delivery::To(_), None) => None,
        }
    }
}

/// What one provider said about one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAnswer {
    /// The last status it sent.
    pub status: Option<FeedbackStatus>,
    /// Its last payment request. What was paid is in [`Customer::payments`].
    pub payment: Option<PaymentRequest>,
    /// Its result, if any.
    pub result: Option<String>,
}

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum JobEnd {
    /// Its result arrived and nothing is pending from that provider.
    Done,
    /// No result before the timeout.
    TimedOut,
    /// The host cancelled it.
    Cancelled,
    /// Its provider's announcement says it does not read the job's scheme.
    Unsupported,
}

/// One submitted job.
#[derive(Debug, Clone)]
struct Job {
    request: JobRequest,
    delivery: Delivery,
    answers: BTreeMap<PublicKey, ProviderAnswer>,
    deadline: Timestamp,
    /// The provider auto-pay may pay: the addressed one, or the first paid or whose result
    /// was accepted.
    payee: Option<PublicKey>,
    /// The provider whose result was accepted, and when.
    result_from: Option<(PublicKey, Timestamp)>,
    ended: Option<(Timestamp, JobEnd)>,
    /// The answers counted, to ignore them when delivered again.
    seen: VecDeque<EventId>,
    /// Its payments (keys of [`Customer::payments`]), in the order they were asked for.
    payments: Vec<PaymentRef>,
}

/// A Data Vending Machine customer, sans IO. See the [module docs](self).
pub struct Customer {
    keys: Keys,
    /// NIP-44 conversation keys with the providers of encrypted jobs, so that encrypting a
    /// request, reading it back and reading each encrypted answer cost one ECDH per provider,
    /// not one each. Bounded by [`CONVERSATION_CACHE`]; not in the snapshot.
    conversations: crate::nip44::ConversationKeyCache,
    config: CustomerConfig,
    rng: DvmRng,
    jobs: HashMap<EventId, Job>,
    payments: BTreeMap<PaymentRef, Payment>,
    outbox: VecDeque<Output>,
    dirty: bool,
    /// What providers announce they read (NIP-89), learned from the events fed to
    /// [`handle_event`](Self::handle_event). Not in the snapshot: asked for again.
    announcements: announcements::Announcements,
    /// The providers whose announcements the announcement subscription asks for.
    announcement_authors: BTreeSet<PublicKey>,
    /// A job ended: the announcement subscription is worked out again at the next poll.
    announcements_stale: bool,
}

/// The subscription to the announcements (NIP-89) of the providers of encrypted and
/// gift-wrapped jobs, while they are not known.
const SUB_ANNOUNCEMENTS: &str = "dvm-customer-announcements";

/// How many NIP-44 conversation keys the customer keeps (with the providers it talks to);
/// about 100 bytes each.
pub const CONVERSATION_CACHE: usize = 256;

/// An empty conversation-key cache for `keys`.
fn conversation_cache(keys: &Keys) -> crate::nip44::ConversationKeyCache {
    crate::nip44::ConversationKeyCache::new(keys.secret_key().clone(), CONVERSATION_CACHE)
}

impl Customer {
    /// A customer with `keys`. Its first output subscribes to gift wraps addressed to it. Its
    /// CSPRNG is seeded as [`CustomerConfig::seed`] says (from the operating system by
    /// default).
    ///
    /// # Panics
    ///
    /// Only when the seed source is the operating system and it has no randomness to give.
    pub fn new(keys: Keys, config: CustomerConfig, now: Timestamp) -> Self {
        let rng = DvmRng::from_source(&config.seed);
        let mut customer = Self {
            conversations: conversation_cache(&keys),
            keys,
            config,
            rng,
            jobs: HashMap::new(),
            payments: BTreeMap::new(),
            outbox: VecDeque::new(),
            dirty: true,
            announcements: Default::default(),
            announcement_authors: BTreeSet::new(),
            announcements_stale: false,
        };
        customer.subscribe_inbox(now);
        customer
    }

    fn subscribe_inbox(&mut self, since: Timestamp) {
        self.outbox
            .push_back(Output::Relay(RelayCommand::Subscribe {
                id: "dvm-customer-inbox".into(),
                filter: Filter::new()
                    .kinds([
                        Kind::from(nip59::GIFT_WRAP_KIND),
                        Kind::from(nip59::EPHEMERAL_GIFT_WRAP_KIND),
                    ])
                    .pubkey(self.keys.public_key())
                    .since(Timestamp::from(
                        since.as_secs().saturating_sub(nip59::MAX_TIMESTAMP_TWEAK),
                    )),
            }));
    }

    /// The customer's public key.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// What each provider said about a job so far.
    pub fn answers(&self, job: &EventId) -> Option<&BTreeMap<PublicKey, ProviderAnswer>> {
        self.jobs.get(job).map(|j| &j.answers)
    }

    /// Whether a job has ended (done, timed out or cancelled); `None` for a job the customer
    /// does not know (never submitted, or forgotten after
    /// [`done_retention_secs`](CustomerConfig::done_retention_secs)).
    pub fn is_ended(&self, job: &EventId) -> Option<bool> {
        self.jobs.get(job).map(|j| j.ended.is_some())
    }

    /// How many jobs the customer keeps (live and ended, not yet forgotten).
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Whether the state changed since the last [`snapshot`](Self::snapshot): save it before
    /// acting on a [`Output::PayInvoice`] or [`Output::SendZap`].
    pub fn needs_persistence(&self) -> bool {
        self.dirty
    }

    /// The next thing for the host to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.announcements_stale {
            self.announcements_stale = false;
            self.subscribe_announcements();
        }
        self.outbox.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: a live job's deadline, or
    /// when an ended job is to be forgotten.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.jobs
            .iter()
            .filter_map(|(id, j)| match j.ended {
                None => Some(self.live_until(j)),
                Some((at, _)) if !self.in_flight(id) => Some(Timestamp::from(
                    at.as_secs().saturating_add(self.config.done_retention_secs),
                )),
                Some(_) => None,
            })
            .min()
    }

    /// When a job that has not ended ends: its deadline, or once it has its result, when the
    /// window for a payment asked after the result closes.
    fn live_until(&self, job: &Job) -> Timestamp {
        match job.result_from {
            Some((_, at)) => Timestamp::from(
                at.as_secs()
                    .saturating_add(self.config.payment_after_result_secs),
            ),
            None => job.deadline,
        }
    }

    fn in_flight(&self, job: &EventId) -> bool {
        self.job_payments(job)
            .any(|p| p.state == PaymentState::InFlight)
    }

    /// A job's payments.
    fn job_payments(&self, job: &EventId) -> impl Iterator<Item = &Payment> {
        self.jobs
            .get(job)
            .into_iter()
            .flat_map(|j| j.payments.iter())
            .filter_map(|r| self.payments.get(r))
    }

    /// The NIP-44 conversation-key cache's `(hits, misses)`: each miss cost one ECDH.
    pub fn conversation_cache_stats(&self) -> (u64, u64) {
        self.conversations.stats()
    }

    /// Signs and publishes a request built with [`JobRequest::builder`], delivered as asked.
    /// Returns the job id (for a gift-wrapped request, the rumor's id).
    pub fn submit(
        &mut self,
        now: Timestamp,
        request: JobRequestBuilder,
        delivery: Delivery,
    ) -> Result<EventId, Error> {
        let mut builder = request.relays(self.config.relays.clone());
        if let Some(provider) = delivery.provider() {
            builder = builder.provider(provider);
        }
        if let Delivery::Encrypted(provider, scheme) = delivery {
            builder = builder.encrypt(scheme);
            if scheme == crate::encryption::Scheme::Nip44 {
                let key = self
                    .conversations
                    .get(&provider)
                    .map_err(|e| Error::Build(e.to_string()))?;
                builder = builder.conversation_key(key);
            }
        }
        let prefix = LengthPrefix::extended_if(self.config.nip44_extended_prefix);
        let event = builder
            .nip44_length_prefix(prefix)
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| match e {
                BuildError::Nip44(e) => too_long(e),
                e => Error::Build(e.to_string()),
            })?;
        let request = JobRequest::from_verified_event_cached(
            &event,
            &mut self.conversations,
            &self.config.registry,
        )
        .map_err(|e| Error::Build(e.to_string()))?;
        let id = event.id;
        if self.jobs.contains_key(&id) {
            return Err(Error::DuplicateJob(id));
        }
        if let (Some(provider), Some(what)) = (
            delivery.provider(),
            self.announcements.refused(delivery, request.kind),
        ) {
            return Err(Error::Unsupported { provider, what });
        }
        let published = match delivery {
            Delivery::GiftWrap(provider) => nip59::gift_wrap_with(
                &self.keys,
                &provider,
                UnsignedEvent::from(event),
                nip59::WrapOptions::new().length_prefix(prefix),
                [],
                now,
                &mut self.rng,
            )
            .map_err(|e| match e {
                nip59::Error::Encryption(e) => too_long(e),
                e => Error::Build(e.to_string()),
            })?,
            _ => event,
        };
        self.outbox
            .push_back(job_subscription(&request, &self.keys));
        self.outbox.push_back(Output::Relay(RelayCommand::Publish {
            event: published,
            relays: self.config.relays.clone(),
        }));
        self.jobs.insert(
            id,
            Job {
                request,
                delivery,
                answers: BTreeMap::new(),
                deadline: Timestamp::from(now.as_secs().saturating_add(self.config.timeout_secs)),
                payee: delivery.provider(),
                result_from: None,
                ended: None,
                seen: VecDeque::new(),
                payments: Vec::new(),
            },
        );
        self.dirty = true;
        self.subscribe_announcements();
        Ok(id)
    }

    /// Asks for the announcements of the providers of live encrypted and gift-wrapped jobs
    /// whose announcement for the job's kind is not known, in one subscription; closes it when
    /// there are none. Sent again only when that set changes.
    fn subscribe_announcements(&mut self) {
        let wanted: BTreeSet<PublicKey> = self
            .jobs
            .values()
            .filter(|j| j.ended.is_none())
            .filter(|j| matches!(j.delivery, Delivery::Encrypted(..) | Delivery::GiftWrap(_)))
            .filter_map(|j| j.delivery.provider().map(|p| (p, j.request.kind)))
            .filter(|(p, kind)| !self.announcements.knows(p, *kind))
            .map(|(p, _)| p)
            .collect();
        if wanted == self.announcement_authors {
            return;
        }
        let command = if wanted.is_empty() {
            RelayCommand::Unsubscribe(SUB_ANNOUNCEMENTS.into())
        } else {
            RelayCommand::Subscribe {
                id: SUB_ANNOUNCEMENTS.into(),
                filter: Filter::new()
                    .kind(Kind::from(crate::nip89::HANDLER_INFO_KIND))
                    .authors(wanted.iter().copied()),
            }
        };
        self.outbox.push_back(Output::Relay(command));
        self.announcement_authors = wanted;
    }

    /// Learns a provider's announcement (NIP-89): its live jobs in a scheme it says it does
    /// not read end now, with [`Notification::Unsupported`].
    fn on_announcement(&mut self, now: Timestamp, event: &Event) {
        let Ok(info) = crate::nip89::HandlerInfo::from_event(event) else {
            self.refuse(event.id, "invalid announcement".into());
            return;
        };
        if !self.announcements.learn(&info) {
            return;
        }
        let mut refused: Vec<(Timestamp, EventId, &'static str)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.ended.is_none() && j.delivery.provider() == Some(info.author))
            .filter_map(|(id, j)| {
                let what = self.announcements.refused(j.delivery, j.request.kind)?;
                Some((j.request.created_at, *id, what))
            })
            .collect();
        refused.sort();
        for (_, job, what) in refused {
            self.end(now, job, JobEnd::Unsupported);
            self.outbox
                .push_back(Output::Notify(Notification::Unsupported {
                    job,
                    provider: info.author,
                    what: what.into(),
                }));
        }
        self.subscribe_announcements();
    }

    /// Feeds an event from a relay: feedback, a result, or a gift wrap holding one.
    pub fn handle_event(&mut self, now: Timestamp, event: Event) {
        let kind = event.kind.as_u16();
        if kind == nip59::GIFT_WRAP_KIND || kind == nip59::EPHEMERAL_GIFT_WRAP_KIND {
            match nip59::unwrap(&self.keys, &event) {
                Ok(gift) => {
                    let inner = crate::nip90::rumor_event(&gift.rumor);
                    self.on_answer(now, inner, false);
                }
                Err(e) => self.refuse(event.id, format!("gift wrap: {e}")),
            }
            return;
        }
        if kind == crate::nip89::HANDLER_INFO_KIND {
            self.on_announcement(now, &event);
            return;
        }
        self.on_answer(now, event, true);
    }

    fn on_answer(&mut self, now: Timestamp, event: Event, verify: bool) {
        if verify && !crate::nip01::verify(&event) {
            self.refuse(event.id, "invalid id or signature".into());
            return;
        }
        let Some(job_id) = first_e_tag(&event) else {
            return;
        };
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        if job.ended.is_some() || job.seen.contains(&event.id) {
            // Done, timed out or cancelled; or counted already.
            return;
        }
        let provider = event.pubkey;
        if let Some(only) = job.delivery.provider() {
            if provider != only {
                self.refuse(
                    event.id,
                    "answer from a provider the job was not sent to".into(),
                );
                return;
            }
        }
        if job.delivery == Delivery::GiftWrap(provider) && verify {
            // A gift-wrapped job is answered gift-wrapped: a public answer is someone else's.
            self.refuse(event.id, "public answer to a gift-wrapped job".into());
            return;
        }
        if job.result_from.is_some_and(|(p, _)| p != provider) {
            // Another provider's result was accepted: this one's answers no longer count.
            return;
        }
        if !job.answers.contains_key(&provider)
            && job.answers.len() >= self.config.max_answers_per_job
        {
            self.refuse(
                event.id,
                format!(
                    "more than {} providers answered the job",
                    self.config.max_answers_per_job
                ),
            );
            return;
        }
        let registry = &self.config.registry;
        if event.kind == job.request.kinds.feedback {
            match JobFeedback::from_verified_event_cached(&event, &mut self.conversations, registry)
            {
                Ok(fb) if fb.answers(&job.request) => {
                    if let Some(why) = job.delivery.scheme_mismatch(fb.encrypted.as_ref()) {
                        self.refuse(event.id, why.into());
                    } else if fb.encrypted.is_some_and(|e| !e.decrypted) {
                        self.refuse(event.id, "feedback could not be decrypted".into());
                    } else {
                        self.seen(job_id, event.id);
                        self.on_feedback(now, job_id, provider, fb);
                    }
                }
                Ok(_) => self.refuse(event.id, "feedback for another job".into()),
                Err(e) => self.refuse(event.id, format!("feedback: {e}")),
            }
        } else if event.kind == job.request.kinds.result {
            match JobResult::from_verified_event_cached(&event, &mut self.conversations, registry) {
                Ok(r) if r.answers(&job.request) && request_tag_matches(&r, &job_id) => {
                    if let Some(why) = job.delivery.scheme_mismatch(r.encrypted.as_ref()) {
                        self.refuse(event.id, why.into());
                    } else if r.encrypted.is_some_and(|e| !e.decrypted) {
                        self.refuse(event.id, "result could not be decrypted".into());
                    } else {
                        self.seen(job_id, event.id);
                        self.on_result(now, job_id, provider, r);
                    }
                }
                Ok(_) => self.refuse(event.id, "result for another job".into()),
                Err(e) => self.refuse(event.id, format!("result: {e}")),
            }
        }
    }

    fn seen(&mut self, job: EventId, event: EventId) {
        if let Some(j) = self.jobs.get_mut(&job) {
            if j.seen.len() >= MAX_SEEN_PER_JOB {
                j.seen.pop_front();
            }
            j.seen.push_back(event);
        }
        self.dirty = true;
    }

    fn on_feedback(
        &mut self,
        now: Timestamp,
        job_id: EventId,
        provider: PublicKey,
        fb: JobFeedback,
    ) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let answer = job.answers.entry(provider).or_default();
        answer.status = Some(fb.status.clone());
        self.outbox
            .push_back(Output::Notify(Notification::Feedback {
                job: job_id,
                provider,
                status: fb.status.clone(),
                info: fb.extra_info.clone(),
            }));
        match &fb.status {
            FeedbackStatus::PaymentRequired => {
                if let Some(amount) = &fb.amount {
                    self.on_payment_request(now, job_id, provider, fb.id, amount, false);
                }
            }
            FeedbackStatus::Partial if !fb.content.is_empty() => {
                self.outbox.push_back(Output::Notify(Notification::Partial {
                    job: job_id,
                    provider,
                    content: fb.content.clone(),
                }))
            }
            FeedbackStatus::Error => self.outbox.push_back(Output::Notify(Notification::Failed {
                job: job_id,
                provider,
                reason: fb.extra_info.clone().unwrap_or_default(),
            })),
            _ => {}
        }
    }

    /// Records a payment request (checking its invoice), tells the application, and pays it
    /// if auto-pay allows.
    fn on_payment_request(
        &mut self,
        now: Timestamp,
        job: EventId,
        provider: PublicKey,
        event: EventId,
        amount: &Amount,
        after_result: bool,
    ) {
        if self.paying(job, provider) {
            self.refuse(
                event,
                "payment request from a provider already paid (or being paid) for the job".into(),
            );
            return;
        }
        let invoice = amount
            .bolt11
            .as_deref()
            .map(|b| check_invoice(b, amount.msat, &self.config.network, now));
        let request = PaymentRequest {
            amount_msat: amount.msat,
            bolt11: amount.bolt11.clone(),
            invoice: invoice.clone(),
            event,
            after_result,
        };
        if let Some(answer) = self
            .jobs
            .get_mut(&job)
            .and_then(|j| j.answers.get_mut(&provider))
        {
            answer.payment = Some(request);
        }
        let (amount_msat, bolt11) = match &invoice {
            Some(Ok(checked)) => (checked.amount_msat, amount.bolt11.clone()),
            _ => (amount.msat, None),
        };
        self.outbox
            .push_back(Output::Notify(Notification::PaymentRequested {
                job,
                provider,
                amount_msat,
                bolt11,
            }));
        if let Some(Err(reason)) = invoice {
            self.outbox
                .push_back(Output::Notify(Notification::InvoiceRefused {
                    job,
                    provider,
                    event,
                    reason,
                }));
        }
        self.maybe_auto_pay(now, job, provider);
    }

    fn on_result(
        &mut self,
        now: Timestamp,
        job_id: EventId,
        provider: PublicKey,
        result: JobResult,
    ) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.result_from.is_some() {
            return;
        }
        job.result_from = Some((provider, now));
        if job.payee.is_none() {
            job.payee = Some(provider);
        }
        job.answers.entry(provider).or_default().result = Some(result.content.clone());
        self.outbox.push_back(Output::Notify(Notification::Result {
            job: job_id,
            provider,
            content: result.content,
            result_id: result.id,
        }));
        if let Some(amount) = &result.amount {
            self.on_payment_request(now, job_id, provider, result.id, amount, true);
        }
        self.maybe_done(now, job_id);
    }

    fn refuse(&mut self, event: EventId, reason: String) {
        self.outbox
            .push_back(Output::Notify(Notification::Refused { event, reason }));
    }

    /// Ends a job: stops listening to it; it is forgotten `done_retention_secs` later.
    fn end(&mut self, now: Timestamp, job: EventId, why: JobEnd) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if j.ended.is_some() {
            return;
        }
        j.ended = Some((now, why));
        self.dirty = true;
        self.outbox
            .push_back(Output::Relay(RelayCommand::Unsubscribe(sub_id(&job))));
        if why == JobEnd::TimedOut {
            self.outbox
                .push_back(Output::Notify(Notification::TimedOut { job }));
        }
        // The announcement subscription may shrink: worked out once, at the next poll.
        self.announcements_stale = true;
    }

    /// Cancels a job: publishes a kind-5 deletion of the request and stops listening.
    pub fn cancel(&mut self, now: Timestamp, job: EventId) -> Result<(), Error> {
        let j = self.jobs.get(&job).ok_or(Error::UnknownJob(job))?;
        let kind_tag = j.request.kind.as_u16().to_string();
        let tags = [
            vec!["e".to_owned(), job.to_hex()],
            vec!["k".to_owned(), kind_tag],
        ]
        .into_iter()
        .filter_map(|t| Tag::parse(t).ok())
        .collect::<Vec<_>>();
        let event = UnsignedEvent::new(self.keys.public_key(), now, Kind::EventDeletion, tags, "")
            .sign_with_ctx(nostr::SECP256K1, &mut self.rng, &self.keys)
            .map_err(|e| Error::Build(e.to_string()))?;
        self.outbox.push_back(Output::Relay(RelayCommand::Publish {
            event,
            relays: self.config.relays.clone(),
        }));
        self.dirty = true;
        self.end(now, job, JobEnd::Cancelled);
        Ok(())
    }

    /// Gives up on jobs past their timeout, ends jobs whose window for a payment asked after
    /// the result has closed, and forgets jobs ended more than
    /// `done_retention_secs` ago whose payments all have an outcome.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mut due: Vec<(EventId, bool)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.ended.is_none() && self.live_until(j) <= now)
            .map(|(id, j)| (*id, j.result_from.is_some()))
            .collect();
        due.sort();
        for (id, has_result) in due {
            let why = if has_result {
                JobEnd::Done
            } else {
                JobEnd::TimedOut
            };
            self.end(now, id, why);
        }
        let retention = self.config.done_retention_secs;
        let mut old: Vec<EventId> = self
            .jobs
            .iter()
            .filter(|(id, j)| {
                j.ended
                    .is_some_and(|(at, _)| at.as_secs().saturating_add(retention) <= now.as_secs())
                    && !self.in_flight(id)
            })
            .map(|(id, _)| *id)
            .collect();
        old.sort();
        for id in old {
            if let Some(job) = self.jobs.remove(&id) {
                for reference in job.payments {
                    self.payments.remove(&reference);
                }
            }
            self.dirty = true;
        }
    }
}

/// The subscription to a job's answers.
fn job_subscription(request: &JobRequest, keys: &Keys) -> Output {
    Output::Relay(RelayCommand::Subscribe {
        id: sub_id(&request.id),
        filter: Filter::new()
            .kinds([request.kinds.result, request.kinds.feedback])
            .event(request.id)
            .pubkey(keys.public_key()),
    })
}

fn sub_id(job: &EventId) -> String {
    format!("dvm-job-{}", job.to_hex())
}

fn first_e_tag(event: &Event) -> Option<EventId> {
    event.tags.iter().find_map(|t| match t.as_slice() {
        [name, value, ..] if name == "e" => EventId::from_hex(value).ok(),
        _ => None,
    })
}

/// A NIP-44 error while building a request: a plaintext over the length prefix's limit is
/// [`Error::PlaintextTooLong`], anything else [`Error::Build`].
fn too_long(e: crate::nip44::Error) -> Error {
    match e {
        crate::nip44::Error::MessageTooLong { len, max } => Error::PlaintextTooLong { len, max },
        e => Error::Build(e.to_string()),
    }
}

/// A result's `request` tag, when it holds JSON with an `id`, must name the job.
fn request_tag_matches(result: &JobResult, job: &EventId) -> bool {
    let Some(json) = &result.request_json else {
        return true;
    };
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => match value.get("id").and_then(|v| v.as_str()) {
            Some(id) => EventId::from_hex(id).is_ok_and(|id| id == *job),
            None => true,
        },
        Err(_) => true,
    }
}

/// The providers announcing (NIP-89) that they serve `kind`, with what they support.
pub fn discover<'a>(
    announcements: impl IntoIterator<Item = &'a Event>,
    kind: Kind,
) -> Vec<crate::nip89::HandlerInfo> {
    crate::nip89::providers_for_kind(kind, announcements)
}
