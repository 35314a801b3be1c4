//! The provider harness shared by the provider test binaries: a provider with a trusted test
//! zapper, a customer key, real invoices from a test node, and helpers to read its outputs.
#![allow(dead_code, unused_imports)]
// The imports are re-exported so each test binary takes them with `use provider_harness::*`.

pub use nostr_dvm::encryption::Scheme;
pub use nostr_dvm::job::JobState;
pub use nostr_dvm::nip57::ZapRequestBuilder;
pub use nostr_dvm::nip59;
pub use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult};
pub use nostr_dvm::nostr::{Event, EventId, Keys, Kind, Tag, Timestamp};
pub use nostr_dvm::provider::{
    Admission, Notification, Output, PaymentPolicy, PaymentProof, Provider, ProviderConfig,
    RateLimit, RefundReason, RejectReason, RelayCommand, DELETION_REFRESH_SECS, EARLY_RECEIPT_SECS,
    MAX_EARLY_RECEIPTS,
};
pub use nostr_dvm::task::{FixedPrice, Quote, TaskError, TaskOutput};
pub use nostr_dvm::testing::{
    event_id, keys_from_seed, sign, InvoiceDescription, InvoiceParams, TestInvoice,
    TestLightningNode, TestZapper,
};
pub use rand::rngs::StdRng;
pub use rand::{RngCore, SeedableRng};

pub const T0: u64 = 1_760_000_000;
pub const KIND: u16 = 5050;
pub const PRICE: u64 = 21_000;

pub struct Harness {
    pub provider: Provider,
    pub keys: Keys,
    pub customer: Keys,
    pub zapper: TestZapper,
    pub node: TestLightningNode,
    pub rng: StdRng,
    pub now: u64,
    pub invoices: Vec<TestInvoice>,
}

impl Harness {
    pub fn new(config: impl FnOnce(ProviderConfig) -> ProviderConfig) -> Self {
        let keys = keys_from_seed(10);
        let zapper = TestZapper::new(keys_from_seed(11), TestLightningNode::new(12));
        let config = config(
            ProviderConfig::new([Kind::from(KIND)])
                .zappers([zapper.pubkey()])
                .relays(["wss://dvm.example"])
                .deterministic_seed([7; 32]),
        );
        let mut h = Self {
            provider: Provider::new(keys.clone(), config, Timestamp::from(T0)),
            keys,
            customer: keys_from_seed(20),
            zapper,
            node: TestLightningNode::new(13),
            rng: StdRng::seed_from_u64(90),
            now: T0,
            invoices: Vec::new(),
        };
        h.drain();
        h
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from(self.now)
    }

    pub fn drain(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(o) = self.provider.poll_output() {
            out.push(o);
        }
        out
    }

    pub fn request(
        &mut self,
        build: impl FnOnce(nostr_dvm::nip90::JobRequestBuilder) -> nostr_dvm::nip90::JobRequestBuilder,
    ) -> Event {
        let builder =
            build(JobRequest::builder(Kind::from(KIND)).input(JobInput::text("hello world")));
        builder
            .sign(&self.customer, self.now(), &mut self.rng)
            .unwrap()
    }

    pub fn send(&mut self, event: Event) -> Vec<Output> {
        self.provider.handle_event(self.now(), event);
        self.drain()
    }

    pub fn advance(&mut self, secs: u64) -> Vec<Output> {
        self.now += secs;
        self.provider.handle_timeout(self.now());
        self.drain()
    }

    /// Answers every RequestInvoice in `outputs` with a real invoice for the amount.
    pub fn answer_invoices(&mut self, outputs: &[Output]) -> Vec<Output> {
        let mut all = Vec::new();
        for o in outputs {
            if let Output::RequestInvoice {
                job,
                amount_msat,
                expiry_secs,
                ..
            } = o
            {
                let mut preimage = [0u8; 32];
                self.rng.fill_bytes(&mut preimage);
                let invoice = self.node.invoice(&InvoiceParams {
                    amount_msat: Some(*amount_msat),
                    description: InvoiceDescription::Direct("dvm job".into()),
                    created_at: self.now(),
                    expiry_secs: *expiry_secs,
                    preimage,
                });
                self.provider
                    .handle_invoice(self.now(), *job, Ok(invoice.bolt11.clone()))
                    .unwrap();
                self.invoices.push(invoice);
                all.extend(self.drain());
            }
        }
        all
    }

    /// A real zap for `bind_to`, paid through the trusted zapper.
    pub fn zap(&mut self, bind_to: EventId, amount: u64) -> Event {
        let request = ZapRequestBuilder::new(self.keys.public_key(), ["wss://dvm.example"])
            .amount_msat(amount)
            .event(bind_to)
            .sign(&self.customer, self.now(), &mut self.rng)
            .unwrap();
        let invoice = self
            .zapper
            .invoice_for(&request, amount, self.now(), &mut self.rng);
        self.zapper
            .receipt(&request, &invoice, self.now(), &mut self.rng)
    }

    pub fn state(&self, job: &EventId) -> JobState {
        self.provider.job_state(job).cloned().unwrap()
    }
}

pub fn published(outputs: &[Output]) -> Vec<&Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Relay(RelayCommand::Publish { event, .. }) => Some(event),
            _ => None,
        })
        .collect()
}

pub fn feedback(outputs: &[Output], customer: Option<&Keys>) -> Vec<JobFeedback> {
    published(outputs)
        .into_iter()
        .filter(|e| e.kind.as_u16() == 7000)
        .map(|e| JobFeedback::from_event(e, customer).unwrap())
        .collect()
}

pub fn statuses(outputs: &[Output]) -> Vec<FeedbackStatus> {
    feedback(outputs, None)
        .into_iter()
        .map(|f| f.status)
        .collect()
}

pub fn results(outputs: &[Output], customer: Option<&Keys>) -> Vec<JobResult> {
    published(outputs)
        .into_iter()
        .filter(|e| e.kind.as_u16() == KIND + 1000)
        .map(|e| JobResult::from_event(e, customer).unwrap())
        .collect()
}

pub fn run_tasks(outputs: &[Output]) -> Vec<EventId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::RunTask(r) => Some(r.job),
            _ => None,
        })
        .collect()
}

pub fn notes(outputs: &[Output]) -> Vec<&Notification> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Notify(n) => Some(n),
            _ => None,
        })
        .collect()
}

pub fn rejected(outputs: &[Output]) -> Vec<RejectReason> {
    notes(outputs)
        .into_iter()
        .filter_map(|n| match n {
            Notification::JobRejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

pub fn refunds(outputs: &[Output]) -> Vec<&nostr_dvm::provider::RefundDue> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Refund(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// `event` with `content` instead of its own, keeping its id and signature (which then sign
/// something else).
pub fn with_content(event: &Event, content: &str) -> Event {
    Event::new(
        event.id,
        event.pubkey,
        event.created_at,
        event.kind,
        event.tags.clone().to_vec(),
        content,
        event.sig,
    )
}

/// `event` with `other`'s signature: a valid id, a signature that does not sign it.
pub fn with_signature_of(event: &Event, other: &Event) -> Event {
    let mut forged = with_content(event, &event.content);
    forged.sig = other.sig;
    forged
}
