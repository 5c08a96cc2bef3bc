//! Portcullis side by side with nginx and HAProxy, in one run on one
//! machine, the direct upstream as the floor.
//!
//! Every server terminates TLS on the server core with one worker, looks
//! the API key up (401 otherwise) and forwards to the same upstream with
//! the partner in `X-Partner-Id`; the upstream and the load tools share
//! the other core. Portcullis runs twice: `bare` (TLS + key, audit off)
//! and `full` (key, body binding, 1 KiB JSON Schema, a response field
//! filter, every request audited to a file).
//!
//! For each client mode (HTTP/1.1 keep-alive, a new TLS connection per
//! request, HTTP/2) it measures capacity with wrk or h2load in
//! alternating rounds, then latency with oha (keep-alive and HTTP/2) at one
//! rate for every server, half the slowest one's capacity, with the
//! client's own core checked below 70 % busy, then memory with 10 000 idle
//! TLS connections. A bare pingora
//! proxy (`pingora_floor`) runs beside them, to separate what pingora
//! costs from what Portcullis's stages cost.
//!
//! oha's latency correction times each request from when it was due, so
//! requests due while it is still opening its connections count as late;
//! at 30 s runs that start-up lands in p99.9, not in p99.
//!
//! Run `benches/compare.sh` (installs the tools, builds, then runs this
//! with its arguments): `--seconds 5 --rounds 3 --latency-seconds 30
//! --connections 32 --idle 10000 --keys 10000`; `--rate N` fixes the
//! latency runs' rate. `--latency-seconds 0` skips latency and `--idle 0`
//! the idle connections; `BASELINE_PORTCULLIS_BIN=<binary>` adds a
//! second Portcullis build (bare and full) to the same rounds and prints
//! each build's throughput against it; `--only full` keeps only the targets whose
//! name contains `full` (and the direct upstream).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_benches::compare::idle;
use portcullis_benches::compare::load::{self, Mode, Request, Throughput};
use portcullis_benches::compare::peers::{self, Job, KeyMap, Peer};
use portcullis_benches::compare::procs;
use portcullis_benches::gateway::{
    body, built_binary, free_port, release_binary, start_with, Started,
};

const LOAD_CPU: &str = "0";
// Positions in the target list.
const DIRECT: usize = 0;
const NGINX: usize = 1;
const SERVER_CPU: &str = "1";
/// The share of its core the latency client may use before its own
/// queueing could pass for the server's latency.
const CLIENT_BUSY_LIMIT: f64 = 0.7;

struct Options {
    seconds: u64,
    rounds: usize,
    latency_seconds: u64,
    connections: usize,
    idle: usize,
    keys: usize,
    /// The latency runs' request rate (default: half the slowest server's capacity).
    rate: Option<f64>,
    /// Only the targets whose name contains this (the direct upstream is always kept).
    only: Option<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut o = Options {
            seconds: 5,
            rounds: 3,
            latency_seconds: 30,
            connections: 32,
            idle: 10_000,
            keys: 10_000,
            rate: None,
            only: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.chunks(2) {
            let value = |name: &str| -> Result<u64, String> {
                pair.get(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number"))
            };
            match pair[0].as_str() {
                "--seconds" => o.seconds = value("--seconds")?,
                "--rounds" => o.rounds = value("--rounds")? as usize,
                "--latency-seconds" => o.latency_seconds = value("--latency-seconds")?,
                "--connections" => o.connections = value("--connections")? as usize,
                "--idle" => o.idle = value("--idle")? as usize,
                "--keys" => o.keys = value("--keys")? as usize,
                "--rate" => o.rate = Some(value("--rate")? as f64),
                "--only" => o.only = pair.get(1).cloned(),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if o.only.is_some() && o.latency_seconds > 0 {
            // Added latency is measured against nginx and the direct upstream.
            return Err("--only needs --latency-seconds 0".into());
        }
        if o.rounds == 0 || o.seconds == 0 || o.connections < 8 {
            // `--latency-seconds 0` measures throughput only.
            return Err("--rounds and --seconds must be positive, --connections ≥ 8".into());
        }
        Ok(o)
    }
}

/// A server under test.
struct Target {
    name: &'static str,
    request: Request,
    path: &'static str,
    /// The process whose tree's CPU and memory are the server's.
    pid: u32,
    /// Where idle TLS connections go (none for the plaintext upstream).
    tls: Option<SocketAddr>,
}

impl Target {
    /// The API key its requests carry (none for the direct upstream).
    fn key(&self) -> &str {
        self.request
            .headers
            .iter()
            .find(|(name, _)| name == "x-api-key")
            .map_or("", |(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Results {
    /// (mode, target) → per-round throughput and CPU seconds per 100k.
    rounds: BTreeMap<(usize, usize), Vec<(Throughput, f64)>>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn installed(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require_tools(o: &Options) -> Result<(), String> {
    let missing: Vec<&str> = ["wrk", "h2load", "oha", "nginx", "haproxy", "taskset"]
        .into_iter()
        // oha only measures latency.
        .filter(|tool| *tool != "oha" || o.latency_seconds > 0)
        .filter(|tool| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing {}: run benches/compare.sh, which installs them",
            missing.join(", ")
        ))
    }
}

fn client(ca_pem: &str, addr: SocketAddr) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?,
        )
        .resolve("localhost", addr)
        .http1_only()
        .build()
        .map_err(|e| e.to_string())
}

async fn send(
    client: &reqwest::Client,
    request: &Request,
    key: Option<&str>,
) -> Result<(u16, serde_json::Value), String> {
    let body = std::fs::read(&request.body_file).map_err(|e| e.to_string())?;
    let mut r = client.post(&request.url).body(body);
    for (name, value) in &request.headers {
        if name != "x-api-key" {
            r = r.header(name, value);
        }
    }
    if let Some(key) = key {
        r = r.header("x-api-key", key);
    }
    let response = r.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// Waits for `target` to answer 200, then checks it does the job: a bad
/// key is refused with 401, a good one reaches the upstream without the
/// key and with the partner named.
async fn check_job(ca_pem: &str, target: &Target, key: &str) -> Result<(), String> {
    let addr = target
        .tls
        .ok_or("a TLS target has an address")
        .map_err(str::to_string)?;
    let client = client(ca_pem, addr)?;
    let began = Instant::now();
    while !matches!(
        send(&client, &target.request, Some(key)).await,
        Ok((200, _))
    ) {
        if began.elapsed() > Duration::from_secs(30) {
            return Err(format!("{} did not answer 200 within 30 s", target.name));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unknown = portcullis::keys::format::generate().reveal().to_string();
    let (status, _) = send(&client, &target.request, Some(&unknown)).await?;
    if status != 401 {
        return Err(format!("{} answered {status} to a wrong key", target.name));
    }
    let (status, _) = send(&client, &target.request, None).await?;
    if status != 401 {
        return Err(format!("{} answered {status} without a key", target.name));
    }
    let (_, echoed) = send(&client, &target.request, Some(key)).await?;
    if let Some(headers) = echoed.get("headers") {
        let partner = headers.pointer("/x-partner-id/0").and_then(|v| v.as_str());
        // pingap's key plugin knows keys, not partners.
        let names_partner = target.name != "pingap";
        if (names_partner && partner != Some("acme")) || headers.get("x-api-key").is_some() {
            return Err(format!(
                "{}: the upstream saw partner {partner:?} and key header {:?}",
                target.name,
                headers.get("x-api-key").is_some()
            ));
        }
    } else if !target.name.ends_with(" full") {
        return Err(format!("{}: the echo has no headers", target.name));
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let version = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("{cmd} 2>&1 | head -n1")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "{} CPUs ({cpu}), {}; {}; {}; {}; {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        version("uname -sr"),
        version("nginx -v"),
        version("haproxy -v"),
        version("wrk -v"),
        version("h2load --version"),
        version("oha --version"),
    )
}

async fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    let began = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if began.elapsed() > Duration::from_secs(30) {
            return Err(format!("nothing listens on {addr}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn throughput(
    target: &Target,
    mode: Mode,
    o: &Options,
    scratch: &Path,
    ticks_per_second: f64,
) -> Result<(Throughput, f64), String> {
    let before = procs::cpu_ticks(target.pid);
    // The upstream speaks HTTP/1.1 only (as the proxies do to it), so in
    // the HTTP/2 mode its floor is h2load over HTTP/1.1 with as many
    // requests in flight.
    let t = match mode {
        Mode::Http2 if target.tls.is_none() => {
            load::h2load(LOAD_CPU, &target.request, o.connections, 1, o.seconds, true)?
        }
        Mode::Http2 => load::h2load(
            LOAD_CPU,
            &target.request,
            o.connections / 8,
            8,
            o.seconds,
            false,
        )?,
        _ => load::wrk(
            LOAD_CPU,
            &target.request,
            mode,
            o.connections,
            o.seconds,
            scratch,
        )?,
    };
    let cpu = (procs::cpu_ticks(target.pid) - before) as f64 / ticks_per_second;
    Ok((t, cpu / t.requests.max(1) as f64 * 100_000.0))
}

fn ms(seconds: f64) -> String {
    format!("{:.2}", seconds * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let o = Options::parse()?;
    require_tools(&o)?;
    let gateway = release_binary()?;
    let upstream_bin = built_binary(
        "orders-upstream",
        "ORDERS_UPSTREAM_BIN",
        "portcullis-example-upstream",
    )?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    // The servers' configurations and logs, kept when asked for.
    let (scratch_path, _scratch) = if std::env::var_os("COMPARE_KEEP").is_some() {
        (scratch.keep(), None)
    } else {
        (scratch.path().to_path_buf(), Some(scratch))
    };
    eprintln!("scratch directory: {}", scratch_path.display());
    let s = scratch_path.as_path();
    let body_file = s.join("body.json");
    std::fs::write(&body_file, body()).map_err(|e| e.to_string())?;

    let ca = portcullis::transport::certgen::Ca::new("compare CA").map_err(|e| e.to_string())?;
    let ca_pem = ca.cert_pem();
    let leaf = ca.issue(&["localhost"]).map_err(|e| e.to_string())?;
    std::fs::write(s.join("cert.pem"), &leaf.cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(s.join("key.pem"), &leaf.key_pem).map_err(|e| e.to_string())?;

    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let upstream = peers::spawn_pinned(
        "upstream",
        LOAD_CPU,
        &upstream_bin,
        &["--listen", &upstream_addr.to_string()],
        &s.join("upstream.out"),
    )?;
    wait_listening(upstream_addr).await?;

    let launcher = ["taskset", "-c", SERVER_CPU];
    let bare = start_with(
        &gateway,
        &ca,
        upstream_addr,
        "audit:\n  output: off\n",
        &launcher,
    )
    .await?;
    let full = start_with(
        &gateway,
        &ca,
        upstream_addr,
        "audit:\n  output: file\n  path: audit.log\n",
        &launcher,
    )
    .await?;

    // Another build of Portcullis (today's main, say) measured in the same
    // run, so a change's cost is a ratio, not two runs' absolute numbers.
    let baseline = match std::env::var_os("BASELINE_PORTCULLIS_BIN") {
        None => None,
        Some(bin) => {
            let bin = std::path::PathBuf::from(bin);
            let bare = start_with(
                &bin,
                &ca,
                upstream_addr,
                "audit:\n  output: off\n",
                &launcher,
            )
            .await?;
            let full = start_with(
                &bin,
                &ca,
                upstream_addr,
                "audit:\n  output: file\n  path: audit.log\n",
                &launcher,
            )
            .await?;
            Some((bare, full))
        }
    };

    // The peers' maps hold the bare gateway's key among `keys` others.
    let mut entries = vec![(bare.key.clone(), "acme".to_string())];
    entries.extend((1..o.keys).map(|i| {
        (
            portcullis::keys::format::generate().reveal().to_string(),
            format!("partner-{}", i % 100),
        )
    }));
    let map = KeyMap { entries: &entries };
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let haproxy_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (cert, key) = (s.join("cert.pem"), s.join("key.pem"));
    let job = Job {
        cpu: SERVER_CPU,
        upstream_port: upstream_addr.port(),
        keys: &map,
        cert: &cert,
        key: &key,
    };
    let nginx = peers::nginx(&s.join("nginx"), nginx_addr.port(), &job)?;
    let floor_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let floor = peers::pingora_floor(
        &built_binary("pingora_floor", "PINGORA_FLOOR_BIN", "portcullis-benches")?,
        &s.join("floor"),
        floor_addr.port(),
        &job,
    )?;
    let haproxy = peers::haproxy(&s.join("haproxy"), haproxy_addr.port(), &job)?;
    let pingap_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let pingap = if installed("pingap") {
        Some(peers::pingap(&s.join("pingap"), pingap_addr.port(), &job)?)
    } else {
        println!("pingap is not installed (`cargo install pingap --version 0.13.1 --locked`, needs protobuf-compiler): its row is left out");
        None
    };

    let request = |base: String, path: &str, key: Option<&str>| Request {
        url: format!("{base}{path}"),
        body_file: body_file.clone(),
        headers: [("content-type".to_string(), "application/json".to_string())]
            .into_iter()
            .chain(key.map(|k| ("x-api-key".to_string(), k.to_string())))
            .collect(),
    };
    let https = |addr: SocketAddr| format!("https://localhost:{}", addr.port());
    let gateway_target = |name, started: &Started, path| Target {
        name,
        request: request(started.base.clone(), path, Some(&started.key)),
        path,
        pid: started.process.0.id(),
        tls: Some(started.https),
    };
    let peer_target = |peer: &Peer, addr: SocketAddr| Target {
        name: peer.name,
        request: request(https(addr), "/echo/bare", Some(&bare.key)),
        path: "/echo/bare",
        pid: peer.pid(),
        tls: Some(addr),
    };
    let mut targets = vec![
        Target {
            name: "direct upstream",
            request: request(format!("http://{upstream_addr}"), "/echo/bare", None),
            path: "/echo/bare",
            pid: upstream.pid(),
            tls: None,
        },
        peer_target(&nginx, nginx_addr),
        peer_target(&haproxy, haproxy_addr),
        peer_target(&floor, floor_addr),
    ];
    targets.extend(pingap.as_ref().map(|p| peer_target(p, pingap_addr)));
    targets.extend([
        gateway_target("portcullis bare", &bare, "/echo/streamed"),
        gateway_target("portcullis full", &full, "/echo/full"),
    ]);
    if let Some((bare, full)) = &baseline {
        targets.push(gateway_target("baseline bare", bare, "/echo/streamed"));
        targets.push(gateway_target("baseline full", full, "/echo/full"));
    }
    if let Some(only) = &o.only {
        targets.retain(|t| t.name == "direct upstream" || t.name.contains(only.as_str()));
    }
    for target in &targets[1..] {
        check_job(&ca_pem, target, target.key()).await?;
    }
    println!("machine: {}", machine());
    println!(
        "every proxy refuses a wrong or missing key with 401 and forwards a good one without the key and (pingap excepted) with X-Partner-Id\n"
    );

    let ticks = procs::clock_ticks() as f64;
    let mut results = Results::default();
    for (m, mode) in Mode::ALL.iter().enumerate() {
        for round in 0..o.rounds {
            for (t, target) in targets.iter().enumerate() {
                let (tp, cpu) = throughput(target, *mode, &o, s, ticks)
                    .map_err(|e| format!("{} / {}: {e}", target.name, mode.label()))?;
                println!(
                    "{} round {} {:>16}: {:>8.0} req/s, {:.2} CPU s/100k",
                    mode.label(),
                    round + 1,
                    target.name,
                    tp.per_second,
                    cpu
                );
                results.rounds.entry((m, t)).or_default().push((tp, cpu));
            }
        }
    }
    let capacity = |results: &Results, m: usize, t: usize| {
        median(
            results.rounds[&(m, t)]
                .iter()
                .map(|(tp, _)| tp.per_second)
                .collect(),
        )
    };

    throughput_report(&o, &targets, &results, &capacity);
    if o.latency_seconds > 0 {
        latency_at_one_rate(&o, &targets, &results, &capacity)?;
    }
    let peaks: Vec<u64> = targets.iter().map(|t| procs::peak_rss_kib(t.pid)).collect();
    if o.idle > 0 {
        let idle_rows = idle_connections(&o, &targets, &ca_pem).await?;
        memory_report(&targets, &peaks, &idle_rows);
    }
    drop((
        bare, full, baseline, nginx, haproxy, floor, pingap, upstream,
    ));
    Ok(())
}

/// Latency for every server at one request rate per client mode: half the
/// slowest server's capacity (or `--rate`), so each answers the same load
/// and a difference in p99 is the server's, not the load's. The client's
/// own core is measured too: above 70 % busy its queueing would pass for
/// server latency, and the row says so.
fn latency_at_one_rate(
    o: &Options,
    targets: &[Target],
    results: &Results,
    capacity: &dyn Fn(&Results, usize, usize) -> f64,
) -> Result<(), String> {
    println!(
        "\nlatency: {} s per server at one rate per mode, oha with latency correction",
        o.latency_seconds
    );
    for (m, mode) in Mode::ALL.iter().enumerate() {
        // A handshake per request measures the client's TLS as much as the
        // server; the latency target is for kept-alive connections.
        if *mode == Mode::NewConnection {
            continue;
        }
        let slowest = (0..targets.len())
            .map(|t| capacity(results, m, t))
            .fold(f64::INFINITY, f64::min);
        let rate = o
            .rate
            .unwrap_or(((slowest / 2.0) / 100.0).floor() * 100.0)
            .max(100.0);
        println!("\n#### {} at {rate:.0} req/s\n", mode.label());
        println!("| server | achieved req/s | p50 ms | p99 ms | p99.9 ms | client core busy |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let mut measured = Vec::new();
        for target in targets {
            let (mode, conns) = match mode {
                Mode::Http2 if target.tls.is_none() => (Mode::KeepAlive, o.connections),
                Mode::Http2 => (Mode::Http2, o.connections / 8),
                other => (*other, o.connections),
            };
            let l = load::oha(
                LOAD_CPU,
                &target.request,
                mode,
                rate,
                conns,
                o.latency_seconds,
            )
            .map_err(|e| format!("{} / {}: {e}", target.name, mode.label()))?;
            let flag = if l.client_busy > CLIENT_BUSY_LIMIT {
                " (over the limit: this row measures the client)"
            } else {
                ""
            };
            println!(
                "| {} | {:.0} | {} | {} | {} | {:.0} %{flag} |",
                target.name,
                l.achieved_rate,
                ms(l.p50),
                ms(l.p99),
                ms(l.p999),
                l.client_busy * 100.0
            );
            measured.push(l);
        }
        let busiest = measured.iter().map(|l| l.client_busy).fold(0.0, f64::max);
        println!(
            "\nclient core at most {:.0} % busy (limit {:.0} %{})",
            busiest * 100.0,
            CLIENT_BUSY_LIMIT * 100.0,
            if busiest > CLIENT_BUSY_LIMIT {
                ": lower --rate"
            } else {
                ""
            }
        );
        println!("\n| added latency, ms | vs nginx: p50 / p99 / p99.9 | vs direct: p50 / p99 / p99.9 | p99 and p99.9 within 1 ms of nginx |");
        println!("| --- | --- | --- | --- |");
        for (t, target) in targets.iter().enumerate() {
            if !target.name.contains("portcullis") && !target.name.contains("baseline") {
                continue;
            }
            let (gw, nginx, direct) = (measured[t], measured[NGINX], measured[DIRECT]);
            let within = gw.p99 - nginx.p99 <= 0.001 && gw.p999 - nginx.p999 <= 0.001;
            println!(
                "| {} | {} / {} / {} | {} / {} / {} | {} |",
                target.name,
                ms(gw.p50 - nginx.p50),
                ms(gw.p99 - nginx.p99),
                ms(gw.p999 - nginx.p999),
                ms(gw.p50 - direct.p50),
                ms(gw.p99 - direct.p99),
                ms(gw.p999 - direct.p999),
                if within { "yes" } else { "no" }
            );
        }
    }
    Ok(())
}

/// Opens `--idle` TLS connections to each server, one request answered on
/// each, and measures the server's memory with them open.
async fn idle_connections(
    o: &Options,
    targets: &[Target],
    ca_pem: &str,
) -> Result<Vec<(&'static str, u64, u64, usize)>, String> {
    let mut idle_rows = Vec::new();
    let connector = idle::connector(ca_pem)?;
    for target in targets {
        let Some(addr) = target.tls else { continue };
        let body = std::fs::read(&target.request.body_file).map_err(|e| e.to_string())?;
        let (key, path) = (target.key(), target.path);
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             X-Api-Key: {key}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let before = procs::rss_kib(target.pid);
        let began = Instant::now();
        let held = idle::open(&connector, addr, Arc::new(raw), o.idle)
            .await
            .map_err(|e| format!("{}: idle connections: {e}", target.name))?;
        let opened_in = began.elapsed();
        let after = procs::rss_kib(target.pid);
        println!(
            "{}: {} idle TLS connections opened in {:.1} s; RSS {before} → {after} KiB",
            target.name,
            held.len(),
            opened_in.as_secs_f64()
        );
        idle_rows.push((target.name, before, after, held.len()));
        drop(held);
    }
    Ok(idle_rows)
}

/// Throughput alone (`--latency-seconds 0`), with each Portcullis build
/// against the baseline build when one ran.
fn throughput_report(
    o: &Options,
    targets: &[Target],
    results: &Results,
    capacity: &dyn Fn(&Results, usize, usize) -> f64,
) {
    println!(
        "\n{} s throughput rounds × {}, alternating; {} connections (HTTP/2: {} × 8 streams)",
        o.seconds,
        o.rounds,
        o.connections,
        o.connections / 8
    );
    for (m, mode) in Mode::ALL.iter().enumerate() {
        println!("\n#### {}\n", mode.label());
        println!("| server | req/s (median) | vs direct | CPU s / 100k req |");
        println!("| --- | --- | --- | --- |");
        let floor = capacity(results, m, DIRECT);
        for (t, target) in targets.iter().enumerate() {
            let rate = capacity(results, m, t);
            let cpu = median(results.rounds[&(m, t)].iter().map(|(_, c)| *c).collect());
            println!(
                "| {} | {rate:.0} | {:.2} | {cpu:.2} |",
                target.name,
                rate / floor
            );
        }
        let cpu_of = |t: usize| median(results.rounds[&(m, t)].iter().map(|(_, c)| *c).collect());
        if let Some(nginx) = targets.iter().position(|x| x.name == "nginx") {
            println!("\n| CPU per request | vs nginx | vs pingora floor |");
            println!("| --- | --- | --- |");
            let floor = targets.iter().position(|x| x.name == "pingora floor");
            for (t, target) in targets
                .iter()
                .enumerate()
                .filter(|(_, x)| x.name.starts_with("portcullis") || x.name.starts_with("baseline"))
            {
                println!(
                    "| {} | {:.2} | {} |",
                    target.name,
                    cpu_of(t) / cpu_of(nginx),
                    floor.map_or(String::new(), |f| format!("{:.2}", cpu_of(t) / cpu_of(f)))
                );
            }
        }
        for (t, target) in targets.iter().enumerate() {
            let Some(build) = target.name.strip_prefix("portcullis ") else {
                continue;
            };
            let paired = format!("baseline {build}");
            if let Some(b) = targets.iter().position(|x| x.name == paired) {
                println!(
                    "\n{} / {}: {:.3}",
                    target.name,
                    paired,
                    capacity(results, m, t) / capacity(results, m, b)
                );
            }
        }
    }
}

fn memory_report(targets: &[Target], peaks: &[u64], idle_rows: &[(&str, u64, u64, usize)]) {
    println!("\n#### Memory\n");
    println!("| server | peak RSS under load KiB | idle TLS connections | RSS before KiB | RSS with them open KiB | KiB per connection |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (t, target) in targets.iter().enumerate() {
        match idle_rows.iter().find(|row| row.0 == target.name) {
            Some((_, before, after, n)) => println!(
                "| {} | {} | {n} | {before} | {after} | {:.1} |",
                target.name,
                peaks[t],
                (*after as f64 - *before as f64) / (*n).max(1) as f64
            ),
            None => println!("| {} | {} | | | | |", target.name, peaks[t]),
        }
    }
}
