//! Hostile protocol input: ambiguous framing, oversized requests and slow
//! clients. Each is refused, the upstream sees nothing, others are served.

use std::time::Duration;

use crate::common::*;
use tokio::io::AsyncWriteExt;

fn config(up: &Upstream) -> GatewayConfig {
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.http = "  header_timeout: 600ms\n  max_header_bytes: 4096\n  max_uri_bytes: 1024\n".into();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_length_and_transfer_encoding_are_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(config(&up)).await;
    let smuggles: [&[u8]; 4] = [
        b"POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 2, 2\r\n\r\n{}",
    ];
    for bytes in smuggles {
        let mut s = gw.raw_tls().await;
        s.write_all(bytes).await.unwrap();
        let resp = read_response(&mut s).await.expect("a response");
        assert_problem(&resp, 400, "ambiguous_framing");
        assert!(
            closed_by_peer(&mut s, Duration::from_secs(5)).await,
            "connection closed after a framing error"
        );
    }
    // Differing duplicate lengths are refused by pingora's parser itself;
    // the answer is still ours.
    let resp = raw_request(
        &gw,
        b"POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
    )
    .await
    .expect("a response");
    assert_problem(&resp, 400, "bad_request");
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_uris_are_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(config(&up)).await;
    let big = "a".repeat(5000);
    let req =
        format!("GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Big: {big}\r\n\r\n");
    let resp = raw_request(&gw, req.as_bytes()).await.unwrap();
    assert_problem(&resp, 431, "headers_too_large");

    let long = "q".repeat(1100);
    let req = format!("GET /partners/acme/orders?{long} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
    let resp = raw_request(&gw, req.as_bytes()).await.unwrap();
    assert_problem(&resp, 414, "uri_too_long");

    // Just under both limits is fine.
    let ok = "q".repeat(900);
    let req = format!(
        "GET /partners/acme/orders?{ok} HTTP/1.1\r\nHost: gateway.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(3000)
    );
    let resp = raw_request(&gw, req.as_bytes()).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.recorder.len(),
        1,
        "only the request within limits reached the upstream"
    );
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_header_is_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(config(&up)).await;
    let mut s = gw.raw_tls().await;
    s.write_all(b"GET /partners/acme/orders HTTP/1.1\r\nHost: gat")
        .await
        .unwrap();
    s.flush().await.unwrap();
    // header_timeout is 600ms; the default per-read timeout would be 60s.
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(10)).await,
        "stalled client must be disconnected"
    );
    assert!(up.recorder.is_empty());
    still_serves(&gw).await;
    assert!(gw.metric("portcullis_header_timeouts_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_header_is_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(config(&up)).await;
    let mut s = gw.raw_tls().await;
    let header = b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // Every byte arrives well within any per-read timeout, but the whole
    // header would take ~8s against a 600ms header deadline.
    let mut cut_off = false;
    for b in header.iter() {
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !cut_off {
        cut_off = read_response(&mut s).await.is_none();
    }
    assert!(cut_off, "a trickled header must not be served");
    assert!(up.recorder.is_empty());
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_get_a_fresh_header_deadline_per_request() {
    let up = Upstream::start().await;
    let gw = Gateway::start(config(&up)).await;
    let mut s = gw.raw_tls().await;
    for _ in 0..3 {
        s.write_all(
            &gw.authed(b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n"),
        )
        .await
        .unwrap();
        let resp = read_response(&mut s)
            .await
            .expect("response on the kept-alive connection");
        assert_eq!(resp.status, 200);
        // Idle longer than the header deadline between requests: idling is
        // governed by the keep-alive timeout, not the header deadline.
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert_eq!(up.recorder.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_parser_refuses_get_our_problem_not_a_pingora_banner() {
    let up = Upstream::start().await;
    let gw = Gateway::start(config(&up)).await;
    let unparseable: [&[u8]; 3] = [
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nBad Header: x\r\n\r\n",
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ];
    for bytes in unparseable {
        let mut s = gw.raw_tls().await;
        s.write_all(bytes).await.unwrap();
        let resp = read_response(&mut s).await.expect("a response");
        assert_problem(&resp, 400, "bad_request");
        assert!(
            resp.header("server").is_none(),
            "no version banner: {:?}",
            resp.headers
        );
        assert!(closed_by_peer(&mut s, Duration::from_secs(5)).await);
    }
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_never_sends_its_preface_is_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(config(&up)).await;
    let mut s = raw_tls_to(gw.https, gw.pki.roots(), vec![b"h2".to_vec()]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(10)).await,
        "silent h2 client must be disconnected"
    );
    still_serves(&gw).await;
}
