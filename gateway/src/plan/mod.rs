//! Compiles the YAML model into a [`Plan`]: every reference resolved, every
//! value checked, so serving a request never meets a configuration error.
//! A plan is immutable once compiled (requests share it as `Arc<Plan>`) and
//! its fields are crate-private: outside the gateway it can be loaded and
//! counted, not taken apart or built by hand.

mod openapi;
mod partners;
mod resources;
mod routes;
mod upstreams;
mod validation;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use pingora::protocols::tls::CaType;
use serde_saphyr::Spanned;

use crate::config::load::{load_settings, parse_yaml, resolve_path};
use crate::config::model::ReplaceErrors;
use crate::config::model::{GatewayFile, PolicyFile, TimeoutSpec};
use crate::config::{ConfigError, ConfigErrors};
use crate::stage::assertion::Signer;
use crate::stage::body::Pointer;
use crate::stage::client_address::ClientAddressRule;
use crate::stage::isolation::{Binding, IdentityHeaders};
use crate::stage::minimise::{FieldFilter, HeaderPatterns};
use crate::stage::protocol::Limits;
use crate::stage::route::Router;
use crate::stage::validate::RouteValidation;
use partners::{compile_partners, Partners};
use routes::compile_routes;
use upstreams::compile_upstreams;
use validation::SchemaContext;

/// Resolved per-route upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) read: Duration,
    pub(crate) write: Duration,
    pub(crate) total: Duration,
}

impl Timeouts {
    const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        read: Duration::from_secs(30),
        write: Duration::from_secs(30),
        total: Duration::from_secs(60),
    };

    fn overlay(self, spec: &TimeoutSpec) -> Timeouts {
        Timeouts {
            connect: spec.connect.unwrap_or(self.connect),
            read: spec.read.unwrap_or(self.read),
            write: spec.write.unwrap_or(self.write),
            total: spec.total.unwrap_or(self.total),
        }
    }
}

pub struct Upstream {
    pub(crate) name: String,
    /// `host:port` as configured, for logs.
    pub(crate) address: String,
    /// Its targets and how a request picks one. Resolved when the plan
    /// compiles and again in the background, so no request waits on DNS.
    pub(crate) balancer: Arc<crate::balance::Balancer>,
    pub(crate) tls: bool,
    /// TLS server name (SNI and certificate verification).
    pub(crate) server_name: String,
    /// `Host` header value sent upstream unless `preserve_host`.
    pub(crate) authority: String,
    pub(crate) preserve_host: bool,
    pub(crate) ca: Option<Arc<CaType>>,
    pub(crate) timeouts: Timeouts,
    /// Keeps this upstream's pooled connections apart from any other's.
    /// pingora's pool key ignores the CA a connection was verified against,
    /// so without it a connection verified for one upstream's private CA
    /// could be reused by another upstream that trusts only system roots.
    pub(crate) pool_key: u64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Route {
    pub(crate) name: String,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) timeouts: Timeouts,
    pub(crate) scopes: Vec<String>,
    pub(crate) binding: Binding,
    pub(crate) response_bind: Option<Pointer>,
    pub(crate) max_body_bytes: usize,
    /// A body is accepted even on methods that carry none.
    pub(crate) allow_body: bool,
    pub(crate) max_response_bytes: usize,
    pub(crate) validation: Option<RouteValidation>,
    pub(crate) fields: Option<Fields>,
    /// `Cache-Control` on this route's answers.
    pub(crate) cache_control: HeaderValue,
    /// Requests per partner on this route.
    pub(crate) rate_limit: Option<crate::limits::Rate>,
    /// The owned object this route touches.
    pub(crate) object: Option<crate::stage::own::ObjectRule>,
}

/// A route's field filter, and the variants some partners get instead.
#[derive(Debug)]
pub struct Fields {
    pub(crate) filter: FieldFilter,
    pub(crate) per_partner: HashMap<String, FieldFilter>,
}

impl Fields {
    pub fn for_partner(&self, partner: &str) -> &FieldFilter {
        self.per_partner.get(partner).unwrap_or(&self.filter)
    }
}

impl Route {
    /// Whether the upstream's answer is held back until checked whole.
    pub fn holds_response(&self) -> bool {
        self.response_bind.is_some()
            || self.fields.is_some()
            || self.object.as_ref().is_some_and(|o| o.holds_response())
    }

    /// Whether the gateway must hold the request body, or the response,
    /// before anything goes on: such requests are forwarded only once
    /// their body passed, and answered only once the response did.
    pub fn buffers(&self) -> bool {
        self.binding.needs_body()
            || self.object.as_ref().is_some_and(|o| o.id_in_body())
            || self.holds_response()
            || self.validation.as_ref().is_some_and(|v| v.body.is_some())
    }
}

/// The immutable, compiled configuration requests are served from.
#[derive(Debug)]
pub struct Plan {
    pub(crate) router: Router<Route>,
    pub(crate) routes: usize,
    pub(crate) hsts: HeaderValue,
    pub(crate) limits: Limits,
    pub(crate) trust_request_id: bool,
    pub(crate) keepalive_secs: u64,
    pub(crate) body_timeout: Duration,
    pub(crate) client_io_timeout: Duration,
    pub(crate) partners: Partners,
    /// Whose word on the client's address is believed, and where it is.
    pub(crate) client_address: ClientAddressRule,
    /// Headers removed before forwarding: identity claims, and URL or
    /// method overrides a framework behind us would act on.
    pub(crate) identity_headers: IdentityHeaders,
    pub(crate) response_headers: HeaderPatterns,
    pub(crate) replace_errors: ReplaceErrors,
    pub(crate) block_secrets: bool,
    pub(crate) error_log_bytes: usize,
    /// Signs the identity assertion sent upstream, when configured.
    pub(crate) signer: Option<Arc<Signer>>,
    /// Every upstream's balancer, for the background service that keeps
    /// them resolved and probed while this plan is live.
    pub(crate) balancers: Vec<Arc<crate::balance::Balancer>>,
}

impl Plan {
    /// How many routes the plan serves.
    pub fn routes(&self) -> usize {
        self.routes
    }
}

/// A full load: the settings (some only take effect at start), the plan,
/// and the files it came from (the reload watch fingerprints them).
#[derive(Debug)]
pub struct Loaded {
    pub settings: GatewayFile,
    pub plan: Plan,
    /// The gateway file, then the policy files.
    pub sources: Vec<PathBuf>,
    /// The files these name and the compile read (schemas, OpenAPI
    /// documents, upstream CAs, the assertion key): the reload watch
    /// covers them too.
    pub referenced: Vec<PathBuf>,
    /// Valid but risky choices, reported by `check` and logged at start:
    /// each makes a request with two readings possible again.
    pub warnings: Vec<ConfigError>,
}

/// Loads and compiles the gateway file and every policy file it names.
/// Returns every problem found, not just the first.
pub fn load(config_path: &Path) -> Result<Loaded, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let settings = load_settings(config_path)?;
    let base = config_path.parent().unwrap_or(Path::new(".")).to_path_buf();

    let hsts = HeaderValue::from_str(&settings.tls.hsts).unwrap_or_else(|_| {
        errors.push(ConfigError::new(
            config_path,
            None,
            "tls.hsts",
            "not a valid header value",
        ));
        HeaderValue::from_static("max-age=63072000")
    });
    // Value mistakes that do not stop the policies from being checked too.
    for (field, msg) in crate::config::monitoring::problems(&settings.audit, &settings.abuse) {
        errors.push(ConfigError::new(config_path, None, field, msg));
    }
    for (field, msg) in crate::config::traces::problems(&settings.traces) {
        errors.push(ConfigError::new(config_path, None, field, msg));
    }
    let others = [
        ("listen.https", Some(settings.listen.https)),
        ("listen.plaintext", settings.listen.plaintext),
        ("admin.address", Some(settings.admin.address)),
        ("metrics.address", settings.metrics.address),
    ];
    for (field, msg) in crate::config::partner::problems(&settings.partner_listener, &others) {
        errors.push(ConfigError::new(config_path, None, field, msg));
    }
    if settings.http.header_timeout.is_zero() {
        errors.push(ConfigError::new(
            config_path,
            None,
            "http.header_timeout",
            "must be greater than 0",
        ));
    }

    let mut policy_files = Vec::new();
    for pattern in &settings.policies {
        let line = Some(pattern.referenced.line());
        let full = resolve_path(&base, Path::new(&pattern.value));
        let Some(full_str) = full.to_str() else {
            errors.push(ConfigError::new(
                config_path,
                line,
                "policies",
                "path is not UTF-8",
            ));
            continue;
        };
        match glob::glob(full_str) {
            Ok(paths) => {
                let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                if matched.is_empty() {
                    errors.push(ConfigError::new(
                        config_path,
                        line,
                        "policies",
                        format!("{} matches no file", pattern.value),
                    ));
                }
                matched.sort();
                policy_files.extend(matched);
            }
            Err(e) => errors.push(ConfigError::new(
                config_path,
                line,
                "policies",
                format!("bad pattern: {e}"),
            )),
        }
    }
    policy_files.dedup();

    let mut policies: Vec<(PathBuf, PolicyFile)> = policy_files
        .iter()
        .filter_map(|p| parse_yaml::<PolicyFile>(p, &mut errors).map(|f| (p.clone(), f)))
        .collect();

    let upstreams = compile_upstreams(&policies, &mut errors);
    let signer = match &settings.identity.assertion {
        None => None,
        Some(a) => match Signer::load(a) {
            Ok(s) => Some(Arc::new(s)),
            Err(msg) => {
                errors.push(ConfigError::new(
                    config_path,
                    None,
                    "identity.assertion.key_file",
                    msg,
                ));
                None
            }
        },
    };
    let mut schema_roots = vec![settings.schemas.clone()];
    let mut rewrites: Vec<(PathBuf, crate::stage::schemas::Rewrite)> = Vec::new();
    let mut named_files: Vec<PathBuf> = settings
        .identity
        .assertion
        .iter()
        .map(|a| a.key_file.clone())
        .collect();
    for (file, policy) in &mut policies {
        let dir = file.parent().unwrap_or(Path::new("."));
        for spec in policy.upstreams.values() {
            named_files.extend(spec.value.ca.iter().map(|ca| resolve_path(dir, ca)));
        }
        for import in std::mem::take(&mut policy.openapi) {
            named_files.push(resolve_path(dir, &import.value.file));
            match openapi::import(file, &import.value) {
                Ok(imported) => {
                    schema_roots.push(imported.dir);
                    if let Some(doc) = imported.openapi30 {
                        rewrites.push((doc, openapi::for_requests));
                    }
                    policy.routes.extend(
                        imported
                            .routes
                            .into_iter()
                            .map(|r| Spanned::new(r, import.referenced, import.defined)),
                    );
                }
                Err(msg) => errors.push(ConfigError::new(
                    file,
                    Some(import.referenced.line()),
                    "openapi",
                    msg,
                )),
            }
        }
    }
    let schemas = SchemaContext {
        dir: settings.schemas.clone(),
        loader: crate::stage::schemas::Loader::new(schema_roots).with_rewrites(rewrites),
    };
    let mut warnings = Vec::new();
    let (router, routes) =
        compile_routes(&policies, &upstreams, &schemas, &mut errors, &mut warnings);
    if !settings.response.block_secrets {
        warnings.push(ConfigError::new(
            config_path,
            None,
            "response.block_secrets",
            "off: an upstream answer carrying an API key or a private key reaches the partner",
        ));
    }
    let route_names = policies
        .iter()
        .flat_map(|(_, p)| p.routes.iter().map(|r| r.value.name.clone()))
        .collect();
    let partners = compile_partners(&policies, &route_names, &mut errors);
    for (i, pattern) in settings.identity.strip_headers.iter().enumerate() {
        let name = pattern.strip_suffix('*').unwrap_or(pattern);
        if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(ConfigError::new(
                config_path,
                None,
                format!("identity.strip_headers[{i}]"),
                "not a header name (a trailing '*' matches any suffix)",
            ));
        }
    }

    let client_address = compile_client_address(config_path, &settings.http, &mut errors);
    if let Err(problems) = proxy_protocol_networks(&settings.listen) {
        for (field, message) in problems {
            errors.push(ConfigError::new(config_path, None, field, message));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let plan = Plan {
        router,
        routes,
        hsts,
        limits: Limits {
            max_header_bytes: settings.http.max_header_bytes,
            max_uri_bytes: settings.http.max_uri_bytes,
        },
        trust_request_id: settings.http.trust_request_id,
        keepalive_secs: settings.http.keepalive_timeout.as_secs().max(1),
        body_timeout: settings.http.body_timeout,
        client_io_timeout: settings.http.client_io_timeout,
        partners,
        client_address,
        identity_headers: IdentityHeaders::new(
            &settings
                .identity
                .strip_headers
                .iter()
                .cloned()
                // The upstream must not read a client address the gateway
                // did not check.
                .chain(std::iter::once(settings.http.client_ip_header.clone()))
                .chain(crate::stage::unambiguous::OVERRIDE_HEADERS.map(String::from))
                .chain(settings.http.override_headers.iter().cloned())
                .collect::<Vec<_>>(),
        ),
        response_headers: HeaderPatterns::new(&settings.response.strip_headers),
        replace_errors: settings.response.replace_errors,
        block_secrets: settings.response.block_secrets,
        error_log_bytes: settings.response.error_log_bytes,
        signer,
        balancers: upstreams.0.values().map(|u| u.balancer.clone()).collect(),
    };
    let mut sources = vec![config_path.to_path_buf()];
    sources.extend(policy_files);
    let mut referenced = named_files;
    referenced.extend(schemas.loader.files_read());
    referenced.sort();
    referenced.dedup();
    Ok(Loaded {
        settings,
        plan,
        sources,
        referenced,
        warnings,
    })
}

/// `http.trusted_proxies` and `http.client_ip_header`, checked.
fn compile_client_address(
    config_path: &Path,
    http: &crate::config::model::HttpSettings,
    errors: &mut ConfigErrors,
) -> ClientAddressRule {
    let mut trusted = Vec::new();
    for (i, text) in http.trusted_proxies.iter().enumerate() {
        match partners::parse_net(text) {
            Ok(net) if net.prefix_len() == 0 => errors.push(ConfigError::new(
                config_path,
                None,
                format!("http.trusted_proxies[{i}]"),
                format!("{text} trusts every address: any client could choose the address it is judged by"),
            )),
            Ok(net) => trusted.push(net),
            Err(e) => errors.push(ConfigError::new(
                config_path,
                None,
                format!("http.trusted_proxies[{i}]"),
                e,
            )),
        }
    }
    let header = match http::HeaderName::from_bytes(http.client_ip_header.as_bytes()) {
        Ok(name) if name != http::header::FORWARDED => name,
        Ok(_) => {
            errors.push(ConfigError::new(
                config_path,
                None,
                "http.client_ip_header",
                "`forwarded` (RFC 7239) is not read: use x-forwarded-for or a single-address header",
            ));
            return ClientAddressRule::peer_only();
        }
        Err(_) => {
            errors.push(ConfigError::new(
                config_path,
                None,
                "http.client_ip_header",
                "not a header name",
            ));
            return ClientAddressRule::peer_only();
        }
    };
    ClientAddressRule::new(trusted, header)
}

/// `listen.proxy_protocol.from`, compiled; `None` when the listener reads
/// no PROXY header. Errors are (field, message).
pub fn proxy_protocol_networks(
    listen: &crate::config::model::Listen,
) -> Result<Option<Vec<ipnet::IpNet>>, Vec<(String, String)>> {
    let Some(settings) = &listen.proxy_protocol else {
        return Ok(None);
    };
    let mut problems = Vec::new();
    if settings.from.is_empty() {
        problems.push((
            "listen.proxy_protocol.from".to_string(),
            "lists no balancer: every header would be refused".to_string(),
        ));
    }
    let mut nets = Vec::new();
    for (i, text) in settings.from.iter().enumerate() {
        let field = format!("listen.proxy_protocol.from[{i}]");
        match partners::parse_net(text) {
            Ok(net) if net.prefix_len() == 0 => problems.push((
                field,
                format!("{text} trusts every address: any client could write the address it is judged by"),
            )),
            Ok(net) => nets.push(net),
            Err(e) => problems.push((field, e)),
        }
    }
    if problems.is_empty() {
        Ok(Some(nets))
    } else {
        Err(problems)
    }
}
