//! [`PostgresStore`]: the records of a fleet of provider processes in one PostgreSQL database
//! (feature `postgres`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nostr::{Event, EventId, Timestamp};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement, Transaction};

use super::postgres_tls::{self, Transport};

use super::record_store::RecordStore;
use super::RuntimeError;
use crate::provider::{JobRecord, ProviderSnapshot, SpentKey, StoreChange, StoreUpdate};

/// The schema migrations, in order: the one row of `dvm_schema_version` says how many were
/// applied.
const MIGRATIONS: &[&str] = &[
    // 1: the processes of the fleet and their leases; the jobs, forgotten job ids, events to
    // publish and meta record of each (`owner`: the process's name); the spent payment keys,
    // shared by the fleet.
    "CREATE SEQUENCE node_epochs;
     CREATE TABLE takeovers (
         heir text NOT NULL,
         dead text NOT NULL,
         snapshot text NOT NULL,
         PRIMARY KEY (heir, dead)
     );
     CREATE TABLE nodes (
         name text PRIMARY KEY,
         epoch bigint NOT NULL,
         lease_until timestamptz NOT NULL,
         lease_secs double precision NOT NULL
     );
     CREATE TABLE jobs (
         id bytea PRIMARY KEY,
         owner text NOT NULL,
         seq bigint NOT NULL,
         state text NOT NULL,
         terminal boolean NOT NULL,
         updated_at bigint NOT NULL,
         record text NOT NULL
     );
     CREATE INDEX jobs_owner ON jobs (owner);
     CREATE TABLE forgotten (
         id bytea PRIMARY KEY,
         owner text NOT NULL,
         until bigint NOT NULL
     );
     CREATE INDEX forgotten_owner ON forgotten (owner);
     CREATE TABLE spent (
         kind smallint NOT NULL,
         key bytea NOT NULL,
         expires bigint NOT NULL,
         PRIMARY KEY (kind, key)
     );
     CREATE TABLE outgoing (
         owner text NOT NULL,
         id bytea NOT NULL,
         seq bigserial NOT NULL,
         event text NOT NULL,
         relays text NOT NULL,
         PRIMARY KEY (owner, id)
     );
     CREATE INDEX outgoing_order ON outgoing (owner, seq);
     CREATE TABLE meta (
         owner text PRIMARY KEY,
         snapshot text NOT NULL
     );",
];

/// The key of the advisory lock that serializes migrations (two processes starting on a new
/// database at once): "nostrdvm" in ASCII.
const MIGRATION_LOCK: i64 = 0x6e6f_7374_7264_766d;

/// Tunes a [`PostgresStore`] (see [`PostgresStore::connect_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresSettings {
    lease: Duration,
    roots: Vec<Vec<u8>>,
}

impl Default for PostgresSettings {
    /// A lease of 30 seconds; TLS trusts the webpki roots.
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            roots: Vec::new(),
        }
    }
}

impl PostgresSettings {
    /// How long this process's lease lasts unrenewed (30 seconds by default): it renews it
    /// every third of that, and once it has not for that long, another process of the fleet
    /// takes its jobs over. Longer survives longer database outages and pauses; shorter
    /// hands the jobs of a dead process on sooner. Not zero.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Trusts the certificates of `pem` (one or more PEM `CERTIFICATE` blocks: a private CA,
    /// a cloud provider's database CA bundle) as roots for the server's certificate, besides
    /// the webpki roots. A bundle with no certificate, or a bad one, makes
    /// [`PostgresStore::connect_with`] fail.
    pub fn trust_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }
}

/// The records of a fleet of provider processes with the same keys in one PostgreSQL
/// database: each process stores the jobs it [claims](RecordStore::claim), and takes over
/// the jobs of a process whose lease expired ([`renew`](RecordStore::renew)).
///
/// - **Nodes.** Each process has a stable name (`node`): restarted with the same name, it
///   gets its records back. [`load`](RecordStore::load) registers it with a new *epoch*
///   (from a sequence, never reused) and a lease that lasts [`PostgresSettings::lease`];
///   another process that registers the same name later takes the name over, and this one's
///   next call fails with [`RuntimeError::LeaseLost`].
/// - **Fenced writes.** Every [`apply`](RecordStore::apply) and [`claim`](RecordStore::claim)
///   is one transaction that first checks, with the node's row locked `FOR SHARE`, that this
///   process's epoch is the node's: if not ([`RuntimeError::LeaseLost`]), nothing is
///   written. A process only writes the rows it owns: a change to a job id, forgotten id or
///   event another process owns changes nothing.
/// - **Claims.** A job is stored by the first process to claim it; a claim of an id stored
///   (or forgotten) by another process is lost, also one made while the owner forgets the
///   job (the claim waits for that transaction and then sees the forgotten id). A process's
///   own id wins again, so a claim retried after a lost answer gives the same result.
/// - **Leases.** All lease times come from the database's clock, one clock for the fleet.
///   [`renew`](RecordStore::renew) renews this process's lease and takes over every other
///   node whose lease expired (`FOR UPDATE SKIP LOCKED`: two survivors never take the same
///   one, and a node in the middle of a write is not taken), in one transaction: its jobs,
///   forgotten ids and events to publish become this process's, and its meta record goes
///   into the snapshot handed back, then is deleted with the node. No node counts as dead
///   within its lease of the database server's start: a restart of PostgreSQL (during which
///   nobody could renew) gives every process a lease's time to renew before any takeover.
///   A statement that hangs is cancelled after one lease (`statement_timeout`). What a
///   takeover hands out is kept (table `takeovers`) and handed out again by every renewal
///   until a later one is answered: an answer lost after the commit loses no job.
/// - **Shared spent keys.** The spent payment keys of the replay ledger are the fleet's: a
///   key spent by two processes is one row; [`load`](RecordStore::load) returns them all.
/// - **The meta record** (RNG state, rate windows, timers) is each process's own, never
///   shared nor read by another process except when it takes the dead one over.
/// - **Reconnection.** A call that finds the connection broken (the server restarted, the
///   network cut) connects again and tries once more; otherwise it fails with
///   [`RuntimeError::Store`], with nothing half-written (one transaction per call), and the
///   runtime's writer thread tries again later.
/// - **Schema migrations** are versioned in the crate (table `dvm_schema_version`) and
///   applied by [`connect`](Self::connect) under an advisory lock; a database written by a
///   newer version of the crate is refused, not changed.
/// - The tables (`nodes`, `jobs`, `forgotten`, `spent`, `outgoing`, `meta`) hold the jobs'
///   inputs and results in the clear, and each process's RNG state: give the fleet a
///   database (or a schema, with `options=-csearch_path=...` in the URL) of its own, and
///   guard access to it like the provider's keys.
///
/// **Threads.** The `postgres` client runs a tokio runtime of its own and panics when it is
/// called from a thread of another runtime. [`connect`](Self::connect) and dropping the store
/// work anywhere (inside a tokio runtime they use a thread of their own); call the
/// [`RecordStore`] methods from a plain thread or through `tokio::task::spawn_blocking`, as
/// the bundled runtime does.
///
/// **TLS.** A server on another host is reached only by TLS (rustls), its certificate
/// chain and host name verified against the webpki roots and the roots added with
/// [`PostgresSettings::trust_root_pem`]; a server on this host (a Unix socket, `localhost`,
/// a loopback address) in the clear. The URL's `sslmode` overrides this: `disable` (in the
/// clear), `prefer` (TLS when the server offers it), `require`, and libpq's `verify-ca` and
/// `verify-full`, which mean `require` here (the host name is always verified). Client
/// certificates are not supported.
///
/// Its [`Debug`](fmt::Debug) output and its errors never show the URL's password.
pub struct PostgresStore {
    config: Config,
    transport: Transport,
    /// The URL without its password, for errors and `Debug`.
    target: String,
    node: String,
    lease: Duration,
    state: Mutex<State>,
    /// The processes whose records the last [`renew`](RecordStore::renew) that answered
    /// handed out: their `takeovers` rows go with the next one.
    handed: Mutex<Vec<String>>,
}

/// The connection and this process's epoch, behind the store's mutex.
struct State {
    /// `None` after a broken connection, until the next call connects again.
    session: Option<Session>,
    /// This process's epoch, from the last [`RecordStore::load`]; `None` before.
    epoch: Option<i64>,
}

/// A connection and the statements prepared on it.
struct Session {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// Why a call failed, before it becomes a [`RuntimeError`].
enum Failure {
    /// The database said no, or the connection broke.
    Db(postgres::Error),
    /// This process's epoch is not the node's any more.
    LeaseLost,
    /// A stored value could not be read (a corrupt record), or a record written.
    Data(String),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`, or
    /// PostgreSQL's `key=value` form) as the process named `node`, with the default
    /// [`PostgresSettings`], and migrates its schema. Call [`load`](RecordStore::load) next:
    /// it registers the process.
    pub fn connect(url: &str, node: &str) -> Result<Self, RuntimeError> {
        Self::connect_with(url, node, PostgresSettings::default())
    }

    /// [`connect`](Self::connect) with `settings`.
    pub fn connect_with(
        url: &str,
        node: &str,
        settings: PostgresSettings,
    ) -> Result<Self, RuntimeError> {
        let (url, explicit_tls) = postgres_tls::normalized_url(url);
        let mut config: Config = url.parse().map_err(|e| {
            RuntimeError::Store(format!("invalid PostgreSQL URL: {}", describe(&e)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let target = redacted(&config);
        let transport = postgres_tls::transport(&mut config, explicit_tls, &settings.roots)
            .map_err(|e| RuntimeError::Store(format!("{target}: {e}")))?;
        if node.is_empty() {
            return Err(RuntimeError::Store(format!("{target}: empty node name")));
        }
        if settings.lease.is_zero() {
            return Err(RuntimeError::Store(format!("{target}: zero lease")));
        }
        let store = Self {
            config,
            transport,
            target,
            node: node.to_owned(),
            lease: settings.lease,
            state: Mutex::new(State {
                session: None,
                epoch: None,
            }),
            handed: Mutex::new(Vec::new()),
        };
        // On a thread of its own: the client blocks on a runtime of its own, which panics on a
        // thread that drives a tokio runtime (`connect` from `#[tokio::main]`, for one).
        let client = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = store.open().map_err(|f| store.error("connect", f))?;
                    migrate(&mut client).map_err(|f| store.error("schema", f))?;
                    Ok::<_, RuntimeError>(client)
                })
                .join()
        })
        .map_err(|_| RuntimeError::Store(format!("{}: connecting panicked", store.target)))??;
        store.state().session = Some(Session {
            client,
            statements: HashMap::new(),
        });
        Ok(store)
    }

    /// This process's name in the fleet.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How long this process's lease lasts unrenewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Moves `snapshot` (a [`FileStore`](super::FileStore)'s or a
    /// [`SqliteStore`](super::SqliteStore)'s, or a backup) into this store as this process's
    /// records; this process must have none yet: `Err` when it has. Registers the process
    /// like [`load`](RecordStore::load). Job ids another process of the fleet owns are left
    /// to it.
    pub fn import(&self, snapshot: ProviderSnapshot) -> Result<(), RuntimeError> {
        if self.load()?.is_some() {
            return Err(RuntimeError::Store(format!(
                "{} (node {}): not empty, nothing imported",
                self.target, self.node
            )));
        }
        self.apply(&[snapshot.into_update(1)])
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the transaction was rolled
        // back when its client dropped it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> Result<Client, Failure> {
        let mut client = match &self.transport {
            Transport::Plain => self.config.connect(NoTls)?,
            Transport::Tls(tls) => self.config.connect(tls.clone())?,
        };
        // A statement that hangs (a lock, a dead network) must not hold the writer longer
        // than the lease it is meant to keep.
        client.batch_execute(&format!(
            "SET statement_timeout = {}",
            self.lease.as_millis().max(1)
        ))?;
        Ok(client)
    }

    /// Runs `call` (one transaction) on the connection, connecting first when it has none;
    /// when the connection turns out broken, connects again and runs it once more.
    fn with_session<T>(
        &self,
        what: &str,
        mut call: impl FnMut(&mut Session, &mut Option<i64>) -> Result<T, Failure>,
    ) -> Result<T, RuntimeError> {
        let mut state = self.state();
        let state = &mut *state;
        let mut retried = false;
        loop {
            let session = match &mut state.session {
                Some(session) if !session.client.is_closed() => session,
                slot => slot.insert(Session {
                    client: self.open().map_err(|f| self.error(what, f))?,
                    statements: HashMap::new(),
                }),
            };
            match call(session, &mut state.epoch) {
                Ok(value) => return Ok(value),
                Err(Failure::Db(e)) if !retried && connection_lost(&e, &session.client) => {
                    state.session = None;
                    retried = true;
                }
                Err(failure) => return Err(self.error(what, failure)),
            }
        }
    }

    fn error(&self, what: &str, failure: Failure) -> RuntimeError {
        let reason = match failure {
            Failure::LeaseLost => return RuntimeError::LeaseLost,
            Failure::Db(e) => describe(&e),
            Failure::Data(reason) => reason,
        };
        RuntimeError::Store(format!(
            "{} (node {}): {what}: {reason}",
            self.target, self.node
        ))
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }
}

impl Drop for PostgresStore {
    /// The `postgres` client blocks on a runtime of its own when it closes, which panics on a
    /// thread that drives a tokio runtime: there, it is closed on a thread of its own.
    fn drop(&mut self) {
        let session = self.state().session.take();
        if let Some(session) = session {
            if tokio::runtime::Handle::try_current().is_ok() {
                let (hand, take) = std::sync::mpsc::channel();
                let _ = hand.send(session);
                let closing = std::thread::Builder::new()
                    .name("nostr-dvm-postgres-close".into())
                    .spawn(move || drop(take.recv()));
                if let Err(e) = closing {
                    // Leaked rather than closed here (which would panic): the server closes
                    // the connection when this process ends.
                    tracing::warn!("cannot close the PostgreSQL connection: {e}");
                    std::mem::forget(hand);
                }
            }
        }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("transport", &self.transport.name())
            .field("node", &self.node)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RecordStore for PostgresStore {
    /// Registers this process (a new epoch; a process still running with the same name
    /// loses its lease) and returns its records, with every spent key of the fleet; `None`
    /// when it has no meta record (it never wrote an update, or it was taken over).
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError> {
        self.with_session("load", |session, epoch| {
            let mut tx = session.client.transaction()?;
            let statements = &mut session.statements;
            let row = query_one(
                &mut tx,
                statements,
                "INSERT INTO nodes (name, epoch, lease_until, lease_secs)
                 VALUES ($1, nextval('node_epochs'), now() + make_interval(secs => $2), $2)
                 ON CONFLICT (name) DO UPDATE
                     SET epoch = excluded.epoch, lease_until = excluded.lease_until,
                         lease_secs = excluded.lease_secs
                 RETURNING epoch",
                &[&self.node, &self.lease_secs()],
            )?;
            let registered: i64 = get(&row, 0)?;
            // Its records are loaded whole now, those it took over too.
            execute(
                &mut tx,
                statements,
                "DELETE FROM takeovers WHERE heir = $1",
                &[&self.node],
            )?;
            let node = &self.node;
            let meta = query(
                &mut tx,
                statements,
                "SELECT snapshot FROM meta WHERE owner = $1",
                &[node],
                |row| meta_record(&get::<String>(row, 0)?),
            )?;
            // Records without a meta: jobs claimed by a life of this process that crashed
            // before its first update; they are still this process's.
            let snapshot = {
                {
                    let jobs = query(
                        &mut tx,
                        statements,
                        "SELECT record FROM jobs WHERE owner = $1",
                        &[node],
                        job_record,
                    )?;
                    let forgotten = query(
                        &mut tx,
                        statements,
                        "SELECT id, until FROM forgotten WHERE owner = $1 ORDER BY id",
                        &[node],
                        forgotten_id,
                    )?;
                    let spent = query(
                        &mut tx,
                        statements,
                        "SELECT kind, key, expires FROM spent",
                        &[],
                        spent_entry,
                    )?;
                    let outgoing = query(
                        &mut tx,
                        statements,
                        "SELECT event, relays FROM outgoing WHERE owner = $1 ORDER BY seq",
                        &[node],
                        outgoing_event,
                    )?;
                    let meta = meta.into_iter().next();
                    if meta.is_none() && jobs.is_empty() && outgoing.is_empty() {
                        None
                    } else {
                        let mut snapshot = match meta {
                            Some(meta) => ProviderSnapshot::assemble(meta, jobs, forgotten, spent),
                            None => ProviderSnapshot::records_only(jobs, forgotten, spent),
                        };
                        for (event, relays) in outgoing {
                            snapshot.push_publish(event, relays);
                        }
                        Some(snapshot)
                    }
                }
            };
            tx.commit()?;
            *epoch = Some(registered);
            self.handed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            Ok(snapshot)
        })
    }

    fn apply(&self, updates: &[StoreUpdate]) -> Result<(), RuntimeError> {
        let Some(last) = updates.last() else {
            return Ok(());
        };
        // Serialized once, before any retry.
        let meta = serde_json::to_string(&last.meta)
            .map_err(|e| self.error("apply", Failure::Data(format!("meta record: {e}"))))?;
        self.with_session("apply", |session, epoch| {
            let mut tx = session.client.transaction()?;
            let statements = &mut session.statements;
            fence(&mut tx, statements, &self.node, *epoch)?;
            for update in updates {
                for change in &update.changes {
                    apply_change(&mut tx, statements, &self.node, change)?;
                }
            }
            // Only the last meta counts: it replaces the others.
            execute(
                &mut tx,
                statements,
                "INSERT INTO meta (owner, snapshot) VALUES ($1, $2)
                 ON CONFLICT (owner) DO UPDATE SET snapshot = excluded.snapshot",
                &[&self.node, &meta],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(self.lease / 3)
    }

    /// Stores each job as this process's unless its id is stored or forgotten already:
    /// `true` when it was stored, or was already this process's.
    fn claim(&self, jobs: &[JobRecord]) -> Result<Vec<bool>, RuntimeError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let rows = jobs
            .iter()
            .map(JobRow::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error("claim", Failure::Data(e)))?;
        // Inserted in id order: two processes claiming the same jobs never wait for each
        // other in a cycle.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|a, b| rows[*a].id.cmp(&rows[*b].id));
        self.with_session("claim", |session, epoch| {
            let mut tx = session.client.transaction()?;
            let statements = &mut session.statements;
            fence(&mut tx, statements, &self.node, *epoch)?;
            let mut won = vec![false; rows.len()];
            for &i in &order {
                let row = &rows[i];
                let claimed = tx_query(
                    &mut tx,
                    statements,
                    "INSERT INTO jobs (id, owner, seq, state, terminal, updated_at, record)
                     SELECT $1::bytea, $2::text, $3::bigint, $4::text, $5::boolean,
                            $6::bigint, $7::text
                     WHERE NOT EXISTS (SELECT 1 FROM forgotten WHERE id = $1)
                     ON CONFLICT (id) DO UPDATE SET owner = jobs.owner
                         WHERE jobs.owner = excluded.owner
                     RETURNING xmax = 0",
                    &row.params(&self.node),
                )?;
                let inserted = match claimed.first() {
                    None => {
                        // Stored (or forgotten) by another process.
                        continue;
                    }
                    Some(row) => get::<bool>(row, 0)?,
                };
                // Under READ COMMITTED the forgotten ids were read when the statement began.
                // An insert that waited for a transaction deleting the job's row (its owner
                // forgetting it) went on once the row was gone: the forgotten id that
                // transaction wrote is seen only now, by a new statement. The job ran
                // already: the row just inserted goes, and the claim is lost.
                if inserted
                    && !tx_query(
                        &mut tx,
                        statements,
                        "SELECT 1 FROM forgotten WHERE id = $1",
                        &[&row.id],
                    )?
                    .is_empty()
                {
                    execute(
                        &mut tx,
                        statements,
                        "DELETE FROM jobs WHERE id = $1 AND owner = $2",
                        &[&row.id, &self.node],
                    )?;
                    continue;
                }
                won[i] = true;
            }
            tx.commit()?;
            Ok(won)
        })
    }

    fn renew(&self) -> Result<Vec<ProviderSnapshot>, RuntimeError> {
        self.with_session("renew", |session, epoch| {
            let epoch = epoch.ok_or(Failure::LeaseLost)?;
            let mut tx = session.client.transaction()?;
            let statements = &mut session.statements;
            let renewed = execute(
                &mut tx,
                statements,
                "UPDATE nodes SET lease_until = now() + make_interval(secs => $3)
                 WHERE name = $1 AND epoch = $2",
                &[&self.node, &epoch, &self.lease_secs()],
            )?;
            if renewed == 0 {
                return Err(Failure::LeaseLost);
            }
            let dead = query(
                &mut tx,
                statements,
                // Not within a process's lease of the server's start: after a restart of the
                // database, every process gets the time to renew before anyone counts it dead.
                "SELECT name FROM nodes WHERE name <> $1 AND lease_until < now()
                     AND now() > pg_postmaster_start_time() + make_interval(secs => lease_secs)
                 ORDER BY name FOR UPDATE SKIP LOCKED",
                &[&self.node],
                |row| get::<String>(row, 0),
            )?;
            // What the last answered renewal handed out was received: its rows go.
            let handed = self
                .handed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if !handed.is_empty() {
                execute(
                    &mut tx,
                    statements,
                    "DELETE FROM takeovers WHERE heir = $1 AND dead = ANY($2)",
                    &[&self.node, &handed],
                )?;
            }
            for name in dead {
                if let Some(snapshot) = take_over(&mut tx, statements, &self.node, &name)? {
                    let json = serde_json::to_string(&snapshot)
                        .map_err(|e| Failure::Data(format!("takeover snapshot: {e}")))?;
                    execute(
                        &mut tx,
                        statements,
                        "INSERT INTO takeovers (heir, dead, snapshot) VALUES ($1, $2, $3)
                         ON CONFLICT (heir, dead) DO UPDATE SET snapshot = excluded.snapshot",
                        &[&self.node, &name, &json],
                    )?;
                }
            }
            // Every takeover not known to be received yet, this one's and any whose answer
            // was lost (the connection broke after the commit): handed out until a later
            // renewal is answered. Adopting one twice takes nothing twice.
            let pending = query(
                &mut tx,
                statements,
                "SELECT dead, snapshot FROM takeovers WHERE heir = $1 ORDER BY dead",
                &[&self.node],
                |row| {
                    Ok((
                        get::<String>(row, 0)?,
                        meta_record(&get::<String>(row, 1)?)?,
                    ))
                },
            )?;
            tx.commit()?;
            let (names, snapshots): (Vec<String>, Vec<ProviderSnapshot>) =
                pending.into_iter().unzip();
            *self.handed.lock().unwrap_or_else(|e| e.into_inner()) = names;
            Ok(snapshots)
        })
    }
}

/// Moves the records of the dead node `dead` to `node` and deletes the dead one: its
/// snapshot, or `None` when it held nothing.
fn take_over(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    node: &str,
    dead: &str,
) -> Result<Option<ProviderSnapshot>, Failure> {
    let jobs = query(
        tx,
        statements,
        "UPDATE jobs SET owner = $1 WHERE owner = $2 RETURNING record",
        &[&node, &dead],
        job_record,
    )?;
    let mut forgotten = query(
        tx,
        statements,
        "UPDATE forgotten SET owner = $1 WHERE owner = $2 RETURNING id, until",
        &[&node, &dead],
        forgotten_id,
    )?;
    forgotten.sort_by_key(|(id, _)| *id);
    // An event both hold is this process's to publish already.
    execute(
        tx,
        statements,
        "DELETE FROM outgoing AS o WHERE owner = $2
             AND EXISTS (SELECT 1 FROM outgoing WHERE owner = $1 AND id = o.id)",
        &[&node, &dead],
    )?;
    let mut outgoing = query(
        tx,
        statements,
        "UPDATE outgoing SET owner = $1 WHERE owner = $2 RETURNING seq, event, relays",
        &[&node, &dead],
        |row| Ok((get::<i64>(row, 0)?, outgoing_event_at(row, 1)?)),
    )?;
    outgoing.sort_by_key(|(seq, _)| *seq);
    let meta = query(
        tx,
        statements,
        "DELETE FROM meta WHERE owner = $1 RETURNING snapshot",
        &[&dead],
        |row| meta_record(&get::<String>(row, 0)?),
    )?;
    execute(
        tx,
        statements,
        "DELETE FROM nodes WHERE name = $1",
        &[&dead],
    )?;
    // Takeovers the dead one had not adopted for sure: their rows are its own, moved above.
    execute(
        tx,
        statements,
        "DELETE FROM takeovers WHERE heir = $1",
        &[&dead],
    )?;
    let meta = meta.into_iter().next();
    if meta.is_none() && jobs.is_empty() && forgotten.is_empty() && outgoing.is_empty() {
        return Ok(None);
    }
    // Spent keys are the fleet's: the adopting provider has them already.
    let mut snapshot = match meta {
        Some(meta) => ProviderSnapshot::assemble(meta, jobs, forgotten, []),
        None => ProviderSnapshot::records_only(jobs, forgotten, []),
    };
    for (_, (event, relays)) in outgoing {
        snapshot.push_publish(event, relays);
    }
    Ok(Some(snapshot))
}

/// Checks, with the node's row locked `FOR SHARE` until the transaction ends (so that no
/// other process takes this one over meanwhile), that `epoch` is still the node's.
fn fence(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    node: &str,
    epoch: Option<i64>,
) -> Result<(), Failure> {
    let epoch = epoch.ok_or(Failure::LeaseLost)?;
    let current = query(
        tx,
        statements,
        "SELECT epoch FROM nodes WHERE name = $1 FOR SHARE",
        &[&node],
        |row| get::<i64>(row, 0),
    )?;
    match current.first() {
        Some(current) if *current == epoch => Ok(()),
        _ => Err(Failure::LeaseLost),
    }
}

/// A job record as the columns of its row.
struct JobRow {
    id: Vec<u8>,
    seq: i64,
    state: &'static str,
    terminal: bool,
    updated_at: i64,
    record: String,
}

impl JobRow {
    fn new(record: &JobRecord) -> Result<Self, String> {
        Ok(Self {
            id: record.id().to_bytes().to_vec(),
            seq: sql_int(record.seq()),
            state: record.state().name(),
            terminal: record.is_terminal(),
            updated_at: sql_int(record.updated_at().as_secs()),
            record: serde_json::to_string(record).map_err(|e| format!("job record: {e}"))?,
        })
    }

    /// `$1` to `$7`: id, `owner`, seq, state, terminal, updated_at, record.
    fn params<'a>(&'a self, owner: &'a String) -> [&'a (dyn ToSql + Sync); 7] {
        [
            &self.id,
            owner,
            &self.seq,
            &self.state,
            &self.terminal,
            &self.updated_at,
            &self.record,
        ]
    }
}

/// Writes one change, fenced to the rows `node` owns (or nobody does).
fn apply_change(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    node: &String,
    change: &StoreChange,
) -> Result<(), Failure> {
    match change {
        StoreChange::Job(record) => {
            let merged;
            let record = if record.is_summary() {
                // An ended job kept as a summary: the rest comes from the record held.
                let id = record.id().to_bytes().to_vec();
                let rows = tx_query(
                    tx,
                    statements,
                    "SELECT record FROM jobs WHERE id = $1 AND owner = $2",
                    &[&id, node],
                )?;
                let stored = rows
                    .first()
                    .and_then(|row| row.try_get::<_, String>(0).ok())
                    .and_then(|json| serde_json::from_str::<JobRecord>(&json).ok());
                merged = match stored {
                    Some(stored) => (**record).clone().merged_over(stored),
                    None => (**record).clone(),
                };
                &merged
            } else {
                record.as_ref()
            };
            let row = JobRow::new(record).map_err(Failure::Data)?;
            execute(
                tx,
                statements,
                "INSERT INTO jobs (id, owner, seq, state, terminal, updated_at, record)
                 SELECT $1::bytea, $2::text, $3::bigint, $4::text, $5::boolean, $6::bigint,
                        $7::text
                 WHERE NOT EXISTS (SELECT 1 FROM forgotten WHERE id = $1 AND owner <> $2)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, state = excluded.state,
                     terminal = excluded.terminal, updated_at = excluded.updated_at,
                     record = excluded.record
                     WHERE jobs.owner = excluded.owner",
                &row.params(node),
            )?;
            execute(
                tx,
                statements,
                "DELETE FROM forgotten WHERE id = $1 AND owner = $2",
                &[&row.id, node],
            )?;
        }
        StoreChange::Forgotten { job, until } => {
            let id = job.to_bytes().to_vec();
            execute(
                tx,
                statements,
                "DELETE FROM jobs WHERE id = $1 AND owner = $2",
                &[&id, node],
            )?;
            execute(
                tx,
                statements,
                "INSERT INTO forgotten (id, owner, until)
                 SELECT $1::bytea, $2::text, $3::bigint
                 WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND owner <> $2)
                 ON CONFLICT (id) DO UPDATE SET until = excluded.until
                     WHERE forgotten.owner = excluded.owner",
                &[&id, node, &sql_int(until.as_secs())],
            )?;
        }
        StoreChange::Removed(job) => {
            let id = job.to_bytes().to_vec();
            execute(
                tx,
                statements,
                "DELETE FROM jobs WHERE id = $1 AND owner = $2",
                &[&id, node],
            )?;
            execute(
                tx,
                statements,
                "DELETE FROM forgotten WHERE id = $1 AND owner = $2",
                &[&id, node],
            )?;
        }
        StoreChange::Spent { key, expires } => {
            let (kind, bytes) = spent_columns(key);
            // One row for the fleet; spent until the latest expiry any process gave it.
            execute(
                tx,
                statements,
                "INSERT INTO spent (kind, key, expires) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, key)
                     DO UPDATE SET expires = GREATEST(spent.expires, excluded.expires)",
                &[&kind, &bytes.as_slice(), &sql_int(expires.as_secs())],
            )?;
        }
        StoreChange::Unspent(key) => {
            let (kind, bytes) = spent_columns(key);
            execute(
                tx,
                statements,
                "DELETE FROM spent WHERE kind = $1 AND key = $2",
                &[&kind, &bytes.as_slice()],
            )?;
        }
        StoreChange::Outgoing { event, relays } => {
            let event_json = serde_json::to_string(event.as_ref())
                .map_err(|e| Failure::Data(format!("outgoing event: {e}")))?;
            let relays_json = serde_json::to_string(relays)
                .map_err(|e| Failure::Data(format!("outgoing relays: {e}")))?;
            // Kept in the order first written (`seq`): a second write changes nothing.
            execute(
                tx,
                statements,
                "INSERT INTO outgoing (owner, id, event, relays) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner, id) DO NOTHING",
                &[
                    node,
                    &event.id.to_bytes().as_slice(),
                    &event_json,
                    &relays_json,
                ],
            )?;
        }
        StoreChange::Sent(id) => {
            execute(
                tx,
                statements,
                "DELETE FROM outgoing WHERE owner = $1 AND id = $2",
                &[node, &id.to_bytes().as_slice()],
            )?;
        }
    }
    Ok(())
}

/// Applies the migrations the database has not had yet, in one transaction under an
/// advisory lock.
fn migrate(client: &mut Client) -> Result<(), Failure> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS dvm_schema_version (
             id smallint PRIMARY KEY CHECK (id = 1),
             version bigint NOT NULL
         )",
    )?;
    let applied: i64 = match tx.query_opt("SELECT version FROM dvm_schema_version", &[])? {
        Some(row) => get(&row, 0)?,
        None => 0,
    };
    let known = MIGRATIONS.len();
    let applied = match usize::try_from(applied) {
        Ok(n) if n <= known => n,
        Ok(_) => {
            return Err(Failure::Data(format!(
                "schema version {applied} was written by a newer nostr-dvm (this one knows \
                 {known})"
            )))
        }
        Err(_) => {
            return Err(Failure::Data(format!(
                "schema version {applied} is not nostr-dvm's"
            )))
        }
    };
    if applied == known {
        return Ok(());
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql)
            .map_err(|e| Failure::Data(format!("migration {}: {}", n + 1, describe(&e))))?;
    }
    tx.execute(
        "INSERT INTO dvm_schema_version (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        &[&sql_int(known as u64)],
    )?;
    tx.commit()?;
    Ok(())
}

/// The statement for `sql`, prepared once per connection.
fn prepared(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = tx.prepare(sql)?;
    statements.insert(sql, statement.clone());
    Ok(statement)
}

fn execute(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Failure> {
    let statement = prepared(tx, statements, sql)?;
    Ok(tx.execute(&statement, params)?)
}

fn tx_query(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Failure> {
    let statement = prepared(tx, statements, sql)?;
    Ok(tx.query(&statement, params)?)
}

fn query_one(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, Failure> {
    let statement = prepared(tx, statements, sql)?;
    Ok(tx.query_one(&statement, params)?)
}

/// Runs `sql` and reads each row it returns with `read`: the one loop of every query.
fn query<T>(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
    read: impl Fn(&Row) -> Result<T, Failure>,
) -> Result<Vec<T>, Failure> {
    tx_query(tx, statements, sql, params)?
        .iter()
        .map(read)
        .collect()
}

/// Column `index` of `row`, as a `T`; a value of another type is a corrupt row, not a panic.
fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, Failure> {
    row.try_get(index)
        .map_err(|e| Failure::Data(format!("column {index}: {}", describe(&e))))
}

fn meta_record(json: &str) -> Result<ProviderSnapshot, Failure> {
    serde_json::from_str(json).map_err(|e| Failure::Data(format!("meta record: {e}")))
}

/// `record`.
fn job_record(row: &Row) -> Result<JobRecord, Failure> {
    serde_json::from_str(&get::<String>(row, 0)?)
        .map_err(|e| Failure::Data(format!("job record: {e}")))
}

/// `id, until`.
fn forgotten_id(row: &Row) -> Result<(EventId, Timestamp), Failure> {
    let id = event_id(&get::<Vec<u8>>(row, 0)?)?;
    Ok((id, time(get(row, 1)?)))
}

/// `kind, key, expires`.
fn spent_entry(row: &Row) -> Result<(SpentKey, Timestamp), Failure> {
    let key = spent_key(get(row, 0)?, &get::<Vec<u8>>(row, 1)?)?;
    Ok((key, time(get(row, 2)?)))
}

/// `event, relays`.
fn outgoing_event(row: &Row) -> Result<(Event, Vec<String>), Failure> {
    outgoing_event_at(row, 0)
}

/// `event, relays` from column `first` on.
fn outgoing_event_at(row: &Row, first: usize) -> Result<(Event, Vec<String>), Failure> {
    let event = serde_json::from_str(&get::<String>(row, first)?)
        .map_err(|e| Failure::Data(format!("outgoing event: {e}")))?;
    let relays = serde_json::from_str(&get::<String>(row, first + 1)?)
        .map_err(|e| Failure::Data(format!("outgoing relays: {e}")))?;
    Ok((event, relays))
}

/// Whether `e` means the connection is gone (closed, an I/O error, the server shutting
/// down), so that a new one may succeed.
fn connection_lost(e: &postgres::Error, client: &Client) -> bool {
    if e.is_closed() || client.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        }
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// `e` with its cause (the `postgres` error's own text is only its kind).
fn describe(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => {
            let source = source.to_string();
            let own = e.to_string();
            if own.contains(&source) {
                own
            } else {
                format!("{own}: {source}")
            }
        }
        None => e.to_string(),
    }
}

/// The database `config` points at, as a URL without its password.
fn redacted(config: &Config) -> String {
    use postgres::config::Host;
    let user = config.get_user().unwrap_or("");
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let dbname = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{}/{dbname}", hosts.join(","))
}

/// A `u64` as PostgreSQL's `bigint` (saturating: times and counters stay far below).
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn time(value: i64) -> Timestamp {
    Timestamp::from(u64::try_from(value).unwrap_or(0))
}

fn event_id(bytes: &[u8]) -> Result<EventId, Failure> {
    EventId::from_slice(bytes).map_err(|e| Failure::Data(format!("job id: {e}")))
}

fn spent_columns(key: &SpentKey) -> (i16, [u8; 32]) {
    match key {
        SpentKey::Receipt(id) => (0, id.to_bytes()),
        SpentKey::PaymentHash(hash) => (1, *hash),
    }
}

fn spent_key(kind: i16, bytes: &[u8]) -> Result<SpentKey, Failure> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Failure::Data(format!("spent key of {} bytes", bytes.len())))?;
    match kind {
        0 => Ok(SpentKey::Receipt(EventId::from_byte_array(array))),
        1 => Ok(SpentKey::PaymentHash(array)),
        other => Err(Failure::Data(format!("spent key kind {other}"))),
    }
}
