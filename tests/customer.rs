//! The customer against a real provider state machine, events passed by hand.
#![cfg(feature = "test-util")]

use nostr_dvm::customer::{self, Customer, CustomerConfig, Delivery, Notification};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip90::{FeedbackStatus, JobInput, JobRequest};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, Tag, Timestamp};
use nostr_dvm::provider::{self, Provider, ProviderConfig};
use nostr_dvm::task::{FixedPrice, TaskOutput};
use nostr_dvm::testing::{
    keys_from_seed, sign, InvoiceDescription, InvoiceParams, TestLightningNode, TestZapper,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

const T0: u64 = 1_760_000_000;
const KIND: u16 = 5050;

struct World {
    customer: Customer,
    provider: Provider,
    provider_keys: Keys,
    zapper: TestZapper,
    node: TestLightningNode,
    now: Timestamp,
    notes: Vec<Notification>,
    customer_out: Vec<customer::Output>,
}

impl World {
    fn new(
        provider_config: impl FnOnce(ProviderConfig) -> ProviderConfig,
        customer_config: impl FnOnce(CustomerConfig) -> CustomerConfig,
    ) -> Self {
        let provider_keys = keys_from_seed(40);
        let zapper = TestZapper::new(keys_from_seed(41), TestLightningNode::new(42));
        let now = Timestamp::from(T0);
        let provider = Provider::new(
            provider_keys.clone(),
            provider_config(ProviderConfig::new([Kind::from(KIND)]).zappers([zapper.pubkey()])),
            now,
        );
        let mut config = customer_config(CustomerConfig::new(["wss://relay.example"]));
        config.seed = nostr_dvm::rng::SeedSource::Deterministic([3; 32]);
        let customer = Customer::new(keys_from_seed(43), config, now);
        Self {
            customer,
            provider,
            provider_keys,
            zapper,
            node: TestLightningNode::new(44),
            now,
            notes: Vec::new(),
            customer_out: Vec::new(),
        }
    }

    /// Moves events both ways until both sides are idle; runs tasks with `answer`, and
    /// answers invoice requests with real invoices.
    fn pump(&mut self, answer: &str) {
        for _ in 0..20 {
            let mut moved = false;
            while let Some(out) = self.customer.poll_output() {
                moved = true;
                match &out {
                    customer::Output::Relay(customer::RelayCommand::Publish { event, .. }) => {
                        self.provider.handle_event(self.now, event.clone())
                    }
                    customer::Output::Notify(n) => self.notes.push(n.clone()),
                    _ => {}
                }
                self.customer_out.push(out);
            }
            while let Some(out) = self.provider.poll_output() {
                moved = true;
                match out {
                    provider::Output::Relay(provider::RelayCommand::Publish { event, .. }) => {
                        self.customer.handle_event(self.now, event)
                    }
                    provider::Output::RunTask(request) => self
                        .provider
                        .handle_task_result(self.now, request.job, Ok(TaskOutput::new(answer)))
                        .unwrap(),
                    provider::Output::RequestInvoice {
                        job, amount_msat, ..
                    } => {
                        let invoice = self.node.invoice(&InvoiceParams {
                            amount_msat: Some(amount_msat),
                            description: InvoiceDescription::Direct("job".into()),
                            created_at: self.now,
                            expiry_secs: 600,
                            preimage: [8; 32],
                        });
                        self.provider
                            .handle_invoice(self.now, job, Ok(invoice.bolt11))
                            .unwrap();
                    }
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn results(&self) -> Vec<(EventId, String)> {
        self.notes
            .iter()
            .filter_map(|n| match n {
                Notification::Result { job, content, .. } => Some((*job, content.clone())),
                _ => None,
            })
            .collect()
    }

    fn request(&self) -> nostr_dvm::nip90::JobRequestBuilder {
        JobRequest::builder(Kind::from(KIND)).input(JobInput::text("question"))
    }
}

#[test]
fn every_delivery_gets_its_result_back() {
    let me = keys_from_seed(40).public_key();
    for delivery in [
        Delivery::Public,
        Delivery::To(me),
        Delivery::Encrypted(me, Scheme::Nip44),
        Delivery::Encrypted(me, Scheme::Nip04),
        Delivery::GiftWrap(me),
    ] {
        let mut w = World::new(|c| c, |c| c);
        let request = w.request();
        let job = w.customer.submit(w.now, request, delivery).unwrap();
        w.pump("the answer");
        assert_eq!(
            w.results(),
            [(job, "the answer".to_owned())],
            "{delivery:?}"
        );
        assert!(
            !w.notes
                .iter()
                .any(|n| matches!(n, Notification::Refused { .. })),
            "{delivery:?}"
        );
    }
}

#[test]
fn an_encrypted_conversation_with_one_provider_costs_the_customer_one_ecdh() {
    let me = keys_from_seed(40).public_key();
    let mut w = World::new(
        |mut c| {
            c.success_feedback = true;
            c
        },
        |c| c,
    );
    for n in 0..3 {
        let request = w.request().param("n", n.to_string());
        let job = w
            .customer
            .submit(w.now, request, Delivery::Encrypted(me, Scheme::Nip44))
            .unwrap();
        w.pump("the answer");
        assert!(w.results().contains(&(job, "the answer".to_owned())));
    }
    // Each job: its request encrypted and read back, then processing, result and success
    // decrypted: 15 lookups, one derivation.
    assert_eq!(w.customer.conversation_cache_stats(), (14, 1));
}

#[test]
fn payment_is_explicit_unless_within_the_auto_pay_limit() {
    let mut w = World::new(|c| c.pricing(FixedPrice(5_000)), |c| c);
    let job = w
        .customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("x");
    assert!(w.notes.iter().any(|n| matches!(
        n,
        Notification::PaymentRequested {
            amount_msat: 5_000,
            bolt11: Some(_),
            ..
        }
    )));
    assert!(!w
        .customer_out
        .iter()
        .any(|o| matches!(o, customer::Output::PayInvoice { .. })));
    let provider = w.provider_keys.public_key();
    w.customer.pay(w.now, job, provider).unwrap();
    let out: Vec<_> = std::iter::from_fn(|| w.customer.poll_output()).collect();
    assert!(matches!(
        &out[..],
        [customer::Output::PayInvoice {
            amount_msat: 5_000,
            ..
        }]
    ));
    assert!(w
        .customer
        .pay(w.now, job, keys_from_seed(1).public_key())
        .is_err());

    let mut w = World::new(
        |c| c.pricing(FixedPrice(5_000)),
        |mut c| {
            // The limit covers the price and the fee allowance (1 sat by default).
            c.auto_pay_limit_msat = Some(6_000);
            c
        },
    );
    w.customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("x");
    assert!(w
        .customer_out
        .iter()
        .any(|o| matches!(o, customer::Output::PayInvoice { .. })));

    let mut w = World::new(
        |c| c.pricing(FixedPrice(5_001)),
        |mut c| {
            c.auto_pay_limit_msat = Some(6_000);
            c
        },
    );
    w.customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("x");
    assert!(!w
        .customer_out
        .iter()
        .any(|o| matches!(o, customer::Output::PayInvoice { .. })));
}

#[test]
fn a_zap_from_the_customer_pays_the_provider() {
    let mut w = World::new(|c| c.pricing(FixedPrice(7_000)), |c| c);
    let job = w
        .customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("paid answer");
    assert!(w.results().is_empty());
    let provider = w.provider_keys.public_key();
    w.customer.zap(w.now, job, provider).unwrap();
    let zap_request = std::iter::from_fn(|| w.customer.poll_output())
        .find_map(|o| match o {
            customer::Output::SendZap { zap_request, .. } => Some(zap_request),
            _ => None,
        })
        .unwrap();
    // The host sends it to the LNURL server, pays, and the zapper publishes the receipt.
    let mut rng = StdRng::seed_from_u64(1);
    let invoice = w.zapper.invoice_for(&zap_request, 7_000, w.now, &mut rng);
    let receipt = w.zapper.receipt(&zap_request, &invoice, w.now, &mut rng);
    w.provider.handle_event(w.now, receipt);
    w.pump("paid answer");
    assert_eq!(w.results(), [(job, "paid answer".to_owned())]);
}

#[test]
fn forged_and_stray_answers_are_refused() {
    let me = keys_from_seed(40).public_key();
    let mut w = World::new(|c| c, |c| c);
    let job = w
        .customer
        .submit(w.now, w.request(), Delivery::To(me))
        .unwrap();
    while w.customer.poll_output().is_some() {}
    let mut rng = StdRng::seed_from_u64(2);
    let customer = w.customer.public_key().to_hex();
    let reply_tags = |job: EventId| {
        vec![
            Tag::parse(["e".to_owned(), job.to_hex()]).unwrap(),
            Tag::parse(["p".to_owned(), customer.clone()]).unwrap(),
        ]
    };
    // Another provider answers a job addressed to ours.
    let intruder = keys_from_seed(50);
    let fake = sign(
        &intruder,
        Kind::from(KIND + 1000),
        reply_tags(job),
        "fake",
        w.now,
        &mut rng,
    );
    w.customer.handle_event(w.now, fake);
    // Our provider's key, but a tampered event.
    let real = sign(
        &w.provider_keys,
        Kind::from(KIND + 1000),
        reply_tags(job),
        "real",
        w.now,
        &mut rng,
    );
    let tampered = Event::new(
        real.id,
        real.pubkey,
        real.created_at,
        real.kind,
        real.tags.clone().to_vec(),
        "tampered",
        real.sig,
    );
    w.customer.handle_event(w.now, tampered);
    // A result whose request tag names another job.
    let mut tags = reply_tags(job);
    tags.push(
        Tag::parse([
            "request".to_owned(),
            format!("{{\"id\":\"{}\"}}", EventId::all_zeros().to_hex()),
        ])
        .unwrap(),
    );
    let wrong = sign(
        &w.provider_keys,
        Kind::from(KIND + 1000),
        tags,
        "wrong",
        w.now,
        &mut rng,
    );
    w.customer.handle_event(w.now, wrong);
    let notes: Vec<_> = std::iter::from_fn(|| w.customer.poll_output()).collect();
    let refused = notes
        .iter()
        .filter(|o| matches!(o, customer::Output::Notify(Notification::Refused { .. })))
        .count();
    assert_eq!(refused, 3);
    assert!(!notes
        .iter()
        .any(|o| matches!(o, customer::Output::Notify(Notification::Result { .. }))));
}

#[test]
fn cancel_and_timeout() {
    let mut w = World::new(
        |mut c| {
            c.auto_accept = false;
            c
        },
        |c| c,
    );
    let job = w
        .customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("x");
    w.customer.cancel(w.now, job).unwrap();
    w.pump("x");
    assert_eq!(
        w.provider.job_state(&job),
        Some(&nostr_dvm::job::JobState::Cancelled)
    );

    let mut w = World::new(
        |mut c| {
            c.auto_accept = false;
            c
        },
        |c| c,
    );
    let job = w
        .customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("x");
    let at = w.customer.poll_timeout().unwrap();
    w.customer.handle_timeout(at);
    let out: Vec<_> = std::iter::from_fn(|| w.customer.poll_output()).collect();
    assert!(out.iter().any(
        |o| matches!(o, customer::Output::Notify(Notification::TimedOut { job: j }) if *j == job)
    ));
}

#[test]
fn feedback_statuses_reach_the_application() {
    let mut w = World::new(|c| c, |c| c);
    w.customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("x");
    assert!(w.notes.iter().any(|n| matches!(
        n,
        Notification::Feedback {
            status: FeedbackStatus::Processing,
            ..
        }
    )));
}

#[test]
fn discovery_reads_announcements() {
    let mut rng = StdRng::seed_from_u64(3);
    let keys = keys_from_seed(60);
    let event = nostr_dvm::nip89::HandlerInfo::builder("x")
        .kind(Kind::from(KIND))
        .metadata(nostr_dvm::nip89::HandlerMetadata {
            accepts_gift_wraps: Some(true),
            ..Default::default()
        })
        .sign(&keys, Timestamp::from(T0), &mut rng)
        .unwrap();
    let found = customer::discover([&event], Kind::from(KIND));
    assert_eq!(found.len(), 1);
    assert!(customer::discover([&event], Kind::from(5001)).is_empty());
}

#[test]
fn a_payment_asked_with_the_result_is_auto_paid_once_and_ends_the_job() {
    let mut w = World::new(
        |c| {
            c.pricing(FixedPrice(5_000))
                .payment(provider::PaymentPolicy::PayAfterResult)
        },
        |mut c| {
            c.auto_pay_limit_msat = Some(10_000);
            c
        },
    );
    let job = w
        .customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    assert_eq!(w.customer.is_ended(&job), Some(false));
    w.pump("paid after");
    assert_eq!(w.results(), [(job, "paid after".to_owned())]);
    let paid: Vec<_> = w
        .customer_out
        .iter()
        .filter(|o| {
            matches!(
                o,
                customer::Output::PayInvoice {
                    amount_msat: 5_000,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(paid.len(), 1, "{:?}", w.customer_out);
    assert_eq!(w.customer.is_ended(&job), Some(true));
}

#[test]
fn partial_then_pay_is_paid_once_and_the_result_released() {
    let mut w = World::new(
        |c| {
            c.pricing(FixedPrice(5_000))
                .payment(provider::PaymentPolicy::PartialThenPay)
        },
        |mut c| {
            c.auto_pay_limit_msat = Some(10_000);
            c
        },
    );
    let job = w
        .customer
        .submit(w.now, w.request(), Delivery::Public)
        .unwrap();
    w.pump("the full answer");
    assert!(w.results().is_empty());
    let hash = w
        .customer_out
        .iter()
        .find_map(|o| match o {
            customer::Output::PayInvoice { payment_hash, .. } => Some(*payment_hash),
            _ => None,
        })
        .unwrap();
    // The wallet pays; the provider's own wallet sees it; the host reports the outcome.
    w.provider
        .handle_payment(w.now, job, provider::PaymentProof::Preimage([8; 32]))
        .unwrap();
    w.customer
        .handle_payment_outcome(
            w.now,
            customer::PaymentRef::Invoice(hash),
            customer::PaymentOutcome::Paid {
                preimage: Some([8; 32]),
                fee_msat: 1,
            },
        )
        .unwrap();
    w.pump("the full answer");
    assert_eq!(w.results(), [(job, "the full answer".to_owned())]);
    let paid = w
        .customer_out
        .iter()
        .filter(|o| matches!(o, customer::Output::PayInvoice { .. }))
        .count();
    assert_eq!(paid, 1);
    assert_eq!(w.customer.is_ended(&job), Some(true));
}
