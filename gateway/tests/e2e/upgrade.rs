//! pingora's in-place upgrade with the embedded key store: a second
//! process takes the listeners over (`run --upgrade`, then SIGQUIT to the
//! old one) without refusing a request, takes the key store over when the
//! old process exits, and continues the same audit chain.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

/// Kills the new process at the end of the test, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_upgrade_refuses_nothing_and_keeps_one_audit_chain() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let url = gw.url("/partners/acme/orders");
    assert_eq!(gw.client().get(&url).send().await.unwrap().status(), 200);

    // Steady traffic on fresh connections throughout the handover.
    let stop = Arc::new(AtomicBool::new(false));
    let client = gw.fresh_connection_client();
    let traffic = {
        let (stop, url, key) = (stop.clone(), url.clone(), gw.key("acme").to_string());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let status = client
                    .get(&url)
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                seen.push(status);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        })
    };

    let log = std::fs::File::create(gw.dir.path().join("new.log")).unwrap();
    let _new = Child(
        Command::new(binary())
            .args(["run", "--config", "portcullis.yaml", "--upgrade"])
            .current_dir(gw.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // The new process listens on the upgrade socket for the old one's listeners.
    let sock = gw.dir.path().join("gw_upgrade.sock");
    eventually(
        "the new process to wait for the listeners",
        Duration::from_secs(20),
        || async { sock.exists().then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("QUIT");
    let new_log = || std::fs::read_to_string(gw.dir.path().join("new.log")).unwrap_or_default();
    eventually(
        "the new process to own the key store",
        Duration::from_secs(30),
        || async { new_log().contains("took over the key store").then_some(()) },
    )
    .await;

    // The traffic stops before the rotation below, which (rightly) ends
    // the key it uses at once.
    stop.store(true, Ordering::SeqCst);
    let seen = traffic.await.unwrap();
    // The new process is the gateway now: it serves and changes keys.
    let (status, rotated) = gw
        .admin_api("POST", "/v1/keys/acme/primary/rotate", None)
        .await;
    assert_eq!(status, 200, "{rotated}\n{}", new_log());
    let fresh = rotated["key"].as_str().unwrap().to_string();
    let failed: Vec<_> = seen.iter().filter(|s| !matches!(s, Ok(200))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the upgrade: {failed:?}",
        failed.len(),
        seen.len()
    );
    assert_eq!(
        gw.client_with_key(Some(&fresh))
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(gw.client().get(&url).send().await.unwrap().status(), 401);

    // Both processes wrote the trail, one after the other, as one chain.
    let marker = gw
        .client_with_key(Some(&fresh))
        .get(&url)
        .send()
        .await
        .unwrap();
    let id = marker.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    gw.audit_record(&id).await;
    let (code, out, err) = run_cli(&["audit", "verify", "audit.log"], gw.dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK:"), "{out}");
}
