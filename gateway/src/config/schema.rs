//! JSON Schemas of the gateway file and of policy files, generated from
//! the types they are read into, so editors can complete and flag what
//! `portcullis check` would. The generated files are shipped under
//! `schemas/portcullis/`; a test keeps them equal to these.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use super::model::{GatewayFile, PolicyFile};

/// How durations are written: `humantime` syntax such as `250ms`, `30s`,
/// `5m`, `1h 30m`.
pub struct HumanDuration;

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit, possibly repeated, e.g. 250ms, 30s, 5m, 1h 30m (units: ns, us, ms, s, m, h, d, w and their long forms).",
            "pattern": "^\\s*([0-9]+\\s*[a-zA-Zµ]+\\s*)+$"
        })
    }
}

fn pretty(mut schema: Schema, id: &str, title: &str) -> String {
    schema.insert("$id".into(), id.into());
    schema.insert("title".into(), title.into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// The schema of the file `portcullis run --config` reads.
pub fn gateway() -> String {
    pretty(
        schemars::schema_for!(GatewayFile),
        "https://portcullis.dev/schemas/gateway.json",
        "Portcullis gateway file",
    )
}

/// The schema of a policy file (partners, upstreams, routes, OpenAPI imports).
pub fn policy() -> String {
    pretty(
        schemars::schema_for!(PolicyFile),
        "https://portcullis.dev/schemas/policy.json",
        "Portcullis policy file",
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The shipped schemas are what the types generate today.
    #[test]
    fn the_shipped_schemas_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/portcullis");
        for (file, generated, of) in [
            ("gateway.json", super::gateway(), "gateway"),
            ("policy.json", super::policy(), "policy"),
        ] {
            let shipped = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                shipped == generated,
                "schemas/portcullis/{file} is stale: run `cargo run -p portcullis -- config-schema {of} > schemas/portcullis/{file}`"
            );
        }
    }
}
