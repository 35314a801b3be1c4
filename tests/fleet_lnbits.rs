//! A fleet paid by real Lightning invoices: three provider processes with the same keys on one
//! relay, one PostgreSQL database ([`PostgresStore`], 3 s lease) and one LNbits wallet (each
//! process an [`LnbitsBackend`] on the wallet's invoice key), serving pay-first priced jobs.
//! One process is killed with SIGKILL while it runs paid jobs and owns jobs awaiting payment,
//! and their invoices are paid while it is dead: the survivor that takes its jobs over finds
//! those payments, and every job is answered once.
//!
//! Real: the relay (`LocalRelay` over a websocket on 127.0.0.1), PostgreSQL (a server of the
//! test's own), LNbits (PyPI `lnbits`, FakeWallet funding source: real BOLT11 invoices, and
//! payments between two of its wallets are internal, without fees), the processes (this test
//! binary started again with `--ignored --exact fleet_lnbits_child`, killed with SIGKILL). The
//! customer is a plain nostr-sdk client that pays each invoice from its own funded LNbits
//! wallet through LNbits's HTTP API (admin key).
//!
//! The steps, and what each checks:
//! 1. `BEFORE` jobs, each paid as soon as its invoice comes: the fleet invoices, is paid and
//!    starts them. Their runs wait at a gate (a file the test creates after the kill), so every
//!    process still runs paid jobs when the victim dies.
//! 2. `HELD` jobs whose invoices the customer keeps unpaid until every one has come: none of
//!    them runs unpaid, and the database has each as `awaiting-payment`. The victim: of the
//!    processes running a paid job, the one owning the most held jobs.
//! 3. The victim is killed with SIGKILL and the gate opens. Half its invoices are paid at
//!    once, while its records are still its own (checked after the payments: no takeover
//!    yet), then every held invoice of the survivors.
//! 4. Its lease runs out and a survivor takes its records over (none left with its name); the
//!    other half of its invoices is paid then, to the survivor that holds them now.
//! 5. `AFTER` jobs, paid at once: the survivors go on serving.
//! 6. Every job has one invoice, paid once, and exactly one result event on the relay. Runs:
//!    once each, never twice outside the victim; the victim's held jobs ran once, at a
//!    survivor; the paid jobs it was running ran twice, there and at a survivor (paid once).
//!    The shared ledger counts every payment once; the provider's wallet received exactly the
//!    sum of the prices and the customer's wallet paid exactly that.
//!
//! Each run of a task is appended to a log (`node job`), so runs that published nothing count
//! too. The backends poll their pending invoices only every 60 s besides LNbits's websocket:
//! the payments made before the takeover are found by the poll that
//! [`LightningBackend::watch`](nostr_dvm::runtime::LightningBackend::watch) starts (without
//! it, or without the heir's call to it, this test fails).
#![cfg(all(feature = "postgres", feature = "lnbits", feature = "test-util", unix))]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nostr_dvm::bolt11::Invoice;
use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, PublicKey, Timestamp};
use nostr_dvm::provider::{Admission, Provider, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::{
    LnbitsBackend, PostgresSettings, PostgresStore, ProviderRuntime, RecordStore,
};
use nostr_dvm::task::{FixedPrice, Progress, Task, TaskError, TaskOutput, TaskRequest};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use rand::rngs::OsRng;
use rand::RngCore;
use support::children::{customer_client, results_per_job};
use support::children::{kill_9, log_run, read_runs};
use support::lnbits::{Lnbits, LnbitsTestWallet};
use support::local_relay;
use support::postgres::TestPostgres;
use tokio::process::{Child, Command};

/// The job kind.
const KIND: u16 = 5050;
/// What a job costs: 21 sats (LNbits invoices whole sats).
const PRICE_MSAT: u64 = 21_000;
/// What the customer's wallet starts with, in sats.
const FUNDS_SATS: u64 = 1_000;
/// Jobs paid at once before the kill, held unpaid until the kill, paid at once after it.
const BEFORE: usize = 10;
const HELD: usize = 14;
const AFTER: usize = 6;
const JOBS: usize = BEFORE + HELD + AFTER;
/// The lease of a process: its jobs are taken over this long after it died.
const LEASE: Duration = Duration::from_secs(3);
/// How long a step (every invoice of a phase, every result) may take.
const STEP: Duration = Duration::from_secs(30);
/// The provider processes.
const NODES: [&str; 3] = ["node-0", "node-1", "node-2"];

const ENV_CHILD: &str = "NOSTR_DVM_FLEET_LNBITS_CHILD";
const ENV_KEY: &str = "NOSTR_DVM_FLEET_LNBITS_KEY";
const ENV_RELAY: &str = "NOSTR_DVM_FLEET_LNBITS_RELAY";
const ENV_DB: &str = "NOSTR_DVM_FLEET_LNBITS_DB";
const ENV_NODE: &str = "NOSTR_DVM_FLEET_LNBITS_NODE";
const ENV_RUNS: &str = "NOSTR_DVM_FLEET_LNBITS_RUNS";
const ENV_LNBITS: &str = "NOSTR_DVM_FLEET_LNBITS_URL";
const ENV_INVOICE_KEY: &str = "NOSTR_DVM_FLEET_LNBITS_INVOICE_KEY";

/// Logs the run, waits until the gate file (the run log's path with extension `gate`)
/// exists, then upper-cases its text inputs, each run answering differently (a job run again
/// after its result went out would show as a second result event).
struct LoggedShout {
    node: String,
    runs: PathBuf,
}

#[async_trait::async_trait]
impl Task for LoggedShout {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(KIND)]
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        log_run(&self.runs, &self.node, request.job)?;
        let gate = self.runs.with_extension("gate");
        while !gate.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(TaskOutput::new(format!(
            "{} (run {:016x})",
            request.texts().collect::<String>().to_uppercase(),
            OsRng.next_u64()
        )))
    }
}

/// A provider process of the fleet. Does nothing unless started by the test below.
#[test]
#[ignore = "a provider process of a_fleet_paid_by_lnbits_invoices_finds_the_payments_made_while_a_process_was_dead"]
fn fleet_lnbits_child() {
    if std::env::var(ENV_CHILD).is_err() {
        return;
    }
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let keys = Keys::parse(&env(ENV_KEY)).unwrap();
    let node = env(ENV_NODE);
    let config = ProviderConfig::new([Kind::from(KIND)])
        .relays([env(ENV_RELAY)])
        .admission(Admission {
            rate_limit: None,
            global_rate_limit: None,
            invoice_rate_limit: None,
            ..Admission::default()
        })
        .pricing(FixedPrice(PRICE_MSAT));
    let store = PostgresStore::connect_with(
        &env(ENV_DB),
        &node,
        PostgresSettings::default().lease(LEASE),
    )
    .unwrap();
    // Every process on the same wallet. The periodic poll is left long: a payment is found
    // through the websocket, or through the poll at start and after `watch`.
    let backend = LnbitsBackend::new(&env(ENV_LNBITS), &env(ENV_INVOICE_KEY))
        .unwrap()
        .poll_interval(Duration::from_secs(60));
    let runtime = ProviderRuntime::new(keys, config)
        .task(Arc::new(LoggedShout {
            node,
            runs: PathBuf::from(env(ENV_RUNS)),
        }))
        .lightning(backend)
        .record_store(store);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(runtime.run(std::future::pending()))
        .unwrap();
}

/// What the provider processes share.
struct Fleet {
    relay: String,
    keys: Keys,
    db: String,
    runs: PathBuf,
    lnbits: String,
    invoice_key: String,
}

impl Fleet {
    /// Starts the provider process `node`.
    fn start(&self, node: &str) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "fleet_lnbits_child", "--nocapture"])
            .env(ENV_CHILD, "1")
            .env(ENV_KEY, self.keys.secret_key().to_secret_hex())
            .env(ENV_RELAY, &self.relay)
            .env(ENV_DB, &self.db)
            .env(ENV_NODE, node)
            .env(ENV_RUNS, &self.runs)
            .env(ENV_LNBITS, &self.lnbits)
            .env(ENV_INVOICE_KEY, &self.invoice_key)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the provider process starts")
    }
}

/// When the customer pays a job's invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// As soon as it comes, before the kill.
    Before,
    /// When the test says so.
    Held,
    /// As soon as it comes, after the takeover.
    After,
}

/// One job as the customer sees it.
#[derive(Debug)]
struct Seen {
    phase: Phase,
    /// The distinct invoices asked for it.
    invoices: Vec<String>,
    paid: bool,
    results: BTreeSet<EventId>,
}

/// The customer: a plain nostr-sdk client, paying from its LNbits wallet.
struct Customer {
    client: Client,
    notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
    keys: Keys,
    provider: PublicKey,
    lnbits: &'static Lnbits,
    wallet: LnbitsTestWallet,
    jobs: BTreeMap<EventId, Seen>,
}

impl Customer {
    async fn connect(
        relay: &str,
        provider: PublicKey,
        lnbits: &'static Lnbits,
        wallet: LnbitsTestWallet,
    ) -> Self {
        let keys = Keys::generate();
        let (client, notifications) = customer_client(relay, &keys, KIND).await;
        Self {
            client,
            notifications,
            keys,
            provider,
            lnbits,
            wallet,
            jobs: BTreeMap::new(),
        }
    }

    async fn submit(&mut self, phase: Phase) -> EventId {
        let request = JobRequest::builder(Kind::from(KIND))
            .input(JobInput::text(format!("job {}", self.jobs.len())))
            .provider(self.provider)
            .sign(&self.keys, Timestamp::now(), &mut OsRng)
            .unwrap();
        self.client.send_event(&request).await.unwrap();
        self.jobs.insert(
            request.id,
            Seen {
                phase,
                invoices: Vec::new(),
                paid: false,
                results: BTreeSet::new(),
            },
        );
        request.id
    }

    /// Handles what the relay sends for `for_how_long`.
    async fn follow(&mut self, for_how_long: Duration) {
        let until = tokio::time::Instant::now() + for_how_long;
        while let Ok(note) = tokio::time::timeout_at(until, self.notifications.recv()).await {
            if let Ok(RelayPoolNotification::Event { event, .. }) = note {
                self.saw(&event).await;
            }
        }
    }

    /// Follows the relay until `done` holds, for at most [`STEP`].
    async fn follow_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + STEP;
        while !done(self) {
            if Instant::now() > deadline {
                let waiting: Vec<_> = self
                    .jobs
                    .iter()
                    .filter(|(_, j)| j.results.is_empty())
                    .collect();
                panic!("not in time: {what}; jobs without a result: {waiting:#?}");
            }
            self.follow(Duration::from_millis(100)).await;
        }
    }

    /// Records each invoice and result; pays the invoice of a job not held at once.
    async fn saw(&mut self, event: &Event) {
        if event.kind == Kind::JobFeedback {
            let Ok(feedback) = JobFeedback::from_event(event, None) else {
                return;
            };
            if feedback.status != FeedbackStatus::PaymentRequired {
                return;
            }
            let Some(job) = self.jobs.get_mut(&feedback.request_id) else {
                return;
            };
            let amount = feedback.amount.expect("a payment request names its amount");
            assert_eq!(amount.msat, PRICE_MSAT);
            let bolt11 = amount
                .bolt11
                .expect("a pay-first job comes with an invoice");
            assert_eq!(
                Invoice::parse(&bolt11).unwrap().amount_msat(),
                Some(PRICE_MSAT)
            );
            if !job.invoices.contains(&bolt11) {
                job.invoices.push(bolt11);
            }
            if job.phase != Phase::Held {
                self.pay(feedback.request_id).await;
            }
        } else if let Ok(result) = JobResult::from_event(event, None) {
            if let Some(job) = self.jobs.get_mut(&result.request_id) {
                job.results.insert(result.id);
            }
        }
    }

    /// Pays the invoice of `job` from the customer's wallet, once.
    async fn pay(&mut self, id: EventId) {
        let job = self.jobs.get_mut(&id).expect("a job of ours");
        if job.paid {
            return;
        }
        let bolt11 = job.invoices.first().expect("an invoice to pay").clone();
        job.paid = true;
        self.lnbits.pay(&self.wallet, &bolt11).await;
    }

    fn invoiced(&self, phase: Phase) -> bool {
        self.jobs
            .values()
            .filter(|j| j.phase == phase)
            .all(|j| !j.invoices.is_empty())
    }

    fn unfinished(&self) -> usize {
        self.jobs.values().filter(|j| j.results.is_empty()).count()
    }
}

/// Runs `query` on the database (from a blocking thread: the `postgres` client has a runtime
/// of its own), each row's columns as text.
async fn sql(db: &str, query: &'static str) -> Vec<Vec<String>> {
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&db, postgres::NoTls).unwrap();
        client
            .simple_query(query)
            .unwrap()
            .into_iter()
            .filter_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or_default().to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

/// How many job records `node` owns.
async fn owned_by(db: &str, node: &str) -> usize {
    sql(db, "SELECT owner FROM jobs")
        .await
        .iter()
        .filter(|row| row[0] == node)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_paid_by_lnbits_invoices_finds_the_payments_made_while_a_process_was_dead() {
    let began = Instant::now();
    let lnbits = tokio::task::spawn_blocking(Lnbits::shared);
    let postgres = tokio::task::spawn_blocking(TestPostgres::start_without_fsync)
        .await
        .unwrap();
    let lnbits = lnbits.await.unwrap();
    let earner = lnbits.wallet("fleet").await;
    let payer = lnbits.wallet("customer").await;
    lnbits.fund(&payer, FUNDS_SATS).await;
    let limit = RateLimit {
        max_reqs: 10_000,
        notes_per_minute: u32::MAX,
    };
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
    let fleet = Fleet {
        relay: local_relay::serve(relay.clone()).await.unwrap(),
        keys: Keys::generate(),
        db: postgres.url(),
        runs: std::env::temp_dir().join(format!(
            "nostr-dvm-fleet-lnbits-runs-{}",
            std::process::id()
        )),
        lnbits: lnbits.url().to_owned(),
        invoice_key: earner.invoice_key.clone(),
    };
    let gate = fleet.runs.with_extension("gate");
    let _ = std::fs::remove_file(&fleet.runs);
    let _ = std::fs::remove_file(&gate);
    let db = fleet.db.clone();
    let mut children: BTreeMap<&str, Child> = NODES
        .iter()
        .map(|node| (*node, fleet.start(node)))
        .collect();
    let mut customer =
        Customer::connect(&fleet.relay, fleet.keys.public_key(), lnbits, payer.clone()).await;
    eprintln!("started in {:?}", began.elapsed());

    // 1. Jobs paid at once.
    for _ in 0..BEFORE {
        customer.submit(Phase::Before).await;
        customer.follow(Duration::from_millis(50)).await;
    }
    // 2. Jobs whose invoices are kept unpaid.
    let mut held = Vec::new();
    for _ in 0..HELD {
        held.push(customer.submit(Phase::Held).await);
        customer.follow(Duration::from_millis(50)).await;
    }
    customer
        .follow_until("every held job's invoice", |c| c.invoiced(Phase::Held))
        .await;
    // The jobs paid at once have all started (and wait at the gate).
    let before: Vec<EventId> = customer
        .jobs
        .iter()
        .filter(|(_, j)| j.phase == Phase::Before)
        .map(|(id, _)| *id)
        .collect();
    let deadline = Instant::now() + STEP;
    let started = loop {
        let ran = read_runs(&fleet.runs);
        if before.iter().all(|id| ran.contains_key(id)) {
            break ran;
        }
        assert!(Instant::now() < deadline, "the paid jobs started: {ran:?}");
        customer.follow(Duration::from_millis(100)).await;
    };
    for id in &held {
        assert!(!started.contains_key(id), "held job {id} ran unpaid");
    }
    let running_at = |node: &str| -> Vec<EventId> {
        started
            .iter()
            .filter(|(_, by)| by.iter().any(|n| n == node))
            .map(|(id, _)| *id)
            .collect()
    };
    // The owner of each held job, from the database.
    let owners: BTreeMap<EventId, String> =
        sql(&db, "SELECT encode(id, 'hex'), owner, state FROM jobs")
            .await
            .into_iter()
            .filter_map(|row| {
                let id = EventId::from_hex(&row[0]).unwrap();
                held.contains(&id).then(|| {
                    assert_eq!(row[2], "awaiting-payment", "held job {id}");
                    (id, row[1].clone())
                })
            })
            .collect();
    assert_eq!(owners.len(), HELD, "every held job has a record");
    let held_by = |node: &str| -> Vec<EventId> {
        owners
            .iter()
            .filter(|(_, owner)| *owner == node)
            .map(|(id, _)| *id)
            .collect()
    };
    // The victim: of the processes running a paid job, the one owning the most held jobs.
    let victim = *NODES
        .iter()
        .filter(|node| !running_at(node).is_empty())
        .max_by_key(|node| held_by(node).len())
        .unwrap();
    let victims_jobs = held_by(victim);
    let victims_running = running_at(victim);
    eprintln!(
        "held jobs by owner: {:?}, paid jobs running: {:?}; {victim} dies",
        NODES.map(|n| held_by(n).len()),
        NODES.map(|n| running_at(n).len()),
    );
    assert!(victims_jobs.len() >= 2, "{owners:?}");

    // 3. The victim dies with paid jobs running and jobs awaiting payment; the gate opens for
    //    every run from now on. Half its invoices are paid before anyone takes its jobs, then
    //    the survivors' held invoices.
    kill_9(children.remove(victim).unwrap()).await;
    let killed_at = Instant::now();
    std::fs::write(&gate, b"open").unwrap();
    let (paid_while_orphaned, paid_after_takeover) = victims_jobs.split_at(victims_jobs.len() / 2);
    for id in paid_while_orphaned {
        customer.pay(*id).await;
    }
    let still_owned = owned_by(&db, victim).await;
    eprintln!(
        "{} of {victim}'s invoices paid {:?} after the kill; it still owns {still_owned} records",
        paid_while_orphaned.len(),
        killed_at.elapsed()
    );
    assert!(
        still_owned > 0,
        "the payments were made before the takeover"
    );
    for id in &held {
        if owners[id] != victim {
            customer.pay(*id).await;
        }
    }

    // 4. A survivor takes the victim's records over after its lease.
    let until = Instant::now() + 5 * LEASE;
    while owned_by(&db, victim).await > 0 {
        assert!(Instant::now() < until, "{victim}'s records were taken over");
        customer.follow(Duration::from_millis(100)).await;
    }
    eprintln!("taken over {:?} after the kill", killed_at.elapsed());
    for id in paid_after_takeover {
        customer.pay(*id).await;
    }

    // 5. The survivors go on.
    for _ in 0..AFTER {
        customer.submit(Phase::After).await;
        customer.follow(Duration::from_millis(50)).await;
    }
    customer
        .follow_until("every job's result", |c| c.unfinished() == 0)
        .await;
    // Late duplicates would come now.
    customer.follow(Duration::from_secs(1)).await;
    for (_, child) in std::mem::take(&mut children) {
        kill_9(child).await;
    }

    // 6. One invoice, one payment and one result per job.
    let on_relay = results_per_job(&customer.client, fleet.keys.public_key(), KIND).await;
    let jobs = &customer.jobs;
    assert_eq!(jobs.len(), JOBS);
    for (id, job) in jobs {
        assert_eq!(job.invoices.len(), 1, "job {id}: {job:?}");
        assert!(job.paid, "job {id} answered unpaid: {job:?}");
        assert_eq!(job.results.len(), 1, "job {id}: {job:?}");
        assert_eq!(on_relay.get(id), Some(&1), "job {id} on the relay");
    }

    // Runs: once each, but for the jobs that had started in the victim (run there, and again
    // at its heir: their result was never published).
    let run_by = read_runs(&fleet.runs);
    let _ = std::fs::remove_file(&fleet.runs);
    let _ = std::fs::remove_file(&gate);
    assert_eq!(run_by.len(), JOBS, "every job ran");
    let mut again = 0;
    for (id, by) in &run_by {
        let elsewhere = by.iter().filter(|n| *n != victim).count();
        assert!(
            elsewhere <= 1,
            "job {id} ran twice outside the dead process: {by:?}"
        );
        assert!(by.len() <= 2, "job {id} ran {} times: {by:?}", by.len());
        again += usize::from(by.len() > 1);
    }
    for id in &victims_jobs {
        let by = &run_by[id];
        assert!(
            by.len() == 1 && by[0] != victim,
            "{victim}'s held job {id} ran once, at a survivor: {by:?}"
        );
    }
    for id in &victims_running {
        let by = &run_by[id];
        assert!(
            by.len() == 2 && by[0] == victim && by[1] != victim,
            "{victim}'s running job {id} ran again at a survivor: {by:?}"
        );
    }
    let by_node = |node: &str| {
        run_by
            .values()
            .filter(|by| by.iter().any(|n| n == node))
            .count()
    };
    eprintln!(
        "runs: {:?} ({victim} killed); {again} run again after the takeover",
        NODES.map(|n| (n, by_node(n)))
    );

    // Every payment counted once in the shared ledger, and the victim's records are a
    // survivor's.
    let heir = NODES.iter().find(|n| **n != victim).unwrap().to_string();
    assert_eq!(owned_by(&db, victim).await, 0);
    let nodes = sql(&db, "SELECT name FROM nodes").await;
    assert!(
        nodes.iter().all(|row| row[0] != victim),
        "{victim} is no longer a member: {nodes:?}"
    );
    let snapshot = tokio::task::spawn_blocking(move || {
        let store = PostgresStore::connect(&db, &heir).unwrap();
        let snapshot = store.load().unwrap();
        drop(postgres);
        snapshot
    })
    .await
    .unwrap()
    .expect("the fleet stored its records");
    let provider = Provider::restore(
        fleet.keys.clone(),
        ProviderConfig::new([Kind::from(KIND)]),
        snapshot,
    )
    .unwrap();
    assert_eq!(provider.ledger().len(), JOBS, "each payment counted once");

    // The money: exactly the prices, from the customer to the fleet's wallet.
    let total = JOBS as u64 * PRICE_MSAT;
    assert_eq!(lnbits.balance_msat(&earner).await, total);
    assert_eq!(
        lnbits.balance_msat(&payer).await,
        FUNDS_SATS * 1_000 - total
    );
    customer.client.disconnect().await;
    eprintln!("done in {:?}", began.elapsed());
}
