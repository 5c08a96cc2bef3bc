//! Request validation: the query, path parameters and chosen headers
//! against their schemas (values typed as the schema declares), and the
//! body's media type, encoding, shape and schema. Violations are reported
//! by location, path and keyword, never by echoing the offending value.

use std::collections::{HashMap, HashSet};

use http::HeaderMap;
use jsonschema::Validator;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::stage::body::parse_strict;
use crate::stage::problem;
use crate::stage::problem::Reject;
use crate::stage::schemas::{coerce, PropertyType};

/// At most this many violations are reported per request.
pub const MAX_VIOLATIONS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `body`, `query`, `path` or `header`.
    pub location: &'static str,
    /// JSON pointer into that part of the request.
    pub pointer: String,
    pub keyword: String,
    pub message: String,
}

/// A refusal, with what was wrong when it was a schema's verdict.
#[derive(Debug)]
pub struct Invalid {
    pub reject: Reject,
    pub violations: Vec<Violation>,
}

impl From<Reject> for Invalid {
    fn from(reject: Reject) -> Self {
        Invalid {
            reject,
            violations: Vec::new(),
        }
    }
}

/// A schema over string-valued parameters.
pub struct ParamSchema {
    pub validator: Validator,
    pub properties: HashMap<String, PropertyType>,
}

impl std::fmt::Debug for ParamSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamSchema")
            .field("properties", &self.properties.keys())
            .finish_non_exhaustive()
    }
}

/// A route's compiled validation.
#[derive(Debug, Default)]
pub struct RouteValidation {
    pub body: Option<BodySchema>,
    pub query: Option<ParamSchema>,
    pub path: Option<ParamSchema>,
    pub headers: Option<ParamSchema>,
    pub refuse_unknown_query: bool,
}

pub struct BodySchema {
    pub validator: Validator,
    /// Lower-case media types, without parameters.
    pub content_types: Vec<String>,
    pub required: bool,
    pub max_depth: usize,
}

impl std::fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySchema")
            .field("content_types", &self.content_types)
            .finish_non_exhaustive()
    }
}

impl RouteValidation {
    /// Everything but the body: query, path parameters, headers.
    pub fn check_params(
        &self,
        query: Option<&str>,
        params: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<(), Invalid> {
        let mut violations = Vec::new();
        if let Some(schema) = &self.query {
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(query.unwrap_or("").as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            if self.refuse_unknown_query {
                let mut reported = HashSet::new();
                for (name, _) in &pairs {
                    if !schema.properties.contains_key(name) && reported.insert(name.clone()) {
                        violations.push(Violation {
                            location: "query",
                            pointer: pointer_to(name),
                            keyword: "unknown".into(),
                            message: "this query parameter is not accepted".into(),
                        });
                    }
                }
            }
            let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            check_strings(schema, "query", pairs, &mut violations);
        }
        if let Some(schema) = &self.path {
            let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            check_strings(schema, "path", pairs, &mut violations);
        }
        if let Some(schema) = &self.headers {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .filter(|(name, _)| schema.properties.contains_key(name.as_str()))
                .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or("\u{FFFD}")))
                .collect();
            check_strings(schema, "header", pairs.into_iter(), &mut violations);
        }
        finish(violations)
    }

    /// The media type, before the body is read: 415 early saves reading it.
    pub fn check_content_type(&self, content_type: Option<&str>) -> Result<(), Invalid> {
        let Some(body) = &self.body else {
            return Ok(());
        };
        let Some(raw) = content_type else {
            // No body at all is judged once the body is read.
            return Ok(());
        };
        let mut parts = raw.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if !body.content_types.contains(&media) {
            return Err(problem::UNSUPPORTED_MEDIA_TYPE.into());
        }
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("charset")
                && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            {
                return Err(problem::UNSUPPORTED_MEDIA_TYPE.into());
            }
        }
        Ok(())
    }

    /// The body, read whole. Returns the parsed document for later stages.
    pub fn check_body(
        &self,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Option<Value>, Invalid> {
        let Some(body) = &self.body else {
            return Ok(None);
        };
        if bytes.is_empty() {
            return if body.required {
                Err(problem::BODY_REQUIRED.into())
            } else {
                Ok(None)
            };
        }
        if content_type.is_none() {
            return Err(problem::UNSUPPORTED_MEDIA_TYPE.into());
        }
        self.check_content_type(content_type)?;
        if std::str::from_utf8(bytes).is_err() {
            return Err(problem::BODY_NOT_UTF8.into());
        }
        let doc = parse_strict(bytes, body.max_depth).map_err(|e| Invalid::from(e.reject()))?;
        // Most bodies are valid: the boolean check skips building errors.
        if body.validator.is_valid(&doc) {
            return Ok(Some(doc));
        }
        let violations: Vec<Violation> = body
            .validator
            .iter_errors(&doc)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                location: "body",
                pointer: e.instance_path().to_string(),
                keyword: e.kind().keyword().to_string(),
                message: e.masked().to_string(),
            })
            .collect();
        finish(violations)?;
        Ok(Some(doc))
    }
}

fn finish(mut violations: Vec<Violation>) -> Result<(), Invalid> {
    if violations.is_empty() {
        return Ok(());
    }
    violations.truncate(MAX_VIOLATIONS);
    Err(Invalid {
        reject: problem::SCHEMA_VIOLATION,
        violations,
    })
}

fn pointer_to(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// Builds the object a parameter schema validates: each value typed as
/// the schema declares; repeated names become arrays only where the
/// schema wants an array (elsewhere a repeat is a violation, since
/// upstreams disagree on which of the values counts).
fn check_strings<'a>(
    schema: &ParamSchema,
    location: &'static str,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    violations: &mut Vec<Violation>,
) {
    let mut object = Map::new();
    let mut repeated = HashSet::new();
    for (name, value) in pairs {
        let declared = schema.properties.get(name);
        match declared {
            Some(t) if t.is_array() => {
                let item = coerce(value, &t.items);
                if let Value::Array(items) = object
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    items.push(item);
                }
            }
            _ => {
                let typed = coerce(value, declared.map_or(&[][..], |t| &t.types));
                if object.insert(name.to_string(), typed).is_some() && repeated.insert(name) {
                    violations.push(Violation {
                        location,
                        pointer: pointer_to(name),
                        keyword: "repeated".into(),
                        message: "given more than once".into(),
                    });
                }
            }
        }
    }
    let instance = Value::Object(object);
    if schema.validator.is_valid(&instance) {
        return;
    }
    for e in schema.validator.iter_errors(&instance).take(MAX_VIOLATIONS) {
        violations.push(Violation {
            location,
            pointer: e.instance_path().to_string(),
            keyword: e.kind().keyword().to_string(),
            message: e.masked().to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::schemas::{compile, property_types, Loader};
    use serde_json::json;

    fn params(schema: Value) -> ParamSchema {
        let dir = std::env::temp_dir();
        let loader = Loader::new(vec![dir.clone()]);
        ParamSchema {
            properties: property_types(&schema, &dir, &loader).unwrap(),
            validator: compile(&schema, &dir, None, &loader).unwrap(),
        }
    }

    fn query_route(refuse: bool) -> RouteValidation {
        RouteValidation {
            query: Some(params(json!({
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "maximum": 100},
                    "tag": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
                },
                "required": ["limit"]
            }))),
            refuse_unknown_query: refuse,
            ..RouteValidation::default()
        }
    }

    fn codes(r: Result<(), Invalid>) -> Vec<(String, String)> {
        r.err()
            .map(|i| {
                i.violations
                    .into_iter()
                    .map(|v| (v.pointer, v.keyword))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn query_values_are_typed_as_declared() {
        let v = query_route(false);
        let h = HeaderMap::new();
        assert!(v.check_params(Some("limit=5"), &[], &h).is_ok());
        assert!(v
            .check_params(Some("limit=5&tag=a&tag=b&x=1"), &[], &h)
            .is_ok());
        assert_eq!(
            codes(v.check_params(Some("limit=five"), &[], &h)),
            vec![("/limit".into(), "type".into())]
        );
        assert_eq!(
            codes(v.check_params(Some("limit=500"), &[], &h)),
            vec![("/limit".into(), "maximum".into())]
        );
        assert_eq!(
            codes(v.check_params(Some("limit=5&limit=500"), &[], &h))[0],
            ("/limit".into(), "repeated".into())
        );
        assert_eq!(
            codes(v.check_params(None, &[], &h)),
            vec![("".into(), "required".into())]
        );
        assert_eq!(
            codes(v.check_params(Some("limit=1&tag=a&tag=b&tag=c"), &[], &h)),
            vec![("/tag".into(), "maxItems".into())]
        );
        let strict = query_route(true);
        assert_eq!(
            codes(strict.check_params(Some("limit=5&debug=1"), &[], &h)),
            vec![("/debug".into(), "unknown".into())]
        );
    }

    #[test]
    fn messages_never_echo_the_value() {
        let v = query_route(false);
        let err = v
            .check_params(Some("limit=123456789secret"), &[], &HeaderMap::new())
            .unwrap_err();
        let text = serde_json::to_string(&err.violations).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }
}
