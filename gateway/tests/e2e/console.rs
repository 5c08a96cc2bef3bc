//! The partner console over HTTP: signing in with a management credential
//! and a one-time code, the session cookie, CSRF, expiry, isolation. The
//! page itself is driven in a real browser by `console_browser.rs`.

use serde_json::{json, Value};

use crate::common::*;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A client that keeps nothing between requests: the test sends cookies.
fn browserless(gw: &Gateway) -> reqwest::Client {
    gw.partner_client(None)
}

/// Signs in; returns (status, body, the cookie's `name=value`).
pub async fn sign_in(gw: &Gateway, credential: &str, code: &str) -> (u16, Value, Option<String>) {
    let resp = browserless(gw)
        .post(gw.partner_url("/console/session"))
        .json(&json!({"credential": credential, "code": code}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body,
        cookie.map(|c| c.split(';').next().unwrap().to_string()),
    )
}

async fn with_session(
    gw: &Gateway,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = browserless(gw)
        .request(method, gw.partner_url(path))
        .header("cookie", cookie);
    if let Some(token) = csrf {
        req = req.header("x-csrf-token", token);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// A well-formed code that no step near now accepts.
fn wrong_code(secret: &[u8]) -> String {
    let near: Vec<String> = [now() - 60, now() - 30, now(), now() + 30, now() + 60]
        .iter()
        .map(|t| portcullis::keys::totp::code(secret, *t))
        .collect();
    (0..100u32)
        .map(|i| format!("{:06}", i * 10_007))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The current code (one step either side is accepted too, so a test
/// does not race the 30 s boundary).
fn code(secret: &[u8]) -> String {
    portcullis::keys::totp::code(secret, now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_needs_the_credential_and_a_fresh_code() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let (credential, secret) = gw.management_credential_with_totp("acme", "console").await;

    // The page and its script come with a policy that forbids anything inline.
    let page = browserless(&gw)
        .get(gw.partner_url("/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/console/app.js") && !html.contains("<script>"),
        "no inline script"
    );

    let (status, body, cookie) = sign_in(&gw, &credential, &wrong_code(&secret)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("totp_invalid")));
    assert!(cookie.is_none());
    let (status, body, _) = sign_in(&gw, gw.key("acme"), &code(&secret)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("credential_invalid"))
    );

    let good = code(&secret);
    let (status, body, cookie) = sign_in(&gw, &credential, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partner"], "acme");
    let set = cookie.expect("a session cookie");
    assert!(set.starts_with("__Host-portcullis-console="));
    // The same code again is refused: a code signs in once.
    let (status, body, _) = sign_in(&gw, &credential, &good).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("totp_invalid")));

    let csrf = body_csrf(&gw, &set).await;
    let (status, listed) = with_session(&gw, "GET", "/v1/keys", &set, None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["partner"], "acme");
    // A change without the session's CSRF token is refused and changes nothing.
    let (status, body) = with_session(&gw, "POST", "/v1/keys/revoke-all", &set, None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("csrf_failed")));
    let (status, body) = with_session(
        &gw,
        "POST",
        "/v1/keys/revoke-all",
        &set,
        Some("0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("csrf_failed")));
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, gone) = with_session(&gw, "POST", "/v1/keys/revoke-all", &set, Some(&csrf)).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Revoking the credential ends its sessions at once.
    let (status, _) = gw
        .admin_api("DELETE", "/v1/keys/acme/mgmt.console", None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = with_session(&gw, "GET", "/v1/keys", &set, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired"))
    );
    // A forged cookie is no session.
    let forged = set.replacen("acme", "globex", 1);
    let (status, _) = with_session(&gw, "GET", "/v1/keys", &forged, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        up.recorder.len(),
        1,
        "only the request made before revoke-all arrived"
    );
}

async fn body_csrf(gw: &Gateway, cookie: &str) -> String {
    let (status, body) = with_session(gw, "GET", "/console/session", cookie, None).await;
    assert_eq!(status, 200, "{body}");
    body["csrf"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sees_only_its_own_partner() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let (acme_credential, acme_secret) =
        gw.management_credential_with_totp("acme", "console").await;
    let (globex_credential, globex_secret) = gw
        .management_credential_with_totp("globex", "console")
        .await;
    // Traffic of both partners, for the activity view.
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let globex = gw.client_with_key(Some(gw.key("globex")));
    assert_eq!(
        globex
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let (_, _, acme_cookie) = sign_in(&gw, &acme_credential, &code(&acme_secret)).await;
    let acme_cookie = acme_cookie.unwrap();
    let (_, _, globex_cookie) = sign_in(&gw, &globex_credential, &code(&globex_secret)).await;
    let globex_cookie = globex_cookie.unwrap();

    // globex's session cannot touch acme's key by id.
    let (_, listed) = with_session(&gw, "GET", "/v1/keys", &acme_cookie, None).await;
    let acme_id = listed["keys"][0]["key_id"].as_str().unwrap().to_string();
    let csrf = body_csrf(&gw, &globex_cookie).await;
    let (status, body) = with_session(
        &gw,
        "POST",
        &format!("/v1/keys/{acme_id}/regenerate"),
        &globex_cookie,
        Some(&csrf),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("key_not_found"))
    );

    // The activity view holds acme's lines only.
    let activity = eventually(
        "acme's request in its activity",
        std::time::Duration::from_secs(10),
        || async {
            let (_, body) = with_session(&gw, "GET", "/v1/activity", &acme_cookie, None).await;
            let entries = body["entries"].as_array()?.clone();
            entries
                .iter()
                .any(|e| e["what"] == "list-orders")
                .then_some(entries)
        },
    )
    .await;
    assert!(activity
        .iter()
        .any(|e| e["what"] == "partner_console_signed_in"));
    let text = serde_json::to_string(&activity).unwrap();
    assert!(
        !text.contains("globex") && !text.contains(&gw.key("acme")[9..]),
        "{text}"
    );
}

// Its own gateway with a one-second session: a short lifetime shared with the isolation checks
// above expired under a loaded CI machine before they were done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_lifetime_is_refused_and_its_cookie_cleared() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.partner_listener = "  session_ttl: 1s\n".into();
    let gw = Gateway::start(cfg).await;
    let (credential, secret) = gw.management_credential_with_totp("acme", "console").await;
    let (status, _, cookie) = sign_in(&gw, &credential, &code(&secret)).await;
    assert_eq!(status, 200);
    let acme_cookie = cookie.unwrap();
    let resp = eventually(
        "the session to expire",
        std::time::Duration::from_secs(10),
        || async {
            let resp = browserless(&gw)
                .get(gw.partner_url("/v1/keys"))
                .header("cookie", &acme_cookie)
                .send()
                .await
                .ok()?;
            (resp.status() == 401).then_some(resp)
        },
    )
    .await;
    assert!(resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "session_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_one_time_codes_blocks_the_address() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.extra =
        "abuse:\n  auth_failures:\n    per_client: 3\n    window: 1m\n    block_for: 1m\n".into();
    let gw = Gateway::start(cfg).await;
    let (credential, secret) = gw.management_credential_with_totp("acme", "console").await;
    let wrong = vec![wrong_code(&secret); 4];
    let mut seen = Vec::new();
    for guess in &wrong {
        let (status, body, cookie) = sign_in(&gw, &credential, guess).await;
        assert!(cookie.is_none());
        seen.push((status, body["code"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(seen[0], (401, "totp_invalid".to_string()));
    assert_eq!(seen[3], (429, "client_blocked".to_string()), "{seen:?}");
    // Blocked, the right code does not sign in either.
    let (status, _, cookie) = sign_in(&gw, &credential, &code(&secret)).await;
    assert_eq!(status, 429);
    assert!(cookie.is_none());
}
