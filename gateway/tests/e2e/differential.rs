//! The differential corpus: hostile and ordinary requests, over HTTP/1.1
//! and HTTP/2, through the gateway to a recording upstream. For every
//! request the gateway forwards, every modelled framework (PHP, Laravel,
//! Symfony behind IIS, Rails, Express with qs, Flask, Go, ASP.NET Core; see
//! `frameworks`) must read the same method, path, partner and bound values
//! the gateway checked. A request the gateway refuses reaches nobody.

use serde_json::json;

use crate::common::*;
use crate::frameworks::{disagreements, Expected};

/// What the gateway checks a corpus request as.
#[derive(Clone, Copy)]
enum Checked {
    /// `GET /echo/query`, bound by query parameter `partner`.
    Query,
    /// `POST /echo/query`, the same binding, with a form body.
    QueryForm,
    /// `POST /echo/body`, bound by the JSON member `/order/partner`.
    Body,
    /// `GET /partners/acme/orders`, bound by the path.
    Path,
}

struct Probe {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
    content_type: Option<&'static str>,
    checked: Checked,
}

fn query(q: &str) -> Probe {
    Probe {
        method: "GET",
        target: format!("/echo/query?{q}"),
        headers: Vec::new(),
        body: String::new(),
        content_type: None,
        checked: Checked::Query,
    }
}

fn form(q: &str, body: &str) -> Probe {
    Probe {
        method: "POST",
        target: format!("/echo/query?{q}"),
        headers: Vec::new(),
        body: body.to_string(),
        content_type: Some("application/x-www-form-urlencoded"),
        checked: Checked::QueryForm,
    }
}

fn json_body(body: &str) -> Probe {
    Probe {
        method: "POST",
        target: "/echo/body".into(),
        headers: Vec::new(),
        body: body.to_string(),
        content_type: Some("application/json"),
        checked: Checked::Body,
    }
}

fn path_with(headers: &[(&str, &str)]) -> Probe {
    Probe {
        method: "GET",
        target: "/partners/acme/orders".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: String::new(),
        content_type: None,
        checked: Checked::Path,
    }
}

fn with(mut probe: Probe, headers: &[(&str, &str)]) -> Probe {
    probe
        .headers
        .extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    probe
}

/// Each class of issue 16 with its variants, and the ordinary requests
/// beside them that must still go through.
fn corpus() -> Vec<Probe> {
    let mut probes = Vec::new();
    // Query names frameworks fold onto the bound one.
    for q in [
        "partner=acme",
        "Partner=acme",
        "partner=%61cme",
        "partner=acme&limit=5",
        "partner=acme&partner=acme",
        "partner=acme&partner=globex",
        "partner=acme;partner=globex",
        "partner=acme&partner[]=globex",
        "partner=acme&partner%5B%5D=globex",
        "partner=acme&partner[0]=globex",
        "partner[$ne]=acme",
        "partner[]=acme",
        "partner=acme&partner[x][y]=globex",
        "partner=acme&partner.x=globex",
        "partner=acme&%20partner=globex",
        "partner=acme&[partner]=globex",
        "partner=acme&partner%00x=globex",
        "partner=acme&_method=DELETE",
        "partner=acme&%5Fmethod=DELETE",
    ] {
        probes.push(query(q));
    }
    // Override and rewrite headers, in every spelling a framework reads.
    for (name, value) in [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Original-URL", "/partners/globex/orders"),
        ("X-Rewrite-URL", "/partners/globex/orders"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("X_Original_URL", "/partners/globex/orders"),
    ] {
        probes.push(path_with(&[(name, value)]));
        probes.push(with(query("partner=acme"), &[(name, value)]));
    }
    // Identity headers the gateway sets, claimed by the client.
    for (name, value) in [
        ("X-Partner-Id", "globex"),
        ("X_Partner_Id", "globex"),
        ("X.Partner.Id", "globex"),
        ("x-partner-id", "acme"),
    ] {
        probes.push(path_with(&[(name, value)]));
    }
    // Form bodies merged into the parameters, and their method override.
    for (q, body) in [
        ("partner=acme", "sku=A"),
        ("partner=acme", "partner=acme&sku=A"),
        ("partner=acme", "partner=globex"),
        ("partner=acme", "partner[]=globex"),
        ("partner=acme", "_method=DELETE"),
        ("partner=acme", "sku=A&%5Fmethod=PUT"),
    ] {
        probes.push(form(q, body));
    }
    // JSON keys as case-insensitive binders read them.
    for body in [
        r#"{"order":{"partner":"acme","sku":"A"}}"#,
        r#"{"order":{"p\u0061rtner":"acme"}}"#,
        r#"{"order":{"partner":"acme","Partner":"globex"}}"#,
        r#"{"order":{"partner":"acme","PARTNER":"globex"}}"#,
        r#"{"order":{"partner":"acme"},"Order":{"partner":"globex"}}"#,
        r#"{"order":{"partner":"acme"},"order":{"partner":"globex"}}"#,
        "{\"order\":{\"partner\":\"acme\",\"\u{17F}ku\":1,\"sku\":2}}",
        r#"{"order":{"partner":"acme"},"_method":"DELETE"}"#,
        r#"{"order":{"partner":"acme","quantity":1.0000000000000000001}}"#,
    ] {
        probes.push(json_body(body));
    }
    probes
}

/// The body binding's member, as the frameworks look it up.
type BoundJson<'a> = [(&'a [&'a str], serde_json::Value)];

impl Probe {
    fn expected<'a>(&self, body_bound: &'a BoundJson<'a>) -> Expected<'a> {
        const PARAMS: &[(&str, &str)] = &[("partner", "acme")];
        const NONE: &[(&str, &str)] = &[];
        match self.checked {
            Checked::Query => Expected {
                method: "GET",
                path: "/echo/query",
                partner: Some("acme"),
                params: PARAMS,
                json: &[],
            },
            Checked::QueryForm => Expected {
                method: "POST",
                path: "/echo/query",
                partner: Some("acme"),
                params: PARAMS,
                json: &[],
            },
            Checked::Body => Expected {
                method: "POST",
                path: "/echo/body",
                partner: Some("acme"),
                params: NONE,
                json: body_bound,
            },
            Checked::Path => Expected {
                method: "GET",
                path: "/partners/acme/orders",
                partner: Some("acme"),
                params: NONE,
                json: &[],
            },
        }
    }

    fn h1(&self, id: &str) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: gateway.test\r\nX-Request-Id: {id}\r\n",
            self.method, self.target
        );
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(ct) = self.content_type {
            out.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framework_reads_what_the_gateway_checked() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("meaning.yaml".into(), crate::one_meaning::policy(&up.url()))];
    let gw = Gateway::start(config).await;
    let probes = corpus();
    let body_bound = [(&["order", "partner"][..], json!("acme"))];
    let mut forwarded = 0;
    let mut refused = 0;
    let mut misread = Vec::new();
    for (i, probe) in probes.iter().enumerate() {
        for over_h2 in [false, true] {
            let id = format!("corpus-{i:03}-{}", if over_h2 { "h2" } else { "h1" });
            up.recorder.clear();
            let status = if over_h2 {
                let mut headers: Vec<(&str, &str)> = probe
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                headers.push(("x-request-id", &id));
                if let Some(ct) = probe.content_type {
                    headers.push(("content-type", ct));
                }
                h2_raw(
                    &gw,
                    probe.method,
                    &probe.target,
                    &headers,
                    probe.body.as_bytes(),
                )
                .await
                .0
            } else {
                raw_request(&gw, &probe.h1(&id))
                    .await
                    .expect("an answer")
                    .status
            };
            let seen = up.recorder.requests();
            if seen.is_empty() {
                assert!(
                    status >= 400,
                    "{id} {}: {status} without the upstream",
                    probe.target
                );
                refused += 1;
                continue;
            }
            assert_eq!(seen.len(), 1, "{id}");
            assert_eq!(seen[0].header("x-request-id"), Some(id.as_str()));
            forwarded += 1;
            let wrong = disagreements(&seen[0], &probe.expected(&body_bound));
            if !wrong.is_empty() {
                misread.push(format!(
                    "{id} {} {:?}: {wrong:#?}",
                    probe.target, probe.body
                ));
            }
        }
    }
    assert!(
        misread.is_empty(),
        "forwarded requests a framework reads differently:\n{}",
        misread.join("\n")
    );
    // The corpus must exercise both sides, or it proves nothing.
    assert!(forwarded >= 20, "only {forwarded} forwarded");
    assert!(refused >= 40, "only {refused} refused");
}
