//! The thread that writes a provider's updates to its [`RecordStore`], off the async loop.
//!
//! The loop hands over one update per turn; the writer takes every update queued since its
//! last write and applies them in one call (group commit), then reports the last id durable.
//! A failed write is retried, with what came meanwhile, after a pause that doubles up to
//! [`MAX_RETRY_PAUSE`]: nothing is dropped, and the outputs that wait for it keep waiting.

use std::sync::mpsc as sync_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use super::record_store::RecordStore;
use crate::provider::StoreUpdate;

/// The first pause after a failed write.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two attempts at a failing write.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How many attempts a write that fails gets once the runtime is stopping.
const ATTEMPTS_ON_STOP: u32 = 5;

/// The writer thread and its two channels.
pub(super) struct StoreWriter {
    updates: Option<sync_mpsc::Sender<StoreUpdate>>,
    persisted: mpsc::UnboundedReceiver<u64>,
    thread: Option<JoinHandle<()>>,
    /// The update being written, if any: the loop sends the next one once it is done.
    writing: Option<u64>,
    /// The last update written.
    last: Option<u64>,
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
        })
    }

    /// Queues `update` for the next write.
    pub(super) fn send(&mut self, update: StoreUpdate) {
        let id = update.id;
        if let Some(updates) = &self.updates {
            if updates.send(update).is_err() {
                tracing::error!("the store writer stopped: an update is not written");
                return;
            }
            self.writing = Some(id);
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

    /// The id of the last update written, once a write finishes.
    pub(super) async fn persisted(&mut self) -> Option<u64> {
        let id = self.persisted.recv().await?;
        self.done(id);
        Some(id)
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
        while let Ok(id) = self.persisted.try_recv() {
            last = Some(id);
        }
        last
    }
}

fn write_loop(
    store: &dyn RecordStore,
    queued: &sync_mpsc::Receiver<StoreUpdate>,
    done: &mpsc::UnboundedSender<u64>,
) {
    let mut batch: Vec<StoreUpdate> = Vec::new();
    let mut pause = FIRST_RETRY_PAUSE;
    let mut open = true;
    let mut failures_on_stop = 0;
    loop {
        if batch.is_empty() {
            match queued.recv() {
                Ok(update) => batch.push(update),
                Err(_) => return,
            }
        }
        loop {
            match queued.try_recv() {
                Ok(update) => batch.push(update),
                Err(sync_mpsc::TryRecvError::Empty) => break,
                Err(sync_mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        match store.apply(&batch) {
            Ok(()) => {
                if let Some(last) = batch.last() {
                    let _ = done.send(last.id);
                }
                batch.clear();
                pause = FIRST_RETRY_PAUSE;
                if !open {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(
                    updates = batch.len(),
                    "cannot write to the store, retrying in {pause:?}: {e}"
                );
                if !open {
                    failures_on_stop += 1;
                    if failures_on_stop >= ATTEMPTS_ON_STOP {
                        tracing::error!("giving up: {} updates are not written", batch.len());
                        return;
                    }
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}
