//! Runs first polled on the provider loop (`TaskStart::FirstPollOnLoop`), against a real relay
//! (`LocalRelay` on 127.0.0.1) with `CustomerRuntime` customers: a run that finishes at once,
//! one that panics, one that reports partial results first, one that waits (it goes on as a
//! tokio task and finishes when woken), and one cancelled while it waits; and the loop's
//! order: the results of runs that finished come before new requests.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

use std::sync::Arc;

use nostr_dvm::customer::{CustomerConfig, Notification as CustomerNote, Output};
use nostr_dvm::nostr::{Keys, Kind};
use nostr_dvm::provider::{Notification as ProviderNote, ProviderConfig};
use nostr_dvm::runtime::{CustomerRuntime, ProviderRuntime};
use nostr_dvm::task::{Progress, Task, TaskError, TaskOutput, TaskRequest, TaskStart};
use support::{
    cancel_while_waiting, customer_output, panic_fails_job_and_next_is_served, provider_note,
    relay, result_content, submit_text, Running, KIND,
};
use tokio::sync::{mpsc, Semaphore};

/// Does what its text input says, its runs first polled on the loop: `panic` panics, `partial`
/// reports two partial results then finishes, `wait` (and `wait <n>`) waits for a permit of the gate, `stall`
/// blocks the loop for [`STALL`] (what the docs tell such tasks not to do: here it holds the
/// loop while inputs pile up); anything else is upper-cased at once.
struct Scripted(Arc<Semaphore>);

#[async_trait::async_trait]
impl Task for Scripted {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(KIND)]
    }

    async fn run(&self, request: TaskRequest, progress: Progress) -> Result<TaskOutput, TaskError> {
        let text: String = request.texts().collect();
        match text.as_str() {
            "panic" => panic!("the task panics on purpose"),
            "partial" => {
                progress.partial("first half");
                progress.partial("second half");
            }
            "stall" => {
                STALLING.store(true, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(STALL);
            }
            t if t.starts_with("wait") => self
                .0
                .acquire()
                .await
                .map_err(|_| TaskError::new("gate closed"))?
                .forget(),
            _ => {}
        }
        Ok(TaskOutput::new(text.to_uppercase()))
    }

    fn start(&self) -> TaskStart {
        TaskStart::FirstPollOnLoop
    }
}

/// How long a `stall` run blocks the provider loop.
const STALL: std::time::Duration = std::time::Duration::from_millis(2500);
/// Set when a `stall` run starts blocking the loop.
static STALLING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A free provider serving `Scripted` on a new relay, a customer on it, and the provider's
/// notifications.
async fn setup(
    gate: Arc<Semaphore>,
) -> (
    nostr_relay_builder::LocalRelay,
    Keys,
    Running,
    CustomerRuntime,
    mpsc::UnboundedReceiver<ProviderNote>,
) {
    let (relay, url) = relay().await;
    let provider = Keys::generate();
    let (notes_tx, notes) = mpsc::unbounded_channel();
    let config = ProviderConfig::new([Kind::from(KIND)]).relays([url.clone()]);
    let runtime = ProviderRuntime::new(provider.clone(), config)
        .task(Arc::new(Scripted(gate)))
        .on_notification(move |note| {
            let _ = notes_tx.send(note.clone());
        });
    let running = Running::start(runtime);
    let customer = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([&url]))
        .await
        .unwrap();
    (relay, provider, running, customer, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_the_loop_that_panics_fails_its_job_and_the_provider_serves_the_next() {
    let (_relay, provider, running, mut customer, _notes) =
        setup(Arc::new(Semaphore::new(0))).await;

    panic_fails_job_and_next_is_served(&mut customer, &provider).await;

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_results_of_a_run_on_the_loop_come_before_its_result_in_order() {
    let (_relay, provider, running, mut customer, _notes) =
        setup(Arc::new(Semaphore::new(0))).await;

    let job = submit_text(&mut customer, &provider, "partial").await;
    let mut partials = Vec::new();
    let content = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::Partial {
            job: j, content, ..
        }) if j == job => {
            partials.push(content);
            None
        }
        Output::Notify(CustomerNote::Result {
            job: j, content, ..
        }) if j == job => Some(content),
        _ => None,
    })
    .await;
    assert_eq!(content, "PARTIAL");
    assert_eq!(partials, ["first half", "second half"]);

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_the_loop_that_waits_goes_on_and_finishes_when_woken() {
    let gate = Arc::new(Semaphore::new(0));
    let (_relay, provider, running, mut customer, mut notes) = setup(gate.clone()).await;

    let waiting = submit_text(&mut customer, &provider, "wait").await;
    provider_note(&mut notes, |n| match n {
        ProviderNote::JobStarted { job, .. } if *job == waiting => Some(()),
        _ => None,
    })
    .await;
    // While it waits, the loop serves other jobs.
    let quick = submit_text(&mut customer, &provider, "quick").await;
    assert_eq!(result_content(&mut customer, quick).await, "QUICK");

    gate.add_permits(1);
    assert_eq!(result_content(&mut customer, waiting).await, "WAIT");
    assert_eq!(gate.available_permits(), 0);

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_the_loop_cancelled_while_it_waits_is_aborted() {
    let gate = Arc::new(Semaphore::new(0));
    let (_relay, provider, running, mut customer, mut notes) = setup(gate.clone()).await;

    cancel_while_waiting(&mut customer, &provider, &mut notes, &gate, "wait").await;

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_of_finished_runs_come_before_new_requests() {
    use std::collections::HashSet;
    let gate = Arc::new(Semaphore::new(0));
    let (_relay, provider, running, mut customer, mut notes) = setup(gate.clone()).await;

    // Five runs wait at the gate, as tokio tasks.
    let mut waiting = HashSet::new();
    for i in 0..5 {
        let job = submit_text(&mut customer, &provider, &format!("wait {i}")).await;
        started(&mut notes, job).await;
        waiting.insert(job);
    }
    // The loop is held; meanwhile the five finish (their reports wait in the queue) and
    // sixteen new requests arrive (they wait in the relay notifications).
    submit_text(&mut customer, &provider, "stall").await;
    while !STALLING.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    gate.add_permits(5);
    let mut new = HashSet::new();
    for i in 0..16 {
        new.insert(submit_text(&mut customer, &provider, &format!("new {i}")).await);
    }

    // When the loop is free again, it publishes the five results before it answers more
    // than one new request (tokio's select! alone would mostly take the relays' input first).
    let mut new_before = 0;
    while !waiting.is_empty() {
        let job = customer_output(&mut customer, |o| match o {
            Output::Notify(CustomerNote::Result { job, .. }) => Some(job),
            _ => None,
        })
        .await;
        if new.contains(&job) {
            new_before += 1;
        }
        waiting.remove(&job);
    }
    assert!(
        new_before <= 1,
        "{new_before} new requests were answered before the finished runs' results"
    );

    running.stop().await;
    customer.disconnect().await;
}

/// Waits until the provider tells that `job` started.
async fn started(
    notes: &mut mpsc::UnboundedReceiver<ProviderNote>,
    job: nostr_dvm::nostr::EventId,
) {
    provider_note(notes, |n| match n {
        ProviderNote::JobStarted { job: j, .. } if *j == job => Some(()),
        _ => None,
    })
    .await
}
