//! Our answer in place of pingora's bare HTTP/2 400, with exact flow control.
//!
//! pingora answers one kind of HTTP/2 request itself, before any hook of
//! ours runs: one whose `:authority` and `Host` disagree, that names its
//! host twice or with user info, or that names none. Its answer is a HEADERS
//! frame holding nothing but `:status: 400` (HPACK static index 12, the byte
//! `0x8c`), with END_STREAM: no problem document, no HSTS, no request id.
//! Every response of ours carries headers, so that frame is recognisable in
//! the server's output, and [`Outbound`], fed that output, swaps it for a
//! HEADERS frame with our headers and a DATA frame with our document.
//!
//! h2 does not know about the DATA frame, so it will believe the client's
//! connection window is that much larger than it is; sending on that belief
//! would be a flow-control error that kills the connection. So `Outbound`
//! keeps the window as the client sees it: the initial 65,535 bytes, plus
//! every connection-level WINDOW_UPDATE the client sends (read by
//! [`ClientFrames`]), minus every DATA frame that went out. A DATA frame the
//! window does not admit yet is held back, with everything after it (frame
//! order matters to HPACK), until the client's next WINDOW_UPDATE admits it.
//! h2 never sends past its own view, which exceeds the real window by at
//! most the documents we added, so the held bytes stay small; [`HELD_LIMIT`]
//! caps them anyway.
//!
//! The replacement frames are encoded without touching either side's HPACK
//! dynamic table (literals without indexing, after any table size update
//! h2 put at the start of the block), so h2's encoder state stays valid.
//! Both parsers keep O(1) state besides the held bytes, take bytes in any
//! chunking and never panic.

use crate::transport::h2_clock::{fill, FRAME_HEADER_LEN, PREFACE};

const TYPE_DATA: u8 = 0x0;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_WINDOW_UPDATE: u8 = 0x8;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// RFC 9113 §6.9.2: both windows start at 65,535 bytes.
const DEFAULT_WINDOW: i64 = 65_535;
/// `:status: 400` as an indexed field of HPACK's static table (RFC 7541 A).
const STATUS_400_INDEXED: u8 = 0x80 | 12;
/// Longest bare-400 HEADERS payload considered: size updates plus `0x8c`.
const BARE_PAYLOAD_MAX: usize = 16;

/// The most server output held back for flow control before the
/// connection is given up on (a client that never opens its window while
/// asking for more and more bodyless answers).
pub const HELD_LIMIT: usize = 256 * 1024;

/// What we answer in place of the bare 400: header fields (lowercase names)
/// after `:status: 400`, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `x-request-id` it carries, for the log line.
    pub fn request_id(&self) -> &str {
        self.headers
            .iter()
            .find(|(name, _)| *name == "x-request-id")
            .map_or("", |(_, value)| value.as_str())
    }
}

/// The held output passed [`HELD_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldTooMuch;

/// Reads, from the client's bytes, what bounds the server's DATA: the
/// connection-level WINDOW_UPDATE increments and SETTINGS_INITIAL_WINDOW_SIZE.
#[derive(Debug, Clone)]
pub struct ClientFrames {
    preface_left: u8,
    head: [u8; FRAME_HEADER_LEN],
    head_len: u8,
    kind: Payload,
    remaining: u32,
    /// A partly received SETTINGS entry (6 bytes) or WINDOW_UPDATE (4).
    field: [u8; 6],
    field_len: u8,
    /// Connection-level credit granted since the last `take_credit`.
    credit: i64,
    initial_stream_window: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Skip,
    Settings,
    ConnectionWindowUpdate,
}

impl Default for ClientFrames {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientFrames {
    pub fn new() -> Self {
        ClientFrames {
            preface_left: PREFACE.len() as u8,
            head: [0; FRAME_HEADER_LEN],
            head_len: 0,
            kind: Payload::Skip,
            remaining: 0,
            field: [0; 6],
            field_len: 0,
            credit: 0,
            initial_stream_window: DEFAULT_WINDOW,
        }
    }

    /// Feeds the client's bytes, in order. (A malformed preface or frame is
    /// h2's to refuse; here it at worst misreads the window, which only
    /// decides when held bytes go out.)
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = bytes.len().min(usize::from(self.preface_left));
                self.preface_left -= n as u8;
                bytes = &bytes[n..];
            } else if self.remaining > 0 {
                let n = bytes.len().min(self.remaining as usize);
                self.payload(&bytes[..n]);
                self.remaining -= n as u32;
                bytes = &bytes[n..];
            } else if fill(&mut self.head, &mut self.head_len, &mut bytes) {
                self.start_frame();
            }
        }
    }

    /// Connection-level window the client granted since the last call.
    pub fn take_credit(&mut self) -> i64 {
        std::mem::take(&mut self.credit)
    }

    /// The client's current SETTINGS_INITIAL_WINDOW_SIZE.
    pub fn initial_stream_window(&self) -> i64 {
        self.initial_stream_window
    }

    fn start_frame(&mut self) {
        let h = self.head;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.kind = match (h[3], stream) {
            (TYPE_SETTINGS, 0) if h[4] & FLAG_ACK == 0 => Payload::Settings,
            (TYPE_WINDOW_UPDATE, 0) if len == 4 => Payload::ConnectionWindowUpdate,
            _ => Payload::Skip,
        };
        self.field_len = 0;
        self.remaining = len;
    }

    fn payload(&mut self, mut bytes: &[u8]) {
        let width = match self.kind {
            Payload::Skip => return,
            Payload::Settings => 6,
            Payload::ConnectionWindowUpdate => 4,
        };
        while !bytes.is_empty() {
            if !fill(&mut self.field[..width], &mut self.field_len, &mut bytes) {
                return;
            }
            let f = self.field;
            match self.kind {
                Payload::Settings => {
                    let id = u16::from_be_bytes([f[0], f[1]]);
                    if id == SETTINGS_INITIAL_WINDOW_SIZE {
                        self.initial_stream_window =
                            i64::from(u32::from_be_bytes([f[2], f[3], f[4], f[5]]));
                    }
                }
                Payload::ConnectionWindowUpdate => {
                    let increment = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) & 0x7fff_ffff;
                    self.credit += i64::from(increment);
                }
                Payload::Skip => {}
            }
        }
    }
}

/// Rewrites the server's output of one HTTP/2 connection (see the module
/// documentation). Bytes pushed in come out, in order, in `out`, except
/// those held for flow control, which come out of a later
/// [`Outbound::open_window`].
#[derive(Debug, Clone)]
pub struct Outbound {
    head: [u8; FRAME_HEADER_LEN],
    head_len: u8,
    /// Payload bytes of the current frame still to pass through.
    remaining: u32,
    /// A HEADERS frame that may be the bare 400: its header and payload so far.
    candidate: Option<([u8; FRAME_HEADER_LEN], Vec<u8>)>,
    /// Output from a frame boundary on, waiting for the window.
    held: Vec<u8>,
    /// The client's connection-level receive window, as the client sees it.
    window: i64,
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbound {
    pub fn new() -> Self {
        Outbound {
            head: [0; FRAME_HEADER_LEN],
            head_len: 0,
            remaining: 0,
            candidate: None,
            held: Vec::new(),
            window: DEFAULT_WINDOW,
        }
    }

    /// Whether output is held back for flow control.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes bytes the server wrote, appending what may go out to `out`.
    /// `answer` is asked for our answer each time a bare 400 is found;
    /// `stream_window` is the client's initial stream window (a document
    /// longer than that is not sent; the bare 400 goes out unchanged).
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<u8>,
        stream_window: i64,
        answer: &mut dyn FnMut() -> Answer,
    ) -> Result<(), HeldTooMuch> {
        while !bytes.is_empty() {
            if self.holding() {
                self.held.extend_from_slice(bytes);
                return if self.held.len() > HELD_LIMIT {
                    Err(HeldTooMuch)
                } else {
                    Ok(())
                };
            }
            if let Some((head, payload)) = self.candidate.as_mut() {
                let want = frame_len(head) - payload.len();
                let n = want.min(bytes.len());
                payload.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if n == want {
                    if let Some((head, payload)) = self.candidate.take() {
                        self.settle_candidate(&head, &payload, out, stream_window, answer);
                    }
                }
                continue;
            }
            if self.remaining > 0 {
                let n = bytes.len().min(self.remaining as usize);
                out.extend_from_slice(&bytes[..n]);
                self.remaining -= n as u32;
                bytes = &bytes[n..];
                continue;
            }
            if !fill(&mut self.head, &mut self.head_len, &mut bytes) {
                continue;
            }
            let head = self.head;
            let len = frame_len(&head);
            if head[3] == TYPE_DATA && len as i64 > self.window {
                self.held.extend_from_slice(&head);
            } else if may_be_bare_400(&head) && len > 0 {
                self.candidate = Some((head, Vec::with_capacity(len)));
            } else {
                if head[3] == TYPE_DATA {
                    self.window -= len as i64;
                }
                out.extend_from_slice(&head);
                self.remaining = len as u32;
            }
        }
        Ok(())
    }

    /// The client granted `credit` more bytes of connection window: held
    /// output it now admits is appended to `out`.
    pub fn open_window(
        &mut self,
        credit: i64,
        out: &mut Vec<u8>,
        stream_window: i64,
        answer: &mut dyn FnMut() -> Answer,
    ) -> Result<(), HeldTooMuch> {
        self.window += credit;
        if credit <= 0 || !self.holding() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        self.push(&held, out, stream_window, answer)
    }

    fn settle_candidate(
        &mut self,
        head: &[u8; FRAME_HEADER_LEN],
        payload: &[u8],
        out: &mut Vec<u8>,
        stream_window: i64,
        answer: &mut dyn FnMut() -> Answer,
    ) {
        let Some(prefix) = bare_400_prefix(payload) else {
            out.extend_from_slice(head);
            out.extend_from_slice(payload);
            return;
        };
        let answer = answer();
        if answer.body.len() as i64 > stream_window {
            out.extend_from_slice(head);
            out.extend_from_slice(payload);
            return;
        }
        let stream = [head[5], head[6], head[7], head[8]];
        let mut block = prefix.to_vec();
        block.push(STATUS_400_INDEXED);
        for (name, value) in &answer.headers {
            encode_literal(&mut block, name.as_bytes(), value.as_bytes());
        }
        write_frame(out, TYPE_HEADERS, FLAG_END_HEADERS, stream, &block);
        let mut data = Vec::with_capacity(FRAME_HEADER_LEN + answer.body.len());
        write_frame(&mut data, TYPE_DATA, FLAG_END_STREAM, stream, &answer.body);
        // Through the window like any other DATA frame (it may be held).
        let mut never = || answer.clone();
        let _ = self.push(&data, out, stream_window, &mut never);
    }
}

fn frame_len(head: &[u8; FRAME_HEADER_LEN]) -> usize {
    u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize
}

/// A HEADERS frame ending its stream and its block, without padding or
/// priority, short enough to hold only table size updates and `0x8c`.
fn may_be_bare_400(head: &[u8; FRAME_HEADER_LEN]) -> bool {
    head[3] == TYPE_HEADERS
        && head[4] == FLAG_END_STREAM | FLAG_END_HEADERS
        && frame_len(head) <= BARE_PAYLOAD_MAX
}

/// For a header block of dynamic table size updates followed by exactly
/// `:status: 400` (indexed), the size updates (which must stay first).
fn bare_400_prefix(block: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while block.get(at).is_some_and(|b| b & 0xe0 == 0x20) {
        at += hpack_int_len(&block[at..], 5)?;
    }
    (block.get(at..) == Some(&[STATUS_400_INDEXED][..])).then(|| &block[..at])
}

/// Length in bytes of the HPACK integer (RFC 7541 §5.1) at the start of
/// `bytes`, with a `prefix`-bit first byte.
fn hpack_int_len(bytes: &[u8], prefix: u32) -> Option<usize> {
    let mask = (1u8 << prefix) - 1;
    if bytes.first()? & mask != mask {
        return Some(1);
    }
    // Size updates fit in u32: at most 5 continuation bytes.
    let end = bytes.iter().skip(1).take(5).position(|b| b & 0x80 == 0)?;
    Some(end + 2)
}

fn encode_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(first | value as u8);
        return;
    }
    out.push(first | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name, no Huffman
/// (RFC 7541 §6.2.2): neither side's dynamic table changes.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_int(out, 0x00, 7, name.len());
    out.extend_from_slice(name);
    encode_int(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

fn write_frame(out: &mut Vec<u8>, frame_type: u8, flags: u8, stream: [u8; 4], payload: &[u8]) {
    let len = (payload.len() as u32).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], frame_type, flags]);
    out.extend_from_slice(&stream);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests;
