//! A `Customer` driven by an arbitrary sequence of inputs from malicious payees.
//!
//! Each input picks a configuration (auto-pay limit or none, fee allowance, answer cap,
//! retention) and up to 48 actions: submissions (public, addressed, NIP-44, NIP-04 or
//! gift-wrapped; with or without a bid), payment requests and results from any of four
//! provider keys with an `amount` tag and a real BOLT11 invoice the fuzzer shapes (its amount,
//! network, age; in the job's scheme or another; gift-wrapped for a gift-wrapped job), hostile
//! answers (feedback, results and any other kind, with arbitrary tags and content, naming a
//! job or not, signed by a provider, sometimes gift-wrapped to the customer), any string
//! through `Event::from_json`, re-deliveries, the host's own `pay` and `zap`, wallet outcomes
//! (paid with any fee, failed, pending), time jumps and timeouts, cancellations, and crashes
//! (the customer restored from its JSON snapshot, its undrained outputs lost).
//!
//! Invariants, checked after every action:
//! - nothing panics, and the host never errs when it reports what its wallet did;
//! - an invoice is handed to the wallet at most once, and only one that parses, is for the
//!   amount the customer pays, is on mainnet and is unexpired;
//! - a job never pays its providers more than its bid; a job the host never paid by hand
//!   costs at most the auto-pay limit, fees included (nothing without a limit), and pays at
//!   most one provider, the one it was addressed to when it was;
//! - at most one payment per job and provider is paid or under way;
//! - a restored customer pays nothing on its own.
#![no_main]

use std::collections::{BTreeMap, HashMap, HashSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::bolt11::Invoice as ParsedInvoice;
use nostr_dvm::customer::{
    Currency, Customer, CustomerConfig, CustomerSnapshot, Delivery, Output, PaymentOutcome,
    PaymentRef, WalletFailure,
};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip59;
use nostr_dvm::nip90::{
    Encryption, FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult, KindRegistry,
};
use nostr_dvm::nostr::UnsignedEvent;
use nostr_dvm::nostr::{Event, EventId, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp};
use nostr_dvm::relay::RelayCommand;
use nostr_dvm::rng::SeedSource;
use nostr_dvm::testing::{keys_from_seed, InvoiceDescription, InvoiceParams, TestLightningNode};
use rand::rngs::StdRng;
use rand::SeedableRng;

const T0: u64 = 1_760_000_000;
const KIND: u16 = 5050;
const LIMITS: [u64; 3] = [5_000, 20_000, 100_000];
const BIDS: [u64; 3] = [3_000, 10_000, 50_000];
const FEES: [u64; 3] = [0, 500, 1_000];
const KINDS: [u16; 6] = [7000, 6050, 1059, 21059, 31990, 5050];
const PROVIDERS: u8 = 4;
const MAX_ACTIONS: usize = 48;

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u8,
    limit: Option<u8>,
    fee: u8,
    max_answers: u8,
    long_retention: bool,
    actions: Vec<Act>,
}

#[derive(Arbitrary, Debug)]
struct Shape {
    /// The `amount` tag, in msat.
    tag: u32,
    /// The invoice's own amount: the tag's, another, or none.
    amount: Option<Option<u32>>,
    testnet: bool,
    /// Seconds before now the invoice was made (it lasts 600 s).
    age: u16,
    /// No invoice in the tag.
    none: bool,
}

#[derive(Arbitrary, Debug)]
enum Act {
    Submit {
        how: u8,
        bid: Option<u8>,
    },
    /// A payment request (or a result asking for payment) shaped by the fuzzer.
    Ask {
        job: u8,
        provider: u8,
        shape: Shape,
        result: bool,
        other_scheme: bool,
    },
    Result {
        job: u8,
        provider: u8,
        other_scheme: bool,
    },
    Raw {
        kind: u8,
        raw_kind: u16,
        provider: u8,
        tags: Vec<Vec<String>>,
        job: Option<u8>,
        content: String,
        age: i16,
        wrap: bool,
    },
    Json(String),
    Redeliver(u16),
    Pay {
        job: u8,
        provider: u8,
    },
    Zap {
        job: u8,
        provider: u8,
    },
    Outcome {
        pick: u8,
        paid: Option<u32>,
        pending: bool,
    },
    Jump(u16),
    NextTimeout,
    Cancel(u8),
    Crash,
}

/// A payment as the host's wallet knows it.
#[derive(Clone)]
struct WalletPayment {
    job: EventId,
    provider: PublicKey,
    amount_msat: u64,
    max_fee_msat: u64,
    /// `None` while in flight; the fee when paid.
    outcome: Option<Result<u64, ()>>,
}

#[derive(Clone)]
struct JobInfo {
    id: EventId,
    /// The request as providers read it.
    request: JobRequest,
    addressed: Option<PublicKey>,
    gift_wrapped: bool,
    bid: Option<u64>,
}

struct Case {
    customer: Customer,
    config: CustomerConfig,
    keys: Keys,
    now: Timestamp,
    rng: StdRng,
    node: TestLightningNode,
    preimage: u32,
    jobs: Vec<JobInfo>,
    providers: Vec<Keys>,
    events: Vec<Event>,
    handed: HashMap<String, u32>,
    wallet: BTreeMap<PaymentRef, WalletPayment>,
    manual: HashSet<EventId>,
    submitted: u32,
}

impl Case {
    fn new(input: &Input) -> Self {
        let mut config = CustomerConfig::new(["wss://relay.example"]);
        config.auto_pay_limit_msat = input.limit.map(|i| LIMITS[usize::from(i) % LIMITS.len()]);
        config.max_fee_msat = FEES[usize::from(input.fee) % FEES.len()];
        config.max_answers_per_job = usize::from(input.max_answers % 6) + 1;
        config.done_retention_secs = if input.long_retention { 3_600 } else { 60 };
        config.timeout_secs = 1_800;
        config.seed = SeedSource::Deterministic([input.seed; 32]);
        let keys = keys_from_seed(43);
        let now = Timestamp::from(T0);
        let customer = Customer::new(keys.clone(), config.clone(), now);
        let mut case = Self {
            customer,
            config,
            keys,
            now,
            rng: StdRng::seed_from_u64(u64::from(input.seed)),
            node: TestLightningNode::new(44),
            preimage: 0,
            jobs: Vec::new(),
            providers: (0..PROVIDERS).map(|i| keys_from_seed(60 + i)).collect(),
            events: Vec::new(),
            handed: HashMap::new(),
            wallet: BTreeMap::new(),
            manual: HashSet::new(),
            submitted: 0,
        };
        case.drain();
        case
    }

    fn job(&self, pick: u8) -> Option<JobInfo> {
        if self.jobs.is_empty() {
            return None;
        }
        self.jobs.get(usize::from(pick) % self.jobs.len()).cloned()
    }

    fn provider(&self, pick: u8) -> Keys {
        self.providers[usize::from(pick % PROVIDERS)].clone()
    }

    fn invoice(&mut self, shape: &Shape) -> Option<String> {
        if shape.none {
            return None;
        }
        self.preimage += 1;
        let mut preimage = [0u8; 32];
        preimage[..4].copy_from_slice(&self.preimage.to_le_bytes());
        let amount = match shape.amount {
            None => Some(u64::from(shape.tag)),
            Some(other) => other.map(u64::from),
        };
        let node = if shape.testnet {
            self.node.clone().on_network(Currency::BitcoinTestnet)
        } else {
            self.node.clone()
        };
        // An amount of 0 msat makes no invoice; nor does one the library refuses.
        let params = InvoiceParams {
            amount_msat: amount.filter(|a| *a > 0),
            description: InvoiceDescription::Direct("job".into()),
            created_at: Timestamp::from(self.now.as_secs() - u64::from(shape.age)),
            expiry_secs: 600,
            preimage,
        };
        Some(node.invoice(&params).bolt11)
    }

    /// The request of `info` as a provider answering sees it: in the job's scheme, or as one
    /// answering in the other scheme would.
    fn request_as_read(&self, info: &JobInfo, other_scheme: bool) -> JobRequest {
        let mut request = info.request.clone();
        if !other_scheme {
            return request;
        }
        request.encrypted = match request.encrypted {
            Some(_) => None,
            None => Some(Encryption {
                scheme: Scheme::Nip44,
                declared: Some(Scheme::Nip44),
                target: self.keys.public_key(),
                decrypted: true,
            }),
        };
        request
    }

    /// Drains the customer's outputs, acting as the host's wallet.
    fn drain(&mut self) -> Vec<Output> {
        let mut all = Vec::new();
        while let Some(output) = self.customer.poll_output() {
            let payment = match &output {
                Output::PayInvoice {
                    job,
                    provider,
                    bolt11,
                    amount_msat,
                    payment_hash,
                    max_fee_msat,
                } => {
                    *self.handed.entry(bolt11.clone()).or_default() += 1;
                    let invoice = ParsedInvoice::parse(bolt11).expect("an unparsable invoice paid");
                    assert_eq!(invoice.amount_msat(), Some(*amount_msat), "amount");
                    assert_eq!(invoice.payment_hash(), *payment_hash, "payment hash");
                    assert_eq!(invoice.currency(), Currency::Bitcoin, "network");
                    assert!(
                        invoice.expires_at() > self.now.as_secs(),
                        "expired invoice paid"
                    );
                    Some((
                        PaymentRef::Invoice(*payment_hash),
                        *job,
                        *provider,
                        *amount_msat,
                        *max_fee_msat,
                    ))
                }
                Output::SendZap {
                    job,
                    provider,
                    zap_request,
                    amount_msat,
                    max_fee_msat,
                } => Some((
                    PaymentRef::Zap(zap_request.id),
                    *job,
                    *provider,
                    *amount_msat,
                    *max_fee_msat,
                )),
                _ => None,
            };
            if let Some((reference, job, provider, amount_msat, max_fee_msat)) = payment {
                self.wallet.insert(
                    reference,
                    WalletPayment {
                        job,
                        provider,
                        amount_msat,
                        max_fee_msat,
                        outcome: None,
                    },
                );
            }
            match &output {
                Output::LookupPayment { payment, .. } => {
                    let outcome = match self.wallet.get(payment).map(|p| p.outcome) {
                        None => {
                            PaymentOutcome::failed(WalletFailure::NotFound, "unknown to the wallet")
                        }
                        Some(None) => PaymentOutcome::Pending,
                        Some(Some(Ok(fee_msat))) => PaymentOutcome::Paid {
                            preimage: None,
                            fee_msat,
                        },
                        Some(Some(Err(()))) => {
                            PaymentOutcome::failed(WalletFailure::PaymentFailed, "failed")
                        }
                    };
                    self.customer
                        .handle_payment_outcome(self.now, *payment, outcome)
                        .expect("a look-up answer refused");
                }
                _ => {}
            }
            all.push(output);
        }
        all
    }

    /// Hands `event` to the customer, gift-wrapped from `from` when `wrap`.
    fn feed(&mut self, event: Event, from: &Keys, wrap: bool) {
        let event = if wrap {
            let rumor = UnsignedEvent::new(
                event.pubkey,
                event.created_at,
                event.kind,
                event.tags.to_vec(),
                event.content.clone(),
            );
            match nip59::gift_wrap(
                from,
                &self.keys.public_key(),
                rumor,
                self.now,
                &mut self.rng,
            ) {
                Ok(wrap) => wrap,
                Err(_) => return,
            }
        } else {
            event
        };
        if !self.events.iter().any(|e| e.id == event.id) {
            self.events.push(event.clone());
        }
        self.customer.handle_event(self.now, event);
        self.drain();
    }

    fn act(&mut self, act: &Act) {
        match act {
            Act::Submit { how, bid } => {
                self.submitted += 1;
                let addressed = self.providers[0].public_key();
                let delivery = match how % 6 {
                    0 | 1 => Delivery::Public,
                    2 => Delivery::To(addressed),
                    3 => Delivery::Encrypted(addressed, Scheme::Nip44),
                    4 => Delivery::Encrypted(addressed, Scheme::Nip04),
                    _ => Delivery::GiftWrap(addressed),
                };
                let gift_wrapped = matches!(delivery, Delivery::GiftWrap(_));
                let mut builder = JobRequest::builder(Kind::from(KIND))
                    .input(JobInput::text(format!("question {}", self.submitted)));
                let bid = bid.map(|i| BIDS[usize::from(i) % BIDS.len()]);
                if let Some(bid) = bid {
                    builder = builder.bid(bid);
                }
                let public = matches!(delivery, Delivery::Public);
                let id = self
                    .customer
                    .submit(self.now, builder, delivery)
                    .expect("submit");
                let event = self
                    .drain()
                    .into_iter()
                    .find_map(|o| match o {
                        Output::Relay(RelayCommand::Publish { event, .. }) => Some(event),
                        _ => None,
                    })
                    .expect("nothing published");
                let registry = KindRegistry::nip90();
                let request = if gift_wrapped {
                    let gift = nip59::unwrap(&self.providers[0], &event).expect("unwrap");
                    JobRequest::from_rumor(&gift.rumor, Some(&self.providers[0]), &registry)
                } else {
                    JobRequest::from_verified_event_with(
                        &event,
                        Some(&self.providers[0]),
                        &registry,
                    )
                }
                .expect("the request parses");
                self.jobs.push(JobInfo {
                    id,
                    request,
                    addressed: (!public).then_some(addressed),
                    gift_wrapped,
                    bid,
                });
            }
            Act::Ask {
                job,
                provider,
                shape,
                result,
                other_scheme,
            } => {
                let Some(info) = self.job(*job) else { return };
                let request = self.request_as_read(&info, *other_scheme);
                let bolt11 = self.invoice(shape);
                let keys = self.provider(*provider);
                let tag = u64::from(shape.tag);
                let event = if *result {
                    JobResult::builder(&request, "the answer")
                        .amount(tag, bolt11)
                        .sign(&keys, self.now, &mut self.rng)
                } else {
                    JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
                        .amount(tag, bolt11)
                        .sign(&keys, self.now, &mut self.rng)
                };
                if let Ok(event) = event {
                    self.feed(event, &keys, info.gift_wrapped);
                }
            }
            Act::Result {
                job,
                provider,
                other_scheme,
            } => {
                let Some(info) = self.job(*job) else { return };
                let request = self.request_as_read(&info, *other_scheme);
                let keys = self.provider(*provider);
                if let Ok(event) =
                    JobResult::builder(&request, "the answer").sign(&keys, self.now, &mut self.rng)
                {
                    self.feed(event, &keys, info.gift_wrapped);
                }
            }
            Act::Raw {
                kind,
                raw_kind,
                provider,
                tags,
                job,
                content,
                age,
                wrap,
            } => {
                let kind = KINDS.get(usize::from(*kind)).copied().unwrap_or(*raw_kind);
                let mut tags: Vec<Tag> = tags
                    .iter()
                    .take(16)
                    .filter_map(|t| Tag::parse(t.iter().take(6).cloned()).ok())
                    .collect();
                if let Some(info) = job.and_then(|j| self.job(j)) {
                    tags.push(Tag::event(info.id));
                    tags.push(Tag::public_key(self.keys.public_key()));
                }
                let keys = self.provider(*provider);
                let at = Timestamp::from(self.now.as_secs().saturating_add_signed(i64::from(*age)));
                let Ok(event) = UnsignedEvent::new(
                    keys.public_key(),
                    at,
                    Kind::from(kind),
                    tags,
                    content.as_str(),
                )
                .sign_with_ctx(nostr_dvm::nostr::SECP256K1, &mut self.rng, &keys) else {
                    return;
                };
                self.feed(event, &keys, *wrap);
            }
            Act::Json(json) => {
                if let Ok(event) = Event::from_json(json) {
                    self.customer.handle_event(self.now, event);
                    self.drain();
                }
            }
            Act::Redeliver(i) => {
                if !self.events.is_empty() {
                    let event = self.events[usize::from(*i) % self.events.len()].clone();
                    self.customer.handle_event(self.now, event);
                    self.drain();
                }
            }
            Act::Pay { job, provider } | Act::Zap { job, provider } => {
                let Some(id) = self.job(*job).map(|j| j.id) else {
                    return;
                };
                let provider = self.provider(*provider).public_key();
                let done = if matches!(act, Act::Pay { .. }) {
                    self.customer.pay(self.now, id, provider)
                } else {
                    self.customer.zap(self.now, id, provider)
                };
                if done.is_ok() {
                    self.manual.insert(id);
                }
                self.drain();
            }
            Act::Outcome {
                pick,
                paid,
                pending,
            } => {
                let open: Vec<PaymentRef> = self
                    .wallet
                    .iter()
                    .filter(|(_, p)| p.outcome.is_none())
                    .map(|(r, _)| *r)
                    .collect();
                if open.is_empty() {
                    return;
                }
                let reference = open[usize::from(*pick) % open.len()];
                let Some(payment) = self.wallet.get_mut(&reference) else {
                    return;
                };
                let outcome = if *pending {
                    PaymentOutcome::Pending
                } else if let Some(fee) = paid {
                    // The wallet keeps within the fee it was given.
                    let fee = u64::from(*fee) % (payment.max_fee_msat + 1);
                    payment.outcome = Some(Ok(fee));
                    PaymentOutcome::Paid {
                        preimage: None,
                        fee_msat: fee,
                    }
                } else {
                    payment.outcome = Some(Err(()));
                    PaymentOutcome::failed(WalletFailure::PaymentFailed, "no route")
                };
                self.customer
                    .handle_payment_outcome(self.now, reference, outcome)
                    .expect("a wallet outcome refused");
                self.drain();
            }
            Act::Jump(secs) => {
                self.now = Timestamp::from(self.now.as_secs() + u64::from(*secs));
                self.customer.handle_timeout(self.now);
                self.drain();
            }
            Act::NextTimeout => {
                if let Some(at) = self.customer.poll_timeout() {
                    self.now = self.now.max(at);
                    self.customer.handle_timeout(self.now);
                    self.drain();
                }
            }
            Act::Cancel(job) => {
                if let Some(id) = self.job(*job).map(|j| j.id) {
                    let _ = self.customer.cancel(self.now, id);
                    self.drain();
                }
            }
            Act::Crash => {
                let json = serde_json::to_string(&self.customer.snapshot()).expect("snapshot");
                let snapshot: CustomerSnapshot = serde_json::from_str(&json).expect("snapshot");
                self.customer =
                    Customer::restore(self.keys.clone(), self.config.clone(), snapshot, self.now)
                        .expect("restore");
                let out = self.drain();
                assert!(
                    !out.iter()
                        .any(|o| matches!(o, Output::PayInvoice { .. } | Output::SendZap { .. })),
                    "a restored customer pays: {out:?}"
                );
            }
        }
    }

    fn check(&self) {
        for (bolt11, n) in &self.handed {
            assert!(*n <= 1, "invoice handed {n} times: {bolt11}");
        }
        let mut per_job: HashMap<EventId, Vec<&WalletPayment>> = HashMap::new();
        for p in self.wallet.values() {
            per_job.entry(p.job).or_default().push(p);
        }
        for (job, payments) in per_job {
            let info = self.jobs.iter().find(|j| j.id == job);
            let live: Vec<&&WalletPayment> = payments
                .iter()
                .filter(|p| !matches!(p.outcome, Some(Err(()))))
                .collect();
            let to_providers: u64 = live.iter().map(|p| p.amount_msat).sum();
            if let Some(bid) = info.and_then(|j| j.bid) {
                assert!(
                    to_providers <= bid,
                    "job {job}: {to_providers} msat over bid {bid}"
                );
            }
            if !self.manual.contains(&job) {
                let committed: u64 = live
                    .iter()
                    .map(|p| p.amount_msat + p.outcome.map_or(p.max_fee_msat, |o| o.unwrap_or(0)))
                    .sum();
                let limit = self.config.auto_pay_limit_msat.unwrap_or(0);
                assert!(
                    committed <= limit,
                    "job {job}: {committed} msat over limit {limit}"
                );
                let providers: HashSet<PublicKey> = payments.iter().map(|p| p.provider).collect();
                assert!(
                    providers.len() <= 1,
                    "job {job}: auto-paid {} providers",
                    providers.len()
                );
            }
            if let Some(addressed) = info.and_then(|j| j.addressed) {
                assert!(
                    payments.iter().all(|p| p.provider == addressed),
                    "job {job}: paid a provider it was not addressed to"
                );
            }
            let mut per_provider: HashMap<PublicKey, u32> = HashMap::new();
            for p in live {
                *per_provider.entry(p.provider).or_default() += 1;
            }
            assert!(
                per_provider.values().all(|n| *n <= 1),
                "job {job}: one provider paid twice"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let mut case = Case::new(&input);
    for act in input.actions.iter().take(MAX_ACTIONS) {
        case.act(act);
        case.check();
    }
});
