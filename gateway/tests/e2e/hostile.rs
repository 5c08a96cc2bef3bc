//! Hostile input beyond the framing basics in `protocol.rs`: obfuscated
//! Transfer-Encoding, HTTP/1.0 bodies, control characters and bare line
//! feeds, protocol upgrades, JSON bombs and HTTP/2 abuse. Each is refused,
//! the upstream sees nothing, and other clients are still served.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_framing_and_stray_control_characters_are_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let post = "POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n";
    let chunked_body = "\r\n2\r\n{}\r\n0\r\n\r\n";
    let probes: Vec<(&str, Vec<u8>)> = vec![
        ("unknown coding", format!("{post}Transfer-Encoding: xchunked{chunked_body}").into_bytes()),
        ("space before the colon", format!("{post}Transfer-Encoding : chunked{chunked_body}").into_bytes()),
        ("chunked then identity", format!("{post}Transfer-Encoding: chunked, identity{chunked_body}").into_bytes()),
        ("two Transfer-Encoding headers", format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity{chunked_body}").into_bytes()),
        ("a folded Transfer-Encoding", format!("{post}Transfer-Encoding:\r\n chunked{chunked_body}").into_bytes()),
        ("HTTP/1.0 with a chunked body", format!("{}Transfer-Encoding: chunked{chunked_body}", post.replace("HTTP/1.1", "HTTP/1.0")).into_bytes()),
        ("a bare LF smuggling a header", b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Note: a\nX-Partner-Id: globex\r\n\r\n".to_vec()),
        ("a bare CR in a value", b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Note: a\rX-Partner-Id: globex\r\n\r\n".to_vec()),
        ("a NUL in a value", b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Note: a\x00b\r\n\r\n".to_vec()),
        ("invalid UTF-8 in the path", b"GET /partners/acme/orders/\xff\xfe HTTP/1.1\r\nHost: gateway.test\r\n\r\n".to_vec()),
        ("an absolute URI for another host", b"GET https://evil.example/partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n".to_vec()),
        ("two Host headers", b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nHost: evil.example\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in probes {
        let resp = raw_request(&gw, &bytes)
            .await
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(
            resp.status,
            400,
            "{what}: {:?}",
            String::from_utf8_lossy(&resp.body)
        );
        let code = resp.json()["code"].as_str().unwrap_or_default().to_string();
        assert!(
            ["bad_request", "ambiguous_framing", "bad_path"].contains(&code.as_str()),
            "{what}: {code}"
        );
        assert!(
            up.recorder.is_empty(),
            "{what}: upstream saw {:?}",
            up.recorder.requests()
        );
    }
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_upgrades_are_refused_so_no_tunnel_opens() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let upgrades: [&[u8]; 2] = [
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ];
    for bytes in upgrades {
        let resp = raw_request(&gw, bytes).await.expect("a response");
        assert_problem(&resp, 400, "upgrade_refused");
    }
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bombs_are_refused_before_the_upstream() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = vec![(
        "orders.yaml".into(),
        orders_policy(
            &up.url(),
            "  - name: bound\n    methods: [POST]\n    path: /partners/{partner}/bound\n    upstream: orders\n    max_body_bytes: 2097152\n\
             \x20   bind: {body: /partner}\n\
             \x20   validate:\n      body:\n        type: object\n        properties:\n          partner: {type: string}\n          note: {type: string, maxLength: 1000}\n          amount: {type: number, maximum: 1000000000}\n",
        ),
    )];
    let gw = Gateway::start(cfg).await;
    let deep = format!(
        "{{\"partner\":\"acme\",\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let huge_number = format!(
        "{{\"partner\":\"acme\",\"amount\":1{}}}",
        "0".repeat(500_000)
    );
    let huge_string = format!(
        "{{\"partner\":\"acme\",\"note\":\"{}\"}}",
        "a".repeat(1_000_000)
    );
    let many_keys = format!(
        "{{\"partner\":\"acme\",{}\"partner\":\"globex\"}}",
        (0..50_000)
            .map(|i| format!("\"k{i}\":0,"))
            .collect::<String>()
    );
    for (what, body, code) in [
        ("100 000 nested arrays", deep, "json_too_deep"),
        ("a 500 000-digit number", huge_number, "schema_violation"),
        ("a 1 MB string", huge_string, "schema_violation"),
        (
            "50 000 keys hiding a second partner",
            many_keys,
            "json_duplicate_key",
        ),
    ] {
        let resp = gw
            .client()
            .post(gw.url("/partners/acme/bound"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        let problem: serde_json::Value = resp.json().await.unwrap();
        let got = problem["code"].as_str().unwrap_or_default();
        assert!(
            got == code || (code == "schema_violation" && got == "body_not_json"),
            "{what}: {problem}"
        );
        assert!(up.recorder.is_empty(), "{what}: upstream saw a request");
    }
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_resets_and_header_floods_leave_the_gateway_serving() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;

    // Rapid reset (CVE-2023-44487): open streams and cancel them at once.
    // Unauthenticated, so whatever gets through is refused before the upstream.
    let tls = raw_tls_to(gw.https, gw.pki.roots(), vec![b"h2".to_vec()]).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut opened = 0;
    for _ in 0..2000 {
        let Ok(mut ready) = client.clone().ready().await else {
            break;
        };
        let req = http::Request::builder()
            .uri(format!("https://{HOST}/partners/acme/orders"))
            .body(())
            .unwrap();
        match ready.send_request(req, true) {
            // Dropping the response future resets the stream.
            Ok((response, _)) => {
                drop(response);
                opened += 1;
            }
            Err(_) => break,
        }
    }
    driver.abort();
    assert!(opened > 0);

    // A header flood: one request whose header list is far over the limit.
    let tls = raw_tls_to(gw.https, gw.pki.roots(), vec![b"h2".to_vec()]).await;
    let outcome = async move {
        let (mut client, conn) = h2::client::handshake(tls).await.ok()?;
        tokio::spawn(conn);
        let mut req = http::Request::builder().uri(format!("https://{HOST}/partners/acme/orders"));
        let filler = "x".repeat(100);
        for i in 0..2000 {
            req = req.header(format!("x-flood-{i}"), filler.as_str());
        }
        let (response, _) = client.send_request(req.body(()).ok()?, true).ok()?;
        Some(response.await.ok()?.status().as_u16())
    }
    .await;
    assert!(
        matches!(outcome, None | Some(431) | Some(400)),
        "a flooded header list got {outcome:?}"
    );
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.http = "  client_io_timeout: 1s\n".into();
    cfg.policies = vec![(
        "orders.yaml".into(),
        orders_policy(
            &up.url(),
            "  - name: big\n    methods: [GET]\n    path: /big\n    upstream: orders\n    max_response_bytes: 33554432\n",
        ),
    )];
    let gw = Gateway::start(cfg).await;
    // 16 MiB asked for, and not one byte read: far more than socket buffers hold.
    let mut s = gw.raw_tls().await;
    s.write_all(&gw.authed(b"GET /big?bytes=16777216 HTTP/1.1\r\nHost: gateway.test\r\n\r\n"))
        .await
        .unwrap();
    s.flush().await.unwrap();
    // The gateway gives up on the stalled write and says so in its access log.
    let line = gw.wait_for_log("route=\"big\"").await;
    assert!(
        line.contains("WriteTimedout") || line.contains("WriteError"),
        "{line}"
    );
    still_serves(&gw).await;
    drop(s);
}
