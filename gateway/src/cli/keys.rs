//! `portcullis keys …`: operators manage keys against the configured store.
//! A Redis store is changed directly (the store makes every node see it).
//! A running gateway owns its embedded store, so the CLI goes through that
//! gateway's admin API (its cache must see every change); with no gateway
//! running, the CLI edits the file itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
                record: record.summary(),
            }
        }
        KeysCommand::Rotate { partner, name } => {
            let (key, record) = service.rotate(partner, name).await.map_err(err)?;
            Outcome::Issued {
                key: key.reveal().to_string(),
                record: record.summary(),
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

/// One HTTP/1.1 exchange with the admin listener (plain, loopback).
async fn admin_call(
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
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: portcullis-admin\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.trim(),
        body.len()
    );
    let addr = settings.admin.address;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("the admin API at {addr} did not answer"))?
        .map_err(|e| format!("cannot reach the admin API at {addr}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed answer from the admin API")?;
    let status: u16 = String::from_utf8_lossy(&response[..split])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed answer from the admin API")?;
    let value: serde_json::Value = serde_json::from_slice(&response[split + 4..])
        .map_err(|_| "malformed answer from the admin API")?;
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
            let body = serde_json::json!({
                "partner": partner,
                "name": name,
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

fn describe(v: &serde_json::Value) -> String {
    format!(
        "partner={} name={} key_id={} expires_at={}",
        v["partner"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or("?"),
        v["key_id"].as_str().unwrap_or("?"),
        v["expires_at"]
            .as_u64()
            .map_or("never".to_string(), |t| t.to_string()),
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
