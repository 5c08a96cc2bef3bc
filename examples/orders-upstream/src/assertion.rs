//! Verifying the gateway's identity assertion, the way any upstream
//! behind Portcullis can: with a stock JWT library, the gateway's public
//! key (or shared HMAC secret), and a few claim checks.

use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How this service checks that a request came through the gateway.
#[derive(Clone)]
pub struct AssertionCheck {
    key: DecodingKey,
    validation: Validation,
    header: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    htm: String,
    htu: String,
}

impl AssertionCheck {
    /// Verify EdDSA assertions with the gateway's Ed25519 public key (PEM).
    pub fn ed25519(public_key_pem: &[u8], audience: &str) -> Result<Self, String> {
        let key = DecodingKey::from_ed_pem(public_key_pem).map_err(|e| e.to_string())?;
        Ok(Self::new(key, Algorithm::EdDSA, audience))
    }

    /// Verify HS256 assertions with the shared 32-byte secret (64 hex characters).
    pub fn hmac_hex(secret_hex: &str, audience: &str) -> Result<Self, String> {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(secret_hex.trim(), &mut secret)
            .map_err(|_| "the secret must be 64 hex characters")?;
        Ok(Self::new(
            DecodingKey::from_secret(&secret),
            Algorithm::HS256,
            audience,
        ))
    }

    fn new(key: DecodingKey, algorithm: Algorithm, audience: &str) -> Self {
        // Only the configured algorithm: a token may not choose its own.
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["portcullis"]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
        validation.leeway = 5;
        AssertionCheck {
            key,
            validation,
            header: "x-portcullis-assertion".to_string(),
        }
    }

    /// The header carrying the assertion, if the gateway was told to use another.
    pub fn with_header(mut self, name: &str) -> Self {
        self.header = name.to_ascii_lowercase();
        self
    }

    /// Whether the request carries exactly one valid assertion for itself.
    pub fn verify(&self, parts: &Parts) -> Result<(), String> {
        let mut values = parts.headers.get_all(self.header.as_str()).iter();
        let token = values.next().ok_or("no assertion")?;
        if values.next().is_some() {
            return Err("more than one assertion".into());
        }
        let token = token.to_str().map_err(|_| "assertion is not text")?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| e.to_string())?;
        let claims = data.claims;
        // Bound to this exact request: a token lifted from another request
        // or path is worthless here.
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if claims.htm != parts.method.as_str() || claims.htu != target {
            return Err("assertion is for another request".into());
        }
        let mut segments = parts.uri.path().split('/');
        if let (Some(""), Some("partners"), Some(partner)) =
            (segments.next(), segments.next(), segments.next())
        {
            if partner != claims.sub {
                return Err("assertion is for another partner".into());
            }
        }
        Ok(())
    }
}
