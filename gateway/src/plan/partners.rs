//! Compiles the `partners:` sections of every policy file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::model::{PartnerSpec, PartnerStatus, PolicyFile};
use crate::config::{ConfigError, ConfigErrors};
use crate::keys::store::valid_label;
use crate::stage::isolation::Partner;

pub type Partners = HashMap<String, Arc<Partner>>;

pub fn compile_partners(
    policies: &[(PathBuf, PolicyFile)],
    route_names: &HashSet<String>,
    errors: &mut ConfigErrors,
) -> Partners {
    let mut out: Partners = HashMap::new();
    let mut defined_in: HashMap<&str, &Path> = HashMap::new();
    for (file, policy) in policies {
        for (id, spec) in &policy.partners {
            let line = Some(spec.referenced.line());
            let field = format!("partners.{id}");
            if let Some(other) = defined_in.insert(id, file) {
                errors.push(ConfigError::new(
                    file,
                    line,
                    field,
                    format!("partner is also defined in {}", other.display()),
                ));
                continue;
            }
            match compile_partner(id, &spec.value, route_names) {
                Ok(p) => {
                    out.insert(id.clone(), Arc::new(p));
                }
                Err((sub, msg)) => {
                    errors.push(ConfigError::new(file, line, format!("{field}{sub}"), msg))
                }
            }
        }
    }
    out
}

fn compile_partner(
    id: &str,
    spec: &PartnerSpec,
    route_names: &HashSet<String>,
) -> Result<Partner, (&'static str, String)> {
    if !valid_label(id) {
        return Err((
            "",
            "partner ids are 1-64 characters of a-z, 0-9, '-' and '_' (as in their keys)".into(),
        ));
    }
    if let Some(scope) = spec.scopes.iter().find(|s| s.trim().is_empty()) {
        return Err((".scopes", format!("empty scope {scope:?}")));
    }
    let routes = match &spec.routes {
        None => None,
        Some(names) => {
            if let Some(unknown) = names.iter().find(|n| !route_names.contains(*n)) {
                return Err((".routes", format!("no route named {unknown:?}")));
            }
            Some(names.iter().cloned().collect())
        }
    };
    let allow_ips = match &spec.allow_ips {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return Err((
                    ".allow_ips",
                    "an empty allow-list would refuse every request; suspend the partner instead"
                        .into(),
                ));
            }
            Some(
                list.iter()
                    .map(|s| parse_net(s).map_err(|m| (".allow_ips", m)))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    if spec.limits.max_concurrent == Some(0) {
        return Err((".limits.max_concurrent", "must be greater than 0".into()));
    }
    if let Some(msg) = spec
        .limits
        .rate
        .as_ref()
        .and_then(crate::config::monitoring::rate_problem)
    {
        return Err((".limits.rate", msg.into()));
    }
    Ok(Partner {
        id: id.to_string(),
        suspended: spec.status == PartnerStatus::Suspended,
        scopes: spec.scopes.iter().cloned().collect(),
        routes,
        allow_ips,
        max_concurrent: spec.limits.max_concurrent,
        rate: spec.limits.rate.as_ref().map(crate::limits::Rate::new),
        self_rotation: spec.self_rotation,
    })
}

/// A CIDR network, or a single address meaning just itself.
pub(crate) fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "{text} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))
}
