//! Shared helpers for the benchmarks: a real `redis-server` on a loopback
//! port, and percentiles.

pub mod compare;
pub mod gateway;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` (no persistence) on a free loopback port.
    pub fn start() -> Result<Redis, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            _dir: dir,
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p`-th percentile (0–100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Settings of a benchmark's Redis key store at `url`, its keys under
/// `prefix`.
pub fn redis_settings(
    url: &str,
    prefix: &str,
    timeout: Duration,
) -> portcullis::config::model::RedisSettings {
    portcullis::config::model::RedisSettings {
        url: Some(url.to_string()),
        sentinel: None,
        username: None,
        password_file: None,
        ca: None,
        prefix: prefix.into(),
        timeout,
        lease: Duration::from_secs(2),
        replicas_ack: 0,
    }
}

/// `used_memory` from `INFO memory`, over a plain RESP connection.
pub fn redis_used_memory(url: &str) -> Result<u64, String> {
    let err = |e: std::io::Error| format!("INFO memory from {url}: {e}");
    let addr = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("unexpected Redis URL {url}"))?;
    let mut conn = std::net::TcpStream::connect(addr).map_err(err)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(err)?;
    conn.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")
        .map_err(err)?;
    let mut reader = BufReader::new(conn);
    let mut header = String::new();
    reader.read_line(&mut header).map_err(err)?;
    let len: usize = header
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("INFO memory from {url}: unexpected reply {header:?}"))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).map_err(err)?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("INFO memory from {url}: no used_memory"))
}
