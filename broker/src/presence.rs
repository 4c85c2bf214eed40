//! What the broker publishes about itself: presence events when clients
//! connect and disconnect, and its status under `$SYS/broker/` at the
//! configured interval while clients are connected.
//!
//! Topics (JSON payloads for presence, decimal text for status):
//! - `$SYS/presence/{client-id}/connected`
//! - `$SYS/presence/{client-id}/disconnected`
//! - `$SYS/broker/clients/connected`, `$SYS/broker/messages/received`,
//!   `$SYS/broker/messages/sent`, `$SYS/broker/bytes/received`,
//!   `$SYS/broker/bytes/sent`, `$SYS/broker/uptime` (seconds)
//!
//! Wildcard filters that start with `#` or `+` do not match them
//! (MQTT-4.7.2-1), so a dashboard subscribes to `$SYS/presence/#` itself.

use bytes::Bytes;
use codec::{ProtocolVersion, QoS, ReasonCode};
use serde::Serialize;

use crate::external::protocol_name;
use crate::lifecycle::Ending;
use crate::message::Message;
use crate::Broker;

/// A presence event, the JSON payload of a `$SYS/presence/` message.
#[derive(Debug, Serialize)]
struct PresenceEvent<'a> {
    event: &'static str,
    client_id: &'a str,
    namespace: &'a str,
    time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clean_start: Option<bool>,
    /// For a disconnect: whether the client sent DISCONNECT.
    #[serde(skip_serializing_if = "Option::is_none")]
    clean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl Broker {
    /// Sets the namespace name that presence events carry.
    pub fn set_namespace_name(&mut self, name: &str) {
        self.namespace_name = name.to_string();
    }

    pub(crate) fn publish_connected(
        &mut self,
        client_id: &str,
        version: ProtocolVersion,
        clean_start: bool,
        now_ms: u64,
    ) {
        self.metrics.connects += 1;
        let namespace = self.namespace_name.as_str();
        log::info!(namespace, client_id, clean_start; "client connected");
        if self.config.presence_events {
            let namespace = self.namespace_name.clone();
            let event = PresenceEvent {
                event: "connected",
                client_id,
                namespace: &namespace,
                time_ms: now_ms,
                protocol: Some(protocol_name(version)),
                clean_start: Some(clean_start),
                clean: None,
                reason: None,
            };
            self.publish_presence(client_id, "connected", &event, now_ms);
        }
        if self.next_status_ms.is_none() && self.config.sys_interval_secs > 0 {
            let interval_ms = u64::from(self.config.sys_interval_secs) * 1000;
            self.next_status_ms = Some(now_ms.saturating_add(interval_ms));
        }
    }

    pub(crate) fn publish_disconnected(&mut self, client_id: &str, ending: Ending, now_ms: u64) {
        self.metrics.disconnects += 1;
        let reason = ending_reason(ending);
        let namespace = self.namespace_name.as_str();
        let clean = matches!(ending, Ending::Disconnect { .. });
        log::info!(namespace, client_id, clean, reason; "client disconnected");
        if !self.config.presence_events {
            return;
        }
        let namespace = self.namespace_name.clone();
        let event = PresenceEvent {
            event: "disconnected",
            client_id,
            namespace: &namespace,
            time_ms: now_ms,
            protocol: None,
            clean_start: None,
            clean: Some(matches!(ending, Ending::Disconnect { .. })),
            reason: Some(reason),
        };
        self.publish_presence(client_id, "disconnected", &event, now_ms);
    }

    fn publish_presence(
        &mut self,
        client_id: &str,
        kind: &str,
        event: &PresenceEvent,
        now_ms: u64,
    ) {
        let payload = serde_json::to_vec(event).unwrap_or_default();
        let topic = format!("$SYS/presence/{}/{kind}", topic_level(client_id));
        self.publish_system(
            topic,
            Bytes::from(payload),
            Some("application/json"),
            now_ms,
        );
    }

    /// Publishes the `$SYS/broker/` status when it is due, and schedules the
    /// next one only while clients are connected, so that an idle namespace
    /// sets no alarm.
    pub(crate) fn run_status(&mut self, now_ms: u64) {
        let Some(due) = self.next_status_ms else {
            return;
        };
        if due > now_ms {
            return;
        }
        let connected = self.connected_client_count();
        let metrics = self.metrics();
        let uptime_secs = now_ms.saturating_sub(self.started_at_ms) / 1000;
        let values = [
            ("clients/connected", connected as u64),
            ("messages/received", metrics.received.messages.iter().sum()),
            ("messages/sent", metrics.sent.messages.iter().sum()),
            ("bytes/received", metrics.received.bytes.iter().sum()),
            ("bytes/sent", metrics.sent.bytes.iter().sum()),
            ("uptime", uptime_secs),
        ];
        for (name, value) in values {
            let payload = Bytes::from(value.to_string());
            self.publish_system(format!("$SYS/broker/{name}"), payload, None, now_ms);
        }
        let interval_ms = u64::from(self.config.sys_interval_secs) * 1000;
        self.next_status_ms =
            (connected > 0 && interval_ms > 0).then(|| now_ms.saturating_add(interval_ms));
    }

    /// The time of the next status publication, while a client is connected.
    pub(crate) fn status_deadline(&self) -> Option<u64> {
        self.next_status_ms
            .filter(|_| self.connected_client_count() > 0)
    }

    /// Routes a QoS 0, non-retained message from the broker itself.
    fn publish_system(
        &mut self,
        topic: String,
        payload: Bytes,
        content_type: Option<&str>,
        now_ms: u64,
    ) {
        let mut message = Message {
            topic: topic.into(),
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            expires_at_ms: None,
        };
        message.properties.content_type = content_type.map(Into::into);
        self.route(None, message, now_ms);
    }
}

/// Makes a client id usable as one topic level: `/`, `+`, `#` and NUL
/// become `_`. The payload carries the exact id.
fn topic_level(client_id: &str) -> String {
    client_id.replace(['/', '+', '#', '\0'], "_")
}

/// The `reason` of a disconnect event.
fn ending_reason(ending: Ending) -> &'static str {
    match ending {
        Ending::Disconnect {
            publish_will: false,
        } => "client_disconnect",
        Ending::Disconnect { publish_will: true } => "client_disconnect_with_will",
        Ending::SocketClosed => "connection_lost",
        Ending::ServerClose(ReasonCode::KeepAliveTimeout) => "keep_alive_timeout",
        Ending::ServerClose(ReasonCode::AdministrativeAction) => "administrative_action",
        Ending::ServerClose(ReasonCode::ImplementationSpecificError) => "server_error",
        Ending::ServerClose(ReasonCode::NotAuthorized) => "token_expired",
        Ending::ServerClose(ReasonCode::MessageRateTooHigh) => "rate_limited",
        Ending::ServerClose(_) => "protocol_error",
        Ending::Rejected => "rejected",
        Ending::TakenOver => "session_taken_over",
    }
}
