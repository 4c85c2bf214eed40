//! The `/admin/` HTTP API and its gate: a Cloudflare Access JWT or the
//! `ADMIN_TOKEN` bearer secret. With neither configured the API is closed.

use auth::secrets_equal;
use worker::{Env, Method, Request, Response, Result};

use crate::auth_env::{self, ADMIN_ACCESS_VAR, ADMIN_TOKEN_SECRET};
use crate::bridge;
use crate::http_api::{self, json_error};
use crate::ingress_auth::{bearer_token, check_rate, now_secs, Caller};
use crate::logging;
use crate::r2_api;

/// Header in which Cloudflare Access passes its signed JWT to the origin.
const ACCESS_JWT_HEADER: &str = "Cf-Access-Jwt-Assertion";

/// Serves a request under `/admin/`.
pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    if let Some(limited) = check_rate(&req, env, "admin", Caller::HttpApi).await? {
        return Ok(limited);
    }
    if let Err(response) = authenticate(&req, env)? {
        return Ok(response);
    }

    match (req.method(), req.path().as_str()) {
        (Method::Get, "/admin/health") => Response::from_json(&health(env)),
        (_, "/admin/health") => json_error(405, "method not allowed: use GET"),
        (_, path) if r2_api::is_archive_path(path) => r2_api::handle(req, env).await,
        (_, path) if bridge::is_dead_letter_path(path) => {
            bridge::handle_dead_letters(req, env).await
        }
        (_, path) if http_api::is_admin_path(path) => http_api::handle_admin(req, env).await,
        (_, path) => json_error(
            404,
            format!("not found: {path}; the admin API has /admin/health"),
        ),
    }
}

/// Builds the health report: the Worker is up, and its token settings are
/// usable or have the error shown.
fn health(env: &Env) -> serde_json::Value {
    let auth = match auth_env::token_verifier(env).as_ref() {
        Ok(verifier) => serde_json::json!({
            "algorithms": verifier.settings().algorithms,
            "anonymous": verifier.anonymous_allowed(),
        }),
        Err(message) => serde_json::json!({ "error": message }),
    };
    serde_json::json!({ "status": "ok", "auth": auth })
}

/// Accepts the request when a configured credential verifies; otherwise
/// returns the response that rejects it.
fn authenticate(req: &Request, env: &Env) -> Result<std::result::Result<(), Response>> {
    let admin_token = auth_env::admin_token(env);
    let access = auth_env::access_verifier(env);
    if admin_token.is_none() && access.is_none() {
        return Ok(Err(json_error(
            404,
            format!(
                "the admin API is disabled: set the {ADMIN_TOKEN_SECRET} secret \
                 (wrangler secret put {ADMIN_TOKEN_SECRET}) or configure Cloudflare Access \
                 in the {ADMIN_ACCESS_VAR} variable"
            ),
        )?));
    }

    if let (Some(access), Some(jwt)) = (&access, req.headers().get(ACCESS_JWT_HEADER)?) {
        match access
            .as_ref()
            .map(|verifier| verifier.verify_claims(&jwt, now_secs()))
        {
            Ok(Ok(_)) => return Ok(Ok(())),
            Ok(Err(error)) => logging::debug(
                None,
                &format!("admin API: Access JWT rejected: {}", error.reason()),
            ),
            Err(message) => logging::error(None, &format!("admin API: {message}")),
        }
    }
    let bearer = req.headers().get("Authorization")?;
    if let (Some(expected), Some(presented)) =
        (&admin_token, bearer.as_deref().and_then(bearer_token))
    {
        if secrets_equal(expected.as_bytes(), presented.as_bytes()) {
            return Ok(Ok(()));
        }
    }

    let mut response = json_error(
        401,
        "admin credentials missing or invalid: send Authorization: Bearer <ADMIN_TOKEN> \
         or come through the Cloudflare Access application",
    )?;
    response
        .headers_mut()
        .set("WWW-Authenticate", "Bearer realm=\"admin\"")?;
    Ok(Err(response))
}
