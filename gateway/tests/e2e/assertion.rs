//! The signed identity assertion, verified by the example upstream with a
//! stock JWT library: requests through the gateway pass; requests that
//! bypass it, forge or transplant an assertion do not.

use portcullis_example_upstream::{AssertionCheck, Options};

use crate::common::*;

fn identity_yaml(algorithm: &str, key_file: &std::path::Path) -> String {
    format!(
        "identity:\n  assertion:\n    algorithm: {algorithm}\n    key_file: {}\n    ttl: 30s\n",
        key_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_can_tell_a_request_came_through_the_gateway() {
    let keys = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = keys.path().join("assertion.pem");
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    let check = AssertionCheck::ed25519(pair.public_key_pem().as_bytes(), "orders").unwrap();
    let up = Upstream::start_with(Options {
        assertion: Some(check),
    })
    .await;
    let mut config = GatewayConfig::orders(&up.url());
    config.extra = identity_yaml("ed25519", &private);
    let gw = Gateway::start(config).await;

    // Through the gateway: accepted, even when the client sends its own assertion.
    let resp = raw_request(
        &gw,
        b"GET /partners/acme/orders?x=1 HTTP/1.1\r\nHost: gateway.test\r\nX-Portcullis-Assertion: forged\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.recorder.requests();
    assert_eq!(seen[0].header_count("x-portcullis-assertion"), 1);
    let token = seen[0]
        .header("x-portcullis-assertion")
        .unwrap()
        .to_string();
    assert_ne!(token, "forged");
    let (status, _) = h2_raw(&gw, "GET", "/partners/acme/orders/acme-1001", &[], b"").await;
    assert_eq!(status, 200, "HTTP/2 too");

    // Around the gateway: refused by the upstream itself.
    let direct = reqwest::Client::new();
    let base = up.url();
    let resp = direct
        .get(format!("{base}/partners/acme/orders?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no assertion");
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for (path, assertion, why) in [
        (
            "/partners/acme/orders?x=1",
            forged.as_str(),
            "a bad signature",
        ),
        (
            "/partners/globex/orders?x=1",
            token.as_str(),
            "another partner's path",
        ),
        ("/partners/acme/orders?x=2", token.as_str(), "another query"),
    ] {
        let resp = direct
            .get(format!("{base}{path}"))
            .header("x-portcullis-assertion", assertion)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{why}");
    }
    let resp = direct
        .post(format!("{base}/partners/acme/orders?x=1"))
        .header("x-portcullis-assertion", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "another method");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_assertions_work_too() {
    let keys = tempfile::tempdir().unwrap();
    let secret = "a5".repeat(32);
    let file = keys.path().join("assertion.hex");
    std::fs::write(&file, &secret).unwrap();
    // The right secret passes; a different one makes every assertion
    // worthless to the upstream.
    for (upstream_secret, expected) in [(secret.clone(), 200), ("5a".repeat(32), 401)] {
        let up = Upstream::start_with(Options {
            assertion: Some(AssertionCheck::hmac_hex(&upstream_secret, "orders").unwrap()),
        })
        .await;
        let mut config = GatewayConfig::orders(&up.url());
        config.extra = identity_yaml("hmac-sha256", &file);
        let gw = Gateway::start(config).await;
        let resp = gw
            .client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
    }
}

/// A verification snippet of the book (`docs/src/concepts/assertion/`), ready
/// to run, or why its toolchain is missing.
fn snippet(language: &str, build_dir: &std::path::Path) -> Result<Vec<String>, String> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/concepts/assertion");
    let file = |name: &str| dir.join(name).display().to_string();
    let succeeds = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false)
    };
    match language {
        "python" if succeeds("python3", &["-c", "import cryptography"]) => {
            Ok(vec!["python3".into(), file("verify.py")])
        }
        "python" => Err("python3 with the cryptography package".into()),
        "node" if succeeds("node", &["--version"]) => Ok(vec!["node".into(), file("verify.mjs")]),
        "node" => Err("node".into()),
        "java" if succeeds("javac", &["-version"]) => {
            let out = build_dir.display().to_string();
            assert!(
                succeeds("javac", &["-d", &out, &file("Verify.java")]),
                "Verify.java does not compile"
            );
            Ok(vec!["java".into(), "-cp".into(), out, "Verify".into()])
        }
        "java" => Err("javac (a JDK, 17 or later)".into()),
        "go" if succeeds("go", &["version"]) => {
            let binary = build_dir.join("verify-go").display().to_string();
            assert!(
                succeeds("go", &["build", "-o", &binary, &file("verify.go")]),
                "verify.go does not build"
            );
            Ok(vec![binary])
        }
        "go" => Err("go".into()),
        _ => unreachable!("no snippet for {language}"),
    }
}

/// The snippets the book tells upstream developers to copy, run against the
/// assertions a running gateway signs, with both algorithms: each accepts
/// the request an assertion was issued for and refuses a forged signature,
/// another query, method, partner or audience, and the other algorithm. A
/// language whose toolchain is missing is skipped with a message on stderr,
/// and fails the test when `PORTCULLIS_REQUIRE_SNIPPETS` names it (CI
/// requires python and node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_verification_snippets_accept_real_assertions_and_refuse_lifted_ones() {
    let keys = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = keys.path().join("assertion.pem");
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    let public = keys.path().join("public.pem");
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    let secret = keys.path().join("assertion.hex");
    std::fs::write(&secret, "3c".repeat(32)).unwrap();

    let target = "/partners/acme/orders?x=1";
    let mut signed = Vec::new();
    for (algorithm, gateway_key, verify_key, name) in [
        ("ed25519", &private, &public, "ed25519"),
        ("hmac-sha256", &secret, &secret, "hmac"),
    ] {
        let up = Upstream::start().await;
        let mut config = GatewayConfig::orders(&up.url());
        config.extra = identity_yaml(algorithm, gateway_key);
        let gw = Gateway::start(config).await;
        let resp = gw.client().get(gw.url(target)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let seen = up.recorder.requests();
        let token = seen[0]
            .header("x-portcullis-assertion")
            .unwrap()
            .to_string();
        signed.push((name, verify_key.display().to_string(), token));
    }

    let required = std::env::var("PORTCULLIS_REQUIRE_SNIPPETS").unwrap_or_default();
    let build = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for language in ["python", "node", "java", "go"] {
        let command = match snippet(language, build.path()) {
            Ok(command) => command,
            Err(missing) => {
                assert!(
                    !required.split(',').any(|r| r.trim() == language),
                    "PORTCULLIS_REQUIRE_SNIPPETS names {language}, but {missing} is not installed"
                );
                // Straight to stderr, past the test harness's capture, so a
                // skipped language shows in every run.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: the {language} assertion snippet was not run: {missing} is not installed"
                );
                continue;
            }
        };
        let run = |algorithm: &str,
                   key: &str,
                   audience: &str,
                   method: &str,
                   target: &str,
                   token: &str| {
            let out = std::process::Command::new(&command[0])
                .args(&command[1..])
                .args([algorithm, key, audience, method, target, token])
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )
        };
        for (algorithm, key, token) in &signed {
            let (algorithm, key, token): (&str, &str, &str) = (algorithm, key, token);
            assert_eq!(
                run(algorithm, key, "orders", "GET", target, token),
                (Some(0), "acme".to_string()),
                "{language} {algorithm}: the request the assertion was issued for"
            );
            // The signature's first character carries six bits of it (the last
            // may carry only padding a lenient decoder ignores).
            let at = token.rfind('.').unwrap() + 1;
            let first = if token[at..].starts_with('A') {
                "B"
            } else {
                "A"
            };
            let forged = format!("{}{first}{}", &token[..at], &token[at + 1..]);
            let (other_algorithm, other_key, _) =
                signed.iter().find(|(a, _, _)| *a != algorithm).unwrap();
            let (other_algorithm, other_key): (&str, &str) = (other_algorithm, other_key);
            for (why, algorithm, key, audience, method, target, token) in [
                (
                    "a forged signature",
                    algorithm,
                    key,
                    "orders",
                    "GET",
                    target,
                    forged.as_str(),
                ),
                (
                    "another query",
                    algorithm,
                    key,
                    "orders",
                    "GET",
                    "/partners/acme/orders?x=2",
                    token,
                ),
                (
                    "another method",
                    algorithm,
                    key,
                    "orders",
                    "POST",
                    target,
                    token,
                ),
                (
                    "another partner",
                    algorithm,
                    key,
                    "orders",
                    "GET",
                    "/partners/globex/orders?x=1",
                    token,
                ),
                (
                    "another audience",
                    algorithm,
                    key,
                    "billing",
                    "GET",
                    target,
                    token,
                ),
                (
                    "the other algorithm",
                    other_algorithm,
                    other_key,
                    "orders",
                    "GET",
                    target,
                    token,
                ),
            ] {
                let (code, said) = run(algorithm, key, audience, method, target, token);
                assert_eq!(
                    code,
                    Some(1),
                    "{language}: {why} must be refused, got {said:?}"
                );
                assert!(said.starts_with("refused: "), "{language}: {why}: {said:?}");
            }
        }
        ran += 1;
    }
    assert!(ran > 0 || required.is_empty(), "no snippet ran");
}
