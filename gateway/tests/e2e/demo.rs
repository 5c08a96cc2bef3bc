//! The quickstart: `portcullis demo` on a machine with nothing prepared.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_generates_everything_and_serves_through_the_example_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let https = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let partner = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = Command::new(binary())
        .args(["demo", "--dir"])
        .arg(&data)
        .args(["--https", &https.to_string(), "--admin", &admin.to_string()])
        .args(["--partner", &partner.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = printed.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let mut p = sink.lock().unwrap();
            p.push_str(&line);
            p.push('\n');
        }
    });
    let guard = KillOnDrop(&mut child);
    eventually(
        "the demo gateway to be ready",
        Duration::from_secs(30),
        || async { admin_get(admin, "/readyz").await.filter(|(s, _)| *s == 200) },
    )
    .await;

    let key_of = |partner: &str| -> String {
        let printed = printed.lock().unwrap().clone();
        printed
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(partner)
                    .map(|rest| rest.trim().to_string())
            })
            .filter(|k| k.starts_with("ptc_live_"))
            .unwrap_or_else(|| panic!("no key printed for {partner}:\n{printed}"))
    };
    let acme = key_of("acme");
    assert_ne!(acme, key_of("globex"));
    // The upstream refuses anyone but the gateway: it checks the signed assertion.
    let upstream = {
        let printed = printed.lock().unwrap().clone();
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix("upstream"))
            .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| panic!("no upstream address printed:\n{printed}"))
    };
    let direct = reqwest::get(format!("{upstream}/partners/acme/orders"))
        .await
        .unwrap();
    assert_eq!(
        direct.status(),
        401,
        "the upstream must refuse a request that bypassed the gateway"
    );
    for file in [
        "ca.pem",
        "gateway.pem",
        "gateway.key",
        "pepper",
        "admin-token",
        "keys.json",
        "portcullis.yaml",
        "policies/orders.yaml",
        "policies/legacy-orders.yaml",
    ] {
        assert!(data.join(file).exists(), "{file} generated");
    }
    use std::os::unix::fs::PermissionsExt;
    for secret in ["gateway.key", "pepper", "admin-token", "keys.json"] {
        let mode = std::fs::metadata(data.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} is private");
    }
    let (code, _, err) = run_cli(
        &[
            "check",
            "--config",
            data.join("portcullis.yaml").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");

    let ca = std::fs::read(data.join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", https.port());
    let resp = client
        .get(format!("{base}/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no key, no service");
    let resp = client
        .get(format!("{base}/partners/acme/orders"))
        .header("x-api-key", &acme)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["partner"], "acme");
    assert!(
        v["orders"][0].get("internal_cost_cents").is_none(),
        "internal fields are cut: {v}"
    );
    let resp = client
        .get(format!("{base}/partners/acme/orders/acme-1001/explode"))
        .header("x-api-key", &acme)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert!(!resp.text().await.unwrap().contains("SQLSTATE"));
    let resp = client
        .get(format!("{base}/partners/globex/orders"))
        .header("x-api-key", &acme)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "another partner's resource");
    for (quantity, status) in [(0, 400), (3, 201)] {
        let resp = client
            .post(format!("{base}/partners/acme/orders"))
            .header("x-api-key", &acme)
            .header("content-type", "application/json")
            .body(format!(r#"{{"sku":"BOLT-7","quantity":{quantity}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "order of {quantity}");
    }
    let resp = client
        .get(format!("{base}/admin"))
        .header("x-api-key", &acme)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The legacy API, with the banner's own commands, as curl runs them:
    // acme's DELETE of a globex order is refused and the order survives.
    let banner_command = |marker: &str| -> String {
        let printed = printed.lock().unwrap().clone();
        let line = printed
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no banner line with {marker}:\n{printed}"));
        let command = line.split("   #").next().unwrap().trim().to_string();
        let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = banner_command("-X DELETE");
    assert!(
        refused.starts_with("HTTP/2 404") || refused.starts_with("HTTP/1.1 404"),
        "{refused}"
    );
    assert!(
        refused.contains("\"code\":\"object_not_found\""),
        "{refused}"
    );
    let survived = banner_command("still there for its owner");
    let order: serde_json::Value = serde_json::from_str(&survived).unwrap();
    assert_eq!(order["partner"], "globex", "{survived}");
    assert!(order.get("internal_cost_cents").is_none(), "{survived}");
    let mine = banner_command("only acme's rows");
    let list: serde_json::Value = serde_json::from_str(&mine).unwrap();
    let rows = list["orders"].as_array().unwrap();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r["partner"] == "acme"),
        "{mine}"
    );
    // acme's keys, listed on the partner listener with the banner's command.
    let listed = banner_command("acme's keys, and when");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["partner"], "acme", "{listed}");
    assert_eq!(listed["keys"][0]["name"], "primary", "{listed}");
    let refused = banner_command("403 self_rotation_disabled");
    assert!(
        refused.contains("\"code\":\"self_rotation_disabled\""),
        "{refused}"
    );
    assert!(
        !std::fs::read_to_string(data.join("keys.json"))
            .unwrap()
            .contains(&acme),
        "only hashes on disk"
    );
    drop(guard);
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
