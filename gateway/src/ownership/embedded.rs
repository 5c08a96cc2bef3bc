//! The embedded ownership index: a map in memory, kept on disk as an
//! append-only log of JSON lines, one change per line, synced before the
//! change is visible. A log (not a file rewritten per change, as the key
//! store does) because objects are created at request rate and an index can
//! hold millions of them. Opening replays the log and, when most of its
//! lines are superseded, compacts it (write a fresh file, fsync, rename), so
//! a crash leaves the old log or the new one, never a torn one. A torn last
//! line (a crash mid-append) is ignored: its change was never acknowledged.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::store::{check, Claimed, IndexError, Ownership, OwnershipStore};

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Set {
        kind: String,
        id: String,
        partner: String,
    },
    Remove {
        kind: String,
        id: String,
    },
}

/// (kind, id) as one string: the kind cannot hold `/`, so it cannot collide.
fn slot(kind: &str, id: &str) -> String {
    let mut s = String::with_capacity(kind.len() + 1 + id.len());
    s.push_str(kind);
    s.push('/');
    s.push_str(id);
    s
}

#[derive(Default)]
struct Index {
    owners: HashMap<Box<str>, Arc<str>>,
    /// One allocation per partner, shared by all its objects.
    partners: HashSet<Arc<str>>,
}

impl Index {
    fn set(&mut self, kind: &str, id: &str, partner: &str) -> Option<Arc<str>> {
        let partner = match self.partners.get(partner) {
            Some(p) => p.clone(),
            None => {
                let p: Arc<str> = Arc::from(partner);
                self.partners.insert(p.clone());
                p
            }
        };
        self.owners.insert(slot(kind, id).into_boxed_str(), partner)
    }

    /// Every record, or those of one kind and one partner, in (kind, id) order.
    fn records(&self, kind: Option<&str>, partner: Option<&str>) -> Vec<Ownership> {
        let mut out: Vec<Ownership> = self
            .owners
            .iter()
            .filter_map(|(slot, owner)| {
                let (k, id) = slot.split_once('/')?;
                let wanted =
                    kind.is_none_or(|want| want == k) && partner.is_none_or(|p| p == &**owner);
                wanted.then(|| Ownership {
                    kind: k.to_string(),
                    id: id.to_string(),
                    partner: owner.to_string(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        out
    }

    fn apply(&mut self, line: Line) {
        match line {
            Line::Set { kind, id, partner } => {
                self.set(&kind, &id, &partner);
            }
            Line::Remove { kind, id } => {
                self.owners.remove(slot(&kind, &id).as_str());
            }
        }
    }
}

pub struct EmbeddedOwnership {
    path: PathBuf,
    index: RwLock<Index>,
    log: Mutex<File>,
    /// Held for the life of the owning process, as the key store's is.
    owner: Mutex<Option<File>>,
}

fn unavailable(what: &str, path: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
}

impl EmbeddedOwnership {
    /// Opens the index as its only owner; `Ok(None)` when another process
    /// (a running gateway) owns it.
    pub fn open_owned(path: &Path) -> Result<Option<EmbeddedOwnership>, String> {
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
        let store = EmbeddedOwnership::open_unowned(path, true)?;
        if let Ok(mut slot) = store.owner.lock() {
            *slot = Some(owner);
        }
        Ok(Some(store))
    }

    /// For a process taking over from a running gateway (`run --upgrade`):
    /// serves from the log while the old process drains, replaying it when
    /// it grows (the old process still records creates), and owns it as
    /// soon as the old process lets go.
    pub fn open_following(path: &Path) -> Result<Arc<EmbeddedOwnership>, String> {
        // Never compacted here: the old process still appends to this file.
        let store = Arc::new(EmbeddedOwnership::open_unowned(path, false)?);
        let weak = Arc::downgrade(&store);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("ownership-takeover".into())
            .spawn(move || {
                let size = |p: &Path| fs::metadata(p).map(|m| m.len()).ok();
                let mut seen = size(&path);
                loop {
                    let Some(store) = weak.upgrade() else { return };
                    let owned = try_own(&path);
                    let now = size(&path);
                    if owned.is_some() || now != seen {
                        seen = now;
                        if let Err(e) = store.refresh() {
                            tracing::error!(target: "portcullis::ownership", error = %e, "cannot re-read the ownership index");
                        }
                    }
                    if let Some(file) = owned {
                        if let Ok(mut slot) = store.owner.lock() {
                            *slot = Some(file);
                        }
                        return;
                    }
                    drop(store);
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            })
            .map_err(|e| format!("cannot start the ownership takeover: {e}"))?;
        Ok(store)
    }

    fn refresh(&self) -> Result<(), String> {
        let (index, _) = replay(&self.path)?;
        let mut slot = self
            .index
            .write()
            .map_err(|_| "ownership index lock poisoned".to_string())?;
        *slot = index;
        Ok(())
    }

    /// Every record in the log at `path`, read without owning it (another
    /// process may be appending: what it acknowledged is already synced).
    pub fn read_records(path: &Path) -> Result<Vec<Ownership>, String> {
        let (index, _) = replay(path)?;
        Ok(index.records(None, None))
    }

    fn open_unowned(path: &Path, may_compact: bool) -> Result<EmbeddedOwnership, String> {
        let (index, lines) = replay(path)?;
        if may_compact && lines > 1024 && lines > 2 * index.owners.len() {
            compact(path, &index)?;
        }
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(EmbeddedOwnership {
            path: path.to_path_buf(),
            index: RwLock::new(index),
            log: Mutex::new(log),
            owner: Mutex::new(None),
        })
    }

    /// Appends `lines` and syncs them, then applies them in memory: a
    /// change is visible only once it would survive a crash.
    fn commit<T>(
        &self,
        decide: impl FnOnce(&Index) -> Result<(Vec<Line>, T), IndexError>,
    ) -> Result<T, IndexError> {
        let mut log = self
            .log
            .lock()
            .map_err(|_| IndexError::Unavailable("ownership log lock poisoned".into()))?;
        let (lines, out) = {
            let index = self.read()?;
            decide(&index)?
        };
        if lines.is_empty() {
            return Ok(out);
        }
        let mut buf = Vec::with_capacity(lines.len() * 64);
        for line in &lines {
            serde_json::to_writer(&mut buf, line)
                .map_err(|e| IndexError::Unavailable(format!("cannot encode: {e}")))?;
            buf.push(b'\n');
        }
        log.write_all(&buf)
            .and_then(|()| log.sync_data())
            .map_err(|e| unavailable("write", &self.path, e))?;
        let mut index = self
            .index
            .write()
            .map_err(|_| IndexError::Unavailable("ownership index lock poisoned".into()))?;
        for line in lines {
            index.apply(line);
        }
        Ok(out)
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Index>, IndexError> {
        self.index
            .read()
            .map_err(|_| IndexError::Unavailable("ownership index lock poisoned".into()))
    }
}

/// The owner lock, if no other process holds it.
fn try_own(path: &Path) -> Option<File> {
    let owner = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path.with_extension("owner"))
        .ok()?;
    owner.try_lock().ok().map(|()| owner)
}

/// The index a log describes, and how many lines it has.
fn replay(path: &Path) -> Result<(Index, usize), String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Index::default(), 0)),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut index = Index::default();
    let mut lines = BufReader::new(file).lines().peekable();
    let mut count = 0;
    while let Some(line) = lines.next() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        count += 1;
        match serde_json::from_str::<Line>(&line) {
            Ok(parsed) => index.apply(parsed),
            // Only the last line can be torn by a crash; anything earlier
            // is a file that is not ours.
            Err(_) if lines.peek().is_none() => {}
            Err(e) => {
                return Err(format!(
                    "{}:{count}: not an ownership index line: {e}",
                    path.display()
                ))
            }
        }
    }
    Ok((index, count))
}

fn compact(path: &Path, index: &Index) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let result = (|| -> std::io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut out = BufWriter::new(file);
        for (slot, partner) in &index.owners {
            let (kind, id) = slot.split_once('/').unwrap_or((slot, ""));
            serde_json::to_writer(
                &mut out,
                &Line::Set {
                    kind: kind.to_string(),
                    id: id.to_string(),
                    partner: partner.to_string(),
                },
            )?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot compact {}: {e}", path.display())
    })
}

#[async_trait]
impl OwnershipStore for EmbeddedOwnership {
    async fn owner(&self, kind: &str, id: &str) -> Result<Option<String>, IndexError> {
        Ok(self
            .read()?
            .owners
            .get(slot(kind, id).as_str())
            .map(|p| p.to_string()))
    }

    async fn claim(&self, kind: &str, id: &str, partner: &str) -> Result<Claimed, IndexError> {
        check(&Ownership {
            kind: kind.into(),
            id: id.into(),
            partner: partner.into(),
        })?;
        self.commit(|index| match index.owners.get(slot(kind, id).as_str()) {
            Some(p) if &**p == partner => Ok((vec![], Claimed::Already)),
            Some(p) => Ok((vec![], Claimed::Other(p.to_string()))),
            None => Ok((
                vec![Line::Set {
                    kind: kind.into(),
                    id: id.into(),
                    partner: partner.into(),
                }],
                Claimed::New,
            )),
        })
    }

    async fn transfer(
        &self,
        kind: &str,
        id: &str,
        partner: &str,
    ) -> Result<Option<String>, IndexError> {
        let record = Ownership {
            kind: kind.into(),
            id: id.into(),
            partner: partner.into(),
        };
        check(&record)?;
        self.commit(|index| {
            let before = index
                .owners
                .get(slot(kind, id).as_str())
                .map(|p| p.to_string());
            Ok((
                vec![Line::Set {
                    kind: record.kind,
                    id: record.id,
                    partner: record.partner,
                }],
                before,
            ))
        })
    }

    async fn remove(&self, kind: &str, id: &str) -> Result<String, IndexError> {
        self.commit(|index| match index.owners.get(slot(kind, id).as_str()) {
            None => Err(IndexError::NotFound),
            Some(p) => Ok((
                vec![Line::Remove {
                    kind: kind.into(),
                    id: id.into(),
                }],
                p.to_string(),
            )),
        })
    }

    async fn import(&self, records: Vec<Ownership>) -> Result<usize, IndexError> {
        for r in &records {
            check(r)?;
        }
        let n = records.len();
        self.commit(|_| {
            Ok((
                records
                    .into_iter()
                    .map(|r| Line::Set {
                        kind: r.kind,
                        id: r.id,
                        partner: r.partner,
                    })
                    .collect(),
                n,
            ))
        })
    }

    async fn export(
        &self,
        kind: Option<&str>,
        partner: Option<&str>,
    ) -> Result<Vec<Ownership>, IndexError> {
        Ok(self.read()?.records(kind, partner))
    }

    async fn count(&self) -> Result<u64, IndexError> {
        Ok(self.read()?.owners.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn satisfies_the_index_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedOwnership::open_owned(&dir.path().join("owners.jsonl"))
            .unwrap()
            .unwrap();
        crate::ownership::contract::run(&store).await;
    }

    #[tokio::test]
    async fn survives_a_restart_a_torn_last_line_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners.jsonl");
        {
            let store = EmbeddedOwnership::open_owned(&path).unwrap().unwrap();
            // Another open while the first owns it is told so.
            assert!(EmbeddedOwnership::open_owned(&path).unwrap().is_none());
            for i in 0..2000 {
                store
                    .transfer("order", "o-1", if i % 2 == 0 { "acme" } else { "globex" })
                    .await
                    .unwrap();
            }
            store.claim("order", "o-2", "acme").await.unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"set\",\"kind\":\"order\",\"id\":\"o-3\"")
            .unwrap();
        drop(f);
        let store = EmbeddedOwnership::open_owned(&path).unwrap().unwrap();
        assert_eq!(
            store.owner("order", "o-1").await.unwrap().as_deref(),
            Some("globex")
        );
        assert_eq!(
            store.owner("order", "o-2").await.unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(store.owner("order", "o-3").await.unwrap(), None);
        // 2002 lines for two objects: compacted on open.
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 2, "the log is compacted to one line per object");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0);
    }

    #[test]
    fn a_foreign_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners.jsonl");
        fs::write(
            &path,
            "not json\n{\"op\":\"remove\",\"kind\":\"a\",\"id\":\"b\"}\n",
        )
        .unwrap();
        let err = EmbeddedOwnership::open_owned(&path).err().unwrap();
        assert!(
            err.contains("owners.jsonl:1: not an ownership index line"),
            "{err}"
        );
    }
}
