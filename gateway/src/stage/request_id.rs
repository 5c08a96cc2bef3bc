//! Request ids: every response carries `X-Request-Id`, and every problem
//! document and log line names it, so a client's complaint can be traced.

use rand::Rng;

pub const HEADER: &str = "x-request-id";

/// A fresh 128-bit random id, hex encoded.
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// An incoming id is kept only if it is short and made of characters that
/// are safe in logs and headers; anything else could forge log lines.
pub fn is_well_formed(candidate: &[u8]) -> bool {
    (8..=64).contains(&candidate.len())
        && candidate
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Keeps a well-formed incoming id when trusted, otherwise generates one.
pub fn choose(incoming: Option<&[u8]>, trust_incoming: bool) -> String {
    match incoming {
        Some(id) if trust_incoming && is_well_formed(id) => {
            String::from_utf8_lossy(id).into_owned()
        }
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_hex() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn incoming_id_kept_only_when_trusted_and_well_formed() {
        assert_eq!(choose(Some(b"abc-123-XYZ"), true), "abc-123-XYZ");
        assert_ne!(choose(Some(b"abc-123-XYZ"), false), "abc-123-XYZ");
        assert_ne!(choose(Some(b"short"), true), "short");
        let forged = b"abcdefgh\r\nX-Admin: 1";
        assert_ne!(choose(Some(forged), true).as_bytes(), forged);
        assert_ne!(choose(Some(&[b'a'; 65]), true).len(), 65);
    }
}
