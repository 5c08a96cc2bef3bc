//! `portcullis owners …`: operators fill and correct the ownership index.
//! `import` starts a deployment with a full index from the legacy
//! database's export (JSON or CSV); `transfer` moves an object between
//! partners; `show` and `export` read it. As for keys: with no gateway
//! running the CLI edits the embedded index itself; a running gateway owns
//! it, so changes go through its admin API (reads come straight from the
//! synced log either way).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::keys::admin_call;
use crate::config::model::StoreKind;
use crate::config::{self, model::GatewayFile};
use crate::keys::redis_store::RedisStore;
use crate::ownership::embedded::EmbeddedOwnership;
use crate::ownership::redis::RedisOwnership;
use crate::ownership::service::OwnershipIndex;
use crate::ownership::store::{check, Ownership};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of records, `{"owners": [...]}`, or one record per line.
    Json,
    /// A header row naming the columns, then one record per row.
    Csv,
}

/// Which fields of an imported record hold what: legacy exports name their
/// columns their own way (`order_id`, `partner_code`).
pub struct Fields {
    pub id: String,
    pub partner: String,
    pub kind: String,
    /// The kind of records that have no kind field.
    pub default_kind: Option<String>,
}

pub enum OwnersCommand {
    Show {
        kind: String,
        id: String,
    },
    Transfer {
        kind: String,
        id: String,
        partner: String,
    },
    Forget {
        kind: String,
        id: String,
    },
    Import {
        /// `-` reads standard input.
        file: PathBuf,
        format: Option<Format>,
        fields: Fields,
    },
    Export {
        kind: Option<String>,
        partner: Option<String>,
        format: Format,
    },
}

/// Records per admin call, so an import of millions stays within the admin
/// API's body limit.
const IMPORT_BATCH: usize = 50_000;

pub fn run(config_path: &Path, cmd: OwnersCommand) -> Result<(), String> {
    let settings = config::load_settings(config_path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(execute(&settings, cmd))
}

/// Where the index of record is, for this configuration.
enum Engine {
    /// The key store's Redis: changed directly, as every node watches it.
    Redis(OwnershipIndex),
    Embedded(PathBuf),
}

impl Engine {
    fn of(settings: &GatewayFile) -> Engine {
        match (settings.keys.store, &settings.keys.redis) {
            (StoreKind::Redis, Some(redis)) => {
                let store = RedisOwnership::new(Arc::new(RedisStore::new(redis)), None, 1);
                Engine::Redis(OwnershipIndex::new(Arc::new(store), None))
            }
            _ => Engine::Embedded(settings.ownership.file(&settings.keys.path)),
        }
    }

    async fn records(
        &self,
        kind: Option<&str>,
        partner: Option<&str>,
    ) -> Result<Vec<Ownership>, String> {
        match self {
            Engine::Redis(index) => index.export(kind, partner).await.map_err(|e| e.to_string()),
            Engine::Embedded(path) => Ok(EmbeddedOwnership::read_records(path)?
                .into_iter()
                .filter(|r| kind.is_none_or(|k| k == r.kind))
                .filter(|r| partner.is_none_or(|p| p == r.partner))
                .collect()),
        }
    }

    /// The index to change directly, or `None` when a running gateway owns
    /// it (changes go through its admin API).
    fn writable(self) -> Result<Option<OwnershipIndex>, String> {
        match self {
            Engine::Redis(index) => Ok(Some(index)),
            Engine::Embedded(path) => local_index(&path),
        }
    }

    fn describe(&self) -> String {
        match self {
            Engine::Redis(_) => "the Redis index".to_string(),
            Engine::Embedded(path) => path.display().to_string(),
        }
    }
}

async fn execute(settings: &GatewayFile, cmd: OwnersCommand) -> Result<(), String> {
    let engine = Engine::of(settings);
    match cmd {
        OwnersCommand::Show { kind, id } => {
            let records = engine.records(Some(&kind), None).await?;
            match records.iter().find(|r| r.kind == kind && r.id == id) {
                Some(r) => println!("{} {} {}", r.kind, r.id, r.partner),
                None => return Err(format!("{kind} {id}: not in the ownership index")),
            }
        }
        OwnersCommand::Export {
            kind,
            partner,
            format,
        } => {
            let records = engine.records(kind.as_deref(), partner.as_deref()).await?;
            print!("{}", render(&records, format)?);
        }
        OwnersCommand::Import {
            file,
            format,
            fields,
        } => {
            let text = read_input(&file)?;
            let format = format.unwrap_or_else(|| guess_format(&file, &text));
            let records = parse(&text, format, &fields)?;
            let n = records.len();
            let into = engine.describe();
            match engine.writable()? {
                Some(index) => {
                    index.import(records).await.map_err(|e| e.to_string())?;
                }
                None => {
                    for batch in records.chunks(IMPORT_BATCH) {
                        let body = serde_json::json!({ "owners": batch });
                        admin_call(settings, "POST", "/v1/owners", Some(body)).await?;
                    }
                }
            }
            println!("imported {n} records into {into}");
        }
        OwnersCommand::Transfer { kind, id, partner } => {
            let record = Ownership { kind, id, partner };
            check(&record).map_err(|e| e.to_string())?;
            let previous = match engine.writable()? {
                Some(index) => index
                    .transfer(&record.kind, &record.id, &record.partner)
                    .await
                    .map_err(|e| e.to_string())?,
                None => {
                    let v = admin_call(
                        settings,
                        "PUT",
                        &format!("/v1/owners/{}/{}", record.kind, record.id),
                        Some(serde_json::json!({ "partner": record.partner })),
                    )
                    .await?;
                    v["previous"].as_str().map(str::to_string)
                }
            };
            println!(
                "{} {} now belongs to {} (was {})",
                record.kind,
                record.id,
                record.partner,
                previous.as_deref().unwrap_or("nobody")
            );
        }
        OwnersCommand::Forget { kind, id } => {
            let previous = match engine.writable()? {
                Some(index) => index.remove(&kind, &id).await.map_err(|e| e.to_string())?,
                None => {
                    let v =
                        admin_call(settings, "DELETE", &format!("/v1/owners/{kind}/{id}"), None)
                            .await?;
                    v["previous"].as_str().unwrap_or("?").to_string()
                }
            };
            println!("{kind} {id} forgotten (belonged to {previous}); requests naming it are refused until it is learnt again");
        }
    }
    Ok(())
}

/// The embedded index opened for writing, or `None` when a running gateway
/// owns it.
fn local_index(path: &Path) -> Result<Option<OwnershipIndex>, String> {
    Ok(
        EmbeddedOwnership::open_owned(path)?
            .map(|store| OwnershipIndex::new(Arc::new(store), None)),
    )
}

fn read_input(file: &Path) -> Result<String, String> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    }
    Ok(text)
}

fn guess_format(file: &Path, text: &str) -> Format {
    match file.extension().and_then(|e| e.to_str()) {
        Some("csv") => Format::Csv,
        Some("json" | "jsonl" | "ndjson") => Format::Json,
        _ if text.trim_start().starts_with(['[', '{']) => Format::Json,
        _ => Format::Csv,
    }
}

/// The records of an export, all checked: one bad record refuses the whole
/// import, naming where it is, so an index is never half filled.
pub fn parse(text: &str, format: Format, fields: &Fields) -> Result<Vec<Ownership>, String> {
    let rows: Vec<(usize, serde_json::Map<String, serde_json::Value>)> = match format {
        Format::Json => json_rows(text)?,
        Format::Csv => csv_rows(text)?,
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = std::collections::HashMap::new();
    for (at, row) in rows {
        let field = |name: &str| -> Option<String> {
            match row.get(name)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) if n.is_u64() => Some(n.to_string()),
                _ => None,
            }
        };
        let kind = field(&fields.kind)
            .or_else(|| fields.default_kind.clone())
            .ok_or_else(|| {
                format!(
                    "record {at}: no {:?} field; give the kind with --kind",
                    fields.kind
                )
            })?;
        let record = Ownership {
            kind,
            id: field(&fields.id)
                .ok_or_else(|| format!("record {at}: no {:?} field", fields.id))?,
            partner: field(&fields.partner)
                .ok_or_else(|| format!("record {at}: no {:?} field", fields.partner))?,
        };
        check(&record).map_err(|e| format!("record {at}: {e}"))?;
        // Two owners for one object in the source is a data problem the
        // operator must settle, not one the last line wins.
        let slot = (record.kind.clone(), record.id.clone());
        if let Some((first, owner)) = seen.insert(slot, (at, record.partner.clone())) {
            if owner != record.partner {
                return Err(format!(
                    "record {at}: {} {} is also record {first}, owned by {owner}",
                    record.kind, record.id
                ));
            }
        }
        out.push(record);
    }
    Ok(out)
}

type Row = serde_json::Map<String, serde_json::Value>;

fn json_rows(text: &str) -> Result<Vec<(usize, Row)>, String> {
    let trimmed = text.trim_start();
    let as_objects = |values: Vec<serde_json::Value>| -> Result<Vec<(usize, Row)>, String> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                serde_json::Value::Object(m) => Ok((i + 1, m)),
                _ => Err(format!("record {}: not a JSON object", i + 1)),
            })
            .collect()
    };
    if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array of records: {e}"))?;
        return as_objects(values);
    }
    if let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_str(text) {
        if let Some(serde_json::Value::Array(values)) = doc.remove("owners") {
            return as_objects(values);
        }
    }
    // One JSON object per line.
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| match serde_json::from_str(l) {
            Ok(serde_json::Value::Object(m)) => Ok((i + 1, m)),
            _ => Err(format!("line {}: not a JSON object", i + 1)),
        })
        .collect()
}

fn csv_rows(text: &str) -> Result<Vec<(usize, Row)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("CSV header: {e}"))?
        .clone();
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        // The header is line 1.
        let at = i + 2;
        let row = row.map_err(|e| format!("CSV row {at}: {e}"))?;
        let map = headers
            .iter()
            .zip(row.iter())
            .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        out.push((at, map));
    }
    Ok(out)
}

fn render(records: &[Ownership], format: Format) -> Result<String, String> {
    match format {
        Format::Json => {
            let mut out = String::new();
            for r in records {
                out.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?);
                out.push('\n');
            }
            Ok(out)
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer
                .write_record(["kind", "id", "partner"])
                .map_err(|e| e.to_string())?;
            for r in records {
                writer
                    .write_record([&r.kind, &r.id, &r.partner])
                    .map_err(|e| e.to_string())?;
            }
            let bytes = writer.into_inner().map_err(|e| e.to_string())?;
            String::from_utf8(bytes).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kind: Option<&str>) -> Fields {
        Fields {
            id: "id".into(),
            partner: "partner".into(),
            kind: "kind".into(),
            default_kind: kind.map(str::to_string),
        }
    }

    #[test]
    fn json_csv_and_lines_read_the_same_records() {
        let want = vec![
            Ownership {
                kind: "order".into(),
                id: "ord_1".into(),
                partner: "acme".into(),
            },
            Ownership {
                kind: "order".into(),
                id: "42".into(),
                partner: "globex".into(),
            },
        ];
        let f = fields(Some("order"));
        let array =
            r#"[{"id":"ord_1","partner":"acme"},{"id":42,"partner":"globex","extra":true}]"#;
        assert_eq!(parse(array, Format::Json, &f).unwrap(), want);
        let wrapped = r#"{"owners":[{"kind":"order","id":"ord_1","partner":"acme"},{"kind":"order","id":"42","partner":"globex"}]}"#;
        assert_eq!(parse(wrapped, Format::Json, &fields(None)).unwrap(), want);
        let lines =
            "{\"id\":\"ord_1\",\"partner\":\"acme\"}\n\n{\"id\":\"42\",\"partner\":\"globex\"}\n";
        assert_eq!(parse(lines, Format::Json, &f).unwrap(), want);
        let csv = "partner, id ,note\nacme,ord_1,\"first, with a comma\"\nglobex,42,\n";
        assert_eq!(parse(csv, Format::Csv, &f).unwrap(), want);
        // Round trip through both export formats.
        for format in [Format::Json, Format::Csv] {
            let text = render(&want, format).unwrap();
            assert_eq!(parse(&text, format, &fields(None)).unwrap(), want);
        }
    }

    #[test]
    fn legacy_column_names_map_to_the_record() {
        let f = Fields {
            id: "order_id".into(),
            partner: "partner_code".into(),
            kind: "kind".into(),
            default_kind: Some("order".into()),
        };
        let got = parse("order_id,partner_code\nA-1,acme\n", Format::Csv, &f).unwrap();
        assert_eq!(got[0].id, "A-1");
        assert_eq!(got[0].partner, "acme");
    }

    #[test]
    fn one_bad_record_refuses_the_import_and_says_where() {
        let f = fields(Some("order"));
        for (text, format, expect) in [
            (
                "id,partner\nok,acme\nbad id,acme\n",
                Format::Csv,
                "record 3",
            ),
            ("id,partner\nok,ACME\n", Format::Csv, "record 2: partner"),
            ("id\nok\n", Format::Csv, "no \"partner\""),
            (
                r#"[{"id":"a","partner":"acme"},{"id":"a","partner":"globex"}]"#,
                Format::Json,
                "also record 1, owned by acme",
            ),
            (
                r#"[{"id":"../x","partner":"acme"}]"#,
                Format::Json,
                "record 1: id",
            ),
            (r#"[1]"#, Format::Json, "not a JSON object"),
            (
                "{\"id\":\"a\",\"partner\":\"acme\"}\nnot json\n",
                Format::Json,
                "line 2",
            ),
        ] {
            let err = parse(text, format, &f).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
        let err = parse("id,partner\na,acme\n", Format::Csv, &fields(None)).unwrap_err();
        assert!(err.contains("--kind"), "{err}");
        // The same owner twice is only a repeat.
        assert_eq!(
            parse("id,partner\na,acme\na,acme\n", Format::Csv, &f)
                .unwrap()
                .len(),
            2
        );
    }
}
