use super::*;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(frame_type: u8, flags: u8, stream: u32, payload_len: usize) -> Vec<u8> {
    let len = payload_len as u32;
    let mut v = vec![
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        frame_type,
        flags,
    ];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend((0..payload_len).map(|i| (i * 7 + 3) as u8));
    v
}

fn preface_and_settings() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(frame(SETTINGS, 0, 0, 18));
    v
}

fn started() -> H2HeaderClock {
    let mut c = H2HeaderClock::new();
    c.feed(&preface_and_settings()).unwrap();
    assert!(!c.header_pending());
    c
}

fn feed_bytewise(c: &mut H2HeaderClock, bytes: &[u8]) -> Vec<bool> {
    bytes
        .iter()
        .map(|b| {
            c.feed(std::slice::from_ref(b)).unwrap();
            c.header_pending()
        })
        .collect()
}

#[test]
fn new_connection_is_pending() {
    let c = H2HeaderClock::new();
    assert!(c.header_pending());
    assert_eq!(c.generation(), 1);
    assert!(!c.preface_done());
}

#[test]
fn preface_byte_by_byte() {
    let mut c = H2HeaderClock::new();
    let bytes = preface_and_settings();
    let states = feed_bytewise(&mut c, &bytes);
    let (last, before) = states.split_last().unwrap();
    assert!(before.iter().all(|&p| p), "pending until the last byte");
    assert!(!last);
    assert!(c.preface_done());
    assert_eq!(c.generation(), 1);
}

#[test]
fn one_byte_of_preface_then_nothing_is_pending() {
    let mut c = H2HeaderClock::new();
    c.feed(b"P").unwrap();
    assert!(c.header_pending());
    assert_eq!(c.generation(), 1);
}

#[test]
fn preface_without_settings_is_pending() {
    let mut c = H2HeaderClock::new();
    c.feed(PREFACE).unwrap();
    assert!(c.header_pending());
    // Part of the SETTINGS frame header, then part of its payload.
    c.feed(&frame(SETTINGS, 0, 0, 6)[..12]).unwrap();
    assert!(c.header_pending());
    assert!(!c.preface_done());
}

#[test]
fn complete_preface_and_settings_is_not_pending() {
    let c = started();
    assert!(c.preface_done());
    assert_eq!(c.generation(), 1);
}

#[test]
fn empty_settings_completes_preface() {
    let mut c = H2HeaderClock::new();
    let mut v = PREFACE.to_vec();
    v.extend(frame(SETTINGS, 0, 0, 0));
    c.feed(&v).unwrap();
    assert!(!c.header_pending());
}

#[test]
fn bad_preface_is_malformed_and_stays_pending() {
    let mut c = H2HeaderClock::new();
    assert_eq!(
        c.feed(b"GET / HTTP/1.1\r\n"),
        Err(Malformed::BadPreface { at: 0 })
    );
    assert!(c.header_pending());
    let mut c = H2HeaderClock::new();
    c.feed(b"PRI * HTTP/2.0\r\n").unwrap();
    assert_eq!(c.feed(b"\r\nXX"), Err(Malformed::BadPreface { at: 18 }));
    // Sticky: later bytes are ignored.
    assert_eq!(c.feed(b"SM\r\n\r\n"), Err(Malformed::BadPreface { at: 18 }));
    assert!(c.header_pending());
}

#[test]
fn first_frame_must_be_settings() {
    let mut c = H2HeaderClock::new();
    let mut v = PREFACE.to_vec();
    v.extend(frame(PING, 0, 0, 8));
    assert_eq!(
        c.feed(&v),
        Err(Malformed::FirstFrameNotSettings { frame_type: PING })
    );
    assert!(c.header_pending());
}

#[test]
fn headers_with_end_headers_pending_until_payload_complete() {
    let mut c = started();
    let f = frame(HEADERS, END_HEADERS | END_STREAM, 1, 40);
    let states = feed_bytewise(&mut c, &f);
    let (last, before) = states.split_last().unwrap();
    assert!(before.iter().all(|&p| p));
    assert!(!last);
    assert_eq!(c.generation(), 2, "one new period for the block");
}

#[test]
fn empty_headers_frame_ends_with_its_header() {
    let mut c = started();
    let f = frame(HEADERS, END_HEADERS, 1, 0);
    let states = feed_bytewise(&mut c, &f);
    assert_eq!(
        states,
        [true, true, true, true, true, true, true, true, false]
    );
}

#[test]
fn headers_and_continuations_pending_until_the_last() {
    let mut c = started();
    c.feed(&frame(HEADERS, 0, 1, 30)).unwrap();
    assert!(c.header_pending());
    let generation = c.generation();
    for _ in 0..5 {
        c.feed(&frame(CONTINUATION, 0, 1, 20)).unwrap();
        assert!(c.header_pending());
        assert_eq!(c.generation(), generation, "CONTINUATIONs do not restart");
    }
    // The final CONTINUATION: pending until its last byte.
    let last = frame(CONTINUATION, END_HEADERS, 1, 20);
    c.feed(&last[..last.len() - 1]).unwrap();
    assert!(c.header_pending());
    c.feed(&last[last.len() - 1..]).unwrap();
    assert!(!c.header_pending());
    assert_eq!(c.generation(), generation);
}

#[test]
fn empty_final_continuation() {
    let mut c = started();
    c.feed(&frame(HEADERS, 0, 3, 10)).unwrap();
    c.feed(&frame(CONTINUATION, END_HEADERS, 3, 0)).unwrap();
    assert!(!c.header_pending());
}

#[test]
fn push_promise_is_a_header_block() {
    let mut c = started();
    c.feed(&frame(PUSH_PROMISE, 0, 1, 10)).unwrap();
    assert!(c.header_pending());
    c.feed(&frame(CONTINUATION, END_HEADERS, 1, 4)).unwrap();
    assert!(!c.header_pending());
}

#[test]
fn other_frames_between_blocks_do_not_count() {
    let mut c = started();
    c.feed(&frame(HEADERS, END_HEADERS, 1, 20)).unwrap();
    let generation = c.generation();
    for (t, fl, s, len) in [
        (DATA, 0, 1, 1000),
        (WINDOW_UPDATE, 0, 0, 4),
        (PING, 0, 0, 8),
        (SETTINGS, ACK, 0, 0),
        (PRIORITY, 0, 1, 5),
        (RST_STREAM, 0, 1, 4),
        (0xfa, 0, 0, 3), // an unknown extension frame
        (DATA, END_STREAM, 1, 70_000),
    ] {
        let f = frame(t, fl, s, len);
        // A payload being received is not pending, even when split.
        c.feed(&f[..FRAME_HEADER_LEN + len / 2]).unwrap();
        assert!(!c.header_pending(), "type {t:#x}");
        c.feed(&f[FRAME_HEADER_LEN + len / 2..]).unwrap();
        assert!(!c.header_pending(), "type {t:#x}");
    }
    assert_eq!(c.generation(), generation);
    // A DATA frame's header, split, is briefly a possible block start.
    let f = frame(DATA, 0, 1, 10);
    c.feed(&f[..3]).unwrap();
    assert!(c.header_pending());
    assert_eq!(c.generation(), generation + 1);
    c.feed(&f[3..]).unwrap();
    assert!(!c.header_pending());
}

#[test]
fn data_frame_of_max_length_is_skipped() {
    let mut c = started();
    let mut head = frame(DATA, 0, 1, 0);
    head[0] = 0xff;
    head[1] = 0xff;
    head[2] = 0xff;
    c.feed(&head).unwrap();
    assert!(!c.header_pending());
    let chunk = vec![0u8; 65536];
    let mut left = 0xff_ffffusize;
    while left > 0 {
        let n = left.min(chunk.len());
        c.feed(&chunk[..n]).unwrap();
        left -= n;
    }
    c.feed(&frame(HEADERS, 0, 3, 1)).unwrap();
    assert!(c.header_pending());
}

#[test]
fn new_block_starts_a_new_period() {
    let mut c = started();
    assert_eq!(c.observe(&frame(HEADERS, 0, 1, 5)), Deadline::Restart);
    assert_eq!(c.observe(&frame(CONTINUATION, 0, 1, 5)), Deadline::Keep);
    assert_eq!(
        c.observe(&frame(CONTINUATION, END_HEADERS, 1, 5)),
        Deadline::Disarm
    );
    assert_eq!(c.observe(&frame(DATA, 0, 1, 5)), Deadline::Disarm);
    // A block that completes and a new one that begins in one read.
    let mut v = frame(HEADERS, END_HEADERS, 3, 5);
    v.extend(frame(HEADERS, 0, 5, 5));
    assert_eq!(c.observe(&v), Deadline::Restart);
    assert_eq!(
        c.observe(&frame(CONTINUATION, END_HEADERS, 5, 1)),
        Deadline::Disarm
    );
    // Connection start: the preface keeps the connection's deadline.
    let mut c = H2HeaderClock::new();
    assert_eq!(c.observe(&PREFACE[..10]), Deadline::Keep);
    // Preface + SETTINGS + a HEADERS frame begun: a new period.
    let mut v = PREFACE[10..].to_vec();
    v.extend(frame(SETTINGS, 0, 0, 6));
    v.extend(&frame(HEADERS, 0, 1, 6)[..4]);
    assert_eq!(c.observe(&v), Deadline::Restart);
}

#[test]
fn violations_inside_blocks() {
    let mut c = started();
    c.feed(&frame(HEADERS, 0, 1, 5)).unwrap();
    assert_eq!(
        c.feed(&frame(DATA, 0, 1, 5)),
        Err(Malformed::ExpectedContinuation {
            stream: 1,
            frame_type: DATA
        })
    );
    assert!(c.header_pending());

    let mut c = started();
    c.feed(&frame(HEADERS, 0, 1, 5)).unwrap();
    assert_eq!(
        c.feed(&frame(CONTINUATION, END_HEADERS, 3, 5)),
        Err(Malformed::ContinuationStreamMismatch {
            expected: 1,
            got: 3
        })
    );

    let mut c = started();
    let generation = c.generation();
    assert_eq!(
        c.observe(&frame(CONTINUATION, END_HEADERS, 1, 5)),
        Deadline::Restart,
        "malformed while idle: fail closed with a fresh deadline"
    );
    assert_eq!(
        c.malformed(),
        Some(Malformed::UnexpectedContinuation { stream: 1 })
    );
    assert!(c.generation() > generation);
    assert_eq!(c.observe(b"anything"), Deadline::Keep);
}

#[test]
fn reserved_stream_bit_is_ignored() {
    let mut c = started();
    c.feed(&frame(HEADERS, 0, 1, 5)).unwrap();
    c.feed(&frame(CONTINUATION, END_HEADERS, 0x8000_0001, 5))
        .unwrap();
    assert!(!c.header_pending());
}

/// A sample connection: preface, SETTINGS, a request with a split
/// header block and a body, another request, an open block at the end.
fn sample() -> Vec<u8> {
    let mut v = preface_and_settings();
    v.extend(frame(WINDOW_UPDATE, 0, 0, 4));
    v.extend(frame(HEADERS, 0, 1, 17));
    v.extend(frame(CONTINUATION, 0, 1, 0));
    v.extend(frame(CONTINUATION, END_HEADERS, 1, 11));
    v.extend(frame(DATA, 0, 1, 33));
    v.extend(frame(PING, 0, 0, 8));
    v.extend(frame(DATA, END_STREAM, 1, 2));
    v.extend(frame(SETTINGS, ACK, 0, 0));
    v.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, 9));
    v.extend(frame(HEADERS, 0x20, 5, 6)); // PRIORITY flag, no END_HEADERS
    v.extend(frame(CONTINUATION, 0, 5, 3));
    v
}

/// The pending state after each byte, fed one byte at a time.
fn reference(bytes: &[u8]) -> Vec<bool> {
    let mut c = H2HeaderClock::new();
    feed_bytewise(&mut c, bytes)
}

#[test]
fn every_split_point_gives_the_same_state() {
    let bytes = sample();
    let states = reference(&bytes);
    let mut whole = H2HeaderClock::new();
    whole.feed(&bytes).unwrap();
    assert!(whole.header_pending(), "the last block is open");
    // 4 periods: connection start, block 1, block 3, block 5 (plus the
    // frame headers of other frames fed byte by byte, which the whole
    // feed does not see as pending at a chunk's end).
    assert_eq!(whole.generation(), 4);
    for i in 0..=bytes.len() {
        let mut c = H2HeaderClock::new();
        c.feed(&bytes[..i]).unwrap();
        let expect = if i == 0 { true } else { states[i - 1] };
        assert_eq!(c.header_pending(), expect, "after {i} bytes");
        c.feed(&bytes[i..]).unwrap();
        assert_eq!(c.header_pending(), whole.header_pending(), "split at {i}");
        assert_eq!(c.preface_done(), whole.preface_done());
        for j in i..=bytes.len() {
            let mut c = H2HeaderClock::new();
            c.feed(&bytes[..i]).unwrap();
            c.feed(&bytes[i..j]).unwrap();
            c.feed(&bytes[j..]).unwrap();
            assert_eq!(
                c.header_pending(),
                whole.header_pending(),
                "split at {i},{j}"
            );
        }
    }
}

#[test]
fn pending_periods_match_the_definition() {
    // Byte by byte over the sample, the pending state is exactly: in the
    // preface/first SETTINGS, in any frame header, in a header-block
    // frame, or between the frames of an open block.
    let bytes = sample();
    let states = reference(&bytes);
    let settings_end = PREFACE.len() + FRAME_HEADER_LEN + 18;
    assert!(states[..settings_end - 1].iter().all(|&p| p));
    assert!(!states[settings_end - 1]);
    // WINDOW_UPDATE: header bytes 1..8 pending, 9th and payload not.
    let wu = settings_end;
    assert!(states[wu..wu + 8].iter().all(|&p| p));
    assert!(states[wu + 8..wu + 13].iter().all(|&p| !p));
    // HEADERS(1)+CONTINUATION+CONTINUATION(END_HEADERS): pending throughout.
    let h1 = wu + 13;
    let h1_end = h1 + 9 + 17 + 9 + 9 + 11;
    assert!(states[h1..h1_end - 1].iter().all(|&p| p));
    assert!(!states[h1_end - 1]);
}

#[test]
fn garbage_never_panics() {
    // A cheap deterministic fuzz: random bytes after a valid start.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..2000 {
        let mut c = H2HeaderClock::new();
        let mut v = preface_and_settings();
        for _ in 0..(round % 300) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x as u8);
        }
        let mut i = 0;
        while i < v.len() {
            let n = 1 + (x as usize >> 3) % 17;
            let j = (i + n).min(v.len());
            let _ = c.feed(&v[i..j]);
            let _ = c.header_pending();
            i = j;
        }
    }
}

/// Found by the fuzzer: a frame header split after its 6th byte is
/// pending for a moment (it may be a HEADERS frame's), so split input
/// can show a period that whole input never does. Splitting only adds
/// moments to look at: never fewer periods, and the same state at the end.
#[test]
fn a_split_frame_header_may_add_a_period_never_remove_one() {
    let mut bytes = PREFACE.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0x25, 0xff, 0xff]);
    bytes.extend_from_slice(&[0xff; 9]);
    let mut whole = H2HeaderClock::new();
    let _ = whole.feed(&bytes);
    let mut parts = H2HeaderClock::new();
    let _ = parts.feed(&bytes[..39]);
    let _ = parts.feed(&bytes[39..]);
    assert_eq!(whole.header_pending(), parts.header_pending());
    assert_eq!((whole.generation(), parts.generation()), (1, 2));
}
