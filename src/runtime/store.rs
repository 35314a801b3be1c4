//! Where a provider's snapshot lives between runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::RuntimeError;
use crate::provider::ProviderSnapshot;

/// Keeps the provider's latest [`ProviderSnapshot`], so nothing is lost on restart.
///
/// The runtime calls [`save`](Self::save) after every loop turn that changed the provider's
/// state, and once more on shutdown; [`load`](Self::load) once, on start. Calls are
/// synchronous and made from the runtime's loop: keep them quick (a small file write is).
pub trait SnapshotStore: Send + Sync {
    /// The stored snapshot, or `None` when nothing was stored yet.
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError>;
    /// Replaces the stored snapshot.
    fn save(&self, snapshot: &ProviderSnapshot) -> Result<(), RuntimeError>;
}

/// A snapshot stored as JSON in one file, replaced atomically: written to a temporary file
/// in the same directory, flushed to disk, then renamed over the old one. A crash leaves
/// either the old snapshot or the new one, never half of one.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "snapshot".into());
        name.push(".tmp");
        self.path.with_file_name(name)
    }
}

impl SnapshotStore for FileStore {
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::Store(format!("{}: {e}", self.path.display()))),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Store(format!("{}: {e}", self.path.display())))
    }

    fn save(&self, snapshot: &ProviderSnapshot) -> Result<(), RuntimeError> {
        let err = |e: std::io::Error| RuntimeError::Store(format!("{}: {e}", self.path.display()));
        let json = serde_json::to_vec(snapshot).map_err(|e| RuntimeError::Store(e.to_string()))?;
        let temp = self.temp_path();
        let mut file = std::fs::File::create(&temp).map_err(err)?;
        file.write_all(&json).map_err(err)?;
        file.sync_all().map_err(err)?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(err)?;
        Ok(())
    }
}

/// A snapshot kept in memory: survives a restart of the runtime within one process (tests),
/// not of the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    snapshot: Mutex<Option<ProviderSnapshot>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SnapshotStore for MemoryStore {
    fn load(&self) -> Result<Option<ProviderSnapshot>, RuntimeError> {
        Ok(self
            .snapshot
            .lock()
            .map_err(|_| RuntimeError::Store("poisoned lock".into()))?
            .clone())
    }

    fn save(&self, snapshot: &ProviderSnapshot) -> Result<(), RuntimeError> {
        *self
            .snapshot
            .lock()
            .map_err(|_| RuntimeError::Store("poisoned lock".into()))? = Some(snapshot.clone());
        Ok(())
    }
}
