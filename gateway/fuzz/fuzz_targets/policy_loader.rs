//! Any policy file text: reading it never panics (a bad file is an error
//! with a line, never a crash at load time).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = serde_saphyr::from_str::<portcullis::config::model::PolicyFile>(text);
    let _ = serde_saphyr::from_str::<portcullis::config::model::GatewayFile>(text);
});
