//! The server secret ("pepper") keys are hashed under, and the hash itself.
//! Only the BLAKE3 keyed hash of a presented key travels past the edge:
//! into the cache, the store, and (as a short key id) logs and metrics.

use std::fmt;
use std::path::Path;

use super::format::PresentedKey;

/// Environment variable that may hold the pepper (64 hex characters).
pub const PEPPER_ENV: &str = "PORTCULLIS_PEPPER";

pub struct Pepper([u8; 32]);

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(..)")
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

impl Pepper {
    /// Reads the pepper from `file` if given, else from `PORTCULLIS_PEPPER`.
    /// Errors never include the secret.
    pub fn load(file: Option<&Path>) -> Result<Pepper, String> {
        let (text, source) = match file {
            Some(path) => (
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read pepper file {}: {e}", path.display()))?,
                path.display().to_string(),
            ),
            None => (
                std::env::var(PEPPER_ENV).map_err(|_| {
                    format!(
                        "no pepper: set keys.pepper_file or the {PEPPER_ENV} environment variable"
                    )
                })?,
                PEPPER_ENV.to_string(),
            ),
        };
        decode_hex32(&text).map(Pepper).ok_or_else(|| {
            format!("{source}: the pepper must be 64 hexadecimal characters (32 bytes)")
        })
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Pepper {
        Pepper(bytes)
    }

    /// A key for another purpose (signing console sessions, sealing TOTP
    /// secrets), derived so it reveals nothing about the pepper or keys.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(&self.0);
        *hasher.finalize().as_bytes()
    }

    pub fn hash(&self, key: &PresentedKey<'_>) -> KeyHash {
        KeyHash(blake3::keyed_hash(&self.0, key.as_bytes()))
    }
}

/// The keyed hash of an API key. Equality is constant-time (`blake3::Hash`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub blake3::Hash);

impl KeyHash {
    /// A short, non-secret identifier for logs, metrics and listings.
    pub fn key_id(&self) -> KeyId {
        let hex = self.0.to_hex();
        let mut id = [0u8; 12];
        id.copy_from_slice(&hex.as_bytes()[..12]);
        KeyId(id)
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex().to_string()
    }

    pub fn from_hex(text: &str) -> Option<KeyHash> {
        blake3::Hash::from_hex(text).ok().map(KeyHash)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.key_id())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 12]);

impl KeyId {
    pub fn as_str(&self) -> &str {
        // Built from hex digits only.
        std::str::from_utf8(&self.0).unwrap_or("????????????")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::super::format;
    use super::*;

    #[test]
    fn hash_depends_on_pepper_and_key() {
        let key = format::generate();
        let parsed = format::parse(key.reveal().as_bytes()).unwrap();
        let a = Pepper::from_bytes([1; 32]);
        let b = Pepper::from_bytes([2; 32]);
        assert_eq!(a.hash(&parsed), a.hash(&parsed));
        assert_ne!(a.hash(&parsed), b.hash(&parsed));
        let id = a.hash(&parsed).key_id();
        assert_eq!(id.as_str().len(), 12);
        assert!(!key.reveal().contains(id.as_str()));
    }

    #[test]
    fn pepper_must_be_32_hex_bytes_and_errors_do_not_echo_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper");
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        let err = Pepper::load(Some(&path)).unwrap_err();
        assert!(!err.contains("zzzz"), "{err}");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        assert!(Pepper::load(Some(&path)).is_ok());
        std::fs::write(&path, "ab".repeat(31)).unwrap();
        assert!(Pepper::load(Some(&path)).is_err());
        // `u8::from_str_radix` reads "+a" as 10; a pepper file must not.
        std::fs::write(&path, "+a".repeat(32)).unwrap();
        assert!(Pepper::load(Some(&path)).is_err());
    }
}
