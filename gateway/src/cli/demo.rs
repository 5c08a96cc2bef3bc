//! `portcullis demo`: the quickstart on a machine with nothing prepared.
//! Generates a private CA, a server certificate and a key-hashing secret
//! into a data folder, starts the example upstream, writes a configuration
//! that fronts it, prints requests to try, and runs the gateway.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;

use std::sync::Arc;
use std::time::Duration;

use crate::keys::embedded::EmbeddedStore;
use crate::keys::pepper::Pepper;
use crate::keys::service::KeyService;
use crate::keys::store::StoreError;
use crate::keys::verify::Verifier;
use crate::transport::certgen::Ca;

pub struct DemoOptions {
    pub dir: PathBuf,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    /// The partner listener, where acme manages its keys.
    pub partner: SocketAddr,
}

/// Writes a file only the owner can read, replacing it atomically.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_public(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates the CA, certificate and pepper once; later runs reuse them so a
/// client that already trusts the demo CA keeps working.
fn ensure_secrets(dir: &Path) -> Result<(), String> {
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("gateway.pem");
    let key_path = dir.join("gateway.key");
    // A missing, expired or unreadable certificate is made afresh (with a
    // new CA: the demo keeps no CA key).
    let usable =
        ca_path.exists() && crate::transport::tls::load_cert(&cert_path, &key_path).is_ok();
    if !usable {
        let ca =
            Ca::new("Portcullis demo CA").map_err(|e| format!("cannot create demo CA: {e}"))?;
        let leaf = ca
            .issue(&["localhost", "127.0.0.1", "::1"])
            .map_err(|e| format!("cannot create demo certificate: {e}"))?;
        write_public(&ca_path, &ca.cert_pem())?;
        write_public(&cert_path, &leaf.cert_pem)?;
        write_private(&key_path, leaf.key_pem.as_bytes())?;
    }
    let assertion_key = dir.join("assertion-key.pem");
    if !assertion_key.exists() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| format!("cannot create the assertion key: {e}"))?;
        write_private(&assertion_key, pair.serialize_pem().as_bytes())?;
        write_public(&dir.join("assertion-public.pem"), &pair.public_key_pem())?;
    }
    for secret in ["pepper", "admin-token"] {
        let path = dir.join(secret);
        if !path.exists() {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            write_private(&path, hex::encode(bytes).as_bytes())?;
        }
    }
    Ok(())
}

fn gateway_yaml(opts: &DemoOptions) -> String {
    format!(
        "# Written by `portcullis demo`; every field is in docs/src/reference/configuration.md.\n\
         listen:\n  https: \"{https}\"\n\
         admin:\n  address: \"{admin}\"\n  token_file: admin-token\n\
         partner_listener:\n  address: \"{partner}\"\n\
         keys:\n  path: keys.json\n  pepper_file: pepper\n\
         tls:\n  certificate: gateway.pem\n  private_key: gateway.key\n\
         policies:\n  - policies/*.yaml\n\
         identity:\n  assertion:\n    algorithm: ed25519\n    key_file: assertion-key.pem\n\
         audit:\n  output: file\n  path: audit.log\n\
         server:\n  threads: 2\n  pid_file: portcullis.pid\n  upgrade_sock: portcullis_upgrade.sock\n",
        https = opts.https,
        admin = opts.admin,
        partner = opts.partner,
    )
}

fn policy_yaml(upstream: SocketAddr) -> String {
    format!(
        "# Written by `portcullis demo`: the example orders service behind the gateway.\n\
         partners:\n  acme:\n    scopes: [orders:read, orders:write]\n    limits:\n      rate: {{requests: 600, per: 1m, burst: 50}}\n  globex:\n    scopes: [orders:read]\n    limits:\n      rate: {{requests: 5, per: 1m}}\n\
         upstreams:\n  orders:\n    url: http://{upstream}\n    timeouts:\n      connect: 2s\n      read: 10s\n      total: 30s\n\
         routes:\n\
         \x20 - name: list-orders\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: orders\n    scopes: [orders:read]\n    response_bind: /partner\n\
         \x20   response:\n      deny: [/orders/*/internal_cost_cents, /orders/*/db_shard, /orders/*/created_by]\n\
         \x20 - name: create-order\n    methods: [POST]\n    path: /partners/{{partner}}/orders\n    upstream: orders\n    scopes: [orders:write]\n\
         \x20   validate:\n      body:\n        type: object\n        additionalProperties: false\n        required: [sku, quantity]\n\
         \x20       properties:\n          sku: {{type: string, pattern: '^[A-Z0-9-]{{3,32}}$'}}\n          quantity: {{type: integer, minimum: 1, maximum: 1000}}\n\
         \x20 - name: get-order\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}\n    upstream: orders\n    scopes: [orders:read]\n    response_bind: /partner\n\
         \x20   response:\n      deny: [/internal_cost_cents, /db_shard, /created_by]\n\
         \x20 - name: explode-order\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}/explode\n    upstream: orders\n    scopes: [orders:read]\n"
    )
}

/// The example's legacy API (`/orders/{id}`, no partner in any URL) with
/// object-level isolation: the same as `policies/legacy-orders.yaml`, with
/// the schemas inline.
fn legacy_policy_yaml() -> String {
    let sku = "{type: string, pattern: '^[A-Z0-9-]{3,32}$'}";
    let quantity = "{type: integer, minimum: 1, maximum: 1000}";
    format!(
        "# Written by `portcullis demo`: the example's legacy API, whose URLs name an order and not a partner.\n\
         resources:\n  order:\n    id: /id\n    owner: /partner\n\
         routes:\n\
         \x20 - name: legacy-list-orders\n    methods: [GET]\n    path: /orders\n    upstream: orders\n    scopes: [orders:read]\n\
         \x20   resource: {{kind: order, action: list, rows: /orders/*, others: drop}}\n\
         \x20   response:\n      deny: [/orders/*/internal_cost_cents]\n\
         \x20 - name: legacy-create-order\n    methods: [POST]\n    path: /orders\n    upstream: orders\n    scopes: [orders:write]\n\
         \x20   resource: {{kind: order, action: create}}\n    response:\n      deny: [/internal_cost_cents]\n\
         \x20   validate:\n      body:\n        type: object\n        additionalProperties: false\n        required: [sku, quantity]\n\
         \x20       properties:\n          sku: {sku}\n          quantity: {quantity}\n\
         \x20 - name: legacy-get-order\n    methods: [GET]\n    path: /orders/{{id}}\n    upstream: orders\n    scopes: [orders:read]\n\
         \x20   resource: {{kind: order, action: read, unknown: preflight}}\n    response:\n      deny: [/internal_cost_cents]\n\
         \x20 - name: legacy-change-order\n    methods: [PUT]\n    path: /orders/{{id}}\n    upstream: orders\n    scopes: [orders:write]\n\
         \x20   resource: {{kind: order, action: change, unknown: preflight, preflight: '/orders/{{id}}'}}\n    response:\n      deny: [/internal_cost_cents]\n\
         \x20   validate:\n      body:\n        type: object\n        additionalProperties: false\n        minProperties: 1\n\
         \x20       properties:\n          sku: {sku}\n          quantity: {quantity}\n          status: {{enum: [open, shipped, cancelled]}}\n\
         \x20 - name: legacy-delete-order\n    methods: [DELETE]\n    path: /orders/{{id}}\n    upstream: orders\n    scopes: [orders:write]\n\
         \x20   resource: {{kind: order, action: delete, unknown: preflight, preflight: '/orders/{{id}}'}}\n"
    )
}

/// Starts the example upstream on its own runtime thread (the gateway's
/// runtime belongs to pingora) and returns its address.
/// The upstream verifies the gateway's assertions with the public key,
/// as a real upstream would.
fn start_upstream(public_key: &Path) -> Result<SocketAddr, String> {
    let pem =
        fs::read(public_key).map_err(|e| format!("cannot read {}: {e}", public_key.display()))?;
    let check = portcullis_example_upstream::AssertionCheck::ed25519(&pem, "orders")?;
    let options = portcullis_example_upstream::Options {
        assertion: Some(check),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("example-upstream".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(format!("cannot start the example upstream: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
                match portcullis_example_upstream::spawn_with(any, options).await {
                    Ok((addr, _recorder, handle)) => {
                        let _ = tx.send(Ok(addr));
                        let _ = handle.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot start the example upstream: {e}")));
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the example upstream: {e}"))?;
    rx.recv()
        .map_err(|_| "the example upstream did not start".to_string())?
}

fn print_banner(opts: &DemoOptions, upstream: SocketAddr, keys: &DemoKeys) {
    let ca = opts.dir.join("ca.pem");
    let base = format!("https://localhost:{}", opts.https.port());
    let partner_base = format!("https://localhost:{}", opts.partner.port());
    let manager = &keys.acme_management;
    let keys = &keys.data;
    let c = format!("curl -sS --cacert {}", ca.display());
    let acme = keys.first().map_or("", |(_, k)| k.as_str());
    let globex_order =
        portcullis_example_upstream::seeded_legacy_order("globex", 0).unwrap_or_default();
    let globex = keys.get(1).map_or("", |(_, k)| k.as_str());
    println!(
        "\nPortcullis demo is running.\n\
         \n  gateway   {base}   (TLS 1.2/1.3, certificate from the demo CA)\
         \n  admin     http://{admin}   (/healthz, /readyz, /metrics, key API; loopback only)\
         \n  partners  {partner_base}   (partners manage their own keys here)\
         \n  upstream  http://{upstream}   (example orders service; refuses requests without the gateway's signed assertion)\
         \n  config    {config}\
         \n\nDemo partners and their keys (shown once; the store keeps only hashes):\
         \n  acme      {acme}\
         \n  globex    {globex}\
         \n  management credential of acme, for the partner listener only:\
         \n            {manager}\
         \n\nTry:\n\
         \n  # accepted: routed to the upstream, which sees X-Partner-Id and never the key\
         \n  {c} -i -H 'X-API-Key: {acme}' {base}/partners/acme/orders\
         \n  {c} -i -H 'Authorization: Bearer {acme}' -X POST -H 'content-type: application/json' -d '{{\"sku\":\"BOLT-7\",\"quantity\":3}}' {base}/partners/acme/orders\
         \n\n  # refused by the gateway, never reaching the upstream (problem+json with a stable code)\
         \n  {c} -i {base}/partners/acme/orders                                  # 401 key_missing\
         \n  {c} -i -H 'X-API-Key: ptc_live_not-a-key' {base}/partners/acme/orders   # 401 key_malformed\
         \n  {c} -i '{base}/partners/acme/orders?api_key={acme}'   # 400 key_in_url\
         \n  {c} -i -H 'X-API-Key: {acme}' {base}/partners/globex/orders   # 403 partner_mismatch\
         \n  {c} -i -H 'X-API-Key: {globex}' -X POST -H 'content-type: application/json' -d '{{}}' {base}/partners/globex/orders   # 403 scope_denied (globex may only read)\
         \n  {c} -i -H 'X-API-Key: {acme}' -X POST -H 'content-type: application/json' -d '{{\"sku\":\"BOLT-7\",\"quantity\":0}}' {base}/partners/acme/orders   # 400 schema_violation\
         \n  {c} -i -H 'X-API-Key: {acme}' {base}/admin                    # 404 route_not_found\
         \n  curl -sS -i http://{upstream}/partners/acme/orders   # 401 from the upstream itself: no signed gateway assertion\
         \n\n  # answered, minus what the partner should not see\
         \n  {c} -i -H 'X-API-Key: {acme}' {base}/partners/acme/orders/acme-1001   # no Server/X-Powered-By, no internal fields\
         \n  {c} -i -H 'X-API-Key: {acme}' {base}/partners/acme/orders/acme-1001/explode   # 500 upstream_failed, stack trace withheld\
         \n  {c} -i -H 'X-API-Key: {acme}' --path-as-is {base}/partners/acme/../../../etc/passwd   # 400 ambiguous_path\
         \n  curl -sS -i --tlsv1.1 --tls-max 1.1 --cacert {ca} {base}/   # refused: TLS 1.2+ only\
         \n\n  # a legacy API whose URLs name no partner: /orders lists every partner's orders, /orders/{{id}} serves anyone\
         \n  {c} -H 'X-API-Key: {acme}' {base}/orders   # only acme's rows, the others dropped\
         \n  {c} -i -H 'X-API-Key: {acme}' -X DELETE {base}/orders/{globex_order}   # 404 object_not_found: globex's order, never forwarded\
         \n  {c} -H 'X-API-Key: {globex}' {base}/orders/{globex_order}   # still there for its owner\
         \n  # operators: portcullis owners show|import|export|transfer --config {config}\
         \n\n  # acme manages its keys with its management credential, never with an API key\
         \n  {c} -H 'Authorization: Bearer {manager}' {partner_base}/v1/keys   # acme's keys, and when each was last used\
         \n  {c} -X POST -H 'Authorization: Bearer {manager}' -H 'content-type: application/json' -d '{{\"name\":\"next\"}}' {partner_base}/v1/keys   # a second key, shown once\
         \n  {c} -i -X POST -H 'X-API-Key: {acme}' {base}/.portcullis/v1/keys/rotate   # 403 self_rotation_disabled: a stolen key cannot lock acme out\
         \n  # operators: portcullis keys list|create|rotate|revoke --config {config}\
         \n  curl -sS http://{admin}/metrics | grep portcullis_requests_total\
         \n\n  # globex may make 5 requests a minute: the sixth gets 429 rate_limited with Retry-After\
         \n  for i in 1 2 3 4 5 6; do {c} -o /dev/null -w '%{{http_code}} ' -H 'X-API-Key: {globex}' {base}/partners/globex/orders; done; echo\
         \n\n  # every request is in the hash-chained audit trail\
         \n  portcullis audit search {audit} --decision deny --since 1h\
         \n  portcullis audit verify {audit}\
         \n\nCtrl-C stops everything.\n",
        admin = opts.admin,
        config = opts.dir.join("portcullis.yaml").display(),
        audit = opts.dir.join("audit.log").display(),
        ca = ca.display(),
    );
}

/// What the banner shows once: each partner's key, and acme's management
/// credential.
struct DemoKeys {
    data: Vec<(&'static str, String)>,
    acme_management: String,
}

/// The demo partners and a fresh key for each: the store keeps only
/// hashes, so each run issues new keys (rotating the previous ones).
fn issue_demo_keys(dir: &Path) -> Result<DemoKeys, String> {
    let pepper = Pepper::load(Some(&dir.join("pepper")))?;
    let store = EmbeddedStore::open_owned(&dir.join("keys.json"))?
        .ok_or("another demo is running from this folder")?;
    let service = KeyService::new(Arc::new(Verifier::new(
        pepper,
        Arc::new(store),
        16,
        Duration::ZERO,
    )));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let mut keys = Vec::new();
        for partner in DEMO_PARTNERS {
            let issued = match service.rotate(partner, "primary").await {
                Err(StoreError::NotFound) => service.create(partner, "primary", None).await,
                other => other,
            };
            let (key, _) =
                issued.map_err(|e| format!("cannot issue the demo key for {partner}: {e}"))?;
            keys.push((partner, key.reveal().to_string()));
        }
        let slot = crate::keys::store::slot(crate::keys::store::Kind::Management, "console");
        let issued = match service.rotate("acme", &slot).await {
            Err(StoreError::NotFound) => service.create("acme", &slot, None).await,
            other => other,
        };
        let (manager, _) =
            issued.map_err(|e| format!("cannot issue acme's management credential: {e}"))?;
        Ok(DemoKeys {
            data: keys,
            acme_management: manager.reveal().to_string(),
        })
    })
}

const DEMO_PARTNERS: [&str; 2] = ["acme", "globex"];

pub fn run(opts: DemoOptions) -> Result<(), String> {
    fs::create_dir_all(opts.dir.join("policies"))
        .map_err(|e| format!("cannot create {}: {e}", opts.dir.display()))?;
    fs::set_permissions(&opts.dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot protect {}: {e}", opts.dir.display()))?;
    ensure_secrets(&opts.dir)?;
    let upstream = start_upstream(&opts.dir.join("assertion-public.pem"))?;
    let config_path = opts.dir.join("portcullis.yaml");
    write_public(&config_path, &gateway_yaml(&opts))?;
    write_public(
        &opts.dir.join("policies").join("orders.yaml"),
        &policy_yaml(upstream),
    )?;
    write_public(
        &opts.dir.join("policies").join("legacy-orders.yaml"),
        &legacy_policy_yaml(),
    )?;
    let keys = issue_demo_keys(&opts.dir)?;
    print_banner(&opts, upstream, &keys);
    crate::server::run(&config_path, false)
}
