//! What the stages cost a running gateway: the same 1 KiB JSON POST
//! through several routes, in alternating rounds:
//!
//! - `streamed`: no body stage; pingora streams the body to the upstream;
//! - `buffered`: a body binding, so the body is read whole and parsed
//!   strictly before it is forwarded;
//! - `validated`: the body binding plus a JSON Schema;
//! - `limited`: streamed, plus a rate limit (decided locally) that never
//!   refuses, so its price is visible;
//! - `unaudited`: streamed, on a second gateway process alike in every way
//!   but with the audit trail off.
//!
//! The first gateway writes every request to its audit trail (a file), as
//! in production.
//!
//! Run (after `cargo build --release -p portcullis`):
//! `cargo run --release -p portcullis-benches --bin stage_throughput -- [seconds-per-round] [rounds] [concurrency]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_benches::percentile;

const SCHEMA: &str = r#"{"type":"object","required":["order","items"],"properties":{
  "order":{"type":"object","required":["partner"],"properties":{"partner":{"type":"string"}}},
  "items":{"type":"array","items":{"type":"object","additionalProperties":false,
    "required":["sku","quantity"],"properties":{
      "sku":{"type":"string","pattern":"^[A-Z0-9-]{3,32}$"},
      "quantity":{"type":"integer","minimum":1,"maximum":1000},
      "note":{"type":"string","maxLength":200}}}}}}"#;

fn body() -> Vec<u8> {
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

fn policy(upstream: SocketAddr) -> String {
    format!(
        "partners:\n  acme: {{}}\n\
         upstreams:\n  up:\n    url: http://{upstream}\n\
         routes:\n\
         \x20 - name: streamed\n    methods: [POST]\n    path: /echo/streamed\n    upstream: up\n\
         \x20 - name: buffered\n    methods: [POST]\n    path: /echo/buffered\n    upstream: up\n    bind:\n      body: /order/partner\n\
         \x20 - name: validated\n    methods: [POST]\n    path: /echo/validated\n    upstream: up\n    bind:\n      body: /order/partner\n    validate:\n      body: order.json\n\
         \x20 - name: limited\n    methods: [POST]\n    path: /echo/limited\n    upstream: up\n    rate_limit: {{requests: 1000000000, per: 1s}}\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), String> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(5);
    let rounds = args.get(1).copied().unwrap_or(3);
    let concurrency = args.get(2).copied().unwrap_or(16) as usize;

    let binary = std::env::var("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/portcullis")
        });
    if !binary.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release -p portcullis` first",
            binary.display()
        ));
    }

    let (upstream, _recorder, _task) =
        portcullis_example_upstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;

    let ca = portcullis::certgen::Ca::new("bench CA").map_err(|e| e.to_string())?;
    // Two gateways alike but for the audit trail: the price of auditing
    // every request is the `unaudited` row against `streamed`.
    let audited = start(
        &binary,
        &ca,
        upstream,
        "audit:\n  output: file\n  path: audit.log\n",
    )
    .await?;
    let unaudited = start(&binary, &ca, upstream, "audit:\n  output: off\n").await?;
    let client_for = |gw: &Started| -> Result<reqwest::Client, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", gw.key.parse().map_err(|_| "key header")?);
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
            .resolve("localhost", gw.https)
            .http1_only()
            .default_headers(headers)
            .pool_max_idle_per_host(concurrency)
            .build()
            .map_err(|e| e.to_string())
    };
    let audited_client = client_for(&audited)?;
    let unaudited_client = client_for(&unaudited)?;
    let body = body();
    for (gw, client) in [(&audited, &audited_client), (&unaudited, &unaudited_client)] {
        wait_ready(client, &gw.base, &body).await?;
    }
    let variants = [
        ("streamed", &audited_client, &audited.base, "streamed"),
        ("buffered", &audited_client, &audited.base, "buffered"),
        ("validated", &audited_client, &audited.base, "validated"),
        ("limited", &audited_client, &audited.base, "limited"),
        ("unaudited", &unaudited_client, &unaudited.base, "streamed"),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (variant, client, base, route)) in variants.iter().enumerate() {
            let url = format!("{base}/echo/{route}");
            let stop = Arc::new(AtomicBool::new(false));
            let began = Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, url, body, stop) =
                        ((*client).clone(), url.clone(), body.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut seen = Vec::new();
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            match client.post(&url).body(body.clone()).send().await {
                                Ok(r) if r.status() == 200 => {
                                    let _ = r.bytes().await;
                                    seen.push(t.elapsed());
                                }
                                _ => return Err(()),
                            }
                        }
                        Ok(seen)
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
            let mut count = 0;
            for w in workers {
                let seen = w
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|()| format!("a request on {variant} failed"))?;
                count += seen.len();
                latencies[i].extend(seen);
            }
            let rate = count as f64 / began.elapsed().as_secs_f64();
            println!("round {} {variant:>9}: {rate:>8.0} req/s", round + 1);
            rates[i].push(rate);
        }
    }

    println!(
        "\n{} s rounds x {rounds}, {concurrency} connections, {} B JSON body, each gateway on 1 worker thread",
        seconds,
        body.len()
    );
    println!("| route | median req/s | p50 | p99 | req/s vs streamed |");
    println!("| --- | --- | --- | --- | --- |");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base_rate = median(&mut rates[0].clone());
    for (i, (variant, ..)) in variants.iter().enumerate() {
        let rate = median(&mut rates[i]);
        let p50 = percentile(&mut latencies[i], 50.0);
        let p99 = percentile(&mut latencies[i], 99.0);
        println!(
            "| {variant} | {rate:.0} | {:.2} ms | {:.2} ms | {:.2} |",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            rate / base_rate
        );
    }
    Ok(())
}

/// A running gateway of this benchmark.
struct Started {
    _process: Gateway,
    _dir: tempfile::TempDir,
    https: SocketAddr,
    base: String,
    key: String,
}

/// Writes a configuration (with `extra` appended), issues a key and starts
/// a gateway process.
async fn start(
    binary: &std::path::Path,
    ca: &portcullis::certgen::Ca,
    upstream: SocketAddr,
    extra: &str,
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
    write("policies/bench.yaml", &policy(upstream)).map_err(|e| e.to_string())?;
    let settings =
        portcullis::config::load_settings(&d.join("portcullis.yaml")).map_err(|e| e.to_string())?;
    let service = portcullis::server::open_keys(&settings.keys, None)?.service;
    let (key, _) = service
        .create("acme", "bench", None)
        .await
        .map_err(|e| e.to_string())?;
    let key = key.reveal().to_string();
    drop(service);
    let process = Gateway(
        Command::new(binary)
            .args(["run", "--config"])
            .arg(d.join("portcullis.yaml"))
            .current_dir(d)
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?,
    );
    Ok(Started {
        _process: process,
        _dir: dir,
        https,
        base: format!("https://localhost:{}", https.port()),
        key,
    })
}

async fn wait_ready(client: &reqwest::Client, base: &str, body: &[u8]) -> Result<(), String> {
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
