//! The live configuration and how it is replaced: SIGHUP or a file watch
//! triggers a full compile; a plan that compiles is swapped in atomically,
//! one that does not is refused and the running plan keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{self, model::GatewayFile, ConfigError, ConfigErrors};
use crate::monitor::metrics::Metrics;
use crate::plan::Plan;
use crate::transport::tls::{self, CertResolver, LoadedCert};

pub struct Live {
    config_path: PathBuf,
    plan: ArcSwap<Plan>,
    /// Settings as loaded at start; listeners and threads only change on restart.
    startup: GatewayFile,
    cert: Arc<CertResolver>,
    pub metrics: Arc<Metrics>,
    generation: AtomicU64,
    /// The newest reload was refused (the plan before it keeps serving).
    reload_failed: AtomicBool,
    fingerprints: Mutex<Fingerprints>,
    /// Files the running configuration names (schemas, OpenAPI documents,
    /// CAs, the assertion key): the watch reloads when one changes.
    referenced: Mutex<Vec<PathBuf>>,
}

#[derive(Default)]
struct Fingerprints {
    config: Option<blake3::Hash>,
    cert: Option<blake3::Hash>,
}

impl Live {
    pub fn new(
        config_path: &Path,
        loaded: crate::plan::Loaded,
        cert: LoadedCert,
        metrics: Arc<Metrics>,
    ) -> Live {
        metrics.config_generation.set(1);
        metrics.routes.set(loaded.plan.routes as i64);
        metrics.cert_expiry.set(cert.not_after);
        let fingerprints = Fingerprints {
            config: fingerprint_config(config_path, &loaded.settings, &loaded.referenced),
            cert: fingerprint_files(&[
                &loaded.settings.tls.certificate,
                &loaded.settings.tls.private_key,
            ]),
        };
        Live {
            config_path: config_path.to_path_buf(),
            plan: ArcSwap::from_pointee(loaded.plan),
            startup: loaded.settings,
            cert: Arc::new(CertResolver::new(cert.key)),
            metrics,
            generation: AtomicU64::new(1),
            reload_failed: AtomicBool::new(false),
            fingerprints: Mutex::new(fingerprints),
            referenced: Mutex::new(loaded.referenced),
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.plan.load_full()
    }

    pub fn settings(&self) -> &GatewayFile {
        &self.startup
    }

    pub fn cert_resolver(&self) -> Arc<CertResolver> {
        self.cert.clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn last_reload_failed(&self) -> bool {
        self.reload_failed.load(Ordering::Acquire)
    }

    /// Compiles the configuration again and swaps it in if it is valid.
    pub fn reload_config(&self) -> Result<(), ConfigErrors> {
        match crate::plan::load(&self.config_path) {
            Ok(loaded) => {
                let restart = config::restart::restart_needed(&self.startup, &loaded.settings);
                if !restart.is_empty() {
                    let errors = ConfigErrors(
                        restart
                            .into_iter()
                            .map(|name| {
                                ConfigError::new(
                                    &self.config_path,
                                    None,
                                    name,
                                    "changed, but takes effect only on restart: reload refused",
                                )
                            })
                            .collect(),
                    );
                    return Err(self.refuse(errors));
                }
                if let Ok(mut referenced) = self.referenced.lock() {
                    *referenced = loaded.referenced;
                }
                self.metrics.routes.set(loaded.plan.routes as i64);
                self.plan.store(Arc::new(loaded.plan));
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                self.metrics.config_generation.set(generation as i64);
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.reload_failed.store(false, Ordering::Release);
                tracing::info!(generation, "configuration reloaded");
                Ok(())
            }
            Err(errors) => Err(self.refuse(errors)),
        }
    }

    fn refuse(&self, errors: ConfigErrors) -> ConfigErrors {
        self.reload_failed.store(true, Ordering::Release);
        self.metrics
            .config_reloads
            .with_label_values(&["error"])
            .inc();
        for e in &errors.0 {
            tracing::error!(problem = %e, "configuration reload refused; the previous configuration keeps serving");
        }
        errors
    }

    fn referenced(&self) -> Vec<PathBuf> {
        self.referenced
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Loads the certificate files again; new handshakes use the new pair,
    /// established connections keep theirs.
    pub fn reload_cert(&self) -> Result<(), String> {
        let files = &self.startup.tls;
        match tls::load_cert(&files.certificate, &files.private_key) {
            Ok(cert) => {
                self.cert.replace(cert.key);
                self.metrics.cert_expiry.set(cert.not_after);
                self.metrics.cert_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(subject = %cert.subject, "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .cert_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(problem = %e, "TLS certificate reload refused; the previous certificate keeps serving");
                Err(e)
            }
        }
    }

    /// Reloads whatever changed on disk since the last look.
    pub fn reload_changed(&self) {
        let config_now = fingerprint_config(
            &self.config_path,
            &self.current_settings_for_watch(),
            &self.referenced(),
        );
        let cert_now =
            fingerprint_files(&[&self.startup.tls.certificate, &self.startup.tls.private_key]);
        let (config_changed, cert_changed) = {
            let Ok(mut fp) = self.fingerprints.lock() else {
                return;
            };
            let changes = (fp.config != config_now, fp.cert != cert_now);
            fp.config = config_now;
            fp.cert = cert_now;
            changes
        };
        if config_changed {
            let _ = self.reload_config();
        }
        if cert_changed {
            let _ = self.reload_cert();
        }
    }

    /// Reloads everything, changed or not (SIGHUP).
    pub fn reload_all(&self) {
        let _ = self.reload_config();
        let _ = self.reload_cert();
        if let Ok(mut fp) = self.fingerprints.lock() {
            fp.config = fingerprint_config(
                &self.config_path,
                &self.current_settings_for_watch(),
                &self.referenced(),
            );
            fp.cert =
                fingerprint_files(&[&self.startup.tls.certificate, &self.startup.tls.private_key]);
        }
    }

    /// The policy globs come from the gateway file, which may itself have
    /// changed: read them afresh, falling back to the startup ones.
    fn current_settings_for_watch(&self) -> GatewayFile {
        std::fs::read_to_string(&self.config_path)
            .ok()
            .and_then(|t| serde_saphyr::from_str::<GatewayFile>(&t).ok())
            .unwrap_or_else(|| self.startup.clone())
    }
}

/// One hash over the gateway file, the list of policy files its globs match
/// now, their contents and the contents of the files they name: any edit,
/// addition or removal changes it.
fn fingerprint_config(
    config_path: &Path,
    settings: &GatewayFile,
    referenced: &[PathBuf],
) -> Option<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::fs::read(config_path).ok()?);
    let base = config_path.parent().unwrap_or(Path::new("."));
    for pattern in &settings.policies {
        let full = config::resolve_path(base, Path::new(&pattern.value));
        let Some(full) = full.to_str() else { continue };
        let Ok(paths) = glob::glob(full) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        paths.sort();
        for p in paths {
            hasher.update(p.as_os_str().as_encoded_bytes());
            hasher.update(&[0]);
            if let Ok(bytes) = std::fs::read(&p) {
                hasher.update(&bytes);
            }
            hasher.update(&[0xff]);
        }
    }
    for p in referenced {
        hasher.update(p.as_os_str().as_encoded_bytes());
        hasher.update(&[0]);
        // A file that went missing changes the hash too.
        match std::fs::read(p) {
            Ok(bytes) => hasher.update(&bytes),
            Err(_) => hasher.update(b"\xff missing"),
        };
        hasher.update(&[0xff]);
    }
    Some(hasher.finalize())
}

fn fingerprint_files(paths: &[&Path]) -> Option<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    for p in paths {
        hasher.update(&std::fs::read(p).ok()?);
        hasher.update(&[0]);
    }
    Some(hasher.finalize())
}

/// Background service: SIGHUP reloads everything; the watch reloads what changed.
pub struct Reloader {
    live: Arc<Live>,
    interval: Duration,
}

impl Reloader {
    pub fn new(live: Arc<Live>, interval: Duration) -> Self {
        Reloader { live, interval }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by file watch only");
                None
            }
        };
        let watching = !self.interval.is_zero();
        let mut tick = tokio::time::interval(if watching {
            self.interval
        } else {
            Duration::from_secs(3600)
        });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading configuration and certificate");
                    self.live.reload_all();
                }
                _ = tick.tick(), if watching => self.live.reload_changed(),
                _ = shutdown.changed() => return,
            }
        }
    }
}
