use std::net::SocketAddr;
use std::process::ExitCode;

use portcullis_example_upstream::{serve, Recorder};

const USAGE: &str = "usage: orders-upstream [--listen ADDR]   (default 127.0.0.1:8081)";

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("orders-upstream: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("orders-upstream: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    println!("orders-upstream listening on {bound}");

    // Nobody reads the recorder of a standalone process; it exists for in-process tests.
    tokio::select! {
        result = serve(listener, Recorder::new()) => {
            if let Err(e) = result {
                eprintln!("orders-upstream: {e}");
                return ExitCode::FAILURE;
            }
        }
        signal = tokio::signal::ctrl_c() => {
            if let Err(e) = signal {
                eprintln!("orders-upstream: cannot wait for Ctrl-C: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `Ok(None)` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8081));
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => args.next().ok_or("--listen needs an address")?,
            other => match other.strip_prefix("--listen=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unexpected argument {other:?}")),
            },
        };
        addr = value
            .parse()
            .map_err(|e| format!("invalid --listen address {value:?}: {e}"))?;
    }
    Ok(Some(addr))
}
