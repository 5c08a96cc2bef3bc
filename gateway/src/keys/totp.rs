//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30 s steps, six
//! digits), the console's second factor. Authenticator apps read the secret
//! from an `otpauth://` URI. Written here rather than taken from a crate:
//! it is twenty lines over ring's HMAC, and the acceptance window and the
//! constant-time comparison are the security-relevant part we want to own.
//!
//! The secret is stored sealed: XORed with a keystream derived from the
//! pepper and the credential's hash, so a copy of the key store alone does
//! not yield the codes.

use ring::hmac;

use super::pepper::{KeyHash, Pepper};

pub const SECRET_LEN: usize = 20;
const STEP_SECS: u64 = 30;
const DIGITS: u32 = 6;

/// A fresh secret from the OS RNG.
pub fn generate() -> [u8; SECRET_LEN] {
    let mut secret = [0u8; SECRET_LEN];
    rand::fill(&mut secret);
    secret
}

/// The code for time step `step`.
fn code_at(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    word % 10u32.pow(DIGITS)
}

/// The time step a code was accepted for, when `code` is the code of the
/// current step or the one either side (clocks drift; a code is typed).
pub fn accepts(secret: &[u8], code: &str, now_secs: u64) -> Option<u64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    let step = now_secs / STEP_SECS;
    let mut matched = None;
    // Every candidate is computed and compared, so the time taken does not
    // say which one matched.
    for candidate in [step.saturating_sub(1), step, step + 1] {
        // An integer XOR and compare takes the same time whatever the bits.
        let equal = (code_at(secret, candidate) ^ given) == 0;
        if equal && matched.is_none() {
            matched = Some(candidate);
        }
    }
    matched
}

/// The six-digit code an authenticator shows at `now_secs`.
pub fn code(secret: &[u8], now_secs: u64) -> String {
    format!("{:06}", code_at(secret, now_secs / STEP_SECS))
}

/// The secret of an `otpauth://` URI, as an authenticator app reads it.
pub fn secret_of_uri(uri: &str) -> Option<Vec<u8>> {
    let query = uri.strip_prefix("otpauth://totp/")?.split_once('?')?.1;
    let secret = query.split('&').find_map(|p| p.strip_prefix("secret="))?;
    data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).ok()
}

/// What an authenticator app scans.
pub fn uri(partner: &str, name: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/Portcullis:{partner}-{name}?secret={}&issuer=Portcullis&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        data_encoding::BASE32_NOPAD.encode(secret)
    )
}

fn keystream(pepper: &Pepper, credential: &KeyHash) -> [u8; SECRET_LEN] {
    let key = pepper.derive("portcullis 2026-12 totp seal");
    let mut out = [0u8; SECRET_LEN];
    let mut reader = blake3::Hasher::new_keyed(&key)
        .update(credential.0.as_bytes())
        .finalize_xof();
    reader.fill(&mut out);
    out
}

/// The secret as the store keeps it (hex).
pub fn seal(pepper: &Pepper, credential: &KeyHash, secret: &[u8; SECRET_LEN]) -> String {
    let stream = keystream(pepper, credential);
    let sealed: Vec<u8> = secret.iter().zip(stream).map(|(a, b)| a ^ b).collect();
    hex::encode(sealed)
}

pub fn unseal(pepper: &Pepper, credential: &KeyHash, sealed: &str) -> Option<[u8; SECRET_LEN]> {
    let mut bytes = [0u8; SECRET_LEN];
    hex::decode_to_slice(sealed, &mut bytes).ok()?;
    let stream = keystream(pepper, credential);
    for (b, s) in bytes.iter_mut().zip(stream) {
        *b ^= s;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to six digits.
    #[test]
    fn the_rfc_test_vectors_hold() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(format!("{:06}", code_at(secret, time / 30)), code, "{time}");
            assert_eq!(accepts(secret, code, time), Some(time / 30));
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_no_further() {
        let secret = generate();
        let now = 1_800_000_000;
        let code = format!("{:06}", code_at(&secret, now / 30));
        assert!(accepts(&secret, &code, now - 30).is_some());
        assert!(accepts(&secret, &code, now + 30).is_some());
        assert!(accepts(&secret, &code, now + 90).is_none());
        assert!(accepts(&secret, "12345", now).is_none());
        assert!(accepts(&secret, "12345a", now).is_none());
        assert!(accepts(&secret, " 123456", now).is_none());
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_pepper_and_credential() {
        let pepper = Pepper::from_bytes([9; 32]);
        let credential = KeyHash(blake3::hash(b"credential"));
        let secret = generate();
        let sealed = seal(&pepper, &credential, &secret);
        assert_ne!(sealed, hex::encode(secret));
        assert_eq!(unseal(&pepper, &credential, &sealed), Some(secret));
        let other = KeyHash(blake3::hash(b"other"));
        assert_ne!(unseal(&pepper, &other, &sealed), Some(secret));
        assert_ne!(
            unseal(&Pepper::from_bytes([8; 32]), &credential, &sealed),
            Some(secret)
        );
        let uri = uri("acme", "console", &secret);
        assert!(
            uri.starts_with("otpauth://totp/Portcullis:acme-console?secret="),
            "{uri}"
        );
        assert_eq!(secret_of_uri(&uri), Some(secret.to_vec()));
    }
}
