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
