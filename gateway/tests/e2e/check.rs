//! `portcullis check`: validates everything without starting anything.

use std::path::Path;

use crate::common::*;

/// A gateway file using `policies_glob`; the shipped policies come with
/// the shipped schemas.
fn write_gateway(dir: &Path, policies_glob: &str) {
    let pki = Pki::new();
    pki.write_leaf(&dir.join("cert.pem"), &dir.join("key.pem"));
    std::fs::write(dir.join("pepper"), "ab".repeat(32)).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schemas = if policies_glob.starts_with(shipped.to_str().unwrap()) {
        format!("schemas: \"{}\"\n", shipped.join("schemas").display())
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("portcullis.yaml"),
        format!("tls:\n  certificate: cert.pem\n  private_key: key.pem\nkeys:\n  pepper_file: pepper\npolicies:\n  - \"{policies_glob}\"\n{schemas}"),
    )
    .unwrap();
}

#[test]
fn the_shipped_policies_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/*.yaml");
    write_gateway(dir.path(), shipped.to_str().unwrap());
    let (code, out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn every_problem_is_reported_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        "upstreams:\n  orders:\n    url: ftp://example.com\n\
         routes:\n\
         \x20 - name: one\n    methods: [GET]\n    path: /one\n    upstream: missing\n\
         \x20 - name: two\n    methods: [FETCH]\n    path: /two\n    upstream: orders\n\
         \x20 - name: one\n    methods: [GET]\n    path: /three/../four\n    upstream: orders\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policies/b.yaml"),
        "routes:\n  - name: [unclosed\n",
    )
    .unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    let a = "policies/a.yaml";
    let b = "policies/b.yaml";
    for expected in [
        format!("{a}:3: upstreams.orders.url: scheme must be http or https"),
        format!("{a}:8: routes[0].upstream: no upstream named \"missing\""),
        format!("{a}:9: routes[1].methods: unknown method \"FETCH\""),
        format!("{a}:13: routes[2].name: route name \"one\" is already used"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("{b}:2: yaml: "))),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.lines().count(),
        6,
        "one line per problem, no cascades, and a total:\n{err}"
    );
}

#[test]
fn bad_certificates_are_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/*.yaml");
    write_gateway(p, shipped.to_str().unwrap());

    std::fs::write(p.join("cert.pem"), "garbage").unwrap();
    let (code, _, err) = run_cli(&["check", "--config", "portcullis.yaml"], p);
    assert_eq!(code, 1);
    assert!(
        err.contains("cert.pem") && err.contains("no certificate found"),
        "{err}"
    );

    // A key that belongs to another certificate.
    let pki = Pki::new();
    pki.write_leaf(&p.join("cert.pem"), &p.join("other-key.pem"));
    let (code, _, err) = run_cli(&["check", "--config", "portcullis.yaml"], p);
    assert_eq!(code, 1);
    assert!(err.contains("do not form a usable pair"), "{err}");

    // `run` refuses the same way, before binding anything.
    let (code, _, err) = run_cli(&["run", "--config", "portcullis.yaml"], p);
    assert_eq!(code, 1);
    assert!(
        err.contains("do not form a usable pair") && !err.contains("panicked"),
        "{err}"
    );

    std::fs::remove_file(p.join("key.pem")).unwrap();
    let (code, _, err) = run_cli(&["run", "--config", "portcullis.yaml"], p);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read") && err.contains("key.pem"),
        "{err}"
    );
}

#[test]
fn unknown_fields_and_bad_values_in_the_gateway_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("portcullis.yaml"),
        "tls:\n  certificate: cert.pem\n  private_key: key.pem\nlisten:\n  https: \"not-an-address\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check", "--config", "portcullis.yaml"], p);
    assert_eq!(code, 1);
    assert!(err.contains("portcullis.yaml:5: yaml:"), "{err}");

    std::fs::write(
        p.join("portcullis.yaml"),
        "tls:\n  certificate: c\n  private_key: k\n  cipher: weak\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check", "--config", "portcullis.yaml"], p);
    assert_eq!(code, 1);
    assert!(
        err.contains("portcullis.yaml:4") && err.contains("cipher"),
        "{err}"
    );
}

#[test]
fn run_refuses_to_start_without_a_pepper() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/*.yaml");
    write_gateway(p, shipped.to_str().unwrap());
    std::fs::remove_file(p.join("pepper")).unwrap();
    let out = std::process::Command::new(binary())
        .args(["run", "--config", "portcullis.yaml"])
        .current_dir(p)
        .env_remove("PORTCULLIS_PEPPER")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pepper"), "{err}");
    std::fs::write(p.join("pepper"), "not hex").unwrap();
    let (code, _, err) = run_cli(&["check", "--config", "portcullis.yaml"], p);
    assert_eq!(code, 1);
    assert!(
        err.contains("64 hexadecimal characters") && !err.contains("not hex"),
        "{err}"
    );
}

#[test]
fn partner_and_binding_mistakes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        "partners:\n\
         \x20 acme:\n    routes: [no-such-route]\n\
         \x20 globex:\n    allow_ips: [10.0.0.1/8]\n\
         \x20 Bad_Id:\n    scopes: [x]\n\
         \x20 initech:\n    allow_ips: [not-an-ip]\n\
         upstreams:\n  up:\n    url: http://127.0.0.1:9\n\
         routes:\n\
         \x20 - name: one\n    methods: [GET]\n    path: /one/{id}\n    upstream: up\n    bind:\n      path: partner\n\
         \x20 - name: two\n    methods: [POST]\n    path: /two\n    upstream: up\n    bind:\n      body: partner\n\
         \x20 - name: three\n    methods: [GET]\n    path: /three\n    upstream: up\n    response_bind: /a~2\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policies/b.yaml"),
        "partners:\n  acme: {}\n",
    )
    .unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    for expected in [
        "partners.acme.routes: no route named \"no-such-route\"",
        "partners.globex.allow_ips: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
        "partners.Bad_Id: partner ids are 1-64 characters",
        "partners.initech.allow_ips: \"not-an-ip\" is not an IP address or CIDR network",
        "routes[0].bind.path: the path template has no parameter {partner}",
        "routes[1].bind.body: a JSON pointer starts with '/'",
        "routes[2].response_bind: bad escape in JSON pointer",
        "policies/b.yaml:2: partners.acme: partner is also defined in",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn schema_mistakes_are_reported_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    std::fs::write(
        dir.path().join("schemas/remote.json"),
        r#"{"$ref": "https://schemas.example.com/order.json"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("schemas/broken.json"), r#"{"type": 5}"#).unwrap();
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        "partners:\n  acme: {}\n\
         upstreams:\n  up:\n    url: http://127.0.0.1:9\n\
         routes:\n\
         \x20 - name: remote\n    methods: [POST]\n    path: /a\n    upstream: up\n    validate:\n      body: remote.json\n\
         \x20 - name: broken\n    methods: [POST]\n    path: /b\n    upstream: up\n    validate:\n      body: broken.json\n\
         \x20 - name: missing\n    methods: [POST]\n    path: /c\n    upstream: up\n    validate:\n      body: nowhere.json\n\
         \x20 - name: escape\n    methods: [POST]\n    path: /d\n    upstream: up\n    validate:\n      body: ../portcullis.yaml\n\
         \x20 - name: path\n    methods: [GET]\n    path: /e/{id}\n    upstream: up\n    validate:\n      path:\n        properties:\n          ident: {type: string}\n\
         \x20 - name: headers\n    methods: [GET]\n    path: /f\n    upstream: up\n    validate:\n      headers:\n        properties:\n          X-Version: {type: integer}\n",
    )
    .unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    for expected in [
        "routes[0].validate.body: ",
        "is not fetched; put the schema in the schemas directory",
        "routes[1].validate.body: ",
        "routes[2].validate.body: cannot read",
        "routes[3].validate.body: ",
        "is outside the schemas directory",
        "routes[4].validate.path: the schema names \"ident\", which the path template does not have",
        "routes[5].validate.headers: header properties are matched in lower case",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn openapi_import_mistakes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    let doc =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/orders-upstream/openapi.yaml");
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        format!(
            "upstreams:\n  up:\n    url: http://127.0.0.1:9\n\
             openapi:\n  - file: {}\n    upstream: up\n    operations: [listOrders, deleteEverything]\n\
             \x20 - file: missing.yaml\n    upstream: up\n",
            doc.display()
        ),
    )
    .unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    for expected in [
        "policies/a.yaml:5: openapi: no operation \"deleteEverything\" in the document",
        "openapi: cannot read",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_bad_assertion_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/*.yaml");
    write_gateway(dir.path(), shipped.to_str().unwrap());
    std::fs::write(dir.path().join("identity.pem"), "not a key").unwrap();
    let mut yaml = std::fs::read_to_string(dir.path().join("portcullis.yaml")).unwrap();
    yaml.push_str("identity:\n  assertion:\n    algorithm: ed25519\n    key_file: identity.pem\n");
    std::fs::write(dir.path().join("portcullis.yaml"), yaml).unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("identity.assertion.key_file: identity.pem has no PEM PRIVATE KEY block"),
        "{err}"
    );
}

#[test]
fn the_cli_writes_a_store_named_relative_to_the_working_directory() {
    // `--config portcullis.yaml` run from its directory makes the store path
    // the bare name `keys.json`, whose parent directory is empty.
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/*.yaml");
    write_gateway(dir.path(), shipped.to_str().unwrap());
    let (code, out, err) = keys_cli(dir.path(), &["create", "--partner", "acme"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(dir.path().join("keys.json").exists());
}

#[test]
fn monitoring_and_rate_limit_mistakes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    let mut gateway = std::fs::read_to_string(dir.path().join("portcullis.yaml")).unwrap();
    gateway.push_str(
        "audit:\n  output: file\n  path: missing-dir/audit.log\n  sample_allowed: 2\n  chain_key_file: short-key\n\
         abuse:\n  anomaly:\n    factor: 0.5\n",
    );
    std::fs::write(dir.path().join("portcullis.yaml"), gateway).unwrap();
    std::fs::write(dir.path().join("short-key"), "too short").unwrap();
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        "partners:\n  acme:\n    limits:\n      rate: { requests: 0, per: 1m }\n\
         upstreams:\n  orders:\n    url: http://127.0.0.1:9\n\
         routes:\n  - name: one\n    methods: [GET]\n    path: /one\n    upstream: orders\n    rate_limit: { requests: 5, per: 0s }\n",
    )
    .unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    for expected in [
        "portcullis.yaml: audit.sample_allowed: must be between 0 and 1",
        "portcullis.yaml: abuse.anomaly.factor: must be greater than 1",
        "policies/a.yaml:3: partners.acme.limits.rate: requests must be at least 1",
        "policies/a.yaml:9: routes[0].rate_limit: per must be greater than 0",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // Start-up resources are checked once the configuration itself is sound.
    let gateway = std::fs::read_to_string(dir.path().join("portcullis.yaml"))
        .unwrap()
        .replace("  sample_allowed: 2\n", "")
        .replace("abuse:\n  anomaly:\n    factor: 0.5\n", "");
    std::fs::write(dir.path().join("portcullis.yaml"), gateway).unwrap();
    std::fs::remove_file(dir.path().join("policies/a.yaml")).unwrap();
    std::fs::write(dir.path().join("policies/a.yaml"), "routes: []\n").unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("audit.chain_key_file: ") && err.contains("at least 32 bytes"),
        "{err}"
    );
    assert!(err.contains("audit.path: directory of"), "{err}");
}

/// Validates YAML against one of the shipped configuration schemas.
fn schema_accepts(which: &str, yaml: &str) -> Result<(), String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/portcullis")
        .join(format!("{which}.json"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[test]
fn the_shipped_examples_satisfy_the_configuration_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    schema_accepts("gateway", &read("examples/portcullis.yaml")).unwrap();
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        schema_accepts("policy", &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    // Editors find the schema through the modeline the examples carry.
    assert!(read("examples/portcullis.yaml")
        .starts_with("# yaml-language-server: $schema=../schemas/portcullis/gateway.json"));
    assert!(read("policies/orders.yaml")
        .starts_with("# yaml-language-server: $schema=../schemas/portcullis/policy.json"));
}

#[test]
fn check_and_the_configuration_schemas_agree_on_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    let base_gateway = std::fs::read_to_string(dir.path().join("portcullis.yaml")).unwrap();
    let base_policy = "partners:\n  acme: {}\nupstreams:\n  orders:\n    url: http://127.0.0.1:9\n\
                       routes:\n  - name: one\n    methods: [GET]\n    path: /one\n    upstream: orders\n";
    let check = |gateway: &str, policy: &str| {
        std::fs::write(dir.path().join("portcullis.yaml"), gateway).unwrap();
        std::fs::write(dir.path().join("policies/a.yaml"), policy).unwrap();
        let (code, _, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
        (code, err)
    };
    // Both accept the sound files.
    let (code, err) = check(&base_gateway, base_policy);
    assert_eq!(code, 0, "{err}");
    schema_accepts("gateway", &base_gateway).unwrap();
    schema_accepts("policy", base_policy).unwrap();

    let broken_gateways = [
        (
            "an unknown field",
            format!("{base_gateway}listn:\n  https: 0.0.0.0:8443\n"),
        ),
        (
            "a wrong type",
            format!("{base_gateway}http:\n  h2: maybe\n"),
        ),
        (
            "an unknown store",
            format!("{base_gateway}rate_limits:\n  store: memcached\n"),
        ),
        (
            "a duration that is not one",
            format!("{base_gateway}reload:\n  watch_interval: often\n"),
        ),
        (
            "an unknown audit output",
            format!("{base_gateway}audit:\n  output: syslog\n"),
        ),
        (
            "a missing tls section",
            base_gateway.replace(
                "tls:\n  certificate: cert.pem\n  private_key: key.pem\n",
                "",
            ),
        ),
    ];
    for (what, gateway) in &broken_gateways {
        let (code, err) = check(gateway, base_policy);
        assert_eq!(code, 1, "check accepted a gateway file with {what}");
        assert!(
            schema_accepts("gateway", gateway).is_err(),
            "the schema accepted a gateway file with {what} (check said: {err})"
        );
    }
    let broken_policies = [
        (
            "an unknown route field",
            base_policy.replace(
                "    upstream: orders\n",
                "    upstream: orders\n    timeout: 5s\n",
            ),
        ),
        ("methods as a string", base_policy.replace("[GET]", "GET")),
        (
            "an unknown partner status",
            base_policy.replace("acme: {}", "acme: {status: paused}"),
        ),
        (
            "a route without a path",
            base_policy.replace("    path: /one\n", ""),
        ),
        (
            "a negative rate",
            base_policy.replace(
                "acme: {}",
                "acme: {limits: {rate: {requests: -1, per: 1m}}}",
            ),
        ),
    ];
    for (what, policy) in &broken_policies {
        let (code, err) = check(&base_gateway, policy);
        assert_eq!(code, 1, "check accepted a policy with {what}");
        assert!(
            schema_accepts("policy", policy).is_err(),
            "the schema accepted a policy with {what} (check said: {err})"
        );
    }
}

#[test]
fn bad_target_settings_are_refused_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    for (extra, says) in [
        (
            "    targets: [\"orders\"]\n",
            "targets: \"orders\" is not host:port",
        ),
        (
            "    targets: [\"no-such-host.invalid:80\"]\n",
            "targets: cannot resolve no-such-host.invalid:80",
        ),
        (
            "    resolve_every: 10ms\n",
            "resolve_every: must be at least 100ms",
        ),
        (
            "    health_check: {path: healthz}\n",
            "health_check.path: must be an absolute path",
        ),
        (
            "    health_check: {interval: 1s, timeout: 2s}\n",
            "health_check.timeout: must be shorter than the interval",
        ),
        (
            "    ejection: {after_failures: 3, duration: 0s}\n",
            "ejection.duration: must be greater than 0",
        ),
        ("    balance: random\n", "unknown variant `random`"),
    ] {
        std::fs::write(
            dir.path().join("policies/orders.yaml"),
            crate::balancing::policy_with("http://127.0.0.1:9", extra),
        )
        .unwrap();
        let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
        assert_eq!(code, 1, "{extra} accepted: {err}");
        assert!(err.contains(says), "{extra}: expected {says:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_plaintext_collector_across_the_network_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), DEFAULT_PARTNERS).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    let gateway = dir.path().join("portcullis.yaml");
    let mut yaml = std::fs::read_to_string(&gateway).unwrap();
    yaml.push_str(
        "traces:\n  endpoint: http://collector.internal:4318/v1/traces\n  sample_ratio: 2\n",
    );
    std::fs::write(&gateway, yaml).unwrap();
    let (code, out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    let text = format!("{out}{err}");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("traces.endpoint") && text.contains("plaintext"),
        "{text}"
    );
    assert!(text.contains("traces.sample_ratio"), "{text}");
}

#[test]
fn a_partner_listener_sharing_another_listeners_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), DEFAULT_PARTNERS).unwrap();
    write_gateway(dir.path(), "policies/*.yaml");
    let gateway = dir.path().join("portcullis.yaml");
    let yaml = std::fs::read_to_string(&gateway).unwrap();
    // The file names no admin address: the default one, taken twice.
    std::fs::write(
        &gateway,
        format!(
            "{yaml}partner_listener:\n  address: \"127.0.0.1:9901\"\n  rate: {{requests: 0, per: 1m}}\n"
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    let text = format!("{out}{err}");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("partner_listener.address") && text.contains("admin.address"),
        "{text}"
    );
    assert!(text.contains("partner_listener.rate"), "{text}");
}
