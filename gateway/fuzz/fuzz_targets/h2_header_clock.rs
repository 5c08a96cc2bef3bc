//! Any client bytes through the HTTP/2 header-deadline tracker, whole and
//! split at a point the input chooses: nothing panics, and the chunking
//! never changes what the tracker concludes (a reader sees arbitrary splits).
//! A split can reveal a pending period whole input passes over (a frame
//! header cut in two is pending for a moment), never hide one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis::transport::h2_clock::H2HeaderClock;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    // Behind a valid preface, so the fuzzer reaches the frame parser.
    let mut framed = portcullis::transport::h2_clock::PREFACE.to_vec();
    framed.extend_from_slice(stream);
    for bytes in [stream, framed.as_slice()] {
        let mut whole = H2HeaderClock::new();
        let _ = whole.feed(bytes);
        let at = usize::from(split).min(bytes.len());
        let mut parts = H2HeaderClock::new();
        let _ = parts.feed(&bytes[..at]);
        let _ = parts.feed(&bytes[at..]);
        assert_eq!(whole.header_pending(), parts.header_pending());
        assert!(parts.generation() >= whole.generation());
    }
});
