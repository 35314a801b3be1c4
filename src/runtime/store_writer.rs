//! The thread that writes a provider's updates to its [`RecordStore`], off the async loop.
//!
//! The loop hands over one update per turn; the writer takes every update queued since its
//! last write and applies them in one call (group commit), then reports the last id durable.
//! A failed write is retried, with what came meanwhile, after a pause that doubles up to
//! [`MAX_RETRY_PAUSE`]: nothing is dropped, and the outputs that wait for it keep waiting.
//!
//! In a fleet (a store with [`RecordStore::lease_renewal`]), the writer also claims new jobs,
//! in order with the updates, and renews the process's lease on time, reporting the jobs it
//! took over from processes whose lease ran out; once its own lease is lost it stops.

use std::sync::mpsc as sync_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nostr::EventId;
use tokio::sync::mpsc;

use super::record_store::RecordStore;
use super::RuntimeError;
use crate::provider::{JobRecord, ProviderSnapshot, StoreUpdate};

/// The first pause after a failed write.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two attempts at a failing write.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Group commit under load: while updates follow each other closely (the last two went
/// within twice this interval), a write starts at least this long after the one before it.
/// A busy provider's changes then gather into fewer, larger transactions (each costs a fixed
/// price in locks, pages and syscalls, whatever it holds: with a 10 ms interval the store
/// bench's throughput went from 0.82x to 0.91x of no store); the outputs of a busy provider
/// wait at most this long more, and a provider that is not busy writes at once.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(10);
/// How many attempts a write that fails gets once the runtime is stopping.
const ATTEMPTS_ON_STOP: u32 = 5;

/// What the loop hands the writer, in order.
enum Work {
    Update(StoreUpdate),
    Claim(JobRecord),
}

/// What the writer reports to the loop.
#[derive(Debug)]
pub(super) enum Done {
    /// Updates up to this id are durable.
    Persisted(u64),
    /// Claims answered: `(job, won)`.
    Claimed(Vec<(EventId, bool)>),
    /// The records of processes whose lease ran out, taken over by this one.
    TakenOver(Vec<ProviderSnapshot>),
    /// This process's lease was taken over: the writer stopped.
    LeaseLost,
}

/// The writer thread and its two channels.
pub(super) struct StoreWriter {
    updates: Option<sync_mpsc::Sender<Work>>,
    persisted: mpsc::UnboundedReceiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// The update being written, if any: the loop sends the next one once it is done.
    writing: Option<u64>,
    /// The last update written.
    last: Option<u64>,
    /// When the last update was handed to the thread.
    sent_at: Option<Instant>,
    /// The time between the last two updates handed to the thread.
    gap: Option<Duration>,
}

impl StoreWriter {
    /// Starts the thread that writes to `store`.
    pub(super) fn start(store: Arc<dyn RecordStore>) -> std::io::Result<Self> {
        let (updates, queued) = sync_mpsc::channel();
        let (done, persisted) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("nostr-dvm-store".into())
            .spawn(move || write_loop(store.as_ref(), &queued, &done))?;
        Ok(Self {
            updates: Some(updates),
            persisted,
            thread: Some(thread),
            writing: None,
            last: None,
            sent_at: None,
            gap: None,
        })
    }

    /// Queues `update` for the next write.
    pub(super) fn send(&mut self, update: StoreUpdate) {
        let id = update.id;
        if let Some(updates) = &self.updates {
            if updates.send(Work::Update(update)).is_err() {
                tracing::error!("the store writer stopped: an update is not written");
                return;
            }
            self.writing = Some(id);
            let now = Instant::now();
            self.gap = self.sent_at.map(|at| now.duration_since(at));
            self.sent_at = Some(now);
        }
    }

    /// When the next update may go, while busy ([`MIN_WRITE_INTERVAL`]); `None` when it may
    /// go now.
    pub(super) fn next_write_at(&self) -> Option<Instant> {
        if self.gap? > 2 * MIN_WRITE_INTERVAL {
            return None;
        }
        let at = self.sent_at? + MIN_WRITE_INTERVAL;
        (at > Instant::now()).then_some(at)
    }

    /// Queues the claim of a new job (answered by [`Done::Claimed`]).
    pub(super) fn claim(&mut self, record: JobRecord) {
        if let Some(updates) = &self.updates {
            if updates.send(Work::Claim(record)).is_err() {
                tracing::error!("the store writer stopped: a claim is not made");
            }
        }
    }

    /// Whether an update is being written.
    pub(super) fn busy(&self) -> bool {
        self.writing.is_some()
    }

    /// The last update written, if any.
    pub(super) fn last_persisted(&self) -> Option<u64> {
        self.last
    }

    /// What the writer did next: an update written, claims answered, jobs taken over.
    pub(super) async fn persisted(&mut self) -> Option<Done> {
        let done = self.persisted.recv().await?;
        match &done {
            Done::Persisted(id) => self.done(*id),
            Done::LeaseLost => self.writing = None,
            _ => {}
        }
        Some(done)
    }

    fn done(&mut self, id: u64) {
        self.last = Some(id);
        if self.writing.is_some_and(|w| w <= id) {
            self.writing = None;
        }
    }

    /// Waits (at most `timeout`) until the update being written is written.
    pub(super) async fn wait_idle(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            while self.busy() {
                if self.persisted().await.is_none() {
                    break;
                }
            }
        })
        .await;
    }

    /// Writes what is queued, stops the thread, and returns the last id written, waiting
    /// at most `timeout`.
    pub(super) async fn finish(mut self, timeout: Duration) -> Option<u64> {
        drop(self.updates.take());
        let thread = self.thread.take()?;
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(timeout, joined).await.is_err() {
            tracing::error!(
                "the store writer did not finish in time: the last updates may be lost"
            );
        }
        let mut last = None;
        while let Ok(done) = self.persisted.try_recv() {
            if let Done::Persisted(id) = done {
                last = Some(id);
            }
        }
        last
    }
}

fn write_loop(
    store: &dyn RecordStore,
    queued: &sync_mpsc::Receiver<Work>,
    done: &mpsc::UnboundedSender<Done>,
) {
    let renewal = store.lease_renewal();
    let mut renewed_at = Instant::now();
    let mut batch: Vec<Work> = Vec::new();
    let mut pause = FIRST_RETRY_PAUSE;
    let mut open = true;
    let mut failures_on_stop = 0;
    loop {
        if batch.is_empty() {
            let next = match renewal {
                Some(every) => {
                    match queued.recv_timeout(every.saturating_sub(renewed_at.elapsed())) {
                        Ok(work) => Some(work),
                        Err(sync_mpsc::RecvTimeoutError::Timeout) => None,
                        Err(sync_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match queued.recv() {
                    Ok(work) => Some(work),
                    Err(_) => return,
                },
            };
            batch.extend(next);
        }
        loop {
            match queued.try_recv() {
                Ok(work) => batch.push(work),
                Err(sync_mpsc::TryRecvError::Empty) => break,
                Err(sync_mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if let Some(every) = renewal {
            if renewed_at.elapsed() >= every {
                // The next attempt is one interval later, whether this one works or not.
                renewed_at = Instant::now();
                match store.renew() {
                    Ok(taken) => {
                        if !taken.is_empty() {
                            let _ = done.send(Done::TakenOver(taken));
                        }
                    }
                    Err(RuntimeError::LeaseLost) => {
                        let _ = done.send(Done::LeaseLost);
                        return;
                    }
                    Err(e) => tracing::error!("cannot renew the lease: {e}"),
                }
            }
        }
        match write(store, &mut batch, done) {
            Ok(()) => {
                pause = FIRST_RETRY_PAUSE;
                if !open && batch.is_empty() {
                    return;
                }
            }
            Err(RuntimeError::LeaseLost) => {
                let _ = done.send(Done::LeaseLost);
                return;
            }
            Err(e) => {
                tracing::error!(
                    waiting = batch.len(),
                    "cannot write to the store, retrying in {pause:?}: {e}"
                );
                if !open {
                    failures_on_stop += 1;
                    if failures_on_stop >= ATTEMPTS_ON_STOP {
                        tracing::error!("giving up: {} updates are not written", batch.len());
                        return;
                    }
                }
                // A lease is renewed on time even while writes fail.
                let nap = match renewal {
                    Some(every) => pause.min(every.saturating_sub(renewed_at.elapsed())),
                    None => pause,
                };
                std::thread::sleep(nap);
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}

/// Writes `batch` from its front, in order: each run of updates in one `apply`, each run of
/// claims in one `claim`, reporting each as it is done and removing it from the batch. Stops
/// at the first failure (what is left is retried).
fn write(
    store: &dyn RecordStore,
    batch: &mut Vec<Work>,
    done: &mpsc::UnboundedSender<Done>,
) -> Result<(), RuntimeError> {
    while let Some(first) = batch.first() {
        let claims = matches!(first, Work::Claim(_));
        let run = batch
            .iter()
            .take_while(|w| matches!(w, Work::Claim(_)) == claims)
            .count();
        // Taken out of the batch without copies; put back at its front on failure.
        let run: Vec<Work> = batch.drain(..run).collect();
        let outcome = if claims {
            let records: Vec<JobRecord> = run
                .into_iter()
                .filter_map(|w| match w {
                    Work::Claim(record) => Some(record),
                    Work::Update(_) => None,
                })
                .collect();
            match store.claim(&records) {
                Ok(won) => {
                    let answers = records
                        .iter()
                        .zip(won.into_iter().chain(std::iter::repeat(false)))
                        .map(|(record, won)| (record.id(), won))
                        .collect();
                    let _ = done.send(Done::Claimed(answers));
                    Ok(())
                }
                Err(e) => Err((e, records.into_iter().map(Work::Claim).collect::<Vec<_>>())),
            }
        } else {
            let updates: Vec<StoreUpdate> = run
                .into_iter()
                .filter_map(|w| match w {
                    Work::Update(update) => Some(update),
                    Work::Claim(_) => None,
                })
                .collect();
            match store.apply(&updates) {
                Ok(()) => {
                    if let Some(last) = updates.last() {
                        let _ = done.send(Done::Persisted(last.id));
                    }
                    Ok(())
                }
                Err(e) => Err((e, updates.into_iter().map(Work::Update).collect())),
            }
        };
        if let Err((e, back)) = outcome {
            batch.splice(0..0, back);
            return Err(e);
        }
    }
    Ok(())
}
