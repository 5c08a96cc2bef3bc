//! Route matching on the canonical path: method(s) + path template →
//! route. Unmatched paths are 404, a known path with another method 405.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use crate::stage::problem::{self, Reject};

/// What a matched request learns: the route and its path parameters.
#[derive(Debug)]
pub struct Matched<'a, R> {
    pub route: &'a Arc<R>,
    pub params: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NoPath,
    /// The path exists for other methods; lists them for `Allow`.
    Method(Vec<Method>),
}

/// Routes sharing one path template, told apart by method.
#[derive(Debug)]
struct ByMethod<R> {
    routes: HashMap<Method, Arc<R>>,
}

#[derive(Debug)]
pub struct Router<R> {
    paths: matchit::Router<usize>,
    entries: Vec<ByMethod<R>>,
    templates: HashMap<String, usize>,
}

impl<R> Default for Router<R> {
    fn default() -> Self {
        Router {
            paths: matchit::Router::new(),
            entries: Vec::new(),
            templates: HashMap::new(),
        }
    }
}

impl<R> Router<R> {
    /// Adds a route; fails with a human-readable reason if the template is
    /// invalid, conflicts with another template, or the method is taken.
    pub fn insert(
        &mut self,
        template: &str,
        methods: &[Method],
        route: Arc<R>,
    ) -> Result<(), String> {
        if !template.starts_with('/') {
            return Err("path template must start with '/'".into());
        }
        let index = match self.templates.get(template) {
            Some(&index) => index,
            None => {
                let index = self.entries.len();
                self.paths
                    .insert(template, index)
                    .map_err(|e| format!("path template conflicts: {e}"))?;
                self.entries.push(ByMethod {
                    routes: HashMap::new(),
                });
                self.templates.insert(template.to_string(), index);
                index
            }
        };
        let entry = &mut self.entries[index];
        for method in methods {
            if entry.routes.contains_key(method) {
                return Err(format!("{method} {template} is already routed"));
            }
            entry.routes.insert(method.clone(), route.clone());
        }
        Ok(())
    }

    pub fn lookup(&self, method: &Method, path: &str) -> Result<Matched<'_, R>, Miss> {
        let found = self.paths.at(path).map_err(|_| Miss::NoPath)?;
        let entry = self.entries.get(*found.value).ok_or(Miss::NoPath)?;
        match entry.routes.get(method) {
            Some(route) => Ok(Matched {
                route,
                params: found
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            None => {
                let mut allowed: Vec<Method> = entry.routes.keys().cloned().collect();
                allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                Err(Miss::Method(allowed))
            }
        }
    }
}

/// A request the routing stage let through.
#[derive(Debug)]
pub struct Admitted<R> {
    pub route: Arc<R>,
    pub params: Vec<(String, String)>,
    /// The request target to send upstream (canonical path, original
    /// query) when it differs from what the client sent.
    pub new_target: Option<String>,
}

/// A refusal, with the `Allow` header value for a 405.
pub type Refusal = (Reject, Option<String>);

/// Routes a screened request by its canonical path. `raw_target` is the
/// request target exactly as received: a proxy parses an absolute-form
/// target into a path-only URI but keeps the raw bytes, which it would
/// send, so a target that is not origin-form is always rebuilt.
pub fn resolve<R>(
    router: &Router<R>,
    req: &http::request::Parts,
    raw_target: &[u8],
    canonical: String,
) -> Result<Admitted<R>, Refusal> {
    let matched = router
        .lookup(&req.method, &canonical)
        .map_err(|miss| match miss {
            Miss::NoPath => (problem::ROUTE_NOT_FOUND, None),
            Miss::Method(allowed) => {
                let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                (problem::METHOD_NOT_ALLOWED, Some(allow.join(", ")))
            }
        })?;
    let origin_form = raw_target.starts_with(b"/") && req.uri.authority().is_none();
    let new_target = if canonical != req.uri.path() || !origin_form {
        Some(match req.uri.query() {
            Some(q) => format!("{canonical}?{q}"),
            None => canonical,
        })
    } else {
        None
    };
    Ok(Admitted {
        route: matched.route.clone(),
        params: matched.params,
        new_target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        let mut r = Router::default();
        r.insert(
            "/partners/{partner}/orders",
            &[Method::GET],
            Arc::new("list"),
        )
        .unwrap();
        r.insert(
            "/partners/{partner}/orders",
            &[Method::POST],
            Arc::new("create"),
        )
        .unwrap();
        r.insert(
            "/partners/{partner}/orders/{id}",
            &[Method::GET],
            Arc::new("get"),
        )
        .unwrap();
        r
    }

    #[test]
    fn matches_method_and_template() {
        let r = router();
        let m = r.lookup(&Method::POST, "/partners/acme/orders").unwrap();
        assert_eq!(**m.route, "create");
        let m = r.lookup(&Method::GET, "/partners/acme/orders/7").unwrap();
        assert_eq!(**m.route, "get");
        assert_eq!(
            m.params,
            vec![("partner".into(), "acme".into()), ("id".into(), "7".into())]
        );
    }

    #[test]
    fn unknown_path_and_wrong_method_are_told_apart() {
        let r = router();
        assert_eq!(r.lookup(&Method::GET, "/admin").unwrap_err(), Miss::NoPath);
        assert_eq!(
            r.lookup(&Method::DELETE, "/partners/a/orders").unwrap_err(),
            Miss::Method(vec![Method::GET, Method::POST])
        );
    }

    #[test]
    fn duplicate_method_on_a_template_is_refused() {
        let mut r = router();
        let err = r
            .insert(
                "/partners/{partner}/orders",
                &[Method::GET],
                Arc::new("again"),
            )
            .unwrap_err();
        assert!(err.contains("already routed"), "{err}");
    }

    fn request(method: Method, target: &str) -> http::request::Parts {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri(target)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn resolve_keeps_an_origin_form_target_and_rebuilds_the_rest() {
        let r = router();
        let req = request(Method::GET, "/partners/acme/orders?page=2");
        let kept = resolve(
            &r,
            &req,
            b"/partners/acme/orders?page=2",
            "/partners/acme/orders".into(),
        )
        .unwrap();
        assert_eq!(*kept.route, "list");
        assert_eq!(kept.new_target, None);
        let req = request(Method::GET, "/partners/acme/./orders?page=2");
        let rebuilt = resolve(
            &r,
            &req,
            b"/partners/acme/./orders?page=2",
            "/partners/acme/orders".into(),
        )
        .unwrap();
        assert_eq!(
            rebuilt.new_target.as_deref(),
            Some("/partners/acme/orders?page=2")
        );
        let absolute = request(Method::GET, "https://other.example/partners/acme/orders");
        let rebuilt = resolve(
            &r,
            &absolute,
            b"https://other.example/partners/acme/orders",
            "/partners/acme/orders".into(),
        )
        .unwrap();
        assert_eq!(rebuilt.new_target.as_deref(), Some("/partners/acme/orders"));
    }

    #[test]
    fn resolve_answers_404_and_405_with_allow() {
        let r = router();
        let req = request(Method::GET, "/nowhere");
        let (reject, allow) = resolve(&r, &req, b"/nowhere", "/nowhere".into()).unwrap_err();
        assert_eq!((reject, allow), (problem::ROUTE_NOT_FOUND, None));
        let req = request(Method::DELETE, "/partners/acme/orders");
        let (reject, allow) = resolve(
            &r,
            &req,
            b"/partners/acme/orders",
            "/partners/acme/orders".into(),
        )
        .unwrap_err();
        assert_eq!(reject, problem::METHOD_NOT_ALLOWED);
        assert!(allow.is_some_and(|a| a.contains("GET")));
    }
}
