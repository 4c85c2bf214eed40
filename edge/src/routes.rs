//! The ingress Worker's `fetch` handler.

use worker::{event, Context, Env, Request, Response, Result};

use crate::http_api::json_error;
use crate::ingress_auth::Caller;
use crate::{admin, http_api, ingress_auth, GRANT_HEADER, NAMESPACE_BINDING, NAMESPACE_HEADER};

/// The namespace of `/mqtt`.
const DEFAULT_NAMESPACE: &str = "default";

/// Longest namespace name accepted in `/mqtt/<name>`.
const MAX_NAMESPACE_LEN: usize = 64;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    if path.starts_with("/admin/") {
        return admin::handle(req, &env).await;
    }
    if http_api::is_api_path(&path) {
        return http_api::handle(req, &env).await;
    }
    let Some(namespace) = namespace_from_path(&path) else {
        return json_error(
            404,
            format!("not found: {path}; MQTT is served on /mqtt, the admin API under /admin/"),
        );
    };
    let Some(namespace) = namespace.filter(|name| valid_namespace(name)) else {
        return Response::error(
            "invalid namespace: use 1 to 64 letters, digits, '-' or '_' after /mqtt/",
            400,
        );
    };

    let is_upgrade = req
        .headers()
        .get("Upgrade")?
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Ok(Response::error(
            "this endpoint speaks MQTT over WebSocket: send a WebSocket upgrade",
            426,
        )?
        .with_headers(upgrade_headers()?));
    }

    // Both checks run here, so a flood or a bad token never wakes the
    // Durable Object.
    if let Some(limited) = ingress_auth::check_rate(&req, &env, "mqtt", Caller::WebSocket).await? {
        return Ok(limited);
    }
    let grant = match ingress_auth::check_token(&req, &env, &namespace, Caller::WebSocket)? {
        Ok(grant) => grant,
        Err(rejection) => return Ok(rejection),
    };

    let mut req = req.clone_mut()?;
    let headers = req.headers_mut()?;
    headers.set(NAMESPACE_HEADER, &namespace)?;
    // Always set, so that a client cannot send its own grant.
    headers.set(GRANT_HEADER, &grant)?;
    headers.delete("Authorization")?;
    let stub = env
        .durable_object(NAMESPACE_BINDING)?
        .get_by_name(&namespace)?;
    stub.fetch_with_request(req).await
}

/// Maps `/mqtt` to `Some(Some("default"))`, `/mqtt/<name>` to
/// `Some(Some(name))`, a malformed name under `/mqtt/` to `Some(None)`, and
/// any other path to `None`.
fn namespace_from_path(path: &str) -> Option<Option<String>> {
    let rest = path.strip_prefix("/mqtt")?;
    if rest.is_empty() || rest == "/" {
        return Some(Some(DEFAULT_NAMESPACE.to_string()));
    }
    let name = rest.strip_prefix('/')?;
    Some(Some(name.trim_end_matches('/').to_string()))
}

fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAMESPACE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn upgrade_headers() -> Result<worker::Headers> {
    let headers = worker::Headers::new();
    headers.set("Upgrade", "websocket")?;
    headers.set("Connection", "Upgrade")?;
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_maps_to_namespace() {
        assert_eq!(namespace_from_path("/mqtt"), Some(Some("default".into())));
        assert_eq!(namespace_from_path("/mqtt/"), Some(Some("default".into())));
        assert_eq!(
            namespace_from_path("/mqtt/site-1"),
            Some(Some("site-1".into()))
        );
        assert_eq!(namespace_from_path("/mqttx"), None);
        assert_eq!(namespace_from_path("/other"), None);
    }

    #[test]
    fn namespace_names_are_checked() {
        assert!(valid_namespace("site_1-a"));
        assert!(!valid_namespace(""));
        assert!(!valid_namespace("a/b"));
        assert!(!valid_namespace(&"x".repeat(65)));
    }
}
