//! Any bytes presented as a key: parsing never panics, and whatever parses
//! is exactly the key format (prefix, base62, length), so the checksum test
//! is the only thing between garbage and a store lookup.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw, and behind the real prefix so the fuzzer reaches the body and
    // checksum checks instead of stopping at the first byte.
    let mut prefixed = b"ptc_live_".to_vec();
    prefixed.extend_from_slice(data);
    for candidate in [data, prefixed.as_slice()] {
        if portcullis::keys::format::parse(candidate).is_ok() {
            assert!(candidate.starts_with(b"ptc_"));
            assert!(candidate
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_'));
        }
    }
});
