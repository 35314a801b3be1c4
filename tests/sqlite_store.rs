//! `SqliteStore`: holds exactly what the reference `RecordSet` holds after the same updates
//! (jobs created, paid, answered, expired and forgotten; spent keys recorded and expired),
//! across reopening; one process per file; owner-only files; schema versions; imports.
#![cfg(all(feature = "sqlite", feature = "test-util"))]

mod provider_harness;

use std::path::PathBuf;

use nostr_dvm::provider::RecordSet;
use nostr_dvm::runtime::{RecordStore, RuntimeError, SqliteStore, SyncMode};
use provider_harness::*;

/// A directory of its own under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "nostr-dvm-sqlite-{}",
            Keys::generate().public_key().to_hex()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn db(&self) -> PathBuf {
        self.0.join("provider.sqlite")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

/// Writes every pending update to both stores (one SQLite transaction per update, or all in
/// one when `group`), acknowledges them, and hands back the outputs they released.
fn persist(
    h: &mut Harness,
    sqlite: &SqliteStore,
    reference: &mut RecordSet,
    group: bool,
) -> Vec<Output> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    while let Some(update) = h.provider.poll_update() {
        reference.apply(&update);
        if group {
            batch.push(update.clone());
        } else {
            sqlite.apply(std::slice::from_ref(&update)).unwrap();
        }
        h.provider.handle_persisted(update.id).unwrap();
        let released = h.drain();
        // Every other event is reported published: both kinds of outgoing records are kept.
        for (n, event) in published(&released).into_iter().enumerate() {
            if n % 2 == 0 {
                h.provider.handle_published(event.id);
            }
        }
        out.extend(released);
    }
    sqlite.apply(&batch).unwrap();
    out
}

fn same(sqlite: &SqliteStore, reference: &RecordSet) {
    let stored = serde_json::to_value(sqlite.load().unwrap().expect("stored")).unwrap();
    let expected = serde_json::to_value(reference.snapshot().expect("stored")).unwrap();
    assert_eq!(stored, expected);
}

#[test]
fn it_holds_what_the_reference_holds_through_a_jobs_whole_life_and_a_reopen() {
    let dir = TempDir::new();
    let mut h = tracked();
    let mut reference = RecordSet::default();
    let mut sqlite = SqliteStore::open(dir.db()).unwrap();
    assert!(sqlite.load().unwrap().is_none(), "a new file holds nothing");
    persist(&mut h, &sqlite, &mut reference, false);
    for round in 0..6u64 {
        let group = round % 2 == 1;
        // Three jobs: one paid and answered, one paid and still running, one never paid.
        let mut asked = Vec::new();
        for _ in 0..3 {
            // A second apart: the same request signed in the same second is the same event.
            h.now += 1;
            let request = h.request(|b| b);
            h.provider.handle_event(h.now(), request.clone());
            let out = persist(&mut h, &sqlite, &mut reference, group);
            let fb = feedback(&out, None);
            assert_eq!(fb.len(), 1, "round {round}: {:?}", notes(&out));
            asked.push((request, fb[0].id));
        }
        for (request, feedback) in &asked[..2] {
            let receipt = h.zap(*feedback, PRICE);
            h.provider.handle_event(h.now(), receipt);
            let out = persist(&mut h, &sqlite, &mut reference, group);
            assert_eq!(run_tasks(&out), [request.id]);
        }
        h.provider
            .handle_task_result(h.now(), asked[0].0.id, Ok(TaskOutput::new("done")))
            .unwrap();
        persist(&mut h, &sqlite, &mut reference, group);
        same(&sqlite, &reference);
        // A late payment for the answered job, which memory keeps as a summary: refunded,
        // and the store merges the summary record over the full one it holds.
        let receipt = h.zap(asked[0].1, PRICE);
        h.provider.handle_event(h.now(), receipt);
        let out = persist(&mut h, &sqlite, &mut reference, group);
        assert!(out.iter().any(|o| matches!(o, Output::Refund(_))));
        assert!(!reference.job(&asked[0].0.id).unwrap().is_summary());
        same(&sqlite, &reference);
        // Time passes: windows close, jobs end and are forgotten, payments stop being spent.
        h.now += 100;
        h.provider.handle_timeout(h.now());
        h.drain();
        persist(&mut h, &sqlite, &mut reference, group);
        same(&sqlite, &reference);
        if round == 2 {
            drop(sqlite);
            sqlite = SqliteStore::open(dir.db()).unwrap();
            same(&sqlite, &reference);
        }
    }
    assert!(reference.jobs() > 0);
    // The provider restored from the file goes on where the original was.
    let snapshot = sqlite.load().unwrap().unwrap();
    let restored = Provider::restore(
        h.keys.clone(),
        ProviderConfig::new([Kind::from(KIND)]),
        snapshot,
    )
    .expect("restores");
    assert_eq!(restored.jobs().count(), h.provider.jobs().count());
}

#[test]
fn a_second_opening_of_the_same_file_is_refused() {
    let dir = TempDir::new();
    let first = SqliteStore::open(dir.db()).unwrap();
    let second = SqliteStore::open_with(dir.db(), SyncMode::Full);
    assert!(
        matches!(&second, Err(RuntimeError::StoreInUse(path)) if *path == dir.db()),
        "{second:?}"
    );
    drop(first);
    SqliteStore::open(dir.db()).expect("free again once the first is closed");
}

#[cfg(unix)]
#[test]
fn its_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let mut h = tracked();
    let sqlite = SqliteStore::open(dir.db()).unwrap();
    let request = h.request(|b| b);
    h.provider.handle_event(h.now(), request);
    persist(&mut h, &sqlite, &mut RecordSet::default(), false);
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the database, its WAL and the lock file: {checked}"
    );
}

#[test]
fn a_file_from_a_newer_version_is_refused_untouched() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.db()).unwrap());
    let connection = rusqlite::Connection::open(dir.db()).unwrap();
    connection
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    drop(connection);
    let refused = SqliteStore::open(dir.db());
    match refused {
        Err(RuntimeError::Store(reason)) => assert!(reason.contains("newer"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let connection = rusqlite::Connection::open(dir.db()).unwrap();
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[test]
fn a_snapshot_is_imported_into_an_empty_store_only() {
    let dir = TempDir::new();
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    for _ in 0..3 {
        let request = h.request(|b| b);
        h.send(request);
    }
    let snapshot = h.provider.snapshot();
    let sqlite = SqliteStore::open(dir.db()).unwrap();
    sqlite.import(snapshot.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(sqlite.load().unwrap().unwrap()).unwrap(),
        serde_json::to_value(&snapshot).unwrap()
    );
    assert!(
        sqlite.import(snapshot).is_err(),
        "not into a store that holds something"
    );
}

#[test]
fn a_database_with_a_schema_version_nostr_dvm_never_writes_is_refused() {
    let dir = TempDir::new();
    let connection = rusqlite::Connection::open(dir.db()).unwrap();
    connection
        .execute_batch("PRAGMA user_version = -1;")
        .unwrap();
    drop(connection);
    match SqliteStore::open(dir.db()) {
        Err(RuntimeError::Store(reason)) => assert!(reason.contains("not nostr-dvm"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
