//! The floor under any gateway built on pingora: a pingora proxy doing only
//! what nginx and HAProxy do in `compare` (TLS, the API key looked up in a
//! map, 401 otherwise, `X-Partner-Id` set and the key removed), with none
//! of Portcullis's stages. `compare` runs it beside the others, so the gap
//! between it and `portcullis bare` is what Portcullis's own hooks cost,
//! and the gap between it and nginx is pingora's.
//!
//! `pingora_floor LISTEN UPSTREAM CERT KEY KEYMAP` (KEYMAP: `key partner`
//! per line, HAProxy's map format).

use std::collections::HashMap;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::{http_proxy_service, HttpPeer, Opt, ProxyHttp, Server, Session};
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;

struct Floor {
    upstream: String,
    keys: HashMap<String, String>,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = Option<String>;

    fn new_ctx(&self) -> Self::CTX {
        None
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        let partner = session
            .req_header()
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .and_then(|key| self.keys.get(key));
        match partner {
            Some(partner) => {
                *ctx = Some(partner.clone());
                Ok(false)
            }
            None => {
                session.respond_error(401).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        request.remove_header("x-api-key");
        if let Some(partner) = ctx {
            request.insert_header("x-partner-id", partner.as_str())?;
        }
        Ok(())
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, cert, key, keymap] = args.as_slice() else {
        return Err("usage: pingora_floor LISTEN UPSTREAM CERT KEY KEYMAP".into());
    };
    let keys = std::fs::read_to_string(keymap)
        .map_err(|e| format!("{keymap}: {e}"))?
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect();
    let dir = std::path::Path::new(keymap)
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let conf = ServerConf {
        threads: 1,
        pid_file: format!("{dir}/floor.pid"),
        upgrade_sock: format!("{dir}/floor.sock"),
        // A benchmark fixture: stop at once on any signal, no draining.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: false,
        daemon: false,
        nocapture: false,
        test: false,
        conf: None,
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Floor {
            upstream: upstream.clone(),
            keys,
        },
    );
    let mut tls = TlsSettings::intermediate(cert, key).map_err(|e| e.to_string())?;
    tls.enable_h2();
    let mut endpoint = ListenerConfig::tcp(listen.as_str()).tls(tls);
    if let Some(read) = std::env::var("FLOOR_L4_READ")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        endpoint = endpoint.l4_buffer(L4BufferSettings::default().read(read));
    }
    proxy.add_listener(endpoint);
    server.add_service(proxy);
    server.run_forever()
}
