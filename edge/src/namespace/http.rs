//! The Durable Object's HTTP requests other than WebSocket upgrades: HTTP
//! publish (single and batch) and retained message reads. The ingress has
//! already checked the namespace name and any token, and passes the grant
//! in [`GRANT_HEADER`].

use auth::{Acl, Grant};
use broker::ExternalPublishError;
use bytes::Bytes;
use codec::Publish;
use serde::Deserialize;
use serde_json::json;
use worker::{Date, Method, Request, Response, Result, SqlStorage};

use super::{Loaded, Namespace};
use crate::http_message::{self, MessageJson, PropertyHeaders};
use crate::{auth_env, logging, GRANT_HEADER, NAMESPACE_HEADER};

/// Header of a publish request that makes retries safe.
const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Default and maximum `limit` of a retained list.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

const CREATE_IDEMPOTENCY_TABLE: &str = "CREATE TABLE IF NOT EXISTS http_idempotency (
    key TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID";

/// The rights of a request: every topic, or the topics its token's ACL allows.
pub(super) enum Access {
    Anonymous,
    Token {
        subject: String,
        acl: Acl,
        /// When the token stops being accepted (`exp` plus the leeway), in
        /// milliseconds since the Unix epoch.
        ends_at_ms: Option<u64>,
    },
}

impl Access {
    fn may_publish(&self, topic: &str) -> bool {
        match self {
            Access::Anonymous => true,
            Access::Token { acl, .. } => acl.may_publish(topic),
        }
    }

    pub(super) fn may_subscribe(&self, filter: &str) -> bool {
        match self {
            Access::Anonymous => true,
            Access::Token { acl, .. } => acl.may_subscribe(filter),
        }
    }

    pub(super) fn may_receive(&self, topic: &str) -> bool {
        match self {
            Access::Anonymous => true,
            Access::Token { acl, .. } => acl.may_receive(topic),
        }
    }

    /// Returns the token's subject, or an empty string for anonymous
    /// requests.
    pub(super) fn subject(&self) -> &str {
        match self {
            Access::Anonymous => "",
            Access::Token { subject, .. } => subject,
        }
    }

    /// Returns when the token stops being accepted; `None` for anonymous
    /// requests and tokens without `exp`.
    pub(super) fn ends_at_ms(&self) -> Option<u64> {
        match self {
            Access::Anonymous => None,
            Access::Token { ends_at_ms, .. } => *ends_at_ms,
        }
    }

    /// Returns the token's ACL; `None` for anonymous requests.
    pub(super) fn acl(&self) -> Option<&Acl> {
        match self {
            Access::Anonymous => None,
            Access::Token { acl, .. } => Some(acl),
        }
    }
}

pub(super) use crate::http_api::json_error;

/// Returns the query parameters of a request, in order, with repeats.
pub(super) fn query_pairs(req: &Request) -> Result<Vec<(String, String)>> {
    let url = req.url()?;
    Ok(url
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect())
}

pub(super) fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[derive(Deserialize)]
struct StoredResult {
    status: u16,
    body: String,
}

impl Namespace {
    /// Serves a request that is not a WebSocket upgrade, then moves the
    /// alarm if the request changed a deadline (an admin disconnect starts a
    /// session expiry, say).
    pub(super) async fn handle_http(&self, req: Request) -> Result<Response> {
        let response = self.route_http(req).await;
        self.schedule_alarm().await;
        response
    }

    async fn route_http(&self, mut req: Request) -> Result<Response> {
        let namespace = req.headers().get(NAMESPACE_HEADER)?.unwrap_or_default();
        if let Err(message) = self.ensure_loaded(&namespace) {
            logging::error(Some(&namespace), &format!("cannot start: {message}"));
            return json_error(500, format!("broker unavailable: {message}"));
        }
        let path = req.path();
        let method = req.method();
        if let Some(rest) = path.strip_prefix("/admin/") {
            return self.handle_admin(req, method, rest).await;
        }
        let access = match self.access(&req)? {
            Ok(access) => access,
            Err(response) => return Ok(response),
        };
        match (method, path.as_str()) {
            (Method::Post, "/publish") => self.publish_batch(&mut req, &access).await,
            (Method::Post, topic) if topic.starts_with("/publish/") => {
                let topic = &topic["/publish/".len()..];
                self.publish_one(&mut req, topic, &access).await
            }
            (Method::Get, "/retained") => self.list_retained(&req, &access),
            (Method::Get, topic) if topic.starts_with("/retained/") => {
                self.read_retained(&topic["/retained/".len()..], &access)
            }
            (Method::Get, "/sse") => self.open_sse(&req, &namespace, &access),
            (Method::Get, "/poll") => self.long_poll(&req, &namespace, &access).await,
            (_, path) => json_error(404, format!("not found: {path}; see docs/http.md")),
        }
    }

    /// Decides what the request may do from the grant the ingress passed.
    ///
    /// NOTE: this is the integration point with token authentication. A
    /// request without a token is anonymous. It is rejected with 401 when
    /// the `AUTH` settings forbid anonymous access. It is allowed when those
    /// settings are unusable (a key missing, say), because MQTT clients
    /// connect without a check in that case today.
    fn access(&self, req: &Request) -> Result<std::result::Result<Access, Response>> {
        let header = req
            .headers()
            .get(GRANT_HEADER)?
            .unwrap_or_else(|| auth::NO_GRANT.into());
        match Grant::from_header_value(&header) {
            Ok(Some(grant)) => {
                let acl = grant.acl(&grant.sub, None);
                let verifier = auth_env::token_verifier(&self.env);
                let leeway = match verifier.as_ref() {
                    Ok(verifier) => verifier.settings().leeway_secs,
                    Err(_) => 0,
                };
                let ends_at_ms = grant
                    .expires_at
                    .map(|exp| exp.saturating_add(leeway).saturating_mul(1000));
                return Ok(Ok(Access::Token {
                    subject: grant.sub,
                    acl,
                    ends_at_ms,
                }));
            }
            Ok(None) => {}
            Err(error) => {
                logging::error(
                    None,
                    &format!("grant header from the ingress does not decode: {error}"),
                );
                return Ok(Err(json_error(
                    500,
                    "internal error: invalid grant from the ingress",
                )?));
            }
        }
        let verifier = auth_env::token_verifier(&self.env);
        if let Ok(verifier) = verifier.as_ref() {
            if !verifier.anonymous_allowed() {
                self.count_auth_failure();
                let mut response = json_error(
                    401,
                    "missing token: send Authorization: Bearer <token> or ?token=<token>",
                )?;
                response
                    .headers_mut()
                    .set("WWW-Authenticate", "Bearer realm=\"mqtt\"")?;
                return Ok(Err(response));
            }
        }
        Ok(Ok(Access::Anonymous))
    }

    fn count_auth_failure(&self) {
        if let Some(loaded) = self.loaded.borrow_mut().as_mut() {
            loaded.broker.record_auth_failure();
        }
    }

    /// Runs `event` on the broker, carries out its outputs (storage writes
    /// included) and returns its result; `None` if there is no broker.
    pub(super) fn with_loaded<T>(&self, event: impl FnOnce(&mut Loaded, u64) -> T) -> Option<T> {
        let mut guard = self.loaded.borrow_mut();
        let loaded = guard.as_mut()?;
        let result = event(loaded, Date::now().as_millis());
        self.carry_out(loaded);
        Some(result)
    }

    async fn publish_one(
        &self,
        req: &mut Request,
        encoded_topic: &str,
        access: &Access,
    ) -> Result<Response> {
        let pairs = query_pairs(req)?;
        let topic = match http_message::decode_path(encoded_topic) {
            Ok(topic) => topic,
            Err(message) => return json_error(400, message),
        };

        let qos = http_message::parse_qos(query_value(&pairs, "qos"));
        let retain = http_message::parse_retain(query_value(&pairs, "retain"));
        let headers = req.headers();
        let property_headers = PropertyHeaders {
            content_type: headers.get("Content-Type")?,
            message_expiry: headers.get(http_message::EXPIRY_HEADER)?,
            response_topic: headers.get(http_message::RESPONSE_TOPIC_HEADER)?,
            correlation_data: headers.get(http_message::CORRELATION_DATA_HEADER)?,
            user_properties: headers.get(http_message::USER_PROPERTY_HEADER)?,
        };
        let properties = http_message::properties_from_headers(&property_headers);
        let (qos, retain, properties) = match (qos, retain, properties) {
            (Ok(qos), Ok(retain), Ok(properties)) => (qos, retain, properties),
            (Err(message), _, _) | (_, Err(message), _) | (_, _, Err(message)) => {
                return json_error(400, message)
            }
        };

        if !access.may_publish(&topic) {
            self.count_auth_failure();
            return json_error(
                403,
                format!("the token does not allow publishing to {topic:?}"),
            );
        }
        let key = match idempotency_key(req)? {
            Ok(key) => key,
            Err(response) => return Ok(response),
        };

        let body = req.bytes().await?;
        let publish = http_message::publish(topic, Bytes::from(body), qos, retain, properties);
        self.publish_all(vec![publish], key.as_deref(), false)
    }

    async fn publish_batch(&self, req: &mut Request, access: &Access) -> Result<Response> {
        let key = match idempotency_key(req)? {
            Ok(key) => key,
            Err(response) => return Ok(response),
        };
        let max_batch = self.http_settings().max_batch_messages;
        let body = req.bytes().await?;
        let publishes = match http_message::parse_batch(&body, max_batch) {
            Ok(publishes) => publishes,
            Err(message) => return json_error(400, message),
        };
        if let Some((index, denied)) = publishes
            .iter()
            .enumerate()
            .find(|(_, publish)| !access.may_publish(&publish.topic))
        {
            self.count_auth_failure();
            let topic = &denied.topic;
            return json_error(
                403,
                format!("message {index}: the token does not allow publishing to {topic:?}"),
            );
        }
        self.publish_all(publishes, key.as_deref(), true)
    }

    /// Publishes messages that passed the request checks: replays the stored
    /// result of a known idempotency key, applies the rate limit, checks
    /// every message before publishing any, and stores the result under the
    /// key. Nothing awaits in here, so no other request interleaves.
    fn publish_all(
        &self,
        publishes: Vec<Publish>,
        key: Option<&str>,
        batch: bool,
    ) -> Result<Response> {
        let sql = self.state.storage().sql();
        let window_ms = self
            .http_settings()
            .idempotency_window_secs
            .saturating_mul(1000);
        if let Some(key) = key {
            if let Some(stored) = lookup_idempotency(&sql, key, window_ms)? {
                let mut response = Response::ok(stored.body)?.with_status(stored.status);
                response
                    .headers_mut()
                    .set("Content-Type", "application/json")?;
                response.headers_mut().set("Idempotent-Replayed", "true")?;
                return Ok(response);
            }
        }

        let failures_before = self
            .loaded
            .borrow()
            .as_ref()
            .map_or(0, |loaded| loaded.storage_failures);
        let outcome = self.with_loaded(|loaded, now| {
            if let Err(retry_after) = loaded.publish_bucket.take(publishes.len() as f64, now) {
                return Err((
                    429,
                    format!("rate limit exceeded for this namespace; retry in {retry_after} s"),
                    Some(retry_after),
                ));
            }
            for (index, publish) in publishes.iter().enumerate() {
                if let Err(error) = loaded.broker.check_external(publish) {
                    let prefix = if batch {
                        format!("message {index}: ")
                    } else {
                        String::new()
                    };
                    let status = publish_error_status(&error);
                    return Err((status, format!("{prefix}{error}"), None));
                }
            }
            let count = publishes.len();
            for publish in publishes {
                // Checked above; nothing in between changes the outcome.
                let _ = loaded.broker.publish_external(publish, now);
            }
            Ok(count)
        });
        let failures_after = self
            .loaded
            .borrow()
            .as_ref()
            .map_or(0, |loaded| loaded.storage_failures);
        if failures_after > failures_before {
            // The message was routed, but its stored copies may be missing,
            // so the publisher must not count it as accepted.
            return json_error(
                500,
                "storage write failed; the message may be delivered only to online subscribers",
            );
        }
        let (status, body) = match outcome {
            None => return json_error(500, "broker unavailable"),
            Some(Err((status, message, retry_after))) => {
                let mut response = json_error(status, message)?;
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .set("Retry-After", &seconds.max(1).to_string())?;
                }
                return Ok(response);
            }
            Some(Ok(count)) => (
                200u16,
                json!({ "status": "accepted", "messages": count }).to_string(),
            ),
        };
        if let Some(key) = key {
            store_idempotency(&sql, key, status, &body);
        }
        let mut response = Response::ok(body)?.with_status(status);
        response
            .headers_mut()
            .set("Content-Type", "application/json")?;
        Ok(response)
    }

    fn read_retained(&self, encoded_topic: &str, access: &Access) -> Result<Response> {
        let topic = match http_message::decode_path(encoded_topic) {
            Ok(topic) => topic,
            Err(message) => return json_error(400, message),
        };
        if !codec::topic::valid_topic_name(&topic) {
            return json_error(
                400,
                format!("invalid topic name {topic:?}: wildcards are not allowed"),
            );
        }
        if !access.may_receive(&topic) {
            return json_error(403, format!("the token does not allow reading {topic:?}"));
        }

        let now = Date::now().as_millis();
        let message = self
            .loaded
            .borrow()
            .as_ref()
            .and_then(|loaded| loaded.broker.retained_message(&topic, now));
        let Some(message) = message else {
            return json_error(404, format!("no retained message on {topic:?}"));
        };

        let mut response = Response::from_bytes(message.payload.to_vec())?;
        let headers = response.headers_mut();
        let properties = &message.properties;
        if let Some(content_type) = &properties.content_type {
            headers.set("Content-Type", content_type)?;
        }
        headers.set(http_message::QOS_HEADER, &(message.qos as u8).to_string())?;
        if let Some(seconds) = http_message::remaining_secs(&message, now) {
            headers.set(http_message::EXPIRY_HEADER, &seconds.to_string())?;
        }
        if let Some(topic) = &properties.response_topic {
            headers.set(http_message::RESPONSE_TOPIC_HEADER, topic)?;
        }
        if let Some(data) = &properties.correlation_data {
            headers.set(
                http_message::CORRELATION_DATA_HEADER,
                &http_message::base64_header(data),
            )?;
        }
        for (key, value) in &properties.user_properties {
            let value = http_message::user_property_header(key, value);
            headers.append(http_message::USER_PROPERTY_HEADER, &value)?;
        }
        Ok(response)
    }

    fn list_retained(&self, req: &Request, access: &Access) -> Result<Response> {
        let pairs = query_pairs(req)?;
        let filter = query_value(&pairs, "filter").unwrap_or("#");
        if !codec::topic::valid_topic_filter(filter) || filter.starts_with("$share/") {
            return json_error(400, format!("invalid filter {filter:?}"));
        }
        if !access.may_subscribe(filter) {
            return json_error(403, format!("the token does not allow reading {filter:?}"));
        }
        let limit = match query_value(&pairs, "limit").map(str::parse::<usize>) {
            None => DEFAULT_PAGE,
            Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
            Some(_) => return json_error(400, format!("invalid limit: use 1 to {MAX_PAGE}")),
        };
        let cursor = query_value(&pairs, "cursor").filter(|cursor| !cursor.is_empty());
        let now = Date::now().as_millis();
        let page = self
            .loaded
            .borrow()
            .as_ref()
            .map(|loaded| loaded.broker.retained_page(filter, cursor, limit, now));
        let Some(page) = page else {
            return json_error(500, "broker unavailable");
        };
        let messages: Vec<MessageJson> = page
            .messages
            .iter()
            .filter(|message| access.may_receive(&message.topic))
            .map(|message| MessageJson::new(message, now))
            .collect();
        Response::from_json(&json!({ "messages": messages, "next_cursor": page.next_after }))
    }

    pub(super) fn http_settings(&self) -> crate::http_settings::HttpSettings {
        self.loaded
            .borrow()
            .as_ref()
            .map(|loaded| loaded.http.clone())
            .unwrap_or_default()
    }
}

/// Reads and checks the `Idempotency-Key` header.
fn idempotency_key(req: &Request) -> Result<std::result::Result<Option<String>, Response>> {
    let Some(key) = req.headers().get(IDEMPOTENCY_HEADER)? else {
        return Ok(Ok(None));
    };
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        let message =
            format!("invalid {IDEMPOTENCY_HEADER}: use 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters");
        return Ok(Err(json_error(400, message)?));
    }
    Ok(Ok(Some(key)))
}

fn publish_error_status(error: &ExternalPublishError) -> u16 {
    match error {
        ExternalPublishError::PacketTooLarge { .. } => 413,
        _ => 400,
    }
}

/// Creates the idempotency table if needed.
pub(super) fn create_idempotency_table(sql: &SqlStorage) -> Result<()> {
    sql.exec(CREATE_IDEMPOTENCY_TABLE, None)?;
    Ok(())
}

/// Deletes expired keys, then returns the stored result of `key`.
fn lookup_idempotency(sql: &SqlStorage, key: &str, window_ms: u64) -> Result<Option<StoredResult>> {
    let oldest = Date::now().as_millis().saturating_sub(window_ms) as i64;
    sql.exec(
        "DELETE FROM http_idempotency WHERE created_ms < ?",
        vec![oldest.into()],
    )?;
    let rows: Vec<StoredResult> = sql
        .exec(
            "SELECT status, body FROM http_idempotency WHERE key = ?",
            vec![key.into()],
        )?
        .to_array()?;
    Ok(rows.into_iter().next())
}

fn store_idempotency(sql: &SqlStorage, key: &str, status: u16, body: &str) {
    let now = Date::now().as_millis() as i64;
    let result = sql.exec(
        "INSERT OR REPLACE INTO http_idempotency (key, status, body, created_ms) VALUES (?, ?, ?, ?)",
        vec![key.into(), i64::from(status).into(), body.into(), now.into()],
    );
    if let Err(error) = result {
        logging::error(None, &format!("storing idempotency key failed: {error}"));
    }
}
