//! The signed identity assertion, verified by the example upstream with a
//! stock JWT library: requests through the gateway pass; requests that
//! bypass it, forge or transplant an assertion do not.

use portcullis_example_upstream::{AssertionCheck, Options};

use crate::common::*;

fn identity_yaml(algorithm: &str, key_file: &std::path::Path) -> String {
    format!(
        "identity:\n  assertion:\n    algorithm: {algorithm}\n    key_file: {}\n    ttl: 30s\n",
        key_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_can_tell_a_request_came_through_the_gateway() {
    let keys = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = keys.path().join("assertion.pem");
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    let check = AssertionCheck::ed25519(pair.public_key_pem().as_bytes(), "orders").unwrap();
    let up = Upstream::start_with(Options {
        assertion: Some(check),
    })
    .await;
    let mut config = GatewayConfig::orders(&up.url());
    config.extra = identity_yaml("ed25519", &private);
    let gw = Gateway::start(config).await;

    // Through the gateway: accepted, even when the client sends its own assertion.
    let resp = raw_request(
        &gw,
        b"GET /partners/acme/orders?x=1 HTTP/1.1\r\nHost: gateway.test\r\nX-Portcullis-Assertion: forged\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.recorder.requests();
    assert_eq!(seen[0].header_count("x-portcullis-assertion"), 1);
    let token = seen[0]
        .header("x-portcullis-assertion")
        .unwrap()
        .to_string();
    assert_ne!(token, "forged");
    let (status, _) = h2_raw(&gw, "GET", "/partners/acme/orders/acme-1001", &[], b"").await;
    assert_eq!(status, 200, "HTTP/2 too");

    // Around the gateway: refused by the upstream itself.
    let direct = reqwest::Client::new();
    let base = up.url();
    let resp = direct
        .get(format!("{base}/partners/acme/orders?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no assertion");
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for (path, assertion, why) in [
        (
            "/partners/acme/orders?x=1",
            forged.as_str(),
            "a bad signature",
        ),
        (
            "/partners/globex/orders?x=1",
            token.as_str(),
            "another partner's path",
        ),
        ("/partners/acme/orders?x=2", token.as_str(), "another query"),
    ] {
        let resp = direct
            .get(format!("{base}{path}"))
            .header("x-portcullis-assertion", assertion)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{why}");
    }
    let resp = direct
        .post(format!("{base}/partners/acme/orders?x=1"))
        .header("x-portcullis-assertion", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "another method");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_assertions_work_too() {
    let keys = tempfile::tempdir().unwrap();
    let secret = "a5".repeat(32);
    let file = keys.path().join("assertion.hex");
    std::fs::write(&file, &secret).unwrap();
    // The right secret passes; a different one makes every assertion
    // worthless to the upstream.
    for (upstream_secret, expected) in [(secret.clone(), 200), ("5a".repeat(32), 401)] {
        let up = Upstream::start_with(Options {
            assertion: Some(AssertionCheck::hmac_hex(&upstream_secret, "orders").unwrap()),
        })
        .await;
        let mut config = GatewayConfig::orders(&up.url());
        config.extra = identity_yaml("hmac-sha256", &file);
        let gw = Gateway::start(config).await;
        let resp = gw
            .client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
    }
}
