//! What object-level isolation costs a running gateway: the same
//! `GET /orders/{id}` of the example's legacy API (an order of acme's, with
//! acme's key) through three gateways alike in all but the route's
//! `resource:`, in alternating rounds:
//!
//! - `unchecked`: no `resource:`; the upstream answers whoever asks;
//! - `checked`: the owner is looked up in the index (100 000 objects)
//!   before forwarding; the answer streams back;
//! - `guarded`: as `checked`, and the answer is held and its `/partner`
//!   read before it is sent (a read route whose kind names an owner field).
//!
//! Run (after `cargo build --release -p portcullis`):
//! `cargo run --release -p portcullis-benches --bin ownership_throughput -- [seconds-per-round] [rounds] [concurrency]`

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_benches::gateway::{release_binary, start_custom, Started};
use portcullis_benches::percentile;

/// Objects in each checked gateway's index besides the ones requested.
const INDEX_OBJECTS: usize = 100_000;

fn policy(upstream: SocketAddr, resource: &str) -> String {
    format!(
        "partners:\n  acme: {{}}\n\
         upstreams:\n  up:\n    url: http://{upstream}\n\
         {resource}\
         routes:\n\
         \x20 - name: get-order\n    methods: [GET]\n    path: /orders/{{id}}\n    upstream: up\n{route}",
        resource = if resource.is_empty() {
            String::new()
        } else {
            format!("resources:\n  order: {resource}\n")
        },
        route = if resource.is_empty() {
            ""
        } else {
            "    resource: {kind: order, action: read}\n"
        },
    )
}

/// Writes the embedded index's log (its on-disk format) with the requested
/// orders and `INDEX_OBJECTS` others.
fn fill_index(dir: &std::path::Path, ids: &[String]) -> Result<(), String> {
    let file = std::fs::File::create(dir.join("owners.jsonl")).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let line = |id: &str, partner: &str| {
        format!("{{\"op\":\"set\",\"kind\":\"order\",\"id\":\"{id}\",\"partner\":\"{partner}\"}}\n")
    };
    for i in 0..INDEX_OBJECTS {
        let partner = format!("p{}", i % 1000);
        out.write_all(line(&format!("ord_other{i:08}"), &partner).as_bytes())
            .map_err(|e| e.to_string())?;
    }
    for id in ids {
        out.write_all(line(id, "acme").as_bytes())
            .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

async fn ready(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{url} did not answer 200"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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

    let binary = release_binary()?;
    let (upstream, _recorder, _task) =
        portcullis_example_upstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;
    let ids: Vec<String> = (0..3)
        .filter_map(|n| portcullis_example_upstream::seeded_legacy_order("acme", n))
        .collect();
    let ca = portcullis::transport::certgen::Ca::new("bench CA").map_err(|e| e.to_string())?;
    let audit_off = "audit:\n  output: off\n";
    let mut gateways: Vec<(&str, Started)> = Vec::new();
    for (variant, resource) in [
        ("unchecked", ""),
        ("checked", "{}"),
        ("guarded", "{owner: /partner}"),
    ] {
        let ids = ids.clone();
        let started = start_custom(
            &binary,
            &ca,
            audit_off,
            &[],
            &policy(upstream, resource),
            move |dir| fill_index(dir, &ids),
        )
        .await?;
        gateways.push((variant, started));
    }
    let clients: Vec<reqwest::Client> = gateways
        .iter()
        .map(|(_, gw)| gw.client(&ca, concurrency))
        .collect::<Result<_, _>>()?;
    for ((_, gw), client) in gateways.iter().zip(&clients) {
        ready(client, &format!("{}/orders/{}", gw.base, ids[0])).await?;
    }

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); gateways.len()];
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); gateways.len()];
    for round in 0..rounds {
        for (i, ((variant, gw), client)) in gateways.iter().zip(&clients).enumerate() {
            let urls: Arc<Vec<String>> = Arc::new(
                ids.iter()
                    .map(|id| format!("{}/orders/{id}", gw.base))
                    .collect(),
            );
            let stop = Arc::new(AtomicBool::new(false));
            let began = Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|w| {
                    let (client, urls, stop) = (client.clone(), urls.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut seen = Vec::new();
                        let mut n = w;
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            n += 1;
                            match client.get(&urls[n % urls.len()]).send().await {
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
        "\n{seconds} s rounds x {rounds}, {concurrency} connections, GET of a {}-object index's order, each gateway on 1 worker thread, audit off",
        INDEX_OBJECTS + ids.len()
    );
    println!("| route | median req/s | p50 | p99 | req/s vs unchecked |");
    println!("| --- | --- | --- | --- | --- |");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base_rate = median(&mut rates[0].clone());
    for (i, (variant, _)) in gateways.iter().enumerate() {
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
