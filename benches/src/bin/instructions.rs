//! Instructions per request, counted by callgrind: repeatable for the same
//! binary and inputs whatever else the machine does, so two builds can be
//! compared without the noise of a throughput run.
//!
//! For each build (this one, and `BASELINE_PORTCULLIS_BIN` when set) and
//! each route (`streamed`: the key check only; `full`: body binding, JSON
//! Schema, response filter), a gateway runs under
//! `valgrind --tool=callgrind`, serves a warm-up, has its counters zeroed
//! (`callgrind_control -z`), serves N sequential kept-alive 1 KiB POSTs and
//! has its counters dumped (`callgrind_control -d`): the dump's total
//! divided by N is what one request costs, start-up excluded.
//!
//! Run (after `cargo build --release -p portcullis -p portcullis-benches`):
//! `target/release/instructions [requests]` (default 2000).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use portcullis_benches::gateway::{body, release_binary, start_with, wait_ready, Started};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let requests: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let mut builds = vec![("this build", release_binary()?)];
    if let Some(bin) = std::env::var_os("BASELINE_PORTCULLIS_BIN") {
        builds.push(("baseline", bin.into()));
    }
    let (upstream, _recorder, _task) =
        portcullis_example_upstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;
    let ca =
        portcullis::transport::certgen::Ca::new("instructions CA").map_err(|e| e.to_string())?;
    let body = body();
    let mut rows = Vec::new();
    for (route, audit) in [
        ("streamed", "audit:\n  output: off\n"),
        ("full", "audit:\n  output: file\n  path: audit.log\n"),
    ] {
        for (name, binary) in &builds {
            let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
            let out = scratch.path().join("callgrind.out");
            let out_arg = format!("--callgrind-out-file={}", out.display());
            let launcher = ["valgrind", "--tool=callgrind", out_arg.as_str()];
            let gw = start_with(binary, &ca, upstream, audit, &launcher).await?;
            let per_request = measure(&gw, &ca, route, &body, requests, &out).await?;
            // `INSTRUCTIONS_KEEP=<dir>` keeps each dump for `callgrind_annotate`.
            if let Some(keep) = std::env::var_os("INSTRUCTIONS_KEEP") {
                let kept =
                    Path::new(&keep).join(format!("callgrind.{}.{route}", name.replace(' ', "-")));
                std::fs::copy(dumped(&out)?, &kept)
                    .map_err(|e| format!("{}: {e}", kept.display()))?;
            }
            println!("{name:>10} {route:>8}: {per_request:.0} instructions per request");
            rows.push((*name, route, per_request));
        }
    }
    println!("\n| build | route | instructions / request |\n| --- | --- | --- |");
    for (name, route, n) in &rows {
        println!("| {name} | {route} | {n:.0} |");
    }
    for route in ["streamed", "full"] {
        let of = |build: &str| {
            rows.iter()
                .find(|(n, r, _)| *n == build && *r == route)
                .map(|(_, _, v)| *v)
        };
        if let (Some(new), Some(old)) = (of("this build"), of("baseline")) {
            println!("\n{route}: this build / baseline = {:.3}", new / old);
        }
    }
    Ok(())
}

async fn measure(
    gw: &Started,
    ca: &portcullis::transport::certgen::Ca,
    route: &str,
    body: &[u8],
    requests: u64,
    out: &Path,
) -> Result<f64, String> {
    let client = gw.client(ca, 1)?;
    // Under valgrind start-up takes a while; this also warms every cache.
    wait_ready(&client, &gw.base, body).await?;
    let url = format!("{}/echo/{route}", gw.base);
    for _ in 0..50 {
        post(&client, &url, body).await?;
    }
    let pid = gw.process.0.id().to_string();
    control(&["-z", &pid])?;
    for _ in 0..requests {
        post(&client, &url, body).await?;
    }
    control(&["-d", &pid])?;
    let dump = dumped(out)?;
    let total = std::fs::read_to_string(&dump)
        .map_err(|e| format!("{}: {e}", dump.display()))?
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or("no instruction total in the callgrind dump")?;
    Ok(total as f64 / requests as f64)
}

async fn post(client: &reqwest::Client, url: &str, body: &[u8]) -> Result<(), String> {
    let status = client
        .post(url)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?
        .status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

fn control(args: &[&str]) -> Result<(), String> {
    let status = Command::new("callgrind_control")
        .args(args)
        .status()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("callgrind_control {args:?} failed"))
    }
}

/// The file `callgrind_control -d` wrote: `<out>.<n>` beside `out`.
fn dumped(out: &Path) -> Result<std::path::PathBuf, String> {
    let dir = out.parent().ok_or("no directory")?;
    let stem = out.file_name().and_then(|n| n.to_str()).ok_or("bad name")?;
    std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(stem) && n.len() > stem.len())
        })
        .max()
        .ok_or_else(|| format!("no callgrind dump beside {}", out.display()))
}
