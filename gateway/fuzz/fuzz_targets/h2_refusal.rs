//! Any server output through the HTTP/2 refusal rewriter, whole and split
//! at a point the input chooses, with a window the input opens: nothing
//! panics, chunking never changes the output, and output that holds no bare
//! 400 comes out byte for byte once the window is open.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis::transport::h2_refusal::{Answer, Outbound};

fn answer() -> Answer {
    Answer {
        headers: vec![("x-request-id", "fuzz".to_string())],
        body: b"{}".to_vec(),
    }
}

fn run(chunks: &[&[u8]]) -> Vec<u8> {
    let mut o = Outbound::new();
    let mut out = Vec::new();
    for c in chunks {
        let _ = o.push(c, &mut out, 65_535, &mut answer);
    }
    let _ = o.open_window(i64::from(u32::MAX), &mut out, 65_535, &mut answer);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(stream.len());
    let whole = run(&[stream]);
    assert_eq!(whole, run(&[&stream[..at], &stream[at..]]));
    if !stream.contains(&0x8c) {
        assert!(stream.starts_with(&whole));
    }
});
