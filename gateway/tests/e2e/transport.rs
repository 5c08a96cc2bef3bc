//! Transport: TLS versions and suites, ALPN, HSTS, certificate checks and
//! replacement, and the plaintext listener.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn handshake(
    gw: &Gateway,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: Vec<Vec<u8>>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(gw.pki.roots())
    .with_no_client_auth();
    config.alpn_protocols = alpn;
    let tcp = TcpStream::connect(gw.https).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_served_with_alpn() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let s = handshake(&gw, &[&rustls::version::TLS12], vec![b"http/1.1".to_vec()])
        .await
        .unwrap();
    let (_, conn) = s.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
    assert!(
        suite.starts_with("TLS_ECDHE_") && (suite.contains("GCM") || suite.contains("CHACHA20")),
        "{suite}"
    );

    let s = handshake(
        &gw,
        &[&rustls::version::TLS13],
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    )
    .await
    .unwrap();
    let (_, conn) = s.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));

    let s = handshake(&gw, &[&rustls::version::TLS13], vec![b"http/1.1".to_vec()])
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// Runs `openssl s_client` against the gateway; true if the handshake completed.
fn openssl_handshake(gw: &Gateway, args: &[&str]) -> bool {
    let ca = gw.path("ca-for-openssl.pem");
    std::fs::write(&ca, &gw.pki.ca_pem).unwrap();
    let out = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(gw.https.to_string())
        .arg("-servername")
        .arg(HOST)
        .arg("-CAfile")
        .arg(&ca)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed (see .ci/run)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success() && stdout.contains("Verify return code: 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_protocols_and_weak_suites_are_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    // Positive controls: the same tool completes strong handshakes, so the
    // refusals below are the gateway's doing.
    assert!(openssl_handshake(
        &gw,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]
    ));
    assert!(openssl_handshake(
        &gw,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"]
    ));
    assert!(openssl_handshake(&gw, &["-tls1_3"]));
    // SECLEVEL=0 makes the client willing to offer what the server must refuse.
    assert!(!openssl_handshake(
        &gw,
        &["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"]
    ));
    assert!(!openssl_handshake(
        &gw,
        &["-tls1", "-cipher", "ALL:@SECLEVEL=0"]
    ));
    assert!(!openssl_handshake(
        &gw,
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA"
        ]
    ));
    assert!(!openssl_handshake(
        &gw,
        &[
            "-tls1_2",
            "-cipher",
            "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA"
        ]
    ));
    assert!(!openssl_handshake(
        &gw,
        &[
            "-tls1_2",
            "-cipher",
            "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"
        ]
    ));
    assert!(up.recorder.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_never_reaches_the_https_listener_or_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let mut tcp = TcpStream::connect(gw.https).await.unwrap();
    tcp.write_all(b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut tcp).await;
    assert!(
        answer.is_none(),
        "a plaintext request got an HTTP answer: {answer:?}"
    );
    assert!(up.recorder.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_optional_plaintext_listener_only_redirects_or_refuses() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.plaintext = true;
    let gw = Gateway::start(cfg).await;
    let plain = gw.plaintext.unwrap();

    let mut s = TcpStream::connect(plain).await.unwrap();
    s.write_all(b"GET /partners/acme/orders?page=2 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await.unwrap();
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some(
            format!(
                "https://api.example.com:{}/partners/acme/orders?page=2",
                gw.https.port()
            )
            .as_str()
        )
    );

    let mut s = TcpStream::connect(plain).await.unwrap();
    s.write_all(b"POST /partners/acme/orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 2\r\n\r\n{}").await.unwrap();
    let resp = read_response(&mut s).await.unwrap();
    assert_eq!(resp.status, 426);
    assert_eq!(resp.json()["code"], "https_required");

    let mut s = TcpStream::connect(plain).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: evil.example/@x\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await.unwrap();
    assert_eq!(resp.status, 400);
    assert!(
        up.recorder.is_empty(),
        "the plaintext listener forwarded something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_on_proxied_and_generated_responses() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.client();
    for path in [
        "/partners/acme/orders",
        "/nope",
        "/partners/acme/orders/acme-1001/explode",
    ] {
        let resp = client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=63072000; includeSubDomains"),
            "{path}"
        );
    }
}

fn leaf_serial(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    cert.raw_serial().to_vec()
}

async fn cert_replacement(gw: &Gateway, trigger: impl Fn()) {
    let mut old_conn = gw.raw_tls().await;
    let old_serial = leaf_serial(&old_conn);
    old_conn
        .write_all(&gw.authed(b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n"))
        .await
        .unwrap();
    assert_eq!(read_response(&mut old_conn).await.unwrap().status, 200);

    gw.pki.write_leaf(&gw.path("cert.pem"), &gw.path("key.pem"));
    trigger();
    let new_serial = eventually(
        "the new certificate to be served",
        Duration::from_secs(15),
        || async {
            let s = gw.raw_tls().await;
            let serial = leaf_serial(&s);
            (serial != old_serial).then_some(serial)
        },
    )
    .await;
    assert_ne!(new_serial, old_serial);

    // The connection opened before the swap still works.
    old_conn
        .write_all(&gw.authed(b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n"))
        .await
        .unwrap();
    assert_eq!(read_response(&mut old_conn).await.unwrap().status, 200);
    assert_eq!(leaf_serial(&old_conn), old_serial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_replaced_on_sighup_without_dropping_connections() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    cert_replacement(&gw, || gw.signal("HUP")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_replaced_when_the_files_change() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.watch_interval = "100ms".into();
    let gw = Gateway::start(cfg).await;
    cert_replacement(&gw, || {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_replacement_certificate_is_refused_and_the_old_one_serves() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let before = leaf_serial(&gw.raw_tls().await);
    std::fs::write(
        gw.path("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    gw.signal("HUP");
    eventually(
        "the refused certificate reload to be counted",
        Duration::from_secs(15),
        || async {
            (gw.metric("portcullis_tls_certificate_reloads_total{result=\"error\"}")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(leaf_serial(&gw.raw_tls().await), before);
    let resp = gw
        .client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.wait_for_log("certificate reload refused").await;
}
