//! The credential format: a prefix (`ptc_live_` for an API key,
//! `ptc_mgmt_` for a partner's management credential) + 43 base62
//! characters of secret (256 bits from the OS RNG) + 6 base62 characters of
//! CRC-32 over everything before it. The prefix lets secret scanners find
//! leaked credentials and keeps the two kinds apart: each listener parses
//! only its own, so a data key never manages keys and a management
//! credential never calls the API. The checksum lets the gateway refuse
//! garbage and typos without asking the key store.

use rand::Rng;

/// The prefix of an API (data) key.
pub const PREFIX: &str = "ptc_live_";
/// The prefix of a partner management credential.
pub const MANAGEMENT_PREFIX: &str = "ptc_mgmt_";
const SECRET_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + SECRET_LEN + CHECKSUM_LEN;

/// The prefixes of every kind, for the scanners that must find any of them
/// (the leak guard, log redaction, keys in URLs).
pub const PREFIXES: [&str; 2] = [PREFIX, MANAGEMENT_PREFIX];
/// What every prefix starts with.
pub const STEM: &str = "ptc_";

/// Which credential a text is: each kind has its own prefix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Calls the API on the data listener.
    #[default]
    Data,
    /// Manages its partner's data keys on the partner listener.
    Management,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Data => PREFIX,
            Kind::Management => MANAGEMENT_PREFIX,
        }
    }

    pub fn is_data(&self) -> bool {
        *self == Kind::Data
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A presented key that passed the format check. Deliberately not `Debug`
/// or `Display`: a key must never reach a log line by accident.
pub struct PresentedKey<'a>(&'a [u8]);

impl<'a> PresentedKey<'a> {
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// A newly generated key, shown once to its owner.
pub struct NewKey(String);

impl NewKey {
    /// The key text. Callers print it once and never log it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = u64::from(crc32fast::hash(body));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Generates a fresh API key.
pub fn generate() -> NewKey {
    generate_kind(Kind::Data)
}

/// Generates a fresh credential of `kind`.
pub fn generate_kind(kind: Kind) -> NewKey {
    let mut rng = rand::rng();
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(kind.prefix());
    while key.len() < PREFIX.len() + SECRET_LEN {
        // Rejection sampling keeps every character uniformly distributed.
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        if byte[0] < 248 {
            key.push(char::from(BASE62[usize::from(byte[0] % 62)]));
        }
    }
    let sum = checksum(key.as_bytes());
    key.extend(sum.iter().map(|&b| char::from(b)));
    NewKey(key)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Checks an API key's prefix, length, alphabet and checksum; no store is
/// consulted.
pub fn parse(candidate: &[u8]) -> Result<PresentedKey<'_>, Malformed> {
    parse_kind(candidate, Kind::Data)
}

/// The same check for a credential of `kind`: another kind is malformed.
pub fn parse_kind(candidate: &[u8], kind: Kind) -> Result<PresentedKey<'_>, Malformed> {
    if candidate.len() != KEY_LEN || !candidate.starts_with(kind.prefix().as_bytes()) {
        return Err(Malformed);
    }
    let (body, sum) = candidate.split_at(KEY_LEN - CHECKSUM_LEN);
    if !body[PREFIX.len()..]
        .iter()
        .chain(sum)
        .all(u8::is_ascii_alphanumeric)
    {
        return Err(Malformed);
    }
    if checksum(body) != sum {
        return Err(Malformed);
    }
    Ok(PresentedKey(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = generate();
        let b = generate();
        assert_eq!(a.reveal().len(), KEY_LEN);
        assert!(a.reveal().starts_with(PREFIX));
        assert!(parse(a.reveal().as_bytes()).is_ok());
        assert_ne!(a.reveal(), b.reveal());
    }

    #[test]
    fn garbage_typos_and_truncations_are_malformed() {
        let key = generate();
        let text = key.reveal();
        assert_eq!(parse(b"").err(), Some(Malformed));
        assert_eq!(
            parse(&text.as_bytes()[..KEY_LEN - 1]).err(),
            Some(Malformed)
        );
        assert_eq!(
            parse(text.replace("ptc_live_", "ptc_test_").as_bytes()).err(),
            Some(Malformed)
        );
        // One changed character anywhere in the secret breaks the checksum.
        let mut typo = text.as_bytes().to_vec();
        typo[PREFIX.len() + 5] = if typo[PREFIX.len() + 5] == b'a' {
            b'b'
        } else {
            b'a'
        };
        assert_eq!(parse(&typo).err(), Some(Malformed));
        let mut bad_char = text.as_bytes().to_vec();
        bad_char[PREFIX.len()] = b'-';
        assert_eq!(parse(&bad_char).err(), Some(Malformed));
    }

    #[test]
    fn each_kind_parses_only_its_own_credentials() {
        let data = generate();
        let management = generate_kind(Kind::Management);
        assert!(management.reveal().starts_with("ptc_mgmt_"));
        assert!(parse_kind(management.reveal().as_bytes(), Kind::Management).is_ok());
        assert_eq!(parse(management.reveal().as_bytes()).err(), Some(Malformed));
        assert_eq!(
            parse_kind(data.reveal().as_bytes(), Kind::Management).err(),
            Some(Malformed)
        );
        // The checksum covers the prefix: relabelling one kind as the other fails.
        let relabelled = management.reveal().replacen(MANAGEMENT_PREFIX, PREFIX, 1);
        assert_eq!(parse(relabelled.as_bytes()).err(), Some(Malformed));
    }
}
