//! Authentication: every request carries a valid partner key; keys are
//! hashed, never forwarded, and rotation/revocation take effect at once.

use crate::common::*;

const LIST: &[u8] = b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n";

async fn send(gw: &Gateway, extra_headers: &str) -> RawResponse {
    let mut req = LIST.to_vec();
    req.extend_from_slice(extra_headers.as_bytes());
    req.extend_from_slice(b"\r\n");
    raw_request_as_is(gw, &req).await.expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_is_accepted_and_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let key = gw.key("acme").to_string();
    let resp = send(
        &gw,
        &format!("X-API-Key: {key}\r\nX-Partner-Id: globex\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200);
    let resp = send(&gw, &format!("Authorization: Bearer {key}\r\n")).await;
    assert_eq!(resp.status, 200);
    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.header("x-api-key"), None);
        assert_eq!(r.header("authorization"), None);
        assert_eq!(
            r.header("x-partner-id"),
            Some("acme"),
            "the gateway's word, not the client's"
        );
        assert_eq!(r.header_count("x-partner-id"), 1);
        assert!(!format!("{r:?}").contains(&key));
    }
    // The key never shows up in the gateway's own logs either.
    assert!(!gw.logs().contains(&key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_unknown_and_misplaced_keys_are_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let acme = gw.key("acme").to_string();
    let globex = gw.key("globex").to_string();
    // A well-formed key that was never issued: valid prefix, alphabet and checksum.
    let unknown = {
        let out = keys_cli(gw.dir.path(), &["list"]);
        assert_eq!(out.0, 0, "{}", out.2);
        // Issue one from a different pepper: well-formed, unknown here.
        let dir = tempfile::tempdir().unwrap();
        issue_keys(dir.path()).await["acme"].clone()
    };
    let mut typo = acme.clone().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();

    let cases: Vec<(String, u16, &str)> = vec![
        (String::new(), 401, "key_missing"),
        ("X-API-Key: \r\n".into(), 401, "key_missing"),
        ("X-API-Key: secret123\r\n".into(), 401, "key_malformed"),
        (format!("X-API-Key: {typo}\r\n"), 401, "key_malformed"),
        (format!("X-API-Key: {unknown}\r\n"), 401, "key_invalid"),
        (
            "Authorization: Basic YWNtZTpodW50ZXIy\r\n".into(),
            400,
            "conflicting_credentials",
        ),
        (
            format!("X-API-Key: {acme}\r\nAuthorization: Bearer {globex}\r\n"),
            400,
            "conflicting_credentials",
        ),
        (
            format!("X-API-Key: {acme}\r\nX-API-Key: {globex}\r\n"),
            400,
            "conflicting_credentials",
        ),
    ];
    for (headers, status, code) in cases {
        let resp = send(&gw, &headers).await;
        assert_problem(&resp, status, code);
        if status == 401 {
            assert!(resp
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
        let body = String::from_utf8_lossy(&resp.body);
        assert!(!body.contains("ptc_live_"), "a key echoed back: {body}");
    }
    let in_query =
        format!("GET /partners/acme/orders?api_key={acme} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
    let resp = raw_request_as_is(&gw, in_query.as_bytes()).await.unwrap();
    assert_problem(&resp, 400, "key_in_url");
    let in_query = format!("GET /partners/acme/orders?q={acme} HTTP/1.1\r\nHost: gateway.test\r\nX-API-Key: {acme}\r\n\r\n");
    let resp = raw_request_as_is(&gw, in_query.as_bytes()).await.unwrap();
    assert_problem(&resp, 400, "key_in_url");
    // A credential parameter that is not key-shaped is still no place for one.
    let named = format!("GET /partners/acme/orders?api_key=secret HTTP/1.1\r\nHost: gateway.test\r\nX-API-Key: {acme}\r\n\r\n");
    let resp = raw_request_as_is(&gw, named.as_bytes()).await.unwrap();
    assert_problem(&resp, 400, "key_in_query");

    // Unauthenticated clients learn nothing about which routes exist.
    let resp = raw_request_as_is(
        &gw,
        b"GET /no/such/route HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 401, "key_missing");
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let past = 1_000_000_000u64;
    let (status, body) = gw
        .admin_api(
            "POST",
            "/v1/keys",
            Some(serde_json::json!({"partner": "acme", "name": "old", "expires_at": past})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    let resp = send(&gw, &format!("X-API-Key: {key}\r\n")).await;
    assert_problem(&resp, 401, "key_expired");
    assert!(up.recorder.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_key_cannot_take_over_the_partner_by_rotating_itself() {
    let up = Upstream::start().await;
    // Default policy: self-rotation is off.
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let stolen = gw.key("acme").to_string();
    let attacker = gw.client_with_key(Some(&stolen));
    for _ in 0..3 {
        let resp = attacker
            .post(gw.url("/.portcullis/v1/keys/rotate"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "self_rotation_disabled");
        assert!(body.get("key").is_none(), "{body}");
        let record = gw.audit_record(&request_id).await;
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(record["reason"], "self_rotation_disabled", "{record}");
    }
    // The real partner still has its key, and it is still the only one.
    let resp = send(&gw, &format!("X-API-Key: {stolen}\r\n")).await;
    assert_eq!(resp.status, 200);
    let (status, listed) = gw.admin_api("GET", "/v1/keys?partner=acme", None).await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["self_rotated"], false, "{listed:?}");
    // Only the partner's own request reached the upstream.
    assert_eq!(up.recorder.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_by_self_rotation_cannot_rotate_itself_again() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url()).with_self_rotation()).await;
    let first = gw.client_with_key(Some(gw.key("acme")));
    let resp = first
        .post(gw.url("/.portcullis/v1/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let second = body["key"].as_str().unwrap().to_string();

    let chained = gw.client_with_key(Some(&second));
    let resp = chained
        .post(gw.url("/.portcullis/v1/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "self_rotation_spent");
    assert!(body.get("key").is_none(), "{body}");
    // The refused rotation changed nothing: the second key still works.
    let resp = send(&gw, &format!("X-API-Key: {second}\r\n")).await;
    assert_eq!(resp.status, 200);
    let (_, listed) = gw.admin_api("GET", "/v1/keys?partner=acme", None).await;
    assert_eq!(listed["keys"][0]["self_rotated"], true, "{listed}");
    // An operator's rotation gives the partner a key that may rotate itself again.
    let (status, rotated) = gw
        .admin_api("POST", "/v1/keys/acme/primary/rotate", None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["self_rotated"], false, "{rotated}");
    let fresh = gw.client_with_key(Some(rotated["key"].as_str().unwrap()));
    let resp = fresh
        .post(gw.url("/.portcullis/v1/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.recorder.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holders_of_one_key_cannot_both_rotate_it() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url()).with_self_rotation()).await;
    let key = gw.key("acme").to_string();
    // Verified and cached first, so every racer passes authentication.
    assert_eq!(
        send(&gw, &format!("X-API-Key: {key}\r\n")).await.status,
        200
    );
    let racers = (0..6).map(|_| {
        let client = gw.client_with_key(Some(&key));
        let url = gw.url("/.portcullis/v1/keys/rotate");
        async move {
            let resp = client.post(url).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    });
    let answers = futures_util::future::join_all(racers).await;
    let won: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 401, "{body}");
        assert_eq!(body["code"], "key_invalid", "{body}");
    }
    // The winner's key is the partner's only key, and it works.
    let winner = won[0].1["key"].as_str().unwrap();
    assert_eq!(
        send(&gw, &format!("X-API-Key: {winner}\r\n")).await.status,
        200
    );
    let (_, listed) = gw.admin_api("GET", "/v1/keys?partner=acme", None).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["keys"][0]["key_id"], won[0].1["key_id"], "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_regenerates_its_own_key_and_the_old_one_dies_at_once() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url()).with_self_rotation()).await;
    let old = gw.key("acme").to_string();
    let client = gw.client();
    // Warm the cache with the old key first: rotation must beat the cache.
    assert_eq!(
        client
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = client
        .post(gw.url("/.portcullis/v1/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    let new = body["key"].as_str().unwrap().to_string();
    assert!(new.starts_with("ptc_live_") && new != old);
    assert_eq!(body["partner"], "acme");

    let resp = send(&gw, &format!("X-API-Key: {old}\r\n")).await;
    assert_problem(&resp, 401, "key_invalid");
    let resp = send(&gw, &format!("X-API-Key: {new}\r\n")).await;
    assert_eq!(resp.status, 200);
    // globex's key is untouched.
    let globex = gw.client_with_key(Some(gw.key("globex")));
    assert_eq!(
        globex
            .get(gw.url("/partners/globex/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A rotation the partner asked for is allowed, not a refusal.
    let record = gw.audit_record(&request_id).await;
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["reason"], "key_rotated", "{record}");
    let metrics = gw.metrics().await;
    let counted = metrics.lines().find(|l| {
        l.starts_with("portcullis_requests_total{") && l.contains("code=\"key_rotated\"")
    });
    assert!(
        counted.is_some_and(|l| l.contains("decision=\"allow\"") && l.ends_with(" 1")),
        "the rotation is counted as allowed: {counted:?}"
    );
    // The rotation itself never reached the upstream.
    assert!(up
        .recorder
        .requests()
        .iter()
        .all(|r| !r.path_and_query.contains(".portcullis")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_keys_with_the_cli_against_a_running_gateway() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let dir = gw.dir.path();
    let client = gw.client();
    assert_eq!(
        client
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A second, named key: created through the gateway's admin API.
    let (code, out, err) = keys_cli(dir, &["create", "--partner", "acme", "--name", "migration"]);
    assert_eq!(code, 0, "{err}");
    let second = out.lines().last().unwrap().to_string();
    assert!(second.starts_with("ptc_live_"), "{out}");
    assert_eq!(
        send(&gw, &format!("X-API-Key: {second}\r\n")).await.status,
        200
    );

    // Rotating primary kills the old primary at once, leaves the second alone.
    let (code, out, err) = keys_cli(dir, &["rotate", "--partner", "acme"]);
    assert_eq!(code, 0, "{err}");
    let rotated = out.lines().last().unwrap().to_string();
    assert_problem(
        &send(&gw, &format!("X-API-Key: {}\r\n", gw.key("acme"))).await,
        401,
        "key_invalid",
    );
    assert_eq!(
        send(&gw, &format!("X-API-Key: {rotated}\r\n")).await.status,
        200
    );
    assert_eq!(
        send(&gw, &format!("X-API-Key: {second}\r\n")).await.status,
        200
    );

    // Listing never shows secrets.
    let (code, out, _) = keys_cli(dir, &["list", "--partner", "acme"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.contains("ptc_live_"), "{out}");

    // Revoking is immediate too.
    let (code, _, err) = keys_cli(dir, &["revoke", "--partner", "acme", "--name", "migration"]);
    assert_eq!(code, 0, "{err}");
    assert_problem(
        &send(&gw, &format!("X-API-Key: {second}\r\n")).await,
        401,
        "key_invalid",
    );
    let (code, _, err) = keys_cli(dir, &["revoke", "--partner", "acme", "--name", "migration"]);
    assert_eq!(code, 1);
    assert!(err.contains("key_not_found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_api_requires_its_token_and_is_not_public() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let mut s = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET /v1/keys HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong-token-wrong-token-wrong-token\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await.unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["code"], "admin_token_invalid");
    let (status, body) = gw.admin_api("GET", "/v1/keys", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"].as_array().unwrap().len(), 2);
    assert!(!body.to_string().contains("ptc_live_"));
    // A second key of the same name is a conflict; an unknown one is not found.
    let (status, body) = gw
        .admin_api(
            "POST",
            "/v1/keys",
            Some(serde_json::json!({"partner": "acme", "name": "primary"})),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("key_conflict")));
    let (status, body) = gw
        .admin_api("POST", "/v1/keys/acme/nope/rotate", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("key_not_found"))
    );
    // The same path on the public listener is just an unknown route.
    let resp = gw.client().get(gw.url("/v1/keys")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_guessing_keys_is_refused_before_the_store_is_asked() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = "  unknown_key_limit: 3\n  unknown_key_window: 60s\n".into();
    let gw = Gateway::start(cfg).await;
    // acme's key is verified (and cached) before the guessing starts.
    assert_eq!(
        send(&gw, &format!("X-API-Key: {}\r\n", gw.key("acme")))
            .await
            .status,
        200
    );
    for _ in 0..3 {
        let guess = portcullis::keys::format::generate();
        assert_problem(
            &send(&gw, &format!("X-API-Key: {}\r\n", guess.reveal())).await,
            401,
            "key_invalid",
        );
    }
    let misses_before = gw.metric("portcullis_key_cache_misses_total").await;
    let guess = portcullis::keys::format::generate();
    assert_problem(
        &send(&gw, &format!("X-API-Key: {}\r\n", guess.reveal())).await,
        429,
        "too_many_unknown_keys",
    );
    assert_eq!(
        gw.metric("portcullis_key_cache_misses_total").await,
        misses_before,
        "no store lookup"
    );
    assert!(gw.metric("portcullis_key_lookups_refused_total").await >= 1.0);
    // The already-verified key keeps working.
    assert_eq!(
        send(&gw, &format!("X-API-Key: {}\r\n", gw.key("acme")))
            .await
            .status,
        200
    );
    assert!(gw.metric("portcullis_key_cache_hits_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_rotation_only_answers_post() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let resp = raw_request(
        &gw,
        b"GET /.portcullis/v1/keys/rotate HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 405, "method_not_allowed");
    assert_eq!(resp.header("allow"), Some("POST"));
    // The key was not rotated, and nothing reached the upstream.
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.recorder.len(), 1);
}
