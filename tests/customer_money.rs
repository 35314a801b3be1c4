//! Money safety of the customer (issue 10): what it pays, how much, to whom, and how often,
//! against hand-made (and malicious) provider answers signed with real keys and real
//! BOLT11 invoices.
#![cfg(feature = "test-util")]

use nostr_dvm::customer::{self, Customer, CustomerConfig, Delivery, Notification, Output};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip90::{
    FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult, KindRegistry,
};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, Timestamp};
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
}

impl Bench {
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
                Output::Publish { event, .. } => Some(event),
                _ => None,
            })
            .unwrap();
        let request =
            JobRequest::from_verified_event_with(&event, Some(provider), &KindRegistry::nip90())
                .unwrap();
        (job, request)
    }

    fn public_job(&mut self, bid: Option<u64>) -> (EventId, JobRequest) {
        let mut request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("q"));
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
fn payment_requests_after_the_result_are_ignored() {
    let mut b = Bench::with_limit(10_000);
    let provider = keys_from_seed(40);
    let (_, request) = b.public_job(None);
    let result = b.result(&provider, &request, "done");
    b.feed(result);
    let bolt11 = b.invoice(Some(2_000));
    let fb = b.payment_required(&provider, &request, 2_000, Some(bolt11));
    b.feed(fb);
    assert!(b.invoices_paid().is_empty(), "{:?}", b.out);
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
