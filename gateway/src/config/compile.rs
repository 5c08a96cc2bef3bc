//! Compiles the YAML model into a [`Plan`]: every reference resolved, every
//! value checked, so serving a request never meets a configuration error.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method};
use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;
use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

use super::error::{ConfigError, ConfigErrors};
use super::model::{BindSpec, GatewayFile, PolicyFile, RouteSpec, TimeoutSpec, UpstreamSpec};
use super::model::{ReplaceErrors, RouteResponseSpec};
use super::partners::{compile_partners, Partners};
use super::validate::{compile_validation, SchemaContext};
use crate::assertion::Signer;
use crate::body::Pointer;
use crate::isolation::{Binding, IdentityHeaders, PARTNER_PARAM};
use crate::minimise::{FieldFilter, HeaderPatterns};
use crate::protocol::Limits;
use crate::router::Router;
use crate::validation::RouteValidation;

/// Resolved per-route upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub total: Duration,
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
    pub name: String,
    /// `host:port` as configured, for logs.
    pub address: String,
    /// Resolved when the configuration is compiled (and again on reload),
    /// so no request ever waits on DNS.
    pub socket: SocketAddr,
    pub tls: bool,
    /// TLS server name (SNI and certificate verification).
    pub server_name: String,
    /// `Host` header value sent upstream unless `preserve_host`.
    pub authority: String,
    pub preserve_host: bool,
    pub ca: Option<Arc<CaType>>,
    pub timeouts: Timeouts,
    /// Keeps this upstream's pooled connections apart from any other's.
    /// pingora's pool key ignores the CA a connection was verified against,
    /// so without it a connection verified for one upstream's private CA
    /// could be reused by another upstream that trusts only system roots.
    pub pool_key: u64,
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
    pub name: String,
    pub upstream: Arc<Upstream>,
    pub timeouts: Timeouts,
    pub scopes: Vec<String>,
    pub binding: Binding,
    pub response_bind: Option<Pointer>,
    pub max_body_bytes: usize,
    /// A body is accepted even on methods that carry none.
    pub allow_body: bool,
    pub max_response_bytes: usize,
    pub validation: Option<RouteValidation>,
    pub fields: Option<Fields>,
    /// `Cache-Control` on this route's answers.
    pub cache_control: HeaderValue,
    /// Requests per partner on this route.
    pub rate_limit: Option<crate::limits::Rate>,
}

/// A route's field filter, and the variants some partners get instead.
#[derive(Debug)]
pub struct Fields {
    pub filter: FieldFilter,
    pub per_partner: HashMap<String, FieldFilter>,
}

impl Fields {
    pub fn for_partner(&self, partner: &str) -> &FieldFilter {
        self.per_partner.get(partner).unwrap_or(&self.filter)
    }
}

impl Route {
    /// Whether the upstream's answer is held back until checked whole.
    pub fn holds_response(&self) -> bool {
        self.response_bind.is_some() || self.fields.is_some()
    }

    /// Whether the gateway must hold the request body, or the response,
    /// before anything goes on: such requests are forwarded only once
    /// their body passed, and answered only once the response did.
    pub fn buffers(&self) -> bool {
        self.binding.needs_body()
            || self.holds_response()
            || self.validation.as_ref().is_some_and(|v| v.body.is_some())
    }
}

/// The immutable, compiled configuration requests are served from.
#[derive(Debug)]
pub struct Plan {
    pub router: Router<Route>,
    pub routes: usize,
    pub hsts: HeaderValue,
    pub limits: Limits,
    pub trust_request_id: bool,
    pub keepalive_secs: u64,
    pub body_timeout: Duration,
    pub client_io_timeout: Duration,
    pub partners: Partners,
    /// Headers removed before forwarding: identity claims, and URL or
    /// method overrides a framework behind us would act on.
    pub identity_headers: IdentityHeaders,
    pub response_headers: HeaderPatterns,
    pub replace_errors: ReplaceErrors,
    pub block_secrets: bool,
    pub error_log_bytes: usize,
    /// Signs the identity assertion sent upstream, when configured.
    pub signer: Option<Arc<Signer>>,
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

fn parse_yaml<T: DeserializeOwned>(path: &Path, errors: &mut ConfigErrors) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(
                path,
                None,
                "file",
                format!("cannot read: {e}"),
            ));
            return None;
        }
    };
    match serde_saphyr::from_str::<T>(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().map(|l| l.line());
            errors.push(ConfigError::new(
                path,
                line,
                "yaml",
                e.without_snippet().to_string(),
            ));
            None
        }
    }
}

/// Relative paths in a file are relative to that file's directory.
pub fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Parses the gateway file alone, with its paths made absolute to it.
pub fn load_settings(config_path: &Path) -> Result<GatewayFile, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let Some(mut settings) = parse_yaml::<GatewayFile>(config_path, &mut errors) else {
        return Err(errors);
    };
    // Absolute, so file URLs made from these paths (schema `$ref`s) are
    // well-formed whatever the working directory.
    let parent = config_path.parent().unwrap_or(Path::new("."));
    let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    settings.tls.certificate = resolve_path(&base, &settings.tls.certificate);
    settings.tls.private_key = resolve_path(&base, &settings.tls.private_key);
    settings.keys.path = resolve_path(&base, &settings.keys.path);
    settings.schemas = resolve_path(&base, &settings.schemas);
    if let Some(a) = settings.identity.assertion.as_mut() {
        a.key_file = resolve_path(&base, &a.key_file);
    }
    settings.server.pid_file = resolve_path(&base, &settings.server.pid_file);
    settings.server.upgrade_sock = resolve_path(&base, &settings.server.upgrade_sock);
    settings.keys.pepper_file = settings
        .keys
        .pepper_file
        .as_ref()
        .map(|p| resolve_path(&base, p));
    settings.admin.token_file = settings
        .admin
        .token_file
        .as_ref()
        .map(|p| resolve_path(&base, p));
    settings.audit.path = resolve_path(&base, &settings.audit.path);
    settings.audit.chain_key_file = settings
        .audit
        .chain_key_file
        .as_ref()
        .map(|p| resolve_path(&base, p));
    settings.keys.header = settings.keys.header.to_ascii_lowercase();
    if http::HeaderName::from_bytes(settings.keys.header.as_bytes()).is_err() {
        errors.push(ConfigError::new(
            config_path,
            None,
            "keys.header",
            "not a valid header name",
        ));
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
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
    for (field, msg) in super::monitoring::problems(&settings.audit, &settings.abuse) {
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
            match super::openapi::import(file, &import.value) {
                Ok((routes, dir)) => {
                    schema_roots.push(dir);
                    policy.routes.extend(
                        routes
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
        loader: crate::schemas::Loader::new(schema_roots),
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
        identity_headers: IdentityHeaders::new(
            &settings
                .identity
                .strip_headers
                .iter()
                .cloned()
                .chain(crate::unambiguous::OVERRIDE_HEADERS.map(String::from))
                .chain(settings.http.override_headers.iter().cloned())
                .collect::<Vec<_>>(),
        ),
        response_headers: HeaderPatterns::new(&settings.response.strip_headers),
        replace_errors: settings.response.replace_errors,
        block_secrets: settings.response.block_secrets,
        error_log_bytes: settings.response.error_log_bytes,
        signer,
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

/// Compiled upstreams by name, plus the names that were defined but invalid
/// (already reported, so routes naming them are not reported again).
type Upstreams = (
    HashMap<String, Arc<Upstream>>,
    std::collections::HashSet<String>,
);

fn compile_upstreams(policies: &[(PathBuf, PolicyFile)], errors: &mut ConfigErrors) -> Upstreams {
    let mut invalid = std::collections::HashSet::new();
    let mut out: HashMap<String, (Arc<Upstream>, PathBuf)> = HashMap::new();
    for (file, policy) in policies {
        for (name, spec) in &policy.upstreams {
            let line = Some(spec.referenced.line());
            let field = format!("upstreams.{name}");
            if let Some((_, other)) = out.get(name) {
                errors.push(ConfigError::new(
                    file,
                    line,
                    field,
                    format!("upstream is also defined in {}", other.display()),
                ));
                continue;
            }
            match compile_upstream(name, &spec.value, file) {
                Ok(u) => {
                    out.insert(name.clone(), (Arc::new(u), file.clone()));
                }
                Err((sub, msg)) => {
                    invalid.insert(name.clone());
                    errors.push(ConfigError::new(file, line, format!("{field}.{sub}"), msg))
                }
            }
        }
    }
    (out.into_iter().map(|(k, (u, _))| (k, u)).collect(), invalid)
}

fn compile_upstream(
    name: &str,
    spec: &UpstreamSpec,
    file: &Path,
) -> Result<Upstream, (&'static str, String)> {
    let uri: http::Uri = spec
        .url
        .parse()
        .map_err(|e| ("url", format!("not a URL: {e}")))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(("url", "scheme must be http or https".into())),
    };
    let host = uri.host().ok_or(("url", "URL has no host".to_string()))?;
    if uri
        .path_and_query()
        .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return Err(("url", "URL must not have a path or query".into()));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let address = if bare_host.contains(':') {
        format!("[{bare_host}]:{port}")
    } else {
        format!("{bare_host}:{port}")
    };
    let socket = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or(("url", format!("cannot resolve {address}")))?;
    let mut pool = blake3::Hasher::new();
    pool.update(name.as_bytes());
    let ca = match &spec.ca {
        None => None,
        Some(_) if !tls => return Err(("ca", "a CA only applies to an https upstream".into())),
        Some(p) => {
            let (ca, fingerprint) =
                load_ca(&resolve_path(file.parent().unwrap_or(Path::new(".")), p))
                    .map_err(|m| ("ca", m))?;
            pool.update(fingerprint.as_bytes());
            Some(ca)
        }
    };
    let pool_hash = pool.finalize();
    let mut pool_key = [0u8; 8];
    pool_key.copy_from_slice(&pool_hash.as_bytes()[..8]);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| address.clone());
    let timeouts = Timeouts::DEFAULT.overlay(&spec.timeouts);
    check_timeouts(&timeouts).map_err(|m| ("timeouts", m))?;
    Ok(Upstream {
        name: name.to_string(),
        address,
        socket,
        tls,
        server_name: spec
            .server_name
            .clone()
            .unwrap_or_else(|| bare_host.to_string()),
        authority,
        preserve_host: spec.preserve_host,
        ca,
        timeouts,
        pool_key: u64::from_le_bytes(pool_key),
    })
}

fn check_timeouts(t: &Timeouts) -> Result<(), String> {
    if [t.connect, t.read, t.write, t.total]
        .iter()
        .any(Duration::is_zero)
    {
        return Err("every timeout must be greater than 0".into());
    }
    Ok(())
}

fn load_ca(path: &Path) -> Result<(Arc<CaType>, blake3::Hash), String> {
    let ders = crate::tls::read_certificates(path)?;
    let mut fingerprint = blake3::Hasher::new();
    for der in &ders {
        fingerprint.update(der);
    }
    let wrapped: Vec<WrappedX509> = ders
        .into_iter()
        .map(|der| WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509))
        .collect();
    Ok((
        Arc::from(wrapped.into_boxed_slice()),
        fingerprint.finalize(),
    ))
}

fn compile_routes(
    policies: &[(PathBuf, PolicyFile)],
    (upstreams, invalid_upstreams): &Upstreams,
    schemas: &SchemaContext,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<ConfigError>,
) -> (Router<Route>, usize) {
    let mut router = Router::default();
    let mut names: HashMap<&str, &Path> = HashMap::new();
    let mut count = 0;
    for (file, policy) in policies {
        for (i, spanned) in policy.routes.iter().enumerate() {
            let spec: &RouteSpec = &spanned.value;
            let line = Some(spanned.referenced.line());
            let field = |f: &str| format!("routes[{i}].{f}");
            if spec.name.is_empty() {
                errors.push(ConfigError::new(
                    file,
                    line,
                    field("name"),
                    "must not be empty",
                ));
            }
            if let Some(other) = names.insert(&spec.name, file) {
                errors.push(ConfigError::new(
                    file,
                    line,
                    field("name"),
                    format!(
                        "route name {:?} is already used in {}",
                        spec.name,
                        other.display()
                    ),
                ));
            }
            let methods = match parse_methods(&spec.methods) {
                Ok(m) => m,
                Err(msg) => {
                    errors.push(ConfigError::new(file, line, field("methods"), msg));
                    continue;
                }
            };
            let Some(upstream) = upstreams.get(&spec.upstream.value) else {
                if invalid_upstreams.contains(&spec.upstream.value) {
                    continue;
                }
                errors.push(ConfigError::new(
                    file,
                    Some(spec.upstream.referenced.line()),
                    field("upstream"),
                    format!("no upstream named {:?}", spec.upstream.value),
                ));
                continue;
            };
            let timeouts = upstream.timeouts.overlay(&spec.timeouts);
            if let Err(msg) = check_timeouts(&timeouts) {
                errors.push(ConfigError::new(file, line, field("timeouts"), msg));
                continue;
            }
            if let Err(msg) = check_template(&spec.path) {
                errors.push(ConfigError::new(file, line, field("path"), msg));
                continue;
            }
            let binding = match compile_binding(&spec.bind, &spec.path) {
                Ok(b) => b,
                Err((sub, msg)) => {
                    errors.push(ConfigError::new(file, line, field(sub), msg));
                    continue;
                }
            };
            let response_bind = match spec
                .response_bind
                .as_deref()
                .map(|p| Pointer::parse(p, true))
            {
                None => None,
                Some(Ok(p)) => Some(p),
                Some(Err(msg)) => {
                    errors.push(ConfigError::new(file, line, field("response_bind"), msg));
                    continue;
                }
            };
            if spec.scopes.iter().any(|s| s.trim().is_empty()) {
                errors.push(ConfigError::new(file, line, field("scopes"), "empty scope"));
                continue;
            }
            if spec.max_body_bytes == 0 || spec.max_response_bytes == 0 {
                errors.push(ConfigError::new(
                    file,
                    line,
                    field("max_body_bytes"),
                    "size limits must be greater than 0",
                ));
                continue;
            }
            let validation = match &spec.validate {
                None => None,
                Some(v) => match compile_validation(
                    v,
                    &template_params(&spec.path),
                    spec.schema_origin.as_ref(),
                    schemas,
                ) {
                    Ok(v) => Some(v),
                    Err((sub, msg)) => {
                        errors.push(ConfigError::new(file, line, field(sub), msg));
                        continue;
                    }
                },
            };
            let (fields, cache_control) = match compile_response(spec.response.as_ref()) {
                Ok(r) => r,
                Err((sub, msg)) => {
                    errors.push(ConfigError::new(file, line, field(sub), msg));
                    continue;
                }
            };
            if let Some(msg) = spec
                .rate_limit
                .as_ref()
                .and_then(super::monitoring::rate_problem)
            {
                errors.push(ConfigError::new(file, line, field("rate_limit"), msg));
                continue;
            }
            let body_checked =
                binding.needs_body() || validation.as_ref().is_some_and(|v| v.body.is_some());
            if spec.allow_body && !body_checked {
                warnings.push(ConfigError::new(
                    file,
                    line,
                    field("allow_body"),
                    "bodies on GET, HEAD, DELETE, OPTIONS and TRACE reach the upstream unchecked; \
                     add validate.body",
                ));
            }
            let route = Arc::new(Route {
                name: spec.name.clone(),
                upstream: upstream.clone(),
                timeouts,
                scopes: spec.scopes.clone(),
                binding,
                response_bind,
                max_body_bytes: spec.max_body_bytes,
                allow_body: spec.allow_body,
                max_response_bytes: spec.max_response_bytes,
                validation,
                fields,
                cache_control,
                rate_limit: spec.rate_limit.as_ref().map(crate::limits::Rate::new),
            });
            match router.insert(&spec.path, &methods, route) {
                Ok(()) => count += 1,
                Err(msg) => errors.push(ConfigError::new(file, line, field("path"), msg)),
            }
        }
    }
    (router, count)
}

type ResponseRules = (Option<Fields>, HeaderValue);

fn compile_response(
    spec: Option<&RouteResponseSpec>,
) -> Result<ResponseRules, (&'static str, String)> {
    let no_store = HeaderValue::from_static("no-store");
    let Some(spec) = spec else {
        return Ok((None, no_store));
    };
    let cache_control = match &spec.cache_control {
        None => no_store,
        Some(v) => HeaderValue::from_str(v).map_err(|_| {
            (
                "response.cache_control",
                "not a valid header value".to_string(),
            )
        })?,
    };
    let filter = match (&spec.allow, &spec.deny) {
        (Some(_), Some(_)) => {
            return Err((
                "response",
                "give an allow-list or a deny-list, not both".into(),
            ))
        }
        (Some(allow), None) => FieldFilter::allow(allow).map_err(|m| ("response.allow", m))?,
        (None, Some(deny)) => FieldFilter::deny(deny).map_err(|m| ("response.deny", m))?,
        (None, None) => {
            if !spec.partner_exceptions.is_empty() {
                return Err((
                    "response.partner_exceptions",
                    "exceptions need an allow- or deny-list".into(),
                ));
            }
            return Ok((None, cache_control));
        }
    };
    let mut per_partner = HashMap::new();
    for (partner, extra) in &spec.partner_exceptions {
        let f = filter
            .with_exceptions(extra)
            .map_err(|m| ("response.partner_exceptions", m))?;
        per_partner.insert(partner.clone(), f);
    }
    Ok((
        Some(Fields {
            filter,
            per_partner,
        }),
        cache_control,
    ))
}

/// The parameter names of a path template (`{id}`, `{*rest}`).
fn template_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

fn compile_binding(spec: &BindSpec, template: &str) -> Result<Binding, (&'static str, String)> {
    let params = template_params(template);
    let path = match &spec.path {
        Some(name) if params.contains(&name.as_str()) => Some(name.clone()),
        Some(name) => {
            return Err((
                "bind.path",
                format!("the path template has no parameter {{{name}}}"),
            ))
        }
        None => params
            .contains(&PARTNER_PARAM)
            .then(|| PARTNER_PARAM.to_string()),
    };
    if spec.query.as_deref().is_some_and(str::is_empty) {
        return Err(("bind.query", "must not be empty".into()));
    }
    let header = match &spec.header {
        None => None,
        Some(h) if h.contains('_') => {
            return Err((
                "bind.header",
                format!("{h:?}: header names with '_' are refused by the gateway, so this binding could never match"),
            ))
        }
        Some(h) => Some(
            http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| ("bind.header", format!("{h:?} is not a header name")))?,
        ),
    };
    let body = match &spec.body {
        None => None,
        Some(p) => Some(Pointer::parse(p, false).map_err(|m| ("bind.body", m))?),
    };
    Ok(Binding {
        path,
        query: spec.query.clone(),
        header,
        body,
    })
}

/// A template is matched against canonical paths, so it must itself be
/// canonical, or the route could never match.
fn check_template(template: &str) -> Result<(), String> {
    let literal: String = template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "x"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    match crate::path::normalise(&literal) {
        Ok(canonical) if canonical == literal => Ok(()),
        Ok(_) => Err("path template is not in canonical form (no '.', '..', '//' or escapes of unreserved characters)".into()),
        Err(e) => Err(format!("path template is invalid: {e}")),
    }
}

fn parse_methods(methods: &[String]) -> Result<Vec<Method>, String> {
    if methods.is_empty() {
        return Err("at least one method is required".into());
    }
    methods
        .iter()
        .map(|m| {
            const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
            if KNOWN.contains(&m.as_str()) {
                Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "unknown method {m:?} (expected one of {})",
                    KNOWN.join(", ")
                ))
            }
        })
        .collect()
}
