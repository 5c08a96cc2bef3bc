//! Behind a load balancer: the gateway judges the client's address, not
//! the balancer's, when (and only when) the balancer is a trusted proxy.
//! Every test connects from 127.0.0.1, which plays the balancer.

use crate::common::*;

const PARTNERS: &str = "partners:\n  acme:\n    allow_ips: [198.51.100.0/24]\n  globex: {}\n";

fn behind_balancer(up: &Upstream, trusted: &str, extra: &str) -> GatewayConfig {
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.http = format!("  trusted_proxies: [{trusted}]\n");
    cfg.policies
        .push(("00-partners.yaml".into(), PARTNERS.into()));
    cfg.extra = extra.into();
    cfg
}

async fn get(gw: &Gateway, partner: &str, key: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = gw
        .client_with_key(Some(key))
        .get(gw.url(&format!("/partners/{partner}/orders")));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_balancer_names_the_client_that_every_stage_judges() {
    let up = Upstream::start().await;
    let gw = Gateway::start(behind_balancer(&up, "127.0.0.1", "")).await;
    let acme = gw.key("acme").to_string();

    // The client wrote the first entry; the balancer appended the second.
    let resp = get(&gw, "acme", &acme, Some("203.0.113.5, 198.51.100.7")).await;
    assert_eq!(resp.status(), 200);
    let record = gw.audit_record(&request_id(&resp)).await;
    assert_eq!(record["client_ip"], "198.51.100.7");
    assert_eq!(record["peer_ip"], "127.0.0.1");
    // The upstream never reads a client address the gateway did not check.
    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_count("x-forwarded-for"), 0);
    let log = gw.wait_for_log("client_ip=198.51.100.7").await;
    assert!(log.contains("peer_ip=127.0.0.1"), "{log}");

    // A client that writes an allowed address to the left is still judged
    // by the entry the balancer appended.
    up.recorder.clear();
    let resp = get(&gw, "acme", &acme, Some("198.51.100.7, 203.0.113.5")).await;
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "ip_not_allowed");
    assert!(up.recorder.is_empty());

    // A trusted peer that names no client, or not an address: refused, and
    // never judged as the balancer's own address.
    for xff in [None, Some("unknown"), Some("198.51.100.7, ")] {
        let resp = get(&gw, "globex", gw.key("globex"), xff).await;
        assert_eq!(resp.status(), 400, "{xff:?}");
        let id = request_id(&resp);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "client_address_invalid", "{xff:?}");
        let record = gw.audit_record(&id).await;
        assert_eq!(record["peer_ip"], "127.0.0.1");
        assert!(record.get("client_ip").is_none(), "{record}");
    }
    assert!(up.recorder.is_empty(), "{:?}", up.recorder.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_an_untrusted_peer_a_forwarded_address_changes_nothing() {
    let up = Upstream::start().await;
    let gw = Gateway::start(behind_balancer(&up, "10.0.0.0/8", "")).await;
    // acme may call only from 198.51.100.0/24; claiming it does not help.
    let resp = get(&gw, "acme", gw.key("acme"), Some("198.51.100.7")).await;
    assert_eq!(resp.status(), 403);
    let id = request_id(&resp);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "ip_not_allowed");
    assert!(up.recorder.is_empty());
    let record = gw.audit_record(&id).await;
    assert_eq!(record["client_ip"], "127.0.0.1");
    assert!(record.get("peer_ip").is_none(), "{record}");

    // Garbage from an untrusted peer is not read either: not a 400.
    let resp = get(&gw, "globex", gw.key("globex"), Some("unknown, <x>")).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_behind_one_balancer_blocks_only_the_attacker() {
    let up = Upstream::start().await;
    let gw = Gateway::start(behind_balancer(
        &up,
        "127.0.0.1",
        "abuse:\n  auth_failures:\n    per_client: 5\n    window: 1m\n    block_for: 2m\n",
    ))
    .await;
    let attacker = Some("192.0.2.66");
    for _ in 0..5 {
        let resp = get(&gw, "acme", "ptc_live_guessing", attacker).await;
        assert_eq!(resp.status(), 401);
    }
    // The attacker's address is blocked, even with a valid key…
    let resp = get(&gw, "globex", gw.key("globex"), attacker).await;
    assert_eq!(resp.status(), 429);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "client_blocked");
    // …while partners arriving through the same balancer keep working.
    for _ in 0..3 {
        let resp = get(&gw, "globex", gw.key("globex"), Some("198.51.100.20")).await;
        assert_eq!(resp.status(), 200);
        let resp = get(&gw, "acme", gw.key("acme"), Some("198.51.100.7")).await;
        assert_eq!(resp.status(), 200);
    }
    let (status, blocks) = gw.admin_api("GET", "/v1/blocks", None).await;
    assert_eq!(status, 200);
    let clients = blocks["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{blocks}");
    assert_eq!(clients[0]["id"], "192.0.2.66");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_a_cdn_header_is_judged_by_that_header() {
    let up = Upstream::start().await;
    let mut cfg = behind_balancer(&up, "127.0.0.0/8", "");
    cfg.http.push_str("  client_ip_header: cf-connecting-ip\n");
    let gw = Gateway::start(cfg).await;
    let ca = gw.dir.path().join("ca.pem");
    std::fs::write(&ca, &gw.pki.ca_pem).unwrap();
    // What curl reports: the HTTP version it spoke and the status.
    let curl = |version: &str, ip_header: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                version,
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg("--cacert")
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("{HOST}:{}:127.0.0.1", gw.https.port()))
            .args(["-H", &format!("x-api-key: {}", gw.key("acme"))])
            .args(["-H", ip_header])
            .arg(gw.url("/partners/acme/orders"))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for (version, spoken) in [("--http1.1", "1.1"), ("--http2", "2")] {
        assert_eq!(
            curl(version, "cf-connecting-ip: 198.51.100.9"),
            format!("{spoken} 200")
        );
        // x-forwarded-for is not the configured header: the balancer named
        // no client, so the request is refused.
        assert_eq!(
            curl(version, "x-forwarded-for: 198.51.100.9"),
            format!("{spoken} 400")
        );
        // The CGI spelling (`_` for `-`) is refused too and never reaches
        // the upstream.
        assert_eq!(
            curl(version, "cf_connecting_ip: 198.51.100.9"),
            format!("{spoken} 400")
        );
        assert_eq!(
            curl(version, "cf-connecting-ip: 203.0.113.1"),
            format!("{spoken} 403")
        );
    }
    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.header_count("cf-connecting-ip") == 0));
}

/// Opens a TLS connection after writing `preamble` (a PROXY header) on the
/// TCP connection, and sends one GET with `key`: the response, or `None`
/// when the gateway closed the connection.
async fn through_balancer(
    gw: &Gateway,
    preamble: &[u8],
    path: &str,
    key: &str,
) -> Option<RawResponse> {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(gw.https).await.unwrap();
    tcp.write_all(preamble).await.ok()?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config(
        gw.pki.roots(),
        vec![b"http/1.1".to_vec()],
    )));
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let mut tls = connector.connect(name, tcp).await.ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.ok()?;
    read_response(&mut tls).await
}

fn v2_header(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&client);
    out.extend_from_slice(&[203, 0, 113, 1]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&443u16.to_be_bytes());
    out
}

fn proxied(up: &Upstream, from: &str) -> GatewayConfig {
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.listen = format!("  proxy_protocol:\n    from: [{from}]\n");
    cfg.policies
        .push(("00-partners.yaml".into(), PARTNERS.into()));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_names_the_client_only_from_the_balancer() {
    let up = Upstream::start().await;
    let gw = Gateway::start(proxied(&up, "127.0.0.1")).await;
    let acme = gw.key("acme").to_string();
    let orders = "/partners/acme/orders";

    // v1 and v2 from the balancer: the header's address is the client.
    let v1 = b"PROXY TCP4 198.51.100.7 203.0.113.1 40001 443\r\n";
    let resp = through_balancer(&gw, v1, orders, &acme)
        .await
        .expect("an answer");
    assert_eq!(resp.status, 200);
    let id = resp.header("x-request-id").unwrap().to_string();
    assert_eq!(gw.audit_record(&id).await["client_ip"], "198.51.100.7");
    let resp = through_balancer(&gw, &v2_header([198, 51, 100, 8], 40002), orders, &acme)
        .await
        .expect("an answer");
    assert_eq!(resp.status, 200);
    let id = resp.header("x-request-id").unwrap().to_string();
    assert_eq!(gw.audit_record(&id).await["client_ip"], "198.51.100.8");
    // The header decides allow_ips: an address outside acme's network.
    let resp = through_balancer(&gw, &v2_header([203, 0, 113, 9], 1), orders, &acme)
        .await
        .expect("an answer");
    assert_problem(&resp, 403, "ip_not_allowed");
    assert_eq!(up.recorder.len(), 2);

    // The balancer without a header, or with a broken one: closed before
    // TLS, the upstream sees nothing.
    up.recorder.clear();
    for preamble in [&b""[..], b"PROXY TCP4 198.51.100.7 203.0.113.1 +1 443\r\n"] {
        assert!(through_balancer(&gw, preamble, orders, &acme)
            .await
            .is_none());
    }
    assert!(up.recorder.is_empty());
    assert!(
        gw.metric("portcullis_proxy_protocol_refused_total{reason=\"missing\"}")
            .await
            >= 1.0
    );
    assert!(
        gw.metric("portcullis_proxy_protocol_refused_total{reason=\"invalid\"}")
            .await
            >= 1.0
    );

    // curl as a balancer would send it (v1 with curl's own address,
    // 127.0.0.1): globex has no allow_ips, so it is served; without the
    // header curl's handshake fails.
    let ca = gw.dir.path().join("ca.pem");
    std::fs::write(&ca, &gw.pki.ca_pem).unwrap();
    let curl = |extra: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("{HOST}:{}:127.0.0.1", gw.https.port()))
            .args(["-H", &format!("x-api-key: {}", gw.key("globex"))])
            .args(extra)
            .arg(gw.url("/partners/globex/orders"))
            .output()
            .expect("curl runs")
    };
    let with = curl(&["--haproxy-protocol"]);
    assert_eq!(String::from_utf8_lossy(&with.stdout), "200");
    let without = curl(&[]);
    assert!(
        !without.status.success(),
        "curl without a PROXY header succeeded"
    );
    assert_eq!(String::from_utf8_lossy(&without.stdout), "000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_from_anyone_else_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(proxied(&up, "10.0.0.0/8")).await;
    let v1 = b"PROXY TCP4 198.51.100.7 203.0.113.1 40001 443\r\n";
    let acme = gw.key("acme").to_string();
    assert!(through_balancer(&gw, v1, "/partners/acme/orders", &acme)
        .await
        .is_none());
    assert!(through_balancer(
        &gw,
        &v2_header([198, 51, 100, 7], 1),
        "/partners/acme/orders",
        &acme
    )
    .await
    .is_none());
    assert!(up.recorder.is_empty());
    assert!(
        gw.metric("portcullis_proxy_protocol_refused_total{reason=\"untrusted\"}")
            .await
            >= 2.0
    );
    // Plain TLS from outside the balancers' networks works as before.
    let resp = through_balancer(&gw, b"", "/partners/globex/orders", gw.key("globex"))
        .await
        .expect("an answer");
    assert_eq!(resp.status, 200);
}
