//! nginx and HAProxy configured for the job Portcullis's bare proxy does:
//! terminate TLS (1.2+, ECDHE with AEAD suites only), look the `X-Api-Key`
//! header up in a map, answer 401 when it is not there, and otherwise
//! forward to the upstream over kept-alive connections with the key
//! removed and `X-Partner-Id` set. One worker each, as the gateway gets
//! one thread; access logs off. pingap, a gateway on pingora like
//! Portcullis, joins when it is installed.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// TLS 1.2 suites both OpenSSL-based peers may use; TLS 1.3's are all AEAD.
const TLS12_SUITES: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305";

/// A server process, killed on drop.
pub struct Peer {
    pub name: &'static str,
    child: Child,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SIGINT, not SIGKILL: a killed nginx master leaves its workers
        // running (and listening). SIGINT is a fast stop for every server
        // here; pingora takes SIGTERM as a graceful stop and waits.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Spawns `program args…` on `cpu`, its output to `log`.
pub fn spawn_pinned(
    name: &'static str,
    cpu: &str,
    program: &Path,
    args: &[&str],
    log: &Path,
) -> Result<Peer, String> {
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new("taskset")
        .args(["-c", cpu])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Peer { name, child })
}

/// What every proxy of the comparison shares.
pub struct Job<'a> {
    /// The CPU the proxy is pinned to.
    pub cpu: &'a str,
    pub upstream_port: u16,
    pub keys: &'a KeyMap<'a>,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// The key map: every key to its partner.
pub struct KeyMap<'a> {
    pub entries: &'a [(String, String)],
}

impl KeyMap<'_> {
    fn nginx(&self) -> String {
        self.entries
            .iter()
            .map(|(key, partner)| format!("\"{key}\" {partner};\n"))
            .collect()
    }

    /// `key partner` per line (HAProxy's map format, read by
    /// `pingora_floor` too).
    pub fn plain(&self) -> String {
        self.entries
            .iter()
            .map(|(key, partner)| format!("{key} {partner}\n"))
            .collect()
    }
}

/// Writes nginx's configuration under `dir` and starts it on `cpu`.
pub fn nginx(dir: &Path, port: u16, job: &Job) -> Result<Peer, String> {
    let (cpu, upstream, keys) = (job.cpu, job.upstream_port, job.keys);
    let d = dir.display();
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("keys.map"), keys.nginx()).map_err(|e| e.to_string())?;
    let conf = format!(
        "worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server_tokens off;
  map_hash_bucket_size 128;
  map_hash_max_size 65536;
  map $http_x_api_key $partner {{
    default \"\";
    include {d}/keys.map;
  }}
  upstream orders {{
    server 127.0.0.1:{upstream};
    keepalive 64;
    keepalive_requests 100000000;
  }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {TLS12_SUITES};
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    location / {{
      if ($partner = \"\") {{ return 401; }}
      proxy_pass http://orders;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Api-Key \"\";
      proxy_set_header X-Partner-Id $partner;
    }}
  }}
}}
",
        cert = job.cert.display(),
        key = job.key.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let path = path.to_string_lossy().into_owned();
    let prefix = dir.to_string_lossy().into_owned();
    spawn_pinned(
        "nginx",
        cpu,
        Path::new("nginx"),
        &["-p", &prefix, "-c", &path],
        &dir.join("nginx.out"),
    )
}

/// Starts `pingora_floor` (`binary`) on `cpu` with the key map under `dir`.
pub fn pingora_floor(binary: &Path, dir: &Path, port: u16, job: &Job) -> Result<Peer, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let map = dir.join("keys.map");
    std::fs::write(&map, job.keys.plain()).map_err(|e| e.to_string())?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let listen = format!("127.0.0.1:{port}");
    let upstream = format!("127.0.0.1:{}", job.upstream_port);
    spawn_pinned(
        "pingora floor",
        job.cpu,
        binary,
        &[
            &listen,
            &upstream,
            &path(job.cert),
            &path(job.key),
            &path(&map),
        ],
        &dir.join("floor.out"),
    )
}

/// Writes HAProxy's configuration under `dir` and starts it on `cpu`.
pub fn haproxy(dir: &Path, port: u16, job: &Job) -> Result<Peer, String> {
    let (cpu, upstream, keys) = (job.cpu, job.upstream_port, job.keys);
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let cert_and_key_pem = format!("{}{}", read(job.cert)?, read(job.key)?);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let d = dir.display();
    std::fs::write(dir.join("keys.map"), keys.plain()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("site.pem"), cert_and_key_pem).map_err(|e| e.to_string())?;
    let conf = format!(
        "global
  nbthread 1
  # 10 000 idle connections and headroom. HAProxy wants two descriptors
  # a connection (client and server side); idle ones use one, and 20 000
  # is this machine's hard limit, so it may start without the second.
  maxconn 10100
  ulimit-n 20000
  no strict-limits
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-ciphers {TLS12_SUITES}
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 60s
  timeout http-keep-alive 120s
  option http-keep-alive
frontend partners
  bind 127.0.0.1:{port} ssl crt {d}/site.pem alpn h2,http/1.1
  http-request set-var(txn.partner) req.hdr(x-api-key),map({d}/keys.map)
  http-request return status 401 unless {{ var(txn.partner) -m found }}
  http-request del-header x-api-key
  http-request set-header x-partner-id %[var(txn.partner)]
  default_backend orders
backend orders
  http-reuse always
  server up 127.0.0.1:{upstream}
"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let path = path.to_string_lossy().into_owned();
    spawn_pinned(
        "haproxy",
        cpu,
        Path::new("haproxy"),
        &["-db", "-f", &path],
        &dir.join("haproxy.out"),
    )
}

/// Writes pingap's configuration under `dir` and starts it on `cpu`:
/// pingap 0.13.1 (a gateway on pingora, as Portcullis is) with its
/// `key_auth` plugin. That plugin knows keys, not partners, so pingap
/// removes the key but cannot name the partner; the comparison says so.
pub fn pingap(dir: &Path, port: u16, job: &Job) -> Result<Peer, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let keys: Vec<String> = job.keys.entries.iter().map(|(k, _)| quoted(k)).collect();
    let conf = format!(
        "[basic]
log_level = \"warn\"
threads = 1
upstream_keepalive_pool_size = 2048
grace_period = \"1s\"
graceful_shutdown_timeout = \"1s\"

[certificates.bench]
tls_cert = {cert}
tls_key = {key}
is_default = true

[upstreams.orders]
addrs = [\"127.0.0.1:{upstream}\"]
idle_timeout = \"120s\"

[plugins.partnerKey]
category = \"key_auth\"
header = \"x-api-key\"
hide_credentials = true
keys = [{keys}]

[locations.orders]
upstream = \"orders\"
path = \"/\"
plugins = [\"partnerKey\"]

[servers.partners]
addr = \"127.0.0.1:{port}\"
locations = [\"orders\"]
global_certificates = true
enabled_h2 = true
threads = 1
",
        cert = quoted(&job.cert.to_string_lossy()),
        key = quoted(&job.key.to_string_lossy()),
        upstream = job.upstream_port,
        keys = keys.join(", "),
    );
    let path = dir.join("pingap.toml");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let path = path.to_string_lossy().into_owned();
    spawn_pinned(
        "pingap",
        job.cpu,
        Path::new("env"),
        // ACME would reach out for certificates; RUST_LOG would override
        // the log level.
        &[
            "-u",
            "RUST_LOG",
            "PINGAP_DISABLE_ACME=1",
            "pingap",
            "-c",
            &path,
            "--threads",
            "1",
        ],
        &dir.join("pingap.out"),
    )
}
