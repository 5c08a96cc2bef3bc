//! A gateway process for load tests: configuration, a key, and clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The JSON Schema of the `validated` route.
pub const SCHEMA: &str = r#"{"type":"object","required":["order","items"],"properties":{
  "order":{"type":"object","required":["partner"],"properties":{"partner":{"type":"string"}}},
  "items":{"type":"array","items":{"type":"object","additionalProperties":false,
    "required":["sku","quantity"],"properties":{
      "sku":{"type":"string","pattern":"^[A-Z0-9-]{3,32}$"},
      "quantity":{"type":"integer","minimum":1,"maximum":1000},
      "note":{"type":"string","maxLength":200}}}}}}"#;

/// A 1 KiB order body that passes the schema.
pub fn body() -> Vec<u8> {
    let item = r#"{"sku":"BOLT-7","quantity":3,"note":"leave at the door"}"#;
    let mut items = Vec::new();
    while items.len() * (item.len() + 1) < 950 {
        items.push(item);
    }
    format!(
        r#"{{"order":{{"partner":"acme"}},"items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

/// Routes: `streamed`, `buffered` (body binding), `validated` (binding +
/// schema), `limited` (a rate limit that never refuses) and `full`
/// (binding, schema and a response filter that drops the echoed headers).
pub fn policy(upstream: SocketAddr) -> String {
    format!(
        "partners:\n  acme: {{}}\n\
         upstreams:\n  up:\n    url: http://{upstream}\n\
         routes:\n\
         \x20 - name: streamed\n    methods: [POST]\n    path: /echo/streamed\n    upstream: up\n\
         \x20 - name: buffered\n    methods: [POST]\n    path: /echo/buffered\n    upstream: up\n    bind:\n      body: /order/partner\n\
         \x20 - name: validated\n    methods: [POST]\n    path: /echo/validated\n    upstream: up\n    bind:\n      body: /order/partner\n    validate:\n      body: order.json\n\
         \x20 - name: limited\n    methods: [POST]\n    path: /echo/limited\n    upstream: up\n    rate_limit: {{requests: 1000000000, per: 1s}}\n\
         \x20 - name: full\n    methods: [POST]\n    path: /echo/full\n    upstream: up\n    bind:\n      body: /order/partner\n    validate:\n      body: order.json\n    response:\n      deny: [/headers]\n"
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A gateway process, killed on drop.
pub struct GatewayProcess(pub std::process::Child);

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release build of the gateway (`PORTCULLIS_BIN` overrides).
pub fn release_binary() -> Result<PathBuf, String> {
    built_binary("portcullis", "PORTCULLIS_BIN", "portcullis")
}

/// The release build of the workspace binary `name` (the environment
/// variable `env` overrides), or how to build it.
pub fn built_binary(name: &str, env: &str, package: &str) -> Result<PathBuf, String> {
    let binary = std::env::var(env).map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/release")
            .join(name)
    });
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: run `cargo build --release -p {package}` first",
            binary.display()
        ))
    }
}

/// A running gateway of this benchmark.
pub struct Started {
    pub process: GatewayProcess,
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub base: String,
    pub key: String,
}

/// Writes a configuration (with `extra` appended), issues a key and starts
/// a gateway process.
pub async fn start(
    binary: &std::path::Path,
    ca: &portcullis::transport::certgen::Ca,
    upstream: SocketAddr,
    extra: &str,
) -> Result<Started, String> {
    start_with(binary, ca, upstream, extra, &[]).await
}

/// As [`start`], with the gateway run through `launcher` (a command and
/// its arguments, such as `taskset -c 1`) when one is given.
pub async fn start_with(
    binary: &std::path::Path,
    ca: &portcullis::transport::certgen::Ca,
    upstream: SocketAddr,
    extra: &str,
    launcher: &[&str],
) -> Result<Started, String> {
    start_custom(binary, ca, extra, launcher, &policy(upstream), |_| Ok(())).await
}

/// As [`start_with`], with `policy` as the only policy file and `prepare`
/// run on the gateway's directory before the process starts (to fill an
/// index, say).
pub async fn start_custom(
    binary: &std::path::Path,
    ca: &portcullis::transport::certgen::Ca,
    extra: &str,
    launcher: &[&str],
    policy: &str,
    prepare: impl FnOnce(&std::path::Path) -> Result<(), String>,
) -> Result<Started, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let leaf = ca.issue(&["localhost"]).map_err(|e| e.to_string())?;
    let write = |name: &str, text: &str| std::fs::write(d.join(name), text);
    write("cert.pem", &leaf.cert_pem).map_err(|e| e.to_string())?;
    write("key.pem", &leaf.key_pem).map_err(|e| e.to_string())?;
    write("pepper", &"5a".repeat(32)).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(d.join("policies")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(d.join("schemas")).map_err(|e| e.to_string())?;
    write("schemas/order.json", SCHEMA).map_err(|e| e.to_string())?;
    let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    write(
        "portcullis.yaml",
        &format!(
            "listen:\n  https: \"{https}\"\nadmin:\n  address: \"{admin}\"\n\
             keys:\n  path: keys.json\n  pepper_file: pepper\n\
             tls:\n  certificate: cert.pem\n  private_key: key.pem\n\
             reload:\n  watch_interval: 0s\n\
             server:\n  threads: 1\n  pid_file: gw.pid\n  upgrade_sock: gw.sock\n{extra}"
        ),
    )
    .map_err(|e| e.to_string())?;
    write("policies/bench.yaml", policy).map_err(|e| e.to_string())?;
    prepare(d)?;
    let settings =
        portcullis::config::load_settings(&d.join("portcullis.yaml")).map_err(|e| e.to_string())?;
    let service = portcullis::server::open_keys(&settings.keys, None)?.service;
    let (key, _) = service
        .create("acme", "bench", None)
        .await
        .map_err(|e| e.to_string())?;
    let key = key.reveal().to_string();
    drop(service);
    let mut command = match launcher.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    // The log at its default level (`info`: a line per request) into a file, as a container
    // runtime's log driver would take it; `PORTCULLIS_LOG` in the environment passes through.
    let log = std::fs::File::create(d.join("gateway.log")).map_err(|e| e.to_string())?;
    let process = GatewayProcess(
        command
            .args(["run", "--config"])
            .arg(d.join("portcullis.yaml"))
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?,
    );
    Ok(Started {
        process,
        dir,
        https,
        base: format!("https://localhost:{}", https.port()),
        key,
    })
}

pub async fn wait_ready(client: &reqwest::Client, base: &str, body: &[u8]) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let ok = client
            .post(format!("{base}/echo/validated"))
            .body(body.to_vec())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the gateway did not answer 200 on the validated route".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Started {
    /// An HTTP/1.1 client of this gateway presenting its key.
    pub fn client(
        &self,
        ca: &portcullis::transport::certgen::Ca,
        pool: usize,
    ) -> Result<reqwest::Client, String> {
        self.client_with_key(ca, pool, &self.key)
    }

    /// An HTTP/1.1 client of this gateway presenting `key`.
    pub fn client_with_key(
        &self,
        ca: &portcullis::transport::certgen::Ca,
        pool: usize,
        key: &str,
    ) -> Result<reqwest::Client, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", key.parse().map_err(|_| "key header")?);
        headers.insert(
            "content-type",
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())
                    .map_err(|e| e.to_string())?,
            )
            .resolve("localhost", self.https)
            .http1_only()
            .default_headers(headers)
            .pool_max_idle_per_host(pool)
            .build()
            .map_err(|e| e.to_string())
    }
}
