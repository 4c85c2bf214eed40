//! Authentication settings from the Worker's environment.
//!
//! | Name | Kind | Holds |
//! |---|---|---|
//! | `AUTH` | `[vars]` table | [`auth::Settings`]: algorithms, issuer, audience, keys, claim names, `anonymous` |
//! | `AUTH_ANONYMOUS` | `[vars]` string | `"true"` or `"false"`; replaces `AUTH.anonymous` (for `wrangler dev --var`) |
//! | `AUTH_HMAC_SECRET` | secret | the HS256/384/512 key |
//! | `ADMIN_TOKEN` | secret | the bearer secret of `/admin/` |
//! | `ADMIN_ACCESS` | `[vars]` table | [`AccessSettings`] for Cloudflare Access JWTs on `/admin/` |

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use auth::{hmac_secret_from_text, AuthError, Grant, JwkSet, Settings, Verifier, NO_GRANT};
use broker::Authentication;
use serde::Deserialize;
use worker::{Env, Request};

use crate::GRANT_HEADER;

/// `[vars]` table with the token settings.
pub const AUTH_VAR: &str = "AUTH";

/// `[vars]` string that replaces `AUTH.anonymous` when set, because
/// `wrangler dev --var` can only pass strings.
pub const ANONYMOUS_VAR: &str = "AUTH_ANONYMOUS";

/// Secret with the HMAC key of HS256, HS384 and HS512.
pub const HMAC_SECRET: &str = "AUTH_HMAC_SECRET";

/// Secret that a request to `/admin/` may present as a bearer token.
pub const ADMIN_TOKEN_SECRET: &str = "ADMIN_TOKEN";

/// `[vars]` table that configures Cloudflare Access for `/admin/`.
pub const ADMIN_ACCESS_VAR: &str = "ADMIN_ACCESS";

/// The Cloudflare Access application in front of `/admin/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// The team domain, such as `myteam.cloudflareaccess.com`; tokens must
    /// carry `iss = "https://<team_domain>"`.
    pub team_domain: String,
    /// The application's Audience (AUD) tag.
    pub audience: String,
    /// The team's signing keys, as served at
    /// `https://<team_domain>/cdn-cgi/access/certs`.
    pub jwks: JwkSet,
}

/// The token verifier shared by the ingress and the Durable Object of one
/// isolate, or the message that explains why the settings are unusable.
pub type SharedVerifier = Rc<Result<Arc<Verifier>, String>>;

thread_local! {
    // The environment of an isolate does not change while it lives (a new
    // secret or variable means a new deployment), so one verifier serves
    // every request.
    static TOKEN_VERIFIER: RefCell<Option<SharedVerifier>> = const { RefCell::new(None) };
}

/// Returns the verifier for client tokens, built on first use. `Err`
/// contains a message that names the setting to fix.
pub fn token_verifier(env: &Env) -> SharedVerifier {
    TOKEN_VERIFIER.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| Rc::new(build_token_verifier(env).map(Arc::new)))
            .clone()
    })
}

/// Returns how the broker authenticates CONNECT: with the verifier the
/// ingress uses, or, when the settings are unusable, by rejecting every
/// CONNECT with Server unavailable.
pub fn broker_authentication(env: &Env) -> Authentication {
    match token_verifier(env).as_ref() {
        Ok(verifier) => Authentication::Tokens(Arc::clone(verifier)),
        Err(message) => Authentication::Misconfigured(message.clone()),
    }
}

/// Reads the grant that the ingress forwarded in [`GRANT_HEADER`]: `None`
/// when the upgrade request carried no token. A missing header counts as
/// no token, because a grant only adds rights to what CONNECT presents.
pub fn forwarded_grant(req: &Request) -> worker::Result<Result<Option<Grant>, AuthError>> {
    let value = req
        .headers()
        .get(GRANT_HEADER)?
        .unwrap_or_else(|| NO_GRANT.into());
    Ok(Grant::from_header_value(&value))
}

fn build_token_verifier(env: &Env) -> Result<Verifier, String> {
    let mut settings = match env.object_var::<serde_json::Value>(AUTH_VAR) {
        Ok(value) => serde_json::from_value::<Settings>(value)
            .map_err(|error| format!("invalid {AUTH_VAR} variable: {error}"))?,
        Err(_) => Settings::default(),
    };
    if let Ok(value) = env.var(ANONYMOUS_VAR) {
        settings.anonymous = match value.to_string().as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(format!(
                    "invalid {ANONYMOUS_VAR} = {other:?}; use \"true\" or \"false\""
                ))
            }
        };
    }
    let secret = env
        .secret(HMAC_SECRET)
        .ok()
        .map(|secret| secret.to_string());
    let secret = secret.as_deref().map(hmac_secret_from_text);
    Verifier::new(settings, secret)
        .map_err(|error| format!("{error} (variables {AUTH_VAR}, secret {HMAC_SECRET})"))
}

/// Returns the verifier for Cloudflare Access JWTs, `None` when
/// `ADMIN_ACCESS` is not set.
pub fn access_verifier(env: &Env) -> Option<Result<Verifier, String>> {
    let value = env.object_var::<serde_json::Value>(ADMIN_ACCESS_VAR).ok()?;
    let build = || {
        let access: AccessSettings = serde_json::from_value(value)
            .map_err(|error| format!("invalid {ADMIN_ACCESS_VAR} variable: {error}"))?;
        let settings = Settings {
            // Cloudflare Access signs its application tokens with RS256.
            algorithms: vec!["RS256".to_string()],
            issuer: Some(format!("https://{}", access.team_domain)),
            audience: vec![access.audience],
            jwks: Some(access.jwks),
            ..Settings::default()
        };
        Verifier::new(settings, None).map_err(|error| format!("{ADMIN_ACCESS_VAR}: {error}"))
    };
    Some(build())
}

/// Returns the admin bearer secret, `None` when it is unset or empty.
pub fn admin_token(env: &Env) -> Option<String> {
    let secret = env.secret(ADMIN_TOKEN_SECRET).ok()?.to_string();
    let secret = String::from_utf8_lossy(hmac_secret_from_text(&secret)).into_owned();
    (!secret.is_empty()).then_some(secret)
}
