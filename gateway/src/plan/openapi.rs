//! Turns the operations of an OpenAPI 3.0/3.1 document into routes, so a
//! team reuses the contract it already has: each operation's method and
//! path become a route named after its operationId, its parameters become
//! query/path/header schemas, its JSON request body the body schema, and
//! its `security` requirements the route's scopes.
//!
//! OpenAPI 3.0 schemas are not JSON Schema: `nullable: true` admits null
//! beside the declared `type`, and a `readOnly` property belongs to
//! answers only (it "SHOULD NOT be sent as part of the request", and its
//! `required` applies to answers). Read as draft 4 unchanged, every
//! nullable field sent as null would be a false 400 and a client could send
//! a server-owned field such as `id` or `status`. So 3.0 schemas, inline and
//! the document's own `components` that `$ref`s reach, are rewritten for
//! requests: `type: T, nullable: true` becomes `type: [T, "null"]`, and a
//! read-only property is refused when present (in any letter case, as
//! case-insensitive binders read it) and dropped from `required`.
//! `writeOnly` properties belong in requests and need nothing.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use serde_saphyr::Spanned;

use crate::config::model::{
    BindSpec, OpenApiImport, RouteSpec, SchemaDraft, SchemaSource, TimeoutSpec, ValidateSpec,
};

const METHODS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

/// What an import yields.
pub struct Imported {
    pub routes: Vec<RouteSpec>,
    /// The document's directory: `$ref`s into the document are read there.
    pub dir: PathBuf,
    /// An OpenAPI 3.0 document, whose schemas `$ref`s reach must be read
    /// through [`for_requests`].
    pub openapi30: Option<PathBuf>,
}

/// Routes for every selected operation.
pub fn import(policy_file: &Path, spec: &OpenApiImport) -> Result<Imported, String> {
    let dir = policy_file.parent().unwrap_or(Path::new("."));
    let path = crate::config::resolve_path(dir, &spec.file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc = crate::stage::schemas::parse_document(&path, &text)?;
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{} has no `openapi` version field", path.display()))?;
    let openapi30 = version.starts_with("3.0");
    let draft = if openapi30 {
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
            let mut validate = operation_validation(&doc, op, &params, &file_name, spec)?;
            if openapi30 {
                for source in [
                    &mut validate.query,
                    &mut validate.path,
                    &mut validate.headers,
                    &mut validate.body,
                ]
                .into_iter()
                .flatten()
                {
                    if let SchemaSource::Inline(schema) = source {
                        for_requests(schema, &doc, &file_name);
                    }
                }
            }
            let mut scopes = spec.scopes.clone();
            for scope in security_scopes(&doc, op)
                .map_err(|e| format!("{} {template}: {e}", method.to_uppercase()))?
            {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
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
                scopes,
                bind: BindSpec::default(),
                response_bind: None,
                max_body_bytes: spec.max_body_bytes,
                // The document declares a body for this operation.
                allow_body: validate.body.is_some(),
                max_response_bytes: 4 * 1024 * 1024,
                validate: Some(validate),
                response: None,
                rate_limit: spec.rate_limit,
                resource: None,
                schema_origin: Some((origin.clone(), draft)),
            });
        }
    }
    if let Some(missing) = wanted.and_then(|w| w.first().map(|s| s.to_string())) {
        return Err(format!("no operation {missing:?} in the document"));
    }
    let doc_dir = path.parent().unwrap_or(dir).to_path_buf();
    Ok(Imported {
        routes,
        dir: doc_dir,
        openapi30: openapi30.then(|| path.canonicalize().unwrap_or(path.clone())),
    })
}

/// The scopes an operation's `security` requirements (or the document's,
/// when the operation has none) demand. A requirement object ANDs its
/// schemes' scopes; alternatives in the list are ORed. A route has one
/// scope set, so alternatives are accepted only when they demand the same
/// scopes: anything else would be weaker or stricter than the document.
/// `security: []` (no requirement) demands no scope; the gateway still
/// demands a partner key.
fn security_scopes(doc: &Value, op: &Value) -> Result<Vec<String>, String> {
    let Some(requirements) = op.get("security").or_else(|| doc.get("security")) else {
        return Ok(Vec::new());
    };
    let requirements = requirements
        .as_array()
        .ok_or("`security` is not a list of requirement objects")?;
    let mut chosen: Option<Vec<String>> = None;
    for requirement in requirements {
        let schemes = requirement
            .as_object()
            .ok_or("a `security` requirement is not an object")?;
        let mut scopes = Vec::new();
        for (scheme, list) in schemes {
            let list = list.as_array().ok_or_else(|| {
                format!("the scopes of security scheme {scheme:?} are not a list")
            })?;
            for scope in list {
                let scope = scope.as_str().ok_or_else(|| {
                    format!("a scope of security scheme {scheme:?} is not a string")
                })?;
                if !scopes.iter().any(|s| s == scope) {
                    scopes.push(scope.to_string());
                }
            }
        }
        scopes.sort();
        match &chosen {
            None => chosen = Some(scopes),
            Some(first) if *first == scopes => {}
            Some(first) => {
                return Err(format!(
                    "security alternatives demand different scopes ({first:?} or {scopes:?}); \
                     a route enforces one set: declare this operation as a policy route instead"
                ))
            }
        }
    }
    Ok(chosen.unwrap_or_default())
}

/// Keywords whose values are data, not schemas: never rewritten.
const DATA_KEYWORDS: [&str; 5] = ["enum", "const", "default", "example", "examples"];

/// Rewrites an OpenAPI 3.0 schema (or a whole 3.0 document) into the JSON
/// Schema a request must meet; `doc` (the document, file `file_name`)
/// resolves `$ref`s into it to tell whether a referenced property is
/// read-only.
pub fn for_requests(schema: &mut Value, doc: &Value, file_name: &str) {
    let Value::Object(map) = schema else {
        if let Value::Array(items) = schema {
            for item in items {
                for_requests(item, doc, file_name);
            }
        }
        return;
    };
    for (key, value) in map.iter_mut() {
        if !DATA_KEYWORDS.contains(&key.as_str()) {
            for_requests(value, doc, file_name);
        }
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = map.get("type") {
            let t = t.clone();
            map.insert("type".into(), json!([t, "null"]));
        }
    }
    let read_only: Vec<String> = match map.get("properties") {
        Some(Value::Object(properties)) => properties
            .iter()
            .filter(|(_, p)| is_read_only(p, doc, file_name))
            .map(|(name, _)| name.clone())
            .collect(),
        _ => Vec::new(),
    };
    if read_only.is_empty() {
        return;
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for name in &read_only {
            // Draft 4 has no `false` schema; `not: {}` matches nothing.
            properties.insert(name.clone(), json!({"not": {}}));
        }
    }
    // Case-insensitive binders (ASP.NET, Jackson's ACCEPT_CASE_INSENSITIVE_PROPERTIES)
    // read `ID` as `id`: no spelling of a read-only name may pass.
    let patterns = map.entry("patternProperties").or_insert_with(|| json!({}));
    if let Value::Object(patterns) = patterns {
        for name in &read_only {
            patterns.insert(any_case(name), json!({"not": {}}));
        }
    }
    if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|r| r.as_str().is_none_or(|r| !read_only.iter().any(|n| n == r)));
    }
}

/// A pattern matching `name` in any letter case, Unicode's extra case
/// partners of `k` and `s` (the Kelvin sign, the long s) included, written
/// with classes and escapes only so every regex dialect reads it alike.
fn any_case(name: &str) -> String {
    let mut pattern = String::from("^");
    for c in name.chars() {
        match c.to_ascii_lowercase() {
            'k' => pattern.push_str("[kK\\u212A]"),
            's' => pattern.push_str("[sS\\u017F]"),
            l if l.is_ascii_alphabetic() => {
                pattern.push('[');
                pattern.push(l);
                pattern.push(l.to_ascii_uppercase());
                pattern.push(']');
            }
            d if d.is_ascii_alphanumeric() || d == '_' => pattern.push(d),
            // ASCII punctuation may be a metacharacter: escape it by code.
            p if p.is_ascii() => pattern.push_str(&format!("\\u{:04X}", p as u32)),
            other => pattern.push(other),
        }
    }
    pattern.push('$');
    pattern
}

/// `readOnly: true` on the property, or on the schema a local `$ref` (into
/// this document, written `#/...` or `<file>#/...`) names.
fn is_read_only(property: &Value, doc: &Value, file_name: &str) -> bool {
    if property.get("readOnly") == Some(&Value::Bool(true)) {
        return true;
    }
    let Some(reference) = property.get("$ref").and_then(Value::as_str) else {
        return false;
    };
    let Some((file, pointer)) = reference.split_once('#') else {
        return false;
    };
    if !file.is_empty() && file != file_name {
        return false;
    }
    doc.pointer(pointer)
        .is_some_and(|target| target.get("readOnly") == Some(&Value::Bool(true)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(mut schema: Value, doc: &Value) -> Value {
        for_requests(&mut schema, doc, "api.yaml");
        schema
    }

    #[test]
    fn nullable_admits_null_beside_the_type_and_nowhere_else() {
        let doc = json!({});
        let schema = rewritten(
            json!({"type": "object", "properties": {
                "note": {"type": "string", "nullable": true, "maxLength": 3},
                "count": {"type": "integer"},
                "tag": {"nullable": true, "enum": ["a"]},
                "sample": {"type": "string", "example": {"type": "x", "nullable": true}}
            }}),
            &doc,
        );
        let p = &schema["properties"];
        assert_eq!(p["note"]["type"], json!(["string", "null"]));
        assert_eq!(p["count"]["type"], "integer");
        // Without a type, nullable changes nothing (the enum still decides).
        assert!(p["tag"].get("type").is_none());
        // Data is never rewritten as if it were a schema.
        assert_eq!(p["sample"]["example"]["type"], "x");
        let validator = jsonschema::draft4::new(&schema).unwrap();
        assert!(validator.is_valid(&json!({"note": null, "count": 1})));
        assert!(!validator.is_valid(&json!({"count": null})));
        assert!(!validator.is_valid(&json!({"note": "long"})));
    }

    #[test]
    fn read_only_properties_are_refused_in_requests_and_not_required() {
        let doc = json!({"components": {"schemas": {
            "Id": {"type": "string", "readOnly": true},
            "Order": {"type": "object", "required": ["id", "sku"], "properties": {
                "id": {"$ref": "#/components/schemas/Id"},
                "status": {"type": "string", "readOnly": true},
                "secret": {"type": "string", "writeOnly": true},
                "sku": {"type": "string"}
            }}
        }}});
        let order = rewritten(doc["components"]["schemas"]["Order"].clone(), &doc);
        assert_eq!(order["required"], json!(["sku"]));
        let validator = jsonschema::draft4::new(&order).unwrap();
        assert!(validator.is_valid(&json!({"sku": "A", "secret": "s"})));
        assert!(!validator.is_valid(&json!({"sku": "A", "id": "o-1"})));
        assert!(!validator.is_valid(&json!({"sku": "A", "status": "shipped"})));
        // Spellings a case-insensitive binder reads as the same field.
        for spelling in ["ID", "Id", "STATUS", "\u{17F}tatus"] {
            let mut body = json!({"sku": "A"});
            body[spelling] = json!("x");
            assert!(!validator.is_valid(&body), "{spelling}");
        }
        assert!(validator.is_valid(&json!({"sku": "A", "identity": "x"})));
        // A reference into another file is not this document's to judge.
        let other = rewritten(
            json!({"properties": {"id": {"$ref": "other.yaml#/components/schemas/Id"}}}),
            &doc,
        );
        assert_eq!(
            other["properties"]["id"]["$ref"],
            "other.yaml#/components/schemas/Id"
        );
    }

    #[test]
    fn security_requirements_become_one_scope_set() {
        let doc = json!({"security": [{"oauth": ["orders:read"]}]});
        assert_eq!(
            security_scopes(&doc, &json!({})),
            Ok(vec!["orders:read".into()])
        );
        // The operation's own requirements replace the document's; schemes AND.
        let op = json!({"security": [{"oauth": ["orders:write"], "key": ["orders:read"]}]});
        assert_eq!(
            security_scopes(&doc, &op),
            Ok(vec!["orders:read".to_string(), "orders:write".to_string()])
        );
        assert_eq!(security_scopes(&doc, &json!({"security": []})), Ok(vec![]));
        // Alternatives with the same scopes are one set; different ones are
        // refused rather than enforced weaker or stricter than written.
        let same = json!({"security": [{"a": ["x"]}, {"b": ["x"]}]});
        assert_eq!(security_scopes(&doc, &same), Ok(vec!["x".into()]));
        let differ = json!({"security": [{"a": ["x"]}, {}]});
        let err = security_scopes(&doc, &differ).unwrap_err();
        assert!(err.contains("different scopes"), "{err}");
    }
}
