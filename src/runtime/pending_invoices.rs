//! The invoices a wallet-backed [`LightningBackend`](super::LightningBackend) watches for
//! payment, shared by its calls and its watcher task: which job each pays for and when it
//! expires, how often to poll, a wake-up to poll at once, and the watcher (aborted when the
//! backend goes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr::EventId;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::PendingInvoice;
use crate::bolt11::Invoice;

/// How long past its expiry an unpaid invoice is still watched (a payment may settle late).
pub(super) const EXPIRED_GRACE_SECS: u64 = 3_600;

/// The pending invoices of one backend. Poisoned locks read as empty: nothing panics while
/// holding them.
#[derive(Debug)]
pub(super) struct PendingInvoices {
    /// How often every pending invoice is polled, in milliseconds.
    poll_interval_ms: AtomicU64,
    /// Payment hash -> (job, unix expiry).
    pending: Mutex<HashMap<[u8; 32], (EventId, u64)>>,
    /// Wakes the watcher to poll at once.
    poll_now: Arc<Notify>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl PendingInvoices {
    pub(super) fn new(poll_interval: Duration) -> Self {
        Self {
            poll_interval_ms: AtomicU64::new(millis(poll_interval)),
            pending: Mutex::new(HashMap::new()),
            poll_now: Arc::new(Notify::new()),
            watcher: Mutex::new(None),
        }
    }

    /// How often to poll.
    pub(super) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.load(Ordering::Relaxed))
    }

    /// Polls every `every` (at least 1 s) from the next wait.
    pub(super) fn set_poll_interval(&self, every: Duration) {
        let every = every.max(Duration::from_secs(1));
        self.poll_interval_ms
            .store(millis(every), Ordering::Relaxed);
    }

    /// Watches the invoice with `hash`, for `job`, until it is paid or `expires` (unix time)
    /// is long past.
    pub(super) fn add(&self, hash: [u8; 32], job: EventId, expires: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(hash, (job, expires));
        }
    }

    /// Watches the invoices a restart left pending, and polls at once.
    pub(super) fn restore(&self, invoices: Vec<PendingInvoice>) {
        for invoice in invoices {
            let expires = Invoice::parse(&invoice.bolt11)
                .map(|i| i.expires_at())
                .unwrap_or(u64::MAX);
            self.add(invoice.payment_hash, invoice.job, expires);
        }
        self.poll_soon();
    }

    /// The job and expiry of the pending invoice with `hash`.
    pub(super) fn get(&self, hash: &[u8; 32]) -> Option<(EventId, u64)> {
        self.pending.lock().ok()?.get(hash).copied()
    }

    /// Stops watching the invoice with `hash`.
    pub(super) fn remove(&self, hash: &[u8; 32]) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(hash);
        }
    }

    /// The hashes of every pending invoice.
    pub(super) fn hashes(&self) -> Vec<[u8; 32]> {
        self.pending
            .lock()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default()
    }

    /// How many invoices are pending.
    pub(super) fn len(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Runs `f` on the pending invoices.
    #[cfg_attr(not(feature = "nwc"), allow(dead_code))]
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&HashMap<[u8; 32], (EventId, u64)>) -> T,
    ) -> Option<T> {
        self.pending.lock().ok().map(|p| f(&p))
    }

    /// Whether an unpaid invoice that expires at `expires` is past watching at `now`.
    pub(super) fn given_up(expires: u64, now: u64) -> bool {
        now > expires.saturating_add(EXPIRED_GRACE_SECS)
    }

    /// The wait for the next poll: a poll asked for, or the poll interval. It holds no
    /// reference to the backend, so that dropping the backend (which aborts its watcher) is
    /// not kept from happening by a watcher that waits.
    pub(super) fn next_poll(&self) -> NextPoll {
        NextPoll {
            asked: self.poll_now.clone(),
            every: self.poll_interval(),
        }
    }

    /// Asks the watcher to poll at once.
    pub(super) fn poll_soon(&self) {
        self.poll_now.notify_one();
    }

    /// Spawns `watcher` on the current tokio runtime as the backend's watcher, aborting the
    /// one before (`LightningBackend::attach` is called again on a restart). Outside a
    /// runtime it logs that `backend` gets no settlements.
    pub(super) fn start_watcher(
        &self,
        backend: &str,
        watcher: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!("{backend}::attach outside a tokio runtime: no settlements");
            return;
        };
        let task: JoinHandle<()> = handle.spawn(watcher);
        if let Ok(mut slot) = self.watcher.lock() {
            if let Some(old) = slot.replace(task) {
                old.abort();
            }
        }
    }
}

impl Drop for PendingInvoices {
    fn drop(&mut self) {
        if let Ok(mut watcher) = self.watcher.lock() {
            if let Some(task) = watcher.take() {
                task.abort();
            }
        }
    }
}

/// See [`PendingInvoices::next_poll`].
pub(super) struct NextPoll {
    asked: Arc<Notify>,
    every: Duration,
}

impl NextPoll {
    pub(super) async fn wait(self) {
        tokio::select! {
            () = self.asked.notified() => {}
            () = tokio::time::sleep(self.every) => {}
        }
    }
}

fn millis(every: Duration) -> u64 {
    u64::try_from(every.as_millis()).unwrap_or(u64::MAX)
}
