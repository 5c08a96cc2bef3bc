//! Reading JSON the way an attacker cannot argue with: one parse that
//! refuses duplicate object keys (the gateway and the upstream might pick
//! different ones), bounded nesting, and JSON pointers that may walk every
//! element of an array.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::stage::problem;
use crate::stage::problem::Reject;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    Invalid,
    DuplicateKey,
    /// Keys equal under case folding: Go's encoding/json and ASP.NET bind
    /// them to one field, so the gateway and the upstream could each read
    /// a different one.
    CaseCollision,
    /// A number whose written decimal differs from the value checked: the
    /// schema would judge one number and the upstream act on another.
    InexactNumber,
    TooDeep,
}

impl JsonError {
    pub fn reject(&self) -> Reject {
        match self {
            JsonError::Invalid => problem::BODY_NOT_JSON,
            JsonError::DuplicateKey => problem::DUPLICATE_KEY,
            JsonError::CaseCollision => problem::CASE_COLLISION,
            JsonError::InexactNumber => problem::NUMBER_NOT_EXACT,
            JsonError::TooDeep => problem::TOO_DEEP,
        }
    }
}

const DUPLICATE_MARK: &str = "portcullis: duplicate key";
const DEPTH_MARK: &str = "portcullis: too deep";
const CASE_MARK: &str = "portcullis: case collision";

/// Parses a request's JSON document strictly: UTF-8, no trailing data, no
/// duplicate keys, no keys that differ only in case, at most `max_depth`
/// levels.
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    let value = parse(bytes, max_depth, true)?;
    crate::stage::json_bytes::numbers_exact(bytes).map_err(|_| JsonError::InexactNumber)?;
    Ok(value)
}

/// Parses an upstream's JSON answer: as strict, except that keys differing
/// only in case are the upstream's own business.
pub fn parse_response(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    parse(bytes, max_depth, false)
}

fn parse(bytes: &[u8], max_depth: usize, fold_keys: bool) -> Result<Value, JsonError> {
    // serde_json's own recursion limit (128) is deeper than ours, so ours
    // always answers first and the stack stays shallow.
    let max_depth = max_depth.min(MAX_DEPTH);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        depth: max_depth,
        fold_keys,
    }
    .deserialize(&mut de)
    .map_err(classify)?;
    de.end().map_err(|_| JsonError::Invalid)?;
    Ok(value)
}

/// Whether `key` equals, under case folding but not exactly, a key seen
/// before in this object (exact repeats are the duplicate check's).
fn collides(
    key: &str,
    seen: &Map<String, Value>,
    folded: &mut Option<std::collections::HashSet<String>>,
) -> bool {
    let plain = key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase());
    if plain {
        return folded.as_ref().is_some_and(|f| f.contains(key));
    }
    let fold = fold_key(key);
    let same_as_plain = fold != key && seen.contains_key(&fold);
    let repeated = !folded.get_or_insert_with(Default::default).insert(fold);
    same_as_plain || (repeated && !seen.contains_key(key))
}

/// A key as case-insensitive binders compare it: Unicode simple case
/// folding, approximated by upper- then lower-casing, which also maps the
/// Kelvin sign to `k` and the long s to `s` as Go's `EqualFold` does.
fn fold_key(key: &str) -> String {
    key.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

fn classify(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    if text.starts_with(DUPLICATE_MARK) {
        JsonError::DuplicateKey
    } else if text.starts_with(DEPTH_MARK) {
        JsonError::TooDeep
    } else if text.starts_with(CASE_MARK) {
        JsonError::CaseCollision
    } else {
        JsonError::Invalid
    }
}

/// A value with this many levels of nesting still allowed below it.
#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
    fold_keys: bool,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Strict {
    fn nested<E: serde::de::Error>(&self) -> Result<Strict, E> {
        match self.depth.checked_sub(1) {
            Some(depth) => Ok(Strict {
                depth,
                fold_keys: self.fold_keys,
            }),
            None => Err(E::custom(DEPTH_MARK)),
        }
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        // Folded forms of the keys that fold to something else; a key that
        // is its own fold (lower-case ASCII, the common case) costs nothing.
        let mut folded: Option<std::collections::HashSet<String>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if inner.fold_keys && collides(&key, &out, &mut folded) {
                return Err(A::Error::custom(CASE_MARK));
            }
            let value = map.next_value_seed(inner)?;
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(_) => {
                    return Err(A::Error::custom(DUPLICATE_MARK))
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A JSON pointer (RFC 6901) whose `*` segments stand for every element of
/// an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    EachElement,
}

impl Pointer {
    pub fn parse(text: &str, wildcards: bool) -> Result<Pointer, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err("a JSON pointer starts with '/'".into());
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" && wildcards {
                segments.push(Segment::EachElement);
                continue;
            }
            let mut key = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => key.push('~'),
                        Some('1') => key.push('/'),
                        _ => return Err(format!("bad escape in JSON pointer {text:?}")),
                    }
                } else {
                    key.push(c);
                }
            }
            segments.push(Segment::Key(key));
        }
        Ok(Pointer {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unescaped segments, `*` for "every element".
    pub fn segments(&self) -> Vec<String> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k.clone(),
                Segment::EachElement => "*".to_string(),
            })
            .collect()
    }

    /// Every value the pointer reaches. `None` when a step is missing (a
    /// key absent, an index out of range, a `*` that meets a non-array).
    pub fn resolve<'v>(&self, root: &'v Value) -> Option<Vec<&'v Value>> {
        let mut current = vec![root];
        for segment in &self.segments {
            let mut next = Vec::with_capacity(current.len());
            for value in current {
                match (segment, value) {
                    (Segment::EachElement, Value::Array(items)) => next.extend(items.iter()),
                    (Segment::Key(k), Value::Object(map)) => next.push(map.get(k)?),
                    (Segment::Key(k), Value::Array(items)) => {
                        // RFC 6901: no leading zeros, no sign.
                        if k.is_empty() || (k.len() > 1 && k.starts_with('0')) {
                            return None;
                        }
                        let index: usize = k.parse().ok()?;
                        next.push(items.get(index)?);
                    }
                    _ => return None,
                }
            }
            current = next;
        }
        Some(current)
    }
}

/// Whether every value the pointer reaches is the string `partner`.
/// A pointer that reaches nothing through an empty array holds vacuously;
/// one that cannot be followed does not.
#[derive(Debug, PartialEq, Eq)]
pub enum Bound {
    Yes,
    Missing,
    Other,
}

pub fn bound_to(pointer: &Pointer, root: &Value, partner: &str) -> Bound {
    match pointer.resolve(root) {
        None => Bound::Missing,
        Some(values) => {
            if values.iter().all(|v| v.as_str() == Some(partner)) {
                Bound::Yes
            } else {
                Bound::Other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parse_refuses_duplicates_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#, 64).is_ok());
        assert_eq!(
            parse_strict(br#"{"partner":"acme","partner":"globex"}"#, 64),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(
            parse_strict(br#"{"x":[{"a":1,"a":1}]}"#, 64),
            Err(JsonError::DuplicateKey)
        );
        for collision in [
            &br#"{"order":{"partner":"acme","Partner":"globex"}}"#[..],
            br#"{"ID":1,"id":2}"#,
            // Go folds the Kelvin sign to k and the long s to s.
            "{\"kind\":1,\"\u{212A}ind\":2}".as_bytes(),
            "{\"sku\":1,\"\u{17F}ku\":2}".as_bytes(),
            br#"[{"a":1},{"b":{"x":1,"X":2}}]"#,
        ] {
            assert_eq!(
                parse_strict(collision, 64),
                Err(JsonError::CaseCollision),
                "{}",
                String::from_utf8_lossy(collision)
            );
            assert!(parse_response(collision, 64).is_ok());
        }
        assert!(parse_strict(br#"{"a":{"b":1},"b":{"a":1}}"#, 64).is_ok());
        // Escapes are decoded before comparing: "\u0061" is "a".
        assert_eq!(
            parse_strict(br#"{"a":1,"\u0061":2}"#, 64),
            Err(JsonError::DuplicateKey)
        );
    }

    #[test]
    fn numbers_the_schema_cannot_check_exactly_are_refused() {
        for inexact in [
            &br#"{"quantity":1.0000000000000000001}"#[..],
            br#"{"quantity":1000.00000000000000001}"#,
            br#"{"n":12345678901234567890123}"#,
            br#"[1e-400]"#,
        ] {
            assert_eq!(
                parse_strict(inexact, 64),
                Err(JsonError::InexactNumber),
                "{}",
                String::from_utf8_lossy(inexact)
            );
        }
        for exact in [
            &br#"{"a":1.10,"b":0.1,"c":-0,"d":9007199254740993,"e":0.30000000000000004}"#[..],
            br#"{"big":18446744073709551615,"neg":-9223372036854775808,"f":1.1265938497298023}"#,
            br#"{"s":"1.0000000000000000001"}"#,
        ] {
            assert!(
                parse_strict(exact, 64).is_ok(),
                "{}",
                String::from_utf8_lossy(exact)
            );
        }
    }

    #[test]
    fn strict_parse_limits_depth_and_refuses_garbage() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_strict(deep(64).as_bytes(), 64).is_ok());
        assert_eq!(
            parse_strict(deep(65).as_bytes(), 64),
            Err(JsonError::TooDeep)
        );
        assert_eq!(
            parse_strict(deep(100_000).as_bytes(), 64),
            Err(JsonError::TooDeep)
        );
        for bad in [
            &b"{"[..],
            b"{} {}",
            b"",
            b"\xff",
            b"{\"a\":\"\xff\"}",
            b"[1,]",
        ] {
            assert_eq!(parse_strict(bad, 64), Err(JsonError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn pointers_walk_objects_arrays_and_wildcards() {
        let doc: Value = serde_json::json!({
            "partner": "acme",
            "a/b": {"~": "x"},
            "items": [{"partner": "acme"}, {"partner": "acme"}],
            "empty": [],
            "mixed": [{"partner": "acme"}, {"partner": "globex"}],
        });
        let p = |t: &str| Pointer::parse(t, true).unwrap();
        assert_eq!(bound_to(&p("/partner"), &doc, "acme"), Bound::Yes);
        assert_eq!(bound_to(&p("/items/*/partner"), &doc, "acme"), Bound::Yes);
        assert_eq!(bound_to(&p("/items/1/partner"), &doc, "acme"), Bound::Yes);
        assert_eq!(bound_to(&p("/empty/*/partner"), &doc, "acme"), Bound::Yes);
        assert_eq!(bound_to(&p("/mixed/*/partner"), &doc, "acme"), Bound::Other);
        assert_eq!(bound_to(&p("/missing"), &doc, "acme"), Bound::Missing);
        assert_eq!(
            bound_to(&p("/items/01/partner"), &doc, "acme"),
            Bound::Missing
        );
        assert_eq!(bound_to(&p("/partner/*"), &doc, "acme"), Bound::Missing);
        assert_eq!(
            Pointer::parse("/a~1b/~0", false).unwrap().resolve(&doc),
            Some(vec![&Value::from("x")])
        );
        assert!(Pointer::parse("partner", true).is_err());
        assert!(Pointer::parse("/a~2", true).is_err());
    }
}
