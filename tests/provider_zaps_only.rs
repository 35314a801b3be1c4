//! A provider paid by zaps alone (`ProviderConfig::zaps_only`): no invoice is asked of the
//! host, `payment-required` carries the amount without one, and only a verified zap of the
//! right amount from a trusted zapper pays. Real zap receipts and real signatures.
#![cfg(feature = "test-util")]

mod provider_harness;

use provider_harness::*;

/// A priced, zaps-only provider under `policy`, with no admission limit in the way.
fn zaps_only(policy: PaymentPolicy) -> Harness {
    Harness::new(|mut c| {
        c.zaps_only = true;
        c.admission.rate_limit = None;
        c.admission.global_rate_limit = None;
        c.pricing(FixedPrice(PRICE)).payment(policy)
    })
}

fn invoice_requests(outputs: &[Output]) -> usize {
    outputs
        .iter()
        .filter(|o| matches!(o, Output::RequestInvoice { .. }))
        .count()
}

/// The one `payment-required` feedback in `outputs`: its id, after checking it names the
/// price and no invoice.
fn payment_required(outputs: &[Output]) -> EventId {
    let asked: Vec<JobFeedback> = feedback(outputs, None)
        .into_iter()
        .filter(|f| f.status == FeedbackStatus::PaymentRequired)
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let amount = asked[0].amount.clone().expect("an amount tag");
    assert_eq!(amount.msat, PRICE);
    assert_eq!(amount.bolt11, None, "zaps only: no invoice");
    asked[0].id
}

#[test]
fn pay_first_asks_for_a_zap_at_once_and_only_a_verified_zap_starts_work() {
    let mut h = zaps_only(PaymentPolicy::PayFirst);
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(invoice_requests(&out), 0, "no invoice asked of the host");
    assert!(run_tasks(&out).is_empty());
    let asked = payment_required(&out);
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);
    assert!(notes(&out).iter().any(|n| matches!(
        n,
        Notification::PaymentRequired { job, amount_msat } if *job == request.id && *amount_msat == PRICE
    )));

    // No invoice, so no wallet proof can be for it.
    let proof = h
        .provider
        .handle_payment(h.now(), request.id, PaymentProof::Preimage([3; 32]));
    assert!(proof.is_err(), "{proof:?}");
    assert!(run_tasks(&h.drain()).is_empty());

    // Less than the price does not pay.
    let short = h.zap(asked, PRICE - 1_000);
    assert!(run_tasks(&h.send(short)).is_empty());
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);

    // A receipt signed by a zapper the provider does not trust does not pay.
    let stranger = TestZapper::new(keys_from_seed(66), TestLightningNode::new(67));
    let zap_request = ZapRequestBuilder::new(h.keys.public_key(), ["wss://dvm.example"])
        .amount_msat(PRICE)
        .event(asked)
        .sign(&h.customer, h.now(), &mut h.rng)
        .unwrap();
    let bolt11 = stranger.invoice_for(&zap_request, PRICE, h.now(), &mut h.rng);
    let forged = stranger.receipt(&zap_request, &bolt11, h.now(), &mut h.rng);
    assert!(run_tasks(&h.send(forged)).is_empty());

    let receipt = h.zap(asked, PRICE);
    assert_eq!(run_tasks(&h.send(receipt.clone())), [request.id]);
    // The same receipt again starts nothing.
    assert!(run_tasks(&h.send(receipt)).is_empty());
}

#[test]
fn an_unpaid_zap_request_expires_after_the_payment_window() {
    let mut h = zaps_only(PaymentPolicy::PayFirst);
    let request = h.request(|b| b);
    let asked = payment_required(&h.send(request.clone()));
    h.advance(599);
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);
    h.advance(2);
    assert_eq!(h.state(&request.id), JobState::Expired);
    let late = h.zap(asked, PRICE);
    let out = h.send(late);
    assert!(run_tasks(&out).is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Refund(_))));
}

#[test]
fn pay_after_result_publishes_the_result_then_asks_for_a_zap() {
    let mut h = zaps_only(PaymentPolicy::PayAfterResult);
    let request = h.request(|b| b);
    assert_eq!(run_tasks(&h.send(request.clone())), [request.id]);
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("the result")))
        .unwrap();
    let out = h.drain();
    assert_eq!(invoice_requests(&out), 0);
    assert_eq!(results(&out, None)[0].content, "the result");
    let result_id = results(&out, None)[0].id;
    payment_required(&out);
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: false });
    let receipt = h.zap(result_id, PRICE);
    h.send(receipt);
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: true });
}

#[test]
fn partial_then_pay_holds_the_result_until_the_zap() {
    let mut h = zaps_only(PaymentPolicy::PartialThenPay);
    let request = h.request(|b| b);
    h.send(request.clone());
    let mut output = TaskOutput::new("the whole answer");
    output.sample = Some("the wh...".into());
    h.provider
        .handle_task_result(h.now(), request.id, Ok(output))
        .unwrap();
    let out = h.drain();
    assert_eq!(invoice_requests(&out), 0);
    assert!(results(&out, None).is_empty(), "held until paid");
    let asked = payment_required(&out);
    assert_eq!(h.state(&request.id), JobState::AwaitingPaymentForResult);
    let receipt = h.zap(asked, PRICE);
    let out = h.send(receipt);
    assert_eq!(results(&out, None)[0].content, "the whole answer");
}

#[test]
fn a_job_left_waiting_for_an_invoice_is_asked_to_be_zapped_after_a_restore() {
    // Snapshot taken while the host's backend was making the invoice; the provider comes
    // back paid by zaps alone.
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(invoice_requests(&out), 1);
    assert_eq!(h.state(&request.id), JobState::Invoicing);
    let snapshot = h.provider.snapshot();
    let mut config = ProviderConfig::new([Kind::from(KIND)])
        .zappers([h.zapper.pubkey()])
        .relays(["wss://dvm.example"])
        .pricing(FixedPrice(PRICE))
        .deterministic_seed([8; 32]);
    config.zaps_only = true;
    h.provider = Provider::restore(h.keys.clone(), config, snapshot).unwrap();
    h.provider.resume(h.now());
    let out = h.drain();
    assert_eq!(invoice_requests(&out), 0);
    let asked = payment_required(&out);
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);
    let receipt = h.zap(asked, PRICE);
    assert_eq!(run_tasks(&h.send(receipt)), [request.id]);
}

#[test]
fn free_jobs_are_not_affected() {
    let mut h = Harness::new(|mut c| {
        c.zaps_only = true;
        c
    });
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(run_tasks(&out), [request.id]);
    assert!(feedback(&out, None)
        .iter()
        .all(|f| f.status != FeedbackStatus::PaymentRequired));
}

/// The invoice rate limit bounds the invoices the host's node makes; a zaps-only provider
/// makes none, so priced requests beyond it are still asked to be zapped (with invoices they
/// would be refused "too many invoices").
#[test]
fn the_invoice_rate_limit_does_not_refuse_zaps_only_jobs() {
    let mut h = Harness::new(|mut c| {
        c.zaps_only = true;
        c.admission.rate_limit = None;
        c.admission.global_rate_limit = None;
        c.admission.invoice_rate_limit = Some(RateLimit {
            max_requests: 1,
            window_secs: 60,
        });
        c.pricing(FixedPrice(PRICE))
    });
    for n in 0..3 {
        let request = h.request(|b| b.input(JobInput::text(format!("job {n}"))));
        let out = h.send(request.clone());
        payment_required(&out);
        assert!(rejected(&out).is_empty(), "job {n}: {:?}", rejected(&out));
        assert_eq!(h.state(&request.id), JobState::AwaitingPayment);
    }
}
