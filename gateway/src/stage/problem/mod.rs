//! The one error shape: every response the gateway itself generates is an
//! RFC 9457 `application/problem+json` document with a stable `code`.

use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

mod catalogue;

pub use catalogue::*;

/// A reason the gateway refused or failed a request. Every one is declared
/// in [`catalogue`]; `code` is part of the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
}

impl Reject {
    pub const fn new(status: u16, code: &'static str, title: &'static str) -> Self {
        Reject {
            status,
            code,
            title,
        }
    }

    /// Whether the connection closes after this answer: the request's
    /// framing or header block cannot be trusted (400, 414, 431), or its
    /// body was refused unread (413, 415), so the next bytes on the
    /// connection are not the start of a request.
    pub const fn closes(self) -> bool {
        matches!(self.status, 400 | 413 | 414 | 415 | 431)
    }

    /// What the reference tables say happens to the connection: the closing
    /// rule governs the public listener; the admin listener's answers go to
    /// operators and are marked "—".
    pub fn connection_in_docs(self) -> &'static str {
        if catalogue::ADMIN.contains(&self) {
            "—"
        } else if self.closes() {
            "closed"
        } else {
            "kept"
        }
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    violations: &'a [crate::stage::validate::Violation],
}

/// Renders the problem document. `detail` must never carry secrets or
/// upstream internals: it is shown to the client verbatim.
pub fn render(reject: &Reject, request_id: &str, detail: Option<&str>) -> Vec<u8> {
    render_with(reject, request_id, detail, &[])
}

/// Renders the problem document with the schema violations that caused it.
pub fn render_with(
    reject: &Reject,
    request_id: &str,
    detail: Option<&str>,
    violations: &[crate::stage::validate::Violation],
) -> Vec<u8> {
    let doc = Document {
        kind: format!("urn:portcullis:problem:{}", reject.code),
        title: reject.title,
        status: reject.status,
        code: reject.code,
        request_id,
        detail,
        violations,
    };
    // Serialising a struct of strings and integers cannot fail; fall back to a
    // fixed document rather than panicking if it ever did.
    serde_json::to_vec(&doc).unwrap_or_else(|_| {
        br#"{"type":"urn:portcullis:problem:internal_error","title":"Internal error","status":500,"code":"internal_error"}"#.to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_rfc9457_members_and_stable_code() {
        let body = render(&ROUTE_NOT_FOUND, "req-1", None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:portcullis:problem:route_not_found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["code"], "route_not_found");
        assert_eq!(v["request_id"], "req-1");
        assert!(v.get("detail").is_none());
    }

    #[test]
    fn detail_is_escaped_json() {
        let body = render(&BAD_PATH, "r", Some("quote \" and <tag>"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["detail"], "quote \" and <tag>");
    }

    #[test]
    fn the_catalogue_lists_every_problem_once_and_each_code_has_one_status() {
        let declared = include_str!("catalogue.rs")
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": Reject ="))
            .count();
        assert_eq!(
            declared,
            all().count(),
            "a problem is missing from catalogue::PUBLIC or catalogue::ADMIN"
        );
        let mut status_of = std::collections::HashMap::new();
        for reject in all() {
            assert!(
                reject
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{} is not a stable snake_case code",
                reject.code
            );
            let status = *status_of.entry(reject.code).or_insert(reject.status);
            assert_eq!(status, reject.status, "{} has two statuses", reject.code);
            assert!((400..600).contains(&reject.status));
        }
    }

    /// The grouped tables of the errors page are written by hand, so every
    /// row must be a problem the catalogue declares, status, title and
    /// connection included, and every declared problem must have its row.
    #[test]
    fn the_errors_page_tables_match_the_catalogue() {
        let page = include_str!("../../../../docs/src/reference/errors.md");
        let rows: std::collections::HashSet<&str> = page
            .lines()
            .filter(|line| line.starts_with("| `"))
            .collect();
        let declared: std::collections::HashSet<String> = all()
            .map(|reject| {
                format!(
                    "| `{}` | {} | {} | {} |",
                    reject.code,
                    reject.status,
                    reject.title.replace('|', "\\|"),
                    reject.connection_in_docs()
                )
            })
            .collect();
        for row in &declared {
            assert!(
                rows.contains(row.as_str()),
                "docs/src/reference/errors.md lacks the row {row}"
            );
        }
        for row in &rows {
            assert!(
                declared.contains(*row),
                "docs/src/reference/errors.md has a row the catalogue does not declare: {row}"
            );
        }
    }

    #[test]
    fn refusals_whose_bytes_cannot_be_trusted_close_the_connection() {
        for reject in [
            AMBIGUOUS_FRAMING,
            HEADERS_TOO_LARGE,
            URI_TOO_LONG,
            BODY_TOO_LARGE,
        ] {
            assert!(reject.closes(), "{}", reject.code);
        }
        for reject in [
            PARTNER_MISMATCH,
            RATE_LIMITED,
            KEY_INVALID,
            UPSTREAM_TIMEOUT,
        ] {
            assert!(!reject.closes(), "{}", reject.code);
        }
    }
}
