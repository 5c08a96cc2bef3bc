//! Any JSON document through the strict parser and a deny-list filter:
//! nothing panics, and a denied field never survives filtering.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis::minimise::FieldFilter;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = portcullis::body::parse_strict(data, portcullis::body::MAX_DEPTH) else {
        return;
    };
    let deny = ["/secret".to_string(), "/items/*/cost".to_string()];
    let Ok(filter) = FieldFilter::deny(&deny) else {
        return;
    };
    let out = filter.apply(&doc);
    assert!(out.pointer("/secret").is_none());
    if let Some(items) = out.pointer("/items").and_then(|i| i.as_array()) {
        assert!(items.iter().all(|i| i.get("cost").is_none()));
    }
});
