//! Where a provider's records live when it persists by updates
//! ([`Provider::track_updates`](crate::provider::Provider::track_updates)).

use std::sync::Mutex;

use super::RuntimeError;
use crate::provider::{ProviderSnapshot, RecordSet, StoreUpdate};

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
    /// Applies `updates`, in order, all or nothing, durably.
    fn apply(&self, updates: &[StoreUpdate]) -> Result<(), RuntimeError>;
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
