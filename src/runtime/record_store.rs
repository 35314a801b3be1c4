//! Where a provider's records live when it persists by updates
//! ([`Provider::track_updates`](crate::provider::Provider::track_updates)).

use std::sync::Mutex;
use std::time::Duration;

use super::RuntimeError;
use crate::provider::{JobRecord, ProviderSnapshot, RecordSet, StoreUpdate};

/// Keeps a provider's records (jobs, forgotten ids, spent payment keys, and the rest as one
/// meta record) and applies its [`StoreUpdate`]s.
///
/// [`ProviderRuntime::record_store`](super::ProviderRuntime::record_store) calls
/// [`load`](Self::load) once, on start, and [`apply`](Self::apply) from a thread of its own
/// (never from the async loop), with every update taken since the last call that succeeded:
/// one call, one transaction (group commit). An update may come again after a failure;
/// applying one twice must change nothing. Only when `apply` returns `Ok` are the updates
/// durable: the outputs that waited for them go out then.
pub trait RecordStore: Send + Sync {
    /// The stored state, as a snapshot for
    /// [`Provider::restore`](crate::provider::Provider::restore); `None` when nothing was
    /// stored yet.
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError>;
    /// Applies `updates`, in order, all or nothing, durably. A store shared by a fleet
    /// writes only the job records this process owns, and fails with
    /// [`RuntimeError::LeaseLost`] once this process's lease was taken over.
    fn apply(&self, updates: &[StoreUpdate]) -> Result<(), RuntimeError>;

    /// For a store shared by several provider processes with the same keys (a fleet): how
    /// often this process must [`renew`](Self::renew) its lease. `None` (the default): the
    /// store belongs to one process, which needs no claims; the runtime then answers every
    /// claim yes at once, without calling [`claim`](Self::claim).
    fn lease_renewal(&self) -> Option<Duration> {
        None
    }

    /// Claims new jobs for this process, in order: each record is the job's first, and is
    /// stored as this process's when the claim is won (`true`). A claim is lost (`false`)
    /// when the job's id is or was another process's (a record or a forgotten id with it).
    /// Called from the writer thread, in order with [`apply`](Self::apply). The default
    /// (one process) wins every claim and stores nothing: the record comes with the next
    /// update.
    fn claim(&self, jobs: &[JobRecord]) -> Result<Vec<bool>, RuntimeError> {
        Ok(vec![true; jobs.len()])
    }

    /// Renews this process's lease, and takes over the records of processes whose lease
    /// expired: one snapshot per process taken over (its jobs, its events still to publish,
    /// its refunds due), for
    /// [`Provider::adopt`](crate::provider::Provider::adopt). Called every
    /// [`lease_renewal`](Self::lease_renewal) from the writer thread.
    /// [`RuntimeError::LeaseLost`] when this process's own lease was taken over: its jobs
    /// are another's now, and it must stop. The default does nothing.
    fn renew(&self) -> Result<Vec<ProviderSnapshot>, RuntimeError> {
        Ok(Vec::new())
    }
}

/// Records kept in memory ([`RecordSet`]): survive a restart of the runtime within one process
/// (tests), not of the process.
#[derive(Debug, Default)]
pub struct MemoryRecordStore {
    records: Mutex<RecordSet>,
}

impl MemoryRecordStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what it holds.
    pub fn records(&self) -> RecordSet {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl RecordStore for MemoryRecordStore {
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError> {
        Ok(self.records().snapshot())
    }

    fn apply(&self, updates: &[StoreUpdate]) -> Result<(), RuntimeError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        for update in updates {
            records.apply(update);
        }
        Ok(())
    }
}
