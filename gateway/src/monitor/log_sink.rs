//! Where a serving gateway's log lines go: stderr, in batches. A line per
//! request written on its own costs a system call on the worker thread that
//! served the request (measured: 17 % of a kept-alive request's CPU at the
//! default `info` level). Lines are gathered in memory and written together
//! when enough have gathered, when a warning or error arrives (with
//! everything before it, in order), at least every `FLUSH_EVERY`, and when
//! the gateway stops. Nothing is dropped: a full batch is written by the
//! thread that fills it.
//!
//! A thread handing lines to a writer thread (`tracing-appender`) was tried
//! first and measured slower: each line woke the writer, a context switch
//! per request on the worker's core.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Written out once this much has gathered (about a hundred access lines).
const BATCH_BYTES: usize = 32 * 1024;
/// The longest a quiet gateway keeps a line back.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The gathered lines and where they go.
struct Shared<W> {
    pending: Mutex<Vec<u8>>,
    out: Mutex<Out<W>>,
}

struct Out<W> {
    to: W,
    /// The previous batch's buffer, swapped in so a batch costs no allocation.
    spare: Vec<u8>,
}

impl<W: Write> Shared<W> {
    /// Writes out what has gathered. Holding `out` first keeps batches in
    /// order; the batch is swapped out before the write, so a worker adding
    /// a line never waits on the system call.
    fn flush(&self) {
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        let out = &mut *out;
        match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::swap(&mut *pending, &mut out.spare),
            _ => return,
        }
        // stderr has nowhere to report its own failure.
        let _ = out.to.write_all(&out.spare).and_then(|()| out.to.flush());
        out.spare.clear();
    }
}

/// The `MakeWriter` of the log: cheap to clone, shared by every thread.
pub struct BatchedLog<W> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for BatchedLog<W> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// Writes out what is left when dropped (at the end of `main`).
pub struct FlushOnDrop<W: Write> {
    shared: Arc<Shared<W>>,
}

impl<W: Write> Drop for FlushOnDrop<W> {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

impl<W: Write + Send + 'static> BatchedLog<W> {
    /// A batched log writing to `out`, with the thread that writes out a
    /// quiet gateway's lines; the guard writes out the rest.
    pub fn start(out: W) -> std::io::Result<(Self, FlushOnDrop<W>)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(BATCH_BYTES + 1024)),
            out: Mutex::new(Out {
                to: out,
                spare: Vec::with_capacity(BATCH_BYTES + 1024),
            }),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("portcullis-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                match weak.upgrade() {
                    Some(shared) => shared.flush(),
                    None => return,
                }
            })?;
        let guard = FlushOnDrop {
            shared: shared.clone(),
        };
        Ok((Self { shared }, guard))
    }
}

/// One event's line on its way into the batch.
pub struct Line<'a, W: Write> {
    shared: &'a Shared<W>,
    /// Warnings and errors leave at once, with everything before them.
    urgent: bool,
}

impl<W: Write> Write for Line<'_, W> {
    fn write(&mut self, text: &[u8]) -> std::io::Result<usize> {
        let full = match self.shared.pending.lock() {
            Ok(mut pending) => {
                pending.extend_from_slice(text);
                pending.len() >= BATCH_BYTES
            }
            // A poisoned batch: write this line alone rather than lose it.
            Err(_) => {
                if let Ok(mut out) = self.shared.out.lock() {
                    out.to.write_all(text)?;
                }
                return Ok(text.len());
            }
        };
        if full || self.urgent {
            self.shared.flush();
        }
        Ok(text.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for BatchedLog<W> {
    type Writer = Line<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            shared: &self.shared,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Line {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<u8>>>);

    impl Write for Seen {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Seen {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn logged(log: &BatchedLog<Seen>, events: impl FnOnce()) {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .without_time()
            .with_target(false)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, events);
    }

    #[test]
    fn info_lines_wait_for_a_warning_which_takes_them_along_in_order() {
        let out = Seen::default();
        let (log, _guard) = BatchedLog::start(out.clone()).unwrap();
        logged(&log, || {
            tracing::info!("one");
            tracing::info!("two");
        });
        // The flusher may have run in between: what is out is a prefix, in order.
        let all = " INFO one\n INFO two\n";
        assert!(all.starts_with(&out.text()), "{}", out.text());
        logged(&log, || tracing::warn!("careful"));
        assert_eq!(out.text(), format!("{all} WARN careful\n"));
    }

    #[test]
    fn a_full_batch_is_written_by_the_thread_that_fills_it() {
        let out = Seen::default();
        let (log, _guard) = BatchedLog::start(out.clone()).unwrap();
        let long = "x".repeat(1000);
        logged(&log, || {
            for _ in 0..(BATCH_BYTES / 1000 + 1) {
                tracing::info!("{long}");
            }
        });
        assert!(out.text().len() >= BATCH_BYTES);
    }

    #[test]
    fn a_quiet_log_is_written_out_by_the_flusher_and_the_rest_at_drop() {
        let out = Seen::default();
        let (log, guard) = BatchedLog::start(out.clone()).unwrap();
        logged(&log, || tracing::info!("quiet"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), " INFO quiet\n");
        // Far less than FLUSH_EVERY after the flusher's write: only the guard writes this one.
        logged(&log, || tracing::info!("last"));
        drop(guard);
        assert_eq!(out.text(), " INFO quiet\n INFO last\n");
    }
}
