use std::net::SocketAddr;
use std::process::ExitCode;

use portcullis_example_upstream::{serve_with, AssertionCheck, Options, Recorder};

const USAGE: &str = "usage: orders-upstream [--listen ADDR] [--verify-assertion PUBLIC_KEY_PEM]\n\
  --listen ADDR                 default 127.0.0.1:8081\n\
  --verify-assertion FILE       refuse (401) requests without a valid Portcullis identity\n\
                                assertion, checked with this Ed25519 public key (audience `orders`)";

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, key_file) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("orders-upstream: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let mut options = Options::default();
    if let Some(file) = key_file {
        let check = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|pem| AssertionCheck::ed25519(&pem, "orders"));
        match check {
            Ok(check) => options.assertion = Some(check),
            Err(e) => {
                eprintln!("orders-upstream: --verify-assertion {file}: {e}");
                return ExitCode::from(2);
            }
        }
    }
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
        result = serve_with(listener, Recorder::discarding(), options) => {
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

/// The listen address and the assertion key file; `Ok(None)` means help was asked for.
fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<Option<(SocketAddr, Option<String>)>, String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8081));
    let mut key_file = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--verify-assertion" => {
                key_file = Some(args.next().ok_or("--verify-assertion needs a file")?);
                continue;
            }
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
    Ok(Some((addr, key_file)))
}
