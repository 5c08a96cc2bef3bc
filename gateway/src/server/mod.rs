//! Assembles the pingora server: the HTTPS proxy under a header deadline,
//! the admin listener, the optional plaintext listener and the reloader.

pub mod reload;
mod shutdown;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::ALPN;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::RunArgs;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::keys::{AdminToken, KeysApi};
use crate::admin::metrics_listener::MetricsApp;
use crate::admin::ready::{Draining, Readiness};
use crate::admin::AdminApp;
use crate::config::model::{KeysSettings, StoreKind};
use crate::keys::embedded::EmbeddedStore;
use crate::keys::node::{NodeAgent, NodeState};
use crate::keys::pepper::Pepper;
use crate::keys::redis_store::RedisStore;
use crate::keys::service::KeyService;
use crate::keys::verify::{KeyStats, MissLimit, Verifier};
use crate::monitor::metrics::Metrics;
use crate::monitor::Monitor;
use crate::proxy::Gateway;
use crate::server::reload::{Live, Reloader};
use crate::transport::conn_guard::ConnGuardApp;
use crate::transport::plaintext::RedirectApp;
use crate::transport::tls;

/// Everything `check` validates: the configuration and the certificate.
pub fn check(config_path: &Path) -> Result<crate::plan::Loaded, Vec<String>> {
    let loaded = crate::plan::load(config_path)
        .map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let mut problems = Vec::new();
    let files = &loaded.settings.tls;
    if let Err(e) = tls::load_cert(&files.certificate, &files.private_key) {
        problems.push(format!("{}: tls: {e}", config_path.display()));
    }
    let keys = &loaded.settings.keys;
    if let Err(e) = Pepper::load(keys.pepper_file.as_deref()) {
        problems.push(format!("{}: keys.pepper_file: {e}", config_path.display()));
    }
    if keys.store == StoreKind::Embedded {
        if let Err(e) = EmbeddedStore::open(&keys.path) {
            problems.push(format!("{}: keys.path: {e}", config_path.display()));
        }
    }
    let audit = &loaded.settings.audit;
    if let Some(key) = &audit.chain_key_file {
        if let Err(e) = crate::monitor::audit::chain::ChainKey::load(key) {
            problems.push(format!(
                "{}: audit.chain_key_file: {e}",
                config_path.display()
            ));
        }
    }
    if audit.output == crate::config::monitoring::AuditOutput::File
        && !audit.path.parent().is_some_and(Path::is_dir)
    {
        problems.push(format!(
            "{}: audit.path: directory of {} does not exist",
            config_path.display(),
            audit.path.display()
        ));
    }
    if let Some(token) = &loaded.settings.admin.token_file {
        if let Err(e) = AdminToken::load(token) {
            problems.push(format!("{}: admin.token_file: {e}", config_path.display()));
        }
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

/// The key service, and for a shared store the agent that keeps this
/// node's lease (a background service).
pub struct Keys {
    pub service: Arc<KeyService>,
    pub agent: Option<NodeAgent>,
    /// The shared store, which rate limits use too.
    pub redis: Option<Arc<RedisStore>>,
}

/// Opens the configured key store with the pepper and the cache. The
/// embedded store is opened as its owner.
pub fn open_keys(settings: &KeysSettings, stats: Option<KeyStats>) -> Result<Keys, String> {
    open_keys_for(settings, stats, false)
}

/// As `open_keys`; `upgrade` lets an embedded store owned by the process
/// being upgraded be taken over once that process lets go.
pub fn open_keys_for(
    settings: &KeysSettings,
    stats: Option<KeyStats>,
    upgrade: bool,
) -> Result<Keys, String> {
    let pepper = Pepper::load(settings.pepper_file.as_deref())?;
    let tune = |verifier: Verifier| {
        let verifier = verifier.with_miss_limit(MissLimit {
            per_client: settings.unknown_key_limit,
            window: settings.unknown_key_window,
        });
        match stats.clone() {
            Some(stats) => verifier.with_stats(stats),
            None => verifier,
        }
    };
    match (settings.store, &settings.redis) {
        (StoreKind::Redis, Some(redis)) => {
            let store = Arc::new(RedisStore::new(redis));
            let verifier = Arc::new(tune(Verifier::with_node(
                pepper,
                store.clone(),
                settings.cache_entries,
                settings.negative_ttl,
                NodeState::shared(),
            )));
            verifier.set_store_up(false);
            let agent = NodeAgent {
                node_id: crate::stage::request_id::generate(),
                store: store.clone(),
                verifier: verifier.clone(),
            };
            Ok(Keys {
                service: Arc::new(KeyService::new(verifier)),
                agent: Some(agent),
                redis: Some(store),
            })
        }
        (StoreKind::Redis, None) => Err("keys.redis is required when keys.store is redis".into()),
        (StoreKind::Embedded, _) => {
            let (store, handover) = match EmbeddedStore::open_owned(&settings.path)? {
                Some(store) => (Arc::new(store), false),
                None if upgrade => (Arc::new(EmbeddedStore::open(&settings.path)?), true),
                None => {
                    return Err(format!(
                        "key store {} is owned by another running gateway",
                        settings.path.display()
                    ))
                }
            };
            let verifier = Arc::new(tune(Verifier::new(
                pepper,
                store.clone(),
                settings.cache_entries,
                settings.negative_ttl,
            )));
            if handover {
                let cache = Arc::downgrade(&verifier);
                store.take_over(move || {
                    if let Some(v) = cache.upgrade() {
                        v.flush();
                    }
                })?;
            }
            Ok(Keys {
                service: Arc::new(KeyService::new(verifier)),
                agent: None,
                redis: None,
            })
        }
    }
}

/// The ownership index, in the key store's engine (and, with Redis, under
/// this node's key-store lease).
pub fn open_ownership(
    settings: &crate::config::model::GatewayFile,
    stats: Option<crate::ownership::service::OwnershipStats>,
    upgrade: bool,
    keys: &Keys,
) -> Result<Option<Arc<crate::ownership::service::OwnershipIndex>>, String> {
    use crate::ownership::embedded::EmbeddedOwnership;
    if let Some(redis) = &keys.redis {
        let store = crate::ownership::redis::RedisOwnership::new(
            redis.clone(),
            Some(keys.service.verifier().clone()),
            settings.ownership.cache_entries,
        );
        // Counted once Redis answers (`recount` is cheap but not free).
        return Ok(Some(Arc::new(
            crate::ownership::service::OwnershipIndex::new(Arc::new(store), stats),
        )));
    }
    let path = &settings.ownership.file(&settings.keys.path);
    let store: Arc<dyn crate::ownership::store::OwnershipStore> =
        match EmbeddedOwnership::open_owned(path)? {
            Some(store) => Arc::new(store),
            None if upgrade => EmbeddedOwnership::open_following(path)?,
            None => {
                return Err(format!(
                    "ownership index {} is owned by another running gateway",
                    path.display()
                ))
            }
        };
    let index = Arc::new(crate::ownership::service::OwnershipIndex::new(store, stats));
    // The embedded engine answers without waiting.
    let _ = futures_util::FutureExt::now_or_never(index.recount());
    Ok(Some(index))
}

/// The lease keeper gets a thread and runtime of its own: renewals must
/// not wait behind request load, and its Redis connections must not depend
/// on the runtime of any one pingora service.
fn spawn_lease_keeper(agent: NodeAgent) -> Result<(), String> {
    use pingora::services::background::BackgroundService;
    std::thread::Builder::new()
        .name("key-store-lease".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the key-store lease keeper");
                    return;
                }
            };
            // Never signalled: the lease simply lapses when the process exits.
            let (_never, watch) = tokio::sync::watch::channel(false);
            runtime.block_on(agent.start(watch));
        })
        .map(drop)
        .map_err(|e| format!("cannot start the key-store lease keeper: {e}"))
}

/// A clear error now beats a pingora panic once the listener starts.
fn ensure_bindable(what: &str, addr: SocketAddr) -> Result<(), String> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

/// Bytes of TLS records gathered before they are written to a client. pingora
/// writes a response's header and body as two records; with its default
/// (1 460) they leave in two system calls, each of which on loopback also
/// pays for the delivery. 4 KiB holds both for the usual small JSON answer,
/// and its pages are touched only when used, so an idle connection keeps
/// at most this much more.
const RESPONSE_WRITE_BUFFER: usize = 4096;

/// Serves until a shutdown signal has been handled; an error is a
/// startup error.
pub fn run(config_path: &Path, upgrade: bool) -> Result<(), String> {
    tls::install_crypto_policy();
    let loaded = crate::plan::load(config_path).map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        tracing::warn!(target: "portcullis::config", "{warning}");
    }
    let files = &loaded.settings.tls;
    let cert =
        tls::load_cert(&files.certificate, &files.private_key).map_err(|e| format!("tls: {e}"))?;
    let settings = loaded.settings.clone();
    if !upgrade {
        ensure_bindable("listen.https", settings.listen.https)?;
        ensure_bindable("admin.address", settings.admin.address)?;
        if let Some(addr) = settings.metrics.address {
            ensure_bindable("metrics.address", addr)?;
        }
        if let Some(addr) = settings.listen.plaintext {
            ensure_bindable("listen.plaintext", addr)?;
        }
        if let Some(addr) = settings.partner_listener.address {
            ensure_bindable("partner_listener.address", addr)?;
        }
    }
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let opened = open_keys_for(&settings.keys, Some(metrics.keys.clone()), upgrade)?;
    let ownership = open_ownership(&settings, Some(metrics.ownership.clone()), upgrade, &opened)?;
    let Keys {
        service: keys,
        agent,
        redis,
    } = opened;
    let monitor = Monitor::start(&settings, &metrics, redis)?;
    let live = Arc::new(Live::new(config_path, loaded, cert, metrics.clone()));

    let threads = match settings.server.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let conf = ServerConf {
        threads,
        pid_file: settings.server.pid_file.display().to_string(),
        upgrade_sock: settings.server.upgrade_sock.display().to_string(),
        grace_period_seconds: Some(settings.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(settings.server.drain_timeout.as_secs()),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        daemon: false,
        nocapture: false,
        test: false,
        conf: None,
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Gateway::new(
            live.clone(),
            keys.clone(),
            settings.keys.header.clone(),
            monitor.clone(),
            ownership.clone(),
        ),
    );
    // An HTTP/2 connection with no open stream is closed like an idle
    // kept-alive HTTP/1 connection.
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(settings.http.keepalive_timeout);
    proxy.server_options = Some(options);
    let (http1_live, h2_live) = (live.clone(), live.clone());
    let refusal = crate::transport::conn_guard::Refusals {
        http1: Arc::new(move |request_line| {
            crate::proxy::parser_refusal(&http1_live.plan(), request_line)
        }),
        h2: Arc::new(move || crate::proxy::h2_authority_refusal(&h2_live.plan())),
    };
    let guarded = ConnGuardApp::new(
        proxy,
        settings.http.header_timeout,
        metrics.header_timeouts.clone(),
        refusal,
    );
    let mut https = Service::new("portcullis https".to_string(), guarded);
    let mut tls_settings =
        TlsSettings::intermediate("", "").map_err(|e| format!("tls settings: {e}"))?;
    tls_settings.set_cert_resolver(live.cert_resolver());
    if settings.http.h2 {
        tls_settings.enable_h2();
    } else {
        tls_settings.set_alpn(ALPN::H1);
    }
    https.add_listener(
        ListenerConfig::tcp(settings.listen.https.to_string())
            .tls(tls_settings)
            .l4_buffer(L4BufferSettings {
                read: None,
                write: Some(RESPONSE_WRITE_BUFFER),
            }),
    );
    let proxy_from =
        crate::plan::proxy_protocol_networks(&settings.listen).map_err(|problems| {
            problems
                .into_iter()
                .map(|(field, message)| format!("{field}: {message}"))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
    if let Some(from) = proxy_from {
        https.endpoints().set_pre_tls_callback(
            crate::transport::proxy_protocol::ProxyProtocol::new(
                from,
                settings.http.header_timeout,
                metrics.proxy_protocol_refused.clone(),
            ),
        );
    }
    server.add_service(https);

    let token = match &settings.admin.token_file {
        Some(path) => Some(AdminToken::load(path)?),
        None => None,
    };
    let keys_api = KeysApi::new(keys.clone(), token).with_monitor(monitor.clone());
    let draining = Draining::default();
    let readiness = Readiness {
        draining: draining.clone(),
        keys: keys.verifier().clone(),
        monitor: monitor.clone(),
    };
    let mut admin = Service::new(
        "portcullis admin".to_string(),
        AdminApp::new(live.clone(), keys_api, readiness, ownership.clone()),
    );
    admin.add_tcp(&settings.admin.address.to_string());
    server.add_service(admin);

    if let Some(addr) = settings.metrics.address {
        let mut scrape = Service::new(
            "portcullis metrics".to_string(),
            MetricsApp::new(metrics.clone()),
        );
        scrape.add_tcp(&addr.to_string());
        server.add_service(scrape);
    }

    if let Some(addr) = settings.listen.plaintext {
        let port = settings
            .listen
            .redirect_port
            .unwrap_or(settings.listen.https.port());
        let mut plain = Service::new(
            "portcullis plaintext redirect".to_string(),
            RedirectApp::new(port, settings.http.header_timeout),
        );
        plain.add_tcp(&addr.to_string());
        server.add_service(plain);
    }

    if let Some(addr) = settings.partner_listener.address {
        let mut partner = Service::new(
            "portcullis partner listener".to_string(),
            crate::partner::PartnerApp::new(
                keys.clone(),
                monitor.clone(),
                metrics.clone(),
                live.clone(),
                &settings.partner_listener,
                &settings.audit,
            ),
        );
        let mut tls_settings =
            TlsSettings::intermediate("", "").map_err(|e| format!("tls settings: {e}"))?;
        tls_settings.set_cert_resolver(live.cert_resolver());
        tls_settings.set_alpn(ALPN::H1);
        partner.add_tls_with_settings(&addr.to_string(), None, tls_settings);
        server.add_service(partner);
    }

    if let Some(agent) = agent {
        spawn_lease_keeper(agent)?;
    }
    server.add_service(background_service(
        "portcullis key usage",
        crate::keys::usage::UsageWriter {
            verifier: keys.verifier().clone(),
            every: settings.keys.last_used_flush,
        },
    ));
    server.add_service(background_service(
        "portcullis upstream targets",
        crate::balance::supervisor::Supervisor::new(live.clone()),
    ));
    server.add_service(background_service(
        "portcullis reloader",
        Reloader::new(live, settings.reload.watch_interval),
    ));

    tracing::info!(
        https = %settings.listen.https,
        admin = %settings.admin.address,
        plaintext = ?settings.listen.plaintext,
        metrics = ?settings.metrics.address,
        partner_listener = ?settings.partner_listener.address,
        "portcullis starting"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown::DrainingSignals {
            draining,
            delay: settings.server.drain_delay,
        }),
    });
    // Spans still queued would otherwise die with the process.
    if let Some(traces) = &monitor.traces {
        traces.shutdown(settings.traces.timeout);
    }
    Ok(())
}
