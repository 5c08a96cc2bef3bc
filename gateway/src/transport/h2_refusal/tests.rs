use super::*;

fn frame(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, frame_type, flags, stream.to_be_bytes(), payload);
    out
}

fn answer() -> Answer {
    Answer {
        headers: vec![
            ("content-type", "application/problem+json".to_string()),
            ("x-request-id", "req-1".to_string()),
        ],
        body: br#"{"code":"authority_ambiguous"}"#.to_vec(),
    }
}

fn run(out_chunks: &[&[u8]]) -> Vec<u8> {
    let mut o = Outbound::new();
    let mut out = Vec::new();
    for c in out_chunks {
        o.push(c, &mut out, DEFAULT_WINDOW, &mut answer).unwrap();
    }
    out
}

/// Decodes frames: (type, flags, stream, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut v = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        v.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    assert!(bytes.is_empty(), "trailing partial frame");
    v
}

fn decode_literals(block: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < block.len() {
        assert_eq!(block[at], 0, "literal without indexing, new name");
        at += 1;
        let mut s = Vec::new();
        for _ in 0..2 {
            let len = usize::from(block[at]);
            assert!(len < 127, "short strings in tests");
            at += 1;
            s.push(String::from_utf8(block[at..at + len].to_vec()).unwrap());
            at += len;
        }
        fields.push((s[0].clone(), s[1].clone()));
    }
    fields
}

#[test]
fn bare_400_becomes_headers_and_document() {
    let bare = frame(TYPE_HEADERS, 0x5, 3, &[0x8c]);
    let out = run(&[&bare]);
    let f = frames(&out);
    assert_eq!(f.len(), 2);
    let (t, flags, stream, block) = &f[0];
    assert_eq!((*t, *flags, *stream), (TYPE_HEADERS, FLAG_END_HEADERS, 3));
    assert_eq!(block[0], 0x8c);
    assert_eq!(
        decode_literals(&block[1..]),
        vec![
            ("content-type".into(), "application/problem+json".into()),
            ("x-request-id".into(), "req-1".into())
        ]
    );
    assert_eq!(
        (f[1].0, f[1].1, f[1].2, f[1].3.clone()),
        (TYPE_DATA, FLAG_END_STREAM, 3, answer().body)
    );
}

#[test]
fn table_size_updates_stay_first() {
    // 0x3f 0xe1 0x1f = size update to 4096 (31 + 0x61 + 0x1f<<7).
    let bare = frame(TYPE_HEADERS, 0x5, 1, &[0x20, 0x3f, 0xe1, 0x1f, 0x8c]);
    let f = frames(&run(&[&bare]));
    assert_eq!(&f[0].3[..5], &[0x20, 0x3f, 0xe1, 0x1f, 0x8c]);
    assert_eq!(f[1].0, TYPE_DATA);
}

#[test]
fn every_other_frame_passes_unchanged_in_any_chunking() {
    let mut stream = Vec::new();
    stream.extend(frame(TYPE_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
    // :status 200 with END_STREAM, a 400 with more fields, a 400 without END_STREAM.
    stream.extend(frame(TYPE_HEADERS, 0x5, 1, &[0x88]));
    stream.extend(frame(TYPE_HEADERS, 0x5, 3, &[0x8c, 0x5c, 0x01, 0x30]));
    stream.extend(frame(TYPE_HEADERS, 0x4, 5, &[0x8c]));
    stream.extend(frame(TYPE_DATA, 0x1, 5, b"hello"));
    stream.extend(frame(TYPE_HEADERS, 0x5, 7, &[]));
    for split in 0..stream.len() {
        let (a, b) = stream.split_at(split);
        assert_eq!(run(&[a, b]), stream, "split at {split}");
    }
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&bytewise), stream);
}

#[test]
fn bare_400_is_found_in_any_chunking() {
    let mut stream = frame(TYPE_DATA, 0, 1, b"abc");
    stream.extend(frame(TYPE_HEADERS, 0x5, 9, &[0x8c]));
    let whole = run(&[&stream]);
    for split in 0..stream.len() {
        let (a, b) = stream.split_at(split);
        assert_eq!(run(&[a, b]), whole, "split at {split}");
    }
    assert_eq!(frames(&whole).len(), 3);
}

#[test]
fn document_larger_than_the_stream_window_leaves_the_bare_400() {
    let bare = frame(TYPE_HEADERS, 0x5, 3, &[0x8c]);
    let mut o = Outbound::new();
    let mut out = Vec::new();
    o.push(&bare, &mut out, 10, &mut answer).unwrap();
    assert_eq!(out, bare);
}

#[test]
fn data_past_the_window_waits_for_the_client() {
    let mut o = Outbound::new();
    let mut out = Vec::new();
    let doc = answer().body.len() as i64;
    // The document uses part of the window h2 thinks it still has.
    o.push(
        &frame(TYPE_HEADERS, 0x5, 1, &[0x8c]),
        &mut out,
        DEFAULT_WINDOW,
        &mut answer,
    )
    .unwrap();
    let big = vec![7u8; (DEFAULT_WINDOW - doc) as usize];
    let data = frame(TYPE_DATA, 0, 3, &big);
    let ping = frame(0x6, 0x1, 0, &[0; 8]);
    out.clear();
    o.push(&data, &mut out, DEFAULT_WINDOW, &mut answer)
        .unwrap();
    assert_eq!(out, data, "exactly the rest of the window goes out");
    let more = frame(TYPE_DATA, 0, 3, b"x");
    out.clear();
    o.push(&more, &mut out, DEFAULT_WINDOW, &mut answer)
        .unwrap();
    o.push(&ping, &mut out, DEFAULT_WINDOW, &mut answer)
        .unwrap();
    assert!(
        out.is_empty() && o.holding(),
        "one byte past the window is held"
    );
    o.open_window(0, &mut out, DEFAULT_WINDOW, &mut answer)
        .unwrap();
    assert!(out.is_empty());
    o.open_window(1, &mut out, DEFAULT_WINDOW, &mut answer)
        .unwrap();
    let mut expected = more.clone();
    expected.extend(&ping);
    assert_eq!(out, expected, "the held frames go out in order");
    assert!(!o.holding());
}

#[test]
fn held_output_is_bounded() {
    let mut o = Outbound::new();
    let mut out = Vec::new();
    o.push(
        &frame(TYPE_DATA, 0, 1, &vec![0; 65_535]),
        &mut out,
        DEFAULT_WINDOW,
        &mut answer,
    )
    .unwrap();
    o.push(
        &frame(TYPE_DATA, 0, 1, b"x"),
        &mut out,
        DEFAULT_WINDOW,
        &mut answer,
    )
    .unwrap();
    let headers = frame(TYPE_HEADERS, 0x4, 3, &[0x88; 1000]);
    let mut result = Ok(());
    for _ in 0..(HELD_LIMIT / headers.len() + 1) {
        result = o.push(&headers, &mut out, DEFAULT_WINDOW, &mut answer);
    }
    assert_eq!(result, Err(HeldTooMuch));
}

#[test]
fn client_frames_give_window_credit_and_initial_window() {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(
        TYPE_SETTINGS,
        0,
        0,
        &[0, 4, 0, 0, 0, 9, 0, 3, 0, 0, 0, 1],
    ));
    bytes.extend(frame(TYPE_SETTINGS, FLAG_ACK, 0, &[]));
    bytes.extend(frame(TYPE_WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes()));
    // A stream-level update and a DATA frame that looks like one do not count.
    bytes.extend(frame(TYPE_WINDOW_UPDATE, 0, 1, &5u32.to_be_bytes()));
    bytes.extend(frame(TYPE_DATA, 0, 1, &[0, 0, 0, 8, 0, 0, 0, 9, 0]));
    bytes.extend(frame(
        TYPE_WINDOW_UPDATE,
        0,
        0,
        &0x8000_0002u32.to_be_bytes(),
    ));
    for split in 0..bytes.len() {
        let mut c = ClientFrames::new();
        c.feed(&bytes[..split]);
        let first = c.take_credit();
        c.feed(&bytes[split..]);
        assert_eq!(first + c.take_credit(), 1002, "split at {split}");
        assert_eq!(c.initial_stream_window(), 9);
    }
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let mut o = Outbound::new();
        let mut c = ClientFrames::new();
        let mut out = Vec::new();
        for _ in 0..50 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let chunk: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8).collect();
            c.feed(&chunk);
            let _ = o.push(&chunk, &mut out, c.initial_stream_window(), &mut answer);
            let credit = c.take_credit();
            let _ = o.open_window(credit, &mut out, 1 << 20, &mut answer);
        }
    }
}
