//! The body, once it has been read whole: form fields (a framework merges
//! them into what the app acts on), the body schema, the body binding, and
//! a `_method` field in a JSON body. Runs only on requests whose body the
//! gateway had to read (see `proxy::body`).

use std::time::Instant;

use serde_json::Value;

use crate::stage::body::{self, bound_to, parse_strict, Bound, Pointer};
use crate::stage::isolation::{self, Binding};
use crate::stage::problem::{self, Reject};
use crate::stage::record::{add_time, StageTimes};
use crate::stage::unambiguous::{self, FormKind};
use crate::stage::validate::{Invalid, RouteValidation};

/// What a route asks of a body.
pub struct Rules<'a> {
    pub binding: &'a Binding,
    pub validation: Option<&'a RouteValidation>,
}

/// Checks a whole body; the time spent goes to the validation and
/// isolation stages.
pub fn inspect(
    rules: &Rules<'_>,
    content_type: Option<&str>,
    bytes: &[u8],
    partner: &str,
    times: &mut StageTimes,
) -> Result<(), Invalid> {
    if let Some(kind) = unambiguous::form_kind(content_type) {
        check_form(kind, rules.binding.query.as_deref(), bytes, partner)?;
    }
    let mut parsed = None;
    if let Some(v) = rules.validation {
        let started = Instant::now();
        let checked = v.check_body(content_type, bytes);
        add_time(&mut times.validation, started);
        parsed = checked?;
    }
    if let Some(pointer) = &rules.binding.body {
        let started = Instant::now();
        let bound = check_body_binding(pointer, bytes, parsed.as_ref(), partner);
        add_time(&mut times.isolation, started);
        bound?;
    }
    if unambiguous::is_json(content_type) && !bytes.is_empty() {
        check_json_override(parsed.as_ref(), bytes)?;
    }
    Ok(())
}

/// A form body: no `_method`, and a bound query parameter, which frameworks
/// also read from an urlencoded body, names the caller there too.
fn check_form(
    kind: FormKind,
    query_binding: Option<&str>,
    bytes: &[u8],
    partner: &str,
) -> Result<(), Reject> {
    unambiguous::check_form_body(kind, bytes)?;
    match (query_binding, kind) {
        (Some(name), FormKind::UrlEncoded) => {
            isolation::check_form_params(name, &String::from_utf8_lossy(bytes), partner)
        }
        _ => Ok(()),
    }
}

/// The body is strict JSON and the pointer names the caller.
pub fn check_body_binding(
    pointer: &Pointer,
    body: &[u8],
    parsed: Option<&Value>,
    partner: &str,
) -> Result<(), Reject> {
    let owned;
    let doc = match parsed {
        Some(doc) => doc,
        None => {
            owned = parse_strict(body, body::MAX_DEPTH).map_err(|e| e.reject())?;
            &owned
        }
    };
    match bound_to(pointer, doc, partner) {
        Bound::Yes => Ok(()),
        Bound::Missing => Err(problem::BINDING_MISSING),
        Bound::Other => Err(problem::PARTNER_MISMATCH),
    }
}

/// Laravel takes `_method` from a JSON body as the method. A body the
/// route does not validate is parsed leniently for this: what cannot be
/// parsed has no `_method` an upstream could read either.
fn check_json_override(parsed: Option<&Value>, bytes: &[u8]) -> Result<(), Reject> {
    match parsed {
        Some(doc) => unambiguous::check_json_body(doc),
        None => body::parse_response(bytes, body::MAX_DEPTH)
            .ok()
            .map_or(Ok(()), |doc| unambiguous::check_json_body(&doc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(query: Option<&str>, body: Option<&str>) -> Binding {
        Binding {
            query: query.map(str::to_string),
            body: body.map(|p| Pointer::parse(p, false).unwrap()),
            ..Binding::default()
        }
    }

    fn run(binding: &Binding, content_type: &str, body: &str) -> Result<(), Reject> {
        let rules = Rules {
            binding,
            validation: None,
        };
        let mut times = StageTimes::default();
        inspect(
            &rules,
            Some(content_type),
            body.as_bytes(),
            "acme",
            &mut times,
        )
        .map_err(|invalid| invalid.reject)
    }

    #[test]
    fn a_form_body_names_the_caller_and_overrides_nothing() {
        let bound = binding(Some("partner"), None);
        let form = "application/x-www-form-urlencoded";
        assert_eq!(run(&bound, form, "partner=acme&qty=1"), Ok(()));
        assert_eq!(
            run(&bound, form, "partner=globex"),
            Err(problem::PARTNER_MISMATCH)
        );
        assert_eq!(
            run(&bound, form, "_method=DELETE"),
            Err(problem::METHOD_OVERRIDE)
        );
    }

    #[test]
    fn the_body_binding_and_a_json_override_are_refused() {
        let bound = binding(None, Some("/partner"));
        let json = "application/json";
        assert_eq!(run(&bound, json, r#"{"partner":"acme"}"#), Ok(()));
        assert_eq!(
            run(&bound, json, r#"{"partner":"globex"}"#),
            Err(problem::PARTNER_MISMATCH)
        );
        assert_eq!(
            run(&bound, json, r#"{"other":1}"#),
            Err(problem::BINDING_MISSING)
        );
        let unbound = binding(None, None);
        assert_eq!(
            run(&unbound, json, r#"{"_method":"DELETE"}"#),
            Err(problem::METHOD_OVERRIDE)
        );
        assert_eq!(
            run(&unbound, json, "not json"),
            Ok(()),
            "nothing an upstream could read"
        );
    }
}
