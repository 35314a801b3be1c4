//! A fleet in the sans-IO core (`ProviderConfig::claim_jobs`): a job is claimed before anything
//! is priced, sent or stored; a lost claim drops it without a word; several providers with the
//! same keys, deciding claims through one table, run each job once and count each payment
//! once, whichever of them sees a request or a receipt; a provider that takes over another's
//! records (`Provider::adopt`) continues its jobs without running a paid one twice. The claim
//! table here is a map standing in for the fleet's database (the real one is PostgreSQL, in
//! `tests/fleet.rs`); receipts are real NIP-57 zaps from the test zapper.
#![cfg(feature = "test-util")]

mod provider_harness;

use std::collections::{HashMap, HashSet};

use nostr_dvm::provider::{RecordSet, StoreChange};
use provider_harness::*;

/// A provider of a fleet: claims on, priced, paid by zaps.
fn member() -> Harness {
    Harness::new(|mut c| {
        c.claim_jobs = true;
        c.zaps_only = true;
        c.admission.global_rate_limit = None;
        c.admission.rate_limit = None;
        c.pricing(FixedPrice(PRICE))
    })
}

fn claims(outputs: &[Output]) -> Vec<EventId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ClaimJob(record) => Some(record.id()),
            _ => None,
        })
        .collect()
}

/// Everything but claims and notifications: what the world or the host would see.
fn visible(outputs: &[Output]) -> Vec<&Output> {
    outputs
        .iter()
        .filter(|o| !matches!(o, Output::ClaimJob(_) | Output::Notify(_)))
        .collect()
}

#[test]
fn a_job_is_claimed_before_anything_is_priced_sent_or_stored() {
    let mut h = member();
    h.provider.track_updates();
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    assert_eq!(claims(&out), vec![request.id], "the claim goes out at once");
    assert!(
        visible(&out).is_empty(),
        "nothing before the claim: {out:?}"
    );
    // No record of the job before the claim is won (the store would claim it by writing).
    while let Some(update) = h.provider.poll_update() {
        assert!(
            !update
                .changes
                .iter()
                .any(|c| matches!(c, StoreChange::Job(r) if r.id() == request.id)),
            "an unclaimed job is not recorded"
        );
        h.provider.handle_persisted(update.id).unwrap();
    }
    assert!(visible(&h.drain()).is_empty());
    h.provider.handle_claim(h.now(), request.id, true).unwrap();
    let update = h.provider.poll_update().expect("the won job is recorded");
    assert!(update
        .changes
        .iter()
        .any(|c| matches!(c, StoreChange::Job(r) if r.id() == request.id)));
    h.provider.handle_persisted(update.id).unwrap();
    let out = h.drain();
    assert_eq!(statuses(&out), vec![FeedbackStatus::PaymentRequired]);
    // A second answer for the same claim changes nothing.
    h.provider.handle_claim(h.now(), request.id, false).unwrap();
    assert_eq!(h.state(&request.id), JobState::AwaitingPayment);
}

#[test]
fn a_lost_claim_drops_the_job_without_a_word_and_ignores_it_delivered_again() {
    let mut h = member();
    let request = h.request(|b| b);
    h.send(request.clone());
    h.provider.handle_claim(h.now(), request.id, false).unwrap();
    let out = h.drain();
    assert!(
        visible(&out).is_empty(),
        "nothing sent for a lost job: {out:?}"
    );
    assert!(notes(&out)
        .iter()
        .any(|n| matches!(n, Notification::JobClaimedElsewhere { job } if *job == request.id)));
    assert!(h.provider.job_state(&request.id).is_none());
    assert_eq!(h.provider.live_jobs(), 0);
    // The same request from another relay: not claimed again.
    let out = h.send(request.clone());
    assert!(
        claims(&out).is_empty() && visible(&out).is_empty(),
        "{out:?}"
    );
    // A zap for it (the winner's business) starts nothing here.
    let receipt = h.zap(request.id, PRICE);
    let out = h.send(receipt);
    assert!(run_tasks(&out).is_empty());
    assert!(h.provider.ledger().is_empty(), "nothing recorded here");
}

/// Three providers with the same keys, each seeing every request and every receipt (in its own
/// order), claims decided first come first served by one table: every job runs once, gets one
/// result and is paid once.
#[test]
fn three_processes_run_each_job_once_and_count_each_payment_once() {
    let mut fleet: Vec<Harness> = (0..3).map(|_| member()).collect();
    let mut rng = StdRng::seed_from_u64(5);
    let mut owner: HashMap<EventId, usize> = HashMap::new();
    let mut runs: HashMap<EventId, usize> = HashMap::new();
    let mut result_count: HashMap<EventId, usize> = HashMap::new();
    let mut payment_requests: Vec<(EventId, EventId)> = Vec::new();
    let mut requests = Vec::new();
    for i in 0..30 {
        let request = fleet[0].request(|b| b.input(JobInput::text(format!("job {i}"))));
        requests.push(request);
    }
    // Every member sees every request; the order of members is random per request.
    for request in &requests {
        let mut order = [0usize, 1, 2];
        for k in (1..3).rev() {
            order.swap(k, (rng.next_u32() as usize) % (k + 1));
        }
        let mut pending = Vec::new();
        for &m in &order {
            let out = fleet[m].send(request.clone());
            for job in claims(&out) {
                pending.push((m, job));
            }
        }
        for (m, job) in pending {
            let won = *owner.entry(job).or_insert(m) == m;
            let h = &mut fleet[m];
            h.provider.handle_claim(h.now(), job, won).unwrap();
            let out = h.drain();
            for fb in feedback(&out, None) {
                if fb.status == FeedbackStatus::PaymentRequired {
                    payment_requests.push((fb.request_id, fb.id));
                }
            }
            assert!(won || visible(&out).is_empty(), "a loser sends nothing");
        }
    }
    assert_eq!(owner.len(), requests.len(), "every job claimed");
    assert_eq!(
        payment_requests.len(),
        requests.len(),
        "one payment request each"
    );
    // Every receipt reaches every member, twice over (two relays).
    let receipts: Vec<Event> = payment_requests
        .iter()
        .map(|(_, fid)| fleet[0].zap(*fid, PRICE))
        .collect();
    for receipt in receipts.iter().chain(receipts.iter()) {
        for h in fleet.iter_mut() {
            let out = h.send(receipt.clone());
            for job in run_tasks(&out) {
                *runs.entry(job).or_default() += 1;
                h.provider
                    .handle_task_result(h.now(), job, Ok(TaskOutput::new("done")))
                    .unwrap();
                for result in results(&h.drain(), None) {
                    *result_count.entry(result.request_id).or_default() += 1;
                }
            }
        }
    }
    for request in &requests {
        assert_eq!(
            runs.get(&request.id),
            Some(&1),
            "job {} runs once",
            request.id
        );
        assert_eq!(result_count.get(&request.id), Some(&1), "one result");
    }
    let spent: usize = fleet.iter().map(|h| h.provider.ledger().len()).sum();
    assert_eq!(
        spent,
        requests.len(),
        "each payment counted once, by one member"
    );
    let jobs: HashSet<EventId> = fleet
        .iter()
        .flat_map(|h| h.provider.jobs().map(|(id, _)| *id).collect::<Vec<_>>())
        .collect();
    let held: usize = fleet.iter().map(|h| h.provider.jobs().count()).sum();
    assert_eq!(held, jobs.len(), "no job is held by two members");
}

/// A member persisting by updates dies with a paid job running and another awaiting payment;
/// a second member adopts its records: the paid job runs again there (its result was never
/// published) without being paid again, a replay of its receipt starts nothing, and a zap
/// bound to the dead member's payment request, which reached the heir before it adopted the
/// job, pays the job awaiting payment.
#[test]
fn a_takeover_continues_the_dead_members_jobs_without_paying_twice() {
    let mut a = member();
    let mut b = member();
    a.provider.track_updates();
    let mut records = RecordSet::default();
    let store = |h: &mut Harness, records: &mut RecordSet| {
        let mut out = Vec::new();
        loop {
            out.extend(h.drain());
            let Some(update) = h.provider.poll_update() else {
                break;
            };
            records.apply(&update);
            h.provider.handle_persisted(update.id).unwrap();
        }
        out
    };
    let paid = a.request(|b| b.input(JobInput::text("paid")));
    let unpaid = a.request(|b| b.input(JobInput::text("unpaid")));
    for request in [&paid, &unpaid] {
        a.send(request.clone());
        a.provider.handle_claim(a.now(), request.id, true).unwrap();
    }
    let out = store(&mut a, &mut records);
    let fb = feedback(&out, None);
    let fid = |job: EventId| fb.iter().find(|f| f.request_id == job).unwrap().id;
    let receipt = a.zap(fid(paid.id), PRICE);
    let out = a.send(receipt.clone());
    assert!(
        run_tasks(&out).is_empty(),
        "a paid task waits for its ledger entry"
    );
    let out = store(&mut a, &mut records);
    assert_eq!(run_tasks(&out), vec![paid.id]);
    // `a` dies here, its task unfinished. The customer pays the other job meanwhile: `b`,
    // which does not know it yet, sees the receipt first.
    let early = b.zap(fid(unpaid.id), PRICE);
    let out = b.send(early);
    assert!(run_tasks(&out).is_empty());
    // `b` takes `a`'s records over.
    let snapshot = records.snapshot().unwrap();
    b.provider.track_updates();
    let taken = b.provider.adopt(b.now(), snapshot).unwrap();
    assert_eq!(taken, 2);
    let mut b_records = RecordSet::default();
    let out = store(&mut b, &mut b_records);
    let mut ran = run_tasks(&out);
    ran.sort();
    let mut both = vec![paid.id, unpaid.id];
    both.sort();
    assert_eq!(
        ran, both,
        "the paid job goes on, the early zap pays the other"
    );
    // The receipts of the adopted jobs are asked of the relays again.
    let asked = out.iter().any(|o| {
        matches!(o, Output::Relay(RelayCommand::Subscribe { id, filter })
            if id == nostr_dvm::provider::SUB_ADOPTED
                && filter.generic_tags.values().any(|ids| ids.contains(&fid(unpaid.id).to_hex())))
    });
    assert!(asked, "{out:?}");
    assert!(b.provider.ledger().receipt_spent(&receipt.id));
    assert!(b_records.job(&paid.id).is_some() && b_records.job(&unpaid.id).is_some());
    // The receipt again (a relay replays it): nothing more.
    let out = b.send(receipt.clone());
    assert!(
        run_tasks(&out).is_empty() && visible(&out).is_empty(),
        "{out:?}"
    );
    b.provider
        .handle_task_result(b.now(), paid.id, Ok(TaskOutput::new("done")))
        .unwrap();
    let out = store(&mut b, &mut b_records);
    assert_eq!(results(&out, None).len(), 1);
    // Adopting the same records again takes nothing.
    assert_eq!(
        b.provider
            .adopt(b.now(), records.snapshot().unwrap())
            .unwrap(),
        0
    );
}

#[test]
fn a_job_still_unclaimed_when_saved_is_claimed_again_after_a_restore() {
    let mut h = member();
    let request = h.request(|b| b);
    h.send(request.clone());
    let snapshot = h.provider.snapshot();
    let config = ProviderConfig::new([Kind::from(KIND)])
        .zappers([h.zapper.pubkey()])
        .relays(["wss://dvm.example"])
        .pricing(FixedPrice(PRICE))
        .deterministic_seed([7; 32]);
    let mut config = config;
    config.claim_jobs = true;
    config.zaps_only = true;
    let mut restored = Provider::restore(h.keys.clone(), config, snapshot).unwrap();
    restored.resume(h.now());
    let mut out = Vec::new();
    while let Some(o) = restored.poll_output() {
        out.push(o);
    }
    assert_eq!(claims(&out), vec![request.id]);
    assert!(statuses(&out).is_empty(), "still nothing sent: {out:?}");
}

/// A job whose claim was lost was never this process's: no update records, forgets or
/// removes it (the store's row is the winner's).
#[test]
fn a_lost_claim_writes_nothing_about_the_job() {
    let mut h = member();
    h.provider.track_updates();
    let request = h.request(|b| b);
    h.send(request.clone());
    h.provider.handle_claim(h.now(), request.id, false).unwrap();
    while let Some(update) = h.provider.poll_update() {
        let about: Vec<&StoreChange> = update
            .changes
            .iter()
            .filter(|c| match c {
                StoreChange::Job(r) => r.id() == request.id,
                StoreChange::Forgotten { job, .. } | StoreChange::Removed(job) => {
                    *job == request.id
                }
                _ => false,
            })
            .collect();
        assert!(about.is_empty(), "{about:?}");
        h.provider.handle_persisted(update.id).unwrap();
    }
}
