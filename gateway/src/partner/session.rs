//! Console sessions: a signed cookie, so any node behind a load balancer
//! can check it without shared state. It names the partner, the hash of the
//! management credential that signed in, an expiry and a CSRF token, under
//! a MAC keyed from the pepper. Every request also checks that the
//! credential is still valid, so revoking it ends its sessions on every
//! node when the revocation returns; signing out clears the cookie.

use std::time::Duration;

use crate::keys::pepper::{KeyHash, Pepper};
use crate::keys::store::valid_label;

/// `__Host-`: the browser only accepts it over HTTPS, for this host, on `/`.
pub const COOKIE: &str = "__Host-portcullis-console";

pub struct Sessions {
    key: [u8; 32],
    ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub partner: String,
    pub credential: KeyHash,
    /// Unix seconds.
    pub expires_at: u64,
    /// Sent back by the page in `X-CSRF-Token` on every change.
    pub csrf: String,
}

impl Sessions {
    pub fn new(pepper: &Pepper, ttl: Duration) -> Sessions {
        Sessions {
            key: pepper.derive("portcullis 2026-12 console session"),
            ttl,
        }
    }

    fn mac(&self, body: &str) -> blake3::Hash {
        blake3::keyed_hash(&self.key, body.as_bytes())
    }

    /// A new session and its cookie value.
    pub fn issue(&self, partner: &str, credential: &KeyHash, now: u64) -> (String, Session) {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let session = Session {
            partner: partner.to_string(),
            credential: *credential,
            expires_at: now + self.ttl.as_secs(),
            csrf: hex::encode(nonce),
        };
        let body = format!(
            "{}.{}.{}.{}",
            session.partner,
            session.credential.to_hex(),
            session.expires_at,
            session.csrf
        );
        let value = format!("{body}.{}", self.mac(&body).to_hex());
        (value, session)
    }

    /// The session a cookie value carries, if it is ours and not expired.
    pub fn open(&self, value: &str, now: u64) -> Option<Session> {
        let (body, mac) = value.rsplit_once('.')?;
        let mac = blake3::Hash::from_hex(mac).ok()?;
        // blake3::Hash equality is constant-time.
        if self.mac(body) != mac {
            return None;
        }
        let mut parts = body.split('.');
        let (partner, credential, expires_at, csrf) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !valid_label(partner) {
            return None;
        }
        let expires_at: u64 = expires_at.parse().ok()?;
        if now >= expires_at {
            return None;
        }
        Some(Session {
            partner: partner.to_string(),
            credential: KeyHash::from_hex(credential)?,
            expires_at,
            csrf: csrf.to_string(),
        })
    }

    /// The `Set-Cookie` value for a new session.
    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            self.ttl.as_secs()
        )
    }
}

/// The `Set-Cookie` value that signs out.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The console cookie's value, when the request carries exactly one.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<&str> {
    let mut found = None;
    for header in headers.get_all(http::header::COOKIE) {
        for pair in header.to_str().ok()?.split(';') {
            if let Some(value) = pair
                .trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
            {
                if found.replace(value).is_some() {
                    // Two sessions in one request: which one is meant?
                    return None;
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_until_it_expires_and_not_when_altered() {
        let sessions = Sessions::new(&Pepper::from_bytes([4; 32]), Duration::from_secs(900));
        let credential = KeyHash(blake3::hash(b"credential"));
        let (value, session) = sessions.issue("acme", &credential, 1_000);
        assert_eq!(sessions.open(&value, 1_000), Some(session.clone()));
        assert_eq!(sessions.open(&value, 1_899), Some(session));
        assert_eq!(sessions.open(&value, 1_900), None, "expired");
        let forged = value.replacen("acme", "globex", 1);
        assert_eq!(sessions.open(&forged, 1_000), None, "another partner");
        let longer = value.replacen("1900", "9900", 1);
        assert_eq!(sessions.open(&longer, 1_000), None, "a later expiry");
        let other = Sessions::new(&Pepper::from_bytes([5; 32]), Duration::from_secs(900));
        assert_eq!(other.open(&value, 1_000), None, "another pepper");
        let cookie = sessions.set_cookie(&value);
        for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
    }

    #[test]
    fn exactly_one_console_cookie_is_read() {
        let mut h = http::HeaderMap::new();
        h.append(
            "cookie",
            "a=1; __Host-portcullis-console=v1".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h), Some("v1"));
        h.append("cookie", "__Host-portcullis-console=v2".parse().unwrap());
        assert_eq!(cookie_value(&h), None);
    }
}
