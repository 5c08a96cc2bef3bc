//! The price per request of the policy stages: partner and route
//! admission, path/query/header bindings, the JSON body binding, the
//! response guard and JSON Schema validation, with a plain `serde_json`
//! parse of the same bytes as the baseline.
//! Run: `cargo bench -p portcullis-benches --bench policy`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::stage::body::{bound_to, parse_strict, Pointer, MAX_DEPTH};
use portcullis::stage::isolation::{admit_partner, admit_route, check_bindings, Binding, Partner};
use portcullis::stage::schemas::{compile, property_types, Loader};
use portcullis::stage::validate::{BodySchema, ParamSchema, RouteValidation};

fn partner() -> Partner {
    Partner {
        id: "acme".into(),
        suspended: false,
        scopes: [
            "orders:read",
            "orders:write",
            "invoices:read",
            "stock:read",
            "ship:write",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        routes: None,
        self_rotation: false,
        allow_ips: Some(
            ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8"]
                .iter()
                .map(|n| n.parse().unwrap())
                .collect(),
        ),
        max_concurrent: None,
        rate: None,
    }
}

/// A JSON document of about `len` bytes: an order list of the caller.
fn orders_json(len: usize) -> Vec<u8> {
    let item = r#"{"id":"acme-1001","partner":"acme","sku":"X-1","quantity":3,"note":"leave at the door"}"#;
    let mut out = String::from(r#"{"partner":"acme","orders":["#);
    while out.len() + item.len() + 2 < len {
        if !out.ends_with('[') {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push_str("]}");
    out.into_bytes()
}

fn admission(c: &mut Criterion) {
    let p = partner();
    let client = Some("127.0.0.1".parse().unwrap());
    let scopes = vec!["orders:read".to_string()];
    let params = vec![
        ("partner".to_string(), "acme".to_string()),
        ("id".to_string(), "acme-1001".to_string()),
    ];
    let path_only = Binding {
        path: Some("partner".into()),
        ..Binding::default()
    };
    let all = Binding {
        path: Some("partner".into()),
        query: Some("partner".into()),
        header: Some(HeaderName::from_static("x-account")),
        body: None,
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-account", HeaderValue::from_static("acme"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let query = Some("limit=20&partner=acme&cursor=abc");

    c.bench_function("isolation/admit partner + route + path binding", |b| {
        b.iter(|| {
            admit_partner(Some(black_box(&p)), client).unwrap();
            admit_route(&p, "get-order", &scopes).unwrap();
            check_bindings(&path_only, black_box(&params), None, &headers, "acme").unwrap();
        })
    });
    c.bench_function("isolation/path + query + header bindings", |b| {
        b.iter(|| check_bindings(&all, black_box(&params), query, &headers, "acme").unwrap())
    });
}

fn json(c: &mut Criterion) {
    let request_pointer = Pointer::parse("/partner", false).unwrap();
    let response_pointer = Pointer::parse("/orders/*/partner", true).unwrap();
    for (label, len) in [("1 KiB", 1024), ("64 KiB", 64 * 1024)] {
        let doc = orders_json(len);
        c.bench_function(&format!("json/baseline serde_json parse {label}"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&doc)).unwrap())
        });
        c.bench_function(&format!("json/body binding {label}"), |b| {
            b.iter(|| {
                let v = parse_strict(black_box(&doc), MAX_DEPTH).unwrap();
                bound_to(&request_pointer, &v, "acme")
            })
        });
        c.bench_function(&format!("json/response guard (wildcard) {label}"), |b| {
            b.iter(|| {
                let v = parse_strict(black_box(&doc), MAX_DEPTH).unwrap();
                bound_to(&response_pointer, &v, "acme")
            })
        });
    }
}

/// The order-list schema the validation benchmarks check bodies against.
fn list_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "required": ["partner", "orders"],
        "properties": {
            "partner": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
            "orders": {"type": "array", "items": {
                "type": "object",
                "additionalProperties": false,
                "required": ["id", "partner", "sku", "quantity"],
                "properties": {
                    "id": {"type": "string"},
                    "partner": {"type": "string"},
                    "sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,32}$"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "note": {"type": "string", "maxLength": 200}
                }
            }}
        }
    })
}

fn validation(c: &mut Criterion) {
    let dir = std::env::temp_dir();
    let loader = Loader::new(vec![dir.clone()]);
    let route = RouteValidation {
        body: Some(BodySchema {
            validator: compile(&list_schema(), &dir, None, &loader).unwrap(),
            content_types: vec!["application/json".into()],
            required: true,
            max_depth: 32,
        }),
        query: Some({
            let q = serde_json::json!({"type": "object", "properties": {
                "limit": {"type": "integer", "maximum": 100},
                "status": {"enum": ["open", "shipped"]}}});
            ParamSchema {
                validator: compile(&q, &dir, None, &loader).unwrap(),
                properties: property_types(&q, &dir, &loader).unwrap(),
            }
        }),
        ..RouteValidation::default()
    };
    let headers = HeaderMap::new();
    c.bench_function("validation/query (2 typed parameters)", |b| {
        b.iter(|| {
            route
                .check_params(black_box(Some("limit=20&status=open")), &[], &headers)
                .unwrap()
        })
    });
    for (label, len) in [("1 KiB", 1024), ("64 KiB", 64 * 1024)] {
        let doc = orders_json(len);
        c.bench_function(&format!("validation/body {label} (parse + schema)"), |b| {
            b.iter(|| {
                route
                    .check_body(Some("application/json"), black_box(&doc))
                    .unwrap()
            })
        });
    }
}

fn response(c: &mut Criterion) {
    use portcullis::stage::minimise::{FieldFilter, LeakScanner};
    let allow = FieldFilter::allow(&[
        "/partner".into(),
        "/orders/*/id".into(),
        "/orders/*/sku".into(),
        "/orders/*/quantity".into(),
    ])
    .unwrap();
    let deny = FieldFilter::deny(&["/orders/*/note".into()]).unwrap();
    for (label, len) in [("1 KiB", 1024), ("256 KiB", 256 * 1024)] {
        let doc = orders_json(len);
        c.bench_function(
            &format!("response/allow-list filter {label} (spans cut from the bytes)"),
            |b| b.iter(|| allow.apply(black_box(&doc)).unwrap()),
        );
        c.bench_function(
            &format!("response/deny-list filter {label} (spans cut from the bytes)"),
            |b| b.iter(|| deny.apply(black_box(&doc)).unwrap()),
        );
        c.bench_function(&format!("response/leak scan {label}"), |b| {
            b.iter(|| LeakScanner::default().leaks(black_box(&doc)))
        });
    }
}

fn assertion(c: &mut Criterion) {
    use portcullis::config::model::{AssertionAlgorithm, AssertionSettings};
    use portcullis::stage::assertion::{Claims, Signer};
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("ed.pem");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(&ed, pair.serialize_pem()).unwrap();
    let hmac = dir.path().join("hmac.hex");
    std::fs::write(&hmac, "3c".repeat(32)).unwrap();
    let claims = Claims {
        upstream: "orders",
        partner: "acme",
        request_id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        method: "GET",
        path_and_query: "/partners/acme/orders?limit=20",
        issued_at: 1_800_000_000,
    };
    for (label, algorithm, key_file) in [
        ("Ed25519", AssertionAlgorithm::Ed25519, ed),
        ("HMAC-SHA256", AssertionAlgorithm::HmacSha256, hmac),
    ] {
        let signer = Signer::load(&AssertionSettings {
            algorithm,
            key_file,
            header: "x-portcullis-assertion".into(),
            ttl: std::time::Duration::from_secs(60),
        })
        .unwrap();
        c.bench_function(&format!("assertion/sign {label}"), |b| {
            b.iter(|| signer.sign(black_box(&claims)).unwrap())
        });
    }
}

criterion_group!(benches, admission, json, validation, response, assertion);
criterion_main!(benches);
