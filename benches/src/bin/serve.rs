//! One gateway of `compare` (bare or full) with its upstream, held open for
//! profiling by hand: prints the gateway's pid, URL and key and a wrk script
//! for its route, then serves until stdin closes. The gateway runs on CPU 1,
//! the upstream on CPU 0, as in `compare`.
//!
//! `target/release/serve bare|full` (after `cargo build --release -p
//! portcullis -p portcullis-example-upstream -p portcullis-benches`), then for
//! example `taskset -c 0 wrk -t1 -c32 -d30s -s <script> <url>` beside
//! `perf record -g -p <pid>`.

use std::io::Read;
use std::net::SocketAddr;

use portcullis_benches::compare::peers;
use portcullis_benches::gateway::{body, built_binary, free_port, release_binary, start_with};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "bare".into());
    let (route, audit) = match which.as_str() {
        "bare" => ("streamed", "audit:\n  output: off\n"),
        "full" => ("full", "audit:\n  output: file\n  path: audit.log\n"),
        other => return Err(format!("{other}: say bare or full")),
    };
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let upstream_bin = built_binary(
        "orders-upstream",
        "UPSTREAM_BIN",
        "portcullis-example-upstream",
    )?;
    let _upstream = peers::spawn_pinned(
        "upstream",
        "0",
        &upstream_bin,
        &["--listen", &upstream_addr.to_string()],
        &scratch.path().join("upstream.out"),
    )?;
    let ca = portcullis::transport::certgen::Ca::new("serve CA").map_err(|e| e.to_string())?;
    let gw = start_with(
        &release_binary()?,
        &ca,
        upstream_addr,
        audit,
        &["taskset", "-c", "1"],
    )
    .await?;
    let client = gw.client(&ca, 1)?;
    portcullis_benches::gateway::wait_ready(&client, &gw.base, &body()).await?;
    let script = scratch.path().join("request.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{}]==]\nwrk.headers[\"x-api-key\"] = \"{}\"\n",
        String::from_utf8_lossy(&body()),
        gw.key
    );
    std::fs::write(&script, lua).map_err(|e| e.to_string())?;
    println!("pid {}", gw.process.0.id());
    println!("url {}/echo/{route}", gw.base);
    println!("script {}", script.display());
    println!("dir {}", gw.dir.path().display());
    // Until whoever started us closes stdin.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1])).await;
    Ok(())
}
