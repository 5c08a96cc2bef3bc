//! Compiling JSON Schemas once per configuration load. References resolve
//! offline: `$ref`s may name files under the schemas directory (and the
//! directory of an imported OpenAPI document), never a network address,
//! so a load cannot hang on, or be steered by, a remote server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::{Draft, JsonType, PatternOptions, Retrieve, Uri, Validator};
use serde_json::Value;

/// Turns a document that is not plain JSON Schema (an OpenAPI 3.0
/// document) into the schema requests must meet: (document, the document
/// as read, its file name).
pub type Rewrite = fn(&mut Value, &Value, &str);

/// The directories `$ref`s may read from.
#[derive(Clone, Debug)]
pub struct Loader {
    roots: Arc<Vec<PathBuf>>,
    /// Every file read, so the reload watch can cover them.
    read: Arc<std::sync::Mutex<Vec<PathBuf>>>,
    /// Documents (canonical paths) read through a rewrite.
    rewrites: Arc<Vec<(PathBuf, Rewrite)>>,
}

impl Loader {
    pub fn new(roots: Vec<PathBuf>) -> Loader {
        let roots = roots
            .into_iter()
            .map(|r| r.canonicalize().unwrap_or(r))
            .collect();
        Loader {
            roots: Arc::new(roots),
            read: Arc::default(),
            rewrites: Arc::default(),
        }
    }

    pub fn with_rewrites(mut self, rewrites: Vec<(PathBuf, Rewrite)>) -> Loader {
        self.rewrites = Arc::new(rewrites);
        self
    }

    /// The schema files read so far.
    pub fn files_read(&self) -> Vec<PathBuf> {
        self.read.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Reads a schema document (JSON, or YAML by extension) from under a root.
    pub fn read(&self, path: &Path) -> Result<Value, String> {
        let full = path
            .canonicalize()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !self.roots.iter().any(|r| full.starts_with(r)) {
            return Err(format!(
                "{} is outside the schemas directory",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        if let Ok(mut read) = self.read.lock() {
            read.push(full.clone());
        }
        let mut document = parse_document(&full, &text)?;
        if let Some((_, rewrite)) = self.rewrites.iter().find(|(p, _)| *p == full) {
            let original = document.clone();
            let name = full
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            rewrite(&mut document, &original, name);
        }
        Ok(document)
    }
}

/// JSON, or YAML for `.yaml`/`.yml` files.
pub fn parse_document(path: &Path, text: &str) -> Result<Value, String> {
    let yaml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if yaml {
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| format!("{}: not YAML: {}", path.display(), e.without_snippet()))
    } else {
        serde_json::from_str::<Value>(text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))
    }
}

impl Retrieve for Loader {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.scheme().as_str() != "file" {
            return Err(format!(
                "remote reference {uri} is not fetched; put the schema in the schemas directory"
            )
            .into());
        }
        let raw = uri.path().as_str();
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        Ok(self.read(Path::new(decoded.as_ref()))?)
    }
}

/// A `file://` URI for an absolute path.
pub fn file_uri(path: &Path) -> String {
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    let text = path.to_string_lossy();
    format!(
        "file://{}",
        percent_encoding::utf8_percent_encode(&text, PATH)
    )
}

/// Compiles `schema`, whose relative references resolve against `base`
/// (the file it came from, or the schemas directory for inline schemas).
/// `draft` forces a dialect; otherwise `$schema` decides, and without
/// one, draft 2020-12 applies.
pub fn compile(
    schema: &Value,
    base: &Path,
    draft: Option<Draft>,
    loader: &Loader,
) -> Result<Validator, String> {
    let mut options = jsonschema::options()
        .with_base_uri(file_uri(base))
        .with_retriever(loader.clone())
        .with_pattern_options(PatternOptions::regex())
        .should_validate_formats(true);
    if let Some(draft) = draft {
        options = options.with_draft(draft);
    } else if schema.get("$schema").is_none() {
        options = options.with_draft(Draft::Draft202012);
    }
    options.build(schema).map_err(|e| e.to_string())
}

/// The declared types of an object schema's properties, to turn string
/// values (query, path, headers) into the JSON the schema expects. A
/// top-level `$ref` to another file is followed.
pub fn property_types(
    schema: &Value,
    base: &Path,
    loader: &Loader,
) -> Result<HashMap<String, PropertyType>, String> {
    let mut doc = schema.clone();
    let mut base = base.to_path_buf();
    for _ in 0..8 {
        let Some(reference) = doc.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let target = if file.is_empty() {
            doc.clone()
        } else {
            let dir = if base.is_dir() {
                base.clone()
            } else {
                base.parent().unwrap_or(Path::new("/")).to_path_buf()
            };
            base = dir.join(file);
            loader.read(&base)?
        };
        doc = if pointer.is_empty() {
            target
        } else {
            target
                .pointer(pointer)
                .cloned()
                .ok_or_else(|| format!("$ref {reference} points at nothing"))?
        };
    }
    let mut out = HashMap::new();
    if let Some(props) = doc.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            out.insert(name.clone(), PropertyType::of(prop));
        }
    }
    Ok(out)
}

/// What a string parameter should become.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropertyType {
    pub types: Vec<JsonType>,
    /// For arrays: the item types.
    pub items: Vec<JsonType>,
}

impl PropertyType {
    fn of(schema: &Value) -> PropertyType {
        PropertyType {
            types: types_of(schema),
            items: schema.get("items").map(types_of).unwrap_or_default(),
        }
    }

    pub fn is_array(&self) -> bool {
        self.types.contains(&JsonType::Array)
    }
}

fn types_of(schema: &Value) -> Vec<JsonType> {
    let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<JsonType>().ok());
    match schema.get("type") {
        Some(Value::String(_)) => schema.get("type").and_then(parse).into_iter().collect(),
        Some(Value::Array(list)) => list.iter().filter_map(parse).collect(),
        _ => Vec::new(),
    }
}

/// Turns one string into the first declared type it parses as; a string
/// otherwise, so the schema reports the type mismatch.
pub fn coerce(value: &str, types: &[JsonType]) -> Value {
    for t in types {
        match t {
            JsonType::Integer => {
                if let Ok(i) = value.parse::<i64>() {
                    return Value::from(i);
                }
                if let Ok(u) = value.parse::<u64>() {
                    return Value::from(u);
                }
            }
            // A number the f64 cannot hold exactly stays a string: the
            // schema then reports it, rather than judge a rounded value.
            JsonType::Number if crate::stage::json_bytes::number_text_exact(value) => {
                if let Some(n) = value
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(serde_json::Number::from_f64)
                {
                    return Value::Number(n);
                }
            }
            JsonType::Boolean => match value {
                "true" => return Value::Bool(true),
                "false" => return Value::Bool(false),
                _ => {}
            },
            JsonType::Null if value == "null" => return Value::Null,
            _ => {}
        }
    }
    Value::String(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_become_the_declared_type() {
        assert_eq!(coerce("5", &[JsonType::Integer]), json!(5));
        assert_eq!(coerce("five", &[JsonType::Integer]), json!("five"));
        assert_eq!(coerce("1.5", &[JsonType::Integer]), json!("1.5"));
        assert_eq!(coerce("1.5", &[JsonType::Number]), json!(1.5));
        for inexact in [
            "1000.00000000000000001",
            "1e-400",
            "1e400",
            "1.0000000000000000001",
        ] {
            assert_eq!(coerce(inexact, &[JsonType::Number]), json!(inexact));
            assert_eq!(coerce(inexact, &[JsonType::Integer]), json!(inexact));
        }
        assert_eq!(coerce("NaN", &[JsonType::Number]), json!("NaN"));
        assert_eq!(coerce("true", &[JsonType::Boolean]), json!(true));
        assert_eq!(
            coerce("null", &[JsonType::Null, JsonType::Integer]),
            json!(null)
        );
        assert_eq!(coerce("7", &[JsonType::String]), json!("7"));
        assert_eq!(coerce("7", &[]), json!("7"));
    }

    #[test]
    fn remote_references_are_refused_and_local_ones_resolve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("common.json"),
            r#"{"$defs":{"qty":{"type":"integer","minimum":1}}}"#,
        )
        .unwrap();
        let loader = Loader::new(vec![dir.path().to_path_buf()]);
        let base = dir.path().join("order.json");
        let local = json!({"properties":{"q":{"$ref":"common.json#/$defs/qty"}}});
        let v = compile(&local, &base, None, &loader).unwrap();
        assert!(v.is_valid(&json!({"q": 2})));
        assert!(!v.is_valid(&json!({"q": 0})));
        let remote = json!({"$ref":"https://example.com/schema.json"});
        let err = compile(&remote, &base, None, &loader).unwrap_err();
        assert!(err.contains("not fetched"), "{err}");
        let outside = json!({"$ref":"../../etc/passwd"});
        assert!(compile(&outside, &base, None, &loader).is_err());
    }
}
