//! Property tests of the customer's money safety over random input sequences from malicious
//! payees: real signed answers, real BOLT11 invoices, a modelled wallet.
//!
//! Each case picks a configuration (auto-pay limit or none, fee allowance, answer cap,
//! retention) and up to 50 actions: submissions (public, addressed, NIP-44 or NIP-04
//! encrypted; with or without a bid), payment requests from any of five provider keys (an
//! invoice that matches the tag, one for much more, an amountless one, one for testnet, an
//! expired one, or none; feedback in the job's scheme or in another), all five keys asking
//! at once for one job, results (with a payment
//! asked after them, or not), re-deliveries of past events, the host's own `pay` and `zap`,
//! wallet outcomes (paid, failed, still pending), time jumps and timeouts, cancellations, and
//! crashes at any step (the customer restored from a JSON snapshot taken before its outputs
//! were drained: what it asked to pay never reached the wallet). After every action:
//!
//! - (a) a job never pays its providers more than its bid; a job the host never paid by hand
//!   never costs more than the auto-pay limit, fees included, and nothing without a limit;
//! - (b) an invoice is never handed to the wallet twice, even across crashes;
//! - (c) nothing is paid to a provider a job was not addressed to, and auto-pay pays at most
//!   one provider per job;
//! - (d) at most one payment per job and provider is paid or under way (`pay` then `zap`);
//! - (e) only invoices that pass every check (amount = tag, network, unexpired) are paid;
//! - (f) an answer in another scheme than the request's, an answer to an ended job, and an
//!   answer delivered again are never counted (no notification but a refusal);
//! - (g) the state stays bounded: answers per job within the cap, ended jobs forgotten;
//! - (h) snapshot/restore changes nothing: at a random cut a twin is restored from a JSON
//!   snapshot, both get the same later inputs, and their outputs must be equal;
//! - and the host never errs when it reports what its wallet did.
#![cfg(feature = "test-util")]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use nostr_dvm::customer::WalletFailure;
use nostr_dvm::customer::{
    Currency, Customer, CustomerConfig, CustomerSnapshot, Delivery, Notification, Output,
    PaymentOutcome, PaymentRef,
};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip90::{
    Encryption, FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult, KindRegistry,
};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, PublicKey, Timestamp};
use nostr_dvm::rng::SeedSource;
use nostr_dvm::testing::{keys_from_seed, InvoiceDescription, InvoiceParams, TestLightningNode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand::rngs::StdRng;
use rand::SeedableRng;

const T0: u64 = 1_760_000_000;
const KIND: u16 = 5050;
const TAGS: [u64; 4] = [1_000, 2_000, 5_000, 40_000];
const LIMITS: [u64; 3] = [5_000, 20_000, 100_000];
const BIDS: [u64; 3] = [3_000, 10_000, 50_000];
const FEES: [u64; 3] = [0, 500, 1_000];
const PROVIDERS: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Public,
    To,
    Nip44,
    Nip04,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invoice {
    Matching,
    ForMore,
    Amountless,
    Testnet,
    Expired,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wallet {
    Paid,
    Failed,
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Submit {
        how: How,
        bid: Option<usize>,
    },
    PaymentRequired {
        job: u8,
        provider: u8,
        tag: usize,
        invoice: Invoice,
        other_scheme: bool,
    },
    /// Every provider key asks to be paid for the same job.
    Flood {
        job: u8,
        tag: usize,
    },
    Processing {
        job: u8,
        provider: u8,
        other_scheme: bool,
    },
    Result {
        job: u8,
        provider: u8,
        asks: Option<(usize, Invoice)>,
        other_scheme: bool,
    },
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
        wallet: Wallet,
    },
    Jump(u16),
    NextTimeout,
    Cancel(u8),
}

#[derive(Debug, Clone)]
struct Setup {
    seed: u64,
    limit: Option<usize>,
    fee: usize,
    max_answers: usize,
    retention: u64,
    /// Where a twin is forked from a snapshot (past the end: no twin).
    cut: usize,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<u64>(),
        prop::option::weighted(0.8, 0..LIMITS.len()),
        0..FEES.len(),
        1usize..6,
        prop_oneof![Just(60u64), Just(3_600)],
        0usize..50,
    )
        .prop_map(|(seed, limit, fee, max_answers, retention, cut)| Setup {
            seed,
            limit,
            fee,
            max_answers,
            retention,
            cut,
        })
}

fn action() -> impl Strategy<Value = Action> {
    let how = prop_oneof![
        3 => Just(How::Public),
        1 => Just(How::To),
        1 => Just(How::Nip44),
        1 => Just(How::Nip04),
    ];
    let invoice = || {
        prop_oneof![
            4 => Just(Invoice::Matching),
            2 => Just(Invoice::ForMore),
            1 => Just(Invoice::Amountless),
            1 => Just(Invoice::Testnet),
            1 => Just(Invoice::Expired),
            1 => Just(Invoice::None),
        ]
    };
    let lie = || prop::bool::weighted(0.15);
    // The provider jobs are addressed to, or any of the five.
    let provider = || prop_oneof![2 => Just(0u8), 3 => 0..PROVIDERS];
    prop_oneof![
        3 => (how, prop::option::weighted(0.5, 0..BIDS.len()))
            .prop_map(|(how, bid)| Action::Submit { how, bid }),
        8 => (any::<u8>(), provider(), 0..TAGS.len(), invoice(), lie()).prop_map(
            |(job, provider, tag, invoice, other_scheme)| Action::PaymentRequired {
                job,
                provider,
                tag,
                invoice,
                other_scheme,
            }
        ),
        2 => (any::<u8>(), 0..TAGS.len()).prop_map(|(job, tag)| Action::Flood { job, tag }),
        2 => (any::<u8>(), provider(), lie()).prop_map(|(job, provider, other_scheme)| {
            Action::Processing {
                job,
                provider,
                other_scheme,
            }
        }),
        2 => (
            any::<u8>(),
            provider(),
            prop::option::weighted(0.5, (0..TAGS.len(), invoice())),
            lie()
        )
            .prop_map(|(job, provider, asks, other_scheme)| Action::Result {
                job,
                provider,
                asks,
                other_scheme,
            }),
        4 => any::<u16>().prop_map(Action::Redeliver),
        2 => (any::<u8>(), provider()).prop_map(|(job, provider)| Action::Pay { job, provider }),
        2 => (any::<u8>(), provider()).prop_map(|(job, provider)| Action::Zap { job, provider }),
        4 => (
            any::<u8>(),
            prop_oneof![
                2 => Just(Wallet::Paid),
                2 => Just(Wallet::Failed),
                1 => Just(Wallet::Pending)
            ]
        )
            .prop_map(|(pick, wallet)| Action::Outcome { pick, wallet }),
        1 => (1u16..300).prop_map(Action::Jump),
        1 => Just(Action::NextTimeout),
        1 => any::<u8>().prop_map(Action::Cancel),
    ]
}

/// A payment as the host's wallet knows it.
#[derive(Debug, Clone)]
struct WalletPayment {
    job: EventId,
    provider: PublicKey,
    amount_msat: u64,
    max_fee_msat: u64,
    /// `None` while in flight.
    outcome: Option<Result<u64, ()>>,
}

#[derive(Clone)]
struct JobInfo {
    id: EventId,
    /// The request as providers read it.
    request: JobRequest,
    addressed: Option<PublicKey>,
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
    /// Every answer fed, with whether it was counted the first time.
    events: Vec<Event>,
    counted: HashSet<EventId>,
    /// Invoices that pass every check, with their tag amount.
    good_invoices: HashMap<String, u64>,
    /// How often each invoice was handed to the wallet.
    handed: HashMap<String, u32>,
    wallet: BTreeMap<PaymentRef, WalletPayment>,
    /// Jobs the host paid (or zapped) by hand.
    manual: HashSet<EventId>,
    submitted: u32,
    /// While set, outputs stay in the customer (lost in the coming crash).
    hold: bool,
    /// Every output drained.
    log: Vec<Output>,
}

impl Case {
    fn new(setup: &Setup) -> Self {
        let mut config = CustomerConfig::new(["wss://relay.example"]);
        config.auto_pay_limit_msat = setup.limit.map(|i| LIMITS[i]);
        config.max_fee_msat = FEES[setup.fee];
        config.max_answers_per_job = setup.max_answers;
        config.done_retention_secs = setup.retention;
        config.timeout_secs = 1_800;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&setup.seed.to_le_bytes());
        config.seed = SeedSource::Deterministic(seed);
        let keys = keys_from_seed(43);
        let now = Timestamp::from(T0);
        let customer = Customer::new(keys.clone(), config.clone(), now);
        let mut case = Self {
            customer,
            config,
            keys,
            now,
            rng: StdRng::seed_from_u64(setup.seed),
            node: TestLightningNode::new(44),
            preimage: 0,
            jobs: Vec::new(),
            providers: (0..PROVIDERS).map(|i| keys_from_seed(60 + i)).collect(),
            events: Vec::new(),
            counted: HashSet::new(),
            good_invoices: HashMap::new(),
            handed: HashMap::new(),
            wallet: BTreeMap::new(),
            manual: HashSet::new(),
            submitted: 0,
            hold: false,
            log: Vec::new(),
        };
        let _ = case.drain();
        case
    }

    fn job(&self, pick: u8) -> Option<&JobInfo> {
        if self.jobs.is_empty() {
            return None;
        }
        self.jobs.get(usize::from(pick) % self.jobs.len())
    }

    fn invoice(&mut self, kind: Invoice, tag: u64) -> Option<String> {
        self.preimage += 1;
        let mut preimage = [0u8; 32];
        preimage[..4].copy_from_slice(&self.preimage.to_le_bytes());
        let (node, amount, created_at) = match kind {
            Invoice::None => return None,
            Invoice::Matching => (self.node.clone(), Some(tag), self.now.as_secs()),
            Invoice::ForMore => (
                self.node.clone(),
                Some(tag.saturating_mul(1_000)),
                self.now.as_secs(),
            ),
            Invoice::Amountless => (self.node.clone(), None, self.now.as_secs()),
            Invoice::Testnet => (
                self.node.clone().on_network(Currency::BitcoinTestnet),
                Some(tag),
                self.now.as_secs(),
            ),
            Invoice::Expired => (self.node.clone(), Some(tag), self.now.as_secs() - 700),
        };
        let bolt11 = node
            .invoice(&InvoiceParams {
                amount_msat: amount,
                description: InvoiceDescription::Direct("job".into()),
                created_at: Timestamp::from(created_at),
                expiry_secs: 600,
                preimage,
            })
            .bolt11;
        if kind == Invoice::Matching {
            self.good_invoices.insert(bolt11.clone(), tag);
        }
        Some(bolt11)
    }

    /// The request as a provider answering in the other scheme sees it.
    fn other_scheme(&self, request: &JobRequest) -> JobRequest {
        let mut request = request.clone();
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

    /// Drains the customer's outputs, acting as the host: hands payments to the wallet,
    /// answers look-ups from it.
    fn drain(&mut self) -> Vec<Output> {
        let mut all = Vec::new();
        if self.hold {
            return all;
        }
        while let Some(output) = self.customer.poll_output() {
            match &output {
                Output::PayInvoice {
                    job,
                    provider,
                    bolt11,
                    amount_msat,
                    payment_hash,
                    max_fee_msat,
                } => {
                    *self.handed.entry(bolt11.clone()).or_default() += 1;
                    self.wallet.insert(
                        PaymentRef::Invoice(*payment_hash),
                        WalletPayment {
                            job: *job,
                            provider: *provider,
                            amount_msat: *amount_msat,
                            max_fee_msat: *max_fee_msat,
                            outcome: None,
                        },
                    );
                }
                Output::SendZap {
                    job,
                    provider,
                    zap_request,
                    amount_msat,
                    max_fee_msat,
                } => {
                    self.wallet.insert(
                        PaymentRef::Zap(zap_request.id),
                        WalletPayment {
                            job: *job,
                            provider: *provider,
                            amount_msat: *amount_msat,
                            max_fee_msat: *max_fee_msat,
                            outcome: None,
                        },
                    );
                }
                Output::LookupPayment { payment, .. } => {
                    let outcome = match self.wallet.get(payment).map(|p| p.outcome) {
                        // Never reached the wallet (lost in the crash): it failed.
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
                        .unwrap_or_else(|e| panic!("look-up answer refused: {e}"));
                }
                _ => {}
            }
            self.log.push(output.clone());
            all.push(output);
        }
        all
    }

    /// A twin of this case whose customer is restored from a snapshot of this one's: fed the
    /// same inputs from now on, it must say exactly the same.
    fn fork(&mut self) -> Result<Case, TestCaseError> {
        let json = serde_json::to_string(&self.customer.snapshot())
            .map_err(|e| TestCaseError::fail(format!("snapshot: {e}")))?;
        let snapshot: CustomerSnapshot = serde_json::from_str(&json)
            .map_err(|e| TestCaseError::fail(format!("snapshot: {e}")))?;
        let customer =
            Customer::restore(self.keys.clone(), self.config.clone(), snapshot, self.now)
                .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
        let mut twin = Case {
            customer,
            config: self.config.clone(),
            keys: self.keys.clone(),
            now: self.now,
            rng: self.rng.clone(),
            node: self.node.clone(),
            preimage: self.preimage,
            jobs: self.jobs.clone(),
            providers: self.providers.clone(),
            events: self.events.clone(),
            counted: self.counted.clone(),
            good_invoices: self.good_invoices.clone(),
            handed: self.handed.clone(),
            wallet: self.wallet.clone(),
            manual: self.manual.clone(),
            submitted: self.submitted,
            hold: false,
            log: Vec::new(),
        };
        // Its subscriptions and look-ups (answered from the wallet: nothing changes).
        let out = twin.drain();
        prop_assert!(
            !out.iter().any(|o| matches!(
                o,
                Output::PayInvoice { .. } | Output::SendZap { .. } | Output::Notify(_)
            )),
            "a restored customer does something: {out:?}"
        );
        twin.log.clear();
        Ok(twin)
    }

    fn feed(&mut self, event: Event, other_scheme: bool) -> Result<(), TestCaseError> {
        let again = self.events.iter().any(|e| e.id == event.id);
        let ended = first_e(&event).and_then(|j| self.customer.is_ended(&j)) != Some(false);
        self.customer.handle_event(self.now, event.clone());
        let out = self.drain();
        let counted = out.iter().any(|o| {
            matches!(o, Output::Notify(n) if !matches!(n, Notification::Refused { .. }))
                || matches!(o, Output::PayInvoice { .. })
        });
        // (f)
        if other_scheme || ended || (again && self.counted.contains(&event.id)) {
            prop_assert!(
                !counted,
                "counted: other scheme {other_scheme}, ended {ended}, again {again}: {out:?}"
            );
        }
        if counted {
            self.counted.insert(event.id);
        }
        if !again {
            self.events.push(event);
        }
        Ok(())
    }

    fn step(&mut self, action: &Action) -> Result<(), TestCaseError> {
        match action {
            Action::Submit { how, bid } => {
                self.submitted += 1;
                let addressed = self.providers[0].public_key();
                let delivery = match how {
                    How::Public => Delivery::Public,
                    How::To => Delivery::To(addressed),
                    How::Nip44 => Delivery::Encrypted(addressed, Scheme::Nip44),
                    How::Nip04 => Delivery::Encrypted(addressed, Scheme::Nip04),
                };
                let mut builder = JobRequest::builder(Kind::from(KIND))
                    .input(JobInput::text(format!("question {}", self.submitted)));
                let bid = bid.map(|i| BIDS[i]);
                if let Some(bid) = bid {
                    builder = builder.bid(bid);
                }
                let id = self
                    .customer
                    .submit(self.now, builder, delivery)
                    .map_err(|e| TestCaseError::fail(format!("submit: {e}")))?;
                let event = self
                    .drain()
                    .into_iter()
                    .find_map(|o| match o {
                        Output::Relay(nostr_dvm::relay::RelayCommand::Publish {
                            event, ..
                        }) => Some(event),
                        _ => None,
                    })
                    .ok_or_else(|| TestCaseError::fail("nothing published"))?;
                let request =
                    JobRequest::from_verified_event_with(&event, None, &KindRegistry::nip90())
                        .map_err(|e| TestCaseError::fail(format!("request: {e}")))?;
                self.jobs.push(JobInfo {
                    id,
                    request,
                    addressed: (*how != How::Public).then_some(addressed),
                    bid,
                });
            }
            Action::PaymentRequired {
                job,
                provider,
                tag,
                invoice,
                other_scheme,
            } => {
                let Some(request) = self.job(*job).map(|j| j.request.clone()) else {
                    return Ok(());
                };
                let request = if *other_scheme {
                    self.other_scheme(&request)
                } else {
                    request
                };
                let bolt11 = self.invoice(*invoice, TAGS[*tag]);
                let keys = self.providers[usize::from(*provider)].clone();
                let event = JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
                    .amount(TAGS[*tag], bolt11)
                    .sign(&keys, self.now, &mut self.rng)
                    .map_err(|e| TestCaseError::fail(format!("feedback: {e}")))?;
                self.feed(event, *other_scheme)?;
            }
            Action::Flood { job, tag } => {
                let Some(request) = self.job(*job).map(|j| j.request.clone()) else {
                    return Ok(());
                };
                for keys in self.providers.clone() {
                    let bolt11 = self.invoice(Invoice::Matching, TAGS[*tag]);
                    let event = JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
                        .amount(TAGS[*tag], bolt11)
                        .sign(&keys, self.now, &mut self.rng)
                        .map_err(|e| TestCaseError::fail(format!("feedback: {e}")))?;
                    self.feed(event, false)?;
                }
            }
            Action::Processing {
                job,
                provider,
                other_scheme,
            } => {
                let Some(request) = self.job(*job).map(|j| j.request.clone()) else {
                    return Ok(());
                };
                let request = if *other_scheme {
                    self.other_scheme(&request)
                } else {
                    request
                };
                let keys = self.providers[usize::from(*provider)].clone();
                let event = JobFeedback::builder(&request, FeedbackStatus::Processing)
                    .sign(&keys, self.now, &mut self.rng)
                    .map_err(|e| TestCaseError::fail(format!("feedback: {e}")))?;
                self.feed(event, *other_scheme)?;
            }
            Action::Result {
                job,
                provider,
                asks,
                other_scheme,
            } => {
                let Some(request) = self.job(*job).map(|j| j.request.clone()) else {
                    return Ok(());
                };
                let request = if *other_scheme {
                    self.other_scheme(&request)
                } else {
                    request
                };
                let keys = self.providers[usize::from(*provider)].clone();
                let mut builder = JobResult::builder(&request, "the answer");
                if let Some((tag, invoice)) = asks {
                    let bolt11 = self.invoice(*invoice, TAGS[*tag]);
                    builder = builder.amount(TAGS[*tag], bolt11);
                }
                let event = builder
                    .sign(&keys, self.now, &mut self.rng)
                    .map_err(|e| TestCaseError::fail(format!("result: {e}")))?;
                self.feed(event, *other_scheme)?;
            }
            Action::Redeliver(i) => {
                if !self.events.is_empty() {
                    let event = self.events[usize::from(*i) % self.events.len()].clone();
                    self.feed(event, false)?;
                }
            }
            Action::Pay { job, provider } | Action::Zap { job, provider } => {
                let Some(id) = self.job(*job).map(|j| j.id) else {
                    return Ok(());
                };
                let provider = self.providers[usize::from(*provider)].public_key();
                let done = if matches!(action, Action::Pay { .. }) {
                    self.customer.pay(self.now, id, provider)
                } else {
                    self.customer.zap(self.now, id, provider)
                };
                if done.is_ok() {
                    self.manual.insert(id);
                }
                self.drain();
            }
            Action::Outcome { pick, wallet } => {
                let open: Vec<PaymentRef> = self
                    .wallet
                    .iter()
                    .filter(|(_, p)| p.outcome.is_none())
                    .map(|(r, _)| *r)
                    .collect();
                if open.is_empty() {
                    return Ok(());
                }
                let reference = open[usize::from(*pick) % open.len()];
                let Some(payment) = self.wallet.get_mut(&reference) else {
                    return Ok(());
                };
                let outcome = match wallet {
                    Wallet::Paid => {
                        let fee = payment.max_fee_msat / 2;
                        payment.outcome = Some(Ok(fee));
                        PaymentOutcome::Paid {
                            preimage: None,
                            fee_msat: fee,
                        }
                    }
                    Wallet::Failed => {
                        payment.outcome = Some(Err(()));
                        PaymentOutcome::failed(WalletFailure::PaymentFailed, "no route")
                    }
                    Wallet::Pending => PaymentOutcome::Pending,
                };
                let reported = self
                    .customer
                    .handle_payment_outcome(self.now, reference, outcome);
                prop_assert!(reported.is_ok(), "outcome refused: {reported:?}");
                self.drain();
            }
            Action::Jump(secs) => {
                self.now = Timestamp::from(self.now.as_secs() + u64::from(*secs));
                self.customer.handle_timeout(self.now);
                self.drain();
            }
            Action::NextTimeout => {
                if let Some(at) = self.customer.poll_timeout() {
                    self.now = self.now.max(at);
                    self.customer.handle_timeout(self.now);
                    self.drain();
                }
            }
            Action::Cancel(job) => {
                if let Some(id) = self.job(*job).map(|j| j.id) {
                    let _ = self.customer.cancel(self.now, id);
                    self.drain();
                }
            }
        }
        Ok(())
    }

    /// A crash right after `action` took effect, before its outputs were drained: the host
    /// saved the state, and the customer is restored from it.
    fn crash(&mut self) -> Result<(), TestCaseError> {
        let snapshot = self.customer.snapshot();
        let json = serde_json::to_string(&snapshot)
            .map_err(|e| TestCaseError::fail(format!("snapshot: {e}")))?;
        let snapshot: CustomerSnapshot = serde_json::from_str(&json)
            .map_err(|e| TestCaseError::fail(format!("snapshot: {e}")))?;
        self.customer =
            Customer::restore(self.keys.clone(), self.config.clone(), snapshot, self.now)
                .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
        let out = self.drain();
        prop_assert!(
            !out.iter()
                .any(|o| matches!(o, Output::PayInvoice { .. } | Output::SendZap { .. })),
            "a restored customer pays: {out:?}"
        );
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        // (b)
        for (bolt11, n) in &self.handed {
            prop_assert!(*n <= 1, "invoice handed {n} times: {bolt11}");
            // (e)
            prop_assert!(
                self.good_invoices.contains_key(bolt11),
                "a refused invoice was paid: {bolt11}"
            );
        }
        let mut per_job: HashMap<EventId, Vec<&WalletPayment>> = HashMap::new();
        for p in self.wallet.values() {
            per_job.entry(p.job).or_default().push(p);
        }
        for (job, payments) in per_job {
            let info = self.jobs.iter().find(|j| j.id == job);
            let committed: u64 = payments
                .iter()
                .map(|p| match p.outcome {
                    None => p.amount_msat + p.max_fee_msat,
                    Some(Ok(fee)) => p.amount_msat + fee,
                    Some(Err(())) => 0,
                })
                .sum();
            let to_providers: u64 = payments
                .iter()
                .filter(|p| !matches!(p.outcome, Some(Err(()))))
                .map(|p| p.amount_msat)
                .sum();
            let bid = info.and_then(|j| j.bid);
            // (a)
            if let Some(bid) = bid {
                prop_assert!(
                    to_providers <= bid,
                    "job {job}: {to_providers} msat paid to providers over bid {bid}"
                );
            }
            if !self.manual.contains(&job) {
                let limit = self.config.auto_pay_limit_msat.unwrap_or(0);
                prop_assert!(
                    committed <= limit,
                    "job {job}: {committed} msat auto-paid over the limit {limit}"
                );
                let providers: BTreeSet<PublicKey> = payments.iter().map(|p| p.provider).collect();
                // (c)
                prop_assert!(
                    providers.len() <= 1,
                    "job {job}: auto-paid {} providers",
                    providers.len()
                );
            }
            // (c)
            if let Some(addressed) = info.and_then(|j| j.addressed) {
                prop_assert!(
                    payments.iter().all(|p| p.provider == addressed),
                    "job {job}: paid a provider it was not addressed to"
                );
            }
            // (d)
            let mut live: HashMap<PublicKey, u32> = HashMap::new();
            for p in &payments {
                if !matches!(p.outcome, Some(Err(()))) {
                    *live.entry(p.provider).or_default() += 1;
                }
            }
            prop_assert!(
                live.values().all(|n| *n <= 1),
                "job {job}: one provider paid twice: {live:?}"
            );
        }
        // (g)
        for info in &self.jobs {
            if let Some(answers) = self.customer.answers(&info.id) {
                prop_assert!(answers.len() <= self.config.max_answers_per_job);
            }
        }
        Ok(())
    }
}

fn first_e(event: &Event) -> Option<EventId> {
    event.tags.iter().find_map(|t| match t.as_slice() {
        [name, value, ..] if name == "e" => EventId::from_hex(value).ok(),
        _ => None,
    })
}

/// Runs one action, crashing right after it when `crash`.
fn run_step(case: &mut Case, action: &Action, crash: bool) -> Result<(), TestCaseError> {
    if crash && !matches!(action, Action::Submit { .. }) {
        // The action takes effect, the host saves, and the process dies before acting on
        // the outputs.
        case.hold = true;
        let stepped = case.step(action);
        case.hold = false;
        stepped?;
        case.crash()?;
    } else {
        case.step(action)?;
    }
    case.check()
}

fn check_run(setup: &Setup, actions: &[(Action, bool)]) -> Result<(), TestCaseError> {
    let mut case = Case::new(setup);
    let mut twin: Option<Case> = None;
    for (i, (action, crash)) in actions.iter().enumerate() {
        if i == setup.cut {
            twin = Some(case.fork()?);
        }
        case.log.clear();
        run_step(&mut case, action, *crash)?;
        if let Some(twin) = twin.as_mut() {
            // (h) a restored customer behaves as the one it was saved from.
            twin.log.clear();
            run_step(twin, action, *crash)?;
            prop_assert_eq!(
                &case.log,
                &twin.log,
                "the restored twin differs after {:?}",
                action
            );
        }
    }
    // (g) every job ends and is forgotten once its payments have outcomes.
    let open: Vec<PaymentRef> = case
        .wallet
        .iter()
        .filter(|(_, p)| p.outcome.is_none())
        .map(|(r, _)| *r)
        .collect();
    for reference in open {
        let reported = case.customer.handle_payment_outcome(
            case.now,
            reference,
            PaymentOutcome::failed(WalletFailure::PaymentFailed, "gave up"),
        );
        prop_assert!(reported.is_ok(), "{reported:?}");
    }
    // Payments lost in a crash and not looked up yet do not exist: nothing is in doubt.
    let mut guard = 0;
    while let Some(at) = case.customer.poll_timeout() {
        case.now = case.now.max(at);
        case.customer.handle_timeout(case.now);
        case.drain();
        guard += 1;
        prop_assert!(guard < 100, "timeouts never end");
    }
    prop_assert_eq!(case.customer.job_count(), 0);
    prop_assert_eq!(case.customer.payments().count(), 0);
    Ok(())
}

/// Runs `cases` cases, or as many as the `DVM_PROP_CASES` environment variable says.
fn run(cases: u32) {
    let cases = std::env::var("DVM_PROP_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        setup(),
        prop::collection::vec((action(), prop::bool::weighted(0.1)), 1..=50),
    );
    if let Err(e) = runner.run(&strategy, |(setup, actions)| check_run(&setup, &actions)) {
        panic!("{e}");
    }
}

/// The money invariants over 256 random configurations and action sequences.
#[test]
fn customer_money_invariants_hold_over_random_input_sequences() {
    run(256);
}
