//! Settings of the HTTP API from the `HTTP` table of `[vars]`.

use std::collections::BTreeMap;

use serde::Deserialize;
use worker::Env;

/// Name of the `[vars]` entry with the HTTP settings.
pub const HTTP_VAR: &str = "HTTP";

/// A fallback transport for clients that cannot speak MQTT over WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Server-Sent Events on `GET /sse`.
    Sse,
    /// Long polling on `GET /poll`.
    Poll,
}

/// HTTP API settings; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Seconds an `Idempotency-Key` is remembered with its first result.
    pub idempotency_window_secs: u64,
    /// Messages per second that HTTP publishes may add to a namespace, on
    /// average (the refill rate of its token bucket).
    pub publish_rate_per_sec: f64,
    /// Messages a burst of HTTP publishes may carry (the bucket size).
    pub publish_burst: f64,
    /// Maximum number of messages in one batch publish.
    pub max_batch_messages: usize,
    /// Transports every namespace offers, unless `namespace_transports`
    /// names it.
    pub transports: Vec<Transport>,
    /// Transports of particular namespaces, by name.
    pub namespace_transports: BTreeMap<String, Vec<Transport>>,
    /// Seconds between SSE heartbeat comments.
    pub sse_heartbeat_secs: u64,
    /// Seconds after which the broker ends an SSE stream. The client's
    /// EventSource reconnects with `Last-Event-ID`, and a stream whose
    /// client left unnoticed stops keeping the object in memory.
    pub sse_max_stream_secs: u64,
    /// Maximum wait of one long poll, in seconds.
    pub poll_max_wait_secs: u64,
    /// Messages kept in memory for the `/poll` cursors and SSE
    /// `Last-Event-ID` of readers without a session.
    pub recent_messages: usize,
    /// Messages one named session stores; beyond it the oldest is dropped.
    pub session_max_messages: usize,
    /// Bytes (topic and payload) one named session stores; beyond it the
    /// oldest messages are dropped.
    pub session_max_bytes: usize,
    /// Seconds a named session is kept after the last SSE stream or long
    /// poll that used it ended.
    pub session_expiry_secs: u64,
    /// Named sessions one namespace keeps.
    pub max_sessions: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            idempotency_window_secs: 24 * 60 * 60,
            publish_rate_per_sec: 100.0,
            publish_burst: 200.0,
            max_batch_messages: 100,
            transports: vec![Transport::Sse, Transport::Poll],
            namespace_transports: BTreeMap::new(),
            sse_heartbeat_secs: 15,
            sse_max_stream_secs: 300,
            poll_max_wait_secs: 25,
            recent_messages: 1000,
            session_max_messages: 1000,
            session_max_bytes: 16 * 1024 * 1024,
            session_expiry_secs: 60 * 60,
            max_sessions: 1000,
        }
    }
}

impl HttpSettings {
    /// Reports whether `namespace` offers `transport`.
    pub fn offers(&self, namespace: &str, transport: Transport) -> bool {
        self.namespace_transports
            .get(namespace)
            .unwrap_or(&self.transports)
            .contains(&transport)
    }
}

/// Reads the `HTTP` variable; an absent one gives the defaults, and a
/// malformed one an error that names the problem.
pub fn load(env: &Env) -> Result<HttpSettings, String> {
    let Ok(value) = env.object_var::<serde_json::Value>(HTTP_VAR) else {
        return Ok(HttpSettings::default());
    };
    serde_json::from_value(value).map_err(|error| format!("invalid {HTTP_VAR} variable: {error}"))
}
