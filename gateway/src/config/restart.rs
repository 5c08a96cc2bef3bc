//! Which gateway-file settings a reload applies and which need a restart.
//!
//! A reload compiles a new [`Plan`](super::Plan) and swaps it in; whatever
//! the running process built once at start (listeners, threads, the key
//! store, the audit writer, the metrics registry, the limiter, the abuse
//! tracker) is not rebuilt. A reload that changes such a setting is
//! refused, naming the setting, so an edit is never silently ignored.
//!
//! The classification is [`settings`]: it destructures every section of
//! the gateway file without `..`, so a new field does not compile until
//! it is classified here; the reload check and `portcullis check
//! --reload` both read it.

use super::model::{Admin, GatewayFile, HttpSettings, Listen, TlsFiles};

/// When a change to a setting takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// The next reload (SIGHUP or the file watch) applies it.
    OnReload,
    /// Only a restart (or a zero-downtime upgrade) applies it; a reload
    /// that changes it is refused.
    OnRestart,
}

/// One setting: its name in the gateway file, when it applies, and its
/// value (as text, to compare two loads).
pub struct Setting {
    pub name: &'static str,
    pub applies: Applies,
    pub value: String,
}

fn setting(name: &'static str, applies: Applies, value: &impl std::fmt::Debug) -> Setting {
    Setting {
        name,
        applies,
        value: format!("{value:?}"),
    }
}

/// Every setting of the gateway file, classified.
pub fn settings(file: &GatewayFile) -> Vec<Setting> {
    use Applies::{OnReload, OnRestart};
    let GatewayFile {
        listen,
        admin,
        tls,
        http,
        policies,
        keys,
        ownership,
        reload,
        server,
        identity,
        schemas,
        response,
        audit,
        metrics,
        rate_limits,
        abuse,
        traces,
        partner_listener,
    } = file;
    let Listen {
        https,
        plaintext,
        redirect_port,
        proxy_protocol,
    } = listen;
    let Admin {
        address,
        token_file,
    } = admin;
    let TlsFiles {
        certificate,
        private_key,
        hsts,
    } = tls;
    let HttpSettings {
        header_timeout,
        body_timeout,
        client_io_timeout,
        keepalive_timeout,
        max_header_bytes,
        max_uri_bytes,
        trust_request_id,
        h2,
        override_headers,
        trusted_proxies,
        client_ip_header,
    } = http;
    let policies: Vec<&String> = policies.iter().map(|p| &p.value).collect();
    vec![
        setting("listen.https", OnRestart, https),
        setting("listen.plaintext", OnRestart, plaintext),
        setting("listen.redirect_port", OnRestart, redirect_port),
        setting("listen.proxy_protocol", OnRestart, proxy_protocol),
        setting("admin.address", OnRestart, address),
        setting("admin.token_file", OnRestart, token_file),
        // The files' contents reload (new handshakes use them); their paths do not.
        setting("tls.certificate", OnRestart, certificate),
        setting("tls.private_key", OnRestart, private_key),
        setting("tls.hsts", OnReload, hsts),
        setting("http.header_timeout", OnRestart, header_timeout),
        setting("http.body_timeout", OnReload, body_timeout),
        setting("http.client_io_timeout", OnReload, client_io_timeout),
        // HTTP/2's idle timeout is set on the listener at start.
        setting("http.keepalive_timeout", OnRestart, keepalive_timeout),
        setting("http.max_header_bytes", OnReload, max_header_bytes),
        setting("http.max_uri_bytes", OnReload, max_uri_bytes),
        setting("http.trust_request_id", OnReload, trust_request_id),
        setting("http.h2", OnRestart, h2),
        setting("http.override_headers", OnReload, override_headers),
        setting("http.trusted_proxies", OnReload, trusted_proxies),
        setting("http.client_ip_header", OnReload, client_ip_header),
        setting("policies", OnReload, &policies),
        setting("keys", OnRestart, keys),
        setting("ownership", OnRestart, ownership),
        setting("reload", OnRestart, reload),
        setting("server", OnRestart, server),
        setting("identity", OnReload, identity),
        setting("schemas", OnReload, schemas),
        setting("response", OnReload, response),
        setting("audit", OnRestart, audit),
        setting("metrics", OnRestart, metrics),
        setting("rate_limits", OnRestart, rate_limits),
        setting("abuse", OnRestart, abuse),
        setting("traces", OnRestart, traces),
        setting("partner_listener", OnRestart, partner_listener),
    ]
}

/// The settings a reload from `running` to `loaded` would change but
/// cannot apply.
pub fn restart_needed(running: &GatewayFile, loaded: &GatewayFile) -> Vec<&'static str> {
    settings(running)
        .into_iter()
        .zip(settings(loaded))
        .filter(|(old, new)| old.applies == Applies::OnRestart && old.value != new.value)
        .map(|(old, _)| old.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(extra: &str) -> GatewayFile {
        let text = format!("tls:\n  certificate: c.pem\n  private_key: k.pem\n{extra}");
        serde_saphyr::from_str(&text).unwrap()
    }

    #[test]
    fn unchanged_settings_need_nothing() {
        assert!(restart_needed(&file(""), &file("")).is_empty());
    }

    #[test]
    fn startup_settings_are_named() {
        let changed = file(
            "audit:\n  path: other.log\nabuse:\n  auth_failures:\n    per_client: 3\n\
             http:\n  header_timeout: 3s\n  body_timeout: 9s\n",
        );
        assert_eq!(
            restart_needed(&file(""), &changed),
            vec!["http.header_timeout", "audit", "abuse"]
        );
    }

    #[test]
    fn reloadable_settings_need_no_restart() {
        let changed: GatewayFile = serde_saphyr::from_str(
            "tls:\n  certificate: c.pem\n  private_key: k.pem\n  hsts: max-age=1\n\
             http:\n  override_headers: [x-rewrite-me]\nresponse:\n  block_secrets: false\n",
        )
        .unwrap();
        assert!(restart_needed(&file(""), &changed).is_empty());
    }

    #[test]
    fn every_setting_has_one_name() {
        let all = settings(&file(""));
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
