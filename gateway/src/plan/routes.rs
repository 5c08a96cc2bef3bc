//! Routes: templates, methods, bindings, validation and response rules,
//! each checked against the upstreams and schemas they name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderValue, Method};

use super::validation::{compile_validation, SchemaContext};
use crate::config::model::RouteResponseSpec;
use crate::config::model::{BindSpec, PolicyFile, RouteSpec};
use crate::config::{ConfigError, ConfigErrors};
use crate::stage::body::Pointer;
use crate::stage::isolation::{Binding, PARTNER_PARAM};
use crate::stage::minimise::FieldFilter;
use crate::stage::route::Router;

use super::upstreams::{check_timeouts, Upstreams};
use super::{Fields, Route};

pub(super) fn compile_routes(
    policies: &[(PathBuf, PolicyFile)],
    (upstreams, invalid_upstreams): &Upstreams,
    schemas: &SchemaContext,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<ConfigError>,
) -> (Router<Route>, usize) {
    let mut router = Router::default();
    let mut names: HashMap<&str, &Path> = HashMap::new();
    let mut count = 0;
    let resources = super::resources::compile_resources(policies, errors);
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
                .and_then(crate::config::monitoring::rate_problem)
            {
                errors.push(ConfigError::new(file, line, field("rate_limit"), msg));
                continue;
            }
            let object = match &spec.resource {
                None => None,
                Some(r) => match super::resources::compile_object_rule(
                    r,
                    &template_params(&spec.path),
                    &resources,
                ) {
                    Ok(rule) if rule.holds_response() && methods.iter().any(|m| m == "HEAD") => {
                        errors.push(ConfigError::new(
                            file,
                            line,
                            field("methods"),
                            "this route judges the owner in its answer's body, which a HEAD \
                             answer does not have: give HEAD a route of its own",
                        ));
                        continue;
                    }
                    Ok(rule) => Some(rule),
                    Err((sub, msg)) => {
                        errors.push(ConfigError::new(file, line, field(sub), msg));
                        continue;
                    }
                },
            };
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
                object,
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
    match crate::stage::path::normalise(&literal) {
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
