//! Partner isolation, the part that exists so far: a route whose path
//! template names a `{partner}` serves only the partner that authenticated,
//! and identity headers a client sends never reach the upstream.

use crate::problem::Reject;

pub const PARTNER_MISMATCH: Reject = Reject::new(
    403,
    "partner_mismatch",
    "The request names another partner's resource",
);

/// The path parameter that binds a route to the authenticated partner.
pub const PARTNER_PARAM: &str = "partner";

/// Checks the `{partner}` path parameter, if the route has one. The
/// comparison is exact: `ACME` is not `acme`.
pub fn check_path_binding(params: &[(String, String)], partner: &str) -> Result<(), Reject> {
    match params.iter().find(|(name, _)| name == PARTNER_PARAM) {
        Some((_, value)) if value != partner => Err(PARTNER_MISMATCH),
        _ => Ok(()),
    }
}

/// Headers through which a client could claim an identity or origin the
/// upstream might believe; they are removed before forwarding.
pub fn is_client_identity_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("x-partner-")
        || name.starts_with("x-forwarded-")
        || name == "forwarded"
        || name == "x-real-ip"
        || name == "x-client-ip"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(partner: &str) -> Vec<(String, String)> {
        vec![
            ("partner".into(), partner.into()),
            ("id".into(), "7".into()),
        ]
    }

    #[test]
    fn only_the_authenticated_partner_passes() {
        assert!(check_path_binding(&params("acme"), "acme").is_ok());
        assert_eq!(
            check_path_binding(&params("globex"), "acme"),
            Err(PARTNER_MISMATCH)
        );
        assert_eq!(
            check_path_binding(&params("ACME"), "acme"),
            Err(PARTNER_MISMATCH)
        );
        assert_eq!(
            check_path_binding(&params("acme "), "acme"),
            Err(PARTNER_MISMATCH)
        );
        assert!(check_path_binding(&[("id".into(), "7".into())], "acme").is_ok());
    }

    #[test]
    fn identity_headers_are_recognised() {
        for h in [
            "X-Partner-Id",
            "x-partner-role",
            "Forwarded",
            "X-Forwarded-For",
            "X-Real-IP",
        ] {
            assert!(is_client_identity_header(h), "{h}");
        }
        for h in ["x-request-id", "content-type", "x-partnerid"] {
            assert!(!is_client_identity_header(h), "{h}");
        }
    }
}
