//! Where a provider's (or a customer's) snapshot lives between runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::RuntimeError;
use crate::provider::ProviderSnapshot;

/// Keeps the latest snapshot of a state machine, so nothing is lost on restart: a provider's
/// [`ProviderSnapshot`] (the default `S`) for [`ProviderRuntime`](super::ProviderRuntime), a
/// customer's [`CustomerSnapshot`](crate::customer::CustomerSnapshot) for
/// [`CustomerRuntime::store`](super::CustomerRuntime::store).
///
/// The runtime calls [`save`](Self::save) after every loop turn that changed the provider's
/// state, and once more on shutdown; [`load`](Self::load) once, on start. Calls are
/// synchronous and made from the runtime's loop: keep them quick (a small file write is).
pub trait SnapshotStore<S = ProviderSnapshot>: Send + Sync {
    /// The stored snapshot, or `None` when nothing was stored yet.
    fn load(&self) -> Result<Option<S>, RuntimeError>;
    /// Replaces the stored snapshot.
    fn save(&self, snapshot: &S) -> Result<(), RuntimeError>;
}

/// A snapshot stored as JSON in one file, replaced atomically: written to a temporary file
/// in the same directory, flushed to disk, then renamed over the old one. A crash leaves
/// either the old snapshot or the new one, never half of one.
///
/// A snapshot holds the jobs' inputs and results in the clear (also those of encrypted and
/// gift-wrapped requests) and the provider's RNG state: on Unix the file is created readable
/// by its owner only (mode 0600).
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

impl<S: Serialize + DeserializeOwned> SnapshotStore<S> for FileStore {
    fn load(&self) -> Result<Option<S>, RuntimeError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::Store(format!("{}: {e}", self.path.display()))),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Store(format!("{}: {e}", self.path.display())))
    }

    fn save(&self, snapshot: &S) -> Result<(), RuntimeError> {
        let err = |e: std::io::Error| RuntimeError::Store(format!("{}: {e}", self.path.display()));
        let json = serde_json::to_vec(snapshot).map_err(|e| RuntimeError::Store(e.to_string()))?;
        let temp = self.temp_path();
        // A leftover temporary file may have other permissions: start afresh.
        let _ = std::fs::remove_file(&temp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp).map_err(err)?;
        file.write_all(&json).map_err(err)?;
        file.sync_all().map_err(err)?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(err)?;
        Ok(())
    }
}

/// A snapshot kept in memory: survives a restart of the runtime within one process (tests),
/// not of the process.
#[derive(Debug)]
pub struct MemoryStore<S = ProviderSnapshot> {
    snapshot: Mutex<Option<S>>,
}

impl<S> Default for MemoryStore<S> {
    fn default() -> Self {
        Self {
            snapshot: Mutex::new(None),
        }
    }
}

impl<S> MemoryStore<S> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: Clone + Send> SnapshotStore<S> for MemoryStore<S> {
    fn load(&self) -> Result<Option<S>, RuntimeError> {
        Ok(self
            .snapshot
            .lock()
            .map_err(|_| RuntimeError::Store("poisoned lock".into()))?
            .clone())
    }

    fn save(&self, snapshot: &S) -> Result<(), RuntimeError> {
        *self
            .snapshot
            .lock()
            .map_err(|_| RuntimeError::Store("poisoned lock".into()))? = Some(snapshot.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use nostr::{Keys, Kind, Timestamp};

    use super::*;
    use crate::provider::{Provider, ProviderConfig};

    fn snapshot() -> ProviderSnapshot {
        let config = ProviderConfig::new([Kind::from(5050)]);
        Provider::new(Keys::generate(), config, Timestamp::from(1_760_000_000)).snapshot()
    }

    #[test]
    fn file_store_round_trip_and_owner_only_file() {
        let dir = std::env::temp_dir().join(format!("nostr-dvm-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileStore::new(dir.join("provider.json"));
        let load =
            |store: &FileStore| -> Result<Option<ProviderSnapshot>, RuntimeError> { store.load() };
        assert!(load(&store).unwrap().is_none(), "nothing stored yet");

        // A leftover world-readable temporary file does not make the snapshot readable.
        std::fs::write(store.temp_path(), b"old").unwrap();
        let saved = snapshot();
        store.save(&saved).unwrap();
        let loaded = load(&store).unwrap().expect("stored");
        assert_eq!(loaded, saved);
        assert!(
            !store.temp_path().exists(),
            "the temporary file was renamed"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        std::fs::write(store.path(), b"{not json").unwrap();
        assert!(matches!(load(&store), Err(RuntimeError::Store(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
