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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_benches::gateway::{body, release_binary, start, wait_ready};
use portcullis_benches::percentile;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), String> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(5);
    let rounds = args.get(1).copied().unwrap_or(3);
    let concurrency = args.get(2).copied().unwrap_or(16) as usize;

    let binary = release_binary()?;

    let (upstream, _recorder, _task) =
        portcullis_example_upstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;

    let ca = portcullis::transport::certgen::Ca::new("bench CA").map_err(|e| e.to_string())?;
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
    let audited_client = audited.client(&ca, concurrency)?;
    let unaudited_client = unaudited.client(&ca, concurrency)?;
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
