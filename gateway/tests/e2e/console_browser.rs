//! The partner console in Debian's chromium, driven by playwright-core
//! (`gateway/tests/browser/console.mjs`). Needs `node`, `/usr/bin/chromium`
//! and `npm ci` in `gateway/tests/browser`; without them the test says so
//! and passes, unless `PORTCULLIS_REQUIRE_BROWSER=1` (CI sets it).
//! `PORTCULLIS_UPDATE_SCREENSHOTS=1` copies the screenshots into
//! `docs/src/images/`.

use std::path::Path;

use crate::common::*;

fn browser_ready(dir: &Path) -> Result<(), String> {
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!("run `npm ci` in {}", dir.display()));
    }
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("install Debian's chromium (/usr/bin/chromium)".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_manages_keys_in_a_real_browser() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Err(missing) = browser_ready(&scripts) {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_BROWSER").is_none(),
            "the browser test is required: {missing}"
        );
        eprintln!("SKIPPED the console browser test: {missing}");
        return;
    }
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let (credential, secret) = gw.management_credential_with_totp("acme", "console").await;
    // Another partner's traffic, which acme's activity view must not show.
    let globex = gw.client_with_key(Some(gw.key("globex")));
    assert_eq!(
        globex
            .get(gw.url("/partners/globex/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let shots = tempfile::tempdir().unwrap();
    let port = gw.partner.unwrap().port();
    let out = tokio::process::Command::new("node")
        .arg(scripts.join("console.mjs"))
        .env("CONSOLE_URL", format!("https://127.0.0.1:{port}"))
        .env("CREDENTIAL", &credential)
        .env("TOTP_SECRET_HEX", hex_of(&secret))
        .env("SCREENSHOTS", shots.path())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();

    // What the page did is what happened, as the data listener tells it.
    let status = |key: String| {
        let gw = &gw;
        async move {
            gw.client_with_key(Some(&key))
                .get(gw.url("/partners/acme/orders"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(seen["created"].as_str().unwrap().into()).await,
        401,
        "replaced"
    );
    assert_eq!(
        status(seen["regenerated"].as_str().unwrap().into()).await,
        401,
        "revoked"
    );
    assert_eq!(
        status(gw.key("acme").into()).await,
        401,
        "revoked by revoke-all"
    );
    assert_eq!(
        globex
            .get(gw.url("/partners/globex/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "globex untouched"
    );
    let activity = seen["activity"].as_str().unwrap();
    assert!(
        activity.contains("list-orders") && activity.contains("partner_key_created"),
        "{activity}"
    );
    assert!(!activity.contains("globex"), "{activity}");

    if std::env::var_os("PORTCULLIS_UPDATE_SCREENSHOTS").is_some() {
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/images");
        for name in [
            "console-sign-in.png",
            "console-new-key.png",
            "console-activity.png",
        ] {
            std::fs::copy(shots.path().join(name), images.join(name)).unwrap();
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
