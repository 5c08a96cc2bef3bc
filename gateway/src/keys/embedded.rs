//! The embedded key store: one JSON file of key hashes, replaced
//! atomically (write to a temporary file, fsync, rename, fsync the
//! directory), so a crash leaves either the old or the new file, never a
//! torn one. Reads are served from memory.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::pepper::KeyHash;
use super::store::{KeyRecord, KeyStore, Lookup, StoreError, SUPERSEDED};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Default)]
struct FileContents {
    format: u32,
    keys: Vec<KeyRecord>,
    /// Partners suspended at runtime (files from before this field load
    /// with none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    suspended: Vec<String>,
}

#[derive(Default)]
struct Index {
    records: Vec<KeyRecord>,
    by_hash: HashMap<KeyHash, usize>,
    suspended: HashSet<String>,
}

impl Index {
    fn new(contents: FileContents) -> Result<Index, String> {
        let records = contents.keys;
        let mut by_hash = HashMap::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let hash = r
                .key_hash()
                .ok_or_else(|| format!("key {} has a malformed hash", r.key_id))?;
            by_hash.insert(hash, i);
        }
        Ok(Index {
            records,
            by_hash,
            suspended: contents.suspended.into_iter().collect(),
        })
    }
}

pub struct EmbeddedStore {
    path: PathBuf,
    /// Held for the life of the owning process (the running gateway): the
    /// CLI sees it taken and goes through the admin API instead, so the
    /// gateway's cache can never be bypassed.
    owner: Mutex<Option<File>>,
    index: ArcSwap<Index>,
    /// Serialises writers within this process; `File::lock` on the lock
    /// file serialises them across processes (the CLI and the gateway).
    write: Mutex<()>,
    /// Counts changes made through this process, so a lookup that read
    /// the index before a change is recognisably older than it.
    epoch: AtomicU64,
}

fn read_file(path: &Path) -> Result<FileContents, String> {
    match fs::read(path) {
        Ok(bytes) => {
            let contents: FileContents = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a key store file: {e}", path.display()))?;
            if contents.format != FORMAT {
                return Err(format!(
                    "{}: unsupported key store format {}",
                    path.display(),
                    contents.format
                ));
            }
            Ok(contents)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileContents {
            format: FORMAT,
            ..FileContents::default()
        }),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_file(path: &Path, contents: &FileContents) -> Result<(), String> {
    // A bare file name has an empty parent, which cannot be opened to fsync.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let body =
        serde_json::to_vec_pretty(contents).map_err(|e| format!("cannot encode key store: {e}"))?;
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<EmbeddedStore, String> {
        let index = Index::new(read_file(path)?)?;
        Ok(EmbeddedStore {
            path: path.to_path_buf(),
            owner: Mutex::new(None),
            index: ArcSwap::from_pointee(index),
            write: Mutex::new(()),
            epoch: AtomicU64::new(1),
        })
    }

    /// Opens the store as its only owner. `Ok(None)` means another process
    /// (a running gateway) owns it.
    pub fn open_owned(path: &Path) -> Result<Option<EmbeddedStore>, String> {
        let owner_path = path.with_extension("owner");
        let owner = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&owner_path)
            .map_err(|e| format!("cannot open {}: {e}", owner_path.display()))?;
        match owner.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", owner_path.display()))
            }
        }
        let store = EmbeddedStore::open(path)?;
        if let Ok(mut slot) = store.owner.lock() {
            *slot = Some(owner);
        }
        Ok(Some(store))
    }

    /// For a process taking over from a running gateway (`run --upgrade`):
    /// serves from the file while the old process drains, re-reading it
    /// when it changes (the old process may still rotate a key), and takes
    /// ownership as soon as the old process lets go. `on_change` runs after
    /// every re-read, to empty caches built on the old contents.
    pub fn take_over(
        self: &Arc<Self>,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<(), String> {
        let store = Arc::downgrade(self);
        let path = self.path.clone();
        std::thread::Builder::new()
            .name("key-store-takeover".into())
            .spawn(move || {
                let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
                let mut seen = modified(&path);
                loop {
                    let Some(store) = store.upgrade() else {
                        return;
                    };
                    let owned = match EmbeddedStore::try_own(&path) {
                        Ok(Some(file)) => {
                            if let Ok(mut slot) = store.owner.lock() {
                                *slot = Some(file);
                            }
                            true
                        }
                        _ => false,
                    };
                    let now = modified(&path);
                    if owned || now != seen {
                        seen = now;
                        match store.refresh() {
                            Ok(()) => on_change(),
                            Err(e) => tracing::error!(target: "portcullis::keys", error = %e, "cannot re-read the key store"),
                        }
                    }
                    if owned {
                        tracing::info!(target: "portcullis::keys", path = %path.display(), "took over the key store from the previous process");
                        return;
                    }
                    drop(store);
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            })
            .map(drop)
            .map_err(|e| format!("cannot start the key-store takeover: {e}"))
    }

    /// The owner lock, if no other process holds it.
    fn try_own(path: &Path) -> Result<Option<File>, String> {
        let owner_path = path.with_extension("owner");
        let owner = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&owner_path)
            .map_err(|e| format!("cannot open {}: {e}", owner_path.display()))?;
        match owner.try_lock() {
            Ok(()) => Ok(Some(owner)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(format!("cannot lock {}: {e}", owner_path.display()))
            }
        }
    }

    /// Read-modify-write under both locks, starting from the file (another
    /// process may have written since we last looked).
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut Vec<KeyRecord>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.modify_contents(|contents| change(&mut contents.keys))
    }

    fn modify_contents<T>(
        &self,
        change: impl FnOnce(&mut FileContents) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _guard = self
            .write
            .lock()
            .map_err(|_| StoreError::Unavailable("key store lock poisoned".into()))?;
        let lock_path = self.path.with_extension("lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
            })?;
        lock.lock().map_err(|e| {
            StoreError::Unavailable(format!("cannot lock {}: {e}", lock_path.display()))
        })?;
        let mut contents = read_file(&self.path).map_err(StoreError::Unavailable)?;
        let out = change(&mut contents)?;
        write_file(&self.path, &contents).map_err(StoreError::Unavailable)?;
        let index = Index::new(contents).map_err(StoreError::Unavailable)?;
        self.index.store(Arc::new(index));
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    fn current_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Re-reads the file (after another process changed it).
    pub fn refresh(&self) -> Result<(), String> {
        let index = Index::new(read_file(&self.path)?)?;
        self.index.store(Arc::new(index));
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn lookup(&self, hash: &KeyHash) -> Result<Lookup, StoreError> {
        // Read before the index: a change swaps the index, then bumps this.
        let epoch = self.current_epoch();
        let index = self.index.load();
        let record = index
            .by_hash
            .get(hash)
            .and_then(|&i| index.records.get(i))
            .cloned();
        Ok(Lookup {
            partner_suspended: record
                .as_ref()
                .is_some_and(|r| index.suspended.contains(&r.partner)),
            record,
            epoch,
        })
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.modify(|records| {
            if records
                .iter()
                .any(|r| r.partner == record.partner && r.slot() == record.slot())
            {
                return Err(StoreError::Conflict(format!(
                    "partner {} already has a key named {}",
                    record.partner, record.name
                )));
            }
            records.push(record);
            Ok(())
        })
    }

    async fn replace(
        &self,
        record: KeyRecord,
        expected: Option<&KeyHash>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        self.modify(|records| {
            let slot = records
                .iter_mut()
                .find(|r| r.partner == record.partner && r.slot() == record.slot())
                .ok_or(StoreError::NotFound)?;
            if expected.is_some_and(|e| slot.key_hash().as_ref() != Some(e)) {
                return Err(StoreError::Conflict(SUPERSEDED.into()));
            }
            Ok(std::mem::replace(slot, record))
        })
        .map(|old| (old, self.current_epoch()))
    }

    async fn remove(
        &self,
        partner: &str,
        slot: &str,
        expected: Option<&KeyHash>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        self.modify(|records| {
            let pos = records
                .iter()
                .position(|r| r.partner == partner && r.slot() == slot)
                .ok_or(StoreError::NotFound)?;
            if expected.is_some_and(|e| records[pos].key_hash().as_ref() != Some(e)) {
                return Err(StoreError::Conflict(SUPERSEDED.into()));
            }
            Ok(records.remove(pos))
        })
        .map(|old| (old, self.current_epoch()))
    }

    async fn list(&self, partner: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let index = self.index.load();
        Ok(index
            .records
            .iter()
            .filter(|r| partner.is_none_or(|p| r.partner == p))
            .cloned()
            .collect())
    }

    async fn set_suspended(&self, partner: &str, suspended: bool) -> Result<u64, StoreError> {
        self.modify_contents(|contents| {
            contents.suspended.retain(|p| p != partner);
            if suspended {
                contents.suspended.push(partner.to_string());
                contents.suspended.sort();
            }
            Ok(())
        })?;
        Ok(self.current_epoch())
    }

    async fn suspended_partners(&self) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = self.index.load().suspended.iter().cloned().collect();
        out.sort();
        Ok(out)
    }

    async fn record_use(&self, used: &[(String, u64)]) -> Result<(), StoreError> {
        let index = self.index.load();
        let raises = |records: &[KeyRecord]| {
            used.iter().any(|(hash, at)| {
                records
                    .iter()
                    .any(|r| r.hash == *hash && r.last_used_at.is_none_or(|t| t < *at))
            })
        };
        // Most batches change nothing the file holds: skip the write.
        if !raises(&index.records) {
            return Ok(());
        }
        self.modify(|records| {
            for (hash, at) in used {
                if let Some(r) = records.iter_mut().find(|r| r.hash == *hash) {
                    r.last_used_at = r.last_used_at.max(Some(*at));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::pepper::Pepper;
    use crate::keys::store::new_record;

    #[tokio::test]
    async fn satisfies_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("keys.json")).unwrap();
        crate::keys::contract::run(&store).await;
    }

    #[tokio::test]
    async fn survives_a_restart_and_holds_no_key_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let pepper = Pepper::from_bytes([3; 32]);
        let (key, record) = new_record(&pepper, "acme", "primary", None).unwrap();
        EmbeddedStore::open(&path)
            .unwrap()
            .insert(record.clone())
            .await
            .unwrap();

        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            reopened
                .lookup(&record.key_hash().unwrap())
                .await
                .unwrap()
                .record,
            Some(record)
        );
        let on_disk = std::fs::read_to_string(&path).unwrap();
        assert!(!on_disk.contains(key.reveal()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o077,
            0
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().contains(".tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "{\"format\": 1, \"keys\": [").unwrap();
        let err = EmbeddedStore::open(&path).err().unwrap();
        assert!(err.contains("not a key store file"), "{err}");
    }
}
