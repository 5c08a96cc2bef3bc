//! Compiles a route's `validate:` section: schemas read and compiled once
//! per configuration load, every mistake reported at load time.

use std::path::PathBuf;

use serde_json::Value;

use crate::config::model::{SchemaDraft, SchemaSource, UnknownParams, ValidateSpec};
use crate::stage::body::MAX_DEPTH;
use crate::stage::schemas::{compile, property_types, Loader};
use crate::stage::validate::{BodySchema, ParamSchema, RouteValidation};

const DEFAULT_MAX_DEPTH: usize = 32;

/// Where schema files live and how references reach them.
pub struct SchemaContext {
    pub dir: PathBuf,
    pub loader: Loader,
}

/// One route's view: inline schemas of routes imported from OpenAPI
/// resolve against the document and are in its dialect.
struct RouteSchemas<'a> {
    ctx: &'a SchemaContext,
    origin: Option<&'a (PathBuf, SchemaDraft)>,
}

impl RouteSchemas<'_> {
    /// The schema document and the path relative references resolve against.
    fn source(&self, source: &SchemaSource) -> Result<(Value, PathBuf), String> {
        match source {
            SchemaSource::File(rel) => {
                let path = self.ctx.dir.join(rel);
                Ok((self.ctx.loader.read(&path)?, path))
            }
            SchemaSource::Inline(v) => {
                let base = match self.origin {
                    Some((file, _)) => file.clone(),
                    None => self.ctx.dir.join("inline.json"),
                };
                Ok((v.clone(), base))
            }
        }
    }

    fn compile(
        &self,
        doc: &Value,
        base: &std::path::Path,
    ) -> Result<jsonschema::Validator, String> {
        let draft = match self.origin {
            Some((_, SchemaDraft::Draft4)) => Some(jsonschema::Draft::Draft4),
            _ => None,
        };
        compile(doc, base, draft, &self.ctx.loader)
    }

    fn params(&self, source: &SchemaSource) -> Result<ParamSchema, String> {
        let (doc, base) = self.source(source)?;
        Ok(ParamSchema {
            validator: self.compile(&doc, &base)?,
            properties: property_types(&doc, &base, &self.ctx.loader)?,
        })
    }
}

pub fn compile_validation(
    spec: &ValidateSpec,
    template_params: &[&str],
    origin: Option<&(PathBuf, SchemaDraft)>,
    ctx: &SchemaContext,
) -> Result<RouteValidation, (&'static str, String)> {
    let ctx = RouteSchemas { ctx, origin };
    let body = match &spec.body {
        None => None,
        Some(source) => {
            let (doc, base) = ctx.source(source).map_err(|m| ("validate.body", m))?;
            let validator = ctx.compile(&doc, &base).map_err(|m| ("validate.body", m))?;
            let max_depth = spec.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
            if max_depth == 0 || max_depth > MAX_DEPTH {
                return Err((
                    "validate.max_depth",
                    format!("must be between 1 and {MAX_DEPTH}"),
                ));
            }
            let content_types: Vec<String> = spec
                .content_types
                .clone()
                .unwrap_or_else(|| vec!["application/json".into()])
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect();
            if content_types.is_empty() || content_types.iter().any(|t| !t.contains('/')) {
                return Err((
                    "validate.content_types",
                    "list media types such as application/json".into(),
                ));
            }
            Some(BodySchema {
                validator,
                content_types,
                required: spec.body_required.unwrap_or(true),
                max_depth,
            })
        }
    };
    let query = spec
        .query
        .as_ref()
        .map(|s| ctx.params(s))
        .transpose()
        .map_err(|m| ("validate.query", m))?;
    let path = spec
        .path
        .as_ref()
        .map(|s| ctx.params(s))
        .transpose()
        .map_err(|m| ("validate.path", m))?;
    if let Some(p) = &path {
        if let Some(name) = p
            .properties
            .keys()
            .find(|n| !template_params.contains(&n.as_str()))
        {
            return Err((
                "validate.path",
                format!("the schema names {name:?}, which the path template does not have"),
            ));
        }
    }
    let headers = spec
        .headers
        .as_ref()
        .map(|s| ctx.params(s))
        .transpose()
        .map_err(|m| ("validate.headers", m))?;
    if let Some(h) = &headers {
        if let Some(name) = h.properties.keys().find(|n| n.to_ascii_lowercase() != **n) {
            return Err((
                "validate.headers",
                format!(
                    "header properties are matched in lower case: write {name:?} in lower case"
                ),
            ));
        }
    }
    if spec.unknown_query == UnknownParams::Refuse && query.is_none() {
        return Err((
            "validate.unknown_query",
            "refusing unknown query parameters needs a query schema naming the known ones".into(),
        ));
    }
    Ok(RouteValidation {
        body,
        query,
        path,
        headers,
        refuse_unknown_query: spec.unknown_query == UnknownParams::Refuse,
    })
}
