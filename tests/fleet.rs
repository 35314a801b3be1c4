//! A fleet: three provider processes with the same keys on one relay and one real PostgreSQL
//! database (`PostgresStore`), 300 jobs of which 100 paid by zaps (receipts from the crate's
//! test zapper, delivered to all three processes by the relay). One process is killed with
//! SIGKILL mid-run and PostgreSQL is restarted mid-run: every job is answered once, with one
//! result event on the relay; the jobs of the killed process are finished by the others once
//! its lease runs out; a paid job runs once though every process sees its receipt; every
//! payment is counted once in the shared ledger.
//!
//! The providers run in child processes: this test binary started again with `--ignored
//! --exact fleet_child` and its settings in the environment. Each run of a task is appended to
//! a log (`node job`), so runs that published nothing count too.
#![cfg(all(feature = "postgres", feature = "test-util", unix))]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::nip57::ZapRequestBuilder;
use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, PublicKey, Timestamp};
use nostr_dvm::provider::{Admission, Provider, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::{PostgresSettings, PostgresStore, ProviderRuntime, RecordStore};
use nostr_dvm::task::Quote;
use nostr_dvm::testing::{TestLightningNode, TestZapper};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use rand::rngs::OsRng;
use support::children::{customer_client, results_per_job};
use support::children::{kill_9, take_runs, LoggedShout};
use support::local_relay;
use support::postgres::TestPostgres;
use tokio::process::{Child, Command};

/// The job kind.
const KIND: u16 = 5050;
/// What a paid job costs, in millisats.
const PRICE_MSAT: u64 = 2_000;
/// Jobs in all, and how many of them are paid.
const JOBS: usize = 300;
const PAID: usize = 100;
/// The lease of a process: its jobs are taken over this long after it died.
const LEASE: Duration = Duration::from_secs(3);
/// How long the fleet may take to answer every job.
const FINISH: Duration = Duration::from_secs(90);

const ENV_CHILD: &str = "NOSTR_DVM_FLEET_CHILD";
const ENV_KEY: &str = "NOSTR_DVM_FLEET_KEY";
const ENV_RELAY: &str = "NOSTR_DVM_FLEET_RELAY";
const ENV_DB: &str = "NOSTR_DVM_FLEET_DB";
const ENV_NODE: &str = "NOSTR_DVM_FLEET_NODE";
const ENV_ZAPPER: &str = "NOSTR_DVM_FLEET_ZAPPER";
const ENV_RUNS: &str = "NOSTR_DVM_FLEET_RUNS";

/// A provider process of the fleet. Does nothing unless started by the test below.
#[test]
#[ignore = "a provider process of three_processes_answer_every_job_once_through_a_kill_and_a_database_restart"]
fn fleet_child() {
    if std::env::var(ENV_CHILD).is_err() {
        return;
    }
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let keys = Keys::parse(&env(ENV_KEY)).unwrap();
    let zapper = PublicKey::parse(&env(ENV_ZAPPER)).unwrap();
    let node = env(ENV_NODE);
    let mut config = ProviderConfig::new([Kind::from(KIND)])
        .relays([env(ENV_RELAY)])
        .zappers([zapper])
        .admission(Admission {
            rate_limit: None,
            global_rate_limit: None,
            invoice_rate_limit: None,
            ..Admission::default()
        })
        .pricing(|request: &JobRequest| match request.param("paid") {
            Some(_) => Quote::Price {
                amount_msat: PRICE_MSAT,
            },
            None => Quote::Free,
        });
    config.zaps_only = true;
    // A process taking over must still see the receipts of the jobs it takes.
    config.lookback_secs = 3_600;
    let store = PostgresStore::connect_with(
        &env(ENV_DB),
        &node,
        PostgresSettings::default().lease(LEASE),
    )
    .unwrap();
    let runtime = ProviderRuntime::new(keys, config)
        .task(Arc::new(LoggedShout {
            kind: KIND,
            node,
            runs: PathBuf::from(env(ENV_RUNS)),
        }))
        .record_store(store);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(runtime.run(std::future::pending()))
        .unwrap();
}

/// Starts the provider process `node`.
fn start_provider(
    relay: &str,
    keys: &Keys,
    db: &str,
    node: &str,
    zapper: PublicKey,
    runs: &PathBuf,
) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "fleet_child", "--nocapture"])
        .env(ENV_CHILD, "1")
        .env(ENV_KEY, keys.secret_key().to_secret_hex())
        .env(ENV_RELAY, relay)
        .env(ENV_DB, db)
        .env(ENV_NODE, node)
        .env(ENV_ZAPPER, zapper.to_hex())
        .env(ENV_RUNS, runs)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the provider process starts")
}

/// One job as the customer sees it.
#[derive(Debug, Default)]
struct Seen {
    paid: bool,
    zapped: bool,
    results: BTreeSet<EventId>,
}

/// The customers: a plain nostr-sdk client and the zapper.
struct Customers {
    client: Client,
    notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
    keys: Keys,
    provider: PublicKey,
    zapper: TestZapper,
    relay: String,
    jobs: BTreeMap<EventId, Seen>,
}

impl Customers {
    async fn connect(relay: &str, provider: PublicKey, zapper: TestZapper) -> Self {
        let keys = Keys::generate();
        let (client, notifications) = customer_client(relay, &keys, KIND).await;
        Self {
            client,
            notifications,
            keys,
            provider,
            zapper,
            relay: relay.to_owned(),
            jobs: BTreeMap::new(),
        }
    }

    async fn submit(&mut self, paid: bool) {
        let mut builder = JobRequest::builder(Kind::from(KIND))
            .input(JobInput::text(format!("job {}", self.jobs.len())))
            .provider(self.provider);
        if paid {
            builder = builder.param("paid", "yes");
        }
        let request = builder
            .sign(&self.keys, Timestamp::now(), &mut OsRng)
            .unwrap();
        self.client.send_event(&request).await.unwrap();
        self.jobs.insert(
            request.id,
            Seen {
                paid,
                ..Seen::default()
            },
        );
    }

    /// Handles what the relay sends for `for_how_long`: zaps each payment request once,
    /// records each result event.
    async fn follow(&mut self, for_how_long: Duration) {
        let until = tokio::time::Instant::now() + for_how_long;
        while let Ok(note) = tokio::time::timeout_at(until, self.notifications.recv()).await {
            if let Ok(RelayPoolNotification::Event { event, .. }) = note {
                self.saw(&event).await;
            }
        }
    }

    async fn saw(&mut self, event: &Event) {
        if event.kind == Kind::JobFeedback {
            let Ok(feedback) = JobFeedback::from_event(event, None) else {
                return;
            };
            let Some(job) = self.jobs.get_mut(&feedback.request_id) else {
                return;
            };
            if feedback.status != FeedbackStatus::PaymentRequired || !job.paid || job.zapped {
                return;
            }
            job.zapped = true;
            let zap_request = ZapRequestBuilder::new(self.provider, [self.relay.clone()])
                .amount_msat(PRICE_MSAT)
                .event(feedback.id)
                .sign(&self.keys, Timestamp::now(), &mut OsRng)
                .unwrap();
            let invoice =
                self.zapper
                    .invoice_for(&zap_request, PRICE_MSAT, Timestamp::now(), &mut OsRng);
            let receipt = self
                .zapper
                .receipt(&zap_request, &invoice, Timestamp::now(), &mut OsRng);
            self.client.send_event(&receipt).await.unwrap();
        } else if let Ok(result) = JobResult::from_event(event, None) {
            if let Some(job) = self.jobs.get_mut(&result.request_id) {
                job.results.insert(result.id);
            }
        }
    }

    fn unfinished(&self) -> usize {
        self.jobs.values().filter(|j| j.results.is_empty()).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_answer_every_job_once_through_a_kill_and_a_database_restart() {
    let mut postgres = tokio::task::spawn_blocking(TestPostgres::start_without_fsync)
        .await
        .unwrap();
    let db = postgres.url();
    let limit = RateLimit {
        max_reqs: 10_000,
        notes_per_minute: u32::MAX,
    };
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
    let url = local_relay::serve(relay.clone()).await.unwrap();
    let runs = std::env::temp_dir().join(format!("nostr-dvm-fleet-runs-{}", std::process::id()));
    let _ = std::fs::remove_file(&runs);
    let provider_keys = Keys::generate();
    let zapper = TestZapper::new(Keys::generate(), TestLightningNode::new(31));
    let zapper_key = zapper.pubkey();
    let nodes = ["node-0", "node-1", "node-2"];
    let mut children: Vec<Option<Child>> = nodes
        .iter()
        .map(|node| {
            Some(start_provider(
                &url,
                &provider_keys,
                &db,
                node,
                zapper_key,
                &runs,
            ))
        })
        .collect();
    let mut customers = Customers::connect(&url, provider_keys.public_key(), zapper).await;
    // Let the processes subscribe.
    customers.follow(Duration::from_secs(2)).await;

    for n in 0..JOBS {
        customers.submit(n % 3 == 0).await;
        if n % 10 == 9 {
            customers.follow(Duration::from_millis(60)).await;
        }
        if n == JOBS / 3 {
            // Mid-run, with jobs in every state: one process dies.
            kill_9(children[1].take().unwrap()).await;
        }
        if n == 2 * JOBS / 3 {
            // And the database restarts under the other two.
            tokio::task::block_in_place(|| postgres.restart());
        }
    }
    let deadline = tokio::time::Instant::now() + FINISH;
    while customers.unfinished() > 0 && tokio::time::Instant::now() < deadline {
        customers.follow(Duration::from_millis(200)).await;
    }
    // Late duplicates would come now.
    customers.follow(Duration::from_secs(1)).await;
    // The killed process's lease runs out and a survivor takes its records over (all its
    // jobs may have ended before: its records move all the same), within a few leases.
    let takeover = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let mut sql = postgres::Client::connect(&db, postgres::NoTls).unwrap();
            let until = std::time::Instant::now() + 5 * LEASE;
            loop {
                let left: i64 = sql
                    .query_one("SELECT count(*) FROM jobs WHERE owner = 'node-1'", &[])
                    .unwrap()
                    .get(0);
                if left == 0 || std::time::Instant::now() > until {
                    return left;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    assert_eq!(
        takeover.await.unwrap(),
        0,
        "node-1's records were taken over"
    );
    for child in children.iter_mut().filter_map(Option::take) {
        kill_9(child).await;
    }

    let on_relay = results_per_job(&customers.client, provider_keys.public_key(), KIND).await;
    let jobs = &customers.jobs;
    assert_eq!(jobs.len(), JOBS);
    assert_eq!(jobs.values().filter(|j| j.paid).count(), PAID);
    let unfinished: Vec<_> = jobs.iter().filter(|(_, j)| j.results.is_empty()).collect();
    assert!(unfinished.is_empty(), "unanswered: {unfinished:?}");
    for (id, job) in jobs {
        assert_eq!(job.results.len(), 1, "job {id}: {job:?}");
        assert_eq!(on_relay.get(id), Some(&1), "job {id} on the relay");
        if job.paid {
            assert!(job.zapped, "job {id} answered unpaid");
        }
    }

    // Runs: once each, but for the jobs of the killed process (one that had started may
    // have run there and again at its heir; its result was never published).
    let run_by = take_runs(&runs);
    let mut taken_over = 0;
    for (id, by) in &run_by {
        let here: Vec<&String> = by.iter().filter(|n| *n != "node-1").collect();
        assert!(
            here.len() <= 1,
            "job {id} ran twice outside the dead process: {by:?}"
        );
        if by.len() > 1 {
            taken_over += 1;
        }
        assert!(by.len() <= 2, "job {id} ran {} times: {by:?}", by.len());
    }
    assert_eq!(run_by.len(), JOBS, "every job ran");
    let by_node = |node: &str| {
        run_by
            .values()
            .filter(|by| by.iter().any(|n| n == node))
            .count()
    };
    eprintln!(
        "runs: node-0 {}, node-1 {} (killed), node-2 {}; {taken_over} run again after the takeover",
        by_node("node-0"),
        by_node("node-1"),
        by_node("node-2"),
    );
    for node in ["node-0", "node-2"] {
        assert!(by_node(node) > 0, "{node} served jobs");
    }

    // Every payment counted once in the shared ledger: one spent payment hash per paid job
    // (a store loads the whole fleet's spent keys; node-0 is stopped now).
    let ledger = tokio::task::spawn_blocking(move || {
        // The killed process's jobs were taken over: every job's record belongs to a survivor.
        let mut sql = postgres::Client::connect(&db, postgres::NoTls).unwrap();
        let count = |sql: &mut postgres::Client, query: &str| -> i64 {
            sql.query_one(query, &[]).unwrap().get(0)
        };
        assert_eq!(count(&mut sql, "SELECT count(*) FROM jobs"), JOBS as i64);
        assert_eq!(
            count(&mut sql, "SELECT count(*) FROM jobs WHERE owner = 'node-1'"),
            0,
            "node-1's jobs were taken over"
        );
        assert_eq!(
            count(&mut sql, "SELECT count(*) FROM nodes WHERE name = 'node-1'"),
            0
        );
        let store = PostgresStore::connect(&db, "node-0").unwrap();
        let snapshot = store.load().unwrap();
        drop(postgres);
        snapshot
    })
    .await
    .unwrap();
    let provider = match ledger {
        Some(snapshot) => Provider::restore(
            provider_keys.clone(),
            ProviderConfig::new([Kind::from(KIND)]),
            snapshot,
        )
        .unwrap(),
        None => panic!("node-0 stored nothing"),
    };
    assert_eq!(provider.ledger().len(), PAID, "each payment counted once");
}
