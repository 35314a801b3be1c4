//! Customers that send bursts of free jobs through a relay and wait for every result: the
//! load of the runtime and store benches.
// Each bench uses a part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::time::Duration;

use nostr_dvm::nostr::{ClientMessage, Event, EventBuilder, EventId, Filter, Keys, Kind, Tag};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use tokio::sync::broadcast;

use crate::echo::{KIND, OTHER_KIND};

/// A customer: a nostr-sdk client subscribed to every result on the relay (of both echo
/// kinds).
pub struct Customer {
    keys: Keys,
    /// Its client.
    pub client: Client,
    notifications: broadcast::Receiver<RelayPoolNotification>,
}

impl Customer {
    pub async fn connect(url: &str) -> Self {
        let client = Client::default();
        client.add_relay(url).await.unwrap();
        client.connect().await;
        client.wait_for_connection(Duration::from_secs(5)).await;
        let notifications = client.notifications();
        let filter = Filter::new().kinds(result_kinds());
        client.subscribe(filter, None).await.unwrap();
        Self {
            keys: Keys::generate(),
            client,
            notifications,
        }
    }

    pub fn request(&self, n: usize) -> Event {
        self.request_of(KIND, n)
    }

    /// Request `n` of `kind`.
    pub fn request_of(&self, kind: u16, n: usize) -> Event {
        EventBuilder::new(Kind::from(kind), "")
            .tags([Tag::parse(["i", &format!("job {n}"), "text"]).unwrap()])
            .sign_with_keys(&self.keys)
            .unwrap()
    }
}

/// Times `iters` bursts of `burst` jobs through `run_window` (at most `window` in flight),
/// for criterion's `iter_custom`: their total time; each burst's jobs/s goes into `rates`.
pub fn timed_bursts(
    rt: &tokio::runtime::Runtime,
    customers: &mut [Customer],
    (burst, window): (usize, usize),
    iters: u64,
    n: &mut usize,
    rates: &mut Vec<f64>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let requests = burst_of(customers, burst, n);
        let start = std::time::Instant::now();
        rt.block_on(run_window(customers, requests, window));
        let took = start.elapsed();
        rates.push(burst as f64 / took.as_secs_f64());
        total += took;
    }
    total
}

/// The median of `rates` (one burst slowed by the machine, 2 cores shared with the relay and
/// the customers, does not move it), after printing their range under `name`.
pub fn median_rate(name: &str, mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    println!(
        "{name}: {} bursts, {:.0} to {:.0} jobs/s",
        rates.len(),
        rates[0],
        rates[rates.len() - 1]
    );
    rates[rates.len() / 2]
}

/// The result kinds of the echo kinds.
fn result_kinds() -> [Kind; 2] {
    [Kind::from(KIND + 1000), Kind::from(OTHER_KIND + 1000)]
}

/// `burst` new requests, shared out evenly among `customers` (numbered on from `n`).
pub fn burst_of(customers: &[Customer], burst: usize, n: &mut usize) -> Vec<Vec<Event>> {
    burst_of_kind(customers, KIND, burst, n)
}

/// [`burst_of`] of `kind`.
pub fn burst_of_kind(
    customers: &[Customer],
    kind: u16,
    burst: usize,
    n: &mut usize,
) -> Vec<Vec<Event>> {
    let each = burst / customers.len().max(1);
    customers
        .iter()
        .map(|customer| {
            (0..each)
                .map(|_| {
                    *n += 1;
                    customer.request_of(kind, *n)
                })
                .collect()
        })
        .collect()
}

/// Publishes every request (each customer its own, concurrently) and waits until each has
/// a result on the relay.
pub async fn run_batch(customers: &mut [Customer], requests: Vec<Vec<Event>>) {
    let mut waiting: HashSet<EventId> = requests.iter().flatten().map(|e| e.id).collect();
    let sends = customers
        .iter()
        .zip(requests)
        .map(|(customer, events)| {
            let client = customer.client.clone();
            tokio::spawn(async move {
                let relays: Vec<_> = client.relays().await.into_keys().collect();
                for event in events {
                    // Fire and forget, as a busy customer would: the results are the check.
                    let message = ClientMessage::event(event);
                    client.send_msg_to(relays.clone(), message).await.unwrap();
                }
            })
        })
        .collect::<Vec<_>>();
    for send in sends {
        send.await.unwrap();
    }
    let first = &mut customers[0].notifications;
    while !waiting.is_empty() {
        let Ok(note) = tokio::time::timeout(Duration::from_secs(30), first.recv()).await else {
            panic!("{} results did not arrive within 30 s", waiting.len());
        };
        let note = note.expect("the relay is up");
        if let RelayPoolNotification::Event { event, .. } = note {
            for id in event.tags.event_ids() {
                waiting.remove(id);
            }
        }
    }
}

/// Like [`run_batch`], with at most `window` jobs in flight: the next request goes out when
/// a result comes in. `LocalRelay` hands new events to its connections through a broadcast
/// channel of 1,024: a burst whose requests, feedback and results exceed it makes slow
/// connections miss events (nostr-relay-builder 0.44 drops them), so a load of thousands of
/// jobs is sent through a window.
pub async fn run_window(customers: &mut [Customer], requests: Vec<Vec<Event>>, window: usize) {
    let mut waiting: HashSet<EventId> = requests.iter().flatten().map(|e| e.id).collect();
    let mut queue: Vec<(Client, Event)> = Vec::new();
    let longest = requests.iter().map(Vec::len).max().unwrap_or(0);
    for n in (0..longest).rev() {
        for (customer, events) in customers.iter().zip(&requests).rev() {
            if let Some(event) = events.get(n) {
                queue.push((customer.client.clone(), event.clone()));
            }
        }
    }
    // `queue` is in reverse order: pop takes the first request of the first customer.
    let send = |client: Client, event: Event| async move {
        client
            .send_msg_to(
                client.relays().await.into_keys().collect::<Vec<_>>(),
                ClientMessage::event(event),
            )
            .await
            .unwrap();
    };
    for _ in 0..window {
        if let Some((client, event)) = queue.pop() {
            send(client, event).await;
        }
    }
    let client = customers[0].client.clone();
    let first = &mut customers[0].notifications;
    while !waiting.is_empty() {
        let Ok(note) = tokio::time::timeout(Duration::from_secs(30), first.recv()).await else {
            let filter = Filter::new()
                .kinds(result_kinds())
                .events(waiting.iter().copied());
            let stored = client
                .fetch_events(filter, Duration::from_secs(10))
                .await
                .map(|events| events.len())
                .unwrap_or(0);
            panic!(
                "{} results did not arrive within 30 s; the relay holds {stored} of them",
                waiting.len()
            );
        };
        if let RelayPoolNotification::Event { event, .. } = note.expect("the relay is up") {
            for id in event.tags.event_ids() {
                if waiting.remove(id) {
                    if let Some((client, event)) = queue.pop() {
                        send(client, event).await;
                    }
                }
            }
        }
    }
}

/// Seconds of CPU this process has used (user and system, all threads).
pub fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, in clock ticks (100 a second on Linux).
    (ticks(11) + ticks(12)) / 100.0
}
