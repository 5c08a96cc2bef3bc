//! Every problem the gateway answers with, in one place: its status, its
//! stable `code` (part of the public contract: clients and alerts match on
//! it, so never rename one), its title, and whether the connection closes
//! after it. Grouped by the part of the gateway that refuses.

use super::Reject;

// Screening, routing, the upstream and the gateway itself

pub const ROUTE_NOT_FOUND: Reject =
    Reject::new(404, "route_not_found", "No route matches this path");
pub const METHOD_NOT_ALLOWED: Reject = Reject::new(
    405,
    "method_not_allowed",
    "The route does not accept this method",
);
pub const BAD_PATH: Reject = Reject::new(400, "bad_path", "The request path is malformed");
pub const AMBIGUOUS_PATH: Reject = Reject::new(
    400,
    "ambiguous_path",
    "The request path contains an encoded slash, backslash, NUL or control character",
);
pub const AMBIGUOUS_FRAMING: Reject = Reject::new(400, "ambiguous_framing", "The request's framing is ambiguous: conflicting Content-Length / Transfer-Encoding, or a line not ending in CRLF");
pub const BAD_REQUEST: Reject = Reject::new(400, "bad_request", "The request is malformed");
pub const HEADERS_TOO_LARGE: Reject = Reject::new(
    431,
    "headers_too_large",
    "The request header block is larger than allowed",
);
pub const URI_TOO_LONG: Reject = Reject::new(
    414,
    "uri_too_long",
    "The request URI is longer than allowed",
);
pub const UPSTREAM_UNAVAILABLE: Reject = Reject::new(
    502,
    "upstream_unavailable",
    "The upstream service could not be reached",
);
pub const UPSTREAM_TIMEOUT: Reject = Reject::new(
    504,
    "upstream_timeout",
    "The upstream service did not answer in time",
);
pub const UPSTREAM_ERROR: Reject = Reject::new(
    502,
    "upstream_error",
    "The upstream service failed to answer correctly",
);
pub const INTERNAL_ERROR: Reject = Reject::new(
    500,
    "internal_error",
    "The gateway failed to process the request",
);
pub const CLIENT_ERROR: Reject = Reject::new(400, "bad_request", "The request could not be read");
pub const HTTPS_REQUIRED: Reject = Reject::new(
    426,
    "https_required",
    "This endpoint is only served over HTTPS",
);

// The admin listener's key-management API (admin/keys.rs)

pub const ADMIN_UNAUTHORIZED: Reject = Reject::new(
    401,
    "admin_token_invalid",
    "A valid admin token is required",
);
pub const ADMIN_API_DISABLED: Reject = Reject::new(
    403,
    "admin_api_disabled",
    "The key-management API is disabled: set admin.token_file",
);
pub const ADMIN_NOT_BLOCKED: Reject =
    Reject::new(404, "not_blocked", "Nothing by that id is blocked");
pub const ADMIN_KEY_NOT_FOUND: Reject = Reject::new(404, "key_not_found", "No such key");
pub const ADMIN_KEY_CONFLICT: Reject = Reject::new(
    409,
    "key_conflict",
    "The request conflicts with an existing key",
);
pub const ADMIN_OWNER_NOT_FOUND: Reject = Reject::new(
    404,
    "owner_not_found",
    "The ownership index knows no such object",
);
pub const ADMIN_BAD_BODY: Reject = Reject::new(400, "bad_request", "The request body is not valid");
pub const ADMIN_BAD_PARTNER: Reject =
    Reject::new(400, "bad_request", "The partner id is not valid");
pub const ADMIN_STORE_DOWN: Reject = Reject::new(
    503,
    "key_store_unavailable",
    "The key store cannot be reached",
);

// Finding the one credential (keys/credential.rs)

pub const KEY_IN_QUERY: Reject = Reject::new(
    400,
    "key_in_query",
    "API keys are not accepted in the query string; send them in a header",
);
pub const CONFLICTING_CREDENTIALS: Reject = Reject::new(
    400,
    "conflicting_credentials",
    "The request carries more than one credential",
);
pub const KEY_MISSING: Reject = Reject::new(401, "key_missing", "An API key is required");

// The partner listener: signing in with a management credential (partner/)

pub const CREDENTIAL_MISSING: Reject = Reject::new(
    401,
    "credential_missing",
    "A partner management credential is required",
);
pub const CREDENTIAL_INVALID: Reject = Reject::new(
    401,
    "credential_invalid",
    "The partner management credential is not valid",
);
pub const TOTP_INVALID: Reject = Reject::new(
    401,
    "totp_invalid",
    "The one-time code is not valid for this credential",
);
pub const SESSION_EXPIRED: Reject = Reject::new(
    401,
    "session_expired",
    "The console session has expired or is not valid; sign in again",
);
pub const CSRF_FAILED: Reject = Reject::new(
    403,
    "csrf_failed",
    "The request does not carry this session's CSRF token",
);

// A partner regenerating its own key (proxy/selfservice.rs)

pub const SELF_ROTATION_DISABLED: Reject = Reject::new(
    403,
    "self_rotation_disabled",
    "This partner's keys cannot regenerate themselves; use the partner's management credential",
);
pub const SELF_ROTATION_SPENT: Reject = Reject::new(
    403,
    "self_rotation_spent",
    "This key was made by a self-rotation and cannot rotate itself again; use the partner's management credential",
);
pub const ROTATION_FAILED: Reject = Reject::new(
    503,
    "key_rotation_failed",
    "The key could not be regenerated; the current key stays valid",
);

// Reading a body whole, holding an answer back (proxy/subrequest.rs)

pub const BODY_TOO_LARGE: Reject = Reject::new(
    413,
    "body_too_large",
    "The request body is larger than this route accepts",
);
pub const BODY_TIMEOUT: Reject = Reject::new(
    408,
    "body_timeout",
    "The request body did not arrive in time",
);
pub const RESPONSE_PARTNER_MISMATCH: Reject = Reject::new(
    502,
    "response_partner_mismatch",
    "The upstream answered with data that does not belong to the caller",
);
pub const RESPONSE_TOO_LARGE: Reject = Reject::new(
    502,
    "response_too_large",
    "The upstream response is larger than this route may inspect",
);

// Authentication and brute-force blocking (stage/authenticate.rs)

pub const CLIENT_BLOCKED: Reject = Reject::new(
    429,
    "client_blocked",
    "Too many failed authentication attempts from this address; retry later",
);
pub const KEY_BLOCKED: Reject = Reject::new(
    429,
    "key_blocked",
    "Too many failed attempts with this API key; retry later",
);
pub const KEY_MALFORMED: Reject =
    Reject::new(401, "key_malformed", "The API key is not well-formed");
pub const KEY_INVALID: Reject = Reject::new(401, "key_invalid", "The API key is not valid");
pub const KEY_EXPIRED: Reject = Reject::new(401, "key_expired", "The API key has expired");
pub const TOO_MANY_UNKNOWN_KEYS: Reject = Reject::new(
    429,
    "too_many_unknown_keys",
    "Too many unknown API keys from this client; slow down",
);
pub const KEY_STORE_UNAVAILABLE: Reject = Reject::new(
    503,
    "key_store_unavailable",
    "The API key cannot be checked right now; retry later",
);

// Strict JSON bodies (stage/body.rs)

pub const BODY_NOT_JSON: Reject = Reject::new(
    400,
    "body_not_json",
    "The request body is not a valid JSON document",
);
pub const DUPLICATE_KEY: Reject = Reject::new(
    400,
    "json_duplicate_key",
    "The JSON body repeats an object key",
);
pub const CASE_COLLISION: Reject = Reject::new(
    400,
    "json_case_collision",
    "The JSON body has object keys that differ only in letter case",
);
pub const NUMBER_NOT_EXACT: Reject = Reject::new(
    400,
    "number_not_exact",
    "A number in the JSON body has more precision or range than can be checked exactly",
);
pub const TOO_DEEP: Reject = Reject::new(
    400,
    "json_too_deep",
    "The JSON body is nested deeper than allowed",
);

// Partner isolation: admit, authorize, bind (stage/isolation.rs)

pub const PARTNER_MISMATCH: Reject = Reject::new(
    403,
    "partner_mismatch",
    "The request names another partner's resource",
);
pub const PARTNER_UNKNOWN: Reject = Reject::new(
    403,
    "partner_unknown",
    "The API key belongs to a partner that is not configured",
);
pub const PARTNER_SUSPENDED: Reject =
    Reject::new(403, "partner_suspended", "The partner is suspended");
pub const CLIENT_ADDRESS_INVALID: Reject = Reject::new(
    400,
    "client_address_invalid",
    "A trusted proxy sent no client address, or one that is not a single address",
);
pub const IP_NOT_ALLOWED: Reject = Reject::new(
    403,
    "ip_not_allowed",
    "The partner may not call from this network address",
);
pub const SCOPE_DENIED: Reject = Reject::new(
    403,
    "scope_denied",
    "The partner lacks a scope this route requires",
);
pub const ROUTE_NOT_PERMITTED: Reject = Reject::new(
    403,
    "route_not_permitted",
    "The partner is not permitted to use this route",
);
pub const BINDING_MISSING: Reject = Reject::new(
    400,
    "partner_binding_missing",
    "The request must name its partner and does not",
);
pub const BINDING_AMBIGUOUS: Reject = Reject::new(
    400,
    "ambiguous_parameter",
    "A parameter is spelled so that some backends read it as the partner binding",
);
// Object ownership (stage/own.rs)

pub const OBJECT_NOT_FOUND: Reject =
    Reject::new(404, "object_not_found", "No such object for this partner");
pub const OBJECT_ID_MISSING: Reject = Reject::new(
    400,
    "object_id_missing",
    "The request must name the object it is about and does not",
);
pub const OBJECT_ID_INVALID: Reject = Reject::new(
    400,
    "object_id_invalid",
    "The object id is not one every backend reads the same way (unreserved characters only, no escapes)",
);
pub const OBJECT_ID_AMBIGUOUS: Reject = Reject::new(
    400,
    "object_id_ambiguous",
    "The request names its object more than once, or so that some backends read another one",
);
pub const OWNERSHIP_UNAVAILABLE: Reject = Reject::new(
    503,
    "ownership_unavailable",
    "The object's owner cannot be checked right now; retry later",
);
pub const PREFLIGHT_FAILED: Reject = Reject::new(
    502,
    "preflight_failed",
    "The upstream could not say who owns the object",
);

pub const CONCURRENCY_LIMITED: Reject = Reject::new(
    429,
    "partner_concurrency_limit",
    "Too many requests of this partner are in flight; retry shortly",
);

// What an answer may carry back (stage/minimise.rs)

pub const RESPONSE_LEAK_BLOCKED: Reject = Reject::new(
    502,
    "response_leak_blocked",
    "The upstream response contained a secret and was withheld",
);
pub const RESPONSE_NOT_FILTERABLE: Reject = Reject::new(
    502,
    "response_not_filterable",
    "The upstream response could not be reduced to the fields this route returns",
);
pub const UPSTREAM_FAILED: Reject = Reject::new(
    502,
    "upstream_failed",
    "The upstream service failed; its answer was withheld",
);

// Protocol screening (stage/protocol.rs)

/// Checks the raw HTTP/1 header block as the client sent it. pingora itself
/// quietly drops `Content-Length` when `Transfer-Encoding` is present and
/// merges identical duplicates; we refuse both, because an upstream or an
/// intermediary may resolve them the other way.
pub const UPGRADE_REFUSED: Reject = Reject::new(
    400,
    "upgrade_refused",
    "Protocol upgrades (WebSocket, h2c) are not supported",
);

// Rate limits (stage/rate_limit.rs)

pub const RATE_LIMITED: Reject =
    Reject::new(429, "rate_limited", "Rate limit exceeded; retry later");

// One request, one meaning (stage/unambiguous.rs)

pub const HEADER_NAME_AMBIGUOUS: Reject = Reject::new(400, "header_name_ambiguous", "Header names may hold only letters, digits and '-': CGI-style backends read '_' and '.' as '-'");
pub const KEY_IN_URL: Reject = Reject::new(
    400,
    "key_in_url",
    "The URL carries an API key; send keys only in the Authorization or API-key header",
);
pub const KEY_IN_HEADER: Reject = Reject::new(
    400,
    "key_in_header",
    "An API key was sent in a header that does not carry credentials",
);
pub const METHOD_OVERRIDE: Reject = Reject::new(
    400,
    "method_override",
    "A '_method' parameter would override the request method; it is refused",
);
pub const AUTHORITY_AMBIGUOUS: Reject = Reject::new(400, "authority_ambiguous", "The request names its host ambiguously: ':authority' and Host differ, Host is repeated or carries user info, or no host is named");
pub const BODY_NOT_ALLOWED: Reject = Reject::new(
    400,
    "body_not_allowed",
    "This method carries no body on this route",
);

// Validation (stage/validate.rs)

pub const SCHEMA_VIOLATION: Reject = Reject::new(
    400,
    "schema_violation",
    "The request does not match the route's schema",
);
pub const UNSUPPORTED_MEDIA_TYPE: Reject = Reject::new(
    415,
    "unsupported_media_type",
    "The request body's content type is not accepted by this route",
);
pub const BODY_REQUIRED: Reject = Reject::new(400, "body_required", "This route requires a body");
pub const BODY_NOT_UTF8: Reject =
    Reject::new(400, "body_not_utf8", "The request body is not valid UTF-8");

/// The admin listener's answers: they go to operators on their own listener,
/// whose connections the public listener's closing rule does not govern.
pub const ADMIN: &[Reject] = &[
    ADMIN_UNAUTHORIZED,
    ADMIN_API_DISABLED,
    ADMIN_NOT_BLOCKED,
    ADMIN_KEY_NOT_FOUND,
    ADMIN_KEY_CONFLICT,
    ADMIN_OWNER_NOT_FOUND,
    ADMIN_BAD_BODY,
    ADMIN_BAD_PARTNER,
    ADMIN_STORE_DOWN,
];

/// Every problem the public listener answers with.
pub const PUBLIC: &[Reject] = &[
    ROUTE_NOT_FOUND,
    METHOD_NOT_ALLOWED,
    BAD_PATH,
    AMBIGUOUS_PATH,
    AMBIGUOUS_FRAMING,
    BAD_REQUEST,
    HEADERS_TOO_LARGE,
    URI_TOO_LONG,
    UPSTREAM_UNAVAILABLE,
    UPSTREAM_TIMEOUT,
    UPSTREAM_ERROR,
    INTERNAL_ERROR,
    CLIENT_ERROR,
    HTTPS_REQUIRED,
    KEY_IN_QUERY,
    CONFLICTING_CREDENTIALS,
    KEY_MISSING,
    CREDENTIAL_MISSING,
    CREDENTIAL_INVALID,
    TOTP_INVALID,
    SESSION_EXPIRED,
    CSRF_FAILED,
    SELF_ROTATION_DISABLED,
    SELF_ROTATION_SPENT,
    ROTATION_FAILED,
    BODY_TOO_LARGE,
    BODY_TIMEOUT,
    RESPONSE_PARTNER_MISMATCH,
    RESPONSE_TOO_LARGE,
    CLIENT_BLOCKED,
    KEY_BLOCKED,
    KEY_MALFORMED,
    KEY_INVALID,
    KEY_EXPIRED,
    TOO_MANY_UNKNOWN_KEYS,
    KEY_STORE_UNAVAILABLE,
    BODY_NOT_JSON,
    DUPLICATE_KEY,
    CASE_COLLISION,
    NUMBER_NOT_EXACT,
    TOO_DEEP,
    PARTNER_MISMATCH,
    PARTNER_UNKNOWN,
    PARTNER_SUSPENDED,
    CLIENT_ADDRESS_INVALID,
    IP_NOT_ALLOWED,
    SCOPE_DENIED,
    ROUTE_NOT_PERMITTED,
    BINDING_MISSING,
    BINDING_AMBIGUOUS,
    CONCURRENCY_LIMITED,
    OBJECT_NOT_FOUND,
    OBJECT_ID_MISSING,
    OBJECT_ID_INVALID,
    OBJECT_ID_AMBIGUOUS,
    OWNERSHIP_UNAVAILABLE,
    PREFLIGHT_FAILED,
    RESPONSE_LEAK_BLOCKED,
    RESPONSE_NOT_FILTERABLE,
    UPSTREAM_FAILED,
    UPGRADE_REFUSED,
    RATE_LIMITED,
    HEADER_NAME_AMBIGUOUS,
    KEY_IN_URL,
    KEY_IN_HEADER,
    METHOD_OVERRIDE,
    AUTHORITY_AMBIGUOUS,
    BODY_NOT_ALLOWED,
    SCHEMA_VIOLATION,
    UNSUPPORTED_MEDIA_TYPE,
    BODY_REQUIRED,
    BODY_NOT_UTF8,
];

/// Every problem, for the documentation checks and the uniqueness test.
pub fn all() -> impl Iterator<Item = &'static Reject> {
    PUBLIC.iter().chain(ADMIN)
}
