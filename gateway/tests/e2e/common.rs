//! The test harness: real processes and sockets, cleaned up on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis::transport::certgen::Ca;
use portcullis_example_upstream::Recorder;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const HOST: &str = "gateway.test";

/// Polls `check` until it returns `Some`, failing the test after `limit`.
/// Used to wait for observable state (a port answering, a reload counted),
/// never as a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A private CA plus the files of one server certificate for the gateway.
pub struct Pki {
    pub ca: Ca,
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("Portcullis test CA").expect("CA");
        let ca_pem = ca.cert_pem();
        Pki { ca, ca_pem }
    }

    /// Writes a fresh leaf certificate for the test names into `dir`.
    pub fn write_leaf(&self, cert: &Path, key: &Path) {
        let leaf = self
            .ca
            .issue(&[HOST, "localhost", "127.0.0.1"])
            .expect("leaf");
        // Write to temporary names first: a reload must never see half a pair.
        let tmp_cert = cert.with_extension("new");
        let tmp_key = key.with_extension("newkey");
        std::fs::write(&tmp_cert, leaf.cert_pem).unwrap();
        std::fs::write(&tmp_key, leaf.key_pem).unwrap();
        std::fs::rename(&tmp_key, key).unwrap();
        std::fs::rename(&tmp_cert, cert).unwrap();
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }
}

use rustls::pki_types::pem::PemObject;

pub struct Upstream {
    pub addr: SocketAddr,
    pub recorder: Recorder,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_with(portcullis_example_upstream::Options::default()).await
    }

    pub async fn start_with(options: portcullis_example_upstream::Options) -> Upstream {
        let (addr, recorder, handle) =
            portcullis_example_upstream::spawn_with(SocketAddr::from(([127, 0, 0, 1], 0)), options)
                .await
                .expect("example upstream");
        Upstream {
            addr,
            recorder,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// What a test wants in its gateway configuration.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Extra YAML appended to the `http:` section.
    pub http: String,
    /// Policy file contents, keyed by file name under `policies/`.
    pub policies: Vec<(String, String)>,
    pub plaintext: bool,
    pub watch_interval: String,
    /// Extra YAML appended to the `keys:` section.
    pub keys: String,
    /// Join the deployment of this (pepper, admin token, keys) instead of
    /// issuing keys.
    pub join: Option<(PathBuf, std::collections::HashMap<String, String>)>,
    /// Schema files, keyed by path under `schemas/`.
    pub schemas: Vec<(String, String)>,
    /// Top-level YAML appended to the gateway file.
    pub extra: String,
    /// Extra YAML appended to the `server:` section.
    pub server: String,
    /// Extra YAML appended to the `listen:` section.
    pub listen: String,
    /// Files written beside the gateway file, keyed by name.
    pub files: Vec<(String, String)>,
    /// Extra YAML appended to the `partner_listener:` section.
    pub partner_listener: String,
}

impl GatewayConfig {
    /// One upstream `orders` and the example routes.
    pub fn orders(upstream: &str) -> GatewayConfig {
        GatewayConfig {
            http: String::new(),
            policies: vec![("orders.yaml".into(), orders_policy(upstream, ""))],
            plaintext: false,
            watch_interval: "0s".into(),
            keys: String::new(),
            join: None,
            schemas: Vec::new(),
            extra: String::new(),
            server: String::new(),
            listen: String::new(),
            files: Vec::new(),
            partner_listener: String::new(),
        }
    }
}

/// The test partners, declared with no restrictions, unless a test's own
/// policy declares partners.
pub const DEFAULT_PARTNERS: &str = "partners:\n  acme: {}\n  globex: {}\n";

/// The test partners, with data-key self-rotation turned on (it is off by
/// default).
pub const SELF_ROTATING_PARTNERS: &str =
    "partners:\n  acme:\n    self_rotation: true\n  globex:\n    self_rotation: true\n";

impl GatewayConfig {
    pub fn with_self_rotation(mut self) -> GatewayConfig {
        self.policies
            .push(("00-partners.yaml".into(), SELF_ROTATING_PARTNERS.into()));
        self
    }
}

pub fn orders_policy(upstream: &str, extra_routes: &str) -> String {
    format!(
        "upstreams:\n  orders:\n    url: {upstream}\n    timeouts:\n      connect: 1s\n      read: 5s\n\
         routes:\n\
         \x20 - name: list-orders\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: orders\n\
         \x20 - name: create-order\n    methods: [POST]\n    path: /partners/{{partner}}/orders\n    upstream: orders\n\
         \x20 - name: get-order\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}\n    upstream: orders\n\
         \x20 - name: echo\n    methods: [GET, POST, PUT, DELETE]\n    path: /echo/{{*rest}}\n    upstream: orders\n\
         {extra_routes}"
    )
}

pub struct Gateway {
    child: Child,
    /// The `primary` key of each test partner (`acme`, `globex`).
    pub keys: std::collections::HashMap<String, String>,
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    /// The partner listener (`partner_listener.address`).
    pub partner: Option<SocketAddr>,
    pub plaintext: Option<SocketAddr>,
    pub pki: Arc<Pki>,
    log: Arc<Mutex<String>>,
}

/// The gateway under test: this build's, or another build named by
/// `PORTCULLIS_TEST_BIN` (to show which tests an older build fails).
pub fn binary() -> PathBuf {
    std::env::var_os("PORTCULLIS_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")))
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Gateway {
        let pki = Arc::new(Pki::new());
        let mut last_log = String::new();
        // Ports are picked free and then bound by the child: another test
        // can race us to one, so a failed bind is retried with new ports.
        for _ in 0..5 {
            match Gateway::try_start(&config, pki.clone()).await {
                Ok(gw) => return gw,
                Err(log) => last_log = log,
            }
        }
        panic!("gateway did not start:\n{last_log}");
    }

    async fn try_start(config: &GatewayConfig, pki: Arc<Pki>) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        pki.write_leaf(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
        let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        // Every test gateway has a partner listener unless the test sets its own.
        let partner = (!config.extra.contains("partner_listener:"))
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let partner_yaml = partner
            .map(|a| {
                format!(
                    "partner_listener:\n  address: \"{a}\"\n{}",
                    config.partner_listener
                )
            })
            .unwrap_or_default();
        let plaintext = config
            .plaintext
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let plaintext_yaml = plaintext
            .map(|a| format!("  plaintext: \"{a}\"\n"))
            .unwrap_or_default();
        let yaml = format!(
            "listen:\n  https: \"{https}\"\n{plaintext_yaml}{listen}\
             admin:\n  address: \"{admin}\"\n  token_file: admin-token\n\
             keys:\n  path: keys.json\n  pepper_file: pepper\n{keys}\
             tls:\n  certificate: cert.pem\n  private_key: key.pem\n\
             http:\n  keepalive_timeout: 60s\n{http}\
             policies:\n  - policies/*.yaml\n\
             reload:\n  watch_interval: {watch}\n\
             server:\n  threads: 2\n  pid_file: gw.pid\n  upgrade_sock: gw_upgrade.sock\n{server}{partner_yaml}{extra}",
            server = config.server,
            listen = config.listen,
            extra = if config.extra.contains("audit:") {
                config.extra.clone()
            } else {
                // Every test writes its audit trail where it can be read.
                format!(
                    "audit:\n  output: file\n  path: audit.log\n{}",
                    config.extra
                )
            },
            http = config.http,
            keys = config.keys,
            watch = config.watch_interval,
        );
        std::fs::write(dir.path().join("portcullis.yaml"), yaml).unwrap();
        let keys = match &config.join {
            Some((first_dir, keys)) => {
                std::fs::copy(first_dir.join("pepper"), dir.path().join("pepper")).unwrap();
                std::fs::copy(
                    first_dir.join("admin-token"),
                    dir.path().join("admin-token"),
                )
                .unwrap();
                keys.clone()
            }
            None => issue_keys(dir.path()).await,
        };
        for (name, body) in &config.files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        for (name, body) in &config.schemas {
            let path = dir.path().join("schemas").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        for (name, body) in &config.policies {
            std::fs::write(dir.path().join("policies").join(name), body).unwrap();
        }
        if !config
            .policies
            .iter()
            .any(|(_, body)| body.contains("partners:"))
        {
            std::fs::write(
                dir.path().join("policies").join("00-partners.yaml"),
                DEFAULT_PARTNERS,
            )
            .unwrap();
        }
        let mut child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("portcullis.yaml"))
            .current_dir(dir.path())
            .env("PORTCULLIS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut gw = Gateway {
            child,
            keys,
            dir,
            https,
            admin,
            partner,
            plaintext,
            pki,
            log,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = gw.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", gw.logs()));
            }
            if admin_get(gw.admin, "/readyz")
                .await
                .is_some_and(|(s, _)| s == 200)
                && TcpStream::connect(gw.https).await.is_ok()
                && match gw.partner {
                    Some(addr) => TcpStream::connect(addr).await.is_ok(),
                    None => true,
                }
            {
                return Ok(gw);
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("not ready after 30s:\n{}", gw.logs()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the gateway has logged `text` (its stderr is read by a
    /// thread, so a line can trail the response it belongs to).
    pub async fn wait_for_log(&self, text: &str) -> String {
        eventually(
            &format!("the log line {text:?}"),
            Duration::from_secs(10),
            || async {
                let logs = self.logs();
                logs.contains(text).then_some(logs)
            },
        )
        .await
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.https.port())
    }

    /// A URL on the partner listener.
    pub fn partner_url(&self, path: &str) -> String {
        let addr = self.partner.expect("this gateway has a partner listener");
        format!("https://{HOST}:{}{path}", addr.port())
    }

    /// A client of the partner listener signed in with `credential`.
    pub fn partner_client(&self, credential: Option<&str>) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(c) = credential {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {c}").parse().unwrap(),
            );
        }
        self.client_builder()
            .http1_only()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// A management credential and its TOTP secret (from the otpauth URI
    /// the admin API shows once).
    pub async fn management_credential_with_totp(
        &self,
        partner: &str,
        name: &str,
    ) -> (String, Vec<u8>) {
        let (status, body) = self
            .admin_api(
                "POST",
                "/v1/keys",
                Some(serde_json::json!({"partner": partner, "name": name, "kind": "management"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let uri = body["totp_uri"].as_str().expect("a TOTP URI, shown once");
        let secret = portcullis::keys::totp::secret_of_uri(uri).expect("a base32 secret");
        (body["key"].as_str().unwrap().to_string(), secret)
    }

    /// Issues a management credential for `partner` through the admin API.
    pub async fn management_credential(&self, partner: &str, name: &str) -> String {
        let (status, body) = self
            .admin_api(
                "POST",
                "/v1/keys",
                Some(serde_json::json!({"partner": partner, "name": name, "kind": "management"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let credential = body["key"].as_str().unwrap().to_string();
        assert!(credential.starts_with("ptc_mgmt_"), "{credential}");
        credential
    }

    pub fn key(&self, partner: &str) -> &str {
        &self.keys[partner]
    }

    /// An HTTP/1.1-only client that trusts the test CA and presents acme's key.
    pub fn client(&self) -> reqwest::Client {
        self.client_with_key(Some(self.key("acme")))
    }

    /// An HTTP/1.1-only client presenting `key`, or no key at all.
    pub fn client_with_key(&self, key: Option<&str>) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            headers.insert("x-api-key", key.parse().unwrap());
        }
        self.client_builder()
            .http1_only()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// A client that speaks HTTP/2 (negotiated by ALPN), with acme's key.
    pub fn h2_client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", self.key("acme").parse().unwrap());
        self.client_builder()
            .http2_prior_knowledge()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// Adds acme's key header to a hand-written HTTP/1 request.
    pub fn authed(&self, request: &[u8]) -> Vec<u8> {
        let line_end = request
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("request line")
            + 2;
        let mut out = request[..line_end].to_vec();
        out.extend_from_slice(format!("X-API-Key: {}\r\n", self.key("acme")).as_bytes());
        out.extend_from_slice(&request[line_end..]);
        out
    }

    /// The admin API with the test admin token: (status, JSON body).
    pub async fn admin_api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let token = std::fs::read_to_string(self.path("admin-token")).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(self.admin).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = read_response(&mut s).await.unwrap();
        (resp.status, resp.json())
    }

    /// A client that opens a new connection for every request (so each
    /// proves the listener still accepts), without a key.
    pub fn fresh_connection_client(&self) -> reqwest::Client {
        self.client_builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).unwrap(),
            )
            .resolve(HOST, self.https)
            .timeout(Duration::from_secs(20))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn metrics(&self) -> String {
        admin_get(self.admin, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The audit trail so far, one JSON value per line.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
            .collect()
    }

    /// Waits for the audit event written for the request with this id (the
    /// partner listener's calls are events).
    pub async fn audit_event(&self, request_id: &str) -> serde_json::Value {
        eventually(
            &format!("the audit event of {request_id}"),
            Duration::from_secs(10),
            || async {
                self.audit_lines()
                    .into_iter()
                    .find(|r| r["kind"] == "event" && r["detail"]["request_id"] == request_id)
            },
        )
        .await
    }

    /// Waits for the audit record of the request with this id.
    pub async fn audit_record(&self, request_id: &str) -> serde_json::Value {
        eventually(
            &format!("the audit record of {request_id}"),
            Duration::from_secs(10),
            || async {
                self.audit_lines()
                    .into_iter()
                    .find(|r| r["request_id"] == request_id)
            },
        )
        .await
    }

    /// The value of one metric sample, e.g. `portcullis_config_reloads_total{result="ok"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// A TLS connection to the gateway for hand-written HTTP/1 bytes.
    pub async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        raw_tls_to(self.https, self.pki.roots(), vec![b"http/1.1".to_vec()]).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client_config(roots: rustls::RootCertStore, alpn: Vec<Vec<u8>>) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn;
    config
}

pub async fn raw_tls_to(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    alpn: Vec<Vec<u8>>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(roots, alpn)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends one request over HTTP/2 with exactly this path (no client-side
/// normalisation, unlike URL-based clients) and acme's key unless `headers`
/// carry another: (status, body).
pub async fn h2_raw(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let tls = raw_tls_to(gw.https, gw.pki.roots(), vec![b"h2".to_vec()]).await;
    let (mut client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://{HOST}{path}"));
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("x-api-key"))
    {
        req = req.header("x-api-key", gw.key("acme"));
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(()).unwrap();
    let (response, mut send) = client.send_request(req, body.is_empty()).unwrap();
    if !body.is_empty() {
        send.send_data(bytes::Bytes::copy_from_slice(body), true)
            .unwrap();
    }
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut recv = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, out)
}

/// A parsed HTTP/1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one HTTP/1 response (Content-Length or close-delimited body).
/// Returns `None` if the connection closed before a status line.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("response timed out")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = buf[header_end..].to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    match length {
        Some(len) => {
            while body.len() < len {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            let _ =
                tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut body)).await;
        }
    }
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// Sends raw bytes (plus acme's key header) on a fresh TLS connection and
/// reads one response.
pub async fn raw_request(gw: &Gateway, bytes: &[u8]) -> Option<RawResponse> {
    raw_request_as_is(gw, &gw.authed(bytes)).await
}

/// Sends exactly these bytes on a fresh TLS connection and reads one response.
pub async fn raw_request_as_is(gw: &Gateway, bytes: &[u8]) -> Option<RawResponse> {
    let mut s = gw.raw_tls().await;
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    read_response(&mut s).await
}

/// True once the peer has closed the connection (EOF or reset).
pub async fn closed_by_peer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A plain HTTP GET to the admin listener: (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let resp = read_response(&mut s).await?;
    Some((resp.status, String::from_utf8_lossy(&resp.body).to_string()))
}

/// Asserts a gateway-generated problem response.
pub fn assert_problem(resp: &RawResponse, status: u16, code: &str) {
    assert_eq!(
        resp.status,
        status,
        "status; body: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    let v = resp.json();
    assert_eq!(v["code"], code, "problem code in {v}");
    assert_eq!(v["status"], status);
    let request_id = v["request_id"].as_str().expect("request_id");
    assert_eq!(resp.header("x-request-id"), Some(request_id));
    assert!(
        resp.header("strict-transport-security").is_some(),
        "HSTS on a problem response"
    );
}

fn random_hex() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Writes the pepper and admin token, and issues a `primary` key for each
/// test partner straight into the configured store (no gateway runs yet).
pub async fn issue_keys(dir: &Path) -> std::collections::HashMap<String, String> {
    std::fs::write(dir.join("pepper"), random_hex()).unwrap();
    std::fs::write(dir.join("admin-token"), random_hex()).unwrap();
    if !dir.join("portcullis.yaml").exists() {
        std::fs::write(
            dir.join("portcullis.yaml"),
            "tls:\n  certificate: c\n  private_key: k\nkeys:\n  pepper_file: pepper\n",
        )
        .unwrap();
    }
    let mut settings = portcullis::config::load_settings(&dir.join("portcullis.yaml")).unwrap();
    // Setting up is not under test: a test's tight store timeout (to bound
    // an outage it provokes later) must not fail the keys' creation on a
    // busy machine.
    if let Some(redis) = settings.keys.redis.as_mut() {
        redis.timeout = redis.timeout.max(Duration::from_secs(5));
    }
    let service = portcullis::server::open_keys(&settings.keys, None)
        .unwrap()
        .service;
    let mut keys = std::collections::HashMap::new();
    for partner in ["acme", "globex"] {
        let (key, _) = service.create(partner, "primary", None).await.unwrap();
        keys.insert(partner.to_string(), key.reveal().to_string());
    }
    keys
}

/// A real `redis-server` on a loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
    tls: bool,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_with(Vec::new(), false).await
    }

    /// With extra `redis-server` arguments; `tls` serves TLS only (the
    /// files `tls.pem`/`tls.key` must then be written by `prepare`).
    pub async fn start_with_files(
        extra: Vec<String>,
        tls: bool,
        prepare: impl Fn(&Path),
    ) -> RedisServer {
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().unwrap(),
                extra: extra.clone(),
                tls,
            };
            prepare(server.dir.path());
            if server.launch().await {
                return server;
            }
        }
        panic!("redis-server did not start");
    }

    pub async fn start_with(extra: Vec<String>, tls: bool) -> RedisServer {
        Self::start_with_files(extra, tls, |_| {}).await
    }

    /// Starts (again) on the same port, with the same data directory.
    pub async fn launch(&mut self) -> bool {
        let port = self.port.to_string();
        let ports: Vec<&str> = if self.tls {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(ports)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (see .ci/run)");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let up = if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
            } else {
                redis_ping(self.port).await
            };
            if up {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends a signal (`STOP` pauses it, `CONT` resumes it).
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    // `+PONG`, or `-NOAUTH` from a server that requires a password: alive.
    matches!(tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await, Ok(Ok(n)) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
}

/// A TCP relay that a test can cut: while cut, existing connections are
/// dropped and new ones closed at once.
pub struct FaultProxy {
    pub addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let (c, g) = (cut.clone(), generation.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let mut changed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = changed.changed() => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            cut,
            generation,
            task,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `portcullis keys ARGS --config portcullis.yaml` in `dir`.
pub fn keys_cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["keys"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--config", "portcullis.yaml"]);
    run_cli(&full, dir)
}

pub fn run_cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Asserts that an ordinary request still gets its 200: whatever the test
/// just threw at the gateway, other clients are served.
pub async fn still_serves(gw: &Gateway) {
    let resp = gw
        .client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the gateway keeps serving other clients"
    );
}
