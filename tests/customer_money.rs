//! Money safety of the customer (issue 10): what it pays, how much, to whom, and how often,
//! against hand-made (and malicious) provider answers signed with real keys and real
//! BOLT11 invoices.
#![cfg(feature = "test-util")]

use nostr_dvm::customer::WalletFailure;
use nostr_dvm::customer::{
    self, Customer, CustomerConfig, Delivery, Error, InvoiceError, Notification, Output,
    PaymentOutcome, PaymentRef, PaymentState,
};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip90::{
    FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult, KindRegistry,
};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, Timestamp};
use nostr_dvm::relay::RelayCommand;
use nostr_dvm::testing::{keys_from_seed, InvoiceDescription, InvoiceParams, TestLightningNode};
use rand::rngs::StdRng;
use rand::SeedableRng;

const T0: u64 = 1_760_000_000;
const KIND: u16 = 5050;

struct Bench {
    customer: Customer,
    now: Timestamp,
    rng: StdRng,
    node: TestLightningNode,
    out: Vec<Output>,
    preimage: u8,
    jobs: u32,
}

impl Bench {
    /// The payment hash and fee allowance of the invoice the customer handed to the wallet.
    /// A public job whose provider asks 2,000 msat with an invoice (preimage `[100; 32]`),
    /// paid automatically: the job, the invoice's payment hash and the fee limit given.
    fn auto_paying_2000_msat(&mut self) -> (EventId, [u8; 32], u64) {
        let provider = keys_from_seed(40);
        let (job, request) = self.public_job(None);
        self.preimage = 99;
        let bolt11 = self.invoice(Some(2_000));
        let fb = self.payment_required(&provider, &request, 2_000, Some(bolt11));
        self.feed(fb);
        let (hash, max_fee) = self.auto_paid();
        (job, hash, max_fee)
    }

    fn auto_paid(&self) -> ([u8; 32], u64) {
        self.out
            .iter()
            .find_map(|o| match o {
                Output::PayInvoice {
                    payment_hash,
                    max_fee_msat,
                    ..
                } => Some((*payment_hash, *max_fee_msat)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("not auto-paid: {:?}", self.out))
    }

    fn new(config: impl FnOnce(CustomerConfig) -> CustomerConfig) -> Self {
        let now = Timestamp::from(T0);
        let mut c = config(CustomerConfig::new(["wss://relay.example"]));
        c.seed = nostr_dvm::rng::SeedSource::Deterministic([7; 32]);
        let customer = Customer::new(keys_from_seed(43), c, now);
        let mut bench = Self {
            customer,
            now,
            rng: StdRng::seed_from_u64(9),
            node: TestLightningNode::new(44),
            out: Vec::new(),
            preimage: 1,
            jobs: 0,
        };
        bench.drain();
        bench
    }

    fn with_limit(limit: u64) -> Self {
        Self::new(|mut c| {
            c.auto_pay_limit_msat = Some(limit);
            c
        })
    }

    fn drain(&mut self) -> Vec<Output> {
        let out: Vec<Output> = std::iter::from_fn(|| self.customer.poll_output()).collect();
        self.out.extend(out.iter().cloned());
        out
    }

    /// Submits a job; returns its id and the request as `provider` reads it.
    fn submit(
        &mut self,
        request: nostr_dvm::nip90::JobRequestBuilder,
        delivery: Delivery,
        provider: &Keys,
    ) -> (EventId, JobRequest) {
        let job = self.customer.submit(self.now, request, delivery).unwrap();
        let event = self
            .drain()
            .into_iter()
            .find_map(|o| match o {
                Output::Relay(RelayCommand::Publish { event, .. }) => Some(event),
                _ => None,
            })
            .unwrap();
        let request =
            JobRequest::from_verified_event_with(&event, Some(provider), &KindRegistry::nip90())
                .unwrap();
        (job, request)
    }

    fn public_job(&mut self, bid: Option<u64>) -> (EventId, JobRequest) {
        self.jobs += 1;
        let text = format!("question {}", self.jobs);
        let mut request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text(text));
        if let Some(bid) = bid {
            request = request.bid(bid);
        }
        self.submit(request, Delivery::Public, &keys_from_seed(40))
    }

    fn invoice_on(
        &mut self,
        node: TestLightningNode,
        amount_msat: Option<u64>,
        created_at: u64,
        expiry_secs: u64,
    ) -> String {
        self.preimage = self.preimage.wrapping_add(1);
        node.invoice(&InvoiceParams {
            amount_msat,
            description: InvoiceDescription::Direct("job".into()),
            created_at: Timestamp::from(created_at),
            expiry_secs,
            preimage: [self.preimage; 32],
        })
        .bolt11
    }

    fn invoice(&mut self, amount_msat: Option<u64>) -> String {
        let node = self.node.clone();
        self.invoice_on(node, amount_msat, T0, 600)
    }

    fn payment_required(
        &mut self,
        provider: &Keys,
        request: &JobRequest,
        tag_msat: u64,
        bolt11: Option<String>,
    ) -> Event {
        JobFeedback::builder(request, FeedbackStatus::PaymentRequired)
            .amount(tag_msat, bolt11)
            .sign(provider, self.now, &mut self.rng)
            .unwrap()
    }

    fn result(&mut self, provider: &Keys, request: &JobRequest, content: &str) -> Event {
        JobResult::builder(request, content)
            .sign(provider, self.now, &mut self.rng)
            .unwrap()
    }

    fn feed(&mut self, event: Event) -> Vec<Output> {
        self.customer.handle_event(self.now, event);
        self.drain()
    }

    fn invoices_paid(&self) -> Vec<String> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::PayInvoice { bolt11, .. } => Some(bolt11.clone()),
                _ => None,
            })
            .collect()
    }

    fn zaps(&self) -> usize {
        self.out
            .iter()
            .filter(|o| matches!(o, Output::SendZap { .. }))
            .count()
    }

    fn refusals(&self) -> Vec<String> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Notify(Notification::Refused { reason, .. }) => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

// ---- item 9: the customer reads the invoice --------------------------------------------------

#[test]
fn an_invoice_for_more_than_its_tag_is_not_auto_paid() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(None);
    // The tag says 1 sat; the invoice is for 1,000,000 sats.
    let bolt11 = b.invoice(Some(1_000_000_000));
    let fb = b.payment_required(&provider, &request, 1_000, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty(), "{:?}", b.out);
}

#[test]
fn an_amountless_invoice_is_never_auto_paid() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(None);
    let bolt11 = b.invoice(None);
    let fb = b.payment_required(&provider, &request, 1_000, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty(), "{:?}", b.out);
}

#[test]
fn wrong_network_and_expired_invoices_are_not_auto_paid() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(None);
    let testnet = b
        .node
        .clone()
        .on_network(customer::Currency::BitcoinTestnet);
    let bolt11 = b.invoice_on(testnet, Some(1_000), T0, 600);
    let fb = b.payment_required(&provider, &request, 1_000, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty(), "testnet: {:?}", b.out);

    let (_, request) = b.public_job(None);
    let node = b.node.clone();
    let bolt11 = b.invoice_on(node, Some(1_000), T0 - 700, 600);
    let fb = b.payment_required(&provider, &request, 1_000, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty(), "expired: {:?}", b.out);
}

// ---- item 10: a budget per job -----------------------------------------------------------------

#[test]
fn five_keys_answering_a_public_job_are_not_each_paid() {
    let mut b = Bench::with_limit(10_000);
    let (_, request) = b.public_job(None);
    for seed in 60..65 {
        let provider = keys_from_seed(seed);
        let bolt11 = b.invoice(Some(2_000));
        let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
        b.feed(fb);
    }
    assert_eq!(b.invoices_paid().len(), 1, "{:?}", b.invoices_paid());
}

#[test]
fn auto_pay_never_exceeds_the_bid() {
    let mut b = Bench::with_limit(100_000);
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(Some(1_000));
    let bolt11 = b.invoice(Some(40_000));
    let fb = b.payment_required(&provider, &request, 40_000, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty(), "{:?}", b.out);
}

#[test]
fn a_redelivered_payment_request_is_one_request() {
    let mut b = Bench::new(|c| c);
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb.clone());
    b.feed(fb);
    let asked = b
        .out
        .iter()
        .filter(|o| matches!(o, Output::Notify(Notification::PaymentRequested { .. })))
        .count();
    assert_eq!(asked, 1, "{:?}", b.out);
}

#[test]
fn a_plaintext_answer_to_an_encrypted_job_is_refused() {
    let mut b = Bench::new(|c| c);
    let provider = keys_from_seed(40);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("secret"));
    let (_, mut request) = b.submit(
        request,
        Delivery::Encrypted(provider.public_key(), Scheme::Nip44),
        &provider,
    );
    request.encrypted = None; // the provider answers in the clear
    let result = b.result(&provider, &request, "leaked");
    let out = b.feed(result);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Notify(Notification::Result { .. }))),
        "{out:?}"
    );
    assert_eq!(b.refusals().len(), 1, "{out:?}");
}

#[test]
fn payment_requests_after_the_result_are_paid_once_and_only_in_time() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let ask = |b: &mut Bench, request: &JobRequest| {
        let node = b.node.clone();
        let now = b.now.as_secs();
        let bolt11 = b.invoice_on(node, Some(2_000), now, 600);
        let fb = b.payment_required(&provider, request, 2_000, Some(bolt11));
        b.feed(fb);
    };
    // Paid first, then the result: a further request is not paid.
    let (_, request) = b.public_job(None);
    ask(&mut b, &request);
    assert_eq!(b.invoices_paid().len(), 1);
    let result = b.result(&provider, &request, "done");
    b.feed(result);
    ask(&mut b, &request);
    assert_eq!(b.invoices_paid().len(), 1);

    // The result, then requests (pay after the result): the first is paid, no other.
    let (_, request) = b.public_job(None);
    let result = b.result(&provider, &request, "done");
    b.feed(result);
    for _ in 0..3 {
        ask(&mut b, &request);
    }
    assert_eq!(b.invoices_paid().len(), 2);

    // The result, then a request once the window has closed: the job is done, ignored.
    let (job, request) = b.public_job(None);
    let result = b.result(&provider, &request, "done");
    b.feed(result);
    assert_eq!(b.customer.is_ended(&job), Some(false));
    b.now = Timestamp::from(T0 + 300);
    b.customer.handle_timeout(b.now);
    assert_eq!(b.customer.is_ended(&job), Some(true));
    ask(&mut b, &request);
    assert_eq!(b.invoices_paid().len(), 2, "{:?}", b.out);
}

#[test]
fn answers_after_a_timeout_are_ignored() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(None);
    let at = b.customer.poll_timeout().unwrap();
    b.customer.handle_timeout(at);
    b.now = at;
    let bolt11 = b.invoice_on(b.node.clone(), Some(2_000), at.as_secs(), 600);
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    let result = b.result(&provider, &request, "late");
    b.feed(result);
    assert!(b.invoices_paid().is_empty(), "{:?}", b.out);
    assert!(
        !b.out
            .iter()
            .any(|o| matches!(o, Output::Notify(Notification::Result { .. }))),
        "{:?}",
        b.out
    );
}

#[test]
fn pay_then_zap_pays_once() {
    let mut b = Bench::new(|c| c);
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    let now = b.now;
    pay(&mut b.customer, now, job, &provider);
    let _ = b.customer.zap(now, job, provider.public_key());
    let _ = b.customer.zap(now, job, provider.public_key());
    pay(&mut b.customer, now, job, &provider);
    b.drain();
    assert_eq!(b.invoices_paid().len() + b.zaps(), 1, "{:?}", b.out);
}

fn pay(customer: &mut Customer, now: Timestamp, job: EventId, provider: &Keys) {
    let _ = customer.pay(now, job, provider.public_key());
}

#[test]
fn the_same_request_twice_is_refused() {
    let mut b = Bench::new(|c| c);
    let request = || JobRequest::builder(Kind::from(KIND)).input(JobInput::text("same"));
    let now = b.now;
    let job = b.customer.submit(now, request(), Delivery::Public).unwrap();
    assert_eq!(
        b.customer.submit(now, request(), Delivery::Public),
        Err(customer::Error::DuplicateJob(job))
    );
}

#[test]
fn zap_then_pay_pays_once() {
    let mut b = Bench::new(|c| c);
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    let now = b.now;
    b.customer.zap(now, job, provider.public_key()).unwrap();
    assert!(matches!(
        b.customer.pay(now, job, provider.public_key()),
        Err(customer::Error::AlreadyPaid { .. })
    ));
    b.drain();
    assert_eq!(b.invoices_paid().len() + b.zaps(), 1, "{:?}", b.out);
}

// ---- what is paid, and what is said -------------------------------------------------------------

#[test]
fn a_refused_invoice_is_reported_and_pay_refuses_it() {
    let mut b = Bench::new(|c| c);
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(9_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    let out = b.feed(fb);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Notify(Notification::PaymentRequested {
            amount_msat: 2_000,
            bolt11: None,
            ..
        })
    )));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Notify(Notification::InvoiceRefused {
            reason: InvoiceError::AmountMismatch {
                invoice_msat: 9_000,
                tag_msat: 2_000
            },
            ..
        })
    )));
    let now = b.now;
    assert!(matches!(
        b.customer.pay(now, job, provider.public_key()),
        Err(customer::Error::InvalidInvoice {
            reason: InvoiceError::AmountMismatch { .. },
            ..
        })
    ));

    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(None);
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    assert!(matches!(
        b.customer.pay(now, job, provider.public_key()),
        Err(customer::Error::InvalidInvoice {
            reason: InvoiceError::Amountless,
            ..
        })
    ));
    // An invoice that was valid when it arrived, paid after it expired.
    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    let later = Timestamp::from(T0 + 600);
    assert!(matches!(
        b.customer.pay(later, job, provider.public_key()),
        Err(customer::Error::InvalidInvoice {
            reason: InvoiceError::Expired { .. },
            ..
        })
    ));
    assert!(b.invoices_paid().is_empty());
}

#[test]
fn the_wallet_gets_the_invoice_amount_hash_and_fee_cap() {
    let mut b = Bench::new(|mut c| {
        c.auto_pay_limit_msat = Some(3_000);
        c.max_fee_msat = 500;
        c
    });
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_500));
    let fb = b.payment_required(&provider, &request, 2_500, Some(bolt11.clone()));
    b.feed(fb);
    let paid: Vec<_> = b
        .out
        .iter()
        .filter_map(|o| match o {
            Output::PayInvoice {
                job: j,
                bolt11: b,
                amount_msat,
                max_fee_msat,
                payment_hash,
                ..
            } => Some((*j, b.clone(), *amount_msat, *max_fee_msat, *payment_hash)),
            _ => None,
        })
        .collect();
    assert_eq!(paid.len(), 1);
    let (j, paid_bolt11, amount, fee, hash) = paid[0].clone();
    assert_eq!((j, paid_bolt11, amount, fee), (job, bolt11, 2_500, 500));
    assert_eq!(b.customer.committed_msat(&job), 3_000);
    assert_eq!(
        b.customer
            .payment(&PaymentRef::Invoice(hash))
            .map(|p| p.state),
        Some(PaymentState::InFlight)
    );
}

#[test]
fn the_fee_allowance_counts_against_the_auto_pay_limit() {
    let mut b = Bench::new(|mut c| {
        c.auto_pay_limit_msat = Some(2_500);
        c.max_fee_msat = 1_000;
        c
    });
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty());
}

#[test]
fn the_host_may_pay_above_the_limit_but_never_above_the_bid() {
    let mut b = Bench::with_limit(1_000);
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(Some(4_000));
    let bolt11 = b.invoice(Some(4_500));
    let fb = b.payment_required(&provider, &request, 4_500, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty());
    let now = b.now;
    // 4,500 for the provider > its bid of 4,000.
    assert!(matches!(
        b.customer.pay(now, job, provider.public_key()),
        Err(customer::Error::OverBudget {
            needed_msat: 4_500,
            left_msat: 4_000,
            ..
        })
    ));
    assert!(matches!(
        b.customer.zap(now, job, provider.public_key()),
        Err(customer::Error::OverBudget { .. })
    ));

    // Exactly the bid: the fee allowance is the customer's own cost, not the provider's.
    let (job, request) = b.public_job(Some(4_000));
    let bolt11 = b.invoice(Some(4_000));
    let fb = b.payment_required(&provider, &request, 4_000, Some(bolt11));
    b.feed(fb);
    b.customer.pay(now, job, provider.public_key()).unwrap();
    b.drain();
    assert_eq!(b.invoices_paid().len(), 1);
}

#[test]
fn a_failed_payment_frees_the_budget_but_its_invoice_is_not_paid_again() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    let (hash, _) = b.auto_paid();
    let now = b.now;
    let failed = PaymentOutcome::failed(WalletFailure::PaymentFailed, "no route");
    b.customer
        .handle_payment_outcome(now, PaymentRef::Invoice(hash), failed)
        .unwrap();
    assert!(b.drain().iter().any(|o| matches!(
        o,
        Output::Notify(Notification::PaymentFailed {
            failure: WalletFailure::PaymentFailed,
            ..
        })
    )));
    assert_eq!(b.customer.committed_msat(&job), 0);
    assert!(matches!(
        b.customer.pay(now, job, provider.public_key()),
        Err(customer::Error::AlreadyPaid { .. })
    ));
    // A zap is still possible, once.
    b.customer.zap(now, job, provider.public_key()).unwrap();
    assert!(b.customer.zap(now, job, provider.public_key()).is_err());
}

#[test]
fn a_paid_outcome_is_checked_and_recorded() {
    let mut b = Bench::with_limit(10_000);
    let (job, hash, _) = b.auto_paying_2000_msat();
    let reference = PaymentRef::Invoice(hash);
    let now = b.now;
    let wrong = PaymentOutcome::Paid {
        preimage: Some([1; 32]),
        fee_msat: 10,
    };
    assert_eq!(
        b.customer.handle_payment_outcome(now, reference, wrong),
        Err(customer::Error::PreimageMismatch)
    );
    let paid = PaymentOutcome::Paid {
        preimage: Some([100; 32]),
        fee_msat: 10,
    };
    b.customer
        .handle_payment_outcome(now, reference, paid.clone())
        .unwrap();
    b.customer
        .handle_payment_outcome(now, reference, paid)
        .unwrap();
    let out = b.drain();
    let notes = out
        .iter()
        .filter(|o| matches!(o, Output::Notify(Notification::Paid { fee_msat: 10, .. })))
        .count();
    assert_eq!(notes, 1);
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Notify(Notification::FeeAboveLimit { .. }))));
    assert_eq!(b.customer.committed_msat(&job), 2_010);
    assert!(matches!(
        b.customer.handle_payment_outcome(
            now,
            PaymentRef::Invoice([0; 32]),
            PaymentOutcome::Pending
        ),
        Err(customer::Error::UnknownPayment(_))
    ));
}

#[test]
fn a_fee_above_the_limit_is_told_once_after_the_payment() {
    let mut b = Bench::with_limit(10_000);
    let (job, hash, max_fee) = b.auto_paying_2000_msat();
    // A wallet that could not be told the limit (NIP-47) spent more on fees.
    let paid = PaymentOutcome::Paid {
        preimage: Some([100; 32]),
        fee_msat: max_fee + 1,
    };
    let now = b.now;
    for _ in 0..2 {
        b.customer
            .handle_payment_outcome(now, PaymentRef::Invoice(hash), paid.clone())
            .unwrap();
    }
    let over: Vec<_> = b
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            Output::Notify(Notification::FeeAboveLimit {
                job: j,
                fee_msat,
                max_fee_msat,
                ..
            }) => Some((j, fee_msat, max_fee_msat)),
            _ => None,
        })
        .collect();
    assert_eq!(over, [(job, max_fee + 1, max_fee)]);
}

// ---- item 11: bounded state, and no payment in doubt -------------------------------------------

#[test]
fn a_payment_in_doubt_is_looked_up_after_a_restore_never_paid_again() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11.clone()));
    // The customer decides to pay; the host saves before draining, then crashes.
    b.customer.handle_event(b.now, fb.clone());
    assert!(b.customer.needs_persistence());
    let snapshot = b.customer.snapshot();
    assert!(!b.customer.needs_persistence());
    let json = serde_json::to_string(&snapshot).unwrap();
    let snapshot: customer::CustomerSnapshot = serde_json::from_str(&json).unwrap();
    let mut config = CustomerConfig::new(["wss://relay.example"]);
    config.auto_pay_limit_msat = Some(10_000);
    config.seed = nostr_dvm::rng::SeedSource::Deterministic([7; 32]);
    b.customer = Customer::restore(keys_from_seed(43), config, snapshot, b.now).unwrap();
    b.out.clear();
    let out = b.drain();
    assert!(b.invoices_paid().is_empty(), "{out:?}");
    let lookups: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::LookupPayment {
                job: j,
                payment,
                bolt11: b,
                ..
            } => Some((*j, *payment, b.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(lookups.len(), 1, "{out:?}");
    assert_eq!(lookups[0].0, job);
    assert_eq!(lookups[0].2.as_deref(), Some(bolt11.as_str()));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Relay(RelayCommand::Subscribe { .. }))));
    // The same feedback delivered again after the restart is no new request.
    let again = b.feed(fb);
    assert!(again.is_empty(), "{again:?}");
    // The wallet says it is still in flight, then paid.
    let now = b.now;
    b.customer
        .handle_payment_outcome(now, lookups[0].1, PaymentOutcome::Pending)
        .unwrap();
    assert!(matches!(
        b.customer.pay(now, job, provider.public_key()),
        Err(customer::Error::AlreadyPaid { .. })
    ));
    b.customer
        .handle_payment_outcome(
            now,
            lookups[0].1,
            PaymentOutcome::Paid {
                preimage: None,
                fee_msat: 3,
            },
        )
        .unwrap();
    b.drain();
    assert!(b.invoices_paid().is_empty());
}

/// A bench whose public job a provider asked 2,000 msat for (no invoice).
fn asked_2_000() -> (Bench, Keys, EventId, Timestamp) {
    let mut b = Bench::new(|c| c);
    let provider = keys_from_seed(40);
    let (job, request) = b.public_job(None);
    let fb = b.payment_required(&provider, &request, 2_000, None);
    b.feed(fb);
    let now = b.now;
    (b, provider, job, now)
}

/// The bench's customer restored from `snapshot`.
fn restore(snapshot: nostr_dvm::customer::CustomerSnapshot, now: Timestamp) -> Customer {
    let mut config = CustomerConfig::new(["wss://relay.example"]);
    config.seed = nostr_dvm::rng::SeedSource::Deterministic([7; 32]);
    Customer::restore(keys_from_seed(43), config, snapshot, now).unwrap()
}

#[test]
fn a_zap_in_doubt_is_looked_up_too() {
    let (mut b, provider, job, now) = asked_2_000();
    let reference = b.customer.zap(now, job, provider.public_key()).unwrap();
    let snapshot = b.customer.snapshot();
    let mut restored = restore(snapshot, now);
    let out: Vec<_> = std::iter::from_fn(|| restored.poll_output()).collect();
    assert!(!out.iter().any(|o| matches!(o, Output::SendZap { .. })));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::LookupPayment { payment, .. } if *payment == reference)));
    assert!(restored.zap(now, job, provider.public_key()).is_err());
}

#[test]
fn a_zap_invoice_is_checked_recorded_once_and_looked_up_after_a_restore() {
    use nostr_dvm::nostr::JsonUtil;
    use sha2::{Digest, Sha256};

    let (mut b, provider, job, now) = asked_2_000();
    let lnurl = nostr_dvm::nip57::encode_lnurl("https://zaps.example/lnurlp/dvm").unwrap();
    let reference = b
        .customer
        .zap_via(now, job, provider.public_key(), &lnurl)
        .unwrap();
    let zap_request = b
        .drain()
        .into_iter()
        .find_map(|o| match o {
            Output::SendZap { zap_request, .. } => Some(zap_request),
            _ => None,
        })
        .unwrap();
    assert!(zap_request
        .tags
        .iter()
        .any(|t| t.as_slice() == ["lnurl", lnurl.as_str()]));
    let PaymentRef::Zap(zap) = reference else {
        panic!("a zap")
    };
    let digest: [u8; 32] = Sha256::digest(zap_request.as_json().as_bytes()).into();
    let invoice = |amount_msat: u64, hash: [u8; 32], preimage: u8| {
        TestLightningNode::new(45)
            .invoice(&InvoiceParams {
                amount_msat: Some(amount_msat),
                description: InvoiceDescription::Hash(hash),
                created_at: now,
                expiry_secs: 600,
                preimage: [preimage; 32],
            })
            .bolt11
    };
    // Another amount, or a description hash of something else: refused, nothing recorded.
    for wrong in [invoice(2_001, digest, 1), invoice(2_000, [0; 32], 2)] {
        assert!(matches!(
            b.customer.zap_invoice(now, zap, &wrong),
            Err(Error::InvalidZapInvoice { .. })
        ));
    }
    let right = invoice(2_000, digest, 3);
    let hash = b.customer.zap_invoice(now, zap, &right).unwrap();
    assert_eq!(hash, <[u8; 32]>::from(Sha256::digest([3; 32])));
    assert_eq!(
        b.customer.zap_invoice(now, zap, &right),
        Ok(hash),
        "again: harmless"
    );
    assert!(b.customer.needs_persistence());
    // Once recorded, no other invoice replaces it.
    assert!(b
        .customer
        .zap_invoice(now, zap, &invoice(2_000, digest, 4))
        .is_err());

    let snapshot = b.customer.snapshot();
    let mut restored = restore(snapshot, now);
    let out: Vec<_> = std::iter::from_fn(|| restored.poll_output()).collect();
    assert!(out.iter().any(|o| matches!(o,
        Output::LookupPayment { payment, bolt11: Some(b), .. } if *payment == reference && *b == right)));
    // The preimage must be that invoice's.
    assert_eq!(
        restored.handle_payment_outcome(
            now,
            reference,
            PaymentOutcome::Paid {
                preimage: Some([9; 32]),
                fee_msat: 0
            }
        ),
        Err(Error::PreimageMismatch)
    );
    restored
        .handle_payment_outcome(
            now,
            reference,
            PaymentOutcome::Paid {
                preimage: Some([3; 32]),
                fee_msat: 0,
            },
        )
        .unwrap();
}

#[test]
fn ended_jobs_are_forgotten_after_the_retention_unless_a_payment_is_in_doubt() {
    let mut b = Bench::new(|mut c| {
        c.auto_pay_limit_msat = Some(10_000);
        c.done_retention_secs = 100;
        c.payment_after_result_secs = 0;
        c
    });
    let provider = keys_from_seed(40);
    let (done, request) = b.public_job(None);
    let result = b.result(&provider, &request, "x");
    b.feed(result);
    assert_eq!(b.customer.is_ended(&done), Some(true));
    let (paying, request) = b.public_job(None);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    let result = b.result(&provider, &request, "y");
    b.feed(result);
    assert_eq!(b.customer.is_ended(&paying), Some(true));
    assert_eq!(b.customer.poll_timeout(), Some(Timestamp::from(T0 + 100)));
    b.customer.handle_timeout(Timestamp::from(T0 + 100));
    assert_eq!(b.customer.is_ended(&done), None);
    assert_eq!(b.customer.is_ended(&paying), Some(true));
    assert_eq!(b.customer.job_count(), 1);
    let (hash, _) = b.auto_paid();
    let later = Timestamp::from(T0 + 200);
    b.customer
        .handle_payment_outcome(
            later,
            PaymentRef::Invoice(hash),
            PaymentOutcome::Paid {
                preimage: None,
                fee_msat: 0,
            },
        )
        .unwrap();
    assert!(b.customer.poll_timeout().is_some_and(|t| t <= later));
    b.customer.handle_timeout(later);
    assert_eq!(b.customer.job_count(), 0);
    assert_eq!(b.customer.payments().count(), 0);
    assert_eq!(b.customer.poll_timeout(), None);
}

#[test]
fn answers_per_job_are_capped() {
    let mut b = Bench::new(|mut c| {
        c.max_answers_per_job = 3;
        c
    });
    let (job, request) = b.public_job(None);
    for seed in 60..65 {
        let provider = keys_from_seed(seed);
        let fb = JobFeedback::builder(&request, FeedbackStatus::Processing)
            .sign(&provider, b.now, &mut b.rng)
            .unwrap();
        b.feed(fb);
    }
    assert_eq!(b.customer.answers(&job).map(|a| a.len()), Some(3));
    assert_eq!(b.refusals().len(), 2, "{:?}", b.refusals());
}

#[test]
fn an_answer_in_another_encryption_scheme_is_refused() {
    let mut b = Bench::new(|c| c);
    let provider = keys_from_seed(40);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("secret"));
    let (_, mut request) = b.submit(
        request,
        Delivery::Encrypted(provider.public_key(), Scheme::Nip44),
        &provider,
    );
    // NIP-04 instead of NIP-44.
    if let Some(enc) = request.encrypted.as_mut() {
        enc.scheme = Scheme::Nip04;
    }
    let result = b.result(&provider, &request, "x");
    b.feed(result);
    // An encrypted answer to a plaintext job is refused too.
    let (_, plain) = b.public_job(None);
    let mut encrypted = plain.clone();
    encrypted.encrypted = request.encrypted;
    let result = b.result(&provider, &encrypted, "y");
    b.feed(result);
    assert!(!b
        .out
        .iter()
        .any(|o| matches!(o, Output::Notify(Notification::Result { .. }))));
    assert_eq!(b.refusals().len(), 2, "{:?}", b.refusals());
}

#[test]
fn a_bid_of_exactly_the_price_is_auto_paid_when_the_limit_covers_the_fee() {
    let mut b = Bench::new(|mut c| {
        c.auto_pay_limit_msat = Some(5_000);
        c.max_fee_msat = 1_000;
        c
    });
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(Some(4_000));
    let bolt11 = b.invoice(Some(4_000));
    let fb = b.payment_required(&provider, &request, 4_000, Some(bolt11));
    b.feed(fb);
    assert_eq!(b.invoices_paid().len(), 1);
}
