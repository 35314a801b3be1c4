//! Persistence by updates (`Provider::track_updates`): outputs wait for the update that
//! follows them (write-ahead), an update holds what changed and not everything, a store
//! applies updates idempotently, and a provider restored from the records after a crash at
//! any point neither loses a paid job nor runs one twice. Real zap receipts, real signatures.
#![cfg(feature = "test-util")]

mod provider_harness;

use nostr_dvm::provider::{RecordSet, StoreChange, StoreUpdate};
use provider_harness::*;

/// A priced provider persisting by updates into `records`.
fn tracked() -> Harness {
    let mut h = Harness::new(|mut c| {
        // No rate windows: their times are meta (bounded by the limits, not by the jobs).
        c.admission.rate_limit = None;
        c.admission.global_rate_limit = None;
        c.admission.invoice_rate_limit = None;
        c.zaps_only = true;
        c.pricing(FixedPrice(PRICE))
    });
    h.provider.track_updates();
    h
}

/// Takes the provider's next update and stores it in `records` (not acknowledged yet).
fn store_next(h: &mut Harness, records: &mut RecordSet) -> StoreUpdate {
    let update = h.provider.poll_update().expect("an update");
    records.apply(&update);
    update
}

/// Stores and acknowledges every update until none is left; the outputs they released.
fn persist_all(h: &mut Harness, records: &mut RecordSet) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some(update) = h.provider.poll_update() {
        records.apply(&update);
        h.provider.handle_persisted(update.id).unwrap();
        out.extend(h.drain());
    }
    out
}

/// A job asked to be paid (everything stored) and a zap receipt that pays it, not sent yet.
fn asked_to_pay(h: &mut Harness, records: &mut RecordSet) -> (Event, Event) {
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request.clone());
    let fb = feedback(&persist_all(h, records), None);
    let receipt = h.zap(fb[0].id, PRICE);
    (request, receipt)
}

/// A provider restored from `records` after a crash, tracking updates and resumed.
fn restored(h: &Harness, records: &RecordSet) -> Provider {
    let snapshot = records.snapshot().expect("something was stored");
    let config = ProviderConfig::new([Kind::from(KIND)])
        .zappers([h.zapper.pubkey()])
        .relays(["wss://dvm.example"])
        .pricing(FixedPrice(PRICE))
        .deterministic_seed([9; 32]);
    let mut config = config;
    config.zaps_only = true;
    let mut provider = Provider::restore(h.keys.clone(), config, snapshot).unwrap();
    provider.track_updates();
    provider.resume(h.now());
    provider
}

#[test]
fn outputs_wait_until_the_update_before_them_is_durable() {
    let mut h = tracked();
    let mut records = RecordSet::default();
    persist_all(&mut h, &mut records);
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request.clone());
    assert!(h.drain().is_empty(), "nothing before the job is stored");
    let update = store_next(&mut h, &mut records);
    assert!(h.drain().is_empty(), "stored but not acknowledged");
    assert!(update
        .changes
        .iter()
        .any(|c| matches!(c, StoreChange::Job(j) if j.id() == request.id)));
    h.provider.handle_persisted(update.id).unwrap();
    let out = h.drain();
    assert_eq!(statuses(&out), [FeedbackStatus::PaymentRequired]);
    // Acknowledging an id never handed out is the host's error.
    assert!(h.provider.handle_persisted(update.id + 5).is_err());
    assert!(h.provider.handle_persisted(0).is_err());
}

#[test]
fn an_update_holds_what_changed_not_everything() {
    let mut h = tracked();
    let mut records = RecordSet::default();
    persist_all(&mut h, &mut records);
    // The meta of the update after the first job, and after the 51st: the same size.
    let mut meta_sizes = Vec::new();
    for n in 0..51 {
        let request = h.request(|b| b);
        h.provider.handle_event(h.now(), request.clone());
        let update = h.provider.poll_update().unwrap();
        let jobs: Vec<_> = update
            .changes
            .iter()
            .filter_map(|c| match c {
                StoreChange::Job(j) => Some(j.id()),
                _ => None,
            })
            .collect();
        assert_eq!(jobs, [request.id], "one job changed, one job record");
        if n == 0 || n == 50 {
            meta_sizes.push(serde_json::to_string(&update.meta).unwrap().len());
        }
        records.apply(&update);
        h.provider.handle_persisted(update.id).unwrap();
        h.drain();
        persist_all(&mut h, &mut records);
        h.now += 1;
    }
    assert_eq!(records.jobs(), 51);
    assert!(
        meta_sizes[1] <= meta_sizes[0] + 64,
        "the meta does not grow with the jobs: {meta_sizes:?}"
    );
}

#[test]
fn a_zap_paid_before_a_crash_is_never_lost_nor_run_twice() {
    for acknowledged in [false, true] {
        let mut h = tracked();
        let mut records = RecordSet::default();
        let (request, receipt) = asked_to_pay(&mut h, &mut records);
        h.provider.handle_event(h.now(), receipt.clone());
        assert!(
            h.drain().is_empty(),
            "no RunTask before the ledger entry is stored"
        );
        let update = store_next(&mut h, &mut records);
        assert!(update
            .changes
            .iter()
            .any(|c| matches!(c, StoreChange::Spent { .. })));
        if acknowledged {
            h.provider.handle_persisted(update.id).unwrap();
            assert_eq!(run_tasks(&h.drain()), [request.id]);
        }
        // The process dies here: the task (if it started) is lost with it.
        h.provider = restored(&h, &records);
        let out = h.drain();
        let out = [out, persist_all(&mut h, &mut records)].concat();
        assert_eq!(
            run_tasks(&out),
            [request.id],
            "the paid job runs again, once"
        );
        // The same receipt again pays nothing: the ledger entry was stored.
        h.provider.handle_event(h.now(), receipt);
        let out = persist_all(&mut h, &mut records);
        assert!(run_tasks(&out).is_empty(), "acknowledged: {acknowledged}");
    }
}

#[test]
fn a_zap_whose_update_was_never_stored_pays_after_a_restart() {
    let mut h = tracked();
    let mut records = RecordSet::default();
    let (request, receipt) = asked_to_pay(&mut h, &mut records);
    h.provider.handle_event(h.now(), receipt.clone());
    // The update with the ledger entry is taken but the write never happens.
    let _lost = h.provider.poll_update().unwrap();
    assert!(h.drain().is_empty());
    h.provider = restored(&h, &records);
    persist_all(&mut h, &mut records);
    assert_eq!(
        h.provider.job_state(&request.id),
        Some(&JobState::AwaitingPayment)
    );
    // The relay delivers the receipt again (the subscription reaches back): it pays once.
    h.provider.handle_event(h.now(), receipt);
    assert_eq!(run_tasks(&persist_all(&mut h, &mut records)), [request.id]);
}

#[test]
fn a_result_published_once_is_never_computed_again() {
    let mut h = tracked();
    let mut records = RecordSet::default();
    let (request, receipt) = asked_to_pay(&mut h, &mut records);
    h.provider.handle_event(h.now(), receipt);
    persist_all(&mut h, &mut records);
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("the answer")))
        .unwrap();
    assert!(
        h.drain().is_empty(),
        "the result waits for the Delivered state"
    );
    store_next(&mut h, &mut records);
    // Stored: the process dies before it could publish. The restart publishes the result
    // event, and runs nothing.
    h.provider = restored(&h, &records);
    let out = [h.drain(), persist_all(&mut h, &mut records)].concat();
    assert!(run_tasks(&out).is_empty());
    let published = results(&out, None);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].content, "the answer");
    // Not reported published (no relay said OK before the next crash): the same event again.
    h.provider = restored(&h, &records);
    let out = [h.drain(), persist_all(&mut h, &mut records)].concat();
    let again = results(&out, None);
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].id, published[0].id,
        "the same event, not a second result"
    );
    assert!(run_tasks(&out).is_empty());
    // A relay took it: its record goes, and a later restart publishes nothing.
    h.provider.handle_published(again[0].id);
    persist_all(&mut h, &mut records);
    h.provider = restored(&h, &records);
    let out = [h.drain(), persist_all(&mut h, &mut records)].concat();
    assert!(results(&out, None).is_empty());
    assert!(run_tasks(&out).is_empty());
}

#[test]
fn applying_an_update_twice_changes_nothing_and_a_snapshot_moves_into_records() {
    let mut h = tracked();
    let mut records = RecordSet::default();
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request.clone());
    let update = h.provider.poll_update().unwrap();
    records.apply(&update);
    let once = records.clone();
    records.apply(&update);
    assert_eq!(records, once);

    // A snapshot (a FileStore's, or a backup) becomes one update for an empty store.
    let snapshot = h.provider.snapshot();
    let mut moved = RecordSet::default();
    moved.apply(&snapshot.clone().into_update(1));
    let back = moved.snapshot().unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&snapshot).unwrap()
    );
}

#[test]
fn without_tracking_nothing_waits_and_no_update_is_made() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request);
    assert!(!out.is_empty());
    assert!(h.provider.poll_update().is_none());
    assert!(h.provider.handle_persisted(1).is_err());
}

/// How a request reaches the provider, and so how its replies go back.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    Plain,
    Nip44,
    GiftWrap,
}

/// The request for `delivery` (the job's id is `request.id`) and the event that carries it.
fn request_by(h: &mut Harness, delivery: Delivery) -> (Event, Event) {
    let me = h.keys.public_key();
    match delivery {
        Delivery::Plain => {
            let request = h.request(|b| b);
            (request.clone(), request)
        }
        Delivery::Nip44 => {
            let request = h.request(|b| b.provider(me).encrypt(Scheme::Nip44));
            (request.clone(), request)
        }
        Delivery::GiftWrap => {
            let request = h.request(|b| b);
            let rumor = nostr_dvm::nostr::UnsignedEvent::from(request.clone());
            let wrap = nip59::gift_wrap(&h.customer, &me, rumor, h.now(), &mut h.rng).unwrap();
            (request, wrap)
        }
    }
}

/// The feedback statuses in `out` as the customer reads them, and whether each came in the
/// reply scheme of `delivery`.
fn customer_statuses(h: &Harness, out: &[Output], delivery: Delivery) -> Vec<FeedbackStatus> {
    let mut seen = Vec::new();
    for event in published(out) {
        let feedback = match delivery {
            Delivery::GiftWrap => {
                assert_eq!(event.kind.as_u16(), 1059, "gift-wrapped replies only");
                let gift = nip59::unwrap(&h.customer, event).unwrap();
                if gift.rumor.kind.as_u16() != 7000 {
                    continue;
                }
                let rumor = gift.rumor.sign_with_keys(&h.keys).unwrap();
                JobFeedback::from_event(&rumor, Some(&h.customer)).unwrap()
            }
            _ if event.kind.as_u16() != 7000 => continue,
            Delivery::Plain => {
                let feedback = JobFeedback::from_event(event, None).unwrap();
                assert!(feedback.encrypted.is_none());
                feedback
            }
            Delivery::Nip44 => {
                let feedback = JobFeedback::from_event(event, Some(&h.customer)).unwrap();
                assert_eq!(feedback.encrypted.map(|e| e.scheme), Some(Scheme::Nip44));
                feedback
            }
        };
        seen.push(feedback.status);
    }
    seen
}

#[test]
fn an_ended_job_leaves_memory_and_a_late_payment_is_refunded_in_its_scheme() {
    for delivery in [Delivery::Plain, Delivery::Nip44, Delivery::GiftWrap] {
        let mut h = tracked();
        let mut records = RecordSet::default();
        persist_all(&mut h, &mut records);
        let (request, carrier) = request_by(&mut h, delivery);
        let id = request.id;
        h.provider.handle_event(h.now(), carrier.clone());
        persist_all(&mut h, &mut records);
        // A zap on the request itself pays for it.
        let receipt = h.zap(id, PRICE);
        h.provider.handle_event(h.now(), receipt);
        assert_eq!(run_tasks(&persist_all(&mut h, &mut records)), [id]);
        assert!(h.provider.job_request(&id).is_some(), "live: held in full");
        h.provider
            .handle_task_result(h.now(), id, Ok(TaskOutput::new("the answer")))
            .unwrap();
        persist_all(&mut h, &mut records);

        // Ended, and its full record is stored: memory keeps a summary only.
        assert_eq!(h.state(&id), JobState::Delivered { paid: true });
        assert!(h.provider.job_request(&id).is_none(), "{delivery:?}");
        let stored = records.job(&id).expect("the record");
        assert!(!stored.is_summary());
        let stored = serde_json::to_value(stored).unwrap();
        assert_eq!(
            stored["job"]["request"]["tags"],
            serde_json::to_value(&request).unwrap()["tags"],
            "the store keeps the request's tags"
        );

        // A second payment comes late: the summary is enough to refund it, with feedback in
        // the request's scheme, and its record merges into the full one.
        h.now += 10;
        let late = h.zap(id, PRICE);
        h.provider.handle_event(h.now(), late.clone());
        let update = h.provider.poll_update().expect("an update");
        assert!(update
            .changes
            .iter()
            .any(|c| matches!(c, StoreChange::Job(r) if r.id() == id && r.is_summary())));
        records.apply(&update);
        h.provider.handle_persisted(update.id).unwrap();
        let out = [h.drain(), persist_all(&mut h, &mut records)].concat();
        let refunds = refunds(&out);
        assert_eq!(refunds.len(), 1, "{delivery:?}");
        assert_eq!(refunds[0].reason, RefundReason::AlreadyPaid);
        assert_eq!(refunds[0].customer, h.customer.public_key());
        assert_eq!(
            customer_statuses(&h, &out, delivery),
            [FeedbackStatus::Error],
            "{delivery:?}"
        );
        let merged = records.job(&id).unwrap();
        assert!(!merged.is_summary(), "{delivery:?}");
        assert_eq!(
            serde_json::to_value(merged).unwrap()["job"]["request"],
            stored["job"]["request"],
            "the merge keeps the full request"
        );

        // Restarted from the records: the same request and the same late zap do nothing.
        h.provider = restored(&h, &records);
        let _ = [h.drain(), persist_all(&mut h, &mut records)].concat();
        assert!(h.provider.job_request(&id).is_none(), "summarized again");
        h.provider.handle_event(h.now(), carrier);
        h.provider.handle_event(h.now(), late);
        let out = [h.drain(), persist_all(&mut h, &mut records)].concat();
        assert!(run_tasks(&out).is_empty(), "{delivery:?}");
        assert!(
            published(&out).is_empty(),
            "{delivery:?}: {:?}",
            notes(&out)
        );
        assert!(!out.iter().any(|o| matches!(o, Output::Refund(_))));
    }
}

#[test]
fn without_tracking_an_ended_job_stays_whole() {
    // The snapshot is then the only copy: nothing may be dropped from it.
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    assert_eq!(run_tasks(&h.send(request.clone())), [request.id]);
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("done")))
        .unwrap();
    h.drain();
    assert!(h.state(&request.id).is_terminal());
    assert!(h.provider.job_request(&request.id).is_some());
    let snapshot = serde_json::to_value(h.provider.snapshot()).unwrap();
    assert_eq!(
        snapshot["jobs"][0]["request"],
        serde_json::to_value(&request).unwrap()
    );
}
