//! How backend frameworks would read a request the gateway forwarded.
//!
//! The gateway checks a request one way: the partner it is bound to, the
//! method, the path and the values of bound parameters. The application
//! behind it reads the same bytes with its own framework, and frameworks
//! disagree with each other (and with the gateway) about duplicate keys,
//! bracketed names, separators, header names with `_`, method overrides and
//! path rewrite headers. Each such disagreement is a way for a partner to get
//! a request past the gateway's check that the application then reads as
//! something else. This module interprets one request, exactly as the
//! upstream received it, the way each modelled framework would, so an
//! end-to-end test can assert that every reading equals what the gateway
//! checked (see [`disagreements`]).
//!
//! Every reading lists *every* value the framework could end up with across
//! the servers it commonly runs behind and its documented opt-in middleware:
//! a reading is unambiguous when a list has exactly one entry. Where the
//! framework would reject the request outright (a 400), the reading says so
//! instead of guessing, because a rejected request cannot be misread.
//!
//! Everything here is pure and deterministic: no I/O, no clock, no
//! randomness. Multipart bodies, cookies and route templates are not
//! modelled.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use serde_json::Value;

pub use portcullis_example_upstream::RecordedRequest;

/// The identity header the gateway sets for the upstream.
pub const PARTNER_HEADER: &str = "X-Partner-Id";

/// A backend framework whose reading of a request is modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Framework {
    /// Plain PHP 8 (php-fpm or mod_php): `$_GET`, `$_POST`, `$_REQUEST`
    /// (`request_order = "GP"`) and `$_SERVER['HTTP_*']`, as built by
    /// `main/php_variables.c`; no method override, no rewrite headers.
    Php,
    /// Laravel 10/11 on Symfony 6/7 HttpFoundation: `$request->input()`
    /// (body, or JSON when the request is JSON, over query),
    /// `X-HTTP-Method-Override` and `_method` (body, then query) for POST
    /// because Laravel enables the parameter override.
    Laravel,
    /// Symfony before CVE-2018-14773 (< 3.4.14 / < 4.1.3), Zend Framework 1
    /// or zend-http < 2.8.1 on IIS: `X-Original-URL` then `X-Rewrite-URL`
    /// replace the path; `$request->get()` reads query over body; POST is
    /// overridden by `X-HTTP-Method-Override` or `_method`
    /// (`framework.http_method_override` defaulted to true then).
    SymfonyIis,
    /// Rails ≤ 7.0 on Rack 2.2 behind Puma < 6.4.3: nested `a[b]` / `a[]`
    /// params, `&` and `;` both separate pairs, `params` prefers the query
    /// over the body, Rack::MethodOverride (`_method` in a form body, then
    /// `X-HTTP-Method-Override`, POST only), CGI-style header env.
    RackRails,
    /// Express 4 with the default "extended" query parser (qs), body-parser
    /// `urlencoded({ extended: true })` and `json()`, `req.param()`, and the
    /// method-override middleware configured with any of its README's
    /// getters: `X-HTTP-Method-Override`, `X-HTTP-Method` (Microsoft),
    /// `X-Method-Override` (IBM), `?_method=`, or `req.body._method`.
    ExpressQs,
    /// Flask on Werkzeug ≥ 2.3 under any WSGI server: `request.args.get`
    /// (first duplicate, `&` only), `request.values` (args over form),
    /// headers through the CGI-style environ, and the method-override
    /// middleware from Flask's docs (`X-HTTP-Method-Override`, any method).
    FlaskWsgi,
    /// Go ≥ 1.17 net/http: `url.ParseQuery` (`&` only, pairs containing `;`
    /// or bad escapes dropped, first value wins), `r.FormValue` (body over
    /// query), `encoding/json` into a struct (case-insensitive keys with
    /// Unicode simple folding, last duplicate wins) or a map (exact keys),
    /// and gorilla/handlers' opt-in `HTTPMethodOverrideHandler`.
    GoNetHttp,
    /// ASP.NET Core on Kestrel: case-insensitive query and form names (first
    /// value binds to a `string`), MVC value providers (form over query),
    /// System.Text.Json web defaults (case-insensitive properties, last
    /// duplicate wins), opt-in `UseHttpMethodOverride` (header, or the form
    /// field when `FormFieldName = "_method"`), `%2F` kept encoded and dot
    /// segments removed from the path.
    AspNetCore,
}

impl Framework {
    /// Every modelled framework, in a fixed order.
    pub const ALL: [Framework; 8] = [
        Framework::Php,
        Framework::Laravel,
        Framework::SymfonyIis,
        Framework::RackRails,
        Framework::ExpressQs,
        Framework::FlaskWsgi,
        Framework::GoNetHttp,
        Framework::AspNetCore,
    ];

    /// Whether the framework reads headers through a CGI-style environment
    /// (`HTTP_X_PARTNER_ID`), where `X_Partner_Id` and `X-Partner-Id` collide.
    fn cgi_headers(self) -> bool {
        matches!(
            self,
            Framework::Php
                | Framework::Laravel
                | Framework::SymfonyIis
                | Framework::RackRails
                | Framework::FlaskWsgi
        )
    }
}

/// What a framework binds for one top-level parameter name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamReading {
    /// Nothing is bound under that name.
    Absent,
    /// A plain string is bound.
    Scalar(String),
    /// Something other than a plain string is bound (an array from `a[]=x`
    /// or duplicates, an object from `a[$ne]=x`, a JSON number, a `nil`),
    /// shown as JSON so a test can tell it from the scalar it imitates.
    Structured(Value),
    /// The framework would refuse the request (a 400) rather than bind
    /// anything; the reason says why.
    Rejected(String),
}

/// How one framework reads the parts of a request the gateway checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    pub framework: Framework,
    /// Every effective method the application could route on, after the
    /// framework's method-override rules.
    pub method: Vec<String>,
    /// Every path the router could see, after rewrite headers, percent-decoded
    /// once.
    pub path: Vec<String>,
    /// Every value the application could read for [`PARTNER_HEADER`].
    pub partner_header: Vec<String>,
}

/// How `framework` reads the method, path and partner header of `req`.
pub fn read(framework: Framework, req: &RecordedRequest) -> Reading {
    Reading {
        framework,
        method: method(framework, req),
        path: path(framework, req),
        partner_header: header(framework, req, PARTNER_HEADER),
    }
}

/// What `framework` binds for the top-level query parameter `name` from the
/// query string alone (`$_GET`, `request.query_parameters`, `req.query`,
/// `request.args`, `r.URL.Query()`, `Request.Query`).
pub fn query_param(framework: Framework, req: &RecordedRequest, name: &str) -> ParamReading {
    lookup(
        &parse_query(framework, query_string(&req.path_and_query)),
        name,
        framework == Framework::AspNetCore,
    )
}

/// What `framework` binds for `name` from its merged parameters, where a
/// form-urlencoded (or, where noted, JSON) body competes with the query:
/// PHP `$_REQUEST` (body wins, arrays merged recursively), Laravel
/// `input()` (body or JSON wins), legacy Symfony `get()` (query wins), Rails
/// `params` (query wins), Express `req.param()` (body wins unless null),
/// Flask `request.values` (query wins; body only when not GET), Go
/// `r.FormValue` (body wins), ASP.NET Core MVC binding (form wins).
pub fn request_param(framework: Framework, req: &RecordedRequest, name: &str) -> ParamReading {
    let query = parse_query(framework, query_string(&req.path_and_query));
    let body = parse_body(framework, req);
    let ci = framework == Framework::AspNetCore;
    match framework {
        Framework::Php => match (&query, &body) {
            (Parsed::Tree(get), Parsed::Tree(post)) => {
                let mut merged = get.clone();
                php_merge(&mut merged, post);
                lookup(&Parsed::Tree(merged), name, false)
            }
            _ => lookup(&query, name, false),
        },
        Framework::SymfonyIis | Framework::RackRails | Framework::FlaskWsgi => {
            match (lookup(&query, name, ci), lookup(&body, name, ci)) {
                (r @ ParamReading::Rejected(_), _) | (_, r @ ParamReading::Rejected(_)) => r,
                (ParamReading::Absent, b) => b,
                (q, _) => q,
            }
        }
        Framework::ExpressQs => match lookup(&body, name, false) {
            ParamReading::Absent | ParamReading::Structured(Value::Null) => {
                lookup(&query, name, false)
            }
            b => b,
        },
        Framework::Laravel | Framework::GoNetHttp | Framework::AspNetCore => {
            match lookup(&body, name, ci) {
                ParamReading::Absent => lookup(&query, name, ci),
                b => b,
            }
        }
    }
}

/// Every value `framework` could bind for the request header `name`.
///
/// CGI-style environments (PHP, Symfony, Laravel, Rack, WSGI) upper-case the
/// name and turn every other non-alphanumeric byte into `_`, so `X_Partner_Id`,
/// `x-partner-id` and `X.Partner.Id` all become `HTTP_X_PARTNER_ID`. Which of
/// the colliding headers survives depends on the server: nginx
/// (`underscores_in_headers off`), Apache 2.4, gunicorn ≥ 22 and Puma ≥ 6.4.3
/// drop the `_` spellings, while the PHP built-in server, older gunicorn,
/// uWSGI, older Puma (CVE-2024-45614) and classic CGI keep them and the last
/// one written wins; servers join repeated headers with `, ` (Apache, Puma)
/// or `,` (gunicorn). So every colliding value is listed, and so is each
/// join when there are several. Node joins repeats of a header with `, `
/// (keeping only the first of the headers it treats as single-valued); Go
/// lists each value (`Get` gives the first, `Values` all); ASP.NET Core
/// lists each value and their `,` join (`StringValues.ToString()`).
pub fn header(framework: Framework, req: &RecordedRequest, name: &str) -> Vec<String> {
    if framework.cgi_headers() {
        return cgi_header(req, name);
    }
    let values: Vec<&str> = header_values(req, name);
    match framework {
        Framework::ExpressQs => node_header(req, name).into_iter().collect(),
        Framework::AspNetCore => {
            let mut out: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            if values.len() > 1 {
                out.push(values.join(","));
            }
            dedup(out)
        }
        _ => dedup(values.iter().map(|v| v.to_string()).collect()),
    }
}

/// Every value `framework` could bind for the JSON body member at `path`
/// (object keys from the top), empty when it would bind nothing: the body is
/// not JSON it accepts, its content type is not one the framework parses as
/// JSON, or no member matches.
///
/// Key rules: Go `encoding/json` into a struct matches keys exactly or, failing
/// that, case-insensitively with Unicode simple folding (`K` U+212A ~ `k`,
/// `ſ` U+017F ~ `s`), assigns every matching key in document order so the last
/// wins, merges repeated nested objects and ignores `null`; into a
/// `map[string]any` it matches exactly and the last duplicate replaces. Both
/// are listed. ASP.NET Core's System.Text.Json (web defaults) matches
/// case-insensitively by simple upper-casing (so `ſ` ~ `s` but not `K` ~ `k`),
/// last duplicate wins. PHP `json_decode`, Ruby `JSON.parse`, `JSON.parse` in
/// Node and Python's `json` match exactly and the last duplicate wins.
pub fn json_member(framework: Framework, req: &RecordedRequest, path: &[&str]) -> Vec<Value> {
    if !json_accepted(framework, req) {
        return Vec::new();
    }
    let Some(doc) = parse_json(&req.body, framework == Framework::GoNetHttp) else {
        return Vec::new();
    };
    match framework {
        Framework::GoNetHttp => {
            let mut matches = Vec::new();
            merge_lookup(&doc, path, go_fold_eq, &mut matches);
            let as_struct = matches
                .iter()
                .rev()
                .find(|j| !matches!(j, Json::Null))
                .map(|j| j.to_value());
            let as_map = replace_lookup(&doc, path, exact_eq).map(Json::to_value);
            dedup_values(as_struct.into_iter().chain(as_map).collect())
        }
        Framework::AspNetCore => replace_lookup(&doc, path, upper_eq)
            .map(Json::to_value)
            .into_iter()
            .collect(),
        _ => replace_lookup(&doc, path, exact_eq)
            .map(Json::to_value)
            .into_iter()
            .collect(),
    }
}

/// What the gateway checked for a request it forwarded.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    pub method: &'a str,
    /// The path as the gateway matched it, percent-decoded once.
    pub path: &'a str,
    /// The partner the gateway bound the request to, when it set the header.
    pub partner: Option<&'a str>,
    /// Query (or form) parameters the gateway bound, by top-level name.
    pub params: &'a [(&'a str, &'a str)],
    /// JSON body members the gateway bound, by key path.
    pub json: &'a [(&'a [&'a str], Value)],
}

/// Every way a modelled framework reads `req` differently from `expected`,
/// one line each, empty when they all agree.
///
/// A framework that would reject the request (a parameter reading of
/// [`ParamReading::Rejected`]) or that binds no JSON at all for a path is not
/// counted as disagreeing: the application never acts on a reading it
/// refuses or does not have.
pub fn disagreements(req: &RecordedRequest, expected: &Expected<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for r in Framework::ALL.map(|fw| read(fw, req)) {
        let fw = r.framework;
        if r.method != [expected.method] {
            out.push(format!(
                "{fw:?}: method reads {:?}, gateway checked {:?}",
                r.method, expected.method
            ));
        }
        if r.path != [expected.path] {
            out.push(format!(
                "{fw:?}: path reads {:?}, gateway checked {:?}",
                r.path, expected.path
            ));
        }
        if let Some(partner) = expected.partner {
            if r.partner_header != [partner] {
                out.push(format!(
                    "{fw:?}: {PARTNER_HEADER} reads {:?}, gateway bound {partner:?}",
                    r.partner_header
                ));
            }
        }
        for &(name, value) in expected.params {
            for (source, reading) in [
                ("query", query_param(fw, req, name)),
                ("merged params", request_param(fw, req, name)),
            ] {
                let agrees = match &reading {
                    ParamReading::Scalar(v) => v == value,
                    ParamReading::Rejected(_) => true,
                    _ => false,
                };
                if !agrees {
                    out.push(format!(
                        "{fw:?}: {source} {name:?} reads {reading:?}, gateway checked {value:?}"
                    ));
                }
            }
        }
        for (path, value) in expected.json {
            let got = json_member(fw, req, path);
            if !got.is_empty() && got != [value.clone()] {
                out.push(format!(
                    "{fw:?}: JSON {path:?} reads {got:?}, gateway checked {value}"
                ));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Request plumbing

/// Values of every header named `name`, compared case-insensitively as HTTP
/// requires, in arrival order.
fn header_values<'a>(req: &'a RecordedRequest, name: &str) -> Vec<&'a str> {
    req.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The CGI meta-variable a header lands in (RFC 3875 §4.1.18, with Apache's
/// mapping of every non-alphanumeric byte to `_`).
fn cgi_key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower == "content-type" || lower == "content-length" {
        return lower.replace('-', "_").to_ascii_uppercase();
    }
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("HTTP_{mapped}")
}

/// Every value a CGI-style environment could hold for header `name`; see
/// [`header`].
fn cgi_header(req: &RecordedRequest, name: &str) -> Vec<String> {
    let key = cgi_key(name);
    let values: Vec<&str> = req
        .headers
        .iter()
        .filter(|(n, _)| cgi_key(n) == key)
        .map(|(_, v)| v.as_str())
        .collect();
    let mut out: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    if values.len() > 1 {
        out.push(values.join(", "));
        out.push(values.join(","));
    }
    dedup(out)
}

/// Headers Node's `IncomingMessage` keeps only the first of when repeated.
const NODE_SINGLE_HEADERS: &[&str] = &[
    "age",
    "authorization",
    "content-length",
    "content-type",
    "etag",
    "expires",
    "from",
    "host",
    "if-modified-since",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "proxy-authorization",
    "referer",
    "retry-after",
    "server",
    "user-agent",
];

/// `req.headers[name]` in Node: repeats joined with `, ` (`; ` for cookie),
/// except single-valued headers, which keep the first.
fn node_header(req: &RecordedRequest, name: &str) -> Option<String> {
    let values = header_values(req, name);
    let first = values.first()?;
    let lower = name.to_ascii_lowercase();
    if NODE_SINGLE_HEADERS.contains(&lower.as_str()) {
        Some(first.to_string())
    } else if lower == "cookie" {
        Some(values.join("; "))
    } else {
        Some(values.join(", "))
    }
}

/// The media type of the request body, lower-cased, without parameters.
fn media_type(req: &RecordedRequest) -> Option<String> {
    let raw = header_values(req, "content-type").into_iter().next()?;
    let end = raw.find([';', ',']).unwrap_or(raw.len());
    Some(raw[..end].trim().to_ascii_lowercase())
}

const FORM: &str = "application/x-www-form-urlencoded";

fn is_form(req: &RecordedRequest) -> bool {
    media_type(req).as_deref() == Some(FORM)
}

/// The path of a request target: origin-form up to `?`, or the path of an
/// absolute-form target (which servers and Symfony reduce to its path).
fn request_path(target: &str) -> &str {
    let target = target.split(['?', '#']).next().unwrap_or("");
    if let Some(scheme_end) = target.find("://") {
        let after = &target[scheme_end + 3..];
        return after.find('/').map_or("/", |i| &after[i..]);
    }
    if target.is_empty() {
        "/"
    } else {
        target
    }
}

/// The query string of a request target, without `?` and fragment.
fn query_string(target: &str) -> &str {
    match target.split_once('?') {
        Some((_, q)) => q.split('#').next().unwrap_or(""),
        None => "",
    }
}

/// Bytes to text the way most frameworks do it: invalid UTF-8 replaced.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Percent-decoding that leaves malformed escapes as they are (PHP
/// `urldecode`, Python `unquote`, .NET `UnescapeDataString`), with `+` as
/// space when `plus`.
fn lenient_decode(s: &str, plus: bool) -> Vec<u8> {
    if plus && s.contains('+') {
        percent_decode_str(&s.replace('+', " ")).collect()
    } else {
        percent_decode_str(s).collect()
    }
}

/// Percent-decoding that fails on a malformed escape (Go `QueryUnescape`,
/// Ruby `URI.decode_www_form_component`), with `+` as space.
fn strict_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn dedup(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn dedup_values(values: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Method

/// Every method `framework` could route `req` on.
fn method(framework: Framework, req: &RecordedRequest) -> Vec<String> {
    match framework {
        Framework::Php => vec![req.method.clone()],
        Framework::Laravel => symfony_method(framework, req, true),
        Framework::SymfonyIis => symfony_method(framework, req, false),
        Framework::RackRails => rack_method(req),
        Framework::ExpressQs => express_method(req),
        Framework::FlaskWsgi => flask_method(req),
        Framework::GoNetHttp => go_method(req),
        Framework::AspNetCore => aspnet_method(req),
    }
}

/// Symfony `Request::getMethod()` for a POST: `X-HTTP-METHOD-OVERRIDE` when
/// truthy in PHP's sense, else `_method` from the body bag, else from the
/// query, upper-cased; only strings count. Modern Symfony (Laravel) refuses
/// an override that is not `[A-Z]+`, which is modelled as no override.
fn symfony_method(framework: Framework, req: &RecordedRequest, modern: bool) -> Vec<String> {
    if req.method != "POST" {
        return vec![req.method.clone()];
    }
    let param = || -> String {
        let body = lookup(&parse_body(framework, req), "_method", false);
        let chosen = match body {
            ParamReading::Absent => lookup(
                &parse_query(framework, query_string(&req.path_and_query)),
                "_method",
                false,
            ),
            b => b,
        };
        match chosen {
            ParamReading::Scalar(s) => s,
            _ => "POST".to_string(),
        }
    };
    let headers = cgi_header(req, "X-HTTP-Method-Override");
    let raw: Vec<String> = if headers.is_empty() {
        vec![param()]
    } else {
        headers
            .into_iter()
            .map(|h| if php_truthy(&h) { h } else { param() })
            .collect()
    };
    dedup(
        raw.into_iter()
            .map(|m| {
                let up = m.to_ascii_uppercase();
                let valid = !up.is_empty() && up.bytes().all(|b| b.is_ascii_uppercase());
                if modern && !valid {
                    "POST".to_string()
                } else {
                    up
                }
            })
            .collect(),
    )
}

/// PHP's truthiness for a string: everything but `""` and `"0"`.
fn php_truthy(s: &str) -> bool {
    !s.is_empty() && s != "0"
}

/// `Rack::MethodOverride::HTTP_METHODS`.
const RACK_METHODS: &[&str] = &[
    "GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "LINK", "UNLINK",
];

/// Rack::MethodOverride (in Rails' default stack): for a POST, `_method`
/// from the form body if present, otherwise `HTTP_X_HTTP_METHOD_OVERRIDE`,
/// upper-cased and kept only if it is one of `RACK_METHODS`.
fn rack_method(req: &RecordedRequest) -> Vec<String> {
    if req.method != "POST" {
        return vec![req.method.clone()];
    }
    let param = match rack_form_body(req) {
        Some(Ok(tree)) => tree
            .iter()
            .find(|(k, _)| k == "_method")
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    let candidates: Vec<Option<String>> = match param {
        Some(PVal::Null) | None => {
            let headers = cgi_header(req, "X-HTTP-Method-Override");
            if headers.is_empty() {
                vec![None]
            } else {
                headers.into_iter().map(Some).collect()
            }
        }
        Some(PVal::Str(s)) => vec![Some(s)],
        Some(_) => vec![Some(String::new())],
    };
    dedup(
        candidates
            .into_iter()
            .map(|c| {
                let up = c.unwrap_or_default().to_uppercase();
                if RACK_METHODS.contains(&up.as_str()) {
                    up
                } else {
                    "POST".to_string()
                }
            })
            .collect(),
    )
}

/// Node's `http.METHODS`, which method-override accepts (case-insensitively).
const NODE_METHODS: &[&str] = &[
    "ACL",
    "BIND",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DELETE",
    "GET",
    "HEAD",
    "LINK",
    "LOCK",
    "M-SEARCH",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "NOTIFY",
    "OPTIONS",
    "PATCH",
    "POST",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "PUT",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "TRACE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

/// The header getters method-override's README shows.
const EXPRESS_OVERRIDE_HEADERS: &[&str] = &[
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
];

/// method-override (opt-in, POST only by default): the unmodified method,
/// plus whatever each README getter would set. Header getters take the
/// first comma-separated value; the query getter uses Node's `querystring`
/// and needs a single string; the body getter reads `req.body._method`.
fn express_method(req: &RecordedRequest) -> Vec<String> {
    let mut out = vec![req.method.clone()];
    if req.method != "POST" {
        return out;
    }
    let supported = |m: &str| NODE_METHODS.contains(&m.to_ascii_uppercase().as_str());
    for name in EXPRESS_OVERRIDE_HEADERS {
        if let Some(v) = node_header(req, name) {
            let first = v.split(',').next().unwrap_or("").trim();
            if supported(first) {
                out.push(first.to_ascii_uppercase());
            }
        }
    }
    let query: Vec<(String, String)> = node_querystring(query_string(&req.path_and_query));
    let methods: Vec<&String> = query
        .iter()
        .filter(|(k, _)| k == "_method")
        .map(|(_, v)| v)
        .collect();
    if let [only] = methods.as_slice() {
        if supported(only) {
            out.push(only.to_ascii_uppercase());
        }
    }
    if let ParamReading::Scalar(m) =
        lookup(&parse_body(Framework::ExpressQs, req), "_method", false)
    {
        if supported(&m) {
            out.push(m.to_ascii_uppercase());
        }
    }
    dedup(out)
}

/// Node's `querystring.parse`: `&` separated, `+` as space, lenient
/// decoding, at most 1000 keys.
fn node_querystring(s: &str) -> Vec<(String, String)> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split('&')
        .take(1000)
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (text(lenient_decode(k, true)), text(lenient_decode(v, true)))
        })
        .collect()
}

/// The methods the method-override middleware in Flask's documentation
/// accepts.
const FLASK_OVERRIDE_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"];

/// Flask's documented `HTTPMethodOverrideMiddleware` (opt-in): the unmodified
/// method, plus `HTTP_X_HTTP_METHOD_OVERRIDE` upper-cased when allowed, on
/// any original method.
fn flask_method(req: &RecordedRequest) -> Vec<String> {
    let mut out = vec![req.method.clone()];
    for v in cgi_header(req, "X-HTTP-Method-Override") {
        let up = v.to_uppercase();
        if FLASK_OVERRIDE_METHODS.contains(&up.as_str()) {
            out.push(up);
        }
    }
    dedup(out)
}

/// gorilla/handlers `HTTPMethodOverrideHandler` (opt-in): for a POST,
/// `r.FormValue("_method")` (body, then query), else the first
/// `X-HTTP-Method-Override`, used only if exactly PUT, PATCH or DELETE.
fn go_method(req: &RecordedRequest) -> Vec<String> {
    let mut out = vec![req.method.clone()];
    if req.method != "POST" {
        return out;
    }
    let form = match request_param(Framework::GoNetHttp, req, "_method") {
        ParamReading::Scalar(s) => s,
        _ => String::new(),
    };
    let om = if form.is_empty() {
        header_values(req, "X-HTTP-Method-Override")
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default()
    } else {
        form
    };
    if ["PUT", "PATCH", "DELETE"].contains(&om.as_str()) {
        out.push(om);
    }
    dedup(out)
}

/// ASP.NET Core `UseHttpMethodOverride` (opt-in, POST only): the header's
/// `StringValues` as one string, or with `FormFieldName = "_method"` that
/// form field; taken as-is, upper-cased here because endpoint routing
/// compares methods case-insensitively.
fn aspnet_method(req: &RecordedRequest) -> Vec<String> {
    let mut out = vec![req.method.clone()];
    if !req.method.eq_ignore_ascii_case("POST") {
        return out;
    }
    let header = header_values(req, "X-Http-Method-Override").join(",");
    if !header.is_empty() {
        out.push(header.to_uppercase());
    }
    if is_form(req) {
        let field: Vec<String> = aspnet_pairs(&String::from_utf8_lossy(&req.body))
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("_method"))
            .map(|(_, v)| v)
            .collect();
        let field = field.join(",");
        if !field.is_empty() {
            out.push(field.to_uppercase());
        }
    }
    dedup(out)
}

// ---------------------------------------------------------------------------
// Path

/// Every path the router of `framework` could see.
fn path(framework: Framework, req: &RecordedRequest) -> Vec<String> {
    let raw = request_path(&req.path_and_query);
    match framework {
        Framework::SymfonyIis => {
            // Symfony's `prepareRequestUri` (and ZF1's `setRequestUri`)
            // before CVE-2018-14773: X_ORIGINAL_URL, then X_REWRITE_URL.
            let mut source = cgi_header(req, "X-Original-URL");
            if source.is_empty() {
                source = cgi_header(req, "X-Rewrite-URL");
            }
            if source.is_empty() {
                return vec![decode_path(raw)];
            }
            dedup(
                source
                    .iter()
                    .map(|uri| decode_path(request_path(uri)))
                    .collect(),
            )
        }
        Framework::AspNetCore => vec![remove_dot_segments(&decode_path_keep_slash(raw))],
        _ => vec![decode_path(raw)],
    }
}

fn decode_path(raw: &str) -> String {
    text(lenient_decode(raw, false))
}

/// Kestrel's path decoding: every escape but `%2F`, which stays encoded so
/// it cannot become a segment separator.
fn decode_path_keep_slash(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let byte = hi << 4 | lo;
                if byte == b'/' {
                    out.extend_from_slice(&b[i..i + 3]);
                } else {
                    out.push(byte);
                }
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    text(out)
}

/// RFC 3986 §5.2.4 dot-segment removal, as Kestrel applies to the decoded
/// path.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

// ---------------------------------------------------------------------------
// Parameters

/// A parsed parameter value.
#[derive(Clone, Debug, PartialEq)]
enum PVal {
    /// Ruby `nil` (a Rack pair without `=`).
    Null,
    /// qs's `true` (from merging a string into an object).
    Bool(bool),
    Str(String),
    List(Vec<PVal>),
    /// An ordered map; PHP arrays are always maps with their keys.
    Map(Vec<(String, PVal)>),
    /// A member of a JSON body.
    Json(Value),
}

impl PVal {
    fn to_json(&self) -> Value {
        match self {
            PVal::Null => Value::Null,
            PVal::Bool(b) => Value::Bool(*b),
            PVal::Str(s) => Value::String(s.clone()),
            PVal::List(items) => Value::Array(items.iter().map(PVal::to_json).collect()),
            PVal::Map(entries) => {
                let sequential = entries
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| *k == i.to_string());
                if sequential && !entries.is_empty() {
                    Value::Array(entries.iter().map(|(_, v)| v.to_json()).collect())
                } else {
                    Value::Object(
                        entries
                            .iter()
                            .map(|(k, v)| (k.clone(), v.to_json()))
                            .collect(),
                    )
                }
            }
            PVal::Json(v) => v.clone(),
        }
    }

    fn reading(&self) -> ParamReading {
        match self {
            PVal::Str(s) => ParamReading::Scalar(s.clone()),
            PVal::Json(Value::String(s)) => ParamReading::Scalar(s.clone()),
            other => ParamReading::Structured(other.to_json()),
        }
    }
}

/// A framework's parameters from one source, or its refusal.
#[derive(Clone, Debug)]
enum Parsed {
    Tree(Vec<(String, PVal)>),
    Rejected(String),
}

fn lookup(parsed: &Parsed, name: &str, case_insensitive: bool) -> ParamReading {
    match parsed {
        Parsed::Rejected(why) => ParamReading::Rejected(why.clone()),
        Parsed::Tree(tree) => tree
            .iter()
            .find(|(k, _)| {
                if case_insensitive {
                    upper_eq(k, name)
                } else {
                    k == name
                }
            })
            .map_or(ParamReading::Absent, |(_, v)| v.reading()),
    }
}

/// Flat pairs as a tree where the first value of a name wins.
fn first_wins(pairs: Vec<(String, String)>, case_insensitive: bool) -> Vec<(String, PVal)> {
    let mut tree: Vec<(String, PVal)> = Vec::new();
    for (k, v) in pairs {
        let seen = tree.iter().any(|(t, _)| {
            if case_insensitive {
                upper_eq(t, &k)
            } else {
                *t == k
            }
        });
        if !seen {
            tree.push((k, PVal::Str(v)));
        }
    }
    tree
}

fn parse_query(framework: Framework, q: &str) -> Parsed {
    match framework {
        Framework::Php | Framework::Laravel | Framework::SymfonyIis => {
            Parsed::Tree(php_parse(q, false))
        }
        Framework::RackRails => match rack_parse(q) {
            Ok(tree) => Parsed::Tree(tree),
            Err(why) => Parsed::Rejected(why),
        },
        Framework::ExpressQs => Parsed::Tree(qs_parse(q, &QS_QUERY)),
        Framework::FlaskWsgi => Parsed::Tree(first_wins(werkzeug_pairs(q), false)),
        Framework::GoNetHttp => Parsed::Tree(first_wins(go_pairs(q), false)),
        Framework::AspNetCore => Parsed::Tree(first_wins(aspnet_pairs(q), true)),
    }
}

/// The body parameters `framework` would read, for its merged parameters.
fn parse_body(framework: Framework, req: &RecordedRequest) -> Parsed {
    let body = String::from_utf8_lossy(&req.body);
    let empty = Parsed::Tree(Vec::new());
    match framework {
        Framework::Php => {
            // PHP fills $_POST only for POST (before 8.4's request_parse_body).
            if req.method == "POST" && is_form(req) {
                Parsed::Tree(php_parse(&body, true))
            } else {
                empty
            }
        }
        Framework::SymfonyIis => symfony_request_bag(req, &body),
        Framework::Laravel => {
            // Laravel replaces the request bag with the JSON body when the
            // request "isJson" (content type contains /json or +json).
            let ct = header_values(req, "content-type")
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default();
            if ct.contains("/json") || ct.contains("+json") {
                json_tree(req, false)
            } else if req.method == "GET" || req.method == "HEAD" {
                parse_query(framework, query_string(&req.path_and_query))
            } else {
                symfony_request_bag(req, &body)
            }
        }
        Framework::RackRails => match rack_form_body(req) {
            Some(Ok(tree)) => Parsed::Tree(tree),
            Some(Err(why)) => Parsed::Rejected(why),
            None if json_accepted(framework, req) => json_tree(req, true),
            None => empty,
        },
        Framework::ExpressQs => {
            if is_form(req) && !req.body.is_empty() {
                let amps = body.matches('&').count();
                if amps >= 1000 {
                    return Parsed::Rejected("body-parser: too many parameters".into());
                }
                let opts = QsOptions {
                    parameter_limit: 1000,
                    array_limit: amps.max(100),
                    depth: 32,
                };
                Parsed::Tree(qs_parse(&body, &opts))
            } else if json_accepted(framework, req) {
                json_tree(req, false)
            } else {
                empty
            }
        }
        Framework::FlaskWsgi => {
            if req.method != "GET" && is_form(req) {
                Parsed::Tree(first_wins(werkzeug_pairs(&body), false))
            } else {
                empty
            }
        }
        Framework::GoNetHttp => {
            if matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") && is_form(req) {
                Parsed::Tree(first_wins(go_pairs(&body), false))
            } else {
                empty
            }
        }
        Framework::AspNetCore => {
            if is_form(req) {
                Parsed::Tree(first_wins(aspnet_pairs(&body), true))
            } else {
                empty
            }
        }
    }
}

/// Symfony's request bag: `$_POST` for a POST, or `parse_str` of the body for
/// PUT, DELETE and PATCH with a form content type (`createFromGlobals`).
fn symfony_request_bag(req: &RecordedRequest, body: &str) -> Parsed {
    if req.method == "POST" && is_form(req) {
        return Parsed::Tree(php_parse(body, true));
    }
    let ct = header_values(req, "content-type")
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    if ct.starts_with(FORM) && matches!(req.method.as_str(), "PUT" | "DELETE" | "PATCH") {
        return Parsed::Tree(php_parse(body, false));
    }
    Parsed::Tree(Vec::new())
}

/// The top-level members of a JSON object body, last duplicate winning;
/// with `rails_wrap`, a non-object body is bound as `_json` like Rails does.
fn json_tree(req: &RecordedRequest, rails_wrap: bool) -> Parsed {
    match parse_json(&req.body, false) {
        Some(Json::Obj(members)) => {
            let mut tree: Vec<(String, PVal)> = Vec::new();
            for (k, v) in members {
                let v = PVal::Json(v.to_value());
                match tree.iter_mut().find(|(t, _)| *t == k) {
                    Some(slot) => slot.1 = v,
                    None => tree.push((k, v)),
                }
            }
            Parsed::Tree(tree)
        }
        Some(other) if rails_wrap => {
            Parsed::Tree(vec![("_json".to_string(), PVal::Json(other.to_value()))])
        }
        Some(_) => Parsed::Tree(Vec::new()),
        None if rails_wrap => Parsed::Rejected("Rails: invalid JSON body".into()),
        None => Parsed::Tree(Vec::new()),
    }
}

// --- PHP --------------------------------------------------------------------

/// `max_input_vars` default.
const PHP_MAX_INPUT_VARS: usize = 1000;
/// `max_input_nesting_level` default.
const PHP_MAX_NESTING: usize = 64;

/// PHP's `php_default_treat_data` (query, `parse_str`) or, with `post`,
/// `php_std_post_handler`. Both split on `&` only (`arg_separator.input`);
/// the query skips empty pairs and stops before the 1001st, the body counts
/// empty pairs and stops after registering the 1001st.
fn php_parse(input: &str, post: bool) -> Vec<(String, PVal)> {
    let mut table = Vec::new();
    let mut count = 0usize;
    let pieces: Vec<&str> = input.split('&').collect();
    for (i, tok) in pieces.iter().enumerate() {
        if tok.is_empty() && (!post || i + 1 == pieces.len()) {
            continue;
        }
        if !post {
            count += 1;
            if count > PHP_MAX_INPUT_VARS {
                break;
            }
        }
        let (n, v) = tok.split_once('=').unwrap_or((tok, ""));
        php_register(
            &mut table,
            &lenient_decode(n, true),
            text(lenient_decode(v, true)),
        );
        if post {
            count += 1;
            if count > PHP_MAX_INPUT_VARS {
                break;
            }
        }
    }
    table
}

/// PHP's `php_register_variable_ex` (PHP 8): the name is a C string (cut at
/// NUL), leading spaces dropped, `.` and ` ` before the first `[` become `_`,
/// `[..]` groups nest, `[]` appends, a `[` never closed at the first level
/// becomes `_` (the rest of the name mangled too), anything after a closing
/// `]` that is not `[` is ignored, and assigning a scalar over an array (or
/// the reverse) replaces it.
fn php_register(table: &mut Vec<(String, PVal)>, name: &[u8], value: String) {
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    let start = name.iter().position(|&b| b != b' ').unwrap_or(name.len());
    let name = &name[start..];
    let mut top: Vec<u8> = Vec::new();
    let mut bracket = None;
    for (i, &b) in name.iter().enumerate() {
        match b {
            b' ' | b'.' => top.push(b'_'),
            b'[' => {
                bracket = Some(i);
                break;
            }
            _ => top.push(b),
        }
    }
    let mangled_prefix = |p: &[u8]| top.starts_with(p) && !name.starts_with(p);
    if top.is_empty() || mangled_prefix(b"__Host-") || mangled_prefix(b"__Secure-") {
        return;
    }
    let mut chain: Vec<Option<String>> = Vec::new();
    if let Some(mut pos) = bracket {
        loop {
            if chain.len() >= PHP_MAX_NESTING {
                let key = text(top);
                table.retain(|(k, _)| *k != key);
                return;
            }
            let index_s = pos + 1;
            let mut ip = index_s;
            if ip < name.len() && name[ip].is_ascii_whitespace() {
                ip += 1;
            }
            let close;
            if ip < name.len() && name[ip] == b']' {
                close = ip;
                chain.push(None);
            } else {
                match name[ip.min(name.len())..].iter().position(|&b| b == b']') {
                    None => {
                        if chain.is_empty() {
                            top.push(b'_');
                            top.extend(name[index_s..].iter().map(|&b| match b {
                                b' ' | b'.' | b'[' => b'_',
                                b => b,
                            }));
                        }
                        break;
                    }
                    Some(off) => {
                        close = ip + off;
                        chain.push(Some(text(name[index_s..close].to_vec())));
                    }
                }
            }
            if close + 1 < name.len() && name[close + 1] == b'[' {
                pos = close + 1;
            } else {
                break;
            }
        }
    }
    php_assign(table, Some(text(top)), &chain, value);
}

fn php_assign(
    table: &mut Vec<(String, PVal)>,
    key: Option<String>,
    rest: &[Option<String>],
    value: String,
) {
    let key = key.unwrap_or_else(|| php_next_index(table).to_string());
    let Some((next, rest)) = rest.split_first() else {
        php_set(table, key, PVal::Str(value));
        return;
    };
    let pos = match table.iter().position(|(k, _)| *k == key) {
        Some(p) => {
            if !matches!(table[p].1, PVal::Map(_)) {
                table[p].1 = PVal::Map(Vec::new());
            }
            p
        }
        None => {
            table.push((key, PVal::Map(Vec::new())));
            table.len() - 1
        }
    };
    if let PVal::Map(inner) = &mut table[pos].1 {
        php_assign(inner, next.clone(), rest, value);
    }
}

fn php_set(table: &mut Vec<(String, PVal)>, key: String, value: PVal) {
    match table.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => table.push((key, value)),
    }
}

/// The next free integer key of a PHP array.
fn php_next_index(table: &[(String, PVal)]) -> i64 {
    table
        .iter()
        .filter_map(|(k, _)| php_int_key(k))
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
        .max(0)
}

/// A key PHP stores as an integer (`ZEND_HANDLE_NUMERIC_STR`).
fn php_int_key(k: &str) -> Option<i64> {
    let digits = k.strip_prefix('-').unwrap_or(k);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && k != "-0";
    if canonical {
        k.parse().ok()
    } else {
        None
    }
}

/// `php_autoglobal_merge`, building `$_REQUEST`: arrays merge recursively,
/// anything else from `src` overwrites.
fn php_merge(dest: &mut Vec<(String, PVal)>, src: &[(String, PVal)]) {
    for (k, v) in src {
        match (v, dest.iter_mut().find(|(d, _)| d == k)) {
            (PVal::Map(sv), Some((_, PVal::Map(dv)))) => php_merge(dv, sv),
            _ => php_set(dest, k.clone(), v.clone()),
        }
    }
}

// --- Rack 2.2 ---------------------------------------------------------------

/// Rack 2.2's `param_depth_limit`.
const RACK_DEPTH: u32 = 100;

/// Rack 2.2 `parse_nested_query`: pairs split on `/[&;] */`, names and values
/// decoded strictly (a bad escape or invalid UTF-8 is a 400 in Rails), a
/// pair without `=` binds `nil`, conflicting types are a 400.
fn rack_parse(s: &str) -> Result<Vec<(String, PVal)>, String> {
    let mut params = Vec::new();
    for (i, part) in s.split(['&', ';']).enumerate() {
        let part = if i == 0 {
            part
        } else {
            part.trim_start_matches(' ')
        };
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        let k = rack_unescape(k)?;
        let v = match v {
            Some(v) => PVal::Str(rack_unescape(v)?),
            None => PVal::Null,
        };
        rack_normalize(&mut params, &k, v, RACK_DEPTH)?;
    }
    Ok(params)
}

fn rack_unescape(s: &str) -> Result<String, String> {
    let bytes = strict_decode(s).ok_or_else(|| format!("Rack: invalid %-encoding ({s})"))?;
    String::from_utf8(bytes).map_err(|_| "Rails: invalid UTF-8 in parameters".to_string())
}

/// The form body Rack would parse: a form content type, or a POST without one.
fn rack_form_body(req: &RecordedRequest) -> Option<Result<Vec<(String, PVal)>, String>> {
    let form = match media_type(req) {
        None => req.method == "POST",
        Some(t) => t == FORM,
    };
    form.then(|| rack_parse(&String::from_utf8_lossy(&req.body)))
}

enum RackOut {
    Params,
    Value(PVal),
    Nil,
}

/// Rack 2.2 `normalize_params`: the key is the first run of characters that
/// are not brackets after any leading brackets (so `[partner]` binds
/// `partner`), then `[]` appends, `[k]` nests, `[][k]` builds arrays of
/// hashes.
fn rack_normalize(
    params: &mut Vec<(String, PVal)>,
    name: &str,
    v: PVal,
    depth: u32,
) -> Result<RackOut, String> {
    if depth == 0 {
        return Err("Rack: params too deep".into());
    }
    let (k, after) = rack_split(name);
    if k.is_empty() {
        return Ok(if v != PVal::Null && name == "[]" {
            RackOut::Value(PVal::List(vec![v]))
        } else {
            RackOut::Nil
        });
    }
    let type_error = |want: &str| Err(format!("Rack: expected {want} for param `{k}'"));
    if after.is_empty() {
        php_set(params, k.to_string(), v);
    } else if after == "[" {
        php_set(params, name.to_string(), v);
    } else if after == "[]" {
        let pos = entry(params, k, PVal::List(Vec::new()));
        match &mut params[pos].1 {
            PVal::List(items) => items.push(v),
            _ => return type_error("Array"),
        }
    } else if let Some(child) = rack_array_child(after) {
        let pos = entry(params, k, PVal::List(Vec::new()));
        let PVal::List(items) = &mut params[pos].1 else {
            return type_error("Array");
        };
        let reuse = matches!(items.last(), Some(PVal::Map(m)) if !rack_has_key(m, child));
        if reuse {
            if let Some(PVal::Map(last)) = items.last_mut() {
                rack_normalize(last, child, v, depth - 1)?;
            }
        } else {
            let mut fresh = Vec::new();
            let item = match rack_normalize(&mut fresh, child, v, depth - 1)? {
                RackOut::Params => PVal::Map(fresh),
                RackOut::Value(x) => x,
                RackOut::Nil => PVal::Null,
            };
            items.push(item);
        }
    } else {
        let pos = entry(params, k, PVal::Map(Vec::new()));
        let PVal::Map(inner) = &mut params[pos].1 else {
            return type_error("Hash");
        };
        match rack_normalize(inner, after, v, depth - 1)? {
            RackOut::Params => {}
            RackOut::Value(x) => params[pos].1 = x,
            RackOut::Nil => params[pos].1 = PVal::Null,
        }
    }
    Ok(RackOut::Params)
}

/// `name =~ /\A[\[\]]*([^\[\]]+)\]*/` → (`$1`, `$'`).
fn rack_split(name: &str) -> (&str, &str) {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i] == b'[' || b[i] == b']') {
        i += 1;
    }
    let start = i;
    while i < b.len() && b[i] != b'[' && b[i] != b']' {
        i += 1;
    }
    if i == start {
        return ("", "");
    }
    let k = &name[start..i];
    while i < b.len() && b[i] == b']' {
        i += 1;
    }
    (k, &name[i..])
}

/// `after =~ /^\[\]\[([^\[\]]+)\]$/ || after =~ /^\[\](.+)$/` → child key.
fn rack_array_child(after: &str) -> Option<&str> {
    let rest = after.strip_prefix("[]")?;
    if let Some(inner) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if !inner.is_empty() && !inner.contains(['[', ']']) {
            return Some(inner);
        }
    }
    (!rest.is_empty()).then_some(rest)
}

/// Rack 2.2 `params_hash_has_key?`.
fn rack_has_key(hash: &[(String, PVal)], key: &str) -> bool {
    if key.contains("[]") {
        return false;
    }
    let mut current = hash;
    let parts: Vec<&str> = key.split(['[', ']']).filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        match current.iter().find(|(k, _)| k == part) {
            Some((_, PVal::Map(next))) => current = next,
            Some(_) if i + 1 == parts.len() => return true,
            _ => return false,
        }
    }
    true
}

/// The position of `key` in `params`, inserting `default` if missing.
fn entry(params: &mut Vec<(String, PVal)>, key: &str, default: PVal) -> usize {
    match params.iter().position(|(k, _)| k == key) {
        Some(p) => p,
        None => {
            params.push((key.to_string(), default));
            params.len() - 1
        }
    }
}

// --- qs ----------------------------------------------------------------------

struct QsOptions {
    parameter_limit: usize,
    array_limit: usize,
    depth: usize,
}

/// Express 4's "extended" query parser: `qs.parse(str, { allowPrototypes:
/// true })` with qs's defaults.
const QS_QUERY: QsOptions = QsOptions {
    parameter_limit: 1000,
    array_limit: 20,
    depth: 5,
};

/// A qs value; arrays are sparse (JS arrays with holes) until compacted.
#[derive(Clone, Debug)]
enum Qv {
    Str(String),
    True,
    Arr(BTreeMap<usize, Qv>),
    Obj(Vec<(String, Qv)>),
}

impl Qv {
    fn is_object(&self) -> bool {
        matches!(self, Qv::Arr(_) | Qv::Obj(_))
    }

    /// `utils.compact`, into the shared value type.
    fn into_pval(self) -> PVal {
        match self {
            Qv::Str(s) => PVal::Str(s),
            Qv::True => PVal::Bool(true),
            Qv::Arr(items) => PVal::List(items.into_values().map(Qv::into_pval).collect()),
            Qv::Obj(entries) => PVal::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_pval()))
                    .collect(),
            ),
        }
    }
}

fn arr_push(items: &mut BTreeMap<usize, Qv>, v: Qv) {
    let next = items.keys().next_back().map_or(0, |k| k + 1);
    items.insert(next, v);
}

fn obj_set(entries: &mut Vec<(String, Qv)>, key: String, v: Qv) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = v,
        None => entries.push((key, v)),
    }
}

/// qs `parse`: `%5B`/`%5D` turned into brackets first, pairs split on `&`
/// (only the first `parameter_limit`), the key ends at `]=` if present else
/// the first `=`, duplicates combine into arrays, then each key's bracket
/// chain is built and merged.
fn qs_parse(s: &str, opts: &QsOptions) -> Vec<(String, PVal)> {
    let clean = replace_ascii_ci(&replace_ascii_ci(s, "%5B", "["), "%5D", "]");
    let mut temp: Vec<(String, Qv)> = Vec::new();
    for part in clean.split('&').take(opts.parameter_limit) {
        let pos = match part.find("]=") {
            Some(i) => Some(i + 1),
            None => part.find('='),
        };
        let (key, val) = match pos {
            None => (qs_decode(part), Qv::Str(String::new())),
            Some(p) => (qs_decode(&part[..p]), Qv::Str(qs_decode(&part[p + 1..]))),
        };
        match temp.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => {
                let existing = std::mem::replace(&mut slot.1, Qv::True);
                slot.1 = qs_combine(existing, val);
            }
            None => temp.push((key, val)),
        }
    }
    let mut obj = Qv::Obj(Vec::new());
    for (key, val) in temp {
        if key.is_empty() {
            continue;
        }
        let chain = qs_keys(&key, opts.depth);
        let parsed = qs_object(&chain, val, opts.array_limit);
        obj = qs_merge(obj, parsed);
    }
    match obj {
        Qv::Obj(entries) => entries
            .into_iter()
            .map(|(k, v)| (k, v.into_pval()))
            .collect(),
        Qv::Arr(items) => items
            .into_iter()
            .map(|(i, v)| (i.to_string(), v.into_pval()))
            .collect(),
        _ => Vec::new(),
    }
}

fn replace_ascii_ci(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest
        .as_bytes()
        .windows(from.len())
        .position(|w| w.eq_ignore_ascii_case(from.as_bytes()))
    {
        out.push_str(&rest[..i]);
        out.push_str(to);
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// qs's decoder: `+` as space, then `decodeURIComponent`, falling back to the
/// undecoded text when that throws (a bad escape or invalid UTF-8).
fn qs_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    let b = plus.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => return plus,
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or(plus)
}

/// `utils.combine`: `[].concat(a, b)`.
fn qs_combine(a: Qv, b: Qv) -> Qv {
    let mut items = BTreeMap::new();
    for v in [a, b] {
        match v {
            Qv::Arr(inner) => {
                for (_, x) in inner {
                    arr_push(&mut items, x);
                }
            }
            other => arr_push(&mut items, other),
        }
    }
    Qv::Arr(items)
}

/// qs `parseKeys`: the parent is what precedes the first complete `[...]`
/// group; up to `depth` groups follow; any remainder becomes one key.
fn qs_keys(key: &str, depth: usize) -> Vec<String> {
    let b = key.as_bytes();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'[' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < b.len() && b[j] != b'[' && b[j] != b']' {
            j += 1;
        }
        if j < b.len() && b[j] == b']' {
            groups.push((i, j + 1));
            i = j + 1;
        } else {
            i = j;
        }
    }
    let parent = groups.first().map_or(key, |&(s, _)| &key[..s]);
    let mut keys = Vec::new();
    if !parent.is_empty() {
        keys.push(parent.to_string());
    }
    for &(s, e) in groups.iter().take(depth) {
        keys.push(key[s..e].to_string());
    }
    if let Some(&(s, _)) = groups.get(depth) {
        keys.push(format!("[{}]", &key[s..]));
    }
    keys
}

/// qs `parseObject`: builds the value for one key chain from the leaf out.
fn qs_object(chain: &[String], leaf: Qv, array_limit: usize) -> Qv {
    let mut leaf = leaf;
    for root in chain.iter().rev() {
        leaf = if root == "[]" {
            match leaf {
                arr @ Qv::Arr(_) => arr,
                other => Qv::Arr(BTreeMap::from([(0, other)])),
            }
        } else {
            let bracketed = root.len() >= 2 && root.starts_with('[') && root.ends_with(']');
            let clean = if bracketed {
                &root[1..root.len() - 1]
            } else {
                root.as_str()
            };
            let index = (bracketed
                && !clean.is_empty()
                && clean.bytes().all(|c| c.is_ascii_digit())
                && (clean == "0" || !clean.starts_with('0')))
            .then(|| clean.parse::<usize>().ok())
            .flatten()
            .filter(|&n| n <= array_limit);
            match index {
                Some(n) => Qv::Arr(BTreeMap::from([(n, leaf)])),
                None if clean == "__proto__" => Qv::Obj(Vec::new()),
                None => Qv::Obj(vec![(clean.to_string(), leaf)]),
            }
        };
    }
    leaf
}

/// qs `utils.merge`.
fn qs_merge(target: Qv, source: Qv) -> Qv {
    if let Qv::Str(s) = &source {
        if s.is_empty() {
            return target;
        }
    }
    if !source.is_object() {
        return match target {
            Qv::Arr(mut items) => {
                arr_push(&mut items, source);
                Qv::Arr(items)
            }
            Qv::Obj(mut entries) => {
                let key = match source {
                    Qv::Str(s) => s,
                    _ => "true".to_string(),
                };
                obj_set(&mut entries, key, Qv::True);
                Qv::Obj(entries)
            }
            t => Qv::Arr(BTreeMap::from([(0, t), (1, source)])),
        };
    }
    match (target, source) {
        (t @ (Qv::Str(_) | Qv::True), source) => {
            let mut items = BTreeMap::from([(0, t)]);
            match source {
                Qv::Arr(inner) => {
                    for (i, v) in inner {
                        items.insert(i + 1, v);
                    }
                }
                other => {
                    items.insert(1, other);
                }
            }
            Qv::Arr(items)
        }
        (Qv::Arr(mut items), Qv::Arr(src)) => {
            for (i, item) in src {
                match items.remove(&i) {
                    Some(existing) if existing.is_object() && item.is_object() => {
                        items.insert(i, qs_merge(existing, item));
                    }
                    Some(existing) => {
                        items.insert(i, existing);
                        arr_push(&mut items, item);
                    }
                    None => {
                        items.insert(i, item);
                    }
                }
            }
            Qv::Arr(items)
        }
        (target, source) => {
            let mut entries = match target {
                Qv::Arr(items) => items.into_iter().map(|(i, v)| (i.to_string(), v)).collect(),
                Qv::Obj(entries) => entries,
                _ => Vec::new(),
            };
            let src: Vec<(String, Qv)> = match source {
                Qv::Arr(items) => items.into_iter().map(|(i, v)| (i.to_string(), v)).collect(),
                Qv::Obj(e) => e,
                _ => Vec::new(),
            };
            for (k, v) in src {
                match entries.iter().position(|(e, _)| *e == k) {
                    Some(p) => {
                        let existing = std::mem::replace(&mut entries[p].1, Qv::True);
                        entries[p].1 = qs_merge(existing, v);
                    }
                    None => entries.push((k, v)),
                }
            }
            Qv::Obj(entries)
        }
    }
}

// --- flat parsers ------------------------------------------------------------

/// Werkzeug ≥ 2.3 (`urllib.parse.parse_qsl(keep_blank_values=True)`):
/// `&` only since Python 3.9.2 / CVE-2021-23336, empty pairs skipped, `+`
/// as space, lenient decoding, invalid UTF-8 replaced.
fn werkzeug_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (text(lenient_decode(k, true)), text(lenient_decode(v, true)))
        })
        .collect()
}

/// Go's `url.ParseQuery` since 1.17: a pair containing `;` anywhere is
/// dropped (the error is ignored by `r.URL.Query()`), as is a pair with a
/// bad escape in its key or value.
fn go_pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in s.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (strict_decode(k), strict_decode(v)) {
            out.push((text(k), text(v)));
        }
    }
    out
}

/// ASP.NET Core's `QueryStringEnumerable` (also the form reader's rules): `&`
/// only, empty segments skipped, a segment without `=` is a name with an
/// empty value, `+` as space, lenient decoding.
fn aspnet_pairs(s: &str) -> Vec<(String, String)> {
    s.strip_prefix('?')
        .unwrap_or(s)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (text(lenient_decode(k, true)), text(lenient_decode(v, true)))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// JSON

/// A JSON document that keeps duplicate keys and their order, which
/// `serde_json::Value` cannot, because the frameworks differ exactly there.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The value as a framework without duplicate keys holds it (last wins).
    fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Num(raw) => {
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()))
            }
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Obj(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// Whether `framework` parses this body as JSON for binding: Express
/// `json()` wants `application/json`; Flask `application/json` or
/// `application/*+json`; Rails its JSON MIME type and synonyms; ASP.NET
/// Core `application/json`, `text/json` or `application/*+json`; Laravel a
/// type containing `/json` or `+json`; plain PHP, Symfony and Go read the
/// body whatever its type.
fn json_accepted(framework: Framework, req: &RecordedRequest) -> bool {
    let mt = media_type(req).unwrap_or_default();
    let plus_json = mt.starts_with("application/") && mt.ends_with("+json");
    match framework {
        Framework::Php | Framework::SymfonyIis | Framework::GoNetHttp => true,
        Framework::Laravel => mt.contains("/json") || mt.contains("+json"),
        Framework::ExpressQs => mt == "application/json",
        Framework::FlaskWsgi => mt == "application/json" || plus_json,
        Framework::RackRails => matches!(
            mt.as_str(),
            "application/json" | "text/x-json" | "application/jsonrequest"
        ),
        Framework::AspNetCore => mt == "application/json" || mt == "text/json" || plus_json,
    }
}

/// Nesting deeper than this is refused (PHP's default depth is 512).
const JSON_MAX_DEPTH: usize = 512;

/// Parses strict JSON (RFC 8259). With `allow_trailing`, anything after the
/// first value is ignored, as Go's `json.NewDecoder(r.Body).Decode` does.
fn parse_json(body: &[u8], allow_trailing: bool) -> Option<Json> {
    let text = String::from_utf8_lossy(body);
    let mut p = JsonParser {
        b: text.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    (allow_trailing || p.i == p.b.len()).then_some(v)
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > JSON_MAX_DEPTH {
            return None;
        }
        match *self.b.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Some(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return None;
                    }
                    self.ws();
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    if self.eat("}") {
                        return Some(Json::Obj(members));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Some(Json::Arr(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat("]") {
                        return Some(Json::Arr(items));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(Json::Str),
            b't' => self.eat("true").then_some(Json::Bool(true)),
            b'f' => self.eat("false").then_some(Json::Bool(false)),
            b'n' => self.eat("null").then_some(Json::Null),
            _ => self.number().map(Json::Num),
        }
    }

    fn number(&mut self) -> Option<String> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.i < p.b.len() && p.b[p.i].is_ascii_digit() {
                p.i += 1;
            }
            p.i - s
        };
        self.eat("-");
        if self.eat("0") {
        } else if digits(self) == 0 {
            return None;
        }
        if self.eat(".") && digits(self) == 0 {
            return None;
        }
        if self.eat("e") || self.eat("E") {
            let _ = self.eat("+") || self.eat("-");
            if digits(self) == 0 {
                return None;
            }
        }
        Some(String::from_utf8_lossy(&self.b[start..self.i]).into_owned())
    }

    /// A string token; a lone surrogate escape becomes U+FFFD, as in Go.
    fn string(&mut self) -> Option<String> {
        if !self.eat("\"") {
            return None;
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi)
                                && self.b[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                    char::from_u32(cp).unwrap_or('\u{FFFD}')
                                } else {
                                    self.i = save;
                                    '\u{FFFD}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{FFFD}')
                            }
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        let s = std::str::from_utf8(digits).ok()?;
        let v = u32::from_str_radix(s, 16).ok()?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        self.i += 4;
        Some(v)
    }
}

/// The member at `path` when each level keeps only its last matching key
/// (a fresh dict/object/map per level).
fn replace_lookup<'a>(
    doc: &'a Json,
    path: &[&str],
    eq: fn(&str, &str) -> bool,
) -> Option<&'a Json> {
    let Some((first, rest)) = path.split_first() else {
        return Some(doc);
    };
    let Json::Obj(members) = doc else {
        return None;
    };
    let (_, v) = members.iter().rev().find(|(k, _)| eq(k, first))?;
    replace_lookup(v, rest, eq)
}

/// Every member reachable at `path` in document order, as Go decodes into
/// one struct: each matching key is assigned in turn and nested structs are
/// reused, so the last non-null one is what sticks.
fn merge_lookup<'a>(
    doc: &'a Json,
    path: &[&str],
    eq: fn(&str, &str) -> bool,
    out: &mut Vec<&'a Json>,
) {
    let Some((first, rest)) = path.split_first() else {
        out.push(doc);
        return;
    };
    if let Json::Obj(members) = doc {
        for (k, v) in members {
            if eq(k, first) {
                merge_lookup(v, rest, eq, out);
            }
        }
    }
}

fn exact_eq(a: &str, b: &str) -> bool {
    a == b
}

/// A character's single-character mapping, if it has one.
fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

/// Unicode simple case folding, approximated as the simple lower case of the
/// simple upper case, so that `K` (U+212A), `K` and `k` meet, as do `ſ`
/// (U+017F), `S` and `s`.
fn simple_fold(c: char) -> char {
    let up = single(c.to_uppercase()).unwrap_or(c);
    single(up.to_lowercase()).unwrap_or(up)
}

/// Go's `bytes.EqualFold`, which `encoding/json` uses for struct fields.
fn go_fold_eq(a: &str, b: &str) -> bool {
    a.chars().map(simple_fold).eq(b.chars().map(simple_fold))
}

/// .NET's `StringComparer.OrdinalIgnoreCase`: characters compared by their
/// simple upper case.
fn upper_eq(a: &str, b: &str) -> bool {
    let up = |c: char| single(c.to_uppercase()).unwrap_or(c);
    a.chars().map(up).eq(b.chars().map(up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(target: &str) -> RecordedRequest {
        RecordedRequest {
            method: "GET".into(),
            path_and_query: target.into(),
            headers: vec![("x-partner-id".into(), "acme".into())],
            body: Vec::new(),
        }
    }

    fn with_header(mut req: RecordedRequest, name: &str, value: &str) -> RecordedRequest {
        req.headers.push((name.into(), value.into()));
        req
    }

    fn post(target: &str, content_type: &str, body: &str) -> RecordedRequest {
        RecordedRequest {
            method: "POST".into(),
            path_and_query: target.into(),
            headers: vec![
                ("x-partner-id".into(), "acme".into()),
                ("content-type".into(), content_type.into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    fn scalar(s: &str) -> ParamReading {
        ParamReading::Scalar(s.into())
    }

    fn q(fw: Framework, target: &str, name: &str) -> ParamReading {
        query_param(fw, &get(target), name)
    }

    const PARTNER_EXPECTED: Expected<'static> = Expected {
        method: "GET",
        path: "/partners/acme/orders",
        partner: Some("acme"),
        params: &[("partner", "acme")],
        json: &[],
    };

    #[test]
    fn a_plain_request_reads_the_same_everywhere() {
        let req = get("/partners/acme/orders?partner=acme");
        assert_eq!(disagreements(&req, &PARTNER_EXPECTED), Vec::<String>::new());
        for fw in Framework::ALL {
            let r = read(fw, &req);
            assert_eq!(r.method, ["GET"]);
            assert_eq!(r.path, ["/partners/acme/orders"]);
            assert_eq!(r.partner_header, ["acme"]);
        }
    }

    #[test]
    fn php_reads_bracketed_names_as_structured() {
        let fw = Framework::Php;
        assert_eq!(
            q(fw, "/?partner[$ne]=acme", "partner"),
            ParamReading::Structured(json!({"$ne": "acme"}))
        );
        assert_eq!(
            q(fw, "/?partner[]=acme", "partner"),
            ParamReading::Structured(json!(["acme"]))
        );
        assert_eq!(
            q(fw, "/?partner[0]=acme&partner[k]=b", "partner"),
            ParamReading::Structured(json!({"0": "acme", "k": "b"}))
        );
        assert_eq!(
            q(fw, "/?partner%5B%5D=acme", "partner"),
            ParamReading::Structured(json!(["acme"]))
        );
    }

    #[test]
    fn php_mangles_dots_spaces_and_unclosed_brackets() {
        let fw = Framework::Php;
        assert_eq!(q(fw, "/?partner.id=globex", "partner_id"), scalar("globex"));
        assert_eq!(q(fw, "/?partner+id=globex", "partner_id"), scalar("globex"));
        assert_eq!(
            q(fw, "/?partner.id=globex", "partner.id"),
            ParamReading::Absent
        );
        assert_eq!(q(fw, "/?partner[id=globex", "partner_id"), scalar("globex"));
        assert_eq!(q(fw, "/?a[b.c=1", "a_b_c"), scalar("1"));
        assert_eq!(q(fw, "/?+partner=globex", "partner"), scalar("globex"));
        assert_eq!(q(fw, "/?partner%00x=globex", "partner"), scalar("globex"));
        assert_eq!(
            q(fw, "/?a[b]x=1", "a"),
            ParamReading::Structured(json!({"b": "1"}))
        );
        assert_eq!(
            q(fw, "/?a[b][c=1", "a"),
            ParamReading::Structured(json!({"b": "1"}))
        );
    }

    #[test]
    fn php_last_wins_and_separates_on_ampersand_only() {
        let fw = Framework::Php;
        assert_eq!(
            q(fw, "/?partner=acme&partner=globex", "partner"),
            scalar("globex")
        );
        assert_eq!(
            q(fw, "/?partner=acme;partner=globex", "partner"),
            scalar("acme;partner=globex")
        );
        assert_eq!(
            q(fw, "/?partner[]=x&partner=acme", "partner"),
            scalar("acme")
        );
    }

    #[test]
    fn php_stops_after_max_input_vars() {
        let mut target = String::from("/?");
        for i in 0..1000 {
            target.push_str(&format!("v{i}=1&"));
        }
        target.push_str("partner=globex");
        assert_eq!(q(Framework::Php, &target, "partner"), ParamReading::Absent);
        assert_eq!(
            q(Framework::GoNetHttp, &target, "partner"),
            scalar("globex")
        );
    }

    #[test]
    fn php_request_prefers_the_post_body() {
        let req = post("/orders?partner=acme", FORM, "partner=globex");
        assert_eq!(query_param(Framework::Php, &req, "partner"), scalar("acme"));
        assert_eq!(
            request_param(Framework::Php, &req, "partner"),
            scalar("globex")
        );
        // Legacy Symfony's get() and Rails' params prefer the query.
        assert_eq!(
            request_param(Framework::SymfonyIis, &req, "partner"),
            scalar("acme")
        );
        assert_eq!(
            request_param(Framework::RackRails, &req, "partner"),
            scalar("acme")
        );
        assert_eq!(
            request_param(Framework::Laravel, &req, "partner"),
            scalar("globex")
        );
        assert_eq!(
            request_param(Framework::ExpressQs, &req, "partner"),
            scalar("globex")
        );
        assert_eq!(
            request_param(Framework::FlaskWsgi, &req, "partner"),
            scalar("acme")
        );
        assert_eq!(
            request_param(Framework::GoNetHttp, &req, "partner"),
            scalar("globex")
        );
        assert_eq!(
            request_param(Framework::AspNetCore, &req, "partner"),
            scalar("globex")
        );
        // PHP fills $_POST only for POST.
        let mut put = req.clone();
        put.method = "PUT".into();
        assert_eq!(
            request_param(Framework::Php, &put, "partner"),
            scalar("acme")
        );
    }

    #[test]
    fn php_request_merges_arrays() {
        let req = post("/?partner[a]=1", FORM, "partner[b]=2");
        assert_eq!(
            request_param(Framework::Php, &req, "partner"),
            ParamReading::Structured(json!({"a": "1", "b": "2"}))
        );
    }

    #[test]
    fn laravel_input_reads_a_json_body() {
        let req = post(
            "/?partner=acme",
            "application/json",
            r#"{"partner":"globex"}"#,
        );
        assert_eq!(
            request_param(Framework::Laravel, &req, "partner"),
            scalar("globex")
        );
        assert_eq!(
            query_param(Framework::Laravel, &req, "partner"),
            scalar("acme")
        );
    }

    #[test]
    fn rack_separates_on_semicolons_and_nests() {
        let fw = Framework::RackRails;
        assert_eq!(
            q(fw, "/?partner=acme;partner=globex", "partner"),
            scalar("globex")
        );
        assert_eq!(q(fw, "/?x=1; partner=globex", "partner"), scalar("globex"));
        assert_eq!(
            q(fw, "/?partner[]=acme", "partner"),
            ParamReading::Structured(json!(["acme"]))
        );
        assert_eq!(
            q(fw, "/?partner[k]=acme", "partner"),
            ParamReading::Structured(json!({"k": "acme"}))
        );
        assert_eq!(q(fw, "/?[partner]=globex", "partner"), scalar("globex"));
        assert_eq!(
            q(fw, "/?partner", "partner"),
            ParamReading::Structured(Value::Null)
        );
        assert_eq!(
            q(fw, "/?a[][b]=1&a[][c]=2&a[][b]=3", "a"),
            ParamReading::Structured(json!([{"b": "1", "c": "2"}, {"b": "3"}]))
        );
    }

    #[test]
    fn rack_rejects_bad_escapes_and_type_conflicts() {
        let fw = Framework::RackRails;
        assert!(matches!(
            q(fw, "/?partner=%zz", "partner"),
            ParamReading::Rejected(_)
        ));
        assert!(matches!(
            q(fw, "/?partner=acme&partner[]=x", "partner"),
            ParamReading::Rejected(_)
        ));
        // Everyone else reads a bad escape literally or drops the pair.
        assert_eq!(q(Framework::Php, "/?partner=%zz", "partner"), scalar("%zz"));
        assert_eq!(
            q(Framework::GoNetHttp, "/?partner=%zz", "partner"),
            ParamReading::Absent
        );
    }

    #[test]
    fn express_qs_combines_duplicates_and_builds_objects() {
        let fw = Framework::ExpressQs;
        assert_eq!(
            q(fw, "/?partner=acme&partner=globex", "partner"),
            ParamReading::Structured(json!(["acme", "globex"]))
        );
        assert_eq!(
            q(fw, "/?partner[$ne]=acme", "partner"),
            ParamReading::Structured(json!({"$ne": "acme"}))
        );
        assert_eq!(
            q(fw, "/?partner[1]=b&partner[0]=a", "partner"),
            ParamReading::Structured(json!(["a", "b"]))
        );
        assert_eq!(
            q(fw, "/?partner[21]=a", "partner"),
            ParamReading::Structured(json!({"21": "a"}))
        );
        assert_eq!(q(fw, "/?[partner]=globex", "partner"), scalar("globex"));
        assert_eq!(q(fw, "/?partner.id=x", "partner"), ParamReading::Absent);
        assert_eq!(
            q(fw, "/?partner=acme;partner=globex", "partner"),
            scalar("acme;partner=globex")
        );
        // A key ends at `]=` when there is one: `a[b=c]=d` is a[b=c] = d.
        assert_eq!(
            q(fw, "/?a[b=c]=d", "a"),
            ParamReading::Structured(json!({"b=c": "d"}))
        );
        assert_eq!(
            q(fw, "/?a[b]=1&a=x", "a"),
            ParamReading::Structured(json!({"b": "1", "x": true}))
        );
        // A bad escape keeps the whole component undecoded.
        assert_eq!(q(fw, "/?partner=%zz%41", "partner"), scalar("%zz%41"));
    }

    #[test]
    fn express_body_rejects_too_many_parameters() {
        let body = "a=1&".repeat(1000);
        let req = post("/", FORM, &body);
        assert!(matches!(
            request_param(Framework::ExpressQs, &req, "a"),
            ParamReading::Rejected(_)
        ));
    }

    #[test]
    fn flask_and_go_take_the_first_duplicate() {
        let target = "/?partner=acme&partner=globex";
        assert_eq!(q(Framework::FlaskWsgi, target, "partner"), scalar("acme"));
        assert_eq!(q(Framework::GoNetHttp, target, "partner"), scalar("acme"));
        assert_eq!(q(Framework::AspNetCore, target, "partner"), scalar("acme"));
        assert_eq!(
            q(Framework::FlaskWsgi, "/?partner[]=x", "partner"),
            ParamReading::Absent
        );
        assert_eq!(
            q(Framework::FlaskWsgi, "/?a=1;partner=x", "partner"),
            ParamReading::Absent
        );
    }

    #[test]
    fn go_drops_pairs_with_semicolons() {
        let fw = Framework::GoNetHttp;
        assert_eq!(
            q(fw, "/?partner=globex;x=1&partner=acme", "partner"),
            scalar("acme")
        );
        assert_eq!(q(fw, "/?partner=acme;", "partner"), ParamReading::Absent);
    }

    #[test]
    fn aspnet_matches_query_names_case_insensitively() {
        let fw = Framework::AspNetCore;
        assert_eq!(
            q(fw, "/?PARTNER=globex&partner=acme", "partner"),
            scalar("globex")
        );
        assert_eq!(
            q(
                Framework::GoNetHttp,
                "/?PARTNER=globex&partner=acme",
                "partner"
            ),
            scalar("acme")
        );
    }

    #[test]
    fn cgi_environments_collide_underscore_headers() {
        let req = with_header(get("/"), "X_Partner_Id", "globex");
        for fw in [
            Framework::Php,
            Framework::Laravel,
            Framework::SymfonyIis,
            Framework::RackRails,
            Framework::FlaskWsgi,
        ] {
            assert_eq!(
                header(fw, &req, PARTNER_HEADER),
                ["acme", "globex", "acme, globex", "acme,globex"],
                "{fw:?}"
            );
        }
        for fw in [
            Framework::ExpressQs,
            Framework::GoNetHttp,
            Framework::AspNetCore,
        ] {
            assert_eq!(header(fw, &req, PARTNER_HEADER), ["acme"], "{fw:?}");
        }
        let dots = with_header(get("/"), "X.Partner.Id", "globex");
        assert!(header(Framework::Php, &dots, PARTNER_HEADER).contains(&"globex".to_string()));
    }

    #[test]
    fn repeated_headers_join_per_framework() {
        let req = with_header(get("/"), "X-Partner-Id", "globex");
        assert_eq!(
            header(Framework::ExpressQs, &req, PARTNER_HEADER),
            ["acme, globex"]
        );
        assert_eq!(
            header(Framework::GoNetHttp, &req, PARTNER_HEADER),
            ["acme", "globex"]
        );
        assert_eq!(
            header(Framework::AspNetCore, &req, PARTNER_HEADER),
            ["acme", "globex", "acme,globex"]
        );
        let host = with_header(with_header(get("/"), "host", "a"), "host", "b");
        assert_eq!(header(Framework::ExpressQs, &host, "Host"), ["a"]);
    }

    #[test]
    fn go_json_folds_case_and_last_key_wins() {
        let fw = Framework::GoNetHttp;
        let req = post(
            "/",
            "application/json",
            r#"{"Partner":"globex","partner":"acme"}"#,
        );
        assert_eq!(json_member(fw, &req, &["partner"]), [json!("acme")]);
        let req = post("/", "application/json", r#"{"PARTNER":"globex"}"#);
        // The struct binds it; a map[string]any would not.
        assert_eq!(json_member(fw, &req, &["partner"]), [json!("globex")]);
        let req = post(
            "/",
            "application/json",
            r#"{"partner":"acme","PARTNER":"globex"}"#,
        );
        assert_eq!(
            json_member(fw, &req, &["partner"]),
            [json!("globex"), json!("acme")]
        );
        let req = post("/", "application/json", "{\"\u{212A}ey\":\"globex\"}");
        assert_eq!(json_member(fw, &req, &["key"]), [json!("globex")]);
        let req = post("/", "application/json", "{\"partner\u{17F}\":\"globex\"}");
        assert_eq!(json_member(fw, &req, &["partners"]), [json!("globex")]);
        // Nested objects merge into one struct; null leaves a field alone.
        let req = post(
            "/",
            "application/json",
            r#"{"a":{"partner":"acme"},"A":{"other":1},"a":{"partner":null}}"#,
        );
        assert_eq!(
            json_member(fw, &req, &["a", "partner"]),
            [json!("acme"), json!(null)]
        );
        // A decoder ignores trailing data.
        let req = post(
            "/",
            "text/plain",
            r#"{"partner":"acme"} {"partner":"globex"}"#,
        );
        assert_eq!(json_member(fw, &req, &["partner"]), [json!("acme")]);
        assert!(json_member(Framework::Php, &req, &["partner"]).is_empty());
    }

    #[test]
    fn aspnet_json_is_case_insensitive_without_kelvin() {
        let fw = Framework::AspNetCore;
        let req = post(
            "/",
            "application/json",
            r#"{"partner":"acme","PARTNER":"globex"}"#,
        );
        assert_eq!(json_member(fw, &req, &["partner"]), [json!("globex")]);
        let req = post("/", "application/json", "{\"\u{212A}ey\":\"globex\"}");
        assert!(json_member(fw, &req, &["key"]).is_empty());
        let req = post("/", "application/json", "{\"partner\u{17F}\":\"globex\"}");
        assert_eq!(json_member(fw, &req, &["partners"]), [json!("globex")]);
    }

    #[test]
    fn exact_json_readers_take_the_last_duplicate() {
        let req = post(
            "/",
            "application/json",
            r#"{"partner":"acme","partner":"globex","PARTNER":"x"}"#,
        );
        for fw in [
            Framework::Php,
            Framework::Laravel,
            Framework::RackRails,
            Framework::ExpressQs,
            Framework::FlaskWsgi,
        ] {
            assert_eq!(
                json_member(fw, &req, &["partner"]),
                [json!("globex")],
                "{fw:?}"
            );
        }
        let text = post("/", "text/plain", r#"{"partner":"globex"}"#);
        assert!(json_member(Framework::ExpressQs, &text, &["partner"]).is_empty());
        assert_eq!(
            json_member(Framework::Php, &text, &["partner"]),
            [json!("globex")]
        );
    }

    #[test]
    fn method_override_headers() {
        let mut req = with_header(get("/"), "X-HTTP-Method-Override", "DELETE");
        req.method = "POST".into();
        assert_eq!(method(Framework::Php, &req), ["POST"]);
        assert_eq!(method(Framework::Laravel, &req), ["DELETE"]);
        assert_eq!(method(Framework::SymfonyIis, &req), ["DELETE"]);
        assert_eq!(method(Framework::RackRails, &req), ["DELETE"]);
        assert_eq!(method(Framework::ExpressQs, &req), ["POST", "DELETE"]);
        assert_eq!(method(Framework::FlaskWsgi, &req), ["POST", "DELETE"]);
        assert_eq!(method(Framework::GoNetHttp, &req), ["POST", "DELETE"]);
        assert_eq!(method(Framework::AspNetCore, &req), ["POST", "DELETE"]);
        // Only Flask's documented middleware overrides a GET.
        let get_req = with_header(get("/"), "X-HTTP-Method-Override", "DELETE");
        for fw in Framework::ALL {
            let expected: &[&str] = if fw == Framework::FlaskWsgi {
                &["GET", "DELETE"]
            } else {
                &["GET"]
            };
            assert_eq!(method(fw, &get_req), expected, "{fw:?}");
        }
        // X-HTTP-Method and X-Method-Override: only method-override's README.
        for name in ["X-HTTP-Method", "X-Method-Override"] {
            let mut req = with_header(get("/"), name, "PUT");
            req.method = "POST".into();
            assert_eq!(method(Framework::ExpressQs, &req), ["POST", "PUT"]);
            assert_eq!(method(Framework::RackRails, &req), ["POST"]);
        }
        // Underscore spellings reach CGI-style environments.
        let mut req = with_header(get("/"), "X_HTTP_Method_Override", "PATCH");
        req.method = "POST".into();
        assert_eq!(method(Framework::RackRails, &req), ["PATCH"]);
        assert_eq!(method(Framework::GoNetHttp, &req), ["POST"]);
    }

    #[test]
    fn method_override_parameters() {
        let req = post("/?_method=PUT", FORM, "_method=delete");
        assert_eq!(method(Framework::RackRails, &req), ["DELETE"]);
        assert_eq!(method(Framework::Laravel, &req), ["DELETE"]);
        assert_eq!(method(Framework::GoNetHttp, &req), ["POST"]); // gorilla: exact case
        assert_eq!(
            method(Framework::ExpressQs, &req),
            ["POST", "PUT", "DELETE"]
        );
        assert_eq!(method(Framework::AspNetCore, &req), ["POST", "DELETE"]);
        // Laravel and Symfony fall back to the query; Rack does not.
        let query_only = post("/?_method=PUT", FORM, "a=1");
        assert_eq!(method(Framework::Laravel, &query_only), ["PUT"]);
        assert_eq!(method(Framework::SymfonyIis, &query_only), ["PUT"]);
        assert_eq!(method(Framework::RackRails, &query_only), ["POST"]);
        // A `_method` body param shadows the header in Rack, even when invalid.
        let shadow = with_header(
            post("/", FORM, "_method=bogus"),
            "X-HTTP-Method-Override",
            "PUT",
        );
        assert_eq!(method(Framework::RackRails, &shadow), ["POST"]);
        // "0" is falsy in PHP, so Symfony falls through to `_method`.
        let zero = with_header(
            post("/", FORM, "_method=PATCH"),
            "X-HTTP-Method-Override",
            "0",
        );
        assert_eq!(method(Framework::Laravel, &zero), ["PATCH"]);
        // Laravel refuses a non-alphabetic override.
        let bad = post("/", FORM, "_method=GET%20X");
        assert_eq!(method(Framework::Laravel, &bad), ["POST"]);
        assert_eq!(method(Framework::SymfonyIis, &bad), ["GET X"]);
        // gorilla reads `_method` in the query through FormValue.
        let go = post("/?_method=PATCH", "text/plain", "");
        assert_eq!(method(Framework::GoNetHttp, &go), ["POST", "PATCH"]);
        // Laravel honours `_method` in a JSON body.
        let json_body = post("/", "application/json", r#"{"_method":"DELETE"}"#);
        assert_eq!(method(Framework::Laravel, &json_body), ["DELETE"]);
        assert_eq!(method(Framework::RackRails, &json_body), ["POST"]);
    }

    #[test]
    fn rewrite_headers_replace_the_path_for_legacy_symfony_on_iis() {
        let req = with_header(
            get("/partners/acme/orders"),
            "X-Original-URL",
            "/admin/users?x=1",
        );
        assert_eq!(path(Framework::SymfonyIis, &req), ["/admin/users"]);
        assert_eq!(path(Framework::Laravel, &req), ["/partners/acme/orders"]);
        let req = with_header(
            get("/partners/acme/orders"),
            "X-Rewrite-URL",
            "/admin%2Fusers",
        );
        assert_eq!(path(Framework::SymfonyIis, &req), ["/admin/users"]);
        let both = with_header(
            with_header(get("/p"), "X-Rewrite-URL", "/rewrite"),
            "X_Original_URL",
            "/original",
        );
        assert_eq!(path(Framework::SymfonyIis, &both), ["/original"]);
    }

    #[test]
    fn paths_are_decoded_once() {
        let req = get("/partners/%61cme/orders%252F?x=1");
        assert_eq!(
            path(Framework::ExpressQs, &req),
            ["/partners/acme/orders%2F"]
        );
        let slash = get("/partners/acme%2Forders");
        assert_eq!(
            path(Framework::GoNetHttp, &slash),
            ["/partners/acme/orders"]
        );
        assert_eq!(
            path(Framework::AspNetCore, &slash),
            ["/partners/acme%2Forders"]
        );
        let dots = get("/partners/globex/../acme/orders");
        assert_eq!(
            path(Framework::AspNetCore, &dots),
            ["/partners/acme/orders"]
        );
        assert_eq!(
            path(Framework::Php, &dots),
            ["/partners/globex/../acme/orders"]
        );
        let absolute = get("http://gateway.test/partners/acme?x=1");
        assert_eq!(path(Framework::Php, &absolute), ["/partners/acme"]);
    }

    #[test]
    fn disagreements_name_each_misreading() {
        let req = get("/partners/acme/orders?partner=acme&partner=globex");
        let found = disagreements(&req, &PARTNER_EXPECTED);
        assert!(found
            .iter()
            .any(|l| l.starts_with("Php: query \"partner\"")));
        assert!(found
            .iter()
            .any(|l| l.starts_with("ExpressQs: query \"partner\"")));
        assert!(!found.iter().any(|l| l.starts_with("GoNetHttp")));
        let json_req = post(
            "/partners/acme/orders",
            "application/json",
            r#"{"partner":"acme","Partner":"globex"}"#,
        );
        let expected = Expected {
            method: "POST",
            json: &[(&["partner"], json!("acme"))],
            params: &[],
            ..PARTNER_EXPECTED
        };
        let found = disagreements(&json_req, &expected);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("GoNetHttp: JSON"));
        assert!(found[1].starts_with("AspNetCore: JSON"));
    }

    #[test]
    fn json_parser_is_strict_and_keeps_duplicates() {
        assert_eq!(
            parse_json(br#"{"a":1,"a":[true,null,"\u00e9\ud83d\ude00"]}"#, false),
            Some(Json::Obj(vec![
                ("a".into(), Json::Num("1".into())),
                (
                    "a".into(),
                    Json::Arr(vec![Json::Bool(true), Json::Null, Json::Str("é😀".into())])
                ),
            ]))
        );
        for bad in [
            "{",
            "[1,]",
            "01",
            "{\"a\":NaN}",
            "\"\u{1}\"",
            "1 2",
            "-",
            "1.",
            "1e",
        ] {
            assert_eq!(parse_json(bad.as_bytes(), false), None, "{bad}");
        }
        assert_eq!(
            parse_json(br#""\ud800x""#, false),
            Some(Json::Str("\u{FFFD}x".into()))
        );
        let deep = "[".repeat(10_000);
        assert_eq!(parse_json(deep.as_bytes(), false), None);
    }
}
