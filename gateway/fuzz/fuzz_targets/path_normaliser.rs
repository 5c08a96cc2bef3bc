//! Any request path: normalising never panics, and a normalised path is a
//! fixed point that cannot climb out of the root.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(canonical) = portcullis::stage::path::normalise(raw) {
        assert!(canonical.starts_with('/'), "{canonical:?}");
        assert!(
            !canonical.split('/').any(|s| s == ".." || s == "."),
            "{canonical:?}"
        );
        assert_eq!(
            portcullis::stage::path::normalise(&canonical).as_deref(),
            Ok(canonical.as_str()),
            "normalising twice changed {raw:?}"
        );
    }
});
