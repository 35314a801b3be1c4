//! A fleet paid by real Lightning invoices: two provider processes with the same keys on one
//! relay, one real PostgreSQL database (`PostgresStore`) and one real LNbits wallet
//! (`LnbitsBackend`, FakeWallet funding source; payments between two wallets of one LNbits are
//! internal, so balances move by exactly the prices). The customer (a plain nostr-sdk client)
//! submits priced pay-first jobs and collects every `payment-required` invoice without paying;
//! then one process is killed with SIGKILL while it owns jobs awaiting payment, and every
//! invoice is paid from the customer's LNbits wallet while it is dead. The survivor takes the
//! dead process's jobs over once its lease runs out, finds their settlements in LNbits (its
//! backend watches the adopted invoices: a wallet proof, the preimage checked against the
//! hash), runs each job once and answers it once. Checked: one result event per job on the
//! relay, one run per job (none before its payment), every payment hash once in the shared
//! ledger, the provider's wallet credited exactly the sum of the prices, the dead process's
//! records moved to the survivor.
//!
//! The providers run in child processes: this test binary started again with `--ignored
//! --exact fleet_lnbits_child`.
#![cfg(all(feature = "postgres", feature = "lnbits", feature = "test-util", unix))]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult};
use nostr_dvm::nostr::{Event, EventId, Filter, Keys, Kind, Timestamp};
use nostr_dvm::provider::{Admission, Provider, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::{
    LnbitsBackend, PostgresSettings, PostgresStore, ProviderRuntime, RecordStore,
};
use nostr_dvm::task::FixedPrice;
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use rand::rngs::OsRng;
use support::children::{kill_9, take_runs, LoggedShout};
use support::lnbits::Lnbits;
use support::local_relay;
use support::postgres::TestPostgres;
use tokio::process::{Child, Command};

/// The job kind.
const KIND: u16 = 5050;
/// What a job costs, in millisats: 2 sats.
const PRICE_MSAT: u64 = 2_000;
/// Jobs in all.
const JOBS: usize = 20;
/// The lease of a process: its jobs are taken over this long after it died.
const LEASE: Duration = Duration::from_secs(3);
/// How long the fleet may take to answer every job.
const FINISH: Duration = Duration::from_secs(60);

const ENV_CHILD: &str = "NOSTR_DVM_FLEETLN_CHILD";
const ENV_KEY: &str = "NOSTR_DVM_FLEETLN_KEY";
const ENV_RELAY: &str = "NOSTR_DVM_FLEETLN_RELAY";
const ENV_DB: &str = "NOSTR_DVM_FLEETLN_DB";
const ENV_NODE: &str = "NOSTR_DVM_FLEETLN_NODE";
const ENV_LNBITS: &str = "NOSTR_DVM_FLEETLN_LNBITS";
const ENV_INVOICE_KEY: &str = "NOSTR_DVM_FLEETLN_INVOICE_KEY";
const ENV_RUNS: &str = "NOSTR_DVM_FLEETLN_RUNS";
/// A provider process of the fleet. Does nothing unless started by the test below.
#[test]
#[ignore = "a provider process of a_fleet_paid_by_invoices_finds_payments_made_while_their_owner_was_dead"]
fn fleet_lnbits_child() {
    if std::env::var(ENV_CHILD).is_err() {
        return;
    }
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let keys = Keys::parse(&env(ENV_KEY)).unwrap();
    let node = env(ENV_NODE);
    let mut config = ProviderConfig::new([Kind::from(KIND)])
        .relays([env(ENV_RELAY)])
        .admission(Admission {
            rate_limit: None,
            global_rate_limit: None,
            invoice_rate_limit: None,
            ..Admission::default()
        })
        .pricing(FixedPrice(PRICE_MSAT));
    config.lookback_secs = 3_600;
    let store = PostgresStore::connect_with(
        &env(ENV_DB),
        &node,
        PostgresSettings::default().lease(LEASE),
    )
    .unwrap();
    let runtime_threads = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime_threads.block_on(async move {
        let backend = LnbitsBackend::new(&env(ENV_LNBITS), &env(ENV_INVOICE_KEY))
            .expect("loopback http is accepted")
            .poll_interval(Duration::from_secs(1));
        ProviderRuntime::new(keys, config)
            .task(Arc::new(LoggedShout {
                kind: KIND,
                node,
                runs: PathBuf::from(env(ENV_RUNS)),
            }))
            .lightning(backend)
            .record_store(store)
            .run(std::future::pending())
            .await
            .unwrap();
    });
}

/// Starts the provider process `node`.
fn start_provider(
    relay: &str,
    keys: &Keys,
    db: &str,
    node: &str,
    lnbits: (&str, &str),
    runs: &PathBuf,
) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "fleet_lnbits_child", "--nocapture"])
        .env(ENV_CHILD, "1")
        .env(ENV_KEY, keys.secret_key().to_secret_hex())
        .env(ENV_RELAY, relay)
        .env(ENV_DB, db)
        .env(ENV_NODE, node)
        .env(ENV_LNBITS, lnbits.0)
        .env(ENV_INVOICE_KEY, lnbits.1)
        .env(ENV_RUNS, runs)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the provider process starts")
}

/// What the customer saw: each job's invoice and results.
#[derive(Debug, Default)]
struct Seen {
    invoice: Option<String>,
    results: BTreeSet<EventId>,
}

async fn follow(
    notifications: &mut tokio::sync::broadcast::Receiver<RelayPoolNotification>,
    jobs: &mut BTreeMap<EventId, Seen>,
    for_how_long: Duration,
) {
    let until = tokio::time::Instant::now() + for_how_long;
    while let Ok(note) = tokio::time::timeout_at(until, notifications.recv()).await {
        let Ok(RelayPoolNotification::Event { event, .. }) = note else {
            continue;
        };
        saw(jobs, &event);
    }
}

fn saw(jobs: &mut BTreeMap<EventId, Seen>, event: &Event) {
    if event.kind == Kind::JobFeedback {
        let Ok(feedback) = JobFeedback::from_event(event, None) else {
            return;
        };
        if feedback.status != FeedbackStatus::PaymentRequired {
            return;
        }
        if let (Some(job), Some(amount)) = (jobs.get_mut(&feedback.request_id), feedback.amount) {
            assert!(job.invoice.is_none(), "one payment request per job");
            assert_eq!(amount.msat, PRICE_MSAT);
            job.invoice = amount.bolt11;
        }
    } else if let Ok(result) = JobResult::from_event(event, None) {
        if let Some(job) = jobs.get_mut(&result.request_id) {
            job.results.insert(result.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_paid_by_invoices_finds_payments_made_while_their_owner_was_dead() {
    let postgres = tokio::task::spawn_blocking(TestPostgres::start_without_fsync)
        .await
        .unwrap();
    let db = postgres.url();
    let lnbits = Lnbits::shared();
    let earner = lnbits.wallet("fleet provider").await;
    let payer = lnbits.wallet("fleet customer").await;
    lnbits.fund(&payer, 1_000).await;
    let limit = RateLimit {
        max_reqs: 10_000,
        notes_per_minute: u32::MAX,
    };
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
    let url = local_relay::serve(relay.clone()).await.unwrap();
    let runs = std::env::temp_dir().join(format!(
        "nostr-dvm-fleet-lnbits-runs-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&runs);
    let provider_keys = Keys::generate();
    let nodes = ["node-0", "node-1"];
    let mut children: Vec<Option<Child>> = nodes
        .iter()
        .map(|node| {
            Some(start_provider(
                &url,
                &provider_keys,
                &db,
                node,
                (lnbits.url(), &earner.invoice_key),
                &runs,
            ))
        })
        .collect();

    let customer = Keys::generate();
    let client = Client::default();
    client.add_relay(url.as_str()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(10)).await;
    let mut notifications = client.notifications();
    client
        .subscribe(
            Filter::new()
                .kinds([Kind::from(KIND + 1000), Kind::JobFeedback])
                .pubkey(customer.public_key()),
            None,
        )
        .await
        .unwrap();
    let mut jobs: BTreeMap<EventId, Seen> = BTreeMap::new();
    follow(&mut notifications, &mut jobs, Duration::from_secs(2)).await;
    for n in 0..JOBS {
        let request = JobRequest::builder(Kind::from(KIND))
            .input(JobInput::text(format!("job {n}")))
            .provider(provider_keys.public_key())
            .sign(&customer, Timestamp::now(), &mut OsRng)
            .unwrap();
        client.send_event(&request).await.unwrap();
        jobs.insert(request.id, Seen::default());
    }
    // Every job asks to be paid; nothing is paid yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while jobs.values().any(|j| j.invoice.is_none()) && tokio::time::Instant::now() < deadline {
        follow(&mut notifications, &mut jobs, Duration::from_millis(200)).await;
    }
    assert!(
        jobs.values().all(|j| j.invoice.is_some()),
        "every job asked for payment: {jobs:?}"
    );
    // node-1 dies owning unpaid jobs; every invoice is paid while it is dead.
    let owned = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let mut sql = postgres::Client::connect(&db, postgres::NoTls).unwrap();
            sql.query_one("SELECT count(*) FROM jobs WHERE owner = 'node-1'", &[])
                .unwrap()
                .get::<_, i64>(0)
        })
        .await
        .unwrap()
    };
    assert!(owned > 0, "node-1 holds jobs when it dies");
    eprintln!("node-1 dies holding {owned} of {JOBS} unpaid jobs");
    kill_9(children[1].take().unwrap()).await;
    for job in jobs.values() {
        lnbits.pay(&payer, job.invoice.as_deref().unwrap()).await;
    }
    let deadline = tokio::time::Instant::now() + FINISH;
    while jobs.values().any(|j| j.results.is_empty()) && tokio::time::Instant::now() < deadline {
        follow(&mut notifications, &mut jobs, Duration::from_millis(200)).await;
    }
    follow(&mut notifications, &mut jobs, Duration::from_secs(1)).await;
    let unanswered: Vec<_> = jobs.iter().filter(|(_, j)| j.results.is_empty()).collect();
    assert!(unanswered.is_empty(), "unanswered: {unanswered:?}");
    for child in children.iter_mut().filter_map(Option::take) {
        kill_9(child).await;
    }

    let on_relay = client
        .fetch_events(
            Filter::new()
                .kind(Kind::from(KIND + 1000))
                .author(provider_keys.public_key()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let mut results: BTreeMap<EventId, usize> = BTreeMap::new();
    for event in on_relay.iter() {
        let result = JobResult::from_event(event, None).unwrap();
        *results.entry(result.request_id).or_default() += 1;
    }
    for id in jobs.keys() {
        assert_eq!(results.get(id), Some(&1), "job {id}: one result event");
    }
    // Each job ran once: none before its payment, none twice.
    let ran = take_runs(&runs);
    assert_eq!(ran.len(), JOBS);
    for (id, by) in &ran {
        assert_eq!(
            by,
            &vec!["node-0".to_owned()],
            "job {id} ran once, at the survivor"
        );
    }
    // The money: exactly the prices, once each, in the shared ledger too.
    assert_eq!(lnbits.balance_msat(&earner).await, JOBS as u64 * PRICE_MSAT);
    let snapshot = tokio::task::spawn_blocking(move || {
        let mut sql = postgres::Client::connect(&db, postgres::NoTls).unwrap();
        let left: i64 = sql
            .query_one("SELECT count(*) FROM jobs WHERE owner = 'node-1'", &[])
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "node-1's jobs were taken over");
        let store = PostgresStore::connect(&db, "node-0").unwrap();
        let snapshot = store.load().unwrap();
        drop(postgres);
        snapshot
    })
    .await
    .unwrap()
    .expect("node-0 stored its state");
    let provider = Provider::restore(
        provider_keys.clone(),
        ProviderConfig::new([Kind::from(KIND)]),
        snapshot,
    )
    .unwrap();
    assert_eq!(provider.ledger().len(), JOBS, "each payment counted once");
}
