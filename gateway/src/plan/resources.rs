//! Compiles `resources:` (kinds of owned object) and each route's
//! `resource:` (what it does to which kind, where the request names it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::model::{
    PolicyFile, ResourceAction, ResourceSpec, RouteResourceSpec, UnknownObjects,
};
use crate::config::{ConfigError, ConfigErrors};
use crate::keys::store::valid_label;
use crate::stage::body::Pointer;
use crate::stage::own::{IdSource, ObjectRule, Resource};

pub type Resources = HashMap<String, Arc<Resource>>;

pub fn compile_resources(
    policies: &[(PathBuf, PolicyFile)],
    errors: &mut ConfigErrors,
) -> Resources {
    let mut out = Resources::new();
    let mut defined_in: HashMap<&str, &Path> = HashMap::new();
    for (file, policy) in policies {
        for (kind, spec) in &policy.resources {
            let line = Some(spec.referenced.line());
            let field = format!("resources.{kind}");
            if let Some(other) = defined_in.insert(kind, file) {
                errors.push(ConfigError::new(
                    file,
                    line,
                    field,
                    format!("resource kind is also defined in {}", other.display()),
                ));
                continue;
            }
            match compile_resource(kind, &spec.value) {
                Ok(r) => {
                    out.insert(kind.clone(), Arc::new(r));
                }
                Err((sub, msg)) => {
                    errors.push(ConfigError::new(file, line, format!("{field}{sub}"), msg))
                }
            }
        }
    }
    out
}

fn compile_resource(kind: &str, spec: &ResourceSpec) -> Result<Resource, (&'static str, String)> {
    if !valid_label(kind) {
        return Err((
            "",
            "resource kinds are 1-64 characters of a-z, 0-9, '-' and '_'".into(),
        ));
    }
    Ok(Resource {
        kind: kind.to_string(),
        id: Pointer::parse(&spec.id, false).map_err(|m| (".id", m))?,
        owner: match &spec.owner {
            None => None,
            Some(p) => Some(Pointer::parse(p, false).map_err(|m| (".owner", m))?),
        },
    })
}

/// `params` are the route template's parameter names.
pub fn compile_object_rule(
    spec: &RouteResourceSpec,
    params: &[&str],
    resources: &Resources,
) -> Result<ObjectRule, (&'static str, String)> {
    let resource = resources
        .get(&spec.kind)
        .cloned()
        .ok_or_else(|| ("resource.kind", format!("no resource kind {:?}", spec.kind)))?;
    let names_object = !matches!(spec.action, ResourceAction::Create | ResourceAction::List);
    let given = [
        spec.id.path.is_some(),
        spec.id.query.is_some(),
        spec.id.body.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given > 1 {
        return Err((
            "resource.id",
            "name one place for the object id (path, query or body), not several".into(),
        ));
    }
    let id = if !names_object {
        if given > 0 {
            return Err((
                "resource.id",
                "create and list routes name no existing object".into(),
            ));
        }
        None
    } else if let Some(name) = &spec.id.path {
        if !params.contains(&name.as_str()) {
            return Err((
                "resource.id.path",
                format!("the path template has no parameter {{{name}}}"),
            ));
        }
        Some(IdSource::Path(name.clone()))
    } else if let Some(name) = &spec.id.query {
        if name.is_empty() {
            return Err(("resource.id.query", "must not be empty".into()));
        }
        Some(IdSource::Query(name.clone()))
    } else if let Some(p) = &spec.id.body {
        Some(IdSource::Body(
            Pointer::parse(p, false).map_err(|m| ("resource.id.body", m))?,
        ))
    } else if params.contains(&"id") {
        Some(IdSource::Path("id".into()))
    } else {
        return Err((
            "resource.id",
            "say where the request names the object (the template has no {id})".into(),
        ));
    };
    let rows = match (spec.action, &spec.rows) {
        (ResourceAction::List, Some(text)) => Some(rows_path(text)?),
        (ResourceAction::List, None) => {
            return Err((
                "resource.rows",
                "a list route says where its rows are (`/orders/*`)".into(),
            ))
        }
        (_, Some(_)) => return Err(("resource.rows", "only list routes have rows".into())),
        (_, None) => None,
    };
    if spec.action == ResourceAction::List && resource.owner.is_none() {
        return Err((
            "resource.kind",
            format!(
                "list rows are judged by their owner field: give resources.{}.owner",
                spec.kind
            ),
        ));
    }
    let preflight = match &spec.preflight {
        None => None,
        Some(_) if !names_object => {
            return Err((
                "resource.preflight",
                "create and list routes name no existing object to ask about".into(),
            ))
        }
        Some(t) => {
            if !t.starts_with('/') || t.matches("{id}").count() != 1 || t.contains('?') {
                return Err((
                    "resource.preflight",
                    "a path template starting with '/' with exactly one {id} and no query".into(),
                ));
            }
            Some(t.clone())
        }
    };
    if spec.unknown == UnknownObjects::Preflight {
        if !names_object {
            return Err((
                "resource.unknown",
                "create and list routes name no existing object".into(),
            ));
        }
        if resource.owner.is_none() {
            return Err((
                "resource.unknown",
                format!(
                    "a pre-flight is decided by the answer's owner field: give resources.{}.owner",
                    spec.kind
                ),
            ));
        }
        if preflight.is_none() && spec.action != ResourceAction::Read {
            return Err((
                "resource.preflight",
                "a write on an unknown object needs a pre-flight read (`preflight: /orders/{id}`)"
                    .into(),
            ));
        }
    }
    Ok(ObjectRule {
        resource,
        action: spec.action,
        id,
        unknown: spec.unknown,
        preflight,
        rows,
        others: spec.others,
    })
}

/// `/orders/*` → `["orders"]`; `/*` → `[]`.
fn rows_path(text: &str) -> Result<Vec<String>, (&'static str, String)> {
    let pointer = Pointer::parse(text, true).map_err(|m| ("resource.rows", m))?;
    let mut segments = pointer.segments();
    if segments.pop().as_deref() != Some("*") || segments.iter().any(|s| s == "*") {
        return Err((
            "resource.rows",
            "object keys ending in one `*` for the rows array (`/orders/*`)".into(),
        ));
    }
    Ok(segments)
}
