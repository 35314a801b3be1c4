//! `PostgresStore` against a real PostgreSQL server: holds what the reference `RecordSet`
//! holds after the same updates; claims are won by exactly one process of the fleet; a dead
//! process's records go to exactly one survivor; a process whose lease was taken over (or
//! whose name another process took) writes nothing more; it reconnects after a server
//! restart; spent keys are the fleet's. Each test has a server of its own.
//!
//! The `postgres` client runs a runtime of its own: these tests are plain `#[test]`s and
//! their threads are plain threads.
#![cfg(all(feature = "postgres", feature = "test-util", unix))]

mod provider_harness;
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use nostr_dvm::provider::{JobRecord, ProviderSnapshot, RecordSet, StoreChange, StoreUpdate};
use nostr_dvm::runtime::{PostgresSettings, PostgresStore, RecordStore, RuntimeError};
use provider_harness::*;
use serde_json::Value;
use support::postgres::TestPostgres;

/// A priced, zaps-only provider persisting by updates, whose jobs and payments expire soon.
fn tracked() -> Harness {
    let mut h = Harness::new(|mut c| {
        c.admission.rate_limit = None;
        c.admission.global_rate_limit = None;
        c.zaps_only = true;
        c.retention_secs = 120;
        c.spent_retention_secs = 300;
        c.payment_window_secs = 60;
        c.pricing(FixedPrice(PRICE))
    });
    h.provider.track_updates();
    h
}

/// The lease of the process that dies in the lease test.
const LEASE: Duration = Duration::from_secs(2);

fn short_lease(lease: Duration) -> PostgresSettings {
    PostgresSettings::default().lease(lease)
}

/// The job records of `update`.
fn records(update: &StoreUpdate) -> Vec<JobRecord> {
    update
        .changes
        .iter()
        .filter_map(|c| match c {
            StoreChange::Job(record) => Some((**record).clone()),
            _ => None,
        })
        .collect()
}

/// Takes every pending update of `h`: for each, claims its new jobs in `store` (as the
/// runtime does before it writes them), writes it to `store` and `reference`, acknowledges
/// it and reports every other event published (so that both kinds of outgoing records are
/// kept). All in one `apply` when `group`. Returns the updates and the outputs they released.
fn persist(
    h: &mut Harness,
    store: &PostgresStore,
    reference: &mut RecordSet,
    group: bool,
) -> (Vec<StoreUpdate>, Vec<Output>) {
    let mut batch = Vec::new();
    let mut out = Vec::new();
    while let Some(update) = h.provider.poll_update() {
        let new: Vec<JobRecord> = records(&update)
            .into_iter()
            .filter(|r| reference.job(&r.id()).is_none())
            .collect();
        assert!(
            store.claim(&new).unwrap().iter().all(|won| *won),
            "a lone process wins its claims"
        );
        reference.apply(&update);
        if !group {
            store.apply(std::slice::from_ref(&update)).unwrap();
        }
        h.provider.handle_persisted(update.id).unwrap();
        let released = h.drain();
        for (n, event) in published(&released).into_iter().enumerate() {
            if n % 2 == 0 {
                h.provider.handle_published(event.id);
            }
        }
        out.extend(released);
        batch.push(update);
    }
    if group {
        store.apply(&batch).unwrap();
    }
    (batch, out)
}

/// Like [`persist`], one update at a time, but reports no event published: they all stay
/// to publish.
fn persist_unpublished(
    h: &mut Harness,
    store: &PostgresStore,
    reference: &mut RecordSet,
) -> Vec<StoreUpdate> {
    let mut updates = Vec::new();
    while let Some(update) = h.provider.poll_update() {
        assert!(store.claim(&records(&update)).unwrap().iter().all(|w| *w));
        store.apply(std::slice::from_ref(&update)).unwrap();
        reference.apply(&update);
        h.provider.handle_persisted(update.id).unwrap();
        h.drain();
        updates.push(update);
    }
    updates
}

/// `snapshot` as JSON, with its events to publish in event id order (the reference keeps
/// them by id, the store in the order they were first written: see
/// [`the_events_to_publish_come_back_in_the_order_they_were_written`]).
fn normalized(snapshot: &ProviderSnapshot) -> Value {
    let mut value = serde_json::to_value(snapshot).unwrap();
    if let Some(Value::Array(outbox)) = value.get_mut("outbox") {
        outbox.sort_by_key(|o| o.to_string());
    }
    value
}

fn same(store: &PostgresStore, reference: &RecordSet) {
    let stored = store.load().unwrap().expect("stored");
    let expected = reference.snapshot().expect("stored");
    assert_eq!(normalized(&stored), normalized(&expected));
}

/// The ids of the jobs in `snapshot`.
fn job_ids(snapshot: &ProviderSnapshot) -> BTreeSet<String> {
    let value = serde_json::to_value(snapshot).unwrap();
    value["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["request"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The job of `id` in `snapshot`, as JSON.
fn stored_job(snapshot: &ProviderSnapshot, id: &EventId) -> Option<Value> {
    let value = serde_json::to_value(snapshot).unwrap();
    value["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["request"]["id"].as_str() == Some(&id.to_hex()))
        .cloned()
}

/// The ids of the events `snapshot` publishes first, in order.
fn publishes(snapshot: &ProviderSnapshot) -> Vec<String> {
    let value = serde_json::to_value(snapshot).unwrap();
    value["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["Relay"]["Publish"]["event"]["id"].as_str())
        .map(str::to_owned)
        .collect()
}

fn lease_lost<T: std::fmt::Debug>(result: Result<T, RuntimeError>) -> bool {
    matches!(result, Err(RuntimeError::LeaseLost))
}

/// A plain client, to look at (or spoil) the tables.
fn sql(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

#[test]
fn it_holds_what_the_reference_holds_through_a_jobs_whole_life_and_a_reconnect() {
    let server = TestPostgres::start();
    let url = server.create_database("reference");
    let mut h = tracked();
    let mut reference = RecordSet::default();
    let mut store = PostgresStore::connect(&url, "a").unwrap();
    assert!(
        store.load().unwrap().is_none(),
        "a new database holds nothing"
    );
    persist(&mut h, &store, &mut reference, false);
    for round in 0..4u64 {
        let group = round % 2 == 1;
        // Three jobs: one paid and answered, one paid and still running, one never paid.
        let mut asked = Vec::new();
        for _ in 0..3 {
            // A second apart: the same request signed in the same second is the same event.
            h.now += 1;
            let request = h.request(|b| b);
            h.provider.handle_event(h.now(), request.clone());
            let (_, out) = persist(&mut h, &store, &mut reference, group);
            let fb = feedback(&out, None);
            assert_eq!(fb.len(), 1, "round {round}: {:?}", notes(&out));
            asked.push((request, fb[0].id));
        }
        for (request, feedback) in &asked[..2] {
            let receipt = h.zap(*feedback, PRICE);
            h.provider.handle_event(h.now(), receipt);
            let (_, out) = persist(&mut h, &store, &mut reference, group);
            assert_eq!(run_tasks(&out), [request.id]);
        }
        h.provider
            .handle_task_result(h.now(), asked[0].0.id, Ok(TaskOutput::new("done")))
            .unwrap();
        persist(&mut h, &store, &mut reference, group);
        same(&store, &reference);
        // A late payment for the answered job, which memory keeps as a summary: refunded,
        // and the store merges the summary record over the full one it holds.
        let receipt = h.zap(asked[0].1, PRICE);
        h.provider.handle_event(h.now(), receipt);
        let (_, out) = persist(&mut h, &store, &mut reference, group);
        assert!(out.iter().any(|o| matches!(o, Output::Refund(_))));
        assert!(!reference.job(&asked[0].0.id).unwrap().is_summary());
        same(&store, &reference);
        // Time passes: windows close, jobs end and are forgotten, payments stop being spent.
        h.now += 100;
        h.provider.handle_timeout(h.now());
        h.drain();
        persist(&mut h, &store, &mut reference, group);
        same(&store, &reference);
        if round == 1 {
            // The process restarts with the same name: it gets its records back.
            drop(store);
            store = PostgresStore::connect(&url, "a").unwrap();
            same(&store, &reference);
        }
    }
    assert!(reference.jobs() > 0);
    // The provider restored from the database goes on where the original was.
    let snapshot = store.load().unwrap().unwrap();
    let restored = Provider::restore(
        h.keys.clone(),
        ProviderConfig::new([Kind::from(KIND)]),
        snapshot,
    )
    .expect("restores");
    assert_eq!(restored.jobs().count(), h.provider.jobs().count());
}

#[test]
fn the_events_to_publish_come_back_in_the_order_they_were_written() {
    let server = TestPostgres::start();
    let store = PostgresStore::connect(&server.url(), "a").unwrap();
    store.load().unwrap();
    let mut h = tracked();
    // One update per request, none reported published: the order of the updates is the
    // order of publishing.
    let mut written = Vec::new();
    for _ in 0..6 {
        h.now += 1;
        let request = h.request(|b| b);
        h.provider.handle_event(h.now(), request);
        for update in persist_unpublished(&mut h, &store, &mut RecordSet::default()) {
            for change in &update.changes {
                if let StoreChange::Outgoing { event, .. } = change {
                    written.push(event.id.to_hex());
                }
            }
        }
    }
    assert!(written.len() >= 3, "{written:?}");
    let stored = publishes(&store.load().unwrap().unwrap());
    assert_eq!(stored, written);
    let mut by_id = written.clone();
    by_id.sort();
    assert_ne!(
        by_id, written,
        "the test means something only if both orders differ"
    );
}

/// Fifty job records of one provider, and the meta of its last update.
fn fifty_jobs() -> (Vec<JobRecord>, ProviderSnapshot) {
    let mut h = tracked();
    for _ in 0..50 {
        h.now += 1;
        let request = h.request(|b| b);
        h.provider.handle_event(h.now(), request);
        h.drain();
    }
    let update = h.provider.poll_update().unwrap();
    let jobs = records(&update);
    assert_eq!(jobs.len(), 50);
    (jobs, update.meta)
}

fn update(id: u64, changes: Vec<StoreChange>, meta: &ProviderSnapshot) -> StoreUpdate {
    StoreUpdate {
        id,
        changes,
        meta: meta.clone(),
    }
}

#[test]
fn of_two_processes_claiming_a_job_at_once_exactly_one_wins_and_only_it_writes_the_job() {
    let server = TestPostgres::start();
    let url = server.url();
    let a = PostgresStore::connect(&url, "a").unwrap();
    let b = PostgresStore::connect(&url, "b").unwrap();
    a.load().unwrap();
    b.load().unwrap();
    let (jobs, meta) = fifty_jobs();
    let barrier = Barrier::new(2);
    let race = |store: &PostgresStore| {
        let mut won = Vec::new();
        for job in &jobs {
            barrier.wait();
            won.push(store.claim(std::slice::from_ref(job)).unwrap()[0]);
        }
        won
    };
    let (won_a, won_b) = std::thread::scope(|s| {
        let a_side = s.spawn(|| race(&a));
        let b_side = s.spawn(|| race(&b));
        (a_side.join().unwrap(), b_side.join().unwrap())
    });
    for (n, (a_won, b_won)) in won_a.iter().zip(&won_b).enumerate() {
        assert!(a_won ^ b_won, "job {n}: a {a_won}, b {b_won}");
    }
    let a_count = won_a.iter().filter(|w| **w).count();
    assert_eq!(
        sql(&url)
            .query_one("SELECT count(*) FROM jobs WHERE owner = 'a'", &[])
            .unwrap()
            .get::<_, i64>(0),
        a_count as i64
    );
    // The first job's winner is the owner, the other the intruder, below.
    let (owner, intruder) = if won_a[0] { (&a, &b) } else { (&b, &a) };
    let job = &jobs[0];
    // A claim of one's own job wins again (a retried claim); of the other's, loses again.
    assert_eq!(owner.claim(std::slice::from_ref(job)).unwrap(), [true]);
    assert_eq!(intruder.claim(std::slice::from_ref(job)).unwrap(), [false]);

    // The intruder writes the owner's job (another record of it), forgets it and removes
    // it: the owner's record stays.
    let fresh = {
        let mut h = tracked();
        h.now += 1_000;
        let request = h.request(|b| b);
        h.provider.handle_event(h.now(), request);
        h.drain();
        records(&h.provider.poll_update().unwrap()).remove(0)
    };
    // The same id with another record: the job as the intruder's provider might hold it.
    let mut theirs = serde_json::to_value(&fresh).unwrap();
    theirs["id"] = serde_json::to_value(job.id()).unwrap();
    theirs["job"]["request"] = serde_json::to_value(job).unwrap()["job"]["request"].clone();
    let theirs: JobRecord = serde_json::from_value(theirs).unwrap();
    assert_eq!(theirs.id(), job.id());
    assert_ne!(&theirs, job);
    owner.apply(&[update(1, vec![], &meta)]).unwrap();
    intruder
        .apply(&[update(
            1,
            vec![
                StoreChange::Job(Box::new(theirs)),
                StoreChange::Forgotten {
                    job: job.id(),
                    until: Timestamp::from(T0 + 10_000),
                },
                StoreChange::Removed(job.id()),
            ],
            &meta,
        )])
        .unwrap();
    assert_eq!(
        stored_job(&owner.load().unwrap().unwrap(), &job.id()),
        Some(serde_json::to_value(job).unwrap()["job"].clone()),
        "the owner's record is untouched"
    );
    assert_eq!(
        sql(&url)
            .query_one("SELECT count(*) FROM forgotten", &[])
            .unwrap()
            .get::<_, i64>(0),
        0,
        "the intruder could not forget the owner's job"
    );

    // A forgotten id cannot be claimed, by anyone, nor written by another process.
    assert_eq!(owner.claim(std::slice::from_ref(&fresh)).unwrap(), [true]);
    owner
        .apply(&[update(
            2,
            vec![StoreChange::Forgotten {
                job: fresh.id(),
                until: Timestamp::from(T0 + 10_000),
            }],
            &meta,
        )])
        .unwrap();
    assert_eq!(
        intruder.claim(std::slice::from_ref(&fresh)).unwrap(),
        [false]
    );
    assert_eq!(owner.claim(std::slice::from_ref(&fresh)).unwrap(), [false]);
    intruder
        .apply(&[update(
            2,
            vec![StoreChange::Job(Box::new(fresh.clone()))],
            &meta,
        )])
        .unwrap();
    assert!(stored_job(&intruder.load().unwrap().unwrap(), &fresh.id()).is_none());
    assert_eq!(
        sql(&url)
            .query_one(
                "SELECT count(*) FROM jobs WHERE id = $1",
                &[&fresh.id().to_bytes().as_slice()]
            )
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}

#[test]
fn a_process_whose_lease_expired_is_taken_over_by_exactly_one_survivor_and_writes_no_more() {
    let server = TestPostgres::start();
    let url = server.url();
    let a = PostgresStore::connect_with(&url, "a", short_lease(LEASE)).unwrap();
    assert_eq!(a.lease_renewal(), Some(LEASE / 3));
    let b = PostgresStore::connect(&url, "b").unwrap();
    let c = PostgresStore::connect(&url, "c").unwrap();
    a.load().unwrap();
    b.load().unwrap();
    c.load().unwrap();
    // a takes two jobs; its payment-required feedback waits to be published.
    let mut h = tracked();
    let mut reference = RecordSet::default();
    for _ in 0..2 {
        h.now += 1;
        let request = h.request(|b| b);
        h.provider.handle_event(h.now(), request);
        persist_unpublished(&mut h, &a, &mut reference);
    }
    let expected = reference.snapshot().unwrap();
    assert_eq!(job_ids(&expected).len(), 2);
    assert!(!publishes(&expected).is_empty());
    // a renews within its lease: nobody takes it.
    std::thread::sleep(LEASE / 2);
    assert!(a.renew().unwrap().is_empty());
    std::thread::sleep(LEASE / 2);
    assert!(b.renew().unwrap().is_empty(), "a's lease was renewed");
    // a stops renewing; both survivors renew at once after its lease ran out.
    std::thread::sleep(LEASE * 2 / 3);
    let barrier = Barrier::new(2);
    let renew = |store: &PostgresStore| {
        barrier.wait();
        store.renew().unwrap()
    };
    let (by_b, by_c) = std::thread::scope(|s| {
        let b_side = s.spawn(|| renew(&b));
        let c_side = s.spawn(|| renew(&c));
        (b_side.join().unwrap(), c_side.join().unwrap())
    });
    assert_eq!(by_b.len() + by_c.len(), 1, "taken once: {by_b:?} {by_c:?}");
    let (heir, other, taken) = if by_b.is_empty() {
        (&c, &b, &by_c[0])
    } else {
        (&b, &c, &by_b[0])
    };
    assert_eq!(job_ids(taken), job_ids(&expected));
    assert_eq!(publishes(taken), publishes(&expected));
    assert_eq!(
        serde_json::to_value(taken).unwrap()["rng"],
        serde_json::to_value(&expected).unwrap()["rng"],
        "a's meta comes along"
    );
    // Nobody takes it again.
    assert!(b.renew().unwrap().is_empty());
    assert!(c.renew().unwrap().is_empty());
    // a's jobs are the heir's now.
    let first = job_ids(&expected).into_iter().next().unwrap();
    let a_job = reference
        .job(&EventId::from_hex(&first).unwrap())
        .unwrap()
        .clone();
    assert_eq!(heir.claim(std::slice::from_ref(&a_job)).unwrap(), [true]);
    assert_eq!(other.claim(std::slice::from_ref(&a_job)).unwrap(), [false]);
    // a writes nothing more.
    assert!(lease_lost(a.apply(&[update(9, vec![], &expected)])));
    assert!(lease_lost(a.claim(std::slice::from_ref(&a_job))));
    assert!(lease_lost(a.renew()));
}

#[test]
fn after_a_server_restart_the_store_connects_again_and_loses_nothing() {
    let mut server = TestPostgres::start();
    let store = PostgresStore::connect(&server.url(), "a").unwrap();
    store.load().unwrap();
    let mut h = tracked();
    let mut reference = RecordSet::default();
    h.now += 1;
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request);
    persist(&mut h, &store, &mut reference, false);
    server.restart();
    // The first call after the restart finds its connection cut, connects again, and writes.
    h.now += 1;
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request);
    persist(&mut h, &store, &mut reference, false);
    assert_eq!(reference.jobs(), 2);
    same(&store, &reference);
    // Down, the store fails (for the runtime to try again), and works once it is back.
    server.stop();
    h.now += 1;
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request);
    let update = h.provider.poll_update().unwrap();
    match store.apply(std::slice::from_ref(&update)) {
        Err(RuntimeError::Store(reason)) => assert!(reason.contains("apply"), "{reason}"),
        other => panic!("{other:?}"),
    }
    server.start_again();
    store.apply(std::slice::from_ref(&update)).unwrap();
    reference.apply(&update);
    same(&store, &reference);
}

#[test]
fn a_payment_key_spent_by_two_processes_is_one_row_of_the_fleet() {
    let server = TestPostgres::start();
    let url = server.url();
    let a = PostgresStore::connect(&url, "a").unwrap();
    let b = PostgresStore::connect(&url, "b").unwrap();
    a.load().unwrap();
    b.load().unwrap();
    let meta = tracked().provider.poll_update().unwrap().meta;
    let key = nostr_dvm::provider::SpentKey::PaymentHash([7; 32]);
    let spent = |until: u64| StoreChange::Spent {
        key,
        expires: Timestamp::from(until),
    };
    a.apply(&[update(1, vec![spent(T0 + 100)], &meta)]).unwrap();
    b.apply(&[update(1, vec![spent(T0 + 200)], &meta)]).unwrap();
    // Written again (a retried update): still one row.
    a.apply(&[update(1, vec![spent(T0 + 100)], &meta)]).unwrap();
    let rows = sql(&url)
        .query("SELECT expires FROM spent", &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect::<Vec<_>>();
    assert_eq!(
        rows,
        [(T0 + 200) as i64],
        "one row, spent until the later expiry"
    );
    // Every process loads the fleet's spent keys.
    for store in [&a, &b] {
        let ledger =
            serde_json::to_value(store.load().unwrap().unwrap()).unwrap()["ledger"].to_string();
        assert!(ledger.contains("PaymentHash"), "{ledger}");
    }
}

#[test]
fn a_second_process_with_the_same_name_takes_the_name_over() {
    let server = TestPostgres::start();
    let url = server.url();
    let first = PostgresStore::connect(&url, "a").unwrap();
    first.load().unwrap();
    let mut h = tracked();
    let mut reference = RecordSet::default();
    h.now += 1;
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request);
    persist(&mut h, &first, &mut reference, false);
    let second = PostgresStore::connect(&url, "a").unwrap();
    let loaded = second.load().unwrap().expect("a's records");
    assert_eq!(
        normalized(&loaded),
        normalized(&reference.snapshot().unwrap())
    );
    let meta = reference.snapshot().unwrap();
    assert!(lease_lost(first.apply(&[update(9, vec![], &meta)])));
    assert!(lease_lost(first.renew()));
    second.apply(&[update(9, vec![], &meta)]).unwrap();
    assert!(second.renew().unwrap().is_empty());
}

#[test]
fn bad_data_a_newer_schema_and_passwords_give_errors_not_panics_nor_leaks() {
    let server = TestPostgres::start();
    let url = server.url();
    // Trust authentication takes any password: the store must never show it.
    let with_password = url.replace("dvm@", "dvm:s3cret-pw@");
    let store = PostgresStore::connect(&with_password, "a").unwrap();
    assert!(!format!("{store:?}").contains("s3cret"), "{store:?}");
    let unreachable = format!("postgres://dvm:s3cret-pw@127.0.0.1:{}/postgres", 1);
    match PostgresStore::connect(&unreachable, "a") {
        Err(RuntimeError::Store(reason)) => assert!(!reason.contains("s3cret"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A corrupt job record: an error.
    let mut h = tracked();
    let mut reference = RecordSet::default();
    store.load().unwrap();
    h.now += 1;
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request);
    persist(&mut h, &store, &mut reference, false);
    let mut client = sql(&url);
    client
        .execute("UPDATE jobs SET record = '{\"not\": \"a job\"}'", &[])
        .unwrap();
    match store.load() {
        Err(RuntimeError::Store(reason)) => assert!(reason.contains("job record"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A database written by a newer nostr-dvm: refused, untouched.
    client
        .execute("UPDATE dvm_schema_version SET version = 99", &[])
        .unwrap();
    match PostgresStore::connect(&url, "b") {
        Err(RuntimeError::Store(reason)) => assert!(reason.contains("newer"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let version: i64 = client
        .query_one("SELECT version FROM dvm_schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 99);
}

/// The database is down longer than a lease: when it is back, nobody is counted dead before
/// it had one lease to renew (the server's start time counts), so a restart of PostgreSQL
/// does not make the fleet take itself over. Once that time passed, a process that did not
/// renew is taken over as usual.
#[test]
fn a_database_down_longer_than_a_lease_takes_nobody_over_when_it_is_back() {
    let mut server = TestPostgres::start();
    let url = server.url();
    let a = PostgresStore::connect_with(&url, "a", short_lease(LEASE)).unwrap();
    let b = PostgresStore::connect_with(&url, "b", short_lease(LEASE)).unwrap();
    a.load().unwrap();
    b.load().unwrap();
    std::thread::sleep(LEASE);
    server.stop();
    std::thread::sleep(LEASE + Duration::from_millis(500));
    server.start_again();
    // Both leases ran out while the database was down.
    assert!(b.renew().unwrap().is_empty(), "a gets its lease's time");
    assert!(a.renew().unwrap().is_empty());
    assert!(
        b.renew().is_ok() && a.renew().is_ok(),
        "both still hold their lease"
    );
    // a stops renewing: after its lease, b takes it over.
    std::thread::sleep(LEASE + Duration::from_millis(300));
    b.renew().unwrap();
    assert!(lease_lost(a.renew()), "a was taken over");
}

/// A process that won claims and died before its first update comes back under its name:
/// its claimed jobs are its own still, and loaded (without a meta record).
#[test]
fn claims_won_before_the_first_update_are_loaded_by_the_next_life() {
    let server = TestPostgres::start();
    let url = server.url();
    let (jobs, _) = fifty_jobs();
    let first = PostgresStore::connect(&url, "a").unwrap();
    assert!(first.load().unwrap().is_none(), "nothing stored yet");
    assert_eq!(first.claim(&jobs[..3]).unwrap(), vec![true; 3]);
    drop(first);
    let next = PostgresStore::connect(&url, "a").unwrap();
    let loaded = next.load().unwrap().expect("the claimed jobs");
    let expected: BTreeSet<String> = jobs[..3].iter().map(|j| j.id().to_hex()).collect();
    assert_eq!(job_ids(&loaded), expected);
}

/// A store connected and dropped on a thread that drives a tokio runtime (`#[tokio::main]`,
/// or where the provider runtime ends) does not panic.
#[test]
fn a_store_connected_and_dropped_inside_a_tokio_runtime_does_not_panic() {
    let server = TestPostgres::start();
    let url = server.url();
    let store = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async { PostgresStore::connect(&url, "a").unwrap() });
    store.load().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async move { drop(store) });
}

/// A TCP proxy to PostgreSQL that, once armed, passes a client's `COMMIT` to the server and
/// then cuts the connection before the answer comes back: the commit happened, the client
/// does not know it.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
}

impl CommitCutter {
    fn start(server_port: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let arm = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = std::net::TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                let arm = arm.clone();
                // Set when the answer must not reach the client any more.
                let cut = Arc::new(AtomicBool::new(false));
                let cutting = cut.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16_384];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let commit = buf[..n].windows(6).any(|w| w == b"COMMIT");
                        let fire = commit && arm.swap(false, Ordering::SeqCst);
                        if fire {
                            cutting.store(true, Ordering::SeqCst);
                        }
                        if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if fire {
                            // Let the server take it, then cut: its answer never comes back.
                            std::thread::sleep(Duration::from_millis(200));
                            let _ = c_read.shutdown(std::net::Shutdown::Both);
                            let _ = s_write.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16_384];
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 || cut.load(Ordering::SeqCst) {
                            break;
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, armed }
    }
}

/// A takeover whose answer is lost (the connection breaks after its commit) is handed out all
/// the same: the store reconnects, and the renewal that answers hands it out; the next one does
/// not hand it out again.
#[test]
fn a_takeover_whose_answer_is_lost_is_handed_out_when_the_store_reconnects() {
    let server = TestPostgres::start();
    let url = server.url();
    let (jobs, _) = fifty_jobs();
    let a = PostgresStore::connect_with(&url, "a", short_lease(LEASE)).unwrap();
    a.load().unwrap();
    assert_eq!(a.claim(&jobs[..2]).unwrap(), vec![true; 2]);
    let cutter = CommitCutter::start(server.port());
    let through = format!("postgres://dvm@127.0.0.1:{}/postgres", cutter.port);
    let b = PostgresStore::connect(&through, "b").unwrap();
    b.load().unwrap();
    // a stops renewing, and its lease (and one lease from the server's start) runs out.
    std::thread::sleep(LEASE + Duration::from_millis(700));
    cutter.armed.store(true, Ordering::SeqCst);
    let taken = b.renew().expect("answered after reconnecting");
    assert!(
        !cutter.armed.load(Ordering::SeqCst),
        "the commit's answer was cut"
    );
    assert_eq!(
        taken.len(),
        1,
        "a's records, handed out though the first answer was lost"
    );
    let expected: BTreeSet<String> = jobs[..2].iter().map(|j| j.id().to_hex()).collect();
    assert_eq!(job_ids(&taken[0]), expected);
    assert!(
        b.renew().unwrap().is_empty(),
        "handed out once it was received"
    );
}

/// Waits until `n` sessions wait for a lock (a transaction holds what they need).
fn wait_for_lock_waiters(url: &str, n: i64) {
    let mut client = sql(url);
    for _ in 0..400 {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{n} sessions never waited for a lock");
}

/// A job its owner forgets while another process claims it (the request delivered again to
/// both): the claim waits for the forgetting transaction and then must see the forgotten id.
/// Under READ COMMITTED a claim that checked the forgotten ids when its statement started
/// (before the forget committed) and inserted once the deleted row was gone would win the
/// job, and run it a second time. The owner's forget is held open in the middle (a plain
/// session holds its meta row), so the claim comes exactly between its writes and its commit.
#[test]
fn a_claim_racing_the_owners_forget_of_the_job_loses() {
    let server = TestPostgres::start();
    let url = server.url();
    let owner = PostgresStore::connect(&url, "owner").unwrap();
    let other = PostgresStore::connect(&url, "other").unwrap();
    owner.load().unwrap();
    other.load().unwrap();
    let (jobs, meta) = fifty_jobs();
    let job = &jobs[0];
    assert_eq!(owner.claim(std::slice::from_ref(job)).unwrap(), [true]);
    owner.apply(&[update(1, vec![], &meta)]).unwrap();

    let mut holder = sql(&url);
    let mut hold = holder.transaction().unwrap();
    hold.query("SELECT 1 FROM meta WHERE owner = 'owner' FOR UPDATE", &[])
        .unwrap();
    let claimed = std::thread::scope(|s| {
        let forget = s.spawn(|| {
            owner
                .apply(&[update(
                    2,
                    vec![StoreChange::Forgotten {
                        job: job.id(),
                        until: Timestamp::from(T0 + 10_000),
                    }],
                    &meta,
                )])
                .unwrap();
        });
        // The forget deleted the job's row and wrote its forgotten id, and waits at its meta.
        wait_for_lock_waiters(&url, 1);
        let claim = s.spawn(|| other.claim(std::slice::from_ref(job)).unwrap());
        // The claim waits for the deleted row.
        wait_for_lock_waiters(&url, 2);
        hold.commit().unwrap();
        forget.join().unwrap();
        claim.join().unwrap()
    });
    assert_eq!(claimed, [false], "the forgotten job was claimed again");
    let rows: i64 = sql(&url)
        .query_one(
            "SELECT count(*) FROM jobs WHERE id = $1",
            &[&job.id().to_bytes().as_slice()],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a row of the forgotten job is stored");
}

/// TLS to the database: the server's certificate must chain to a trusted root and name the
/// host connected to. A server that takes TLS only: with its CA trusted and the host name it
/// names, the store connects (`sslmode=require`, and libpq's `verify-full`) and works; with
/// the CA unknown, or another name for the same server, or in the clear, it does not.
#[test]
fn over_tls_the_servers_certificate_and_host_name_are_verified() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "nostr-dvm test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let server = TestPostgres::start_with_tls(&server_cert.pem(), &server_key.serialize_pem());
    let url = |host: &str, mode: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user=dvm dbname=postgres sslmode={mode}",
            server.port()
        )
    };
    let trusted = || PostgresSettings::default().trust_root_pem(ca.pem());

    let store = PostgresStore::connect_with(&url("localhost", "require"), "a", trusted()).unwrap();
    assert!(format!("{store:?}").contains("\"tls\""), "{store:?}");
    store.load().unwrap();
    let (jobs, meta) = fifty_jobs();
    assert_eq!(store.claim(&jobs[..1]).unwrap(), [true]);
    store.apply(&[update(1, vec![], &meta)]).unwrap();
    assert!(stored_job(&store.load().unwrap().unwrap(), &jobs[0].id()).is_some());
    PostgresStore::connect_with(&url("localhost", "verify-full"), "b", trusted()).unwrap();

    let refused = |url: String, settings: PostgresSettings| {
        PostgresStore::connect_with(&url, "c", settings)
            .expect_err("connected")
            .to_string()
    };
    let unknown = refused(url("localhost", "require"), PostgresSettings::default());
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    let other_name = refused(url("127.0.0.1", "require"), trusted());
    assert!(other_name.contains("not valid for name"), "{other_name}");
    let clear = refused(url("localhost", "disable"), trusted());
    assert!(clear.contains("no encryption"), "{clear}");
    let no_roots = refused(
        url("localhost", "require"),
        PostgresSettings::default().trust_root_pem("no certificate here"),
    );
    assert!(no_roots.contains("no certificate"), "{no_roots}");
}
