use super::numbers::Decimal;
use super::*;
use serde_json::{Map, Value};

fn pats(list: &[&str]) -> Vec<Pattern> {
    list.iter()
        .map(|p| {
            if p.is_empty() {
                Vec::new()
            } else {
                p.trim_start_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect()
            }
        })
        .collect()
}

fn deny(doc: &str, list: &[&str]) -> String {
    let patterns = pats(list);
    let out = filter(doc.as_bytes(), Filter::Deny(&patterns), 64).unwrap();
    String::from_utf8(out).unwrap()
}

fn allow(doc: &str, list: &[&str]) -> String {
    let patterns = pats(list);
    let out = filter(doc.as_bytes(), Filter::Allow(&patterns), 64).unwrap();
    String::from_utf8(out).unwrap()
}

// The former Value-based algorithm, kept verbatim as the reference.
fn keep(value: &Value, patterns: &[&[String]]) -> Option<Value> {
    if patterns.iter().any(|p| p.is_empty()) {
        return Some(value.clone());
    }
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                let rests: Vec<&[String]> = patterns
                    .iter()
                    .filter(|p| p[0] == *key)
                    .map(|p| &p[1..])
                    .collect();
                if rests.is_empty() {
                    continue;
                }
                if let Some(kept) = keep(child, &rests) {
                    out.insert(key.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut any = false;
            for (i, item) in items.iter().enumerate() {
                let index = i.to_string();
                let rests: Vec<&[String]> = patterns
                    .iter()
                    .filter(|p| p[0] == "*" || p[0] == index)
                    .map(|p| &p[1..])
                    .collect();
                match keep(item, &rests) {
                    Some(k) => {
                        any = true;
                        out.push(k)
                    }
                    None => out.push(Value::Object(Map::new())),
                }
            }
            any.then_some(Value::Array(out))
        }
        _ => None,
    }
}

fn remove(value: &mut Value, pattern: &[String]) {
    let Some((first, rest)) = pattern.split_first() else {
        return;
    };
    match value {
        Value::Object(map) => {
            if rest.is_empty() {
                map.remove(first);
            } else if let Some(c) = map.get_mut(first) {
                remove(c, rest)
            }
        }
        Value::Array(items) => {
            if first == "*" {
                if rest.is_empty() {
                    items.clear()
                } else {
                    for i in items.iter_mut() {
                        remove(i, rest)
                    }
                }
            } else if let Ok(i) = first.parse::<usize>() {
                if let Some(c) = items.get_mut(i) {
                    if rest.is_empty() {
                        *c = Value::Null
                    } else {
                        remove(c, rest)
                    }
                }
            }
        }
        _ => {}
    }
}

fn old_allow(doc: &Value, patterns: &[Pattern]) -> Value {
    let refs: Vec<&[String]> = patterns.iter().map(Vec::as_slice).collect();
    keep(doc, &refs).unwrap_or(Value::Null)
}

fn old_deny(doc: &Value, patterns: &[Pattern]) -> Value {
    let mut doc = doc.clone();
    for p in patterns {
        remove(&mut doc, p);
    }
    doc
}

const NUMBERS: &str = r#"{"big":12345678901234567890123,"tiny":1e-400,"huge":1e400,"dec":1.10,"long":0.123456789012345678901234567890123456,"neg":-0.0,"secret":1}"#;

#[test]
fn deny_passes_number_spellings_verbatim() {
    assert_eq!(
        deny(NUMBERS, &["/secret"]),
        r#"{"big":12345678901234567890123,"tiny":1e-400,"huge":1e400,"dec":1.10,"long":0.123456789012345678901234567890123456,"neg":-0.0}"#
    );
    assert_eq!(deny(NUMBERS, &["/absent"]), NUMBERS);
}

#[test]
fn allow_passes_number_spellings_verbatim() {
    assert_eq!(
        allow(NUMBERS, &["/huge", "/big", "/tiny", "/long", "/dec"]),
        r#"{"big":12345678901234567890123,"tiny":1e-400,"huge":1e400,"dec":1.10,"long":0.123456789012345678901234567890123456}"#
    );
    assert_eq!(allow("[1e400, 1E+2]", &["/*"]), "[1e400, 1E+2]");
}

#[test]
fn key_order_and_escapes_are_kept() {
    let doc = r#"{"z":1,"a":"caf\u00e9 \/ x","m":{"b":2,"a":1},"drop":0,"\u00e9":"\ud83d\ude00"}"#;
    assert_eq!(
        deny(doc, &["/drop"]),
        r#"{"z":1,"a":"caf\u00e9 \/ x","m":{"b":2,"a":1},"\u00e9":"\ud83d\ude00"}"#
    );
    assert_eq!(
        allow(doc, &["/z", "/a", "/m", "/é"]),
        r#"{"z":1,"a":"caf\u00e9 \/ x","m":{"b":2,"a":1},"\u00e9":"\ud83d\ude00"}"#
    );
}

#[test]
fn pretty_printed_input_stays_pretty() {
    let doc =
        "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": [1, 2],\n    \"d\": true\n  },\n  \"e\": null\n}\n";
    assert_eq!(
        deny(doc, &["/b/d"]),
        "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": [1, 2]\n  },\n  \"e\": null\n}\n"
    );
    assert_eq!(
        deny(doc, &["/a"]),
        "{\n  \"b\": {\n    \"c\": [1, 2],\n    \"d\": true\n  },\n  \"e\": null\n}\n"
    );
    assert_eq!(
        deny(doc, &["/e"]),
        "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": [1, 2],\n    \"d\": true\n  }\n}\n"
    );
    assert_eq!(
        allow(doc, &["/b/c"]),
        "{\n  \"b\": {\n    \"c\": [1, 2]\n  }\n}\n"
    );
    assert_eq!(deny(doc, &["/x"]), doc);
}

#[test]
fn commas_stay_valid_wherever_members_go() {
    let doc = r#"{"a":1,"b":2,"c":3,"d":4}"#;
    assert_eq!(deny(doc, &["/a"]), r#"{"b":2,"c":3,"d":4}"#);
    assert_eq!(deny(doc, &["/d"]), r#"{"a":1,"b":2,"c":3}"#);
    assert_eq!(deny(doc, &["/b", "/c"]), r#"{"a":1,"d":4}"#);
    assert_eq!(deny(doc, &["/a", "/b"]), r#"{"c":3,"d":4}"#);
    assert_eq!(deny(doc, &["/c", "/d"]), r#"{"a":1,"b":2}"#);
    assert_eq!(deny(doc, &["/a", "/c"]), r#"{"b":2,"d":4}"#);
    assert_eq!(deny(doc, &["/a", "/b", "/c", "/d"]), "{}");
    assert_eq!(deny(r#"{"a":1}"#, &["/a"]), "{}");
    assert_eq!(deny(r#"{ "a" : 1 }"#, &["/a"]), "{}");
    assert_eq!(deny("{ }", &["/a"]), "{ }");
    assert_eq!(deny("[ ]", &["/0"]), "[ ]");
    assert_eq!(
        deny(r#"{ "a" : 1 , "b" : 2 , "c" : 3 }"#, &["/b"]),
        r#"{ "a" : 1 , "c" : 3 }"#
    );
    assert_eq!(
        deny(r#"{ "a" : 1 , "b" : 2 , "c" : 3 }"#, &["/c"]),
        r#"{ "a" : 1 , "b" : 2  }"#
    );
    assert_eq!(allow(doc, &["/b", "/d"]), r#"{"b":2,"d":4}"#);
    assert_eq!(allow(doc, &["/a", "/d"]), r#"{"a":1,"d":4}"#);
    assert_eq!(allow(doc, &["/c"]), r#"{"c":3}"#);
}

#[test]
fn wildcards_reach_into_nested_arrays() {
    let doc = r#"{"items":[{"id":1,"cost":5,"tags":[{"k":"a","v":1},{"k":"b","v":2}]},{"id":2,"cost":6,"tags":[]}]}"#;
    assert_eq!(
        deny(doc, &["/items/*/cost", "/items/*/tags/*/v"]),
        r#"{"items":[{"id":1,"tags":[{"k":"a"},{"k":"b"}]},{"id":2,"tags":[]}]}"#
    );
    assert_eq!(
        allow(doc, &["/items/*/id", "/items/0/tags/*/k"]),
        r#"{"items":[{"id":1,"tags":[{"k":"a"},{"k":"b"}]},{"id":2}]}"#
    );
    assert_eq!(deny("[[1,2],[3,[4,5]]]", &["/*/1"]), "[[1,null],[3,null]]");
    assert_eq!(deny("[[1,2],[3,[4,5]]]", &["/1/1/*"]), "[[1,2],[3,[]]]");
    assert_eq!(deny("[[1,2],[3,[4,5]]]", &["/*"]), "[]");
    assert_eq!(deny(" [ 1 , 2 ] ", &["/1"]), " [ 1 , null ] ");
    assert_eq!(deny("[1,2]", &["/5"]), "[1,2]");
    assert_eq!(allow("[[1,2],[3,[4,5]]]", &["/*/1/0"]), "[{},[{},[4,{}]]]");
}

#[test]
fn deny_removes_every_duplicate() {
    let doc = r#"{"a":1,"secret":2,"b":3,"secret":{"x":1,"y":2},"c":4}"#;
    assert_eq!(deny(doc, &["/secret"]), r#"{"a":1,"b":3,"c":4}"#);
    assert_eq!(
        deny(doc, &["/secret/x"]),
        r#"{"a":1,"secret":2,"b":3,"secret":{"y":2},"c":4}"#
    );
    let dup = r#"{"k":{"x":1,"y":2},"k":{"x":3}}"#;
    assert_eq!(allow(dup, &["/k/y"]), r#"{"k":{"y":2}}"#);
    assert_eq!(allow(dup, &["/k/x"]), r#"{"k":{"x":1},"k":{"x":3}}"#);
}

#[test]
fn deny_ignores_ascii_case_but_allow_does_not() {
    let doc = r#"{"Internal_Cost":1,"INTERNAL_COST":2,"internal_cost":3,"price":4}"#;
    assert_eq!(deny(doc, &["/internal_cost"]), r#"{"price":4}"#);
    assert_eq!(allow(doc, &["/internal_cost"]), r#"{"internal_cost":3}"#);
    assert_eq!(
        deny(r#"{"A":{"b":1,"B":2,"c":3}}"#, &["/a/b"]),
        r#"{"A":{"c":3}}"#
    );
}

#[test]
fn escaped_keys_are_compared_decoded() {
    let doc = r#"{"int\u0065rnal":1,"a\/b":2,"tab\t":3,"ok":4}"#;
    assert_eq!(deny(doc, &["/internal"]), r#"{"a\/b":2,"tab\t":3,"ok":4}"#);
    assert_eq!(deny(doc, &["/INTERNAL"]), r#"{"a\/b":2,"tab\t":3,"ok":4}"#);
    assert_eq!(allow(doc, &["/internal"]), r#"{"int\u0065rnal":1}"#);
    let slash = vec![vec!["a/b".to_string()], vec!["tab\t".to_string()]];
    let out = filter(doc.as_bytes(), Filter::Allow(&slash), 8).unwrap();
    assert_eq!(out, br#"{"a\/b":2,"tab\t":3}"#);
    let emoji = r#"{"\ud83d\ude00":1,"x":2}"#;
    assert_eq!(deny(emoji, &["/😀"]), r#"{"x":2}"#);
}

#[test]
fn allow_placeholders_and_null() {
    assert_eq!(allow(r#"{"a":1}"#, &["/b"]), "null");
    assert_eq!(allow(r#"{"a":1}"#, &[]), "null");
    assert_eq!(allow("  5 ", &["/a"]), "null");
    assert_eq!(allow("[]", &["/*"]), "null");
    assert_eq!(allow("{}", &["/a"]), "null");
    assert_eq!(allow(r#"{"a":{"b":1}}"#, &["/a/c"]), "null");
    assert_eq!(allow(r#"{"a":1,"b":2}"#, &["/a/x"]), "null");
    assert_eq!(
        allow(r#"[{"a":1},{"b":2},3,[]]"#, &["/*/a"]),
        r#"[{"a":1},{},{},{}]"#
    );
    assert_eq!(allow("[1,2,3]", &["/1"]), "[{},2,{}]");
    assert_eq!(allow("[1,2,3]", &["/01", "/+1"]), "null");
    let doc = " {\"a\" : [1, {\"b\":2}] } ";
    assert_eq!(allow(doc, &[""]), doc);
    assert_eq!(allow(doc, &["/a"]), doc);
}

#[test]
fn deny_arrays_by_index_and_wildcard() {
    assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/0"]), r#"{"a":[null,2,3]}"#);
    assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/01"]), r#"{"a":[1,null,3]}"#);
    assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/*"]), r#"{"a":[]}"#);
    assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/*", "/a/1"]), r#"{"a":[]}"#);
    assert_eq!(
        deny(r#"{"a":[{"x":1},{"x":2}]}"#, &["/a/1/x"]),
        r#"{"a":[{"x":1},{}]}"#
    );
    assert_eq!(deny(r#"{"*":1,"a":2}"#, &["/*"]), r#"{"a":2}"#);
    assert_eq!(deny(r#"{"a":1}"#, &[""]), r#"{"a":1}"#);
    assert_eq!(deny("7", &["/a"]), "7");
}

#[test]
fn invalid_documents_are_refused() {
    let bad: &[&[u8]] = &[
        b"",
        b"   ",
        b"{",
        b"{\"a\":1",
        b"{\"a\":1,}",
        b"[1,]",
        b"[1 2]",
        b"{\"a\" 1}",
        b"{1:2}",
        b"{\"a\":1}x",
        b"{\"a\":1} {}",
        b"[01]",
        b"[1.]",
        b"[.5]",
        b"[-]",
        b"[1e]",
        b"[+1]",
        b"[tru]",
        b"[nulll]",
        b"[\"a\x01\"]",
        b"[\"\\x\"]",
        b"[\"\\u12\"]",
        b"[\"\\ud800\"]",
        b"[\"\\udc00\"]",
        b"[\"\\ud800\\u0041\"]",
        b"[\"unterminated]",
        b"[\"\xff\"]",
        b"\xef\xbb\xbf{}",
        b"[1]]",
        b"{]",
        b"[}",
        b"NaN",
    ];
    let some = pats(&["/a", "/*/b"]);
    for doc in bad {
        for f in [Filter::Deny(&[]), Filter::Deny(&some), Filter::Allow(&some)] {
            assert!(
                filter(doc, f, 16).is_err(),
                "{:?} accepted with {f:?}",
                String::from_utf8_lossy(doc)
            );
        }
    }
    let err = filter(b"[1, 2] 3", Filter::Deny(&[]), 16).unwrap_err();
    assert_eq!(err.offset(), 7);
}

#[test]
fn depth_limit_counts_containers() {
    let all = pats(&["/*"]);
    let deep = pats(&["/0/0/0/x"]);
    for f in [Filter::Deny(&[]), Filter::Deny(&deep), Filter::Allow(&all)] {
        assert!(filter(b"1", f, 0).is_ok());
        assert!(filter(b"[]", f, 0).is_err());
        assert!(filter(b"[[1]]", f, 2).is_ok());
        assert!(filter(b"[[1]]", f, 1).is_err());
        assert!(filter(br#"{"a":[{}]}"#, f, 3).is_ok());
        assert!(filter(br#"{"a":[{}]}"#, f, 2).is_err());
    }
    // Far deeper than any stack could recurse: validated by the loop.
    let n = 200_000;
    let doc = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let out = filter(doc.as_bytes(), Filter::Deny(&deep), usize::MAX).unwrap();
    assert_eq!(out, doc.as_bytes());
    assert!(filter(doc.as_bytes(), Filter::Deny(&deep), n - 1).is_err());
}

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const KEYS: &[&str] = &["a", "b", "c", "*", "0", "1", "01", "x"];
const SEGMENTS: &[&str] = &["a", "b", "c", "*", "0", "1", "2", "01", "+1", "x"];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let kind = if depth == 0 {
        rng.below(4)
    } else {
        rng.below(7)
    };
    match kind {
        0 => Value::Null,
        1 => Value::from(rng.below(1000) as u64),
        2 => Value::from(rng.below(100) as f64 / 8.0),
        3 => Value::from(["s", "é\"\\/", ""][rng.below(3)]),
        4 | 5 => {
            let mut map = Map::new();
            for _ in 0..rng.below(5) {
                let key = KEYS[rng.below(KEYS.len())].to_string();
                map.insert(key, random_value(rng, depth - 1));
            }
            Value::Object(map)
        }
        _ => Value::Array(
            (0..rng.below(5))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
    }
}

fn random_patterns(rng: &mut Rng) -> Vec<Pattern> {
    (0..rng.below(4))
        .map(|_| {
            let len = if rng.below(10) == 0 {
                0
            } else {
                1 + rng.below(4)
            };
            (0..len)
                .map(|_| SEGMENTS[rng.below(SEGMENTS.len())].to_string())
                .collect()
        })
        .collect()
}

#[test]
fn matches_the_value_based_filter() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..4000 {
        let doc = random_value(&mut rng, 4);
        let patterns = random_patterns(&mut rng);
        let text = if round % 2 == 0 {
            serde_json::to_string(&doc).unwrap()
        } else {
            serde_json::to_string_pretty(&doc).unwrap()
        };
        for (allowing, expected) in [
            (true, old_allow(&doc, &patterns)),
            (false, old_deny(&doc, &patterns)),
        ] {
            let f = if allowing {
                Filter::Allow(&patterns)
            } else {
                Filter::Deny(&patterns)
            };
            let out = filter(text.as_bytes(), f, 64).unwrap();
            let got: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
                panic!("invalid output {e}: {}", String::from_utf8_lossy(&out))
            });
            assert_eq!(got, expected, "{text} {f:?}");
            if expected == doc && !allowing {
                assert_eq!(out, text.as_bytes());
            }
        }
    }
}

#[test]
fn numbers_rule() {
    let exact = [
        "0",
        "-0",
        "0.0",
        "-0.0e10",
        "0e999999999999999999999",
        "1.1",
        "1.10",
        "11e-1",
        "0.11E1",
        "0.1",
        "1e23",
        "5e-324",
        "1.7976931348623157e308",
        "9007199254740993",
        "18446744073709551615",
        "-9223372036854775808",
        "123.456",
        "1E+2",
        "100",
        "1e-21",
        "0.000000000000000000001",
        "123456789012345e22",
        "1234567890123456e-3",
        "1.7976931348623157e308",
    ];
    let inexact = [
        "1e-400",
        "1e400",
        "-1e400",
        "12345678901234567890123",
        "18446744073709551616",
        "-9223372036854775809",
        "1.0000000000000000001",
        "1000.00000000000000001",
        "9007199254740993.0",
        "2.4703282292062328e-324",
        "0.1234567890123456789",
        "1e99999999999999999999999",
        "1e-99999999999999999999999",
    ];
    for t in exact {
        assert!(number_text_exact(t), "{t} should be exact");
        assert_eq!(numbers_exact(t.as_bytes()), Ok(()), "{t}");
    }
    for t in inexact {
        assert!(!number_text_exact(t), "{t} should be inexact");
        assert!(numbers_exact(t.as_bytes()).is_err(), "{t}");
    }
}

#[test]
fn number_text_accepts_what_the_parameter_parser_accepts() {
    for t in ["+5", ".5", "5.", "007", "-.25", "+1e2"] {
        assert!(number_text_exact(t), "{t}");
    }
    for t in [
        "",
        " 5",
        "5 ",
        "inf",
        "-infinity",
        "NaN",
        "0x10",
        "1e",
        ".",
        "+",
        "1_000",
        "--1",
    ] {
        assert!(!number_text_exact(t), "{t}");
    }
}

#[test]
fn numbers_in_documents() {
    let doc = br#"{"a":[1,2.5,"1e400 \" 1e400",{"b":-0.0,"1e-400":true}],"c":1e-400}"#;
    let err = numbers_exact(doc).unwrap_err();
    assert_eq!(err.offset(), doc.len() - 7);
    assert_eq!(err.span(), doc.len() - 7..doc.len() - 1);
    assert_eq!(
        numbers_exact(br#"{"quantity":1.0000000000000000001}"#)
            .unwrap_err()
            .offset(),
        12
    );
    assert!(numbers_exact(br#"{"max":1000.00000000000000001}"#).is_err());
    assert!(numbers_exact(br#"{"ok":[1000, 0.5, 1e2, -3, true, null, "\\"]}"#).is_ok());
}

#[test]
fn long_digit_runs_take_linear_time() {
    let n = 1 << 20;
    let huge = format!("1{}", "0".repeat(n));
    assert!(!number_text_exact(&huge));
    assert!(numbers_exact(huge.as_bytes()).is_err());
    let tiny = format!("0.{}1", "0".repeat(n));
    assert!(!number_text_exact(&tiny));
    assert!(numbers_exact(tiny.as_bytes()).is_err());
    let one = format!("1{}e-{n}", "0".repeat(n));
    assert_eq!(numbers_exact(one.as_bytes()), Ok(()));
    // str::parse saturates explicit exponents near 65536, so it reads
    // this as infinity; the parameter check follows what it read.
    assert_eq!(one.parse::<f64>(), Ok(f64::INFINITY));
    assert!(!number_text_exact(&one));
    let one = format!("1{}e-60000", "0".repeat(60000));
    assert!(number_text_exact(&one));
    let long = format!("1.{}1", "0".repeat(n));
    assert!(!number_text_exact(&long));
    let zeros = format!("0.{}", "0".repeat(n));
    assert!(number_text_exact(&zeros));
    let doc = format!("[{}]", "12,".repeat(n / 3) + "1");
    assert_eq!(numbers_exact(doc.as_bytes()), Ok(()));
}

#[test]
fn the_short_cut_agrees_with_the_general_check() {
    let mut rng = Rng(7);
    let mut checked = 0;
    for _ in 0..50_000 {
        let digits = 1 + rng.below(16);
        let mut text: String = (0..digits)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        if rng.below(2) == 0 {
            text.insert(rng.below(digits + 1), '.');
            if text.starts_with('.') {
                text.insert(0, '0');
            }
            if text.ends_with('.') {
                text.push('0');
            }
        }
        if rng.below(2) == 0 {
            text.push_str(&format!("e{}", rng.below(50) as i64 - 25));
        }
        if text.starts_with('0') && text.len() > 1 && !text[1..].starts_with(['.', 'e']) {
            continue;
        }
        let number = Decimal::split(text.as_bytes(), false).unwrap();
        if number.plainly_exact() {
            checked += 1;
            let seen: f64 = serde_json::from_str(&text).unwrap();
            assert!(number.denotes(seen), "{text}");
            assert!(number.denotes(text.parse().unwrap()), "{text}");
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn numbers_follow_what_serde_json_parsed() {
    // Without serde_json's float_roundtrip feature some shortest decimals
    // parse one ulp off; such text does not denote the validated value.
    // serde_json without float_roundtrip reads this as 1000.0, so
    // `"maximum": 1000` would pass what a Java double reads as more.
    let text = "1000.0000000000001";
    let seen: f64 = serde_json::from_str(text).unwrap();
    let nearest: f64 = text.parse().unwrap();
    assert_eq!(numbers_exact(text.as_bytes()).is_ok(), seen == nearest);
    assert!(number_text_exact(text));
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let value = f64::from_bits(rng.next() >> 2);
        if !value.is_finite() || value == 0.0 {
            continue;
        }
        let text = format!("{value:e}");
        let seen: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(
            numbers_exact(text.as_bytes()).is_ok(),
            seen == value,
            "{text}"
        );
        assert!(number_text_exact(&text), "{text}");
    }
}
