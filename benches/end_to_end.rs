//! End to end, next to a bare loop (the performance issue's figures): the SDK's provider
//! runtime, set up as the README shows it, and bare nostr-sdk echo loops, side by side on one
//! in-process relay (`LocalRelay`, 127.0.0.1), under the same load from nostr-sdk customers.
//!
//! - **SDK**: `ProviderRuntime` with the `Echo` task, no store (the store's cost is the storage
//!   issue's figure, `--bench store`), admission limits lifted for the load (four customer keys
//!   send thousands of jobs a minute); twice: **on loop**, the task's runs first polled on the
//!   provider loop (`TaskStart::FirstPollOnLoop`: the echo does nothing before it returns), and
//!   **spawned**, each run a tokio task (`TaskStart::Spawn`, the default).
//! - **bare**: a nostr-sdk client that takes each request (nostr-sdk verified its signature),
//!   signs one result and sends it: the ceiling of this relay and load.
//! - **bare + feedback**: the same, also signing and sending `processing` feedback first, as the
//!   SDK does by design: the limit is 1.2x its CPU per job.
//!
//! Each runs on its own tokio runtime (multi-thread, 2 workers: `#[tokio::main]` on these
//! machines) whose threads carry its name, so its CPU is read per thread from `/proc`; the relay
//! and the customers have runtimes of their own. Loads: one job at a time (latency), bursts of
//! 200 and of 2,000 (at most 250 in flight, which `LocalRelay` needs not to drop events, sent
//! without waiting for the relay's `OK`), a burst of 200 at the relay's pace (each customer
//! sends its next request when the relay said `OK` to the last, as nostr-sdk's `send_event`
//! does), and gift-wrapped jobs (one customer, one at a time and bursts of 200). Every load goes to each
//! side in turn, the first of each round alternating, so all see the machine in the same
//! state. Printed per load and side: jobs/s, p50/p99 latency, CPU per job, wake-ups of the
//! side's threads per job, and the ratios. Latency is timed twice: from the customer's send,
//! and from the relay's delivery of the request (a client of the load that sends nothing hears
//! every request when the relay hands it to the provider, and every result): the second leaves
//! out the time requests wait in the relay, and keeps the time they wait in the provider.
//! `cargo bench --bench end_to_end` runs [`ROUNDS`] rounds; with `-- --test`, one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nostr_dvm::nostr::nips::nip59;
use nostr_dvm::nostr::{
    ClientMessage, Event, EventBuilder, EventId, Filter, JsonUtil, Keys, Kind, PublicKey, Tag,
    TagKind, Timestamp, UnsignedEvent,
};
use nostr_dvm::provider::{Admission, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::ProviderRuntime;
use nostr_dvm::task::TaskStart;
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::runtime::Runtime;

#[path = "support/echo.rs"]
mod echo;
#[path = "../examples/support/local_relay.rs"]
mod local_relay;

use echo::Echo;

/// Rounds of every load (each side once a round).
const ROUNDS: usize = 7;
/// Customers of the plain loads (one client and key each).
const CUSTOMERS: usize = 4;
/// The most jobs in flight in a burst.
const WINDOW: usize = 250;
/// How long a load may wait for one result.
const RESULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One side: a provider serving its own kind under its own key.
struct Side {
    name: &'static str,
    /// The prefix of its runtime's thread names.
    threads: &'static str,
    kind: u16,
    keys: Keys,
    /// Signatures it makes and checks per plain job, and per gift-wrapped one (with ECDHs).
    work: &'static str,
    wrapped_work: &'static str,
}

/// What one run of one load on one side measured.
#[derive(Default, Clone)]
struct Run {
    jobs_per_sec: f64,
    cpu_per_job: f64,
    sleeps_per_job: f64,
    latencies: Vec<Duration>,
    /// Each job's latency from the relay's delivery of its request to its result.
    from_delivery: Vec<Duration>,
}

/// A multi-thread runtime of 2 workers whose threads are named `name`.
fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// What the threads whose name starts with `prefix` used so far: CPU seconds (the kernel's
/// nanosecond count of each thread's time on a CPU, `/proc/self/task/*/schedstat`) and how
/// many times they went to sleep (`voluntary_ctxt_switches` in `status`: each one is a
/// wake-up later).
fn threads_usage(prefix: &str) -> (f64, u64) {
    let mut ns = 0.0;
    let mut sleeps = 0;
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten() {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0);
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        sleeps += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    (ns / 1e9, sleeps)
}

/// A bare nostr-sdk echo loop on `url`: each request (or gift-wrapped request) gets one
/// result (and first `processing` feedback when `feedback`), sent without waiting for the OK.
/// The replies carry the tags NIP-90 gives them, as the SDK's do: a result its `request` (the
/// request's JSON), `e`, `i` and `p` tags (a gift-wrapped one `e` and `p`: its customer has the
/// request), feedback its `status`, `e` and `p` tags; so both sides send the same bytes.
async fn bare_loop(url: String, keys: Keys, kind: u16, feedback: bool) {
    let client = Client::default();
    client.add_relay(&url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    let mut notes = client.notifications();
    // Requests sent before it subscribed are still taken (the relay has them).
    let since = Timestamp::from(Timestamp::now().as_secs().saturating_sub(60));
    client
        .subscribe(Filter::new().kind(Kind::from(kind)).since(since), None)
        .await
        .unwrap();
    let wraps = Filter::new()
        .kind(Kind::GiftWrap)
        .pubkey(keys.public_key())
        .since(Timestamp::from(since.as_secs().saturating_sub(3 * 86_400)));
    client.subscribe(wraps, None).await.unwrap();
    let relays = vec![url];
    while let Ok(note) = notes.recv().await {
        let RelayPoolNotification::Event { event, .. } = note else {
            continue;
        };
        // nostr-sdk checked the event's signature before handing it over.
        // The request's JSON for the `request` tag (none for a gift-wrapped one).
        let (request, customer, request_json) = if event.kind == Kind::GiftWrap {
            let Ok(gift) = nip59::extract_rumor(&keys, &event).await else {
                continue;
            };
            if gift.rumor.kind != Kind::from(kind) {
                continue;
            }
            (gift.rumor, gift.sender, None)
        } else {
            let customer = event.pubkey;
            let json = event.as_json();
            (UnsignedEvent::from(*event), customer, Some(json))
        };
        let wrapped = request_json.is_none();
        let Some(id) = request.id else { continue };
        let inputs: Vec<Tag> = request
            .tags
            .iter()
            .filter(|t| t.kind() == TagKind::i())
            .cloned()
            .collect();
        let input = inputs
            .first()
            .and_then(|t| t.content())
            .unwrap_or_default()
            .to_owned();
        let mut replies = Vec::new();
        if feedback {
            let tags = [
                Tag::parse(["status", "processing"]).unwrap(),
                Tag::event(id),
                Tag::public_key(customer),
            ];
            replies.push(EventBuilder::new(Kind::from(7000), "").tags(tags));
        }
        let mut tags = Vec::with_capacity(3 + inputs.len());
        if let Some(json) = request_json {
            tags.push(Tag::parse(["request", json.as_str()]).unwrap());
        }
        tags.push(Tag::event(id));
        if !wrapped {
            tags.extend(inputs);
        }
        tags.push(Tag::public_key(customer));
        replies.push(EventBuilder::new(Kind::from(kind + 1000), input).tags(tags));
        for reply in replies {
            let event = if wrapped {
                let rumor = reply.build(keys.public_key());
                EventBuilder::gift_wrap(&keys, &customer, rumor, [])
                    .await
                    .unwrap()
            } else {
                reply.sign_with_keys(&keys).unwrap()
            };
            let _ = client
                .send_msg_to(relays.clone(), ClientMessage::event(event))
                .await;
        }
    }
}

/// A customer: a nostr-sdk client that sends requests (the [`listen`]er hears the answers).
struct Customer {
    keys: Keys,
    client: Client,
}

/// A client of the load that sends nothing and hears every request and result of `kinds` and
/// every gift wrap to `to` (the providers, and the customer of the gift-wrapped loads): it
/// sees each request when the relay delivers it (to the provider and to it at once), so a job
/// is timed from there too. (A relay does not send an event back to the connection that
/// published it: the customers cannot hear their own requests.)
async fn listen(url: &str, kinds: Vec<Kind>, to: Vec<PublicKey>) -> Client {
    let client = Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    client
        .subscribe(Filter::new().kinds(kinds), None)
        .await
        .unwrap();
    let wraps = Filter::new()
        .kind(Kind::GiftWrap)
        .pubkeys(to)
        .since(Timestamp::from(
            Timestamp::now().as_secs().saturating_sub(3 * 86_400),
        ));
    client.subscribe(wraps, None).await.unwrap();
    client
}

impl Customer {
    /// A customer with keys of its own.
    async fn connect(url: &str) -> Self {
        let keys = Keys::generate();
        let client = Client::default();
        client.add_relay(url).await.unwrap();
        client.connect().await;
        client.wait_for_connection(Duration::from_secs(5)).await;
        Self { keys, client }
    }

    /// Request `n` of `kind`: the event to send, and the job id.
    fn request(&self, kind: u16, n: usize) -> (Event, EventId) {
        let event = EventBuilder::new(Kind::from(kind), "")
            .tags([Tag::parse(["i", &format!("job {n}"), "text"]).unwrap()])
            .sign_with_keys(&self.keys)
            .unwrap();
        let id = event.id;
        (event, id)
    }

    /// Request `n` of `kind` gift-wrapped to `provider`.
    async fn wrapped_request(&self, kind: u16, n: usize, provider: &PublicKey) -> (Event, EventId) {
        let mut rumor = EventBuilder::new(Kind::from(kind), "")
            .tags([Tag::parse(["i", &format!("job {n}"), "text"]).unwrap()])
            .build(self.keys.public_key());
        let id = rumor.id();
        let wrap = EventBuilder::gift_wrap(&self.keys, provider, rumor, [])
            .await
            .unwrap();
        (wrap, id)
    }
}

/// The job a result answers: its `e` tag, or (for a gift wrap to `keys`) its rumor's, if the
/// rumor is a result (not feedback).
async fn answered(event: &Event, keys: &Keys) -> Option<EventId> {
    if event.kind == Kind::GiftWrap {
        let gift = nip59::extract_rumor(keys, event).await.ok()?;
        if gift.rumor.kind.as_u16() == 7000 {
            return None;
        }
        return gift.rumor.tags.event_ids().next().copied();
    }
    event.tags.event_ids().next().copied()
}

/// How a load sends its jobs.
#[derive(Clone, Copy)]
enum Pace {
    /// At most this many in flight, sent without waiting for the relay's `OK`: the next job
    /// goes when a result comes.
    Window(usize),
    /// Each customer sends its jobs one after the other, each once the relay said `OK` to the
    /// one before (as nostr-sdk's `send_event` does): the customers send at the relay's pace.
    RelayOks,
}

/// When each job was sent, by job id.
type SentAt = Arc<std::sync::Mutex<HashMap<EventId, Instant>>>;

/// Sends `jobs` (customer index, event, job id) at `pace` and waits for every result: each
/// job's latency from its send to its result, and from the relay's delivery of its request
/// (to the provider and to the listener at once) to its result.
async fn run_jobs(
    customers: &[Customer],
    listener: &Client,
    jobs: Vec<(usize, Event, EventId)>,
    pace: Pace,
    label: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    // Gift-wrapped loads come from the first customer alone.
    let mut listener = listener.notifications();
    let sent = SentAt::default();
    let mut delivered: HashMap<EventId, Instant> = HashMap::new();
    // A request event's id -> its job id (a gift wrap's is not its rumor's).
    let requests: HashMap<EventId, EventId> = jobs.iter().map(|(_, e, id)| (e.id, *id)).collect();
    let mut latencies = Vec::with_capacity(jobs.len());
    let mut from_delivery = Vec::with_capacity(jobs.len());
    let total = jobs.len();
    let send = |(customer, event, id): (usize, Event, EventId)| {
        sent.lock().unwrap().insert(id, Instant::now());
        let client = customers[customer].client.clone();
        async move {
            let relays: Vec<_> = client.relays().await.into_keys().collect();
            client
                .send_msg_to(relays, ClientMessage::event(event))
                .await
                .unwrap();
        }
    };
    let mut senders = Vec::new();
    let mut queue = match pace {
        Pace::Window(window) => {
            let mut queue = jobs.into_iter();
            for job in queue.by_ref().take(window) {
                send(job).await;
            }
            Some(queue)
        }
        Pace::RelayOks => {
            let mut by_customer: Vec<Vec<(Event, EventId)>> = vec![Vec::new(); customers.len()];
            for (customer, event, id) in jobs {
                by_customer[customer].push((event, id));
            }
            for (customer, jobs) in by_customer.into_iter().enumerate() {
                let client = customers[customer].client.clone();
                let sent = sent.clone();
                senders.push(tokio::spawn(async move {
                    for (event, id) in jobs {
                        sent.lock().unwrap().insert(id, Instant::now());
                        client.send_event(&event).await.unwrap();
                    }
                }));
            }
            None
        }
    };
    while latencies.len() < total {
        let Ok(note) = tokio::time::timeout(RESULT_TIMEOUT, listener.recv()).await else {
            panic!("{label}: {} results did not come", total - latencies.len());
        };
        let RelayPoolNotification::Event { event, .. } = note.expect("the relay pool is up") else {
            continue;
        };
        if let Some(job) = requests.get(&event.id) {
            delivered.insert(*job, Instant::now());
            continue;
        }
        let Some(job) = answered(&event, &customers[0].keys).await else {
            continue;
        };
        let at = sent.lock().unwrap().remove(&job);
        if let Some(at) = at {
            latencies.push(at.elapsed());
            let delivery = delivered
                .remove(&job)
                .expect("the relay delivered the request");
            from_delivery.push(delivery.elapsed());
            if let Some(job) = queue.as_mut().and_then(Iterator::next) {
                send(job).await;
            }
        }
    }
    for sender in senders {
        sender.await.unwrap();
    }
    (latencies, from_delivery)
}

/// A load: how many jobs, how many in flight, gift-wrapped or not.
#[derive(Clone, Copy)]
struct Load {
    name: &'static str,
    jobs: usize,
    pace: Pace,
    wrapped: bool,
}

const LOADS: [Load; 6] = [
    Load {
        name: "one at a time (200 jobs)",
        jobs: 200,
        pace: Pace::Window(1),
        wrapped: false,
    },
    Load {
        name: "burst of 200",
        jobs: 200,
        pace: Pace::Window(WINDOW),
        wrapped: false,
    },
    Load {
        name: "burst of 200 at the relay's pace",
        jobs: 200,
        pace: Pace::RelayOks,
        wrapped: false,
    },
    Load {
        name: "burst of 2,000",
        jobs: 2_000,
        pace: Pace::Window(WINDOW),
        wrapped: false,
    },
    Load {
        name: "gift-wrapped, one at a time (100 jobs)",
        jobs: 100,
        pace: Pace::Window(1),
        wrapped: true,
    },
    Load {
        name: "gift-wrapped, burst of 200",
        jobs: 200,
        pace: Pace::Window(WINDOW),
        wrapped: true,
    },
];

/// Runs `load` once against `side`.
fn run_load(
    load_rt: &Runtime,
    customers: &[Customer],
    listener: &Client,
    side: &Side,
    load: Load,
    n: &mut usize,
) -> Run {
    let provider = side.keys.public_key();
    let jobs: Vec<(usize, Event, EventId)> = load_rt.block_on(async {
        let mut jobs = Vec::with_capacity(load.jobs);
        for i in 0..load.jobs {
            *n += 1;
            // Gift-wrapped loads come from one customer (its wraps reach it alone).
            let who = if load.wrapped { 0 } else { i % customers.len() };
            let (event, id) = if load.wrapped {
                customers[who]
                    .wrapped_request(side.kind, *n, &provider)
                    .await
            } else {
                customers[who].request(side.kind, *n)
            };
            jobs.push((who, event, id));
        }
        jobs
    });
    let (cpu, sleeps) = threads_usage(side.threads);
    let start = Instant::now();
    let (latencies, from_delivery) = load_rt.block_on(run_jobs(
        customers,
        listener,
        jobs,
        load.pace,
        &format!("{} on {}", load.name, side.name),
    ));
    let took = start.elapsed().as_secs_f64();
    let (cpu_after, sleeps_after) = threads_usage(side.threads);
    Run {
        jobs_per_sec: load.jobs as f64 / took,
        cpu_per_job: (cpu_after - cpu) / load.jobs as f64,
        sleeps_per_job: (sleeps_after - sleeps) as f64 / load.jobs as f64,
        latencies,
        from_delivery,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(latencies: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
    ms.get(i).copied().unwrap_or(f64::NAN)
}

fn main() {
    let measured = !std::env::args().any(|a| a == "--test");
    // `cargo bench --bench end_to_end -- gift` runs the loads whose name holds "gift".
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let chosen =
        |load: &Load| only.is_empty() || only.iter().any(|o| load.name.contains(o.as_str()));
    let rounds = if measured { ROUNDS } else { 1 };
    let relay_rt = runtime("relay");
    let load_rt = runtime("load");
    let sdk_work = "1 check (nostr-sdk) and the id's hash, 2 signatures (processing, result)";
    let sdk_wrapped_work =
        "1+1 checks and the wrap id's hash, 2 ECDH to open; 2 replies wrapped: 4 signatures, 4 ECDH";
    let sides = [
        Side {
            name: "SDK, on loop",
            threads: "sdk-loop",
            kind: echo::KIND,
            keys: Keys::generate(),
            work: sdk_work,
            wrapped_work: sdk_wrapped_work,
        },
        Side {
            name: "SDK, spawned",
            threads: "sdk-spawn",
            kind: echo::FOURTH_KIND,
            keys: Keys::generate(),
            work: sdk_work,
            wrapped_work: sdk_wrapped_work,
        },
        Side {
            name: "bare",
            threads: "bare-plain",
            kind: echo::OTHER_KIND,
            keys: Keys::generate(),
            work: "1 check (nostr-sdk), 1 signature",
            wrapped_work: "1+1 checks, 2 ECDH to open; 1 reply wrapped: 2 signatures, 2 ECDH",
        },
        Side {
            name: "bare + feedback",
            threads: "bare-fb",
            kind: echo::THIRD_KIND,
            keys: Keys::generate(),
            work: "1 check (nostr-sdk), 2 signatures",
            wrapped_work: "1+1 checks, 2 ECDH to open; 2 replies wrapped: 4 signatures, 4 ECDH",
        },
    ];
    let url = relay_rt.block_on(async {
        // LocalRelay's default limit is 60 events a minute per connection.
        let limit = RateLimit {
            max_reqs: 500,
            notes_per_minute: u32::MAX,
        };
        let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
        local_relay::serve(relay).await.unwrap()
    });
    // The SDK as the README shows it, with the limits lifted for this load: the echo task's
    // runs first polled on the loop (it does nothing before it returns), and spawned.
    let mut provider_rts = Vec::new();
    for (side, start) in sides[..2]
        .iter()
        .zip([TaskStart::FirstPollOnLoop, TaskStart::Spawn])
    {
        let rt = runtime(side.threads);
        let config = ProviderConfig::new([Kind::from(side.kind)])
            .relays([url.clone()])
            .admission(Admission {
                max_live_jobs: 4 * WINDOW,
                // Every job of every round is kept or remembered (2 x `max_jobs` at most).
                max_jobs: 100_000,
                rate_limit: None,
                global_rate_limit: None,
                ..Admission::default()
            });
        let sdk = ProviderRuntime::new(side.keys.clone(), config).task(Arc::new(Echo(start)));
        rt.spawn(sdk.run(std::future::pending()));
        provider_rts.push(rt);
    }
    for (side, feedback) in sides[2..].iter().zip([false, true]) {
        let rt = runtime(side.threads);
        rt.spawn(bare_loop(
            url.clone(),
            side.keys.clone(),
            side.kind,
            feedback,
        ));
        provider_rts.push(rt);
    }
    let (customers, listener) = load_rt.block_on(async {
        let mut customers = Vec::new();
        for _ in 0..CUSTOMERS {
            customers.push(Customer::connect(&url).await);
        }
        let kinds = sides
            .iter()
            .flat_map(|s| [Kind::from(s.kind), Kind::from(s.kind + 1000)])
            .collect();
        let mut to: Vec<PublicKey> = sides.iter().map(|s| s.keys.public_key()).collect();
        to.push(customers[0].keys.public_key());
        let listener = listen(&url, kinds, to).await;
        (customers, listener)
    });
    // The providers subscribe on their own runtimes: give them a moment (a request they miss
    // would be taken from the relay's store anyway), then one job each to warm up.
    std::thread::sleep(Duration::from_secs(1));
    let mut n = 0usize;
    let warm = Load {
        name: "warm-up",
        jobs: 20,
        pace: Pace::Window(20),
        wrapped: false,
    };
    for side in &sides {
        run_load(&load_rt, &customers, &listener, side, warm, &mut n);
    }

    let mut runs: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for (l, load) in LOADS.iter().enumerate().filter(|(_, l)| chosen(l)) {
            let order: Vec<usize> = (0..sides.len())
                .map(|i| (i + round + l) % sides.len())
                .collect();
            for s in order {
                let run = run_load(&load_rt, &customers, &listener, &sides[s], *load, &mut n);
                runs.entry((l, s)).or_default().push(run);
            }
        }
    }

    println!(
        "\nend to end, {rounds} round(s) of each load, each side in turn (medians of the rounds; \
         latency percentiles over all jobs; CPU of the side's own threads a job):"
    );
    for (l, load) in LOADS.iter().enumerate().filter(|(_, l)| chosen(l)) {
        println!("{}:", load.name);
        let mut cpu = [0.0; 4];
        let mut p50 = [0.0; 4];
        let mut delivered_p50 = [0.0; 4];
        for (s, side) in sides.iter().enumerate() {
            let these = &runs[&(l, s)];
            let latencies: Vec<Duration> = these.iter().flat_map(|r| r.latencies.clone()).collect();
            let from_delivery: Vec<Duration> =
                these.iter().flat_map(|r| r.from_delivery.clone()).collect();
            cpu[s] = median(these.iter().map(|r| r.cpu_per_job).collect());
            p50[s] = percentile(&latencies, 0.5);
            delivered_p50[s] = percentile(&from_delivery, 0.5);
            println!(
                "  {:<16} {:>6.0} jobs/s  p50 {:>6.2} ms  p99 {:>6.2} ms  (from delivery: p50 \
                 {:>5.2} ms  p99 {:>6.2} ms)  CPU {:>5.0} us, {:>4.1} wake-ups a job  ({})",
                side.name,
                median(these.iter().map(|r| r.jobs_per_sec).collect()),
                p50[s],
                percentile(&latencies, 0.99),
                delivered_p50[s],
                percentile(&from_delivery, 0.99),
                cpu[s] * 1e6,
                median(these.iter().map(|r| r.sleeps_per_job).collect()),
                if load.wrapped {
                    side.wrapped_work
                } else {
                    side.work
                },
            );
        }
        let limit = 1.2;
        for sdk in 0..2 {
            println!(
                "  {} vs bare + feedback: CPU {:.2}x ({:.2} of the {limit}x limit), p50 latency \
                 {:.2}x (from delivery {:.2}x); vs bare: CPU {:.2}x, p50 latency {:.2}x",
                sides[sdk].name,
                cpu[sdk] / cpu[3],
                cpu[sdk] / cpu[3] / limit,
                p50[sdk] / p50[3],
                delivered_p50[sdk] / delivered_p50[3],
                cpu[sdk] / cpu[2],
                p50[sdk] / p50[2],
            );
        }
    }
}
