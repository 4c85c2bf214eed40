//! Sessions: what the broker keeps for one client id across connections.

use std::collections::{BTreeMap, BTreeSet};

use auth::Acl;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use codec::{PacketId, QoS};
use serde::{Deserialize, Serialize};

use crate::message::{decode_publish, encode_publish, Message};
use crate::ConnId;

/// A session expiry interval that means "never expires".
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// The state of a client: subscriptions, messages on their way to it, and
/// QoS 2 messages from it that are not yet released.
#[derive(Debug)]
pub struct Session {
    /// The client identifier, also the owner of the session's rows.
    pub client_id: String,
    /// The connection currently using the session.
    pub conn: Option<ConnId>,
    /// Seconds the session outlives its connection. 0 ends it with the
    /// connection, and [`NEVER_EXPIRES`] keeps it until a clean start.
    pub expiry_interval: u32,
    /// When the last connection ended, for the session expiry.
    pub disconnected_at_ms: Option<u64>,
    /// Subscriptions by their full filter (with `$share/{group}/`).
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Messages sent and not yet acknowledged, by sequence number.
    pub inflight: BTreeMap<u64, Inflight>,
    /// Messages waiting to be sent, by sequence number.
    pub queue: BTreeMap<u64, Message>,
    /// Bytes of the queued messages, as [`Message::size`] counts them.
    pub queued_bytes: usize,
    /// Packet ids of received QoS 2 messages awaiting PUBREL.
    pub incoming_qos2: BTreeSet<u16>,
    /// The will of the current connection, or a will waiting for its delay.
    pub will: Option<Will>,
    /// The next packet id to try for an outgoing message.
    pub next_packet_id: u16,
    /// The next sequence number for a queued or in-flight message.
    pub next_sequence: u64,
    /// The topics the last connection's token allows; `None` allows every
    /// topic (no authentication, or an anonymous client). Messages are
    /// checked against it when they are sent, so queued messages are too.
    pub acl: Option<Acl>,
}

impl Session {
    /// Creates an empty session.
    pub fn new(client_id: String, expiry_interval: u32) -> Session {
        Session {
            client_id,
            conn: None,
            expiry_interval,
            disconnected_at_ms: None,
            subscriptions: BTreeMap::new(),
            inflight: BTreeMap::new(),
            queue: BTreeMap::new(),
            queued_bytes: 0,
            incoming_qos2: BTreeSet::new(),
            will: None,
            next_packet_id: 1,
            next_sequence: 1,
            acl: None,
        }
    }

    /// Returns the time the session ends unless a client connects, or `None`
    /// while it is online or if it never expires.
    pub fn expires_at_ms(&self) -> Option<u64> {
        if self.conn.is_some() || self.expiry_interval == NEVER_EXPIRES {
            return None;
        }
        let since = self.disconnected_at_ms?;
        Some(since.saturating_add(u64::from(self.expiry_interval) * 1000))
    }

    /// Takes the next sequence number.
    pub fn take_sequence(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        sequence
    }

    /// Takes a packet id that no in-flight message uses (MQTT-2.2.1-4), or
    /// `None` if all 65 535 are in use.
    pub fn take_packet_id(&mut self) -> Option<PacketId> {
        let in_use: BTreeSet<u16> = self
            .inflight
            .values()
            .map(|entry| entry.pkid.get())
            .collect();
        for _ in 0..u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = candidate.checked_add(1).unwrap_or(1);
            if let Some(pkid) = PacketId::new(candidate) {
                if !in_use.contains(&candidate) {
                    return Some(pkid);
                }
            }
        }
        None
    }

    /// Finds the in-flight message with this packet id.
    pub fn find_inflight(&self, pkid: PacketId) -> Option<u64> {
        self.inflight
            .iter()
            .find(|(_, entry)| entry.pkid == pkid)
            .map(|(&sequence, _)| sequence)
    }

    /// Adds a message to the queue.
    pub fn push_queue(&mut self, sequence: u64, message: Message) {
        self.queued_bytes += message.size();
        self.queue.insert(sequence, message);
    }

    /// Reports whether a message on `topic` may be sent to this session.
    pub fn may_receive(&self, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.may_receive(topic))
    }

    /// Removes the oldest queued message.
    pub fn pop_queue(&mut self) -> Option<(u64, Message)> {
        let (sequence, message) = self.queue.pop_first()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(message.size());
        Some((sequence, message))
    }
}

/// The options of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The granted QoS: deliveries use at most this.
    pub qos: QoS,
    /// Do not deliver messages this same client published.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// The Subscription Identifier, sent with each delivery.
    pub identifier: Option<u32>,
}

/// The step of an outgoing QoS 1 or 2 message in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREL sent; waiting for PUBCOMP. The message itself is no longer needed.
    Released,
}

/// An outgoing message that has a packet id.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// The packet id the client acknowledges.
    pub pkid: PacketId,
    /// The step of the flow.
    pub state: InflightState,
    /// The message; `None` once released.
    pub message: Option<Message>,
    /// Whether the message has a row. Messages to sessions that end with
    /// their connection have none, because nothing would ever resend them.
    pub stored: bool,
}

/// A will message with its delay.
#[derive(Debug, Clone)]
pub struct Will {
    /// The message. Its Message Expiry Interval starts when it is published,
    /// so it stays in the properties until then.
    pub publish: codec::Publish,
    /// Will Delay Interval in seconds.
    pub delay: u32,
    /// When a delayed will is due; `None` while its connection is open.
    pub due_at_ms: Option<u64>,
}

/// The stored form of a session row.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session expiry interval in seconds.
    pub expiry_interval: u32,
    /// When the last connection ended.
    pub disconnected_at_ms: Option<u64>,
    /// The session's ACL; absent in rows of sessions that may use every
    /// topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
}

/// Encodes a session row.
pub fn encode_session(session: &Session) -> Bytes {
    let record = SessionRecord {
        expiry_interval: session.expiry_interval,
        disconnected_at_ms: session.disconnected_at_ms,
        acl: session.acl.clone(),
    };
    Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
}

/// The stored form of a subscription row.
#[derive(Debug, Serialize, Deserialize)]
struct SubscriptionRecord {
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    identifier: Option<u32>,
}

/// Encodes a subscription row.
pub fn encode_subscription(subscription: &Subscription) -> Bytes {
    let record = SubscriptionRecord {
        qos: subscription.qos as u8,
        no_local: subscription.no_local,
        retain_as_published: subscription.retain_as_published,
        identifier: subscription.identifier,
    };
    Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
}

/// Decodes a subscription row; `None` if it is damaged.
pub fn decode_subscription(value: &[u8]) -> Option<Subscription> {
    let record: SubscriptionRecord = serde_json::from_slice(value).ok()?;
    Some(Subscription {
        qos: QoS::from_u8(record.qos)?,
        no_local: record.no_local,
        retain_as_published: record.retain_as_published,
        identifier: record.identifier,
    })
}

const STATE_QUEUED: u8 = 0;
const STATE_PUBLISHED: u8 = 1;
const STATE_RELEASED: u8 = 2;

/// A message row read back.
#[derive(Debug)]
pub enum StoredMessage {
    /// A queued message.
    Queued(Message),
    /// An in-flight message.
    Inflight(Inflight),
}

/// Encodes a queued message row: state, an unused packet id, the message.
pub fn encode_queued(message: &Message) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(STATE_QUEUED);
    out.put_u16(0);
    message.encode_stored(&mut out);
    out.freeze()
}

/// Encodes an in-flight message row: state, packet id, and the message
/// unless it is released.
pub fn encode_inflight(inflight: &Inflight) -> Bytes {
    let mut out = BytesMut::new();
    let state = match inflight.state {
        InflightState::Published => STATE_PUBLISHED,
        InflightState::Released => STATE_RELEASED,
    };
    out.put_u8(state);
    out.put_u16(inflight.pkid.get());
    if let (InflightState::Published, Some(message)) = (inflight.state, &inflight.message) {
        message.encode_stored(&mut out);
    }
    out.freeze()
}

/// Decodes a message row; `None` if it is damaged.
pub fn decode_message_row(mut value: Bytes) -> Option<StoredMessage> {
    if value.remaining() < 3 {
        return None;
    }
    let state = value.get_u8();
    let pkid = value.get_u16();
    match state {
        STATE_QUEUED => Some(StoredMessage::Queued(Message::decode_stored(&mut value)?)),
        STATE_PUBLISHED => Some(StoredMessage::Inflight(Inflight {
            pkid: PacketId::new(pkid)?,
            state: InflightState::Published,
            message: Some(Message::decode_stored(&mut value)?),
            stored: true,
        })),
        STATE_RELEASED => Some(StoredMessage::Inflight(Inflight {
            pkid: PacketId::new(pkid)?,
            state: InflightState::Released,
            message: None,
            stored: true,
        })),
        _ => None,
    }
}

/// Encodes a will row: delay, due time (0 while connected), the PUBLISH.
pub fn encode_will(will: &Will) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32(will.delay);
    out.put_u64(will.due_at_ms.unwrap_or(0));
    encode_publish(will.publish.clone(), &mut out);
    out.freeze()
}

/// Decodes a will row; `None` if it is damaged.
pub fn decode_will(mut value: Bytes) -> Option<Will> {
    if value.remaining() < 12 {
        return None;
    }
    let delay = value.get_u32();
    let due_at_ms = Some(value.get_u64()).filter(|&at| at != 0);
    let publish = decode_publish(&mut value)?;
    Some(Will {
        publish,
        delay,
        due_at_ms,
    })
}
