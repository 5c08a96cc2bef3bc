//! Soak: minutes of mixed valid and hostile traffic, with policy reloads,
//! against one gateway process. Reports the process's resident memory and
//! open file descriptors after warm-up and at the end, and fails if they
//! grew (a leak shows as growth under steady load).
//!
//! Run (after `cargo build --release -p portcullis`):
//! `cargo run --release -p portcullis-benches --bin soak -- [minutes] [concurrency]`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use portcullis_benches::gateway::{body, policy, release_binary, start, wait_ready};

/// Resident memory (KiB) and open descriptors of a process, from /proc.
fn footprint(pid: u32) -> Result<(u64, usize), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
        .count();
    Ok((rss, fds))
}

/// One request of the mix; returns a label for the tally.
async fn one(
    kind: usize,
    client: &reqwest::Client,
    bad_key: &reqwest::Client,
    base: &str,
    https: SocketAddr,
    body: &[u8],
) -> String {
    let label = |r: reqwest::Result<reqwest::Response>| match r {
        Ok(r) => r.status().as_u16().to_string(),
        Err(_) => "error".to_string(),
    };
    match kind % 8 {
        0 => label(
            client
                .post(format!("{base}/echo/validated"))
                .body(body.to_vec())
                .send()
                .await,
        ),
        1 => label(
            client
                .post(format!("{base}/echo/streamed"))
                .body(body.to_vec())
                .send()
                .await,
        ),
        2 => label(
            bad_key
                .post(format!("{base}/echo/streamed"))
                .body(body.to_vec())
                .send()
                .await,
        ),
        3 => label(
            client
                .post(format!("{base}/echo/validated"))
                .body(b"{\"order\":".to_vec())
                .send()
                .await,
        ),
        4 => {
            let other = String::from_utf8_lossy(body).replace("\"acme\"", "\"globex\"");
            label(
                client
                    .post(format!("{base}/echo/buffered"))
                    .body(other)
                    .send()
                    .await,
            )
        }
        5 => label(
            client
                .post(format!("{base}/echo/validated"))
                .body(vec![b' '; 2 * 1024 * 1024])
                .send()
                .await,
        ),
        6 => {
            // Not TLS at all: a handshake that fails.
            if let Ok(mut s) = tokio::net::TcpStream::connect(https).await {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            }
            "plaintext".to_string()
        }
        _ => {
            // A connection that says nothing and goes away.
            if let Ok(s) = tokio::net::TcpStream::connect(https).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(s);
            }
            "idle".to_string()
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), String> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let minutes = args.first().copied().unwrap_or(3);
    let concurrency = args.get(1).copied().unwrap_or(8) as usize;
    let binary = release_binary()?;
    let (upstream, _recorder, _task) =
        portcullis_example_upstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;
    let ca = portcullis::transport::certgen::Ca::new("soak CA").map_err(|e| e.to_string())?;
    // Blocking would turn the rest of the run into 429s; it is not what is measured here.
    let gw = start(
        &binary,
        &ca,
        upstream,
        "audit:\n  output: file\n  path: audit.log\n\
         abuse:\n  auth_failures:\n    per_client: 0\n    per_key: 0\n",
    )
    .await?;
    let client = gw.client(&ca, concurrency)?;
    let bad_key = gw.client_with_key(&ca, concurrency, "ptc_live_not_a_key")?;
    let body = body();
    wait_ready(&client, &gw.base, &body).await?;
    let pid = gw.process.0.id();

    let stop = Arc::new(AtomicBool::new(false));
    let tally: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (client, bad_key, base, body, stop, tally) = (
                client.clone(),
                bad_key.clone(),
                gw.base.clone(),
                body.clone(),
                stop.clone(),
                tally.clone(),
            );
            let https = gw.https;
            tokio::spawn(async move {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    let label = one(n, &client, &bad_key, &base, https, &body).await;
                    if let Ok(mut t) = tally.lock() {
                        *t.entry(label).or_default() += 1;
                    }
                    n += 1;
                }
            })
        })
        .collect();

    let began = Instant::now();
    let total = Duration::from_secs(minutes * 60);
    let warmup = Duration::from_secs(20).min(total / 4);
    tokio::time::sleep(warmup).await;
    let (rss0, fds0) = footprint(pid)?;
    println!(
        "after {:>4.0} s: RSS {rss0} KiB, {fds0} fds",
        began.elapsed().as_secs_f64()
    );
    let policy_path = gw.dir.path().join("policies/bench.yaml");
    let mut reloads = 0;
    while began.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(15)).await;
        // A fault under load: the policy is rewritten and reloaded.
        std::fs::write(&policy_path, policy(upstream)).map_err(|e| e.to_string())?;
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status();
        reloads += 1;
        let (rss, fds) = footprint(pid)?;
        println!(
            "after {:>4.0} s: RSS {rss} KiB, {fds} fds",
            began.elapsed().as_secs_f64()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    // Let connections the load left behind close before the last reading.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss1, fds1) = footprint(pid)?;
    let tally = tally.lock().map(|t| t.clone()).unwrap_or_default();
    println!("\n{minutes} min, {concurrency} workers, {reloads} reloads; answers: {tally:?}");
    println!("| reading | RSS KiB | open fds |\n| --- | --- | --- |");
    println!("| after warm-up | {rss0} | {fds0} |\n| end | {rss1} | {fds1} |");
    let rss_ok = rss1 <= rss0 + rss0 / 4 + 16 * 1024;
    let fds_ok = fds1 <= fds0 + 16;
    if !(rss_ok && fds_ok) {
        return Err(format!(
            "not flat: RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}"
        ));
    }
    println!(
        "flat: RSS {:+} KiB, fds {:+}",
        rss1 as i64 - rss0 as i64,
        fds1 as i64 - fds0 as i64
    );
    Ok(())
}
