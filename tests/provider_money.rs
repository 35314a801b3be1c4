//! Money safety on the provider side: each test is an attack (or an unlucky order of inputs)
//! that worked before the fix, with real invoices, real zap receipts and real signatures.
#![cfg(feature = "test-util")]

mod provider_harness;

use lightning_invoice::Currency;
use nostr_dvm::provider::RefundDue;
use provider_harness::*;

/// A config whose only admission limits are the ones a test sets.
fn unlimited(c: ProviderConfig) -> ProviderConfig {
    c.admission(Admission {
        rate_limit: None,
        global_rate_limit: None,
        invoice_rate_limit: None,
        ..Admission::default()
    })
}

fn refunds(outputs: &[Output]) -> Vec<RefundDue> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Refund(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn request_from(
    h: &mut Harness,
    keys: &Keys,
    build: impl FnOnce(nostr_dvm::nip90::JobRequestBuilder) -> nostr_dvm::nip90::JobRequestBuilder,
) -> Event {
    build(JobRequest::builder(Kind::from(KIND)).input(JobInput::text("hello world")))
        .sign(keys, h.now(), &mut h.rng)
        .unwrap()
}

/// A pay-first job paid by a zap on the request itself (so the receipt would still bind to
/// the request if it were made again); returns the request and the receipt.
fn paid_job(h: &mut Harness) -> (Event, Event) {
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    let out = h.answer_invoices(&out);
    let fb = feedback(&out, None);
    assert_eq!(fb[0].status, FeedbackStatus::PaymentRequired);
    let receipt = h.zap(request.id, PRICE);
    assert_eq!(run_tasks(&h.send(receipt.clone())), [request.id]);
    (request, receipt)
}

// ---- 1. a spent receipt never pays again ------------------------------------------------------

#[test]
fn a_flood_that_evicts_a_paid_job_cannot_make_its_receipt_pay_again() {
    let mut h = Harness::new(|c| {
        unlimited(c.pricing(FixedPrice(PRICE))).admission(Admission {
            rate_limit: None,
            global_rate_limit: None,
            invoice_rate_limit: None,
            max_jobs: 4,
            ..Admission::default()
        })
    });
    let (request, receipt) = paid_job(&mut h);
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("done")))
        .unwrap();
    h.drain();
    // Cheap low-bid requests from fresh keys: each is refused at once and ends terminal.
    let mut at_capacity = 0;
    for i in 0..40u8 {
        let stranger = keys_from_seed(100 + i);
        let flood = request_from(&mut h, &stranger, |b| b.bid(1_000));
        let out = h.send(flood);
        if rejected(&out).contains(&RejectReason::AtCapacity) {
            at_capacity += 1;
        }
    }
    // The table rolled over, the memory of dropped ids filled, and then the provider refused
    // new work instead of forgetting.
    assert!(h.provider.job_state(&request.id).is_none(), "evicted");
    assert!(at_capacity > 0, "refuses rather than forgets");
    // The original request and its receipt again: nothing runs.
    let out = h.send(request.clone());
    assert!(run_tasks(&out).is_empty());
    let out = h.send(receipt.clone());
    assert!(run_tasks(&out).is_empty());
    // Even once the request turned stale and the ids expired, the receipt stays spent.
    h.advance(3_601);
    let out = h.send(request);
    assert_eq!(rejected(&out), [RejectReason::Stale]);
    assert_eq!(h.provider.ledger().len(), 1);
    assert!(h.provider.ledger().receipt_spent(&receipt.id));
}

#[test]
fn spent_payments_outlive_their_job_and_expire_only_by_time() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let (request, receipt) = paid_job(&mut h);
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("done")))
        .unwrap();
    h.drain();
    // Retention passes: the job is dropped, its payment is not.
    h.advance(3_601);
    assert!(h.provider.job_state(&request.id).is_none());
    assert_eq!(h.provider.ledger().len(), 1);
    let out = h.send(receipt.clone());
    assert!(run_tasks(&out).is_empty());
    // A day later (spent_retention_secs) it goes.
    h.advance(86_400);
    assert!(h.provider.ledger().is_empty());
}

#[test]
fn requests_dated_in_the_future_are_refused() {
    let mut h = Harness::new(unlimited);
    h.now += 301;
    let ahead = h.request(|b| b);
    h.now -= 301;
    assert_eq!(rejected(&h.send(ahead)), [RejectReason::FutureDated]);
    h.now += 299;
    let near = h.request(|b| b.param("n", "2"));
    h.now -= 299;
    assert_eq!(run_tasks(&h.send(near.clone())), [near.id]);

    // Inside a gift wrap the rumor's date counts.
    h.now += 10_000;
    let request = h.request(|b| b.param("n", "3"));
    h.now -= 10_000;
    let rumor = nostr_dvm::nostr::UnsignedEvent::from(request);
    let wrap = nip59::gift_wrap(
        &h.customer,
        &h.keys.public_key(),
        rumor,
        h.now(),
        &mut h.rng,
    )
    .unwrap();
    assert_eq!(rejected(&h.send(wrap)), [RejectReason::FutureDated]);
}

#[test]
fn a_receipt_older_than_its_job_is_refused() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    h.answer_invoices(&out);
    // A receipt paid before the request was made by more than the lookback (60 s) and the
    // future skew a request may claim (300 s).
    h.now -= 361;
    let receipt = h.zap(request.id, PRICE);
    h.now += 361;
    let out = h.send(receipt);
    assert!(run_tasks(&out).is_empty());
    assert!(notes(&out).iter().any(|n| matches!(
        n,
        Notification::PaymentRefused { reason, .. } if reason.contains("older than the job")
    )));
}

// ---- 2 and 3. payments after deadlines, for ended jobs -----------------------------------------

#[test]
fn a_payment_after_the_window_never_starts_work_whatever_the_timer_order() {
    for via_wallet in [false, true] {
        let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
        let request = h.request(|b| b);
        let out = h.send(request.clone());
        let out = h.answer_invoices(&out);
        let fb = feedback(&out, None);
        // The window (600 s) passes; the host has not run the timer yet.
        h.now += 601;
        let out = if via_wallet {
            let preimage = h.invoices[0].preimage;
            h.provider
                .handle_payment(h.now(), request.id, PaymentProof::Preimage(preimage))
                .unwrap();
            h.drain()
        } else {
            let receipt = h.zap(fb[0].id, PRICE);
            h.send(receipt)
        };
        assert!(run_tasks(&out).is_empty(), "wallet: {via_wallet}");
        let refund = refunds(&out).remove(0);
        assert_eq!(refund.reason, RefundReason::PaymentWindowClosed);
        assert_eq!(refund.job, request.id);
        assert_eq!(refund.customer, h.customer.public_key());
        assert_eq!(refund.amount_msat, PRICE);
        if via_wallet {
            assert_eq!(refund.payment_hash, h.invoices[0].payment_hash);
            assert_eq!(refund.payer, None);
            assert_eq!(refund.via, nostr_dvm::provider::PaymentVia::Wallet);
        } else {
            assert_eq!(refund.payer, Some(h.customer.public_key()));
        }
        assert_eq!(statuses(&out), [FeedbackStatus::Error]);
        assert_eq!(h.state(&request.id), JobState::Expired);
        // The timer now finds nothing to do, and the same proof is not refunded twice.
        assert!(run_tasks(&h.advance(1)).is_empty());
    }
}

#[test]
fn a_payment_after_the_request_expired_never_starts_work() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let expires = Timestamp::from(h.now + 30);
    let request = h.request(|b| b.expiration(expires));
    let out = h.send(request.clone());
    let out = h.answer_invoices(&out);
    let fb = feedback(&out, None);
    let receipt = h.zap(fb[0].id, PRICE);
    h.now += 31;
    let out = h.send(receipt);
    assert!(run_tasks(&out).is_empty());
    assert_eq!(refunds(&out)[0].reason, RefundReason::RequestExpired);
}

#[test]
fn payments_for_ended_jobs_are_refunded_and_the_closed_window_is_told() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    let out = h.answer_invoices(&out);
    let fb = feedback(&out, None);
    let out = h.advance(601);
    // The customer hears that the window closed.
    let told = feedback(&out, None);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].status, FeedbackStatus::Error);
    assert!(told[0]
        .extra_info
        .as_deref()
        .unwrap()
        .contains("payment window closed"));
    assert_eq!(h.state(&request.id), JobState::Expired);
    let receipt = h.zap(fb[0].id, PRICE);
    let out = h.send(receipt);
    assert!(run_tasks(&out).is_empty());
    assert_eq!(
        refunds(&out)[0].reason,
        RefundReason::JobEnded("expired".into())
    );
}

#[test]
fn a_second_payment_of_a_running_job_is_refunded() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let (request, _) = paid_job(&mut h);
    // The customer also zaps the request itself.
    let second = h.zap(request.id, PRICE);
    let out = h.send(second);
    assert!(run_tasks(&out).is_empty());
    assert_eq!(refunds(&out)[0].reason, RefundReason::AlreadyPaid);
    assert_eq!(h.state(&request.id), JobState::Running);
}

#[test]
fn refunds_survive_a_snapshot() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let (request, _) = paid_job(&mut h);
    let second = h.zap(request.id, PRICE);
    h.provider.handle_event(h.now(), second);
    let snapshot = h.provider.snapshot();
    let config = unlimited(
        ProviderConfig::new([Kind::from(KIND)])
            .zappers([h.zapper.pubkey()])
            .pricing(FixedPrice(PRICE)),
    );
    let mut restored = Provider::restore(h.keys.clone(), config, snapshot).unwrap();
    let out: Vec<_> = std::iter::from_fn(|| restored.poll_output()).collect();
    assert_eq!(refunds(&out).len(), 1);
}

// ---- 4. a paid job always ends -----------------------------------------------------------------

#[test]
fn a_result_that_cannot_be_built_fails_the_paid_job_with_a_reason() {
    for policy in [PaymentPolicy::PayFirst, PaymentPolicy::PartialThenPay] {
        let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE)).payment(policy)));
        let me = h.keys.public_key();
        let request = h.request(|b| b.provider(me).encrypt(Scheme::Nip44));
        let out = h.send(request.clone());
        if policy == PaymentPolicy::PayFirst {
            let out = h.answer_invoices(&out);
            let fb = feedback(&out, Some(&h.customer.clone()));
            let receipt = h.zap(fb[0].id, PRICE);
            assert_eq!(run_tasks(&h.send(receipt)), [request.id]);
        } else {
            assert_eq!(run_tasks(&out), [request.id]);
        }
        // NIP-44 cannot encrypt an empty message: the result cannot be built.
        h.provider
            .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("")))
            .expect("not the host's error");
        let out = h.drain();
        assert!(
            matches!(h.state(&request.id), JobState::Failed { .. }),
            "{policy:?}"
        );
        let customer = h.customer.clone();
        let told: Vec<_> = feedback(&out, Some(&customer))
            .into_iter()
            .map(|f| f.status)
            .collect();
        assert_eq!(told, [FeedbackStatus::Error], "{policy:?}");
        assert!(notes(&out)
            .iter()
            .any(|n| matches!(n, Notification::JobFailed { .. })));
        // No payment was asked for a result that does not exist.
        assert!(!out
            .iter()
            .any(|o| matches!(o, Output::RequestInvoice { .. })));
    }
}

// ---- 6. partial then pay shows only the sample ------------------------------------------------

#[test]
fn partial_then_pay_publishes_no_progress_before_payment() {
    let mut h = Harness::new(|c| {
        unlimited(
            c.pricing(FixedPrice(PRICE))
                .payment(PaymentPolicy::PartialThenPay),
        )
    });
    let request = h.request(|b| b);
    h.send(request.clone());
    h.provider
        .handle_task_progress(h.now(), request.id, "the whole answer, for free")
        .unwrap();
    assert!(published(&h.drain()).is_empty());
    let mut output = TaskOutput::new("the whole answer");
    output.sample = Some("the wh...".into());
    h.provider
        .handle_task_result(h.now(), request.id, Ok(output))
        .unwrap();
    let out = h.drain();
    let out = h.answer_invoices(&out);
    let fb = feedback(&out, None);
    assert_eq!(
        fb.iter().map(|f| f.status.clone()).collect::<Vec<_>>(),
        [FeedbackStatus::Partial, FeedbackStatus::PaymentRequired]
    );
    assert_eq!(fb[0].content, "the wh...");
    assert!(results(&out, None).is_empty());
    let receipt = h.zap(fb[1].id, PRICE);
    let out = h.send(receipt);
    assert_eq!(results(&out, None)[0].content, "the whole answer");
}

// ---- 7. invoices a real wallet can make ---------------------------------------------------------

fn invoice(h: &Harness, amount_msat: u64, created_at: u64, expiry_secs: u64) -> String {
    h.node
        .invoice(&InvoiceParams {
            amount_msat: Some(amount_msat),
            description: InvoiceDescription::Direct("dvm job".into()),
            created_at: Timestamp::from(created_at),
            expiry_secs,
            preimage: [5; 32],
        })
        .bolt11
}

#[test]
fn prices_round_up_to_whole_sats_before_the_bid_check() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(21_500))));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    let (amount, expiry) = out
        .iter()
        .find_map(|o| match o {
            Output::RequestInvoice {
                amount_msat,
                expiry_secs,
                ..
            } => Some((*amount_msat, *expiry_secs)),
            _ => None,
        })
        .unwrap();
    assert_eq!(amount, 22_000);
    assert_eq!(expiry, 600 + 60, "payment window + invoice timeout");
    // A bid between the price and the rounded price is too low, and told so.
    let low = h.request(|b| b.bid(21_600).param("n", "2"));
    assert_eq!(
        rejected(&h.send(low)),
        [RejectReason::BidTooLow {
            price_msat: 22_000,
            bid_msat: 21_600
        }]
    );
    // The invoice made a second earlier is fine; the tag carries the invoiced amount.
    let bolt11 = invoice(&h, 22_000, h.now - 1, 660);
    h.provider
        .handle_invoice(h.now(), request.id, Ok(bolt11))
        .unwrap();
    let fb = feedback(&h.drain(), None);
    assert_eq!(fb[0].amount.as_ref().unwrap().msat, 22_000);
}

#[test]
fn invoices_on_another_network_or_expired_are_refused() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let request = h.request(|b| b);
    h.send(request.clone());
    let testnet = TestLightningNode::new(13).on_network(Currency::BitcoinTestnet);
    let bolt11 = testnet
        .invoice(&InvoiceParams {
            amount_msat: Some(PRICE),
            description: InvoiceDescription::Direct("x".into()),
            created_at: h.now(),
            expiry_secs: 600,
            preimage: [6; 32],
        })
        .bolt11;
    let err = h
        .provider
        .handle_invoice(h.now(), request.id, Ok(bolt11))
        .unwrap_err();
    assert!(err.to_string().contains("network"), "{err}");

    let request = h.request(|b| b.param("n", "2"));
    h.send(request.clone());
    let expired = invoice(&h, PRICE, h.now - 700, 600);
    let err = h
        .provider
        .handle_invoice(h.now(), request.id, Ok(expired))
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn the_payment_window_ends_with_the_invoice() {
    let mut h = Harness::new(|c| unlimited(c.pricing(FixedPrice(PRICE))));
    let request = h.request(|b| b);
    h.send(request.clone());
    let short = invoice(&h, PRICE, h.now, 100);
    h.provider
        .handle_invoice(h.now(), request.id, Ok(short))
        .unwrap();
    h.drain();
    h.advance(99);
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);
    h.advance(1);
    assert_eq!(h.state(&request.id), JobState::Expired);
}

// ---- 8. unpaid requests cannot lock out paying customers ---------------------------------------

#[test]
fn the_oldest_unpaid_job_expires_when_the_unpaid_cap_is_reached() {
    let mut h = Harness::new(|c| {
        c.pricing(FixedPrice(PRICE)).admission(Admission {
            rate_limit: None,
            global_rate_limit: None,
            invoice_rate_limit: None,
            max_unpaid_jobs: 3,
            ..Admission::default()
        })
    });
    let mut ids = Vec::new();
    for i in 0..3u8 {
        let stranger = keys_from_seed(60 + i);
        let request = request_from(&mut h, &stranger, |b| b);
        ids.push(request.id);
        let out = h.send(request);
        h.answer_invoices(&out);
    }
    // A paying customer comes: the oldest unpaid job makes room, and is told.
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(h.state(&ids[0]), JobState::Expired);
    assert_eq!(statuses(&out), [FeedbackStatus::Error]);
    let out = h.answer_invoices(&out);
    let fb = feedback(&out, None);
    let receipt = h.zap(fb[0].id, PRICE);
    assert_eq!(run_tasks(&h.send(receipt)), [request.id]);
    assert_eq!(
        h.provider
            .jobs()
            .filter(|(_, s)| s.awaits_payment())
            .count(),
        2
    );
}

#[test]
fn invoices_are_rate_limited_globally_and_requests_too() {
    let mut h = Harness::new(|c| {
        c.pricing(FixedPrice(PRICE)).admission(Admission {
            rate_limit: None,
            global_rate_limit: Some(RateLimit {
                max_requests: 3,
                window_secs: 60,
            }),
            invoice_rate_limit: Some(RateLimit {
                max_requests: 2,
                window_secs: 60,
            }),
            ..Admission::default()
        })
    });
    let mut asked = 0;
    let mut reasons = Vec::new();
    for i in 0..4u8 {
        let stranger = keys_from_seed(70 + i);
        let request = request_from(&mut h, &stranger, |b| b);
        let out = h.send(request);
        asked += out
            .iter()
            .filter(|o| matches!(o, Output::RequestInvoice { .. }))
            .count();
        reasons.extend(rejected(&out));
    }
    assert_eq!(asked, 2, "two invoices in the window");
    assert_eq!(
        reasons,
        [RejectReason::InvoiceRateLimited, RejectReason::RateLimited]
    );
    // A minute later both windows have room again.
    h.advance(61);
    let stranger = keys_from_seed(80);
    let request = request_from(&mut h, &stranger, |b| b);
    assert!(h
        .send(request)
        .iter()
        .any(|o| matches!(o, Output::RequestInvoice { .. })));
}

#[test]
fn a_full_ledger_refuses_paid_work_but_not_free_work() {
    let mut h = Harness::new(|c| {
        c.pricing(|r: &JobRequest| {
            if r.param("free").is_some() {
                Quote::Price { amount_msat: 0 }
            } else {
                Quote::Price { amount_msat: PRICE }
            }
        })
        .admission(Admission {
            rate_limit: None,
            global_rate_limit: None,
            invoice_rate_limit: None,
            max_ledger_entries: 1,
            ..Admission::default()
        })
    });
    paid_job(&mut h);
    let priced = h.request(|b| b.param("n", "2"));
    assert_eq!(rejected(&h.send(priced)), [RejectReason::AtCapacity]);
    let free = h.request(|b| b.param("free", "yes"));
    assert_eq!(run_tasks(&h.send(free.clone())), [free.id]);
}

#[test]
fn a_chained_job_whose_input_comes_after_its_expiration_does_not_run() {
    // Found by the property tests: the input's result reached the provider after the chained
    // request's NIP-40 expiration, before its timer ran, and the task started.
    let mut h = Harness::new(unlimited);
    let first = h.request(|b| b);
    h.send(first.clone());
    let expires = Timestamp::from(h.now + 10);
    let second = h.request(|b| b.input(JobInput::job(first.id, None)).expiration(expires));
    h.send(second.clone());
    assert_eq!(h.state(&second.id), JobState::WaitingForInputs);
    h.now += 11;
    h.provider
        .handle_task_result(h.now(), first.id, Ok(TaskOutput::new("input")))
        .unwrap();
    let result = published(&h.drain())
        .into_iter()
        .find(|e| e.kind.as_u16() == KIND + 1000)
        .cloned()
        .unwrap();
    let out = h.send(result);
    assert!(run_tasks(&out).is_empty());
    assert_eq!(h.state(&second.id), JobState::Expired);
}

#[test]
fn pay_after_result_takes_a_wallet_proof_first_and_refunds_a_later_zap_of_the_request() {
    let mut h = Harness::new(|c| {
        unlimited(
            c.pricing(FixedPrice(PRICE))
                .payment(PaymentPolicy::PayAfterResult),
        )
    });
    let request = h.request(|b| b);
    h.send(request.clone());
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("result")))
        .unwrap();
    let out = h.drain();
    h.answer_invoices(&out);
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: false });
    let preimage = h.invoices[0].preimage;
    h.provider
        .handle_payment(h.now(), request.id, PaymentProof::Preimage(preimage))
        .unwrap();
    assert!(refunds(&h.drain()).is_empty());
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: true });
    let zap = h.zap(request.id, PRICE);
    let out = h.send(zap);
    assert_eq!(refunds(&out)[0].reason, RefundReason::AlreadyPaid);
}
