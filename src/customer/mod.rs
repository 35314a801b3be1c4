//! The customer: a sans-IO state machine that submits jobs, tracks the providers that answer,
//! and asks the host to pay only when told to.
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
//!         Output::Publish { .. } | Output::Subscribe { .. } | Output::Unsubscribe(_) => {}
//!         Output::PayInvoice { .. } | Output::SendZap { .. } => {}
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
//! provider the job may be answered by (a job addressed to one provider: only that one), and
//! decrypt when they are encrypted.
//!
//! Every NIP-44 nonce, NIP-04 IV, gift-wrap one-time key and timestamp tweak, and every
//! signature's aux data comes from the customer's own CSPRNG, seeded from the operating system
//! in [`Customer::new`] unless [`CustomerConfig::seed`] is deterministic (tests only).
//!
//! Nothing is paid unless the host calls
//! [`Customer::pay`], or the amount is within the configured auto-pay limit.

use std::collections::{BTreeMap, HashMap, VecDeque};

use nostr::{Event, EventId, Filter, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use serde::{Deserialize, Serialize};

use crate::encryption::Scheme;
use crate::nip57::ZapRequestBuilder;
use crate::nip59;
use crate::nip90::{
    FeedbackStatus, JobFeedback, JobRequest, JobRequestBuilder, JobResult, KindRegistry,
};
use crate::rng::{DvmRng, SeedSource};

/// How a request reaches providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// How the customer runs.
#[derive(Debug, Clone)]
pub struct CustomerConfig {
    /// Relays to publish requests on and to ask providers to answer on.
    pub relays: Vec<String>,
    /// Pay payment requests up to this many millisats without asking (`None`: always ask).
    pub auto_pay_limit_msat: Option<u64>,
    /// Seconds after submission when a job with no result is given up.
    pub timeout_secs: u64,
    /// The request/result/feedback kind triples.
    pub registry: KindRegistry,
    /// Where the customer's CSPRNG (nonces, IVs, one-time keys, signature aux data) gets its
    /// seed: the operating system by default, drawn anew by every `Customer::new`; a fixed
    /// seed ([`SeedSource::Deterministic`]) only for reproducible tests.
    pub seed: SeedSource,
}

impl CustomerConfig {
    /// Defaults: these relays, no auto-pay, a 10-minute timeout.
    pub fn new<S: Into<String>>(relays: impl IntoIterator<Item = S>) -> Self {
        Self {
            relays: relays.into_iter().map(Into::into).collect(),
            auto_pay_limit_msat: None,
            timeout_secs: 600,
            registry: KindRegistry::nip90(),
            seed: SeedSource::OperatingSystem,
        }
    }
}

/// What the customer asks its host to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Publish this event on these relays.
    Publish {
        /// The event.
        event: Event,
        /// Where.
        relays: Vec<String>,
    },
    /// Open or replace subscription `id`.
    Subscribe {
        /// The id.
        id: String,
        /// The filter.
        filter: Filter,
    },
    /// Close subscription `id`.
    Unsubscribe(String),
    /// Pay this BOLT11 invoice with the host's wallet.
    PayInvoice {
        /// The job.
        job: EventId,
        /// The provider asking.
        provider: PublicKey,
        /// The invoice.
        bolt11: String,
        /// Its amount, in millisats.
        amount_msat: u64,
    },
    /// Send this signed zap request to the provider's LNURL callback and pay the invoice it
    /// returns (NIP-57 Appendix B).
    SendZap {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The signed kind 9734 zap request, bound to the provider's feedback.
        zap_request: Event,
        /// The amount, in millisats.
        amount_msat: u64,
    },
    /// Something for the application.
    Notify(Notification),
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notification {
    /// A provider sent feedback.
    Feedback {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// Its status.
        status: FeedbackStatus,
        /// The extra information of the status tag.
        info: Option<String>,
    },
    /// A provider asks to be paid before going on (or to release the result).
    PaymentRequested {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The amount, in millisats.
        amount_msat: u64,
        /// The invoice, if it sent one.
        bolt11: Option<String>,
    },
    /// A partial result.
    Partial {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The sample.
        content: String,
    },
    /// A result, checked and decrypted.
    Result {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The result's content.
        content: String,
        /// The result event's id (for zapping it, for instance).
        result_id: EventId,
    },
    /// A provider reported an error.
    Failed {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// What it said.
        reason: String,
    },
    /// The job got no result before its timeout.
    TimedOut {
        /// The job.
        job: EventId,
    },
    /// An event was not counted as an answer.
    Refused {
        /// The event.
        event: EventId,
        /// Why.
        reason: String,
    },
}

/// What the host did wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be built.
    #[error("cannot build the request: {0}")]
    Build(String),
    /// No job has this id.
    #[error("no job {0}")]
    UnknownJob(EventId),
    /// This provider asked for no payment on this job.
    #[error("provider {provider} asked for no payment on job {job}")]
    NothingToPay {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
    },
}

/// What one provider said about one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderAnswer {
    /// The last status it sent.
    pub status: Option<FeedbackStatus>,
    /// Its pending payment request: amount, invoice, and the feedback event to zap.
    pub payment: Option<(u64, Option<String>, EventId)>,
    /// Whether we asked the host to pay it.
    pub paid: bool,
    /// Its result, if any.
    pub result: Option<String>,
}

/// One submitted job.
#[derive(Debug, Clone)]
struct Job {
    request: JobRequest,
    delivery: Delivery,
    answers: BTreeMap<PublicKey, ProviderAnswer>,
    deadline: Timestamp,
    done: bool,
}

/// A Data Vending Machine customer, sans IO. See the [module docs](self).
pub struct Customer {
    keys: Keys,
    config: CustomerConfig,
    rng: DvmRng,
    jobs: HashMap<EventId, Job>,
    outbox: VecDeque<Output>,
}

impl Customer {
    /// A customer with `keys`. Its first output subscribes to gift wraps addressed to it.
    pub fn new(keys: Keys, config: CustomerConfig, now: Timestamp) -> Self {
        let rng = DvmRng::from_source(&config.seed);
        let mut customer = Self {
            keys,
            config,
            rng,
            jobs: HashMap::new(),
            outbox: VecDeque::new(),
        };
        customer.outbox.push_back(Output::Subscribe {
            id: "dvm-customer-inbox".into(),
            filter: Filter::new()
                .kinds([
                    Kind::from(nip59::GIFT_WRAP_KIND),
                    Kind::from(nip59::EPHEMERAL_GIFT_WRAP_KIND),
                ])
                .pubkey(customer.keys.public_key())
                .since(Timestamp::from(
                    now.as_secs().saturating_sub(nip59::MAX_TIMESTAMP_TWEAK),
                )),
        });
        customer
    }

    /// The customer's public key.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// What each provider said about a job so far.
    pub fn answers(&self, job: &EventId) -> Option<&BTreeMap<PublicKey, ProviderAnswer>> {
        self.jobs.get(job).map(|j| &j.answers)
    }

    /// The next thing for the host to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.jobs
            .values()
            .filter(|j| !j.done)
            .map(|j| j.deadline)
            .min()
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
        if let Delivery::Encrypted(_, scheme) = delivery {
            builder = builder.encrypt(scheme);
        }
        let event = builder
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| Error::Build(e.to_string()))?;
        let request =
            JobRequest::from_verified_event_with(&event, Some(&self.keys), &self.config.registry)
                .map_err(|e| Error::Build(e.to_string()))?;
        let id = event.id;
        let published = match delivery {
            Delivery::GiftWrap(provider) => nip59::gift_wrap(
                &self.keys,
                &provider,
                UnsignedEvent::from(event),
                now,
                &mut self.rng,
            )
            .map_err(|e| Error::Build(e.to_string()))?,
            _ => event,
        };
        self.outbox.push_back(Output::Subscribe {
            id: sub_id(&id),
            filter: Filter::new()
                .kinds([request.kinds.result, request.kinds.feedback])
                .event(id)
                .pubkey(self.keys.public_key()),
        });
        self.outbox.push_back(Output::Publish {
            event: published,
            relays: self.config.relays.clone(),
        });
        self.jobs.insert(
            id,
            Job {
                request,
                delivery,
                answers: BTreeMap::new(),
                deadline: Timestamp::from(now.as_secs().saturating_add(self.config.timeout_secs)),
                done: false,
            },
        );
        Ok(id)
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
        self.on_answer(now, event, true);
    }

    fn on_answer(&mut self, now: Timestamp, event: Event, verify: bool) {
        let _ = now;
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
        let registry = self.config.registry.clone();
        if event.kind == job.request.kinds.feedback {
            match JobFeedback::from_verified_event_with(&event, Some(&self.keys), &registry) {
                Ok(fb) if fb.answers(&job.request) => self.on_feedback(job_id, provider, fb),
                Ok(_) => self.refuse(event.id, "feedback for another job".into()),
                Err(e) => self.refuse(event.id, format!("feedback: {e}")),
            }
        } else if event.kind == job.request.kinds.result {
            match JobResult::from_verified_event_with(&event, Some(&self.keys), &registry) {
                Ok(r) if r.answers(&job.request) && request_tag_matches(&r, &job_id) => {
                    if r.encrypted.is_some_and(|e| !e.decrypted) {
                        self.refuse(event.id, "result could not be decrypted".into());
                    } else {
                        self.on_result(job_id, provider, r);
                    }
                }
                Ok(_) => self.refuse(event.id, "result for another job".into()),
                Err(e) => self.refuse(event.id, format!("result: {e}")),
            }
        }
    }

    fn on_feedback(&mut self, job_id: EventId, provider: PublicKey, fb: JobFeedback) {
        let auto_limit = self.config.auto_pay_limit_msat;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let answer = job.answers.entry(provider).or_default();
        answer.status = Some(fb.status.clone());
        let mut notes = vec![Notification::Feedback {
            job: job_id,
            provider,
            status: fb.status.clone(),
            info: fb.extra_info.clone(),
        }];
        match &fb.status {
            FeedbackStatus::PaymentRequired => {
                if let Some(amount) = &fb.amount {
                    answer.payment = Some((amount.msat, amount.bolt11.clone(), fb.id));
                    notes.push(Notification::PaymentRequested {
                        job: job_id,
                        provider,
                        amount_msat: amount.msat,
                        bolt11: amount.bolt11.clone(),
                    });
                }
            }
            FeedbackStatus::Partial if !fb.content.is_empty() => {
                notes.push(Notification::Partial {
                    job: job_id,
                    provider,
                    content: fb.content.clone(),
                })
            }
            FeedbackStatus::Error => notes.push(Notification::Failed {
                job: job_id,
                provider,
                reason: fb.extra_info.clone().unwrap_or_default(),
            }),
            _ => {}
        }
        for n in notes {
            self.outbox.push_back(Output::Notify(n));
        }
        // Auto-pay only an invoice this very feedback carries, within the limit.
        let auto = match (&fb.status, &fb.amount, auto_limit) {
            (FeedbackStatus::PaymentRequired, Some(amount), Some(limit)) => {
                amount.bolt11.is_some() && amount.msat <= limit
            }
            _ => false,
        };
        if auto {
            let _ = self.pay(job_id, provider);
        }
    }

    fn on_result(&mut self, job_id: EventId, provider: PublicKey, result: JobResult) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let answer = job.answers.entry(provider).or_default();
        if answer.result.is_some() {
            return;
        }
        answer.result = Some(result.content.clone());
        job.done = true;
        self.outbox.push_back(Output::Notify(Notification::Result {
            job: job_id,
            provider,
            content: result.content,
            result_id: result.id,
        }));
    }

    fn refuse(&mut self, event: EventId, reason: String) {
        self.outbox
            .push_back(Output::Notify(Notification::Refused { event, reason }));
    }

    /// Pays `provider`'s payment request on `job` with its invoice.
    pub fn pay(&mut self, job: EventId, provider: PublicKey) -> Result<(), Error> {
        let j = self.jobs.get_mut(&job).ok_or(Error::UnknownJob(job))?;
        let answer = j
            .answers
            .get_mut(&provider)
            .ok_or(Error::NothingToPay { job, provider })?;
        let Some((amount_msat, Some(bolt11), _)) = answer.payment.clone() else {
            return Err(Error::NothingToPay { job, provider });
        };
        if answer.paid {
            return Ok(());
        }
        answer.paid = true;
        self.outbox.push_back(Output::PayInvoice {
            job,
            provider,
            bolt11,
            amount_msat,
        });
        Ok(())
    }

    /// Pays `provider`'s payment request on `job` with a zap bound to its feedback: a signed
    /// zap request for the host to send to the provider's LNURL callback.
    pub fn zap(&mut self, now: Timestamp, job: EventId, provider: PublicKey) -> Result<(), Error> {
        let j = self.jobs.get_mut(&job).ok_or(Error::UnknownJob(job))?;
        let answer = j
            .answers
            .get_mut(&provider)
            .ok_or(Error::NothingToPay { job, provider })?;
        let Some((amount_msat, _, feedback)) = answer.payment.clone() else {
            return Err(Error::NothingToPay { job, provider });
        };
        answer.paid = true;
        let zap_request = ZapRequestBuilder::new(provider, self.config.relays.clone())
            .amount_msat(amount_msat)
            .event(feedback)
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| Error::Build(e.to_string()))?;
        self.outbox.push_back(Output::SendZap {
            job,
            provider,
            zap_request,
            amount_msat,
        });
        Ok(())
    }

    /// Cancels a job: publishes a kind-5 deletion of the request and stops listening.
    pub fn cancel(&mut self, now: Timestamp, job: EventId) -> Result<(), Error> {
        let j = self.jobs.get_mut(&job).ok_or(Error::UnknownJob(job))?;
        j.done = true;
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
        self.outbox.push_back(Output::Publish {
            event,
            relays: self.config.relays.clone(),
        });
        self.outbox.push_back(Output::Unsubscribe(sub_id(&job)));
        Ok(())
    }

    /// Gives up on jobs past their timeout.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mut due: Vec<EventId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.done && j.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort();
        for id in due {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.done = true;
            }
            self.outbox.push_back(Output::Unsubscribe(sub_id(&id)));
            self.outbox
                .push_back(Output::Notify(Notification::TimedOut { job: id }));
        }
    }
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
