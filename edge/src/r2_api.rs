//! The archive routes of the admin API. The ingress Worker serves the
//! reads from R2 itself, so they never wake a Durable Object. It forwards
//! the rest (import, audit settings, flush, replay) to the namespace.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use broker::archive;
use worker::js_sys::Uint8Array;
use worker::{Date, Env, Method, Request, RequestInit, Response, Result};

use crate::http_api::{self, json_error};
use crate::http_message::{self, QOS_HEADER};
use crate::{logging, r2};

/// Content type of NDJSON bodies.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

/// Reports whether `path` is an archive route.
pub fn is_archive_path(path: &str) -> bool {
    path.starts_with("/admin/retained/")
        || path == "/admin/audit"
        || path.starts_with("/admin/audit/")
}

/// Serves an archive route; the caller has passed the `/admin/` gate.
pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    let namespace = match http_api::namespace_of(&req)? {
        Ok(namespace) => namespace,
        Err(response) => return Ok(response),
    };
    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Get, "/admin/retained/export") => export_retained(env, &namespace).await,
        (Method::Get, path) if path.starts_with("/admin/retained/mirror/") => {
            let encoded = &path["/admin/retained/mirror/".len()..];
            read_mirrored(env, &namespace, encoded).await
        }
        (Method::Post, "/admin/retained/import") => import_retained(req, env).await,
        (Method::Get, "/admin/audit/range") => audit_range(&req, env, &namespace).await,
        (_, "/admin/audit" | "/admin/audit/flush" | "/admin/audit/replay") => {
            http_api::handle_admin(req, env).await
        }
        (_, path) => json_error(404, format!("not found: {path}; see docs/http.md")),
    }
}

/// `GET /admin/retained/export`: the namespace's retained mirror as NDJSON.
// TODO: page the export with a cursor. It reads every retained object in
// one request, and the runtime caps the operations of one invocation.
async fn export_retained(env: &Env, namespace: &str) -> Result<Response> {
    let bucket = match r2::bucket(env) {
        Ok(bucket) => bucket,
        Err(message) => return json_error(500, message),
    };
    match r2::read_retained(&bucket, namespace, Date::now().as_millis()).await {
        Ok(records) => ndjson(r2::to_ndjson(&records)),
        Err(message) => json_error(502, message),
    }
}

/// `GET /admin/retained/mirror/<topic>`: one retained message from R2, in
/// the form of `GET /retained/<topic>`.
async fn read_mirrored(env: &Env, namespace: &str, encoded_topic: &str) -> Result<Response> {
    let topic = match http_message::decode_path(encoded_topic) {
        Ok(topic) => topic,
        Err(message) => return json_error(400, message),
    };
    let Some(key) = archive::retained_key(namespace, &topic) else {
        return json_error(400, "topic too long for an R2 key");
    };

    let bucket = match r2::bucket(env) {
        Ok(bucket) => bucket,
        Err(message) => {
            logging::error(Some(namespace), &format!("mirror read failed: {message}"));
            return json_error(500, message);
        }
    };
    let text = match r2::read_text(&bucket, &key).await {
        Ok(text) => text,
        Err(message) => {
            logging::error(
                Some(namespace),
                &format!("mirror read of {key} failed: {message}"),
            );
            return json_error(502, message);
        }
    };

    let now = Date::now().as_millis();
    let record = text
        .as_deref()
        .and_then(|text| archive::parse_ndjson(text).ok())
        .and_then(|records| records.into_iter().next())
        .filter(|record| record.expires_at_ms.is_none_or(|at| at > now));
    let Some(record) = record else {
        return json_error(404, format!("no mirrored retained message on {topic:?}"));
    };
    let Ok(payload) = BASE64.decode(&record.payload_base64) else {
        logging::error(
            Some(namespace),
            &format!("mirrored record {key} has an invalid payload"),
        );
        return json_error(502, format!("mirrored record of {topic:?} is damaged"));
    };

    let mut response = Response::from_bytes(payload)?;
    let headers = response.headers_mut();
    if let Some(content_type) = &record.content_type {
        headers.set("Content-Type", content_type)?;
    }
    headers.set(QOS_HEADER, &record.qos.to_string())?;
    if let Some(at) = record.expires_at_ms {
        let seconds = at.saturating_sub(now).div_ceil(1000);
        headers.set(http_message::EXPIRY_HEADER, &seconds.to_string())?;
    }
    Ok(response)
}

/// `POST /admin/retained/import`: forwards the NDJSON body to the
/// namespace, or with `?from=<namespace>` that namespace's mirror instead.
async fn import_retained(req: Request, env: &Env) -> Result<Response> {
    let url = req.url()?;
    let from = url
        .query_pairs()
        .find(|(name, _)| name == "from")
        .map(|(_, value)| value.into_owned());
    let Some(from) = from else {
        return http_api::handle_admin(req, env).await;
    };
    if !http_api::valid_namespace(&from) {
        return json_error(400, "invalid from: use 1 to 64 letters, digits, '-' or '_'");
    }
    let bucket = match r2::bucket(env) {
        Ok(bucket) => bucket,
        Err(message) => return json_error(500, message),
    };
    let records = match r2::read_retained(&bucket, &from, Date::now().as_millis()).await {
        Ok(records) => records,
        Err(message) => return json_error(502, message),
    };
    let body = r2::to_ndjson(&records);
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(req.headers().clone())
        .with_body(Some(Uint8Array::from(body.as_bytes()).into()));
    let forwarded = Request::new_with_init(url.as_str(), &init)?;
    http_api::handle_admin(forwarded, env).await
}

/// `GET /admin/audit/range?from=<ms>&to=<ms>`: the audit records of the
/// range, flushed to R2, as NDJSON in sequence order.
async fn audit_range(req: &Request, env: &Env, namespace: &str) -> Result<Response> {
    let (from, to) = match time_range(req)? {
        Ok(range) => range,
        Err(message) => return json_error(400, message),
    };
    let bucket = match r2::bucket(env) {
        Ok(bucket) => bucket,
        Err(message) => return json_error(500, message),
    };
    match r2::read_audit_range(&bucket, namespace, from, to).await {
        Ok(records) => ndjson(r2::to_ndjson(&records)),
        Err(message) => json_error(502, message),
    }
}

/// Reads `from` and `to`, milliseconds since the Unix epoch; `to` defaults
/// to now.
pub fn time_range(req: &Request) -> Result<std::result::Result<(u64, u64), String>> {
    let url = req.url()?;
    let value = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let parse = |name: &str, text: Option<String>| match text {
        None => Ok(None),
        Some(text) => text
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("invalid {name} {text:?}: use milliseconds since the Unix epoch")),
    };
    let from = match parse("from", value("from")) {
        Ok(Some(from)) => from,
        Ok(None) => return Ok(Err("missing from: milliseconds since the Unix epoch".into())),
        Err(message) => return Ok(Err(message)),
    };
    let to = match parse("to", value("to")) {
        Ok(to) => to.unwrap_or_else(|| Date::now().as_millis() + 1),
        Err(message) => return Ok(Err(message)),
    };
    if to <= from {
        return Ok(Err(format!(
            "empty range: to ({to}) must be after from ({from})"
        )));
    }
    Ok(Ok((from, to)))
}

fn ndjson(body: String) -> Result<Response> {
    let mut response = Response::ok(body)?;
    response
        .headers_mut()
        .set("Content-Type", NDJSON_CONTENT_TYPE)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_routes_exclude_upkeep() {
        assert!(is_archive_path("/admin/retained/export"));
        assert!(is_archive_path("/admin/audit"));
        assert!(is_archive_path("/admin/audit/range"));
        assert!(!is_archive_path("/admin/auditor"));
        assert!(!is_archive_path("/admin/upkeep"));
    }
}
