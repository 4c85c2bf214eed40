//! Access to the namespace from outside MQTT: messages published over HTTP,
//! retained message reads, a feed of routed messages for HTTP transports,
//! and the client listing of the admin API.

use std::collections::VecDeque;

use bytes::BytesMut;
use codec::{Packet, ProtocolVersion, Publish, ReasonCode};
use serde::Serialize;

use crate::lifecycle::Ending;
use crate::message::Message;
use crate::topic;
use crate::Broker;

/// Why [`Broker::publish_external`] rejected a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalPublishError {
    /// The topic is empty, contains a wildcard or a NUL character, or is too
    /// long.
    InvalidTopic,
    /// The topic is under `$SYS`, which only the broker publishes to.
    SystemTopic,
    /// The QoS is above the broker's `max_qos`.
    QoSNotSupported,
    /// The message is retained and the broker keeps no retained messages.
    RetainNotSupported,
    /// The encoded PUBLISH would exceed the broker's maximum packet size.
    PacketTooLarge {
        /// Size of the encoded PUBLISH in bytes.
        size: usize,
        /// The broker's `max_packet_size`.
        max: usize,
    },
}

impl std::fmt::Display for ExternalPublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExternalPublishError::InvalidTopic => {
                f.write_str("invalid topic name: it must be non-empty and contain no + or #")
            }
            ExternalPublishError::SystemTopic => {
                f.write_str("topics under $SYS are reserved for the broker")
            }
            ExternalPublishError::QoSNotSupported => {
                f.write_str("QoS not supported by this broker")
            }
            ExternalPublishError::RetainNotSupported => {
                f.write_str("retained messages are turned off on this broker")
            }
            ExternalPublishError::PacketTooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the maximum packet size of {max} bytes"
                )
            }
        }
    }
}

impl std::error::Error for ExternalPublishError {}

/// One page of retained messages, in topic order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedPage {
    /// The messages of this page.
    pub messages: Vec<Message>,
    /// The topic to pass as `after` for the next page; `None` on the last.
    pub next_after: Option<String>,
}

/// A session as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    /// The client identifier.
    pub client_id: String,
    /// Whether a connection uses the session now.
    pub connected: bool,
    /// The protocol version of the current connection: "3.1", "3.1.1" or "5.0".
    pub protocol: Option<&'static str>,
    /// Seconds the session outlives its connection (`u32::MAX`: never expires).
    pub session_expiry_interval: u32,
    /// When the last connection ended, in milliseconds since the Unix epoch.
    pub disconnected_at_ms: Option<u64>,
    /// Number of subscriptions.
    pub subscriptions: usize,
    /// Messages waiting to be sent.
    pub queued_messages: usize,
    /// Bytes (topic and payload) of the queued messages.
    pub queued_bytes: usize,
    /// Messages sent and not yet acknowledged.
    pub inflight_messages: usize,
}

/// One subscription of a session, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionInfo {
    /// The full filter, with `$share/{group}/` for shared subscriptions.
    pub filter: String,
    /// The granted QoS.
    pub qos: u8,
    /// No Local option.
    pub no_local: bool,
    /// Retain As Published option.
    pub retain_as_published: bool,
    /// Subscription Identifier.
    pub identifier: Option<u32>,
}

impl Broker {
    /// Publishes a message that did not come from an MQTT client (an HTTP
    /// publish, say) through the same checks, retained store and routing as
    /// a client PUBLISH, so subscribers cannot tell the two apart. The packet
    /// id, Topic Alias and Subscription Identifiers of `publish` are ignored.
    ///
    /// When this returns `Ok`, the storage writes the message needs are
    /// queued in [`Broker::poll_output`]: the embedding acknowledges the
    /// publisher only after carrying them out.
    pub fn publish_external(
        &mut self,
        mut publish: Publish,
        now_ms: u64,
    ) -> Result<(), ExternalPublishError> {
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        publish.dup = false;
        publish.pkid = (publish.qos != codec::QoS::AtMostOnce).then_some(codec::PacketId::MIN);
        self.check_external(&publish)?;
        self.metrics
            .count_received(publish.qos, publish.payload.len());
        let message = Message::from_publish(publish, now_ms);
        self.route(None, message, now_ms);
        self.flush_records();
        Ok(())
    }

    /// Checks a message as [`Broker::publish_external`] does, without
    /// publishing it, so that a batch can be checked whole first.
    pub fn check_external(&self, publish: &Publish) -> Result<(), ExternalPublishError> {
        if topic::is_system_topic(&publish.topic) {
            return Err(ExternalPublishError::SystemTopic);
        }
        if !topic::valid_topic_name(&publish.topic) {
            return Err(ExternalPublishError::InvalidTopic);
        }
        if publish.qos > self.config.max_qos {
            return Err(ExternalPublishError::QoSNotSupported);
        }
        if publish.retain && !self.config.retain_available {
            return Err(ExternalPublishError::RetainNotSupported);
        }
        let mut encoded = BytesMut::new();
        codec::encode(
            &Packet::Publish(publish.clone()),
            ProtocolVersion::V5,
            &mut encoded,
        );
        let max = self.config.max_packet_size;
        if encoded.len() > max {
            return Err(ExternalPublishError::PacketTooLarge {
                size: encoded.len(),
                max,
            });
        }
        Ok(())
    }

    /// Returns the unexpired retained message of one topic.
    pub fn retained_message(&self, topic_name: &str, now_ms: u64) -> Option<Message> {
        self.retained
            .matching(topic_name, now_ms)
            .into_iter()
            .next()
    }

    /// Returns the unexpired retained messages matching `filter` (every one
    /// of them, for a new subscriber or an SSE stream).
    pub fn retained_matching(&self, filter: &str, now_ms: u64) -> Vec<Message> {
        match topic::valid_topic_filter(filter) {
            true => self.retained.matching(filter, now_ms),
            false => Vec::new(),
        }
    }

    /// Returns at most `limit` unexpired retained messages matching `filter`
    /// whose topics sort after `after`, in topic order. An invalid filter
    /// matches nothing.
    pub fn retained_page(
        &self,
        filter: &str,
        after: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> RetainedPage {
        if !topic::valid_topic_filter(filter) {
            return RetainedPage {
                messages: Vec::new(),
                next_after: None,
            };
        }
        let mut messages = self
            .retained
            .page(filter, after, limit.saturating_add(1), now_ms);
        let next_after = match messages.len() > limit {
            true => {
                messages.truncate(limit);
                messages.last().map(|message| message.topic.to_string())
            }
            false => None,
        };
        RetainedPage {
            messages,
            next_after,
        }
    }

    /// Turns on or off the feed of routed messages read by
    /// [`Broker::poll_routed`]. Turning it off empties the feed.
    pub fn set_observe_routed(&mut self, observe: bool) {
        self.observe_routed = observe;
        if !observe {
            self.routed.clear();
        }
    }

    /// Returns the next message routed since the feed was turned on, as
    /// published (its own QoS and RETAIN flag), `$SYS` messages included.
    /// The embedding drains it after each event, as it does the outputs.
    pub fn poll_routed(&mut self) -> Option<Message> {
        self.routed.pop_front()
    }

    pub(crate) fn observe(&mut self, message: &Message) {
        if self.observe_routed {
            self.routed.push_back(message.clone());
        }
    }

    /// Lists every session, connected or not, in client id order.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.sessions
            .keys()
            .filter_map(|id| self.client(id))
            .collect()
    }

    /// Describes one session.
    pub fn client(&self, client_id: &str) -> Option<ClientInfo> {
        let session = self.sessions.get(client_id)?;
        let protocol = session
            .conn
            .and_then(|conn| self.connections.get(&conn))
            .and_then(|connection| connection.version())
            .map(protocol_name);
        Some(ClientInfo {
            client_id: session.client_id.clone(),
            connected: session.conn.is_some(),
            protocol,
            session_expiry_interval: session.expiry_interval,
            disconnected_at_ms: session.disconnected_at_ms,
            subscriptions: session.subscriptions.len(),
            queued_messages: session.queue.len(),
            queued_bytes: session.queued_bytes,
            inflight_messages: session.inflight.len(),
        })
    }

    /// Lists the subscriptions of one session; `None` if there is no such
    /// session.
    pub fn client_subscriptions(&self, client_id: &str) -> Option<Vec<SubscriptionInfo>> {
        let session = self.sessions.get(client_id)?;
        let list = session
            .subscriptions
            .iter()
            .map(|(filter, subscription)| SubscriptionInfo {
                filter: filter.clone(),
                qos: subscription.qos as u8,
                no_local: subscription.no_local,
                retain_as_published: subscription.retain_as_published,
                identifier: subscription.identifier,
            })
            .collect();
        Some(list)
    }

    /// Closes the connection of a client, with DISCONNECT 0x98
    /// (Administrative Action) for MQTT 5.0. The will is published and the
    /// session lives on for its expiry interval. Returns whether the client
    /// was connected.
    pub fn disconnect_client(&mut self, client_id: &str, now_ms: u64) -> bool {
        let Some(conn) = self
            .sessions
            .get(client_id)
            .and_then(|session| session.conn)
        else {
            return false;
        };
        let reason = ReasonCode::AdministrativeAction;
        self.end_connection(conn, Ending::ServerClose(reason), now_ms);
        self.flush_records();
        true
    }

    /// Counts one authentication or authorization failure that the
    /// embedding decided, for [`Broker::metrics`].
    pub fn record_auth_failure(&mut self) {
        self.metrics.auth_failures += 1;
    }

    /// Returns the counters and the current gauges.
    pub fn metrics(&self) -> crate::Metrics {
        let mut metrics = self.metrics.clone();
        metrics.connections = self.connections.len();
        metrics.connected_clients = self.connected_client_count();
        metrics.sessions = self.sessions.len();
        metrics.subscriptions = self.sessions.values().map(|s| s.subscriptions.len()).sum();
        metrics.retained_messages = self.retained.len();
        metrics
    }

    /// Number of sessions with a connection.
    pub(crate) fn connected_client_count(&self) -> usize {
        self.connections
            .values()
            .filter(|c| c.session.is_some())
            .count()
    }
}

/// The routed messages waiting for [`Broker::poll_routed`].
pub(crate) type RoutedFeed = VecDeque<Message>;

/// The name of a protocol version, as MQTT documents write it.
pub(crate) fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}
