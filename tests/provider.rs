//! Provider scenarios: every policy and branch, driven with real signed events, real BOLT11
//! invoices (test node key) and real zap receipts (test zapper key).
#![cfg(feature = "test-util")]

mod provider_harness;

use provider_harness::*;

#[test]
fn first_outputs_are_the_subscriptions() {
    let keys = keys_from_seed(10);
    let mut provider = Provider::new(
        keys,
        ProviderConfig::new([Kind::from(KIND)]),
        Timestamp::from(T0),
    );
    let mut ids = Vec::new();
    while let Some(o) = provider.poll_output() {
        if let Output::Relay(RelayCommand::Subscribe { id, .. }) = o {
            ids.push(id);
        }
    }
    assert_eq!(ids, ["dvm-requests", "dvm-inbox"]);
}

#[test]
fn a_provider_with_no_kinds_asks_relays_for_no_request_kinds() {
    let keys = keys_from_seed(1);
    let config = ProviderConfig::new(Vec::<Kind>::new());
    let mut provider = Provider::new(keys, config, Timestamp::from(T0));
    let mut subscriptions = 0;
    while let Some(output) = provider.poll_output() {
        if let Output::Relay(RelayCommand::Subscribe { filter, .. }) = output {
            subscriptions += 1;
            let kinds = filter.kinds.unwrap_or_default();
            assert!(
                !kinds.is_empty(),
                "an empty kinds list matches everything on some relays"
            );
        }
    }
    assert_eq!(subscriptions, 1, "only the gift-wrap and zap inbox");
}

#[test]
fn free_job_runs_and_delivers() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b.relays(["wss://customer.example"]));
    let out = h.send(request.clone());
    assert_eq!(run_tasks(&out), [request.id]);
    assert_eq!(statuses(&out), [FeedbackStatus::Processing]);
    let task = out
        .iter()
        .find_map(|o| match o {
            Output::RunTask(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(task.texts().collect::<Vec<_>>(), ["hello world"]);
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("2 words")))
        .unwrap();
    let out = h.drain();
    let result = &results(&out, None)[0];
    assert_eq!(result.content, "2 words");
    assert_eq!(result.request_id, request.id);
    assert_eq!(result.customer, Some(h.customer.public_key()));
    // replies go to the provider's relays only: the request's are a stranger's choice
    match &out[0] {
        Output::Relay(RelayCommand::Publish { relays, .. }) => {
            assert_eq!(relays, &["wss://dvm.example"])
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: false });
    // a late second result is the host's mistake, not a second publication
    assert!(h
        .provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("again")))
        .is_err());
    assert!(h.drain().is_empty());
}

#[test]
fn duplicates_from_several_relays_are_one_job() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    let first = h.send(request.clone());
    assert_eq!(run_tasks(&first).len(), 1);
    for _ in 0..4 {
        assert!(h.send(request.clone()).is_empty());
    }
    assert_eq!(h.provider.jobs().count(), 1);
}

#[test]
fn requests_for_other_providers_are_ignored_and_ours_accepted() {
    let mut h = Harness::new(|c| c);
    let other = keys_from_seed(99).public_key();
    let theirs = h.request(|b| b.provider(other));
    assert!(h.send(theirs).is_empty());
    let me = h.keys.public_key();
    let ours = h.request(|b| b.provider(me));
    assert_eq!(run_tasks(&h.send(ours)).len(), 1);
}

#[test]
fn forged_request_is_refused_not_run() {
    let mut h = Harness::new(|c| c);
    let good = h.request(|b| b);
    let forged = with_content(&good, "tampered");
    let out = h.send(forged);
    assert!(run_tasks(&out).is_empty());
    assert!(matches!(
        notes(&out)[..],
        [Notification::EventRefused { .. }]
    ));
}

#[test]
fn pay_first_runs_only_after_a_verified_zap() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert!(run_tasks(&out).is_empty());
    assert_eq!(h.state(&request.id), JobState::Invoicing);
    let out = h.answer_invoices(&out);
    let fb = &feedback(&out, None)[0];
    assert_eq!(fb.status, FeedbackStatus::PaymentRequired);
    let amount = fb.amount.clone().unwrap();
    assert_eq!(amount.msat, PRICE);
    assert_eq!(
        amount.bolt11.as_deref(),
        Some(h.invoices[0].bolt11.as_str())
    );
    assert!(run_tasks(&out).is_empty());
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);

    // A receipt signed by someone who is not our zapper: refused, no work.
    let mallory = TestZapper::new(keys_from_seed(66), TestLightningNode::new(67));
    let zreq = ZapRequestBuilder::new(h.keys.public_key(), ["wss://x"])
        .amount_msat(PRICE)
        .event(request.id)
        .sign(&h.customer, h.now(), &mut h.rng)
        .unwrap();
    let inv = mallory.invoice_for(&zreq, PRICE, h.now(), &mut h.rng);
    let forged = mallory.receipt(&zreq, &inv, h.now(), &mut h.rng);
    let out = h.send(forged);
    assert!(run_tasks(&out).is_empty());
    assert!(matches!(
        notes(&out)[..],
        [Notification::PaymentRefused { .. }]
    ));

    // Underpaid: refused.
    let cheap = h.zap(request.id, PRICE - 1);
    let out = h.send(cheap);
    assert!(run_tasks(&out).is_empty());

    // A real zap, bound to our payment-required feedback: the task runs.
    let receipt = h.zap(fb.id, PRICE);
    let out = h.send(receipt.clone());
    assert_eq!(run_tasks(&out), [request.id]);
    assert!(notes(&out).iter().any(|n| matches!(
        n,
        Notification::PaymentReceived {
            amount_msat: PRICE,
            ..
        }
    )));
    assert!(h.provider.ledger().len() == 1);
    // The same receipt again: nothing.
    assert!(run_tasks(&h.send(receipt)).is_empty());

    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("done")))
        .unwrap();
    let out = h.drain();
    assert_eq!(results(&out, None).len(), 1);
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: true });
}

#[test]
fn a_receipt_pays_for_one_job_only() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let a = h.request(|b| b.param("n", "1"));
    let b = h.request(|b| b.param("n", "2"));
    let out_a = h.send(a.clone());
    h.answer_invoices(&out_a);
    let out_b = h.send(b.clone());
    h.answer_invoices(&out_b);
    let receipt = h.zap(a.id, PRICE);
    assert_eq!(run_tasks(&h.send(receipt.clone())), [a.id]);
    // The receipt is bound to job a: it cannot pay for b, whatever its e tag says later.
    assert!(run_tasks(&h.send(receipt)).is_empty());
    assert_eq!(h.state(&b.id), JobState::AwaitingPayment);
}

#[test]
fn a_zap_on_the_request_before_our_invoice_still_pays() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(h.state(&request.id), JobState::Invoicing);
    let receipt = h.zap(request.id, PRICE);
    assert_eq!(run_tasks(&h.send(receipt)), [request.id]);
    // The invoice that arrives late changes nothing and sends no payment-required.
    let late = h.answer_invoices(&out);
    assert!(statuses(&late).is_empty());
    assert_eq!(h.state(&request.id), JobState::Running);
}

#[test]
fn a_zap_that_arrives_before_its_request_pays_when_the_request_comes() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let receipt = h.zap(request.id, PRICE);
    let early = h.send(receipt);
    assert!(notes(&early).is_empty(), "nothing to pay yet: {early:?}");
    let out = h.send(request.clone());
    assert_eq!(run_tasks(&out), [request.id]);
    assert!(
        !statuses(&out).contains(&FeedbackStatus::PaymentRequired),
        "the customer is not asked to pay again"
    );
}

#[test]
fn early_receipts_from_strangers_or_forged_cannot_push_a_real_one_out() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let real = h.zap(request.id, PRICE);
    h.send(real);
    // A flood of receipts from a zapper the provider does not trust, and of a trusted
    // zapper's receipts edited after signing, each for an event the provider does not know.
    let stranger = TestZapper::new(keys_from_seed(50), TestLightningNode::new(51));
    for n in 0..MAX_EARLY_RECEIPTS {
        let zap_request = ZapRequestBuilder::new(h.keys.public_key(), ["wss://dvm.example"])
            .amount_msat(PRICE)
            .event(event_id(n as u8))
            .sign(&h.customer, h.now(), &mut h.rng)
            .unwrap();
        let invoice = stranger.invoice_for(&zap_request, PRICE, h.now(), &mut h.rng);
        let untrusted = stranger.receipt(&zap_request, &invoice, h.now(), &mut h.rng);
        h.send(untrusted);
        let mut forged = h.zap(event_id(n as u8), PRICE);
        forged.content = "edited".into();
        h.send(forged);
    }
    assert_eq!(run_tasks(&h.send(request.clone())), [request.id]);
}

#[test]
fn early_receipts_age_out_and_are_bounded() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    // Aged out.
    let late = h.request(|b| b.param("n", "1"));
    let receipt = h.zap(late.id, PRICE);
    h.send(receipt);
    h.advance(EARLY_RECEIPT_SECS + 1);
    assert!(run_tasks(&h.send(late.clone())).is_empty());
    assert_eq!(h.state(&late.id), JobState::Invoicing);

    // Pushed out by as many receipts for other events as the buffer holds.
    let crowded = h.request(|b| b.param("n", "2"));
    let receipt = h.zap(crowded.id, PRICE);
    h.send(receipt);
    for n in 0..MAX_EARLY_RECEIPTS {
        let other = h.zap(event_id(n as u8), PRICE);
        h.send(other);
    }
    assert!(run_tasks(&h.send(crowded.clone())).is_empty());

    // Kept when there is room.
    let kept = h.request(|b| b.param("n", "3"));
    let receipt = h.zap(kept.id, PRICE);
    h.send(receipt);
    assert_eq!(run_tasks(&h.send(kept.clone())), [kept.id]);
}

#[test]
fn pay_first_with_a_wallet_proof() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    h.answer_invoices(&out);
    let wrong = h
        .provider
        .handle_payment(h.now(), request.id, PaymentProof::Preimage([1; 32]));
    assert!(wrong.is_err());
    assert!(run_tasks(&h.drain()).is_empty());
    let preimage = h.invoices[0].preimage;
    h.provider
        .handle_payment(h.now(), request.id, PaymentProof::Preimage(preimage))
        .unwrap();
    assert_eq!(run_tasks(&h.drain()), [request.id]);
    // The hash is spent.
    h.provider
        .handle_payment(
            h.now(),
            request.id,
            PaymentProof::SettledPaymentHash(h.invoices[0].payment_hash),
        )
        .unwrap();
    let out = h.drain();
    assert!(run_tasks(&out).is_empty());
    assert!(matches!(
        notes(&out)[..],
        [Notification::PaymentRefused { .. }]
    ));
}

#[test]
fn an_invoice_for_the_wrong_amount_is_the_hosts_error() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    h.send(request.clone());
    let invoice = h.node.invoice(&InvoiceParams {
        amount_msat: Some(PRICE + 1),
        description: InvoiceDescription::Direct("x".into()),
        created_at: h.now(),
        expiry_secs: 600,
        preimage: [3; 32],
    });
    h.drain();
    assert!(h
        .provider
        .handle_invoice(h.now(), request.id, Ok(invoice.bolt11))
        .is_err());
    // The job cannot go on: it fails now, with feedback, not a minute later.
    assert_eq!(statuses(&h.drain()), [FeedbackStatus::Error]);
    assert!(matches!(h.state(&request.id), JobState::Failed { .. }));

    let request = h.request(|b| b.param("n", "2"));
    h.send(request.clone());
    assert!(h
        .provider
        .handle_invoice(h.now(), request.id, Ok("lnbc1garbage".into()))
        .is_err());
    assert!(matches!(h.state(&request.id), JobState::Failed { .. }));

    // The backend failing is not the host's error: the job fails with feedback.
    let request = h.request(|b| b.param("n", "3"));
    h.send(request.clone());
    h.drain();
    h.provider
        .handle_invoice(h.now(), request.id, Err("node offline".into()))
        .unwrap();
    assert_eq!(statuses(&h.drain()), [FeedbackStatus::Error]);
    assert!(matches!(h.state(&request.id), JobState::Failed { .. }));
}

#[test]
fn price_above_bid_gets_explicit_error_feedback() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b.bid(PRICE - 1));
    let out = h.send(request.clone());
    let fb = feedback(&out, None);
    assert_eq!(fb[0].status, FeedbackStatus::Error);
    assert!(fb[0]
        .extra_info
        .as_deref()
        .unwrap()
        .contains("above the bid"));
    assert_eq!(
        rejected(&out),
        [RejectReason::BidTooLow {
            price_msat: PRICE,
            bid_msat: PRICE - 1
        }]
    );
    assert!(run_tasks(&out).is_empty());
    // A bid that covers the price proceeds.
    let ok = h.request(|b| b.bid(PRICE).param("x", "y"));
    let out = h.send(ok);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::RequestInvoice { .. })));
}

#[test]
fn pricing_hook_can_refuse_with_a_reason() {
    let mut h = Harness::new(|c| {
        c.pricing(|r: &JobRequest| {
            if r.param("model") == Some("huge") {
                Quote::Reject {
                    reason: "model not available".into(),
                }
            } else {
                Quote::Free
            }
        })
    });
    let request = h.request(|b| b.param("model", "huge"));
    let out = h.send(request);
    assert_eq!(
        feedback(&out, None)[0].extra_info.as_deref(),
        Some("model not available")
    );
    assert!(run_tasks(&out).is_empty());
}

#[test]
fn pay_after_result_delivers_then_asks_for_payment() {
    let mut h = Harness::new(|c| {
        c.pricing(FixedPrice(PRICE))
            .payment(PaymentPolicy::PayAfterResult)
    });
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(run_tasks(&out), [request.id]);
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("result")))
        .unwrap();
    // The result goes out at once, before any invoice.
    let out = h.drain();
    let result = results(&out, None).remove(0);
    assert_eq!(result.content, "result");
    // Then payment-required, with the amount and the invoice.
    let out = h.answer_invoices(&out);
    assert!(results(&out, None).is_empty());
    let fb = feedback(&out, None);
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].status, FeedbackStatus::PaymentRequired);
    let amount = fb[0].amount.clone().unwrap();
    assert_eq!(amount.msat, PRICE);
    assert_eq!(
        amount.bolt11.as_deref(),
        Some(h.invoices[0].bolt11.as_str())
    );
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: false });
    // A zap of the result event pays; a second payment is handed back.
    let receipt = h.zap(result.id, PRICE);
    h.send(receipt);
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: true });
    let second = h.zap(fb[0].id, PRICE);
    let out = h.send(second);
    let refunds = refunds(&out);
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].reason, RefundReason::AlreadyPaid);
    assert_eq!(refunds[0].amount_msat, PRICE);
    assert_eq!(refunds[0].payer, Some(h.customer.public_key()));
    assert_eq!(statuses(&out), [FeedbackStatus::Error]);
}

#[test]
fn partial_then_pay_withholds_the_result_until_paid() {
    let mut h = Harness::new(|c| {
        c.pricing(FixedPrice(PRICE))
            .payment(PaymentPolicy::PartialThenPay)
    });
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(run_tasks(&out), [request.id]);
    h.provider
        .handle_task_result(
            h.now(),
            request.id,
            Ok(TaskOutput::new("the full text").with_sample("the…")),
        )
        .unwrap();
    let out = h.drain();
    let out = h.answer_invoices(&out);
    assert!(results(&out, None).is_empty());
    let fb = feedback(&out, None);
    assert_eq!(fb[0].status, FeedbackStatus::Partial);
    assert_eq!(fb[0].content, "the…");
    assert_eq!(fb[1].status, FeedbackStatus::PaymentRequired);
    let receipt = h.zap(fb[1].id, PRICE);
    let out = h.send(receipt);
    assert_eq!(results(&out, None)[0].content, "the full text");
    assert_eq!(h.state(&request.id), JobState::Delivered { paid: true });
}

#[test]
fn task_errors_and_progress_become_feedback() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    h.send(request.clone());
    h.provider
        .handle_task_progress(h.now(), request.id, "halfway")
        .unwrap();
    let fb = feedback(&h.drain(), None);
    assert_eq!(
        (fb[0].status.clone(), fb[0].content.as_str()),
        (FeedbackStatus::Partial, "halfway")
    );
    h.provider
        .handle_task_result(h.now(), request.id, Err(TaskError::new("model crashed")))
        .unwrap();
    let fb = feedback(&h.drain(), None);
    assert_eq!(fb[0].status, FeedbackStatus::Error);
    assert_eq!(fb[0].extra_info.as_deref(), Some("model crashed"));
    assert!(h
        .provider
        .handle_task_progress(h.now(), request.id, "late")
        .is_err());
    assert!(h
        .provider
        .handle_task_result(h.now(), EventId::all_zeros(), Ok(TaskOutput::new("x")))
        .is_err());
}

#[test]
fn timers_expire_payment_windows_and_time_out_tasks() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    h.answer_invoices(&out);
    let window = h.provider.config().payment_window_secs;
    // The first wake-up refreshes the deletion subscription to cover the new job.
    assert_eq!(
        h.provider.poll_timeout(),
        Some(Timestamp::from(T0 + DELETION_REFRESH_SECS))
    );
    let out = h.advance(DELETION_REFRESH_SECS);
    assert!(out.iter().any(
        |o| matches!(o, Output::Relay(RelayCommand::Subscribe { id, .. }) if id == "dvm-deletions")
    ));
    assert_eq!(
        h.provider.poll_timeout(),
        Some(Timestamp::from(T0 + window))
    );
    h.advance(window - 1 - DELETION_REFRESH_SECS);
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);
    let out = h.advance(1);
    assert_eq!(h.state(&request.id), JobState::Expired);
    assert!(matches!(notes(&out)[..], [Notification::JobExpired { .. }]));
    // A zap after expiry starts nothing.
    let receipt = h.zap(request.id, PRICE);
    assert!(run_tasks(&h.send(receipt)).is_empty());

    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    h.send(request.clone());
    let out = h.advance(h.provider.config().run_timeout_secs);
    assert!(out.contains(&Output::CancelTask(request.id)));
    assert_eq!(statuses(&out), [FeedbackStatus::Error]);
    assert!(matches!(h.state(&request.id), JobState::Failed { .. }));
}

#[test]
fn request_expiration_is_honoured() {
    let mut h = Harness::new(|c| c);
    let expired = h.request(|b| b.expiration(Timestamp::from(T0 - 1)));
    assert_eq!(rejected(&h.send(expired)), [RejectReason::Expired]);
    let request = h.request(|b| b.expiration(Timestamp::from(T0 + 30)));
    h.send(request.clone());
    h.advance(DELETION_REFRESH_SECS);
    assert_eq!(h.provider.poll_timeout(), Some(Timestamp::from(T0 + 30)));
    let out = h.advance(30 - DELETION_REFRESH_SECS);
    assert!(out.contains(&Output::CancelTask(request.id)));
    assert_eq!(h.state(&request.id), JobState::Expired);
}

#[test]
fn deletion_by_the_author_cancels_and_by_others_does_not() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    h.send(request.clone());
    let tags = vec![Tag::parse(["e".to_owned(), request.id.to_hex()]).unwrap()];
    let stranger = keys_from_seed(55);
    let by_stranger = sign(
        &stranger,
        Kind::EventDeletion,
        tags.clone(),
        "",
        h.now(),
        &mut h.rng,
    );
    h.send(by_stranger);
    assert_eq!(h.state(&request.id), JobState::Running);
    let by_author = sign(
        &h.customer,
        Kind::EventDeletion,
        tags,
        "",
        h.now(),
        &mut h.rng,
    );
    let out = h.send(by_author);
    assert!(out.contains(&Output::CancelTask(request.id)));
    assert_eq!(h.state(&request.id), JobState::Cancelled);
    // A deletion that arrives before its request keeps the request from running.
    let later = h.request(|b| b.param("later", "1"));
    let tags = vec![Tag::parse(["e".to_owned(), later.id.to_hex()]).unwrap()];
    let early = sign(
        &h.customer,
        Kind::EventDeletion,
        tags,
        "",
        h.now(),
        &mut h.rng,
    );
    h.send(early);
    assert!(run_tasks(&h.send(later)).is_empty());
}

#[test]
fn encrypted_requests_are_answered_in_their_scheme() {
    for scheme in [Scheme::Nip44, Scheme::Nip04] {
        let mut h = Harness::new(|c| c);
        let me = h.keys.public_key();
        let request = h.request(|b| b.provider(me).encrypt(scheme));
        let out = h.send(request.clone());
        let task = out
            .iter()
            .find_map(|o| match o {
                Output::RunTask(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            task.texts().collect::<Vec<_>>(),
            ["hello world"],
            "{scheme}"
        );
        h.provider
            .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("secret answer")))
            .unwrap();
        let out = h.drain();
        let customer = h.customer.clone();
        let result = &results(&out, Some(&customer))[0];
        assert_eq!(result.encrypted.unwrap().scheme, scheme);
        assert_eq!(result.content, "secret answer");
        // The public result event carries no input in clear.
        let raw = published(&out)
            .into_iter()
            .find(|e| e.kind.as_u16() == KIND + 1000)
            .unwrap();
        assert!(!raw.tags.iter().any(|t| t.as_slice()[0] == "i"));
        assert!(!raw.content.contains("secret"));
    }
}

#[test]
fn gift_wrapped_requests_get_gift_wrapped_replies() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    let rumor = nostr_dvm::nostr::UnsignedEvent::from(request.clone());
    let wrap = nip59::gift_wrap(
        &h.customer,
        &h.keys.public_key(),
        rumor,
        h.now(),
        &mut h.rng,
    )
    .unwrap();
    let out = h.send(wrap);
    assert_eq!(run_tasks(&out), [request.id]);
    // Feedback is wrapped, not public.
    let wrapped = published(&out);
    assert!(wrapped.iter().all(|e| e.kind.as_u16() == 1059));
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("private result")))
        .unwrap();
    let out = h.drain();
    let wrap = published(&out)[0].clone();
    assert_eq!(wrap.kind.as_u16(), 1059);
    let gift = nip59::unwrap(&h.customer, &wrap).unwrap();
    assert_eq!(gift.sender, h.keys.public_key());
    assert_eq!(gift.rumor.kind.as_u16(), KIND + 1000);
    assert_eq!(gift.rumor.content, "private result");
}

#[test]
fn chained_job_waits_for_its_input_result() {
    let mut h = Harness::new(|c| c);
    // The customer's first job, addressed to another provider.
    let other = keys_from_seed(77);
    let first = h.request(|b| b.provider(other.public_key()).param("step", "1"));
    let request = h.request(|b| b.input(JobInput::job(first.id, None)));
    let out = h.send(request.clone());
    assert!(run_tasks(&out).is_empty());
    assert_eq!(h.state(&request.id), JobState::WaitingForInputs);
    // One subscription for every missing input, sent with the next refresh.
    let out = h.advance(DELETION_REFRESH_SECS);
    assert!(out.iter().any(
        |o| matches!(o, Output::Relay(RelayCommand::Subscribe { id, .. }) if id == "dvm-inputs")
    ));
    // The provider the customer named answers the first job.
    let first = JobRequest::from_event(&first, None).unwrap();
    let result = JobResult::builder(&first, "transcript text")
        .sign(&other, h.now(), &mut h.rng)
        .unwrap();
    let out = h.send(result);
    let task = out
        .iter()
        .find_map(|o| match o {
            Output::RunTask(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        task.texts().collect::<Vec<_>>(),
        ["hello world", "transcript text"]
    );
}

/// A chained job whose input is another job of this provider starts as soon as that job's
/// result is made: the provider feeds its own result to the jobs waiting for it, rather than
/// wait for a relay to send it back (many never echo an event to the connection that
/// published it, and the input subscription is only sent again with the next refresh).
#[test]
fn a_chained_job_starts_on_this_providers_own_result_at_once() {
    let mut h = Harness::new(|c| c);
    let first = h.request(|b| b.param("step", "1"));
    assert_eq!(run_tasks(&h.send(first.clone())), [first.id]);
    let second = h.request(|b| b.input(JobInput::job(first.id, None)));
    assert!(run_tasks(&h.send(second.clone())).is_empty());
    assert_eq!(h.state(&second.id), JobState::WaitingForInputs);
    h.provider
        .handle_task_result(h.now(), first.id, Ok(TaskOutput::new("step one done")))
        .unwrap();
    let out = h.drain();
    assert_eq!(results(&out, None).len(), 1, "the first job's result");
    let task = out
        .iter()
        .find_map(|o| match o {
            Output::RunTask(r) => Some(r.clone()),
            _ => None,
        })
        .expect("the chained job did not start");
    assert_eq!(task.job, second.id);
    assert_eq!(
        task.texts().collect::<Vec<_>>(),
        ["hello world", "step one done"]
    );
    // The same result delivered by a relay later changes nothing.
    let echo = published(&out)
        .into_iter()
        .find(|e| e.kind.as_u16() == KIND + 1000)
        .unwrap()
        .clone();
    assert!(run_tasks(&h.send(echo)).is_empty());
    assert_eq!(h.state(&second.id), JobState::Running);
}

#[test]
fn admission_limits_refuse_without_replying() {
    let blocked = keys_from_seed(30);
    let mut h = Harness::new(|c| {
        let mut a = Admission::default();
        a.deny.insert(blocked.public_key());
        a.rate_limit = Some(RateLimit {
            max_requests: 2,
            window_secs: 60,
        });
        a.max_request_bytes = 200;
        c.admission(a)
    });
    let mut rng = StdRng::seed_from_u64(1);
    let denied = JobRequest::builder(KIND)
        .input(JobInput::text("x"))
        .sign(&blocked, h.now(), &mut rng)
        .unwrap();
    let out = h.send(denied);
    assert_eq!(rejected(&out), [RejectReason::NotAllowed]);
    assert!(published(&out).is_empty());
    let big = h.request(|b| b.param("blob", "z".repeat(500)));
    assert!(matches!(
        rejected(&h.send(big))[..],
        [RejectReason::TooLarge { .. }]
    ));
    let a = h.request(|b| b.param("n", "a"));
    let b = h.request(|b| b.param("n", "b"));
    let c = h.request(|b| b.param("n", "c"));
    h.send(a);
    h.send(b);
    let out = h.send(c.clone());
    assert_eq!(rejected(&out), [RejectReason::RateLimited]);
    assert!(published(&out).is_empty());
    // The window slides.
    h.advance(61);
    let d = h.request(|b| b.param("n", "d"));
    assert_eq!(run_tasks(&h.send(d)).len(), 1);
}

#[test]
fn forged_requests_do_not_use_up_a_customers_rate_limit() {
    let mut h = Harness::new(|c| {
        c.admission(Admission {
            rate_limit: Some(RateLimit {
                max_requests: 2,
                window_secs: 60,
            }),
            ..Default::default()
        })
    });
    for n in 0..5 {
        let good = h.request(|b| b.param("forged", n.to_string()));
        let forged = Event::new(
            good.id,
            good.pubkey,
            good.created_at,
            good.kind,
            good.tags.clone().to_vec(),
            "tampered",
            good.sig,
        );
        assert!(run_tasks(&h.send(forged)).is_empty());
    }
    for n in 0..2 {
        let real = h.request(|b| b.param("real", n.to_string()));
        assert_eq!(run_tasks(&h.send(real)).len(), 1);
    }
}

#[test]
fn live_job_cap_and_pow_minimum() {
    let mut h = Harness::new(|c| {
        c.admission(Admission {
            max_live_jobs: 2,
            rate_limit: None,
            ..Default::default()
        })
    });
    for n in 0..2 {
        let r = h.request(|b| b.param("n", n.to_string()));
        h.send(r);
    }
    let third = h.request(|b| b.param("n", "3"));
    assert_eq!(rejected(&h.send(third)), [RejectReason::AtCapacity]);

    let mut h = Harness::new(|c| {
        c.admission(Admission {
            min_pow: 8,
            ..Default::default()
        })
    });
    let weak = h.request(|b| b);
    assert!(matches!(
        rejected(&h.send(weak))[..],
        [RejectReason::InsufficientPow { .. }]
    ));
}

#[test]
fn manual_acceptance_waits_for_the_host() {
    let mut h = Harness::new(|mut c| {
        c.auto_accept = false;
        c
    });
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert!(run_tasks(&out).is_empty());
    assert_eq!(h.state(&request.id), JobState::Received);
    h.provider.accept(h.now(), request.id).unwrap();
    assert_eq!(run_tasks(&h.drain()), [request.id]);
    let other = h.request(|b| b.param("x", "1"));
    h.send(other.clone());
    h.provider.reject(h.now(), other.id, "not today").unwrap();
    assert_eq!(
        feedback(&h.drain(), None)[0].extra_info.as_deref(),
        Some("not today")
    );
    assert!(h.provider.accept(h.now(), other.id).is_err());
}

#[test]
fn announce_publishes_handler_information() {
    let mut h = Harness::new(|c| {
        c.announcement(nostr_dvm::nip89::HandlerMetadata {
            name: Some("Echo".into()),
            ..Default::default()
        })
    });
    h.provider.announce(h.now()).unwrap();
    let out = h.drain();
    let event = published(&out)[0];
    let info = nostr_dvm::nip89::HandlerInfo::from_event(event).unwrap();
    assert!(info.supports(Kind::from(KIND)));
    let mut bare = Harness::new(|c| c);
    assert!(bare.provider.announce(bare.now()).is_err());
}

/// Snapshot after every step of a paid scenario; a restored provider then produces exactly
/// the outputs of the original for the rest of the scenario.
#[test]
fn snapshot_and_restore_at_any_step_change_nothing_that_follows() {
    let steps = 6;
    for cut in 0..steps {
        let mut original = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
        let request = original.request(|b| b);
        let second = original.request(|b| b.param("second", "1"));
        let mut restored: Option<Provider> = None;
        let mut outputs_original = Vec::new();
        let mut outputs_restored = Vec::new();
        let mut fb_id = None;
        for step in 0..steps {
            if step == cut {
                let snap = original.provider.snapshot();
                let json = serde_json::to_string(&snap).unwrap();
                let snap = serde_json::from_str(&json).unwrap();
                let config = ProviderConfig::new([Kind::from(KIND)])
                    .zappers([original.zapper.pubkey()])
                    .relays(["wss://dvm.example"])
                    .deterministic_seed([7; 32])
                    .pricing(FixedPrice(PRICE));
                restored = Some(Provider::restore(original.keys.clone(), config, snap).unwrap());
            }
            let now = original.now();
            // the input of this step, the same for both
            let apply = |p: &mut Provider,
                         h_invoice: Option<&TestInvoice>,
                         receipt: Option<&Event>| match step {
                0 => p.handle_event(now, request.clone()),
                1 => p
                    .handle_invoice(now, request.id, Ok(h_invoice.unwrap().bolt11.clone()))
                    .unwrap(),
                2 => p.handle_event(now, receipt.unwrap().clone()),
                3 => p.handle_task_progress(now, request.id, "half").unwrap(),
                4 => p
                    .handle_task_result(now, request.id, Ok(TaskOutput::new("done")))
                    .unwrap(),
                _ => {
                    p.handle_timeout(Timestamp::from(now.as_secs() + 100_000));
                    p.handle_event(now, second.clone());
                }
            };
            if step == 1 {
                let invoice = original.node.invoice(&InvoiceParams {
                    amount_msat: Some(PRICE),
                    description: InvoiceDescription::Direct("dvm job".into()),
                    created_at: now,
                    expiry_secs: 600,
                    preimage: [5; 32],
                });
                original.invoices.push(invoice);
            }
            let receipt = if step == 2 {
                Some(original.zap(fb_id.unwrap(), PRICE))
            } else {
                None
            };
            let invoice = original.invoices.first().cloned();
            apply(&mut original.provider, invoice.as_ref(), receipt.as_ref());
            let out = original.drain();
            if step == 1 {
                fb_id = feedback(&out, None).first().map(|f| f.id);
            }
            if let Some(p) = restored.as_mut() {
                apply(p, invoice.as_ref(), receipt.as_ref());
                while let Some(o) = p.poll_output() {
                    outputs_restored.push(o);
                }
                outputs_original.extend(out);
            }
        }
        assert!(!outputs_original.is_empty());
        assert_eq!(outputs_original, outputs_restored, "cut at step {cut}");
    }
}

#[test]
fn resume_reissues_in_flight_work_after_a_crash() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    h.send(request.clone());
    let snap = h.provider.snapshot();
    assert!(!h.provider.needs_persistence());
    let config = ProviderConfig::new([Kind::from(KIND)]).deterministic_seed([7; 32]);
    let mut p = Provider::restore(h.keys.clone(), config, snap).unwrap();
    p.resume(h.now());
    let mut out = Vec::new();
    while let Some(o) = p.poll_output() {
        out.push(o);
    }
    assert_eq!(run_tasks(&out), [request.id]);
    assert_eq!(p.job_state(&request.id), Some(&JobState::Running));
}

#[test]
fn events_pushed_into_a_snapshot_are_published_after_restore() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    h.send(request.clone());
    let mut snap = h.provider.snapshot();
    // A host that stopped before any relay took an event it had drained.
    let unpublished = h.request(|b| b);
    snap.push_publish(unpublished.clone(), vec!["wss://relay.example".into()]);
    let config = ProviderConfig::new([Kind::from(KIND)]).deterministic_seed([7; 32]);
    let mut p = Provider::restore(h.keys.clone(), config, snap).unwrap();
    let mut out = Vec::new();
    while let Some(o) = p.poll_output() {
        out.push(o);
    }
    assert_eq!(published(&out), [&unpublished]);
    assert!(matches!(
        out.first(),
        Some(Output::Relay(RelayCommand::Publish { relays, .. })) if relays == &["wss://relay.example".to_owned()]
    ));
}

#[test]
fn heartbeat_is_published_on_its_timer() {
    let mut h = Harness::new(|mut c| {
        c.heartbeat = Some(nostr_dvm::provider::Heartbeat {
            interval_secs: 60,
            kind: Kind::from(11998),
        });
        c
    });
    assert_eq!(h.provider.poll_timeout(), Some(Timestamp::from(T0 + 60)));
    assert!(h.advance(59).is_empty());
    let out = h.advance(1);
    let beats: Vec<_> = published(&out)
        .into_iter()
        .filter(|e| e.kind.as_u16() == 11998)
        .collect();
    assert_eq!(beats.len(), 1);
    assert_eq!(beats[0].pubkey, h.keys.public_key());
    assert_eq!(h.provider.poll_timeout(), Some(Timestamp::from(T0 + 120)));
}

#[test]
fn a_flood_stays_within_the_job_caps() {
    let mut h = Harness::new(|c| {
        c.admission(Admission {
            rate_limit: None,
            max_live_jobs: 50,
            max_jobs: 80,
            ..Default::default()
        })
    });
    let mut rng = StdRng::seed_from_u64(5);
    let mut refused = 0;
    for n in 0..300u32 {
        let who = Keys::generate_with_rng(&mut rng);
        let request = JobRequest::builder(KIND)
            .input(JobInput::text(format!("flood {n}")))
            .sign(&who, h.now(), &mut rng)
            .unwrap();
        let out = h.send(request.clone());
        refused += rejected(&out).len();
        // finish every other job so terminal ones pile up too
        if n % 2 == 0 && run_tasks(&out).len() == 1 {
            h.provider
                .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("ok")))
                .unwrap();
            h.drain();
        }
        assert!(h.provider.live_jobs() <= 50);
        assert!(h.provider.jobs().count() <= 80);
    }
    assert!(refused > 0);
}

#[test]
fn undecryptable_requests_are_refused_with_a_reason() {
    let mut h = Harness::new(|c| c);
    let me = h.keys.public_key().to_hex();
    let tags = vec![
        Tag::parse(["p".to_owned(), me]).unwrap(),
        Tag::parse(["encrypted"]).unwrap(),
    ];
    let garbage = sign(
        &h.customer,
        Kind::from(KIND),
        tags,
        "bm90IGEgY2lwaGVydGV4dA==?iv=AAAAAAAAAAAAAAAAAAAAAA==",
        h.now(),
        &mut h.rng,
    );
    let out = h.send(garbage);
    assert!(matches!(rejected(&out)[..], [RejectReason::Malformed(_)]));
    assert!(run_tasks(&out).is_empty());
}

#[test]
fn a_spent_receipt_stays_spent_after_a_restart() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    h.answer_invoices(&out);
    let receipt = h.zap(request.id, PRICE);
    assert_eq!(run_tasks(&h.send(receipt.clone())), [request.id]);
    let snapshot = serde_json::to_string(&h.provider.snapshot()).unwrap();
    let config = ProviderConfig::new([Kind::from(KIND)])
        .zappers([h.zapper.pubkey()])
        .deterministic_seed([7; 32])
        .pricing(FixedPrice(PRICE));
    let mut restored = Provider::restore(
        h.keys.clone(),
        config,
        serde_json::from_str(&snapshot).unwrap(),
    )
    .unwrap();
    restored.handle_event(h.now(), receipt);
    let out: Vec<_> = std::iter::from_fn(|| restored.poll_output()).collect();
    assert!(run_tasks(&out).is_empty());
    assert!(matches!(
        notes(&out)[..],
        [Notification::PaymentRefused { .. }]
    ));
    assert_eq!(restored.ledger().len(), 1);
}

#[test]
fn the_announcement_is_published_again_on_its_timer_and_when_it_changes() {
    let mut h = Harness::new(|c| c.announcement(nostr_dvm::nip89::HandlerMetadata::default()));
    h.provider.announce(h.now()).unwrap();
    let count = |out: &[Output]| {
        published(out)
            .iter()
            .filter(|e| e.kind.as_u16() == 31990)
            .count()
    };
    assert_eq!(count(&h.drain()), 1);
    assert_eq!(count(&h.advance(86_399)), 0);
    assert_eq!(count(&h.advance(1)), 1, "again a day later");
    let metadata = nostr_dvm::nip89::HandlerMetadata {
        name: Some("renamed".into()),
        ..Default::default()
    };
    h.provider.set_announcement(h.now(), metadata).unwrap();
    let out = h.drain();
    assert_eq!(count(&out), 1, "at once when it changes");
    assert!(published(&out)[0].content.contains("renamed"));
}
