//! The ingress side of the HTTP API: picks the namespace from the
//! `namespace` query parameter (default `default`), checks any token like
//! an MQTT upgrade, limits the publish requests of each client, and
//! forwards the request to the namespace's Durable Object, which serves it.
//! Routes are listed in `docs/http.md`.

use serde_json::json;
use worker::js_sys::Uint8Array;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result};

use crate::ingress_auth::Caller;
use crate::{ingress_auth, logging, GRANT_HEADER, NAMESPACE_BINDING, NAMESPACE_HEADER};

/// The namespace of a request without `?namespace=`.
const DEFAULT_NAMESPACE: &str = "default";

/// Maximum length of a namespace name, as for `/mqtt/<name>`.
const MAX_NAMESPACE_LEN: usize = 64;

/// Rate limiting binding (`[[ratelimits]]` in `wrangler.toml`) counting the
/// HTTP publish requests of each client.
pub const PUBLISH_RATE_LIMITER_BINDING: &str = "HTTP_PUBLISH_RATE_LIMITER";

/// The `Retry-After` of a client over its publish limit, in seconds: the
/// `period` of the binding in `wrangler.toml`, after which the runtime
/// counts afresh.
// TODO: follow the binding's configured period, which the runtime API does not return.
const PUBLISH_RETRY_AFTER_SECS: u64 = 10;

/// Address key used when `CF-Connecting-IP` is absent, as under `wrangler dev`.
const LOCAL_ADDRESS: &str = "local";

/// Path prefixes of the public HTTP API.
const API_PATHS: [&str; 4] = ["/publish", "/retained", "/sse", "/poll"];

/// Paths under `/admin/` that a namespace serves.
const ADMIN_PATHS: [&str; 3] = ["/admin/metrics", "/admin/clients", "/admin/bridge"];

/// Reports whether the ingress forwards `path` as an HTTP API request.
pub fn is_api_path(path: &str) -> bool {
    API_PATHS.iter().any(|prefix| matches_prefix(path, prefix))
}

/// Reports whether `path` is an admin request served by a namespace.
pub fn is_admin_path(path: &str) -> bool {
    ADMIN_PATHS
        .iter()
        .any(|prefix| matches_prefix(path, prefix))
}

fn matches_prefix(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Serves a public HTTP API request: token check, then the namespace.
pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    let namespace = match namespace_of(&req)? {
        Ok(namespace) => namespace,
        Err(response) => return Ok(response),
    };
    // A bad token is rejected here, so it never wakes the Durable Object.
    let grant = match ingress_auth::check_token(&req, env, &namespace, Caller::HttpApi)? {
        Ok(grant) => grant,
        Err(rejection) => return Ok(rejection),
    };
    if req.method() == Method::Post && matches_prefix(&req.path(), "/publish") {
        if let Some(limited) = check_publish_rate(&req, env, &namespace, &grant).await? {
            return Ok(limited);
        }
    }
    forward(req, env, &namespace, &grant).await
}

/// Counts one publish request of the client, and returns a 429 response
/// when the client is over its limit. A batch counts as one request; the
/// namespace's own limit counts its messages.
async fn check_publish_rate(
    req: &Request,
    env: &Env,
    namespace: &str,
    grant: &str,
) -> Result<Option<Response>> {
    let subject = match auth::Grant::from_header_value(grant) {
        Ok(grant) => grant.map(|grant| grant.sub),
        Err(_) => None,
    };
    let address = req.headers().get("CF-Connecting-IP")?;
    let key = publish_rate_key(namespace, subject.as_deref(), address.as_deref());
    let limiter = match env.rate_limiter(PUBLISH_RATE_LIMITER_BINDING) {
        Ok(limiter) => limiter,
        Err(error) => {
            // Without the binding only the namespace's limit applies.
            logging::error(
                Some(namespace),
                &format!(
                    "rate limiting binding {PUBLISH_RATE_LIMITER_BINDING} unavailable: {error}"
                ),
            );
            return Ok(None);
        }
    };
    if limiter.limit(key).await?.success {
        return Ok(None);
    }
    let client = match &subject {
        Some(subject) => format!("token subject {subject:?}"),
        None => "this address".to_string(),
    };
    let message =
        format!("too many publish requests from {client}; retry in {PUBLISH_RETRY_AFTER_SECS} s");
    let mut response = json_error(429, message)?;
    response
        .headers_mut()
        .set("Retry-After", &PUBLISH_RETRY_AFTER_SECS.to_string())?;
    Ok(Some(response))
}

/// Builds the rate limiter key of a publishing client: its token subject
/// in the namespace, or else its address.
fn publish_rate_key(namespace: &str, subject: Option<&str>, address: Option<&str>) -> String {
    match subject {
        Some(subject) => format!("publish:subject:{namespace}:{subject}"),
        None => format!("publish:address:{}", address.unwrap_or(LOCAL_ADDRESS)),
    }
}

/// Serves an admin request for one namespace. The caller has already
/// passed the `/admin/` gate.
pub async fn handle_admin(req: Request, env: &Env) -> Result<Response> {
    let namespace = match namespace_of(&req)? {
        Ok(namespace) => namespace,
        Err(response) => return Ok(response),
    };
    forward(req, env, &namespace, auth::NO_GRANT).await
}

/// Sends the request on to the namespace's Durable Object. The request is
/// rebuilt with its body read in full instead of cloned: a clone tees the
/// body, and when the object responds without reading it (a 400, say) the
/// runtime later fails with "Can't read from request stream after response
/// has been sent".
async fn forward(mut req: Request, env: &Env, namespace: &str, grant: &str) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !name.eq_ignore_ascii_case("authorization") {
            headers.append(&name, &value)?;
        }
    }
    headers.set(NAMESPACE_HEADER, namespace)?;
    // Always set, so that a client cannot send its own grant.
    headers.set(GRANT_HEADER, grant)?;

    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(headers);
    if !matches!(method, Method::Get | Method::Head) {
        let body = req.bytes().await?;
        init.with_body(Some(Uint8Array::from(body.as_slice()).into()));
    }
    let forwarded = Request::new_with_init(req.url()?.as_str(), &init)?;
    let stub = env
        .durable_object(NAMESPACE_BINDING)?
        .get_by_name(namespace)?;
    stub.fetch_with_request(forwarded).await
}

/// Reads `?namespace=`. A malformed name gets a 400 response.
pub(crate) fn namespace_of(req: &Request) -> Result<std::result::Result<String, Response>> {
    let url = req.url()?;
    let name = url
        .query_pairs()
        .find(|(name, _)| name == "namespace")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    if !valid_namespace(&name) {
        let message = "invalid namespace: use 1 to 64 letters, digits, '-' or '_' in ?namespace=";
        return Ok(Err(json_error(400, message)?));
    }
    Ok(Ok(name))
}

/// Builds a JSON error response of the HTTP and admin APIs:
/// `{"error": message}` with `Content-Type: application/json`.
pub(crate) fn json_error(status: u16, message: impl Into<String>) -> Result<Response> {
    Ok(Response::from_json(&json!({ "error": message.into() }))?.with_status(status))
}

/// Reports whether `name` is a valid namespace name.
pub(crate) fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAMESPACE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_recognised() {
        assert!(is_api_path("/publish"));
        assert!(is_api_path("/publish/a/b"));
        assert!(is_api_path("/retained"));
        assert!(is_api_path("/sse"));
        assert!(!is_api_path("/publisher"));
        assert!(!is_api_path("/mqtt"));
        assert!(is_admin_path("/admin/metrics"));
        assert!(is_admin_path("/admin/clients/c1/disconnect"));
        assert!(!is_admin_path("/admin/health"));
    }

    #[test]
    fn publish_rate_keys_name_the_client() {
        let token = publish_rate_key("site", Some("sensor-1"), Some("192.0.2.1"));
        assert_eq!(token, "publish:subject:site:sensor-1");
        let other_namespace = publish_rate_key("lab", Some("sensor-1"), None);
        assert_ne!(token, other_namespace);
        let address = publish_rate_key("site", None, Some("192.0.2.1"));
        assert_eq!(address, "publish:address:192.0.2.1");
        assert_eq!(
            publish_rate_key("site", None, None),
            "publish:address:local"
        );
    }
}
