//! Upstreams: addresses resolved, TLS names and CAs loaded, timeouts checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;

use crate::balance::{probe, Balancer, BalancerSpec, Ejection, Name, ProbeTarget, MAX_TARGETS};
use crate::config::load::resolve_path;
use crate::config::model::{PolicyFile, UpstreamSpec};
use crate::config::{ConfigError, ConfigErrors};

use super::{Timeouts, Upstream};

/// Compiled upstreams by name, plus the names that were defined but invalid
/// (already reported, so routes naming them are not reported again).
pub(super) type Upstreams = (
    HashMap<String, Arc<Upstream>>,
    std::collections::HashSet<String>,
);

pub(super) fn compile_upstreams(
    policies: &[(PathBuf, PolicyFile)],
    errors: &mut ConfigErrors,
) -> Upstreams {
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
    let server_name = spec
        .server_name
        .clone()
        .unwrap_or_else(|| bare_host.to_string());
    let balancer = compile_balancer(
        name,
        spec,
        &address,
        &ProbeTarget {
            upstream: name,
            tls,
            server_name: &server_name,
            authority: &authority,
            ca: ca.as_ref(),
        },
    )?;
    Ok(Upstream {
        name: name.to_string(),
        address,
        balancer: Arc::new(balancer),
        tls,
        server_name,
        authority,
        preserve_host: spec.preserve_host,
        ca,
        timeouts,
        pool_key: u64::from_le_bytes(pool_key),
    })
}

/// The targets, how requests pick among them, and how they are watched.
fn compile_balancer(
    name: &str,
    spec: &UpstreamSpec,
    url_address: &str,
    probe_target: &ProbeTarget<'_>,
) -> Result<Balancer, (&'static str, String)> {
    let names = if spec.targets.is_empty() {
        vec![Name::parse(url_address).map_err(|m| ("url", m))?]
    } else {
        if spec.targets.len() > MAX_TARGETS {
            return Err(("targets", format!("at most {MAX_TARGETS} targets")));
        }
        spec.targets
            .iter()
            .map(|t| Name::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ("targets", m))?
    };
    if spec.resolve_every < MIN_RESOLVE_EVERY {
        return Err((
            "resolve_every",
            format!("must be at least {}ms", MIN_RESOLVE_EVERY.as_millis()),
        ));
    }
    if spec.ejection.after_failures > 0 && spec.ejection.duration.is_zero() {
        return Err((
            "ejection.duration",
            "must be greater than 0 (after_failures: 0 turns ejection off)".into(),
        ));
    }
    let probe = match &spec.health_check {
        None => None,
        Some(check) => Some((probe(check, probe_target)?, check.interval)),
    };
    Balancer::new(BalancerSpec {
        upstream: name.to_string(),
        names,
        balance: spec.balance,
        ejection: Ejection {
            after_failures: spec.ejection.after_failures,
            duration: spec.ejection.duration,
        },
        resolve_every: spec.resolve_every,
        probe,
    })
    .map_err(|m| {
        (
            if spec.targets.is_empty() {
                "url"
            } else {
                "targets"
            },
            m,
        )
    })
}

/// Re-resolving faster than this only loads the resolver.
const MIN_RESOLVE_EVERY: Duration = Duration::from_millis(100);

pub(super) fn check_timeouts(t: &Timeouts) -> Result<(), String> {
    if [t.connect, t.read, t.write, t.total]
        .iter()
        .any(Duration::is_zero)
    {
        return Err("every timeout must be greater than 0".into());
    }
    Ok(())
}

fn load_ca(path: &Path) -> Result<(Arc<CaType>, blake3::Hash), String> {
    let ders = crate::transport::tls::read_certificates(path)?;
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
