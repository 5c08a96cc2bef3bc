//! A sans-IO tracker of HTTP/2 header-block deadlines.
//!
//! [`H2HeaderClock`] watches the bytes a client sends on an HTTP/2
//! connection (plaintext, after TLS) and tells its caller when a header
//! block is *pending*, so the caller can enforce one deadline for the whole
//! block, like the HTTP/1 header deadline:
//!
//! - at connection start the connection preface (24 bytes, RFC 9113 §3.4)
//!   and the client's first SETTINGS frame are pending;
//! - later, a header block is pending **from the first byte of its HEADERS
//!   (or PUSH_PROMISE) frame header until the frame that carries
//!   END_HEADERS (the HEADERS frame itself, or the last CONTINUATION) has
//!   been received completely** (its 9-byte header and its whole payload).
//!
//! A frame header is 9 bytes and its type is only known at its 4th byte, so
//! *any* partially received frame header counts as pending (it may be the
//! start of a HEADERS frame): a block's clock therefore really starts at the
//! first byte of its HEADERS frame header. If the frame turns out to be of
//! another type (DATA, WINDOW_UPDATE, PING, ...) the pending period ends with
//! its 9th header byte; such frames' payloads never count.
//!
//! Each time "pending" goes from false to true a new pending period begins
//! and [`H2HeaderClock::generation`] increments; the caller (re)starts its
//! deadline then, and only then. A CONTINUATION never starts a new period,
//! so a block trickled one CONTINUATION at a time is still bounded by one
//! deadline from the first byte of its HEADERS frame.
//!
//! The tracker keeps O(1) state (a 9-byte frame-header buffer and a few
//! counters): payloads are skipped by counting, never buffered. Work is
//! linear in the input, bytes may be fed in any chunking, and nothing here
//! panics.
//!
//! Protocol violations that concern the tracker are reported as
//! [`Malformed`] (a bad preface, a first frame other than SETTINGS, a frame
//! other than CONTINUATION inside an open header block, a CONTINUATION on
//! another stream or outside a block). The tracker then stops parsing and
//! fails closed: [`H2HeaderClock::header_pending`] stays `true` for good, so
//! a caller that keeps its deadline armed cuts the connection at the
//! deadline if the HTTP/2 implementation has not already closed it (h2
//! rejects all of these with a connection error, except a non-SETTINGS
//! first frame, which RFC 9113 §3.4 forbids but h2 0.4 tolerates).

use std::fmt;

/// The client connection preface (RFC 9113 §3.4), before its SETTINGS frame.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of an HTTP/2 frame header (RFC 9113 §4.1).
pub const FRAME_HEADER_LEN: usize = 9;

/// Moves bytes from the front of `bytes` into `buf` (of which `have` are
/// filled) until `buf` is full; true once it is (`have` then starts over),
/// so a fixed-size field can arrive in any chunking.
pub(crate) fn fill(buf: &mut [u8], have: &mut u8, bytes: &mut &[u8]) -> bool {
    let at = usize::from(*have);
    let n = (buf.len() - at).min(bytes.len());
    buf[at..at + n].copy_from_slice(&bytes[..n]);
    *bytes = &bytes[n..];
    if at + n < buf.len() {
        // Fixed fields here are at most 9 bytes long.
        *have = (at + n) as u8;
        return false;
    }
    *have = 0;
    true
}

const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_PUSH_PROMISE: u8 = 0x5;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;

/// Why the tracker stopped parsing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The connection preface differs from `PRI * HTTP/2.0...` at byte `at`.
    BadPreface { at: usize },
    /// The first frame after the preface is not SETTINGS.
    FirstFrameNotSettings { frame_type: u8 },
    /// A header block on `stream` is open, but the next frame is not a
    /// CONTINUATION.
    ExpectedContinuation { stream: u32, frame_type: u8 },
    /// A CONTINUATION continues a block of another stream.
    ContinuationStreamMismatch { expected: u32, got: u32 },
    /// A CONTINUATION arrived with no header block open.
    UnexpectedContinuation { stream: u32 },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Malformed::BadPreface { at } => {
                write!(f, "bad HTTP/2 connection preface at byte {at}")
            }
            Malformed::FirstFrameNotSettings { frame_type } => {
                write!(
                    f,
                    "first HTTP/2 frame is of type {frame_type:#x}, not SETTINGS"
                )
            }
            Malformed::ExpectedContinuation { stream, frame_type } => write!(
                f,
                "frame of type {frame_type:#x} inside the open header block of stream {stream}"
            ),
            Malformed::ContinuationStreamMismatch { expected, got } => write!(
                f,
                "CONTINUATION on stream {got} inside the header block of stream {expected}"
            ),
            Malformed::UnexpectedContinuation { stream } => {
                write!(
                    f,
                    "CONTINUATION on stream {stream} with no header block open"
                )
            }
        }
    }
}

impl std::error::Error for Malformed {}

/// What the payload of the frame being received means to the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not pending (DATA, PING, WINDOW_UPDATE, later SETTINGS, unknown...).
    Other,
    /// The client's first SETTINGS frame: completes the preface.
    FirstSettings,
    /// A HEADERS / PUSH_PROMISE / CONTINUATION frame.
    HeaderBlock,
}

/// What a caller should do with its deadline after feeding bytes
/// (see [`H2HeaderClock::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// A new pending period began in these bytes: (re)start the deadline
    /// from now.
    Restart,
    /// The pending period that was already running goes on: keep the
    /// deadline as it is.
    Keep,
    /// Nothing is pending: disarm the deadline.
    Disarm,
}

/// Tracks, from the client's bytes of one HTTP/2 connection, whether a
/// header block (or the connection preface) is pending.
#[derive(Debug, Clone)]
pub struct H2HeaderClock {
    /// Bytes of [`PREFACE`] received so far (0..=24).
    preface_seen: u8,
    /// Whether the client's first SETTINGS frame was received completely.
    settings_done: bool,
    /// The frame header being received.
    head: [u8; FRAME_HEADER_LEN],
    /// Bytes of `head` received so far (0..=8; 9 is parsed at once).
    head_len: u8,
    /// Payload bytes of the current frame still to skip.
    remaining: u32,
    /// The current frame's meaning (valid while `remaining > 0`).
    role: Role,
    /// The stream whose header block is open (HEADERS or PUSH_PROMISE
    /// without END_HEADERS seen, END_HEADERS not yet seen).
    open_block: Option<u32>,
    /// Cached value of `header_pending()`.
    pending: bool,
    /// Number of pending periods begun so far.
    generation: u64,
    /// Set once for good when the stream is malformed.
    malformed: Option<Malformed>,
}

impl Default for H2HeaderClock {
    fn default() -> Self {
        Self::new()
    }
}

impl H2HeaderClock {
    /// A new connection: the preface and the client's first SETTINGS frame
    /// are due. The connection start is the first pending period
    /// (`generation() == 1`).
    pub fn new() -> Self {
        H2HeaderClock {
            preface_seen: 0,
            settings_done: false,
            head: [0; FRAME_HEADER_LEN],
            head_len: 0,
            remaining: 0,
            role: Role::Other,
            open_block: None,
            pending: true,
            generation: 1,
            malformed: None,
        }
    }

    /// Feeds bytes read from the client, in order, in any chunking.
    ///
    /// On a protocol violation the tracker stops for good (later calls
    /// return the same error and ignore their bytes) and stays pending.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Malformed> {
        if let Some(m) = self.malformed {
            return Err(m);
        }
        while !bytes.is_empty() {
            // 1. The connection preface.
            let seen = usize::from(self.preface_seen);
            if seen < PREFACE.len() {
                let want = &PREFACE[seen..];
                let n = want.len().min(bytes.len());
                if let Some(i) = (0..n).find(|&i| bytes[i] != want[i]) {
                    return Err(self.fail(Malformed::BadPreface { at: seen + i }));
                }
                // n <= 24, so this fits.
                self.preface_seen += n as u8;
                bytes = &bytes[n..];
                continue;
            }
            // 2. The rest of a payload: skip it.
            if self.remaining > 0 {
                let n = bytes.len().min(self.remaining as usize);
                // n <= remaining, a u32.
                self.remaining -= n as u32;
                bytes = &bytes[n..];
                if self.remaining == 0 {
                    self.end_frame();
                }
                continue;
            }
            // 3. A frame header.
            if !fill(&mut self.head, &mut self.head_len, &mut bytes) {
                // A frame header began: it may be a HEADERS frame's.
                self.update();
                continue;
            }
            self.start_frame()?;
        }
        Ok(())
    }

    /// Feeds bytes and says what to do with the deadline: [`Deadline::Restart`]
    /// when a new pending period began in `bytes` and is still pending at
    /// their end, [`Deadline::Keep`] when the period that was pending before
    /// goes on, [`Deadline::Disarm`] when nothing is pending. A malformed
    /// stream keeps (or, if nothing was pending, restarts) the deadline.
    pub fn observe(&mut self, bytes: &[u8]) -> Deadline {
        let before = self.generation;
        let _ = self.feed(bytes);
        if !self.pending {
            Deadline::Disarm
        } else if self.generation != before {
            Deadline::Restart
        } else {
            Deadline::Keep
        }
    }

    /// Whether the preface / first SETTINGS frame is incomplete, a header
    /// block is open, or a frame header (which may be a HEADERS frame's) or
    /// a header-block frame's payload is only partly received. Always
    /// `true` once the stream was found malformed.
    pub fn header_pending(&self) -> bool {
        self.pending
    }

    /// The number of pending periods begun so far: 1 for the connection
    /// start, plus one each time `header_pending()` went from false to
    /// true. A caller restarts its deadline when this changes while
    /// `header_pending()` is true.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the preface and the client's first SETTINGS frame are
    /// complete.
    pub fn preface_done(&self) -> bool {
        self.settings_done
    }

    /// The violation that stopped the tracker, if any.
    pub fn malformed(&self) -> Option<Malformed> {
        self.malformed
    }

    /// A complete frame header is in `self.head`.
    fn start_frame(&mut self) -> Result<(), Malformed> {
        let h = self.head;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let frame_type = h[3];
        let flags = h[4];
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let end_headers = flags & FLAG_END_HEADERS != 0;

        self.role = if !self.settings_done {
            if frame_type != TYPE_SETTINGS {
                return Err(self.fail(Malformed::FirstFrameNotSettings { frame_type }));
            }
            Role::FirstSettings
        } else if let Some(expected) = self.open_block {
            if frame_type != TYPE_CONTINUATION {
                return Err(self.fail(Malformed::ExpectedContinuation {
                    stream: expected,
                    frame_type,
                }));
            }
            if stream != expected {
                return Err(self.fail(Malformed::ContinuationStreamMismatch {
                    expected,
                    got: stream,
                }));
            }
            if end_headers {
                self.open_block = None;
            }
            Role::HeaderBlock
        } else {
            match frame_type {
                TYPE_HEADERS | TYPE_PUSH_PROMISE => {
                    if !end_headers {
                        self.open_block = Some(stream);
                    }
                    Role::HeaderBlock
                }
                TYPE_CONTINUATION => {
                    return Err(self.fail(Malformed::UnexpectedContinuation { stream }));
                }
                _ => Role::Other,
            }
        };
        self.remaining = len;
        if len == 0 {
            self.end_frame();
        } else {
            self.update();
        }
        Ok(())
    }

    /// The current frame (header and payload) is complete.
    fn end_frame(&mut self) {
        if self.role == Role::FirstSettings {
            self.settings_done = true;
        }
        self.role = Role::Other;
        self.update();
    }

    fn fail(&mut self, m: Malformed) -> Malformed {
        self.malformed = Some(m);
        self.update();
        m
    }

    fn compute_pending(&self) -> bool {
        self.malformed.is_some()
            || !self.settings_done
            || self.open_block.is_some()
            || self.head_len > 0
            || (self.remaining > 0 && self.role != Role::Other)
    }

    /// Refreshes the cached state; a rising edge begins a new period.
    fn update(&mut self) {
        let pending = self.compute_pending();
        if pending && !self.pending {
            self.generation = self.generation.wrapping_add(1);
        }
        self.pending = pending;
    }
}

#[cfg(test)]
mod tests;
