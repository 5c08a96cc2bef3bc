//! Object ownership: for backends whose URLs name an object
//! (`/orders/{id}`) and never its partner. The object a request names is
//! looked up in the ownership index before the upstream sees anything; an
//! object of another partner is answered 404 `object_not_found`, as if it
//! did not exist, so ids cannot be probed. Answers teach the index: a
//! create route's answer names the new object (owned by the caller), a
//! read's or a pre-flight's names its owner, and a list's rows are cut to
//! the caller's. Pure functions; the lookups are `proxy`'s.

use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;

pub use crate::config::model::{OtherRows, ResourceAction, UnknownObjects};
use crate::ownership::store::valid_id;
use crate::stage::body::{parse_response, parse_strict, Pointer, MAX_DEPTH};
use crate::stage::json_bytes::{self, Elements};
use crate::stage::problem::{self, Reject};
use crate::stage::unambiguous::{self, NameRef};

/// A kind of object, as compiled from `resources:`.
#[derive(Debug)]
pub struct Resource {
    pub kind: String,
    /// Where an answer gives the object's id.
    pub id: Pointer,
    /// Where an answer gives the owning partner.
    pub owner: Option<Pointer>,
}

/// Where a request names its object.
#[derive(Debug, Clone)]
pub enum IdSource {
    Path(String),
    Query(String),
    Body(Pointer),
}

/// A route's `resource:`, compiled.
#[derive(Debug)]
pub struct ObjectRule {
    pub resource: Arc<Resource>,
    pub action: ResourceAction,
    /// None for `create` and `list`, which name no existing object.
    pub id: Option<IdSource>,
    pub unknown: UnknownObjects,
    /// Path template of the pre-flight read, with `{id}`.
    pub preflight: Option<String>,
    /// For `list`: the object keys leading to the rows array.
    pub rows: Option<Vec<String>>,
    pub others: OtherRows,
}

impl ObjectRule {
    pub fn id_in_body(&self) -> bool {
        matches!(self.id, Some(IdSource::Body(_)))
    }

    /// Whether the answer must be held and read before it is sent.
    pub fn holds_response(&self) -> bool {
        match self.action {
            ResourceAction::Create | ResourceAction::List => true,
            ResourceAction::Read => self.resource.owner.is_some(),
            ResourceAction::Change | ResourceAction::Delete => false,
        }
    }
}

/// The object id a request names in its path or query; `None` when the
/// route names none there (a body id is read once the body is).
pub fn request_object(
    rule: &ObjectRule,
    params: &[(String, String)],
    query: Option<&str>,
) -> Result<Option<String>, Reject> {
    match &rule.id {
        None | Some(IdSource::Body(_)) => Ok(None),
        Some(IdSource::Path(name)) => {
            let (_, raw) = params
                .iter()
                .find(|(n, _)| n == name)
                .ok_or(problem::OBJECT_ID_MISSING)?;
            // The segment of the canonical path (`stage::path`: unreserved
            // escapes decoded, which is also what is forwarded) must be the
            // id as it is: any escape left would be decoded by one backend
            // and not by another.
            checked(raw).map(Some)
        }
        Some(IdSource::Query(name)) => query_object(name, query.unwrap_or("")).map(Some),
    }
}

/// The one plain `name=value` of the query. Repeats and spellings that a
/// framework would read as the same parameter are refused, as for the
/// partner binding (`isolation::check_params`).
fn query_object(name: &str, query: &str) -> Result<String, Reject> {
    let mut found: Option<String> = None;
    for pair in query.split(['&', ';']) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        match unambiguous::name_ref(&unambiguous::decode_component(raw_key), name) {
            NameRef::Other => continue,
            NameRef::Alias => return Err(problem::OBJECT_ID_AMBIGUOUS),
            NameRef::Plain => {}
        }
        if found.is_some() {
            return Err(problem::OBJECT_ID_AMBIGUOUS);
        }
        found = Some(checked(raw_value)?);
    }
    found.ok_or(problem::OBJECT_ID_MISSING)
}

fn checked(raw: &str) -> Result<String, Reject> {
    if valid_id(raw) {
        Ok(raw.to_string())
    } else {
        Err(problem::OBJECT_ID_INVALID)
    }
}

/// The object id a request body names: exactly one value, parsed strictly
/// (a duplicated key is refused before this, by the strict parser).
pub fn body_object(pointer: &Pointer, body: &[u8]) -> Result<String, Reject> {
    let root = parse_strict(body, MAX_DEPTH).map_err(|e| e.reject())?;
    match pointer.resolve(&root).as_deref() {
        Some([value]) => id_text(value).ok_or(problem::OBJECT_ID_INVALID),
        Some([]) | None => Err(problem::OBJECT_ID_MISSING),
        Some(_) => Err(problem::OBJECT_ID_AMBIGUOUS),
    }
}

/// An id as JSON carries it: a string, or a non-negative integer written
/// as its decimal text.
fn id_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return None,
    };
    valid_id(&text).then_some(text)
}

/// What to do with a request, given the object's owner in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Forward,
    /// 404 `object_not_found`.
    Refuse,
    /// Ask the upstream first, with the rule's pre-flight read.
    Preflight,
    /// Forward, and let the answer's owner decide whether it is sent
    /// (a read is its own pre-flight).
    GuardAnswer,
}

pub fn decide(rule: &ObjectRule, owner: Option<&str>, caller: &str) -> Decision {
    match owner {
        Some(owner) if owner == caller => Decision::Forward,
        Some(_) => Decision::Refuse,
        None => match rule.unknown {
            UnknownObjects::Refuse => Decision::Refuse,
            UnknownObjects::Preflight if rule.preflight.is_some() => Decision::Preflight,
            UnknownObjects::Preflight
                if rule.action == ResourceAction::Read && rule.resource.owner.is_some() =>
            {
                Decision::GuardAnswer
            }
            // Compilation refuses such a rule; refusing is the safe reading.
            UnknownObjects::Preflight => Decision::Refuse,
        },
    }
}

/// The pre-flight's request target.
pub fn preflight_target(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

/// What an answer (a read's, a pre-flight's) says of its object.
#[derive(Debug, PartialEq, Eq)]
pub struct AnswerFacts {
    pub id: Option<String>,
    pub owner: Option<String>,
}

/// Reads the id and owner of one object from an answer. An answer whose
/// owner cannot be read unambiguously has no owner.
pub fn answer_facts(resource: &Resource, body: &[u8]) -> Result<AnswerFacts, Reject> {
    let root = parse_response(body, MAX_DEPTH).map_err(|_| problem::RESPONSE_NOT_FILTERABLE)?;
    Ok(facts_of(resource, &root))
}

fn facts_of(resource: &Resource, root: &Value) -> AnswerFacts {
    let one = |p: &Pointer| match p.resolve(root).as_deref() {
        Some([v]) => id_text(v),
        _ => None,
    };
    AnswerFacts {
        id: one(&resource.id),
        owner: resource
            .owner
            .as_ref()
            .and_then(|p| match p.resolve(root).as_deref() {
                Some([Value::String(s)]) => Some(s.clone()),
                _ => None,
            }),
    }
}

/// The rows of a list answer, each with what it says of itself.
#[derive(Debug)]
pub struct Rows {
    elements: Elements,
    pub facts: Vec<AnswerFacts>,
}

impl Rows {
    pub fn spans(&self) -> &[Range<usize>] {
        &self.elements.spans
    }
}

pub fn list_rows(resource: &Resource, path: &[String], body: &[u8]) -> Result<Rows, Reject> {
    // Validates the whole document (and refuses duplicate keys) first: the
    // span scanner trusts what it walks past.
    parse_response(body, MAX_DEPTH).map_err(|_| problem::RESPONSE_NOT_FILTERABLE)?;
    let elements = json_bytes::array_elements(body, path, MAX_DEPTH)
        .map_err(|_| problem::RESPONSE_NOT_FILTERABLE)?;
    let mut facts = Vec::with_capacity(elements.spans.len());
    for span in &elements.spans {
        let row = parse_response(&body[span.clone()], MAX_DEPTH)
            .map_err(|_| problem::RESPONSE_NOT_FILTERABLE)?;
        facts.push(facts_of(resource, &row));
    }
    Ok(Rows { elements, facts })
}

/// The answer with only the rows `keep` marks.
pub fn keep_rows(body: &[u8], rows: &Rows, keep: &[bool]) -> Vec<u8> {
    json_bytes::keep_elements(body, &rows.elements, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(owner: bool) -> Arc<Resource> {
        Arc::new(Resource {
            kind: "order".into(),
            id: Pointer::parse("/id", false).unwrap(),
            owner: owner.then(|| Pointer::parse("/partner", false).unwrap()),
        })
    }

    fn rule(action: ResourceAction, id: Option<IdSource>, unknown: UnknownObjects) -> ObjectRule {
        ObjectRule {
            resource: resource(true),
            action,
            id,
            unknown,
            preflight: None,
            rows: None,
            others: OtherRows::Drop,
        }
    }

    #[test]
    fn path_ids_are_taken_only_as_written() {
        let r = rule(
            ResourceAction::Change,
            Some(IdSource::Path("id".into())),
            UnknownObjects::Refuse,
        );
        let p = |v: &str| vec![("id".to_string(), v.to_string())];
        assert_eq!(
            request_object(&r, &p("ord_7f3a"), None),
            Ok(Some("ord_7f3a".into()))
        );
        for bad in ["ord%5F1", "a%2fb", "..", ".", "a b", "ä", &"x".repeat(201)] {
            assert_eq!(
                request_object(&r, &p(bad), None),
                Err(problem::OBJECT_ID_INVALID),
                "{bad}"
            );
        }
        assert_eq!(
            request_object(&r, &[], None),
            Err(problem::OBJECT_ID_MISSING)
        );
    }

    #[test]
    fn query_ids_have_one_reading() {
        let r = rule(
            ResourceAction::Read,
            Some(IdSource::Query("order_id".into())),
            UnknownObjects::Refuse,
        );
        let q = |q: &str| request_object(&r, &[], Some(q));
        assert_eq!(q("order_id=o-1&x=2"), Ok(Some("o-1".into())));
        for (query, want) in [
            ("order_id=a&order_id=b", problem::OBJECT_ID_AMBIGUOUS),
            ("order_id=a&order_id=a", problem::OBJECT_ID_AMBIGUOUS),
            ("order_id=a;order_id=b", problem::OBJECT_ID_AMBIGUOUS),
            ("order_id=a&order_id[]=b", problem::OBJECT_ID_AMBIGUOUS),
            ("order_id=a&Order_Id=b", problem::OBJECT_ID_AMBIGUOUS),
            ("order_id=a&order.id=b", problem::OBJECT_ID_AMBIGUOUS),
            ("order_id=a%2fb", problem::OBJECT_ID_INVALID),
            ("order_id=", problem::OBJECT_ID_INVALID),
            ("x=1", problem::OBJECT_ID_MISSING),
        ] {
            assert_eq!(q(query), Err(want), "{query}");
        }
    }

    #[test]
    fn body_ids_are_exactly_one_value() {
        let p = Pointer::parse("/order_id", false).unwrap();
        assert_eq!(body_object(&p, br#"{"order_id":"o-1"}"#), Ok("o-1".into()));
        assert_eq!(body_object(&p, br#"{"order_id":1001}"#), Ok("1001".into()));
        assert_eq!(
            body_object(&p, br#"{"order_id":"a","order_id":"b"}"#),
            Err(problem::DUPLICATE_KEY)
        );
        assert_eq!(
            body_object(&p, br#"{"order_id":"a","Order_Id":"b"}"#),
            Err(problem::CASE_COLLISION)
        );
        for bad in [
            r#"{"order_id":-1}"#,
            r#"{"order_id":1.5}"#,
            r#"{"order_id":["a"]}"#,
            r#"{"order_id":"a/b"}"#,
        ] {
            assert_eq!(
                body_object(&p, bad.as_bytes()),
                Err(problem::OBJECT_ID_INVALID),
                "{bad}"
            );
        }
        assert_eq!(body_object(&p, b"{}"), Err(problem::OBJECT_ID_MISSING));
    }

    #[test]
    fn unknown_objects_follow_the_route() {
        let mut r = rule(ResourceAction::Delete, None, UnknownObjects::Refuse);
        assert_eq!(decide(&r, Some("acme"), "acme"), Decision::Forward);
        assert_eq!(decide(&r, Some("globex"), "acme"), Decision::Refuse);
        assert_eq!(decide(&r, None, "acme"), Decision::Refuse);
        r.unknown = UnknownObjects::Preflight;
        r.preflight = Some("/orders/{id}".into());
        assert_eq!(decide(&r, None, "acme"), Decision::Preflight);
        // A preflight rule never lets a known foreign object through.
        assert_eq!(decide(&r, Some("globex"), "acme"), Decision::Refuse);
        let read = rule(ResourceAction::Read, None, UnknownObjects::Preflight);
        assert_eq!(decide(&read, None, "acme"), Decision::GuardAnswer);
        assert_eq!(preflight_target("/orders/{id}", "o-1"), "/orders/o-1");
    }

    #[test]
    fn answers_and_rows_say_whose_they_are() {
        let res = resource(true);
        assert_eq!(
            answer_facts(&res, br#"{"id":"o-1","partner":"acme"}"#),
            Ok(AnswerFacts {
                id: Some("o-1".into()),
                owner: Some("acme".into())
            })
        );
        assert_eq!(answer_facts(&res, br#"{"id":"o-1"}"#).unwrap().owner, None);
        assert_eq!(
            answer_facts(&res, br#"{"id":"o-1","partner":"acme","partner":"globex"}"#),
            Err(problem::RESPONSE_NOT_FILTERABLE)
        );
        let body = br#"{"orders":[{"id":"a","partner":"acme"},{"id":"b","partner":"globex"}]}"#;
        let rows = list_rows(&res, &["orders".to_string()], body).unwrap();
        let owners: Vec<_> = rows.facts.iter().map(|f| f.owner.as_deref()).collect();
        assert_eq!(owners, vec![Some("acme"), Some("globex")]);
        assert_eq!(
            String::from_utf8(keep_rows(body, &rows, &[true, false])).unwrap(),
            r#"{"orders":[{"id":"a","partner":"acme"}]}"#
        );
    }
}
