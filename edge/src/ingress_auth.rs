//! Ingress checks that run before a request reaches a Durable Object: the
//! connection rate per client address and, when the request carries one,
//! the client's token.

use std::cell::RefCell;

use auth::{AuthError, LogDecision, LogLimiter, NO_GRANT};
use worker::{Date, Env, Request, Response, Result};

use crate::http_api::json_error;
use crate::{auth_env, logging};

/// Rate limiting binding (`[[ratelimits]]` in `wrangler.toml`) counting
/// requests per client address.
pub const RATE_LIMITER_BINDING: &str = "CONNECT_RATE_LIMITER";

/// Address key used when `CF-Connecting-IP` is absent, as under `wrangler dev`.
const LOCAL_ADDRESS: &str = "local";

/// Query parameter that carries a token, for browsers, which cannot set
/// headers on a WebSocket.
const TOKEN_QUERY_PARAMETER: &str = "token";

/// At most this many authentication failures are logged per window.
const FAILURE_LOGS_PER_WINDOW: u32 = 20;

/// The window of [`FAILURE_LOGS_PER_WINDOW`], in seconds.
const FAILURE_LOG_WINDOW_SECS: u64 = 60;

thread_local! {
    static FAILURE_LOG: RefCell<LogLimiter> =
        const { RefCell::new(LogLimiter::new(FAILURE_LOGS_PER_WINDOW, FAILURE_LOG_WINDOW_SECS)) };
}

/// The part of the request that carried a token.
#[derive(Clone, Copy)]
enum TokenSource {
    Header,
    Query,
}

impl TokenSource {
    fn name(self) -> &'static str {
        match self {
            TokenSource::Header => "Authorization header",
            TokenSource::Query => "token query parameter",
        }
    }
}

/// The request that an ingress check serves, which picks the error body:
/// plain text for a `/mqtt` WebSocket upgrade, JSON for the HTTP API.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    WebSocket,
    HttpApi,
}

impl Caller {
    /// Returns the `client_id` of an ingress log line. No client id is
    /// known before CONNECT or on an HTTP request.
    fn client_label(self) -> &'static str {
        match self {
            Caller::WebSocket => "(before CONNECT)",
            Caller::HttpApi => "(HTTP request)",
        }
    }

    /// Builds the error response: `{"error": message}` for the HTTP API,
    /// plain text for a WebSocket upgrade.
    pub fn error(self, status: u16, message: impl Into<String>) -> Result<Response> {
        match self {
            Caller::WebSocket => Response::error(message.into(), status),
            Caller::HttpApi => json_error(status, message),
        }
    }
}

/// Returns the current time in seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    Date::now().as_millis() / 1000
}

/// Counts one request of `purpose` from the client's address, and returns
/// a 429 response when the address is over its limit.
pub async fn check_rate(
    req: &Request,
    env: &Env,
    purpose: &str,
    caller: Caller,
) -> Result<Option<Response>> {
    let address = req
        .headers()
        .get("CF-Connecting-IP")?
        .unwrap_or_else(|| LOCAL_ADDRESS.into());
    let limiter = match env.rate_limiter(RATE_LIMITER_BINDING) {
        Ok(limiter) => limiter,
        Err(error) => {
            // Without the binding the Worker still serves, unprotected.
            logging::error(
                None,
                &format!("rate limiting binding {RATE_LIMITER_BINDING} unavailable: {error}"),
            );
            return Ok(None);
        }
    };
    if limiter.limit(format!("{purpose}:{address}")).await?.success {
        return Ok(None);
    }
    Ok(Some(caller.error(
        429,
        "too many connection attempts from this address; retry in a few seconds",
    )?))
}

/// Verifies the token on an upgrade or HTTP API request, if it carries one,
/// and returns the value of the grant header to forward, or the response
/// that rejects the request.
pub fn check_token(
    req: &Request,
    env: &Env,
    namespace: &str,
    caller: Caller,
) -> Result<std::result::Result<String, Response>> {
    let Some((token, source)) = token_from_request(req)? else {
        // The CONNECT password must carry the token, unless anonymous
        // access is on; the Durable Object decides.
        return Ok(Ok(NO_GRANT.to_string()));
    };

    let verifier = auth_env::token_verifier(env);
    let verifier = match verifier.as_ref() {
        Ok(verifier) => verifier,
        Err(message) => {
            logging::error(
                Some(namespace),
                &format!("authentication is misconfigured: {message}"),
            );
            return Ok(Err(caller.error(
                500,
                "authentication is misconfigured on this broker; the operator must fix it",
            )?));
        }
    };

    let now = now_secs();
    let checked = verifier
        .verify(&token, now)
        .and_then(|grant| grant.check_namespace(namespace).map(|()| grant));
    match checked {
        Ok(grant) => Ok(Ok(grant.to_header_value())),
        Err(error) => {
            log_failure(namespace, source, caller, &error, now);
            let status = if error == AuthError::WrongNamespace {
                403
            } else {
                401
            };
            let mut response = caller.error(status, rejection_message(&error, namespace))?;
            if status == 401 {
                response.headers_mut().set(
                    "WWW-Authenticate",
                    "Bearer realm=\"mqtt\", error=\"invalid_token\"",
                )?;
            }
            Ok(Err(response))
        }
    }
}

fn rejection_message(error: &AuthError, namespace: &str) -> String {
    match error {
        AuthError::WrongNamespace => {
            format!(
                "token does not allow namespace {namespace:?}; connect to the namespace it names"
            )
        }
        other => format!("invalid token: {other}"),
    }
}

/// Returns the token from `Authorization: Bearer`, or else from `?token=`.
fn token_from_request(req: &Request) -> Result<Option<(String, TokenSource)>> {
    if let Some(value) = req.headers().get("Authorization")? {
        if let Some(token) = bearer_token(&value) {
            return Ok(Some((token.to_string(), TokenSource::Header)));
        }
    }
    let url = req.url()?;
    let token = url
        .query_pairs()
        .find(|(name, _)| name == TOKEN_QUERY_PARAMETER)
        .map(|(_, value)| (value.into_owned(), TokenSource::Query));
    Ok(token)
}

/// Extracts the token from an `Authorization: Bearer <token>` value. The
/// scheme is case-insensitive (RFC 7235 section 2.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Logs an authentication failure at the ingress, at most
/// [`FAILURE_LOGS_PER_WINDOW`] per window. The client id is not known: an
/// MQTT client sends it later, in CONNECT, and an HTTP request has none.
fn log_failure(namespace: &str, source: TokenSource, caller: Caller, error: &AuthError, now: u64) {
    let decision = FAILURE_LOG.with(|limiter| limiter.borrow_mut().check(now));
    let LogDecision::Log { suppressed } = decision else {
        return;
    };
    logging::info(&serde_json::json!({
        "message": format!("authentication failed: {error}"),
        "namespace": namespace,
        "client_id": caller.client_label(),
        "reason": error.reason(),
        "source": source.name(),
        "suppressed": suppressed,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
