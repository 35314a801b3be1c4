//! [`SqliteStore`]: a provider's records in one SQLite file (feature `sqlite`, on with
//! `runtime`).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nostr::{Event, EventId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::record_store::RecordStore;
use super::RuntimeError;
use crate::provider::{JobRecord, ProviderSnapshot, SpentKey, StoreChange, StoreUpdate};

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncMode {
    /// SQLite's `synchronous=NORMAL` in WAL mode (the default): a commit survives the process
    /// being killed (`kill -9`, a panic, an OOM kill) but not a power cut or an OS crash, which
    /// may lose the last commits (never corrupt the file). Fast: the WAL is synced at
    /// checkpoints, not at every commit.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is synced to disk before it counts, so it survives a
    /// power cut too; each commit costs an fsync (about 1 ms on these machines), which group
    /// commit spreads over the updates of a batch.
    Full,
}

/// The schema migrations, in order: `PRAGMA user_version` says how many were applied.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, forgotten job ids, spent payment keys, events to publish, and the provider's
    // meta record.
    "CREATE TABLE jobs (
         id BLOB PRIMARY KEY,
         seq INTEGER NOT NULL,
         state TEXT NOT NULL,
         terminal INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         record TEXT NOT NULL
     );
     CREATE INDEX jobs_terminal ON jobs (terminal, updated_at);
     CREATE TABLE forgotten (
         id BLOB PRIMARY KEY,
         until INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE spent (
         key BLOB NOT NULL,
         kind INTEGER NOT NULL,
         expires INTEGER NOT NULL,
         PRIMARY KEY (kind, key)
     ) WITHOUT ROWID;
     CREATE TABLE outgoing (
         id BLOB PRIMARY KEY,
         event TEXT NOT NULL,
         relays TEXT NOT NULL
     );
     CREATE TABLE meta (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         snapshot TEXT NOT NULL
     );",
];

/// A provider's records in one SQLite file, written by updates: the runtime's recommended
/// store ([`ProviderRuntime::record_store`](super::ProviderRuntime::record_store)).
///
/// - **One process per file.** Opening takes an exclusive lock on `PATH.lock` for the store's
///   life: a second process (or a second store in this one) opening the same file gets
///   [`RuntimeError::StoreInUse`]. Two providers with the same keys need PostgreSQL.
/// - **Owner-only files.** The database holds the jobs' inputs and results in the clear (also
///   those of encrypted and gift-wrapped requests) and the RNG state: on Unix it is created
///   with mode 0600 (SQLite gives its WAL the same mode), and so is the lock file.
/// - **Write-ahead log** with the durability of [`SyncMode`] ([`Normal`](SyncMode::Normal) by
///   default: survives a killed process, not a power cut); one transaction per
///   [`apply`](RecordStore::apply), which the runtime calls with every update taken since the
///   last write (group commit).
/// - **Schema migrations** are versioned in the crate (`PRAGMA user_version`); a file written
///   by a newer version of the crate is refused, not changed.
/// - The RNG state in the meta record belongs to this process's provider only.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Mutex<Connection>,
    path: PathBuf,
    /// Held (locked) for the store's life.
    _lock: File,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` with [`SyncMode::Normal`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RuntimeError> {
        Self::open_with(path, SyncMode::default())
    }

    /// Opens (or creates) the store at `path` with `sync`.
    pub fn open_with(path: impl AsRef<Path>, sync: SyncMode) -> Result<Self, RuntimeError> {
        let path = path.as_ref().to_path_buf();
        let err =
            |e: &dyn std::fmt::Display| RuntimeError::Store(format!("{}: {e}", path.display()));
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = owner_only(Path::new(&lock_path), false).map_err(|e| err(&e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RuntimeError::StoreInUse(path));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(&e)),
        }
        // Created owner-only before SQLite opens it (SQLite would use the umask).
        drop(owner_only(&path, false).map_err(|e| err(&e))?);
        let connection = Connection::open(&path).map_err(|e| err(&e))?;
        let synchronous = match sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};"
            ))
            .map_err(|e| err(&e))?;
        migrate(&connection).map_err(|e| err(&e))?;
        Ok(Self {
            connection: Mutex::new(connection),
            path,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves `snapshot` (a [`FileStore`](super::FileStore)'s, or a backup) into this store,
    /// which must be empty: `Err` when it holds anything already.
    pub fn import(&self, snapshot: ProviderSnapshot) -> Result<(), RuntimeError> {
        if self.load()?.is_some() {
            return Err(RuntimeError::Store(format!(
                "{}: not empty, nothing imported",
                self.path.display()
            )));
        }
        self.apply(&[snapshot.into_update(1)])
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Nothing panics while holding it; if something did, SQLite rolled back.
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Store(format!("{}: {e}", self.path.display()))
    }
}

impl RecordStore for SqliteStore {
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError> {
        let connection = self.connection();
        let meta: Option<String> = connection
            .query_row("SELECT snapshot FROM meta WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.error(e))?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let meta: ProviderSnapshot =
            serde_json::from_str(&meta).map_err(|e| self.error(format!("meta record: {e}")))?;
        let jobs = rows(&connection, "SELECT record FROM jobs", |row| {
            Ok(serde_json::from_str::<JobRecord>(&row.get::<_, String>(0)?)
                .map_err(|e| format!("job record: {e}"))?)
        })
        .map_err(|e| self.error(e))?;
        let forgotten = rows(&connection, "SELECT id, until FROM forgotten", |row| {
            Ok((event_id(&row.get::<_, Vec<u8>>(0)?)?, time(row.get(1)?)))
        })
        .map_err(|e| self.error(e))?;
        let spent = rows(&connection, "SELECT kind, key, expires FROM spent", |row| {
            Ok((
                spent_key(row.get(0)?, &row.get::<_, Vec<u8>>(1)?)?,
                time(row.get(2)?),
            ))
        })
        .map_err(|e| self.error(e))?;
        let mut snapshot = ProviderSnapshot::assemble(meta, jobs, forgotten, spent);
        let outgoing = rows(
            &connection,
            "SELECT event, relays FROM outgoing ORDER BY id",
            |row| {
                let event: Event = serde_json::from_str(&row.get::<_, String>(0)?)
                    .map_err(|e| format!("outgoing event: {e}"))?;
                let relays: Vec<String> = serde_json::from_str(&row.get::<_, String>(1)?)
                    .map_err(|e| format!("outgoing relays: {e}"))?;
                Ok((event, relays))
            },
        )
        .map_err(|e| self.error(e))?;
        for (event, relays) in outgoing {
            snapshot.push_publish(event, relays);
        }
        Ok(Some(snapshot))
    }

    fn apply(&self, updates: &[StoreUpdate]) -> Result<(), RuntimeError> {
        let Some(last) = updates.last() else {
            return Ok(());
        };
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| self.error(e))?;
        for update in updates {
            for change in &update.changes {
                apply_change(&transaction, change).map_err(|e| self.error(e))?;
            }
        }
        // Only the last meta counts: it replaces the others.
        let meta = serde_json::to_string(&last.meta).map_err(|e| self.error(e))?;
        transaction
            .execute(
                "INSERT INTO meta (id, snapshot) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET snapshot = excluded.snapshot",
                params![meta],
            )
            .map_err(|e| self.error(e))?;
        transaction.commit().map_err(|e| self.error(e))
    }
}

/// Opens `path` for reading and writing, creating it owner-only (0600 on Unix).
fn owner_only(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Applies the migrations `connection` has not had yet.
fn migrate(connection: &Connection) -> Result<(), String> {
    let applied: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    let known = MIGRATIONS.len();
    let applied = match usize::try_from(applied) {
        Ok(n) if n <= known => n,
        Ok(_) => {
            return Err(format!(
                "schema version {applied} was written by a newer nostr-dvm (this one knows \
                 {known})"
            ))
        }
        // Not a version this crate writes: someone else's database.
        Err(_) => return Err(format!("schema version {applied} is not nostr-dvm's")),
    };
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = n + 1;
        connection
            .execute_batch(&format!(
                "BEGIN; {sql} PRAGMA user_version = {version}; COMMIT;"
            ))
            .map_err(|e| format!("migration {version}: {e}"))?;
    }
    Ok(())
}

fn apply_change(transaction: &Transaction<'_>, change: &StoreChange) -> rusqlite::Result<()> {
    match change {
        StoreChange::Job(record) => {
            let id = record.id().to_bytes();
            let merged;
            let record = if record.is_summary() {
                // An ended job kept as a summary: the rest comes from the record held.
                let stored: Option<String> = transaction
                    .prepare_cached("SELECT record FROM jobs WHERE id = ?1")?
                    .query_row(params![id.as_slice()], |row| row.get(0))
                    .optional()?;
                merged = match stored.and_then(|json| serde_json::from_str(&json).ok()) {
                    Some(stored) => (**record).clone().merged_over(stored),
                    None => (**record).clone(),
                };
                &merged
            } else {
                record.as_ref()
            };
            let json = serde_json::to_string(record)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            transaction
                .prepare_cached(
                    "INSERT INTO jobs (id, seq, state, terminal, updated_at, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, state = excluded.state,
                         terminal = excluded.terminal, updated_at = excluded.updated_at,
                         record = excluded.record",
                )?
                .execute(params![
                    id.as_slice(),
                    sql_int(record.seq()),
                    record.state().name(),
                    record.is_terminal(),
                    sql_int(record.updated_at().as_secs()),
                    json,
                ])?;
            // A job id never comes back once forgotten (its request is refused as stale
            // first): no forgotten row to delete here.
        }
        StoreChange::Forgotten { job, until } => {
            let id = job.to_bytes();
            transaction
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute(params![id.as_slice()])?;
            transaction
                .prepare_cached(
                    "INSERT INTO forgotten (id, until) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET until = excluded.until",
                )?
                .execute(params![id.as_slice(), sql_int(until.as_secs())])?;
        }
        StoreChange::Removed(job) => {
            let id = job.to_bytes();
            transaction
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute(params![id.as_slice()])?;
            transaction
                .prepare_cached("DELETE FROM forgotten WHERE id = ?1")?
                .execute(params![id.as_slice()])?;
        }
        StoreChange::Spent { key, expires } => {
            let (kind, bytes) = spent_columns(key);
            transaction
                .prepare_cached(
                    "INSERT INTO spent (kind, key, expires) VALUES (?1, ?2, ?3)
                     ON CONFLICT (kind, key) DO UPDATE SET expires = excluded.expires",
                )?
                .execute(params![kind, bytes.as_slice(), sql_int(expires.as_secs())])?;
        }
        StoreChange::Unspent(key) => {
            let (kind, bytes) = spent_columns(key);
            transaction
                .prepare_cached("DELETE FROM spent WHERE kind = ?1 AND key = ?2")?
                .execute(params![kind, bytes.as_slice()])?;
        }
        StoreChange::Outgoing { event, relays } => {
            let event_json = serde_json::to_string(event.as_ref())
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            let relays_json = serde_json::to_string(relays)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            transaction
                .prepare_cached(
                    "INSERT INTO outgoing (id, event, relays) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    event.id.to_bytes().as_slice(),
                    event_json,
                    relays_json
                ])?;
        }
        StoreChange::Sent(id) => {
            transaction
                .prepare_cached("DELETE FROM outgoing WHERE id = ?1")?
                .execute(params![id.to_bytes().as_slice()])?;
        }
    }
    Ok(())
}

/// A `u64` as SQLite's signed 64-bit integer (saturating: times and counters stay far below).
/// Why a row does not read: SQLite's error, or what is wrong with its data.
type ReadError = Box<dyn std::error::Error + Send + Sync>;

/// Every row `sql` selects, read by `read`; a row that does not read is an error naming why.
fn rows<T>(
    connection: &Connection,
    sql: &str,
    read: impl Fn(&rusqlite::Row<'_>) -> Result<T, ReadError>,
) -> Result<Vec<T>, String> {
    let mut statement = connection.prepare(sql).map_err(|e| e.to_string())?;
    let mut found = statement.query([]).map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    while let Some(row) = found.next().map_err(|e| e.to_string())? {
        all.push(read(row).map_err(|e| e.to_string())?);
    }
    Ok(all)
}

fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn time(value: i64) -> Timestamp {
    Timestamp::from(u64::try_from(value).unwrap_or(0))
}

fn event_id(bytes: &[u8]) -> Result<EventId, String> {
    EventId::from_slice(bytes).map_err(|e| format!("job id: {e}"))
}

fn spent_columns(key: &SpentKey) -> (i64, [u8; 32]) {
    match key {
        SpentKey::Receipt(id) => (0, id.to_bytes()),
        SpentKey::PaymentHash(hash) => (1, *hash),
    }
}

fn spent_key(kind: i64, bytes: &[u8]) -> Result<SpentKey, String> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("spent key of {} bytes", bytes.len()))?;
    match kind {
        0 => Ok(SpentKey::Receipt(EventId::from_byte_array(array))),
        1 => Ok(SpentKey::PaymentHash(array)),
        other => Err(format!("spent key kind {other}")),
    }
}
