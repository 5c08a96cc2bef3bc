//! What one change of the shared store touched, as every node hears it:
//! the change epoch, then what to forget. A node evicts just that when the
//! epoch is the next one it expects; when it has missed one (a dropped
//! subscription, a renewal that saw a newer epoch first) it cannot know
//! what changed and empties every cache, as before targeted eviction.
//!
//! Message payloads on the `changes` channel: `<epoch>`, `<epoch> key
//! <hash hex>`, `<epoch> partner <id>`, `<epoch> owner <kind>/<id>`. A node
//! of an older version reads only a bare epoch, ignores the rest, and
//! learns of the change at its next renewal instead (a rotation then waits
//! up to a quarter lease longer for it).

use super::pepper::KeyHash;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Unknown or wide: every cache empties.
    Everything,
    /// One key (or management credential) was replaced or removed.
    Key(KeyHash),
    /// A partner was suspended or resumed: all of its keys.
    Partner(String),
    /// One object's owner changed, as `<kind>/<id>`.
    Owner(String),
}

/// Reads a published message; `None` if it is not one of ours.
pub fn parse(payload: &str) -> Option<(u64, Change)> {
    let mut parts = payload.splitn(3, ' ');
    let epoch = parts.next()?.parse().ok()?;
    let change = match (parts.next(), parts.next()) {
        (None, _) => Change::Everything,
        (Some("key"), Some(hex)) => KeyHash::from_hex(hex).map_or(Change::Everything, Change::Key),
        (Some("partner"), Some(id)) => Change::Partner(id.to_string()),
        (Some("owner"), Some(slot)) => Change::Owner(slot.to_string()),
        // A target this version does not know: forget everything.
        _ => Change::Everything,
    };
    Some((epoch, change))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_changed_and_anything_else_means_everything() {
        let hash = KeyHash(blake3::hash(b"k"));
        assert_eq!(parse("7"), Some((7, Change::Everything)));
        assert_eq!(
            parse(&format!("8 key {}", hash.to_hex())),
            Some((8, Change::Key(hash)))
        );
        assert_eq!(
            parse("9 partner acme"),
            Some((9, Change::Partner("acme".into())))
        );
        assert_eq!(
            parse("10 owner order/o 1"),
            Some((10, Change::Owner("order/o 1".into())))
        );
        assert_eq!(parse("11 key not-hex"), Some((11, Change::Everything)));
        assert_eq!(parse("12 comet x"), Some((12, Change::Everything)));
        assert_eq!(parse("twelve"), None);
    }
}
