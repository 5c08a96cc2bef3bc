//! `portcullis keys …`: operators manage keys against the configured store.
//! A Redis store is changed directly (the store makes every node see it).
//! A running gateway owns its embedded store, so the CLI goes through that
//! gateway's admin API (its cache must see every change); with no gateway
//! running, the CLI edits the file itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

use crate::config::model::StoreKind;
use crate::config::{self, model::GatewayFile};
use crate::keys::embedded::EmbeddedStore;
use crate::keys::pepper::Pepper;
use crate::keys::redis_store::RedisStore;
use crate::keys::service::KeyService;
use crate::keys::store::{now_secs, KeyRecord, KeyStore};
use crate::keys::verify::Verifier;

pub enum KeysCommand {
    Create {
        partner: String,
        name: String,
        expires_in: Option<Duration>,
    },
    Rotate {
        partner: String,
        name: String,
    },
    Revoke {
        partner: String,
        name: String,
    },
    List {
        partner: Option<String>,
    },
    /// Refuse every key of a partner on every node until resumed.
    Suspend {
        partner: String,
    },
    Resume {
        partner: String,
    },
    Suspended,
}

/// What an operation produced, printed the same way whichever path it took.
enum Outcome {
    Issued {
        key: String,
        record: serde_json::Value,
    },
    Revoked(serde_json::Value),
    Listed(Vec<serde_json::Value>),
    Suspension {
        partner: String,
        suspended: bool,
    },
    SuspendedList(Vec<String>),
}

async fn direct(
    settings: &GatewayFile,
    store: Arc<dyn KeyStore>,
    cmd: &KeysCommand,
) -> Result<Outcome, String> {
    let pepper = Pepper::load(settings.keys.pepper_file.as_deref())?;
    let service = KeyService::new(Arc::new(Verifier::new(pepper, store, 16, Duration::ZERO)));
    let err = |e: crate::keys::store::StoreError| e.to_string();
    Ok(match cmd {
        KeysCommand::Create {
            partner,
            name,
            expires_in,
        } => {
            let expires_at = expires_in.map(|d| now_secs() + d.as_secs());
            let (key, record) = service
                .create(partner, name, expires_at)
                .await
                .map_err(err)?;
            Outcome::Issued {
                key: key.reveal().to_string(),
                record: with_totp(&service, &record),
            }
        }
        KeysCommand::Rotate { partner, name } => {
            let (key, record) = service.rotate(partner, name).await.map_err(err)?;
            Outcome::Issued {
                key: key.reveal().to_string(),
                record: with_totp(&service, &record),
            }
        }
        KeysCommand::Revoke { partner, name } => {
            Outcome::Revoked(service.revoke(partner, name).await.map_err(err)?.summary())
        }
        KeysCommand::List { partner } => Outcome::Listed(
            service
                .list(partner.as_deref())
                .await
                .map_err(err)?
                .iter()
                .map(KeyRecord::summary)
                .collect(),
        ),
        KeysCommand::Suspend { partner } | KeysCommand::Resume { partner } => {
            let suspended = matches!(cmd, KeysCommand::Suspend { .. });
            service
                .set_suspended(partner, suspended)
                .await
                .map_err(err)?;
            Outcome::Suspension {
                partner: partner.clone(),
                suspended,
            }
        }
        KeysCommand::Suspended => Outcome::SuspendedList(service.suspended().await.map_err(err)?),
    })
}

/// Admin answers are small JSON documents; a key listing of a large
/// deployment stays far below this.
const MAX_ADMIN_ANSWER: usize = 16 << 20;

/// One HTTP/1.1 exchange with the admin listener (plain, loopback),
/// through pingora's own client: the same request writer and response
/// parser (chunked or sized bodies) the gateway uses for upstreams.
pub(crate) async fn admin_call(
    settings: &GatewayFile,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let token_file = settings.admin.token_file.as_ref().ok_or(
        "a running gateway owns the key store; set admin.token_file so the CLI can use its admin API",
    )?;
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("cannot read admin token file {}: {e}", token_file.display()))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let addr = settings.admin.address;
    // Built here so that a failure never quotes the token.
    let malformed = || format!("cannot build the admin request for {path}");
    let mut request =
        RequestHeader::build(method, path.as_bytes(), None).map_err(|_| malformed())?;
    for (name, value) in [
        ("host", "portcullis-admin".to_string()),
        ("authorization", format!("Bearer {}", token.trim())),
        ("content-type", "application/json".to_string()),
        ("content-length", body.len().to_string()),
    ] {
        request
            .insert_header(name, value)
            .map_err(|_| malformed())?;
    }
    let exchange = async {
        let peer = HttpPeer::new(addr, false, String::new());
        let (mut session, _) = Connector::new(None).get_http_session(&peer).await?;
        session.write_request_header(Box::new(request)).await?;
        session.write_body(body.as_bytes()).await?;
        session.finish_body().await?;
        session.read_response().await?;
        let status = session.get_status().map(|s| s.as_u16()).unwrap_or(0);
        let mut answer = Vec::new();
        while let Some(chunk) = session.read_body_ref().await? {
            answer.extend_from_slice(chunk);
            if answer.len() > MAX_ADMIN_ANSWER {
                break;
            }
        }
        Ok::<_, Box<pingora::Error>>((status, answer))
    };
    let (status, answer) = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("the admin API at {addr} did not answer"))?
        .map_err(|e| format!("cannot reach the admin API at {addr}: {e}"))?;
    let value: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|_| format!("malformed answer from the admin API (status {status})"))?;
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        Err(format!(
            "the admin API refused: {} ({})",
            value["title"].as_str().unwrap_or("error"),
            value["code"].as_str().unwrap_or("unknown")
        ))
    }
}

async fn via_admin(settings: &GatewayFile, cmd: &KeysCommand) -> Result<Outcome, String> {
    let issued = |mut v: serde_json::Value| -> Result<Outcome, String> {
        let key = v["key"]
            .as_str()
            .ok_or("the admin API returned no key")?
            .to_string();
        if let Some(obj) = v.as_object_mut() {
            obj.remove("key");
        }
        Ok(Outcome::Issued { key, record: v })
    };
    match cmd {
        KeysCommand::Create {
            partner,
            name,
            expires_in,
        } => {
            let (kind, name) = crate::keys::store::parse_slot(name);
            let body = serde_json::json!({
                "partner": partner,
                "name": name,
                "kind": kind,
                "expires_at": expires_in.map(|d| now_secs() + d.as_secs()),
            });
            issued(admin_call(settings, "POST", "/v1/keys", Some(body)).await?)
        }
        KeysCommand::Rotate { partner, name } => issued(
            admin_call(
                settings,
                "POST",
                &format!("/v1/keys/{partner}/{name}/rotate"),
                None,
            )
            .await?,
        ),
        KeysCommand::Revoke { partner, name } => {
            let v = admin_call(
                settings,
                "DELETE",
                &format!("/v1/keys/{partner}/{name}"),
                None,
            )
            .await?;
            Ok(Outcome::Revoked(v["revoked"].clone()))
        }
        KeysCommand::List { partner } => {
            let path = match partner {
                Some(p) => format!("/v1/keys?partner={p}"),
                None => "/v1/keys".to_string(),
            };
            let v = admin_call(settings, "GET", &path, None).await?;
            Ok(Outcome::Listed(
                v["keys"].as_array().cloned().unwrap_or_default(),
            ))
        }
        KeysCommand::Suspend { partner } | KeysCommand::Resume { partner } => {
            let suspended = matches!(cmd, KeysCommand::Suspend { .. });
            let action = if suspended { "suspend" } else { "resume" };
            admin_call(
                settings,
                "POST",
                &format!("/v1/partners/{partner}/{action}"),
                None,
            )
            .await?;
            Ok(Outcome::Suspension {
                partner: partner.clone(),
                suspended,
            })
        }
        KeysCommand::Suspended => {
            let v = admin_call(settings, "GET", "/v1/partners/suspended", None).await?;
            Ok(Outcome::SuspendedList(
                v["suspended"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            ))
        }
    }
}

/// The summary, with a management credential's TOTP URI (shown once).
fn with_totp(service: &KeyService, record: &KeyRecord) -> serde_json::Value {
    let mut v = record.summary();
    if let Some(uri) = service.totp_uri(record) {
        v["totp_uri"] = serde_json::Value::String(uri);
    }
    v
}

fn describe(v: &serde_json::Value) -> String {
    let time = |field: &str| {
        v[field]
            .as_u64()
            .map_or("never".to_string(), |t| t.to_string())
    };
    format!(
        "partner={} name={} key_id={} expires_at={} kind={} last_used_at={}{}",
        v["partner"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or("?"),
        v["key_id"].as_str().unwrap_or("?"),
        time("expires_at"),
        v["kind"].as_str().unwrap_or("data"),
        time("last_used_at"),
        if v["self_rotated"] == true {
            " self_rotated"
        } else {
            ""
        },
    )
}

pub fn run(config_path: &Path, cmd: KeysCommand) -> Result<(), String> {
    let settings = config::load_settings(config_path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let outcome = runtime.block_on(async {
        if let (StoreKind::Redis, Some(redis)) = (settings.keys.store, &settings.keys.redis) {
            // Redis is shared: the store itself makes every node see the change.
            return direct(&settings, Arc::new(RedisStore::new(redis)), &cmd).await;
        }
        match EmbeddedStore::open_owned(&settings.keys.path)? {
            Some(store) => direct(&settings, Arc::new(store), &cmd).await,
            None => via_admin(&settings, &cmd).await,
        }
    })?;
    match outcome {
        Outcome::Issued { key, record } => {
            println!("{}", describe(&record));
            if let Some(uri) = record["totp_uri"].as_str() {
                println!(
                    "# the console's second factor: add this to an authenticator app (shown once)"
                );
                println!("{uri}");
            }
            println!("# the key is shown once; store it now");
            // The key alone on the last line, for scripts.
            println!("{key}");
        }
        Outcome::Revoked(record) => println!("revoked {}", describe(&record)),
        Outcome::Listed(records) => {
            for r in &records {
                println!("{}", describe(r));
            }
        }
        Outcome::Suspension { partner, suspended } => {
            if suspended {
                println!("suspended {partner}: no node accepts its keys");
            } else {
                println!("resumed {partner}");
            }
        }
        Outcome::SuspendedList(partners) => {
            for p in partners {
                println!("{p}");
            }
        }
    }
    Ok(())
}
