//! The load tools, run as child processes pinned to the load core: wrk
//! (HTTP/1.1 throughput), h2load (HTTP/2 throughput) and oha (latency at a
//! constant rate, corrected for coordinated omission). Their reports are
//! parsed here; anything but 2xx answers fails the run, so a proxy that
//! refuses or breaks requests can never look fast.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How the client talks to the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// HTTP/1.1, connections kept alive.
    KeepAlive,
    /// HTTP/1.1, a new connection (and TLS handshake) per request.
    NewConnection,
    /// HTTP/2, several streams per connection.
    Http2,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::KeepAlive, Mode::NewConnection, Mode::Http2];

    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "HTTP/1.1 keep-alive",
            Mode::NewConnection => "HTTP/1.1 new TLS connection per request",
            Mode::Http2 => "HTTP/2",
        }
    }
}

/// One request, sent over and over.
pub struct Request {
    pub url: String,
    pub body_file: PathBuf,
    /// Header name and value pairs.
    pub headers: Vec<(String, String)>,
}

/// What a throughput run achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub requests: u64,
    pub per_second: f64,
}

/// Latency percentiles of a constant-rate run, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub achieved_rate: f64,
    /// CPU time the client spent per second of the run: above about 0.7 of
    /// its one core, its own queueing shows up as the server's latency.
    pub client_busy: f64,
}

fn run(command: &mut Command) -> Result<String, String> {
    // Named by the tool alone: its arguments carry the API key.
    let tool = command
        .get_args()
        .nth(2)
        .map_or_else(|| "load tool".into(), |t| t.to_string_lossy().into_owned());
    let output = command.output().map_err(|e| format!("{tool}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "{tool} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout)
}

fn pinned(cpu: &str, program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", cpu, program]);
    c
}

/// Lua for wrk: the method, body and headers of `request`.
fn wrk_script(request: &Request, close: bool) -> Result<String, String> {
    let body = std::fs::read_to_string(&request.body_file).map_err(|e| e.to_string())?;
    if body.contains("]==]") {
        return Err("the body cannot be quoted for wrk".into());
    }
    let mut lua = format!("wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n");
    for (name, value) in &request.headers {
        lua.push_str(&format!("wrk.headers[\"{name}\"] = \"{value}\"\n"));
    }
    if close {
        lua.push_str("wrk.headers[\"Connection\"] = \"close\"\n");
    }
    Ok(lua)
}

/// HTTP/1.1 throughput with wrk: one thread, `connections` connections.
pub fn wrk(
    cpu: &str,
    request: &Request,
    mode: Mode,
    connections: usize,
    seconds: u64,
    scratch: &Path,
) -> Result<Throughput, String> {
    let script = scratch.join("request.lua");
    std::fs::write(&script, wrk_script(request, mode == Mode::NewConnection)?)
        .map_err(|e| e.to_string())?;
    let out = run(pinned(cpu, "wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(&script)
        .arg(&request.url))?;
    parse_wrk(&out)
}

pub fn parse_wrk(out: &str) -> Result<Throughput, String> {
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("no request count in wrk's report:\n{out}"))?;
    let per_second = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no rate in wrk's report:\n{out}"))?;
    if let Some(line) = out.lines().find(|l| l.contains("Non-2xx or 3xx responses")) {
        return Err(format!("wrk saw refusals: {}", line.trim()));
    }
    if let Some(line) = out.lines().find(|l| l.contains("Socket errors")) {
        // `connect 0, read 0, write 0, timeout 0`: read errors are counted
        // when a server closes after a `Connection: close` answer, which
        // is the point of that mode; anything else is a failure.
        let bad = line
            .split(',')
            .filter(|part| !part.contains("read"))
            .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
            .any(|n| n > 0);
        if bad {
            return Err(format!("wrk saw errors: {}", line.trim()));
        }
    }
    Ok(Throughput {
        requests,
        per_second,
    })
}

/// HTTP/2 throughput with h2load: one thread, `connections` connections
/// of `streams` concurrent streams each (with `http1`, HTTP/1.1 and
/// `streams` pipelined requests).
pub fn h2load(
    cpu: &str,
    request: &Request,
    connections: usize,
    streams: usize,
    seconds: u64,
    http1: bool,
) -> Result<Throughput, String> {
    let mut command = pinned(cpu, "h2load");
    if http1 {
        command.arg("--h1");
    }
    command
        .args(["-t1", "-c", &connections.to_string()])
        .args(["-m", &streams.to_string()])
        .args(["-D", &seconds.to_string()])
        .arg("-d")
        .arg(&request.body_file);
    for (name, value) in &request.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    parse_h2load(&run(command.arg(&request.url))?)
}

pub fn parse_h2load(out: &str) -> Result<Throughput, String> {
    let per_second = out
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|p| p.trim().strip_suffix("req/s"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no rate in h2load's report:\n{out}"))?;
    let counts = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .ok_or_else(|| format!("no request counts in h2load's report:\n{out}"))?;
    let count = |what: &str| -> Option<u64> {
        counts
            .trim_start_matches("requests:")
            .split(',')
            .find(|p| p.trim().ends_with(what))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let succeeded = count("succeeded").ok_or("h2load: no `succeeded` count")?;
    let done = count("done").ok_or("h2load: no `done` count")?;
    let failed = count("failed").unwrap_or(0) + count("errored").unwrap_or(0);
    let two_xx = out
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("no status codes in h2load's report:\n{out}"))?;
    // A response whose head came back just before the duration ended
    // counts as 2xx but not as succeeded: only fewer 2xx is a failure.
    if failed > 0 || two_xx < succeeded || succeeded == 0 {
        return Err(format!(
            "h2load: {succeeded} succeeded, {two_xx} answered 2xx, {failed} failed or errored"
        ));
    }
    // Streams still open when the duration ends are cut off, not failed.
    let _ = done;
    Ok(Throughput {
        requests: succeeded,
        per_second,
    })
}

/// Latency at a constant `rate` with oha, corrected for coordinated
/// omission (a request is timed from when it should have been sent).
pub fn oha(
    cpu: &str,
    request: &Request,
    mode: Mode,
    rate: f64,
    connections: usize,
    seconds: u64,
) -> Result<Latency, String> {
    let mut command = pinned(cpu, "oha");
    command
        .args(["--no-tui", "--output-format", "json", "--insecure"])
        .args(["-z", &format!("{seconds}s")])
        .args(["-q", &format!("{rate:.0}"), "--latency-correction"])
        .args(["-c", &connections.to_string(), "-m", "POST", "-D"])
        .arg(&request.body_file);
    for (name, value) in &request.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    match mode {
        Mode::KeepAlive => {}
        Mode::NewConnection => {
            command.arg("--disable-keepalive");
        }
        Mode::Http2 => {
            command.args(["--http2", "-p", "8"]);
        }
    }
    let cpu_before = crate::compare::procs::waited_children_cpu_seconds();
    let began = std::time::Instant::now();
    let out = run(command.arg(&request.url))?;
    let busy = (crate::compare::procs::waited_children_cpu_seconds() - cpu_before)
        / began.elapsed().as_secs_f64();
    Ok(Latency {
        client_busy: busy,
        ..parse_oha(&out)?
    })
}

pub fn parse_oha(out: &str) -> Result<Latency, String> {
    let report: serde_json::Value =
        serde_json::from_str(out).map_err(|e| format!("oha's report is not JSON ({e}):\n{out}"))?;
    let number = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("oha's report has no {pointer}"))
    };
    let success = number("/summary/successRate")?;
    let codes = report
        .pointer("/statusCodeDistribution")
        .and_then(serde_json::Value::as_object)
        .ok_or("oha's report has no status codes")?;
    let refused: Vec<_> = codes.keys().filter(|c| !c.starts_with('2')).collect();
    if success < 1.0 || !refused.is_empty() || codes.is_empty() {
        return Err(format!(
            "oha: success rate {success}, answers {codes:?}, errors {}",
            report
                .pointer("/errorDistribution")
                .unwrap_or(&serde_json::Value::Null)
        ));
    }
    Ok(Latency {
        p50: number("/latencyPercentiles/p50")?,
        p99: number("/latencyPercentiles/p99")?,
        p999: number("/latencyPercentiles/p99.9")?,
        achieved_rate: number("/summary/requestsPerSec")?,
        client_busy: f64::NAN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 5s test @ https://localhost:8443/echo/bare
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.98ms  612.31us  11.20ms   80.12%
    Req/Sec    16.31k     1.02k   17.80k    72.00%
  81163 requests in 5.00s, 117.02MB read
Requests/sec:  16232.60
Transfer/sec:     23.40MB
";

    #[test]
    fn wrk_rate_and_count() {
        let t = parse_wrk(WRK).unwrap();
        assert_eq!(t.requests, 81163);
        assert!((t.per_second - 16232.60).abs() < 1e-6);
    }

    #[test]
    fn wrk_refusals_fail_the_run() {
        let out = WRK.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 81163\nRequests/sec",
        );
        assert!(parse_wrk(&out).unwrap_err().contains("refusals"));
    }

    #[test]
    fn wrk_connect_errors_fail_but_closes_do_not() {
        let closes = WRK.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 310, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse_wrk(&closes).is_ok());
        let connects = WRK.replace(
            "Requests/sec",
            "  Socket errors: connect 12, read 0, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse_wrk(&connects).is_err());
    }

    const H2LOAD: &str = "finished in 5.00s, 20741.40 req/s, 30.01MB/s
requests: 103707 total, 104027 started, 103707 done, 103707 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 103707 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 150.05MB (157339213) total, 1.02MB (1066935) headers (space savings 92.32%), 146.92MB (154055350) data
";

    #[test]
    fn h2load_rate_and_count() {
        let t = parse_h2load(H2LOAD).unwrap();
        assert_eq!(t.requests, 103707);
        assert!((t.per_second - 20741.40).abs() < 1e-6);
    }

    #[test]
    fn h2load_refusals_fail_the_run() {
        let out = H2LOAD.replace("103707 2xx, 0 3xx, 0 4xx", "0 2xx, 0 3xx, 103707 4xx");
        assert!(parse_h2load(&out).is_err());
    }

    #[test]
    fn oha_percentiles_and_refusals() {
        let ok = r#"{"summary":{"successRate":1.0,"requestsPerSec":5000.2},
            "latencyPercentiles":{"p50":0.0011,"p99":0.0042,"p99.9":0.009},
            "statusCodeDistribution":{"200":50002},"errorDistribution":{}}"#;
        let l = parse_oha(ok).unwrap();
        assert_eq!((l.p50, l.p99, l.p999), (0.0011, 0.0042, 0.009));
        let refused = ok.replace(r#"{"200":50002}"#, r#"{"200":2,"401":50000}"#);
        assert!(parse_oha(&refused).unwrap_err().contains("401"));
        let failed = ok.replace(r#""successRate":1.0"#, r#""successRate":0.97"#);
        assert!(parse_oha(&failed).is_err());
    }
}
