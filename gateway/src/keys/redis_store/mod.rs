//! The Redis key store, for many gateway nodes sharing one store of record.
//!
//! Layout (every name under a configurable prefix, default `portcullis:`):
//! - `key:<hash>`        hash of one key record: partner, name, key_id, created_at, expires_at,
//!   self_rotated (`1` for a key made by a key regenerating itself), kind (`data` or
//!   `management`; absent in records written before it, which are data keys), last_used
//!   (Unix seconds, raised by each node's usage batches)
//! - `partner:<id>`      hash: slot (key name, or `mgmt.<name>` for a management
//!   credential) → key hash, the partner's credentials
//! - `partners`          set of partner ids
//! - `suspended`         set of partner ids suspended at runtime
//! - `epoch`             integer, incremented by every rotation, revocation or suspension
//! - `leases`            sorted set: node id → lease expiry (ms, Redis clock)
//! - `acks`              hash: node id → last epoch the node has applied
//! - channel `changes`   publishes each new epoch
//! - `owners:<kind>`     hash: object id → owning partner (`ownership::redis`)
//! - `owner-kinds`       set of the kinds in use
//!
//! Changes run as Lua scripts, so each is atomic. How the epoch, leases and
//! acknowledgements make rotation immediate on every node is in `node.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Client, Script};

mod scripts;

use super::pepper::KeyHash;
use super::store::{KeyRecord, KeyStore, Kind, Lookup, StoreError, SUPERSEDED};
use crate::config::model::RedisSettings;
use scripts::Scripts;

/// Last-used times written per script call.
const USE_BATCH: usize = 500;

pub struct RedisStore {
    settings: RedisSettings,
    /// Made on first use, inside the runtime that serves requests (a
    /// connection manager lives in the runtime that created it). Under
    /// Sentinel both are forgotten when the lease keeper cannot reach the
    /// master, so the next use asks Sentinel again (after a failover the
    /// old address is a dead or read-only server).
    client: tokio::sync::Mutex<Option<Client>>,
    manager: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// When the master was last forgotten, so an outage does not turn
    /// into a storm of Sentinel queries.
    last_forgotten: std::sync::Mutex<Option<std::time::Instant>>,
    /// The lease keeper's own connection, kept across renewals and dropped
    /// on any error so the next renewal reconnects.
    lease_conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    prefix: String,
    scripts: Scripts,
    timeout: Duration,
    lease: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Builds the client: a URL (`redis://` or `rediss://`), or the master
/// that Sentinel names. The password comes from a file, never the config.
pub async fn client(settings: &RedisSettings) -> Result<Client, String> {
    let password = match &settings.password_file {
        Some(path) => Some(read_secret(path)?),
        None => None,
    };
    if let Some(sentinel) = &settings.sentinel {
        let addrs: Vec<redis::ConnectionAddr> = sentinel
            .addresses
            .iter()
            .map(|a| {
                let (host, port) = a
                    .rsplit_once(':')
                    .ok_or(format!("sentinel address {a} needs host:port"))?;
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("sentinel address {a}: bad port"))?;
                Ok(if sentinel.tls {
                    redis::ConnectionAddr::TcpTls {
                        host: host.to_string(),
                        port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    redis::ConnectionAddr::Tcp(host.to_string(), port)
                })
            })
            .collect::<Result<_, String>>()?;
        let mut builder = redis::sentinel::SentinelClientBuilder::new(
            addrs,
            &sentinel.master,
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(|e| format!("sentinel: {e}"))?;
        if let Some(p) = &password {
            builder = builder.set_client_to_redis_password(p);
        }
        if let Some(u) = &settings.username {
            builder = builder.set_client_to_redis_username(u);
        }
        if let Some(path) = &sentinel.password_file {
            builder = builder.set_client_to_sentinel_password(read_secret(path)?);
        }
        if let Some(u) = &sentinel.username {
            builder = builder.set_client_to_sentinel_username(u);
        }
        if sentinel.tls {
            builder = builder
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            if let Some(ca) = &settings.ca {
                let pem =
                    std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
                let roots = || redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                builder = builder
                    .set_client_to_sentinel_certificates(roots())
                    .set_client_to_redis_certificates(roots());
            }
        }
        let mut sentinel_client = builder.build().map_err(|e| format!("sentinel: {e}"))?;
        return tokio::time::timeout(settings.timeout * 8, sentinel_client.async_get_client())
            .await
            .map_err(|_| "sentinel: no answer".to_string())?
            .map_err(|e| format!("sentinel: cannot find master {}: {e}", sentinel.master));
    }
    let url = settings
        .url
        .as_deref()
        .ok_or("keys.redis needs url or sentinel")?;
    let mut info: redis::ConnectionInfo =
        url.parse().map_err(|e| format!("keys.redis.url: {e}"))?;
    let mut redis_info = info.redis_settings().clone();
    if let Some(p) = &password {
        redis_info = redis_info.set_password(p);
    }
    if let Some(u) = &settings.username {
        redis_info = redis_info.set_username(u);
    }
    info = info.set_redis_settings(redis_info);
    match &settings.ca {
        Some(ca) => {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|e| format!("keys.redis: {e}"))
        }
        None => Client::open(info).map_err(|e| format!("keys.redis: {e}")),
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn record_from(hash: &str, fields: &[String]) -> Option<KeyRecord> {
    let get = |name: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == name)
            .and_then(|kv| kv.get(1))
            .cloned()
    };
    Some(KeyRecord {
        hash: hash.to_string(),
        key_id: get("key_id")?,
        partner: get("partner")?,
        name: get("name")?,
        created_at: get("created_at")?.parse().ok()?,
        expires_at: get("expires_at").and_then(|v| v.parse().ok()),
        self_rotated: get("self_rotated").is_some_and(|v| v == "1"),
        kind: match get("kind").as_deref() {
            Some("management") => Kind::Management,
            _ => Kind::Data,
        },
        last_used_at: get("last_used").and_then(|v| v.parse().ok()),
        totp: get("totp").filter(|v| !v.is_empty()),
    })
}

fn script_error(e: redis::RedisError) -> StoreError {
    let text = e.to_string();
    if text.contains("NOTFOUND") {
        StoreError::NotFound
    } else if text.contains("SUPERSEDED") {
        StoreError::Conflict(SUPERSEDED.into())
    } else if text.contains("CONFLICT") {
        StoreError::Conflict("the partner already has a key of that name".into())
    } else {
        unavailable(text)
    }
}

impl RedisStore {
    pub fn new(settings: &RedisSettings) -> RedisStore {
        RedisStore {
            settings: settings.clone(),
            client: tokio::sync::Mutex::new(None),
            manager: tokio::sync::Mutex::new(None),
            last_forgotten: std::sync::Mutex::new(None),
            lease_conn: tokio::sync::Mutex::new(None),
            prefix: settings.prefix.clone(),
            scripts: Scripts::new(),
            timeout: settings.timeout,
            lease: settings.lease,
        }
    }

    pub async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let made = client(&self.settings)
            .await
            .map_err(StoreError::Unavailable)?;
        *slot = Some(made.clone());
        Ok(made)
    }

    /// Under Sentinel: drops the master's client and connections so the
    /// next use asks Sentinel where the master is now. At most every
    /// quarter lease.
    async fn forget_master(&self) {
        if self.settings.sentinel.is_none() {
            return;
        }
        let now = std::time::Instant::now();
        if let Ok(mut last) = self.last_forgotten.lock() {
            if last.is_some_and(|t| now.duration_since(t) < self.lease / 4) {
                return;
            }
            *last = Some(now);
        }
        *self.client.lock().await = None;
        *self.manager.lock().await = None;
        tracing::info!(target: "portcullis::keys", "asking Sentinel for the current Redis master");
    }

    /// The request path's connection manager, made by (and driven in) the
    /// runtime of the first request that needs it.
    pub(crate) async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.manager.lock().await;
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let client = self.client().await?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout * 4))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = tokio::time::timeout(
            self.timeout * 8,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| unavailable("no answer from Redis"))?
        .map_err(unavailable)?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// Waits until `replicas_ack` replicas hold every write made so far on
    /// `conn`. A shortfall is logged, not returned: the change is made and
    /// its caller (a rotation, say) must still get its answer.
    pub(crate) async fn replicate(&self, conn: &mut ConnectionManager) {
        let wanted = self.settings.replicas_ack;
        if wanted == 0 {
            return;
        }
        // Within one reply's timeout, or the connection gives up on it.
        let wait_ms = (self.timeout / 2).as_millis().max(1) as u64;
        let acked: Result<i64, _> = self
            .bounded(async {
                redis::cmd("WAIT")
                    .arg(wanted)
                    .arg(wait_ms)
                    .query_async(conn)
                    .await
                    .map_err(unavailable)
            })
            .await;
        match acked {
            Ok(n) if n >= i64::from(wanted) => {}
            other => tracing::warn!(
                target: "portcullis::keys",
                wanted,
                acked = ?other.ok(),
                "a key change is not yet on enough replicas; a failover now could undo it"
            ),
        }
    }

    /// How long a node may trust its cache without hearing from Redis.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub(crate) fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    pub fn channel(&self) -> String {
        self.name("changes")
    }

    /// Bounds every call: a store that does not answer is a store that is down.
    pub(crate) async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout * 2, f)
            .await
            .map_err(|_| StoreError::Unavailable("Redis did not answer in time".into()))?
    }

    async fn lease_connection(&self) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let client = self.client().await?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout * 2))
            .set_response_timeout(Some(self.timeout));
        self.bounded(async {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(unavailable)
        })
        .await
    }

    /// Runs one lease command on the lease keeper's own connection. Its
    /// success or failure is a direct reading of Redis's health, apart from
    /// the request path's connection manager.
    async fn on_lease_conn<T>(
        &self,
        run: impl AsyncFnOnce(&mut redis::aio::MultiplexedConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.lease_conn.lock().await;
        if slot.is_none() {
            match self.lease_connection().await {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    drop(slot);
                    self.forget_master().await;
                    return Err(e);
                }
            }
        }
        let Some(conn) = slot.as_mut() else {
            return Err(unavailable("no lease connection"));
        };
        let result = self.bounded(run(conn)).await;
        if result.is_err() {
            *slot = None;
            drop(slot);
            self.forget_master().await;
        }
        result
    }

    /// Renews `node`'s lease for `lease`; returns the current epoch.
    pub async fn renew(&self, node: &str, lease: Duration) -> Result<u64, StoreError> {
        let script = &self.scripts.renew;
        let (leases, epoch) = (self.name("leases"), self.name("epoch"));
        self.on_lease_conn(async |conn| {
            script
                .key(&leases)
                .key(&epoch)
                .arg(node)
                .arg(lease.as_millis() as u64)
                .invoke_async::<u64>(conn)
                .await
                .map_err(unavailable)
        })
        .await
    }

    pub async fn ack(&self, node: &str, epoch: u64) -> Result<(), StoreError> {
        let acks = self.name("acks");
        self.on_lease_conn(async |conn| {
            redis::cmd("HSET")
                .arg(&acks)
                .arg(node)
                .arg(epoch)
                .query_async::<()>(conn)
                .await
                .map_err(unavailable)
        })
        .await
    }

    pub async fn leave(&self, node: &str) {
        let Ok(mut conn) = self.conn().await else {
            return;
        };
        let _ = self
            .bounded(async {
                redis::cmd("ZREM")
                    .arg(self.name("leases"))
                    .arg(node)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await;
    }

    /// (live nodes that have not applied `epoch`, ms until the last of
    /// their leases ends).
    pub async fn pending(&self, epoch: u64) -> Result<(u64, u64), StoreError> {
        let mut conn = self.conn().await?;
        self.bounded(async {
            self.scripts
                .pending
                .key(self.name("leases"))
                .key(self.name("acks"))
                .arg(epoch)
                .invoke_async::<(u64, u64)>(&mut conn)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn change(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        let mut conn = self.conn().await?;
        let (old, fields, epoch): (String, Vec<String>, u64) = self
            .bounded(async {
                let mut invocation = script.prepare_invoke();
                for k in &keys {
                    invocation.key(k);
                }
                for a in &args {
                    invocation.arg(a);
                }
                invocation
                    .invoke_async(&mut conn)
                    .await
                    .map_err(script_error)
            })
            .await?;
        self.replicate(&mut conn).await;
        let record =
            record_from(&old, &fields).ok_or_else(|| unavailable("stored record is incomplete"))?;
        Ok((record, epoch))
    }

    fn record_args(&self, record: &KeyRecord) -> Vec<String> {
        vec![
            record.slot(),
            record.hash.clone(),
            record.partner.clone(),
            record.key_id.clone(),
            record.created_at.to_string(),
            record.expires_at.map(|t| t.to_string()).unwrap_or_default(),
            if record.self_rotated { "1" } else { "0" }.to_string(),
            record.name.clone(),
            match record.kind {
                Kind::Data => "data",
                Kind::Management => "management",
            }
            .to_string(),
            record.totp.clone().unwrap_or_default(),
        ]
    }
}

#[async_trait]
impl KeyStore for RedisStore {
    async fn lookup(&self, hash: &KeyHash) -> Result<Lookup, StoreError> {
        let mut conn = self.conn().await?;
        let hex = hash.to_hex();
        let (fields, epoch, suspended): (Vec<String>, String, i64) = self
            .bounded(async {
                self.scripts
                    .lookup
                    .key(self.name(&format!("key:{hex}")))
                    .key(self.name("epoch"))
                    .key(self.name("suspended"))
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        Ok(Lookup {
            record: if fields.is_empty() {
                None
            } else {
                record_from(&hex, &fields)
            },
            epoch: epoch.parse().unwrap_or(0),
            partner_suspended: suspended == 1,
        })
    }

    async fn set_suspended(&self, partner: &str, suspended: bool) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let epoch = self
            .bounded(async {
                self.scripts
                    .suspend
                    .key(self.name("suspended"))
                    .key(self.name("epoch"))
                    .arg(partner)
                    .arg(if suspended { "1" } else { "0" })
                    .arg(self.channel())
                    .invoke_async::<u64>(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        self.replicate(&mut conn).await;
        Ok(epoch)
    }

    async fn suspended_partners(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let mut out: Vec<String> = self
            .bounded(async {
                redis::cmd("SMEMBERS")
                    .arg(self.name("suspended"))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        out.sort();
        Ok(out)
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let args = self.record_args(&record);
        self.bounded(async {
            let mut invocation = self.scripts.insert.prepare_invoke();
            invocation
                .key(self.name(&format!("key:{}", record.hash)))
                .key(self.name(&format!("partner:{}", record.partner)))
                .key(self.name("partners"));
            for a in &args {
                invocation.arg(a);
            }
            invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(script_error)
        })
        .await?;
        self.replicate(&mut conn).await;
        Ok(())
    }

    async fn replace(
        &self,
        record: KeyRecord,
        expected: Option<&KeyHash>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        let mut args = self.record_args(&record);
        args.push(self.prefix.clone());
        args.push(self.channel());
        args.push(expected.map(KeyHash::to_hex).unwrap_or_default());
        let keys = vec![
            self.name(&format!("partner:{}", record.partner)),
            self.name("epoch"),
            self.name(&format!("key:{}", record.hash)),
        ];
        self.change(&self.scripts.replace, keys, args).await
    }

    async fn remove(
        &self,
        partner: &str,
        slot: &str,
        expected: Option<&KeyHash>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        let keys = vec![self.name(&format!("partner:{partner}")), self.name("epoch")];
        let args = vec![
            slot.to_string(),
            self.prefix.clone(),
            self.channel(),
            expected.map(KeyHash::to_hex).unwrap_or_default(),
        ];
        self.change(&self.scripts.remove, keys, args).await
    }

    async fn list(&self, partner: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let mut conn = self.conn().await?;
        self.bounded(async {
            let partners: Vec<String> = match partner {
                Some(p) => vec![p.to_string()],
                None => redis::cmd("SMEMBERS")
                    .arg(self.name("partners"))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?,
            };
            let mut out = Vec::new();
            for p in partners {
                let names: Vec<String> = redis::cmd("HVALS")
                    .arg(self.name(&format!("partner:{p}")))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                for hash in names {
                    let fields: Vec<String> = redis::cmd("HGETALL")
                        .arg(self.name(&format!("key:{hash}")))
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    if let Some(r) = record_from(&hash, &fields) {
                        out.push(r);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn record_use(&self, used: &[(String, u64)]) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        for batch in used.chunks(USE_BATCH) {
            self.bounded(async {
                let mut invocation = self.scripts.record_use.prepare_invoke();
                for (hash, at) in batch {
                    invocation.key(self.name(&format!("key:{hash}"))).arg(at);
                }
                invocation
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            })
            .await?;
        }
        Ok(())
    }

    async fn await_propagation(&self, epoch: u64) -> Result<(), StoreError> {
        crate::keys::node::await_propagation(self, epoch).await
    }
}

pub type SharedRedisStore = Arc<RedisStore>;
