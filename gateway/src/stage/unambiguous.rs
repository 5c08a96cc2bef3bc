//! One request, one meaning. The backends behind the gateway read requests
//! their own ways: CGI, WSGI and PHP-FPM fold `_` into `-` in header names,
//! IIS and Symfony take the path from `X-Original-URL`, method-override
//! middleware takes the method from a header or a `_method` field, PHP and
//! Rack turn `partner[]` into `partner`. A check the gateway made on one
//! reading is worth nothing if the upstream acts on another, so everything
//! here either removes the second reading or refuses the request.
//!
//! The rules are owned here rather than taken from a crate: the point is the
//! exact set of spellings refused, and that set must follow what the
//! frameworks behind us do, not what a general-purpose parser accepts.

use http::HeaderMap;

use crate::keys::format::PREFIXES;
use crate::stage::problem;
use crate::stage::problem::Reject;

/// Request headers through which common frameworks rewrite the URL or
/// override the method: IIS URL Rewrite, Symfony, Zend and Drupal read
/// `X-Original-URL` / `X-Rewrite-URL`; Express method-override, Laravel,
/// Rails (Rack::MethodOverride) and ASP.NET read the method headers; some
/// proxies' `X-Forwarded-Prefix` / `-Uri` / `-Path` rebase the route. They
/// are always removed before forwarding; `http.override_headers` adds more.
pub const OVERRIDE_HEADERS: [&str; 10] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-path",
];

/// The form field, query parameter and JSON member method-override
/// middleware reads (Laravel also reads it from a JSON body).
pub const METHOD_FIELD: &str = "_method";

/// A body the route cannot take is refused before it is read: on a method
/// that takes none (unless the route allows one), or longer than the
/// route's limit by its own declaration.
pub fn check_body_allowed(
    allow_body: bool,
    method: &http::Method,
    body_empty: bool,
    declared_length: Option<usize>,
    max_body_bytes: usize,
) -> Result<(), Reject> {
    if !allow_body && method_takes_no_body(method) && !body_empty {
        return Err(problem::BODY_NOT_ALLOWED);
    }
    if declared_length.is_some_and(|len| len > max_body_bytes) {
        return Err(problem::BODY_TOO_LARGE);
    }
    Ok(())
}

/// Methods whose requests carry no body unless a route says otherwise:
/// a body there is read by some backends and ignored by others (and by
/// every check that skips bodyless methods).
pub fn method_takes_no_body(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::DELETE
            | http::Method::OPTIONS
            | http::Method::TRACE
    )
}

/// Header names and values. A name holds only letters, digits and `-`:
/// CGI, WSGI, PHP-FPM and Rack turn every other byte into `_` (so
/// `X_Partner_Id` and `X.Partner.Id` are `X-Partner-Id` to them), and nginx
/// ignores such names by default for the same reason. No API key outside
/// the headers that carry credentials (it would reach the upstream and its
/// logs).
pub fn check_headers(headers: &HeaderMap, credential_headers: &[&str]) -> Result<(), Reject> {
    for (name, value) in headers {
        let name = name.as_str();
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(problem::HEADER_NAME_AMBIGUOUS);
        }
        if !credential_headers.contains(&name) && holds_key(value.as_bytes()) {
            return Err(problem::KEY_IN_HEADER);
        }
    }
    Ok(())
}

/// The request target (path and query as sent): no API key anywhere in
/// it, however it is encoded, and no `_method` override in the query.
pub fn check_target(path_and_query: &str) -> Result<(), Reject> {
    if holds_key(path_and_query.as_bytes()) {
        return Err(problem::KEY_IN_URL);
    }
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    if query_names(query).any(|name| aliases(&name, METHOD_FIELD)) {
        return Err(problem::METHOD_OVERRIDE);
    }
    Ok(())
}

/// A form body (`application/x-www-form-urlencoded` or `multipart/form-data`)
/// carrying `_method`: Rails, Laravel and Symfony would take it as the method.
pub fn check_form_body(media_type: FormKind, body: &[u8]) -> Result<(), Reject> {
    let overrides = match media_type {
        FormKind::UrlEncoded => {
            let text = String::from_utf8_lossy(body);
            let found = query_names(&text).any(|name| aliases(&name, METHOD_FIELD));
            found
        }
        // A field's name sits in its part header; finding the spelling
        // anywhere is stricter than parsing parts and cannot be argued with.
        FormKind::Multipart => {
            contains_ignore_case(body, b"name=\"_method\"")
                || contains_ignore_case(body, b"name=_method")
        }
    };
    if overrides {
        Err(problem::METHOD_OVERRIDE)
    } else {
        Ok(())
    }
}

/// A JSON body whose top level carries `_method`.
pub fn check_json_body(doc: &serde_json::Value) -> Result<(), Reject> {
    match doc.as_object() {
        Some(members) if members.keys().any(|k| aliases(k, METHOD_FIELD)) => {
            Err(problem::METHOD_OVERRIDE)
        }
        _ => Ok(()),
    }
}

/// Whether a `Content-Type` is JSON (`application/json`, `…+json`).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

/// The two form encodings frameworks merge into their parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    UrlEncoded,
    Multipart,
}

/// Which form encoding a `Content-Type` names, if any.
pub fn form_kind(content_type: Option<&str>) -> Option<FormKind> {
    let media = content_type?.split(';').next()?.trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(FormKind::UrlEncoded)
    } else if media.eq_ignore_ascii_case("multipart/form-data") {
        Some(FormKind::Multipart)
    } else {
        None
    }
}

/// Decoded parameter names of a query or form body, split on both `&` and
/// `;` (old Rack splits on `;` too).
pub fn query_names(query: &str) -> impl Iterator<Item = String> + '_ {
    query
        .split(['&', ';'])
        .filter(|pair| !pair.is_empty())
        .map(|pair| decode_component(pair.split_once('=').map_or(pair, |(k, _)| k)))
}

/// Percent- and `+`-decodes one query component.
pub fn decode_component(raw: &str) -> String {
    let plus_as_space = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// How a parameter name `raw` (already decoded) refers to `bound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRef {
    /// Not the bound parameter under any framework's reading.
    Other,
    /// The parameter itself, spelled exactly as bound.
    Plain,
    /// A spelling some framework reads as the bound parameter or as a
    /// structure under it: `Partner` (ASP.NET matches names ignoring case,
    /// while PHP would see no `partner` at all), `partner[]`, `partner[0]`, `partner[$ne]`,
    /// `partner.x` (qs with dots), ` partner`, or for `partner_id` also
    /// `partner.id` and `partner id` (PHP turns `.` and ` ` into `_`).
    Alias,
}

/// Classifies a decoded parameter name against a bound one.
pub fn name_ref(raw: &str, bound: &str) -> NameRef {
    if raw == bound {
        return NameRef::Plain;
    }
    if aliases(raw, bound) {
        NameRef::Alias
    } else {
        NameRef::Other
    }
}

/// Whether some framework reads the decoded name `raw` as `bound` (or a
/// structure under it).
fn aliases(raw: &str, bound: &str) -> bool {
    let bound = fold_name(bound);
    // PHP ends a name at a NUL; it drops leading spaces, and Rack and qs
    // leading brackets (`[partner]` is `partner`).
    let raw = raw.split('\0').next().unwrap_or(raw);
    let raw = raw.trim_start_matches([' ', '\t', '[']);
    // PHP turns a `[` that never closes into `_`: `partner[id` is `partner_id`.
    if fold_name(raw) == bound {
        return true;
    }
    // PHP, Rack and qs: everything before the first `[` names the parameter.
    let before_bracket = raw.split(['[', ']']).next().unwrap_or(raw);
    if fold_name(before_bracket) == bound {
        return true;
    }
    // qs with `allowDots`: `partner.x` is `partner` with a member `x`.
    let before_dot = raw.split(['.', '[']).next().unwrap_or(raw);
    fold_name(before_dot) == bound
}

/// Lower case, with the characters PHP and CGI turn into `_` made `_`.
fn fold_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' | ' ' | '-' | '[' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether `bytes` holds our key prefix in any spelling a layer behind us
/// could decode to it: plain, percent-encoded (also twice), IIS `%uXXXX`,
/// any letter case.
pub fn holds_key(bytes: &[u8]) -> bool {
    if !bytes.iter().any(|&b| b == b'_' || b == b'%') {
        // Every spelling of the prefix has one of these.
        return false;
    }
    let mut layer = std::borrow::Cow::Borrowed(bytes);
    // Each round peels one encoding layer; four is past any real stack.
    for _ in 0..4 {
        if has_prefix(&layer) {
            return true;
        }
        if !layer.contains(&b'%') {
            return false;
        }
        let next = percent_decode_once(&layer);
        if next == *layer {
            return false;
        }
        layer = std::borrow::Cow::Owned(next);
    }
    has_prefix(&layer)
}

fn has_prefix(bytes: &[u8]) -> bool {
    PREFIXES
        .iter()
        .any(|p| contains_ignore_case(bytes, p.as_bytes()))
}

fn percent_decode_once(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let two = bytes
                .get(i + 1..i + 3)
                .and_then(|h| Some((hex(h[0])?, hex(h[1])?)));
            if let Some((hi, lo)) = two {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            let wide = bytes
                .get(i + 1..i + 6)
                .filter(|w| w[0] == b'u' || w[0] == b'U')
                .and_then(|w| w[1..].iter().try_fold(0u32, |n, &b| Some(n * 16 + hex(b)?)))
                .and_then(char::from_u32);
            if let Some(c) = wide {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 6;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    const KEY: &str = "ptc_live_0123456789abcdefghijABCDEFGHIJ0123456789abcdefgh";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn underscore_names_and_stray_keys_in_headers_are_refused() {
        let creds = ["authorization", "x-api-key"];
        let ok = headers(&[("x-api-key", KEY), ("accept", "*/*")]);
        assert_eq!(check_headers(&ok, &creds), Ok(()));
        let bearer = headers(&[("authorization", &format!("Bearer {KEY}"))]);
        assert_eq!(check_headers(&bearer, &creds), Ok(()));
        for name in [
            "x_partner_id",
            "x_account",
            "_",
            "a_b",
            "x.partner.id",
            "x~partner",
        ] {
            let h = headers(&[(name, "acme")]);
            assert_eq!(
                check_headers(&h, &creds),
                Err(problem::HEADER_NAME_AMBIGUOUS),
                "{name}"
            );
        }
        for (name, value) in [
            ("cookie", format!("session=1; k={KEY}")),
            ("x-note", KEY.to_uppercase()),
            (
                "referer",
                format!("https://a.test/?k=ptc%5Flive%5F{}", &KEY[9..]),
            ),
            ("x-trace", "ptc%255Flive%255Fabc".to_string()),
        ] {
            let h = headers(&[(name, &value)]);
            assert_eq!(
                check_headers(&h, &creds),
                Err(problem::KEY_IN_HEADER),
                "{name}"
            );
        }
        // Underscores in values are ordinary.
        let ua = headers(&[("user-agent", "Mozilla/5.0 (Mac OS X 10_15_7)")]);
        assert_eq!(check_headers(&ua, &creds), Ok(()));
    }

    #[test]
    fn keys_anywhere_in_the_target_are_refused() {
        for target in [
            format!("/orders?partner=acme;api_key={KEY}"),
            format!("/orders?k={KEY}"),
            format!("/orders/{KEY}"),
            "/orders?k=ptc%5Flive%5Fabc".to_string(),
            "/orders?k=%70tc_live_abc".to_string(),
            "/orders?k=ptc%255flive%255fabc".to_string(),
            "/orders?k=ptc%u005Flive%u005Fabc".to_string(),
            "/orders?k=PTC_LIVE_abc".to_string(),
        ] {
            assert_eq!(check_target(&target), Err(problem::KEY_IN_URL), "{target}");
        }
        assert_eq!(check_target("/orders?limit=5&q=ptc_test_x"), Ok(()));
        assert_eq!(check_target("/partners/acme/orders_2024"), Ok(()));
    }

    #[test]
    fn method_overrides_in_query_and_forms_are_refused() {
        for q in [
            "/o?_method=POST",
            "/o?a=1&_METHOD=delete",
            "/o?%5Fmethod=PUT",
            "/o?_method[]=PUT",
            "/o?a=1;_method=PUT",
        ] {
            assert_eq!(check_target(q), Err(problem::METHOD_OVERRIDE), "{q}");
        }
        assert_eq!(check_target("/o?method=POST&x_method=1"), Ok(()));
        assert_eq!(
            check_form_body(FormKind::UrlEncoded, b"sku=A&_method=DELETE"),
            Err(problem::METHOD_OVERRIDE)
        );
        assert_eq!(
            check_form_body(FormKind::UrlEncoded, b"sku=A&method=DELETE"),
            Ok(())
        );
        let multipart =
            b"--b\r\nContent-Disposition: form-data; NAME=\"_method\"\r\n\r\nPUT\r\n--b--\r\n";
        assert_eq!(
            check_form_body(FormKind::Multipart, multipart),
            Err(problem::METHOD_OVERRIDE)
        );
        assert_eq!(
            form_kind(Some("Application/X-WWW-Form-Urlencoded; charset=utf-8")),
            Some(FormKind::UrlEncoded)
        );
        assert_eq!(form_kind(Some("application/json")), None);
    }

    #[test]
    fn names_frameworks_read_as_the_bound_one_are_aliases() {
        for raw in [
            "partner[]",
            "partner[0]",
            "partner[$ne]",
            "partner[a][b]",
            "partner.x",
            " partner",
            "PARTNER[]",
            "[partner]",
            "partner\0x",
        ] {
            assert_eq!(name_ref(raw, "partner"), NameRef::Alias, "{raw}");
        }
        assert_eq!(name_ref("partner", "partner"), NameRef::Plain);
        assert_eq!(name_ref("Partner", "partner"), NameRef::Alias);
        for raw in ["partner.id", "partner id", "partner[id", "Partner-Id"] {
            assert_eq!(name_ref(raw, "partner_id"), NameRef::Alias, "{raw}");
        }
        for raw in ["partners", "xpartner", "partner_id", "limit"] {
            assert_eq!(name_ref(raw, "partner"), NameRef::Other, "{raw}");
        }
    }

    #[test]
    fn bodyless_methods() {
        assert!(method_takes_no_body(&http::Method::GET));
        assert!(method_takes_no_body(&http::Method::DELETE));
        assert!(!method_takes_no_body(&http::Method::POST));
        assert!(!method_takes_no_body(&http::Method::PATCH));
    }

    #[test]
    fn a_body_the_route_cannot_take_is_refused_unread() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        assert_eq!(
            check_body_allowed(false, &get, false, None, 10),
            Err(problem::BODY_NOT_ALLOWED)
        );
        assert_eq!(check_body_allowed(true, &get, false, None, 10), Ok(()));
        assert_eq!(check_body_allowed(false, &get, true, None, 10), Ok(()));
        assert_eq!(
            check_body_allowed(false, &post, false, Some(11), 10),
            Err(problem::BODY_TOO_LARGE)
        );
        assert_eq!(
            check_body_allowed(false, &post, false, Some(10), 10),
            Ok(())
        );
        assert!(problem::BODY_NOT_ALLOWED.closes() && problem::BODY_TOO_LARGE.closes());
    }
}
