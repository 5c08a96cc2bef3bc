//! The `partner_listener:` settings: where partners manage their own keys
//! with their management credential, apart from the data listener (where
//! keys are used) and the admin listener (where operators work).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::monitoring::RateSpec;

/// The partner listener. Partners sign in there with a management
/// credential (`ptc_mgmt_…`, issued by an operator with `portcullis keys
/// create --management`) to list, create, regenerate and revoke their own
/// data keys. A data key is never accepted there, and a management
/// credential is never accepted anywhere else.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerListenerSettings {
    /// Address of the partner listener: HTTPS with the gateway's certificate
    /// and cipher policy, on its own port. It must differ from the data,
    /// admin, metrics and plaintext addresses.
    ///
    /// Default: none, no partner listener.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// Requests one client address may make to the partner listener on this
    /// node; more get 429 `rate_limited`. Failed sign-ins also count towards
    /// `abuse.auth_failures`, like failed API keys.
    ///
    /// Default: 300 per minute, in bursts of up to 60 (a console page and
    /// each action in it are a few calls).
    #[serde(default = "default_rate")]
    pub rate: RateSpec,
    /// Longest time the partner listener waits for a request's body.
    ///
    /// Default: `10s`.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub body_timeout: Duration,
    /// How long a console session lasts after signing in (absolute, not
    /// renewed by use).
    ///
    /// Default: `15m`.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub session_ttl: Duration,
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_rate() -> RateSpec {
    RateSpec {
        requests: 300,
        per: Duration::from_secs(60),
        burst: Some(60),
    }
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for PartnerListenerSettings {
    fn default() -> Self {
        PartnerListenerSettings {
            address: None,
            rate: default_rate(),
            body_timeout: default_body_timeout(),
            session_ttl: default_session_ttl(),
        }
    }
}

/// Mistakes `portcullis check` reports, by field.
pub fn problems(
    settings: &PartnerListenerSettings,
    others: &[(&'static str, Option<SocketAddr>)],
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(msg) = super::monitoring::rate_problem(&settings.rate) {
        out.push(("partner_listener.rate", msg.to_string()));
    }
    if settings.session_ttl.as_secs() == 0 {
        out.push((
            "partner_listener.session_ttl",
            "must be at least 1s".to_string(),
        ));
    }
    if settings.body_timeout.is_zero() {
        out.push((
            "partner_listener.body_timeout",
            "must be greater than 0".to_string(),
        ));
    }
    if let Some(address) = settings.address {
        for (name, other) in others {
            if *other == Some(address) {
                out.push((
                    "partner_listener.address",
                    format!("{address} is also {name}; the partner listener needs its own"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_is_off_by_default_and_must_have_its_own_address() {
        assert_eq!(PartnerListenerSettings::default().address, None);
        let shared: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let settings = PartnerListenerSettings {
            address: Some(shared),
            ..PartnerListenerSettings::default()
        };
        let found = problems(&settings, &[("listen.https", Some(shared))]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "partner_listener.address");
        assert!(found[0].1.contains("listen.https"), "{found:?}");
        assert!(problems(&settings, &[("admin.address", None)]).is_empty());
    }
}
