//! The writer thread: chains and writes records, rotates the file by size,
//! and flushes whenever the queue runs dry.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::chain::Chain;
use super::record::{Entry, Event};
use super::sink::{AuditStats, Shared};

pub enum Output {
    /// Buffered: stdout alone would write (and flush) line by line.
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File(RotatingFile),
}

pub struct RotatingFile {
    path: PathBuf,
    /// `<path>.writer`, locked by the one process writing the trail: during
    /// an in-place upgrade the new process waits for the old one to exit
    /// (queueing its records), so the trail stays one chain.
    writer_lock: File,
    file: std::io::BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl Output {
    pub fn stdout() -> Output {
        Output::Stdout(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ))
    }

    /// Opens the file for appending; the chain continues from its last
    /// complete line, so a restart does not break it.
    pub fn file(
        path: &Path,
        max_bytes: u64,
        keep: usize,
        chain: &mut Chain,
    ) -> Result<Output, String> {
        if let Some(last) = last_line(path)? {
            if !chain.resume_after(&last) {
                tracing::warn!(
                    target: "portcullis::audit",
                    path = %path.display(),
                    "last audit line is not a chained record; the chain restarts"
                );
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".writer");
        let writer_lock = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", PathBuf::from(&lock_path).display()))?;
        Ok(Output::File(RotatingFile {
            path: path.to_path_buf(),
            writer_lock,
            file: std::io::BufWriter::with_capacity(64 * 1024, file),
            size,
            max_bytes,
            keep,
        }))
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout(out) => out.write_all(line),
            Output::File(f) => f.write(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::File(f) => f.file.flush(),
        }
    }
}

impl RotatingFile {
    /// Waits to be the only writer, then reopens the file (the previous
    /// writer may have rotated it) and continues the chain from its last line.
    fn claim(&mut self, chain: &mut Chain) -> Result<(), String> {
        if let Err(std::fs::TryLockError::WouldBlock) = self.writer_lock.try_lock() {
            tracing::info!(
                target: "portcullis::audit",
                path = %self.path.display(),
                "another process is writing the audit trail; records queue until it exits"
            );
            self.writer_lock
                .lock()
                .map_err(|e| format!("cannot lock the audit trail: {e}"))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = std::io::BufWriter::with_capacity(64 * 1024, file);
        if let Some(last) = last_line(&self.path)? {
            chain.resume_after(&last);
        }
        Ok(())
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, … up to `keep`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = std::io::BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        Ok(())
    }
}

/// The last complete line of a file, if it has one.
fn last_line(path: &Path) -> Result<Option<String>, String> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Audit lines are a few hundred bytes; 64 KiB from the end holds the last.
    let from = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut last = None;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !line.is_empty() {
            last = Some(line);
        }
    }
    Ok(last.map(|l| String::from_utf8_lossy(&l).into_owned()))
}

/// How often the writer empties the queue. Records reach the output at
/// most this late; a request never waits for them.
const WRITE_EVERY: Duration = Duration::from_millis(10);

pub(super) fn spawn(
    shared: Arc<Shared>,
    mut output: Output,
    mut chain: Chain,
    stats: AuditStats,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            if let Output::File(f) = &mut output {
                if let Err(e) = f.claim(&mut chain) {
                    tracing::error!(target: "portcullis::audit", error = %e, "audit trail unavailable");
                    shared.failing.store(true, Ordering::Relaxed);
                    return;
                }
            }
            // Logged once per failure, not once per record.
            let mut logged_failure = false;
            let mut write = |entry: &Entry, output: &mut Output, chain: &mut Chain| {
                let Ok(json) = serde_json::to_vec(entry) else {
                    return true;
                };
                let line = chain.seal(json);
                match output.write(&line) {
                    Ok(()) => {
                        stats.written.inc();
                        logged_failure = false;
                        true
                    }
                    Err(e) => {
                        stats.dropped.inc();
                        if !logged_failure {
                            tracing::error!(target: "portcullis::audit", error = %e, "cannot write the audit trail");
                            logged_failure = true;
                        }
                        false
                    }
                }
            };
            let mut batch = Vec::new();
            loop {
                // The sink holds the other reference; once it is gone and
                // everything is written, so is the writer.
                let last = Arc::strong_count(&shared) == 1;
                if let Ok(mut queue) = shared.queue.lock() {
                    std::mem::swap(&mut *queue, &mut batch);
                }
                stats.queue_depth.set(0);
                let mut all_written = true;
                let attempted = !batch.is_empty();
                for entry in batch.drain(..) {
                    all_written &= write(&entry, &mut output, &mut chain);
                }
                // Records are dropped only while the queue is full, so they
                // came after everything that was queued: the gap goes here.
                let dropped = shared.unreported_drops.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let gap = Entry::event(Event::new("records_dropped").with("count", dropped));
                    all_written &= write(&gap, &mut output, &mut chain);
                }
                let flushed = output.flush();
                if let Err(e) = &flushed {
                    tracing::error!(target: "portcullis::audit", error = %e, "cannot flush the audit trail");
                }
                // An idle round proves nothing about the file: the state
                // changes only when a record was attempted or the flush
                // (which keeps failed bytes buffered and retries) failed.
                if attempted || dropped > 0 || flushed.is_err() {
                    shared
                        .failing
                        .store(!(all_written && flushed.is_ok()), Ordering::Relaxed);
                }
                if last {
                    return;
                }
                std::thread::sleep(WRITE_EVERY);
            }
        })
        .map_err(|e| format!("cannot start the audit writer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::audit::chain::{verify, Finding};

    #[test]
    fn rotation_keeps_one_chain_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut chain = Chain::new(None);
        let Output::File(mut f) = Output::file(&path, 300, 5, &mut chain).unwrap() else {
            panic!("a file output");
        };
        for i in 0..12 {
            let line =
                chain.seal(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(40)).into_bytes());
            f.write(&line).unwrap();
        }
        f.file.flush().unwrap();
        let mut files: Vec<PathBuf> = (1..=5)
            .rev()
            .map(|n| dir.path().join(format!("audit.log.{n}")))
            .filter(|p| p.exists())
            .collect();
        assert!(files.len() >= 2, "rotated files: {files:?}");
        files.push(path.clone());
        let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        match verify(&refs, None).unwrap() {
            Finding::Intact {
                records: 12,
                first_seq: Some(0),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for round in 0..2 {
            let mut chain = Chain::new(None);
            let Output::File(mut f) = Output::file(&path, 1 << 20, 1, &mut chain).unwrap() else {
                panic!("a file output");
            };
            for i in 0..3 {
                f.write(&chain.seal(format!("{{\"round\":{round},\"n\":{i}}}").into_bytes()))
                    .unwrap();
            }
            f.file.flush().unwrap();
        }
        assert!(matches!(
            verify(&[path.as_path()], None).unwrap(),
            Finding::Intact { records: 6, .. }
        ));
    }
}
