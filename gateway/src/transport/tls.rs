//! Server TLS: the process-wide cipher policy, certificate loading with
//! clear errors (pingora panics on bad files, so we check first), and a
//! certificate resolver whose certificate can be replaced while serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// TLS 1.3 suites, and for TLS 1.2 only forward-secret (ECDHE) AEAD suites.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    }
}

/// pingora builds its rustls configs from the process default provider and
/// offers no cipher setter, so the policy is installed process-wide before
/// any listener is built. Installing twice is harmless.
pub fn install_crypto_policy() {
    let _ = provider().install_default();
}

pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| format!("{}: invalid certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The error from the PEM parser never includes key bytes.
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: no usable private key: {e}", path.display()))
}

/// A certificate and key that were checked to belong together and to be
/// currently valid.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Leaf `notAfter`, as a Unix timestamp (for the expiry metric).
    pub not_after: i64,
    pub subject: String,
}

pub fn load_cert(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, String> {
    let chain = read_certificates(cert_path)?;
    let key = read_private_key(key_path)?;
    let (not_before, not_after, subject) = {
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| format!("{}: invalid certificate: {e}", cert_path.display()))?;
        (
            leaf.validity().not_before.timestamp(),
            leaf.validity().not_after.timestamp(),
            leaf.subject().to_string(),
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if now > not_after {
        return Err(format!("{}: certificate has expired", cert_path.display()));
    }
    if now < not_before {
        return Err(format!(
            "{}: certificate is not valid yet",
            cert_path.display()
        ));
    }
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        format!(
            "{} and {} do not form a usable pair: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
        subject,
    })
}

/// Serves whichever certificate was loaded last; a swap affects new
/// handshakes only, so established connections are never dropped.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        CertResolver {
            current: ArcSwap::new(initial),
        }
    }

    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The paths the serving certificate is read from, for reloads.
#[derive(Debug, Clone)]
pub struct CertSource {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}
