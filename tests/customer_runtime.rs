//! The customer runtime's money path on a real local relay: a payment request auto-paid, the
//! state saved, the process restarted from the snapshot, and the payment looked up (never
//! paid again) and settled through `payment_outcome`.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

use nostr_dvm::customer::{
    CustomerConfig, Delivery, Notification as CustomerNote, Output, PaymentOutcome, PaymentRef,
};
use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest};
use nostr_dvm::nostr::{Filter, Keys, Kind, Timestamp};
use nostr_dvm::rng::SeedSource;
use nostr_dvm::runtime::{ConnectOptions, CustomerRuntime};
use nostr_dvm::testing::{keys_from_seed, InvoiceDescription, InvoiceParams, TestLightningNode};
use rand::rngs::OsRng;
use support::{customer_output, relay, KIND, WAIT};

#[tokio::test]
async fn a_payment_in_doubt_is_looked_up_after_a_restart() {
    let (_relay, url) = relay().await;
    let mut config = CustomerConfig::new([url.clone()]);
    config.auto_pay_limit_msat = Some(10_000);
    config.seed = SeedSource::Deterministic([5; 32]);
    let keys = keys_from_seed(43);
    let mut customer = CustomerRuntime::connect(keys.clone(), config.clone())
        .await
        .unwrap();
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("q"));
    let job = customer.submit(request, Delivery::Public).await.unwrap();

    // A provider (by hand) asks 2 sats with a real invoice.
    let events = customer
        .client()
        .fetch_events(Filter::new().id(job), WAIT)
        .await
        .unwrap();
    let request_event = events
        .into_iter()
        .next()
        .expect("the request is on the relay");
    let request = JobRequest::from_event(&request_event, None).unwrap();
    let now = Timestamp::now();
    let bolt11 = TestLightningNode::new(44)
        .invoice(&InvoiceParams {
            amount_msat: Some(2_000),
            description: InvoiceDescription::Direct("job".into()),
            created_at: now,
            expiry_secs: 600,
            preimage: [9; 32],
        })
        .bolt11;
    let provider = Keys::generate();
    let feedback = JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
        .amount(2_000, bolt11.clone())
        .sign(&provider, now, &mut OsRng)
        .unwrap();
    // Through another connection: nostr-sdk does not hand a client the events it published.
    let mut other = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([url]))
        .await
        .unwrap();
    other.publish(&feedback).await.unwrap();
    other.disconnect().await;
    let (payment_hash, paid) = customer_output(&mut customer, |o| match o {
        Output::PayInvoice {
            payment_hash,
            bolt11,
            ..
        } => Some((payment_hash, bolt11)),
        _ => None,
    })
    .await;
    assert_eq!(paid, bolt11);

    // The host saved before paying, then died.
    assert!(customer.customer().needs_persistence());
    let snapshot = customer.snapshot();
    customer.disconnect().await;

    let mut customer =
        CustomerRuntime::restore_with(keys, config, snapshot, ConnectOptions::default())
            .await
            .unwrap();
    let reference = customer_output(&mut customer, |o| match o {
        Output::PayInvoice { .. } | Output::SendZap { .. } => panic!("paid again: {o:?}"),
        Output::LookupPayment { payment, .. } => Some(payment),
        _ => None,
    })
    .await;
    assert_eq!(reference, PaymentRef::Invoice(payment_hash));
    customer
        .payment_outcome(
            reference,
            PaymentOutcome::Paid {
                preimage: Some([9; 32]),
                fee_msat: 0,
            },
        )
        .await
        .unwrap();
    let amount = customer_output(&mut customer, |o| match o {
        Output::PayInvoice { .. } | Output::SendZap { .. } => panic!("paid again: {o:?}"),
        Output::Notify(CustomerNote::Paid { amount_msat, .. }) => Some(amount_msat),
        _ => None,
    })
    .await;
    assert_eq!(amount, 2_000);
    customer.disconnect().await;
}
