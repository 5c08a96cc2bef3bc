//! Turns the operations of an OpenAPI 3.0/3.1 document into routes, so a
//! team reuses the contract it already has: each operation's method and
//! path become a route named after its operationId, its parameters become
//! query/path/header schemas and its JSON request body the body schema.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use serde_saphyr::Spanned;

use crate::config::model::{
    BindSpec, OpenApiImport, RouteSpec, SchemaDraft, SchemaSource, TimeoutSpec, ValidateSpec,
};

const METHODS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

/// Routes for every selected operation, and the document's directory
/// (`$ref`s into the document are read from there).
pub fn import(
    policy_file: &Path,
    spec: &OpenApiImport,
) -> Result<(Vec<RouteSpec>, PathBuf), String> {
    let dir = policy_file.parent().unwrap_or(Path::new("."));
    let path = crate::config::resolve_path(dir, &spec.file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc = crate::stage::schemas::parse_document(&path, &text)?;
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{} has no `openapi` version field", path.display()))?;
    let draft = if version.starts_with("3.0") {
        SchemaDraft::Draft4
    } else if version.starts_with("3.1") {
        SchemaDraft::Draft202012
    } else {
        return Err(format!(
            "OpenAPI {version} is not supported (3.0 and 3.1 are)"
        ));
    };
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the document's file name is not UTF-8")?
        .to_string();
    // Schemas are compiled as if they sat beside the document, so a
    // rewritten `<file>#/components/...` reference reads the document.
    let origin = path.with_file_name(format!("{file_name}.operation.json"));
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or("the document has no `paths`")?;

    let mut routes = Vec::new();
    let mut wanted: Option<Vec<&str>> = spec
        .operations
        .as_ref()
        .map(|ops| ops.iter().map(String::as_str).collect());
    for (template, item) in paths {
        let shared = parameters(&doc, item.get("parameters"))?;
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let id = op
                .get("operationId")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("{} {template} has no operationId", method.to_uppercase())
                })?;
            if let Some(list) = wanted.as_mut() {
                match list.iter().position(|w| *w == id) {
                    Some(i) => {
                        list.remove(i);
                    }
                    None => continue,
                }
            }
            let mut params = shared.clone();
            for p in parameters(&doc, op.get("parameters"))? {
                params.retain(|q| !(q.name == p.name && q.location == p.location));
                params.push(p);
            }
            let validate = operation_validation(&doc, op, &params, &file_name, spec)?;
            routes.push(RouteSpec {
                name: format!("{}{id}", spec.name_prefix),
                methods: vec![method.to_uppercase()],
                path: template.clone(),
                upstream: Spanned::new(
                    spec.upstream.clone(),
                    serde_saphyr::Location::UNKNOWN,
                    serde_saphyr::Location::UNKNOWN,
                ),
                timeouts: TimeoutSpec::default(),
                scopes: spec.scopes.clone(),
                bind: BindSpec::default(),
                response_bind: None,
                max_body_bytes: spec.max_body_bytes,
                // The document declares a body for this operation.
                allow_body: validate.body.is_some(),
                max_response_bytes: 4 * 1024 * 1024,
                validate: Some(validate),
                response: None,
                rate_limit: spec.rate_limit,
                schema_origin: Some((origin.clone(), draft)),
            });
        }
    }
    if let Some(missing) = wanted.and_then(|w| w.first().map(|s| s.to_string())) {
        return Err(format!("no operation {missing:?} in the document"));
    }
    let doc_dir = path.parent().unwrap_or(dir).to_path_buf();
    Ok((routes, doc_dir))
}

#[derive(Debug, Clone)]
struct Parameter {
    name: String,
    location: String,
    required: bool,
    schema: Value,
}

/// An operation's or path item's parameters, `$ref`s into
/// `#/components/parameters` followed.
fn parameters(doc: &Value, list: Option<&Value>) -> Result<Vec<Parameter>, String> {
    let mut out = Vec::new();
    for raw in list.and_then(Value::as_array).into_iter().flatten() {
        let p = match raw.get("$ref").and_then(Value::as_str) {
            Some(r) => doc
                .pointer(r.trim_start_matches('#'))
                .ok_or_else(|| format!("parameter $ref {r} points at nothing"))?,
            None => raw,
        };
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a parameter has no name")?;
        let location = p
            .get("in")
            .and_then(Value::as_str)
            .ok_or("a parameter has no `in`")?;
        out.push(Parameter {
            name: if location == "header" {
                name.to_ascii_lowercase()
            } else {
                name.to_string()
            },
            location: location.to_string(),
            required: location == "path"
                || p.get("required").and_then(Value::as_bool).unwrap_or(false),
            schema: p.get("schema").cloned().unwrap_or_else(|| json!({})),
        });
    }
    Ok(out)
}

fn operation_validation(
    doc: &Value,
    op: &Value,
    params: &[Parameter],
    file_name: &str,
    spec: &OpenApiImport,
) -> Result<ValidateSpec, String> {
    let object = |location: &str| -> Option<SchemaSource> {
        let mine: Vec<&Parameter> = params.iter().filter(|p| p.location == location).collect();
        if mine.is_empty() {
            return None;
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        for p in mine {
            properties.insert(p.name.clone(), rewrite_refs(&p.schema, file_name));
            if p.required {
                required.push(Value::String(p.name.clone()));
            }
        }
        Some(SchemaSource::Inline(json!({
            "type": "object",
            "properties": properties,
            "required": required,
        })))
    };
    let mut validate = ValidateSpec {
        query: object("query"),
        path: object("path"),
        headers: object("header"),
        unknown_query: spec.unknown_query,
        ..ValidateSpec::default()
    };
    if validate.query.is_none() && spec.unknown_query == crate::config::model::UnknownParams::Refuse
    {
        // No declared query parameters: every one is unknown.
        validate.query = Some(SchemaSource::Inline(json!({"type": "object"})));
    }
    let body = match op.get("requestBody") {
        Some(b) => match b.get("$ref").and_then(Value::as_str) {
            Some(r) => doc
                .pointer(r.trim_start_matches('#'))
                .ok_or_else(|| format!("requestBody $ref {r} points at nothing"))?,
            None => b,
        },
        None => return Ok(validate),
    };
    let Some(content) = body.get("content").and_then(Value::as_object) else {
        return Ok(validate);
    };
    let json_types: Vec<&String> = content
        .keys()
        .filter(|t| {
            let t = t.to_ascii_lowercase();
            t == "application/json" || t.ends_with("+json")
        })
        .collect();
    let Some(first) = json_types.first() else {
        // Only JSON bodies are validated; others pass as the document allows.
        return Ok(validate);
    };
    let schema = content[*first]
        .get("schema")
        .cloned()
        .unwrap_or_else(|| json!({}));
    validate.body = Some(SchemaSource::Inline(rewrite_refs(&schema, file_name)));
    validate.content_types = Some(json_types.iter().map(|t| t.to_string()).collect());
    validate.body_required = Some(
        body.get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    Ok(validate)
}

/// `#/components/...` inside an extracted schema means the document, not
/// the extract: point such references at the document's file.
fn rewrite_refs(schema: &Value, file_name: &str) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("$ref", Value::String(r)) if r.starts_with('#') => {
                            Value::String(format!("{file_name}{r}"))
                        }
                        _ => rewrite_refs(v, file_name),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| rewrite_refs(v, file_name)).collect())
        }
        other => other.clone(),
    }
}
