//! Route matching on the canonical path: method(s) + path template →
//! route. Unmatched paths are 404, a known path with another method 405.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

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
}
