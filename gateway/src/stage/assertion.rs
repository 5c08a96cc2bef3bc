//! The signed identity assertion: a compact JWT (RFC 7519) stating which
//! partner a forwarded request is for, which request it is, and when it
//! was made, so an upstream can tell a request really passed the gateway
//! and was not replayed onto another path. EdDSA (Ed25519) lets upstreams
//! verify with the public key alone; HS256 is cheaper but shares a secret.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderName, HeaderValue};
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::Serialize;

use crate::config::model::{AssertionAlgorithm, AssertionSettings};

pub struct Signer {
    key: SigningKey,
    header_name: HeaderName,
    ttl_secs: u64,
    /// The encoded JOSE header, identical for every assertion.
    encoded_header: String,
}

enum SigningKey {
    Ed25519(Ed25519KeyPair),
    Hmac(ring::hmac::Key),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("header", &self.header_name)
            .finish_non_exhaustive()
    }
}

/// What one assertion states.
pub struct Claims<'a> {
    pub upstream: &'a str,
    pub partner: &'a str,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub issued_at: u64,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Body<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    exp: u64,
}

impl Signer {
    /// Loads the key named in the settings (already made absolute).
    pub fn load(settings: &AssertionSettings) -> Result<Signer, String> {
        let text = std::fs::read_to_string(&settings.key_file)
            .map_err(|e| format!("cannot read {}: {e}", settings.key_file.display()))?;
        let (key, kid_material, alg) = match settings.algorithm {
            AssertionAlgorithm::Ed25519 => {
                let der = pem_private_key(&settings.key_file, &text)?;
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| {
                    format!(
                        "{} is not an Ed25519 PKCS#8 private key (create one with `openssl genpkey -algorithm ed25519`)",
                        settings.key_file.display()
                    )
                })?;
                let public = pair.public_key().as_ref().to_vec();
                (SigningKey::Ed25519(pair), public, "EdDSA")
            }
            AssertionAlgorithm::HmacSha256 => {
                let mut secret = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| {
                    format!(
                        "{} must hold 64 hex characters (32 bytes)",
                        settings.key_file.display()
                    )
                })?;
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                (SigningKey::Hmac(key), secret.to_vec(), "HS256")
            }
        };
        let header_name = HeaderName::from_bytes(settings.header.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("{:?} is not a header name", settings.header))?;
        let kid = blake3::hash(&kid_material).to_hex()[..16].to_string();
        let header = serde_json::to_vec(&Header {
            alg,
            typ: "JWT",
            kid: &kid,
        })
        .map_err(|e| e.to_string())?;
        Ok(Signer {
            key,
            header_name,
            ttl_secs: settings.ttl.as_secs().max(1),
            encoded_header: URL_SAFE_NO_PAD.encode(header),
        })
    }

    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    /// The signed assertion, as a header value.
    pub fn sign(&self, claims: &Claims) -> Result<HeaderValue, String> {
        let body = serde_json::to_vec(&Body {
            iss: "portcullis",
            aud: claims.upstream,
            sub: claims.partner,
            jti: claims.request_id,
            htm: claims.method,
            htu: claims.path_and_query,
            iat: claims.issued_at,
            exp: claims.issued_at + self.ttl_secs,
        })
        .map_err(|e| e.to_string())?;
        let mut token = String::with_capacity(self.encoded_header.len() + body.len() * 2 + 100);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(body, &mut token);
        let signature = match &self.key {
            SigningKey::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
            SigningKey::Hmac(key) => ring::hmac::sign(key, token.as_bytes()).as_ref().to_vec(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        HeaderValue::from_str(&token).map_err(|e| e.to_string())
    }
}

/// The PKCS#8 `PRIVATE KEY` block of a PEM file, parsed by the same
/// rustls-pki-types reader as the TLS key; its errors never quote the file.
fn pem_private_key(path: &Path, text: &str) -> Result<Vec<u8>, String> {
    PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes())
        .map(|der| der.secret_pkcs8_der().to_vec())
        .map_err(|e| match e {
            pem::Error::NoItemsFound => format!("{} has no PEM PRIVATE KEY block", path.display()),
            _ => format!("{}: the PEM PRIVATE KEY block is malformed", path.display()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519};
    use std::time::Duration;

    fn claims() -> Claims<'static> {
        Claims {
            upstream: "orders",
            partner: "acme",
            request_id: "r-1",
            method: "GET",
            path_and_query: "/partners/acme/orders?limit=5",
            issued_at: 1_800_000_000,
        }
    }

    fn settings(dir: &Path, algorithm: AssertionAlgorithm, key: &str) -> AssertionSettings {
        let file = dir.join("key");
        std::fs::write(&file, key).unwrap();
        AssertionSettings {
            algorithm,
            key_file: file,
            header: "X-Portcullis-Assertion".into(),
            ttl: Duration::from_secs(60),
        }
    }

    fn parts(token: &HeaderValue) -> (String, Vec<u8>, serde_json::Value) {
        let text = token.to_str().unwrap();
        let (signed, sig) = text.rsplit_once('.').unwrap();
        let body = signed.split('.').nth(1).unwrap();
        let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        (
            signed.to_string(),
            URL_SAFE_NO_PAD.decode(sig).unwrap(),
            claims,
        )
    }

    #[test]
    fn ed25519_assertions_verify_with_the_public_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let signer = Signer::load(&settings(
            dir.path(),
            AssertionAlgorithm::Ed25519,
            &pair.serialize_pem(),
        ))
        .unwrap();
        let token = signer.sign(&claims()).unwrap();
        let (signed, sig, claims) = parts(&token);
        let public = UnparsedPublicKey::new(&ED25519, pair.public_key_raw());
        assert!(public.verify(signed.as_bytes(), &sig).is_ok());
        assert_eq!(claims["sub"], "acme");
        assert_eq!(claims["aud"], "orders");
        assert_eq!(claims["htu"], "/partners/acme/orders?limit=5");
        assert_eq!(claims["exp"], 1_800_000_060u64);
        let mut tampered = signed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(public.verify(&tampered, &sig).is_err());
    }

    #[test]
    fn hmac_assertions_verify_with_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "0f".repeat(32);
        let signer =
            Signer::load(&settings(dir.path(), AssertionAlgorithm::HmacSha256, &hex)).unwrap();
        let token = signer.sign(&claims()).unwrap();
        let (signed, sig, _) = parts(&token);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0x0f; 32]);
        assert!(ring::hmac::verify(&key, signed.as_bytes(), &sig).is_ok());
        assert!(ring::hmac::verify(&key, b"other", &sig).is_err());
    }

    #[test]
    fn bad_key_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            Signer::load(&settings(dir.path(), AssertionAlgorithm::HmacSha256, "abc")).unwrap_err();
        assert!(err.contains("64 hex characters"), "{err}");
        // A sign is not a hex digit, though `u8::from_str_radix` takes "+a".
        let signed = "+a".repeat(32);
        let err = Signer::load(&settings(
            dir.path(),
            AssertionAlgorithm::HmacSha256,
            &signed,
        ))
        .unwrap_err();
        assert!(err.contains("64 hex characters"), "{err}");
        let truncated = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n";
        let err = Signer::load(&settings(
            dir.path(),
            AssertionAlgorithm::Ed25519,
            truncated,
        ))
        .unwrap_err();
        assert!(err.contains("malformed"), "{err}");
        assert!(!err.contains("MC4CAQ"), "the error quotes the key: {err}");
        let err =
            Signer::load(&settings(dir.path(), AssertionAlgorithm::Ed25519, "nope")).unwrap_err();
        assert!(err.contains("no PEM PRIVATE KEY"), "{err}");
        let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let err =
            Signer::load(&settings(dir.path(), AssertionAlgorithm::Ed25519, &ec)).unwrap_err();
        assert!(err.contains("not an Ed25519"), "{err}");
    }
}
