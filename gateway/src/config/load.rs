//! Reading the YAML files: parse errors with file and line, and paths made
//! absolute to the file that names them.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::error::{ConfigError, ConfigErrors};
use super::model::GatewayFile;

pub fn parse_yaml<T: DeserializeOwned>(path: &Path, errors: &mut ConfigErrors) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(
                path,
                None,
                "file",
                format!("cannot read: {e}"),
            ));
            return None;
        }
    };
    match serde_saphyr::from_str::<T>(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().map(|l| l.line());
            errors.push(ConfigError::new(
                path,
                line,
                "yaml",
                e.without_snippet().to_string(),
            ));
            None
        }
    }
}

/// Relative paths in a file are relative to that file's directory.
pub fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Parses the gateway file alone, with its paths made absolute to it.
pub fn load_settings(config_path: &Path) -> Result<GatewayFile, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let Some(mut settings) = parse_yaml::<GatewayFile>(config_path, &mut errors) else {
        return Err(errors);
    };
    // Absolute, so file URLs made from these paths (schema `$ref`s) are
    // well-formed whatever the working directory.
    let parent = config_path.parent().unwrap_or(Path::new("."));
    let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    settings.tls.certificate = resolve_path(&base, &settings.tls.certificate);
    settings.tls.private_key = resolve_path(&base, &settings.tls.private_key);
    settings.keys.path = resolve_path(&base, &settings.keys.path);
    if let Some(p) = settings.ownership.path.as_mut() {
        *p = resolve_path(&base, p);
    }
    settings.schemas = resolve_path(&base, &settings.schemas);
    if let Some(a) = settings.identity.assertion.as_mut() {
        a.key_file = resolve_path(&base, &a.key_file);
    }
    settings.server.pid_file = resolve_path(&base, &settings.server.pid_file);
    settings.server.upgrade_sock = resolve_path(&base, &settings.server.upgrade_sock);
    settings.keys.pepper_file = settings
        .keys
        .pepper_file
        .as_ref()
        .map(|p| resolve_path(&base, p));
    settings.admin.token_file = settings
        .admin
        .token_file
        .as_ref()
        .map(|p| resolve_path(&base, p));
    settings.audit.path = resolve_path(&base, &settings.audit.path);
    settings.audit.chain_key_file = settings
        .audit
        .chain_key_file
        .as_ref()
        .map(|p| resolve_path(&base, p));
    for p in [&mut settings.traces.ca, &mut settings.traces.headers_file]
        .into_iter()
        .flatten()
    {
        *p = resolve_path(&base, p);
    }
    settings.keys.header = settings.keys.header.to_ascii_lowercase();
    if http::HeaderName::from_bytes(settings.keys.header.as_bytes()).is_err() {
        errors.push(ConfigError::new(
            config_path,
            None,
            "keys.header",
            "not a valid header name",
        ));
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}
