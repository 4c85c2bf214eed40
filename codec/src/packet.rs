//! Packet types shared by every protocol version.
//!
//! One struct per control packet. Fields that exist only in MQTT 5.0 (reason
//! codes other than success, properties) are present for every version: the
//! encoder leaves them out for 3.1 and 3.1.1, and the decoder fills them with
//! their defaults.

use std::num::NonZeroU16;

use bytes::Bytes;
use bytestring::ByteString;

use crate::properties::Properties;
use crate::reason::ReasonCode;

/// A packet identifier. The protocol forbids 0, so the type does too.
pub type PacketId = NonZeroU16;

/// The protocol level in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// True for MQTT 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// Converts the two QoS bits; 3 is not a QoS.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1, 3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// May be empty; the broker then assigns one or rejects the connection.
    pub client_id: ByteString,
    pub will: Option<LastWill>,
    pub username: Option<ByteString>,
    /// Binary data; a token when the password carries a JWT.
    pub password: Option<Bytes>,
    pub properties: Properties,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (5.0): Will Delay Interval and the publication properties.
    pub properties: Properties,
}

/// CONNACK. For 3.1 and 3.1.1 the reason code is mapped to the return codes
/// 0 to 5; see [`ReasonCode::to_v3_connack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in 5.0 when a Topic Alias property stands for the topic.
    pub topic: ByteString,
    /// `None` exactly when `qos` is [`QoS::AtMostOnce`].
    pub pkid: Option<PacketId>,
    pub payload: Bytes,
    pub properties: Properties,
}

macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            pub pkid: PacketId,
            /// Always [`ReasonCode::Success`] before 5.0.
            pub reason: ReasonCode,
            pub properties: Properties,
        }

        impl $name {
            /// A successful acknowledgement with no properties.
            pub fn new(pkid: PacketId) -> Self {
                $name { pkid, reason: ReasonCode::Success, properties: Properties::default() }
            }
        }
    };
}

ack_packet!(
    /// PUBACK: acknowledges a QoS 1 PUBLISH.
    PubAck
);
ack_packet!(
    /// PUBREC: first reply to a QoS 2 PUBLISH.
    PubRec
);
ack_packet!(
    /// PUBREL: releases a QoS 2 message after PUBREC.
    PubRel
);
ack_packet!(
    /// PUBCOMP: completes a QoS 2 flow.
    PubComp
);

/// What a subscription does with retained messages when it is made (5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist before.
    SendIfNew = 1,
    /// Never send retained messages at subscribe time.
    DoNotSend = 2,
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: ByteString,
    /// The maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// 5.0: do not deliver messages published by this same client.
    pub no_local: bool,
    /// 5.0: keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscribeFilter {
    /// A filter with the 3.1.1 defaults for every 5.0 option.
    pub fn new(filter: impl Into<ByteString>, qos: QoS) -> Self {
        SubscribeFilter {
            filter: filter.into(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// SUBSCRIBE: one or more filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: PacketId,
    pub filters: Vec<SubscribeFilter>,
    pub properties: Properties,
}

/// SUBACK: one reason code per filter, in order. Before 5.0 the codes are
/// the granted QoS (0x00 to 0x02) or 0x80 for failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: PacketId,
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

/// UNSUBSCRIBE: one or more filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: PacketId,
    pub filters: Vec<ByteString>,
    pub properties: Properties,
}

/// UNSUBACK. Before 5.0 it carries no reason codes and `reasons` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub pkid: PacketId,
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

/// DISCONNECT. Before 5.0 it has no body; `reason` is then
/// [`ReasonCode::Success`] (normal disconnection).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

/// AUTH (5.0 only): extended authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}
