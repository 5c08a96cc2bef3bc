//! Partner isolation: who may call at all, which routes, from where, and
//! that every place a request names a partner names the caller. Pure
//! functions over compiled policy; the body binding is checked in `inspect.rs`
//! once the body is read (JSON pointers in `body.rs`).

use std::collections::HashSet;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::stage::problem;
use crate::stage::problem::Reject;
use crate::stage::unambiguous::{self, NameRef};

/// The path parameter that binds a route to its partner unless the route
/// names another.
pub const PARTNER_PARAM: &str = "partner";

/// A partner as compiled from policy.
#[derive(Debug)]
pub struct Partner {
    pub id: String,
    pub suspended: bool,
    pub scopes: HashSet<String>,
    pub routes: Option<HashSet<String>>,
    pub allow_ips: Option<Vec<IpNet>>,
    pub max_concurrent: Option<u32>,
    /// Requests over all routes.
    pub rate: Option<crate::limits::Rate>,
    /// Whether its data keys may regenerate themselves (once each).
    pub self_rotation: bool,
}

/// Partner-level checks, before any route is considered.
pub fn admit_partner(partner: Option<&Partner>, client: Option<IpAddr>) -> Result<(), Reject> {
    let partner = partner.ok_or(problem::PARTNER_UNKNOWN)?;
    if partner.suspended {
        return Err(problem::PARTNER_SUSPENDED);
    }
    if let Some(nets) = &partner.allow_ips {
        // An address we cannot see (a Unix socket) is not in any network.
        let allowed = client.is_some_and(|ip| {
            let ip = canonical_ip(ip);
            nets.iter().any(|n| n.contains(&ip))
        });
        if !allowed {
            return Err(problem::IP_NOT_ALLOWED);
        }
    }
    Ok(())
}

/// IPv4 clients on a dual-stack socket arrive as `::ffff:a.b.c.d`; an
/// allow-list written as IPv4 must still match them.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the partner may use a route with these scopes and this name.
pub fn admit_route(partner: &Partner, route_name: &str, scopes: &[String]) -> Result<(), Reject> {
    if let Some(routes) = &partner.routes {
        if !routes.contains(route_name) {
            return Err(problem::ROUTE_NOT_PERMITTED);
        }
    }
    if !scopes.iter().all(|s| partner.scopes.contains(s)) {
        return Err(problem::SCOPE_DENIED);
    }
    Ok(())
}

/// Where a route finds the partner a request is for (compiled `bind:`).
#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub path: Option<String>,
    pub query: Option<String>,
    pub header: Option<HeaderName>,
    /// JSON pointer into the request body, checked once the body is read.
    pub body: Option<crate::stage::body::Pointer>,
}

impl Binding {
    pub fn needs_body(&self) -> bool {
        self.body.is_some()
    }
}

/// Checks the path, query and header bindings. Every occurrence must name
/// the caller exactly (`ACME` is not `acme`); a binding the route declares
/// but the request lacks is a 400.
pub fn check_bindings(
    binding: &Binding,
    params: &[(String, String)],
    query: Option<&str>,
    headers: &HeaderMap,
    partner: &str,
) -> Result<(), Reject> {
    if let Some(name) = &binding.path {
        match params.iter().find(|(n, _)| n == name) {
            Some((_, value)) if value == partner => {}
            Some(_) => return Err(problem::PARTNER_MISMATCH),
            None => return Err(problem::BINDING_MISSING),
        }
    }
    if let Some(name) = &binding.query {
        check_query(name, query, partner)?;
    }
    if let Some(name) = &binding.header {
        let mut seen = false;
        for value in headers.get_all(name) {
            if value.as_bytes() != partner.as_bytes() {
                return Err(problem::PARTNER_MISMATCH);
            }
            if seen {
                // Go lists both, ASP.NET joins them: no one value is read.
                return Err(problem::BINDING_AMBIGUOUS);
            }
            seen = true;
        }
        if !seen {
            return Err(problem::BINDING_MISSING);
        }
    }
    Ok(())
}

/// Upstream frameworks disagree on query parsing: some take the first of
/// repeated parameters, some the last, some match names without regard to
/// case or split on `;` too, and PHP, Rack and qs read `partner[]`,
/// `partner[0]` or `partner[$ne]` as (a structure under) `partner`. So every
/// plainly spelled candidate must name the caller, and any spelling only a
/// framework would map onto the bound name is refused outright.
fn check_query(name: &str, query: Option<&str>, partner: &str) -> Result<(), Reject> {
    check_params(name, query.unwrap_or(""), partner, true)
}

/// The same rule over a form body, which PHP's `$_REQUEST`, Rails' `params`
/// and Express's merged parameters read beside the query. Absence is fine
/// here: the query carries the binding.
pub fn check_form_params(name: &str, body: &str, partner: &str) -> Result<(), Reject> {
    check_params(name, body, partner, false)
}

fn check_params(name: &str, pairs: &str, partner: &str, required: bool) -> Result<(), Reject> {
    let mut seen = false;
    for pair in pairs.split(['&', ';']) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        match unambiguous::name_ref(&unambiguous::decode_component(raw_key), name) {
            NameRef::Other => continue,
            NameRef::Alias => return Err(problem::BINDING_AMBIGUOUS),
            NameRef::Plain => {}
        }
        if unambiguous::decode_component(raw_value) != partner {
            return Err(problem::PARTNER_MISMATCH);
        }
        if seen {
            // qs makes a repeat an array, PHP takes the last, Flask the first.
            return Err(problem::BINDING_AMBIGUOUS);
        }
        seen = true;
    }
    if seen || !required {
        Ok(())
    } else {
        Err(problem::BINDING_MISSING)
    }
}

/// Request headers through which a client could claim an identity or
/// origin; compiled from `identity.strip_headers`.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl IdentityHeaders {
    pub fn new(patterns: &[String]) -> IdentityHeaders {
        let mut exact = HashSet::new();
        let mut prefixes = Vec::new();
        for p in patterns {
            // CGI and WSGI read `_` as `-`: a pattern means both spellings.
            let p = p.to_ascii_lowercase().replace('_', "-");
            match p.strip_suffix('*') {
                Some(prefix) => prefixes.push(prefix.to_string()),
                None => {
                    exact.insert(p);
                }
            }
        }
        IdentityHeaders { exact, prefixes }
    }

    /// `name` is a lower-case header name, as `http` stores them.
    pub fn matches(&self, name: &str) -> bool {
        self.exact.contains(name) || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn partner() -> Partner {
        Partner {
            id: "acme".into(),
            suspended: false,
            scopes: ["orders:read".to_string()].into(),
            routes: None,
            allow_ips: None,
            max_concurrent: None,
            rate: None,
            self_rotation: false,
        }
    }

    fn params(partner: &str) -> Vec<(String, String)> {
        vec![
            ("partner".into(), partner.into()),
            ("id".into(), "7".into()),
        ]
    }

    fn path_binding() -> Binding {
        Binding {
            path: Some("partner".into()),
            ..Binding::default()
        }
    }

    #[test]
    fn path_binding_accepts_only_the_caller() {
        let h = HeaderMap::new();
        let b = path_binding();
        assert!(check_bindings(&b, &params("acme"), None, &h, "acme").is_ok());
        for other in ["globex", "ACME", "acme ", "acme."] {
            assert_eq!(
                check_bindings(&b, &params(other), None, &h, "acme"),
                Err(problem::PARTNER_MISMATCH),
                "{other}"
            );
        }
        assert_eq!(
            check_bindings(&b, &[("id".into(), "7".into())], None, &h, "acme"),
            Err(problem::BINDING_MISSING)
        );
    }

    #[test]
    fn every_query_candidate_must_name_the_caller() {
        let h = HeaderMap::new();
        let b = Binding {
            query: Some("partner".into()),
            ..Binding::default()
        };
        let check = |q: Option<&str>| check_bindings(&b, &[], q, &h, "acme");
        assert!(check(Some("partner=acme&limit=5")).is_ok());
        assert_eq!(
            check(Some("partner=acme&partner=acme")),
            Err(problem::BINDING_AMBIGUOUS)
        );
        assert!(check(Some("partner=%61cme")).is_ok());
        for q in [
            "partner=globex",
            "partner=acme&partner=globex",
            "partner=globex&partner=acme",
            "p%61rtner=globex&partner=acme",
            "partner=acme;partner=globex",
            "partner=acme+",
            "partner=",
            "partner",
            "partner=%FF",
        ] {
            assert_eq!(check(Some(q)), Err(problem::PARTNER_MISMATCH), "{q}");
        }
        for q in [
            "Partner=globex&partner=acme",
            "PARTNER=acme",
            "partner=acme&partner[]=globex",
            "partner=acme&partner%5B%5D=globex",
            "partner=acme&partner[0]=globex",
            "partner[$ne]=acme",
            "partner[]=acme",
            "partner=acme&partner.x=globex",
            "partner=acme&%20partner=globex",
        ] {
            assert_eq!(check(Some(q)), Err(problem::BINDING_AMBIGUOUS), "{q}");
        }
        assert_eq!(check(None), Err(problem::BINDING_MISSING));
        assert_eq!(check(Some("limit=5")), Err(problem::BINDING_MISSING));
        assert!(check_form_params("partner", "sku=A&partner=acme", "acme").is_ok());
        assert!(check_form_params("partner", "sku=A", "acme").is_ok());
        assert_eq!(
            check_form_params("partner", "partner=globex", "acme"),
            Err(problem::PARTNER_MISMATCH)
        );
        assert_eq!(
            check_form_params("partner", "partner[]=acme", "acme"),
            Err(problem::BINDING_AMBIGUOUS)
        );
    }

    #[test]
    fn every_header_value_must_name_the_caller() {
        let b = Binding {
            header: Some(HeaderName::from_static("x-account")),
            ..Binding::default()
        };
        let mut h = HeaderMap::new();
        assert_eq!(
            check_bindings(&b, &[], None, &h, "acme"),
            Err(problem::BINDING_MISSING)
        );
        h.append("x-account", HeaderValue::from_static("acme"));
        assert!(check_bindings(&b, &[], None, &h, "acme").is_ok());
        let mut twice = h.clone();
        twice.append("x-account", HeaderValue::from_static("acme"));
        assert_eq!(
            check_bindings(&b, &[], None, &twice, "acme"),
            Err(problem::BINDING_AMBIGUOUS)
        );
        h.append("x-account", HeaderValue::from_static("globex"));
        assert_eq!(
            check_bindings(&b, &[], None, &h, "acme"),
            Err(problem::PARTNER_MISMATCH)
        );
        let mut folded = HeaderMap::new();
        folded.append("x-account", HeaderValue::from_static("acme, globex"));
        assert_eq!(
            check_bindings(&b, &[], None, &folded, "acme"),
            Err(problem::PARTNER_MISMATCH)
        );
    }

    #[test]
    fn partner_admission() {
        let mut p = partner();
        assert_eq!(admit_partner(None, None), Err(problem::PARTNER_UNKNOWN));
        assert!(admit_partner(Some(&p), None).is_ok());
        p.allow_ips = Some(vec!["10.0.0.0/8".parse().unwrap()]);
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let outside: IpAddr = "192.168.1.1".parse().unwrap();
        assert!(admit_partner(Some(&p), Some(inside)).is_ok());
        assert!(admit_partner(Some(&p), Some(mapped)).is_ok());
        assert_eq!(
            admit_partner(Some(&p), Some(outside)),
            Err(problem::IP_NOT_ALLOWED)
        );
        assert_eq!(admit_partner(Some(&p), None), Err(problem::IP_NOT_ALLOWED));
        p.suspended = true;
        assert_eq!(
            admit_partner(Some(&p), Some(inside)),
            Err(problem::PARTNER_SUSPENDED)
        );
    }

    #[test]
    fn route_admission() {
        let mut p = partner();
        assert!(admit_route(&p, "list", &["orders:read".into()]).is_ok());
        assert!(admit_route(&p, "list", &[]).is_ok());
        assert_eq!(
            admit_route(&p, "create", &["orders:read".into(), "orders:write".into()]),
            Err(problem::SCOPE_DENIED)
        );
        p.routes = Some(["list".to_string()].into());
        assert_eq!(
            admit_route(&p, "other", &[]),
            Err(problem::ROUTE_NOT_PERMITTED)
        );
    }

    #[test]
    fn identity_headers_are_recognised() {
        let ids = IdentityHeaders::new(&[
            "X-Partner-*".into(),
            "forwarded".into(),
            "x-forwarded-*".into(),
            "x-real-ip".into(),
        ]);
        for h in [
            "x-partner-id",
            "x-partner-role",
            "forwarded",
            "x-forwarded-for",
            "x-real-ip",
        ] {
            assert!(ids.matches(h), "{h}");
        }
        for h in ["x-request-id", "content-type", "x-partnerid", "forwarded-x"] {
            assert!(!ids.matches(h), "{h}");
        }
    }
}
