//! Counters of one namespace, and their Prometheus text form.

use std::fmt::Write;

use codec::QoS;
use serde::Serialize;

/// Why a message was not delivered to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session queue was at its message or byte limit.
    QueueFull,
    /// The message exceeded the client's Maximum Packet Size.
    PacketTooLarge,
    /// The message expired while queued.
    Expired,
    /// Every packet id was in flight.
    NoPacketId,
}

impl DropReason {
    /// The label value used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::PacketTooLarge => "packet_too_large",
            DropReason::Expired => "expired",
            DropReason::NoPacketId => "no_packet_id",
        }
    }
}

/// Message and byte counts, one slot per QoS level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByQoS {
    /// Messages at QoS 0, 1 and 2.
    pub messages: [u64; 3],
    /// Payload bytes at QoS 0, 1 and 2.
    pub bytes: [u64; 3],
}

impl ByQoS {
    fn count(&mut self, qos: QoS, payload_len: usize) {
        let slot = qos as usize;
        self.messages[slot] += 1;
        self.bytes[slot] += payload_len as u64;
    }
}

/// Counters since the broker was built (the Durable Object woke), and
/// gauges of its current state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Open sockets, including those still waiting for CONNECT.
    pub connections: usize,
    /// Sessions with a connection.
    pub connected_clients: usize,
    /// Sessions, connected or not.
    pub sessions: usize,
    /// Subscriptions of every session.
    pub subscriptions: usize,
    /// Retained messages.
    pub retained_messages: usize,
    /// Accepted CONNECT packets.
    pub connects: u64,
    /// Connections that ended after CONNECT was accepted.
    pub disconnects: u64,
    /// Messages received: PUBLISH from clients, HTTP publishes and wills.
    pub received: ByQoS,
    /// PUBLISH packets sent to clients, resends included.
    pub sent: ByQoS,
    /// Messages dropped because a session queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because they exceeded a client's Maximum Packet Size.
    pub dropped_packet_too_large: u64,
    /// Messages dropped because they expired while queued.
    pub dropped_expired: u64,
    /// Messages dropped because every packet id was in flight.
    pub dropped_no_packet_id: u64,
    /// Authentication and authorization failures the embedding reported.
    pub auth_failures: u64,
    /// Connections closed because the client exceeded its message or byte
    /// rate.
    pub rate_limit_disconnects: u64,
    /// CONNECT packets rejected because the namespace had
    /// `max_connections` connected clients.
    pub connection_limit_rejections: u64,
    /// Topic filters rejected because the session had
    /// `max_subscriptions_per_client` subscriptions.
    pub subscription_limit_rejections: u64,
    /// Runs of the scheduled upkeep.
    pub upkeep_runs: u64,
    /// Sessions the scheduled upkeep ended because they had expired.
    pub upkeep_expired_sessions: u64,
    /// Expired retained messages the scheduled upkeep removed.
    pub upkeep_expired_retained: u64,
    /// Audit objects the scheduled upkeep deleted from R2.
    pub upkeep_audit_objects_deleted: u64,
}

impl Metrics {
    pub(crate) fn count_received(&mut self, qos: QoS, payload_len: usize) {
        self.received.count(qos, payload_len);
    }

    pub(crate) fn count_sent(&mut self, qos: QoS, payload_len: usize) {
        self.sent.count(qos, payload_len);
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::QueueFull => &mut self.dropped_queue_full,
            DropReason::PacketTooLarge => &mut self.dropped_packet_too_large,
            DropReason::Expired => &mut self.dropped_expired,
            DropReason::NoPacketId => &mut self.dropped_no_packet_id,
        };
        *counter += 1;
    }

    /// Renders the metrics in the Prometheus text exposition format 0.0.4,
    /// each sample labelled with `namespace`.
    pub fn to_prometheus(&self, namespace: &str) -> String {
        let ns = escape_label(namespace);
        let mut out = String::new();
        let gauges = [
            (
                "mqtt_connections",
                "Open WebSocket connections.",
                self.connections,
            ),
            (
                "mqtt_connected_clients",
                "Sessions with a connection.",
                self.connected_clients,
            ),
            (
                "mqtt_sessions",
                "Sessions, connected or not.",
                self.sessions,
            ),
            (
                "mqtt_subscriptions",
                "Subscriptions of every session.",
                self.subscriptions,
            ),
            (
                "mqtt_retained_messages",
                "Retained messages.",
                self.retained_messages,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{namespace=\"{ns}\"}} {value}");
        }
        let counters = [
            (
                "mqtt_connects_total",
                "Accepted CONNECT packets.",
                self.connects,
            ),
            (
                "mqtt_disconnects_total",
                "Connections ended after CONNECT.",
                self.disconnects,
            ),
            (
                "mqtt_auth_failures_total",
                "Authentication and authorization failures.",
                self.auth_failures,
            ),
            (
                "mqtt_rate_limit_disconnects_total",
                "Connections closed for exceeding the message or byte rate.",
                self.rate_limit_disconnects,
            ),
            (
                "mqtt_connection_limit_rejections_total",
                "CONNECT packets rejected at the connection limit.",
                self.connection_limit_rejections,
            ),
            (
                "mqtt_subscription_limit_rejections_total",
                "Topic filters rejected at the subscription limit.",
                self.subscription_limit_rejections,
            ),
            (
                "mqtt_upkeep_runs_total",
                "Runs of the scheduled upkeep.",
                self.upkeep_runs,
            ),
            (
                "mqtt_upkeep_expired_sessions_total",
                "Expired sessions the scheduled upkeep ended.",
                self.upkeep_expired_sessions,
            ),
            (
                "mqtt_upkeep_expired_retained_total",
                "Expired retained messages the scheduled upkeep removed.",
                self.upkeep_expired_retained,
            ),
            (
                "mqtt_upkeep_audit_objects_deleted_total",
                "Audit objects the scheduled upkeep deleted from R2.",
                self.upkeep_audit_objects_deleted,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{namespace=\"{ns}\"}} {value}");
        }
        let flows = [
            (
                "mqtt_messages_received_total",
                "Messages received.",
                &self.received.messages,
            ),
            (
                "mqtt_bytes_received_total",
                "Payload bytes received.",
                &self.received.bytes,
            ),
            (
                "mqtt_messages_sent_total",
                "PUBLISH packets sent.",
                &self.sent.messages,
            ),
            (
                "mqtt_bytes_sent_total",
                "Payload bytes sent.",
                &self.sent.bytes,
            ),
        ];
        for (name, help, values) in flows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (qos, value) in values.iter().enumerate() {
                let _ = writeln!(out, "{name}{{namespace=\"{ns}\",qos=\"{qos}\"}} {value}");
            }
        }
        let drops = [
            (DropReason::QueueFull.label(), self.dropped_queue_full),
            (
                DropReason::PacketTooLarge.label(),
                self.dropped_packet_too_large,
            ),
            (DropReason::Expired.label(), self.dropped_expired),
            (DropReason::NoPacketId.label(), self.dropped_no_packet_id),
        ];
        write_counter_by_reason(
            &mut out,
            "mqtt_messages_dropped_total",
            "Messages not delivered, by reason.",
            &ns,
            &drops,
        );
        out
    }
}

/// Appends one counter with a sample per reason, labelled with `namespace`
/// (already escaped) and `reason`.
pub(crate) fn write_counter_by_reason(
    out: &mut String,
    name: &str,
    help: &str,
    namespace: &str,
    samples: &[(&str, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (reason, value) in samples {
        let _ = writeln!(
            out,
            "{name}{{namespace=\"{namespace}\",reason=\"{reason}\"}} {value}"
        );
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub(crate) fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_labels_and_types() {
        let mut metrics = Metrics::default();
        metrics.count_received(QoS::AtLeastOnce, 5);
        metrics.count_drop(DropReason::QueueFull);
        let text = metrics.to_prometheus("site\"1");
        assert!(text.contains("# TYPE mqtt_messages_received_total counter"));
        assert!(text.contains("mqtt_messages_received_total{namespace=\"site\\\"1\",qos=\"1\"} 1"));
        assert!(text.contains("mqtt_bytes_received_total{namespace=\"site\\\"1\",qos=\"1\"} 5"));
        assert!(text.contains(
            "mqtt_messages_dropped_total{namespace=\"site\\\"1\",reason=\"queue_full\"} 1"
        ));
    }
}
