//! Application messages as the broker keeps them, and their stored form.
//!
//! A stored message is a big-endian header followed by the message encoded
//! as an MQTT 5.0 PUBLISH, so payloads and properties keep their exact bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use codec::{ByteString, Packet, PacketId, ProtocolVersion, Publish, QoS};

use codec::Properties;

/// A packet id for stored PUBLISH packets that have none of their own: the
/// codec needs one for QoS 1 and 2, and the reader ignores it.
const PLACEHOLDER_PACKET_ID: PacketId = PacketId::MIN;

/// An application message on its way to one subscriber, or retained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic name, never an alias.
    pub topic: ByteString,
    /// The application payload.
    pub payload: Bytes,
    /// QoS of this delivery (of the publication, for retained messages).
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// Properties forwarded unchanged (Payload Format Indicator, Content Type,
    /// Response Topic, Correlation Data, User Property) and the Subscription
    /// Identifiers of this delivery. Never a Topic Alias or Message Expiry
    /// Interval: the expiry is kept in `expires_at_ms`.
    pub properties: Properties,
    /// When the message expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

impl Message {
    /// Builds a message from a received PUBLISH whose topic alias is already
    /// resolved.
    pub fn from_publish(publish: Publish, now_ms: u64) -> Message {
        let mut properties = publish.properties;
        // Only allocated values can hold something to clear; most PUBLISH
        // packets carry no properties at all.
        let mut expires_at_ms = None;
        if let Some(values) = properties.values_mut() {
            expires_at_ms = values
                .message_expiry_interval
                .take()
                .map(|seconds| now_ms.saturating_add(u64::from(seconds) * 1000));
            values.topic_alias = None;
            values.subscription_identifiers.clear();
        }
        Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at_ms,
        }
    }

    /// Reports whether the message has expired and must not be sent.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|expires| expires <= now_ms)
    }

    /// Builds the PUBLISH that delivers this message. The Message Expiry
    /// Interval is the time left, rounded up (MQTT-3.3.2-6).
    pub fn to_publish(&self, pkid: Option<PacketId>, dup: bool, now_ms: u64) -> Publish {
        let mut properties = self.properties.clone();
        if let Some(expires) = self.expires_at_ms {
            let remaining_ms = expires.saturating_sub(now_ms);
            properties.message_expiry_interval =
                Some(u32::try_from(remaining_ms.div_ceil(1000)).unwrap_or(u32::MAX));
        } else if let Some(values) = properties.values_mut() {
            values.message_expiry_interval = None;
        }
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            pkid: if self.qos == QoS::AtMostOnce {
                None
            } else {
                pkid
            },
            payload: self.payload.clone(),
            properties,
        }
    }

    /// Size of the payload, counted against the queue limits.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }

    /// Appends the stored form: expiry (0 for none), then the PUBLISH.
    pub fn encode_stored(&self, out: &mut BytesMut) {
        out.put_u64(self.expires_at_ms.unwrap_or(0));
        let mut publish = self.to_publish(Some(PLACEHOLDER_PACKET_ID), false, 0);
        if let Some(values) = publish.properties.values_mut() {
            values.message_expiry_interval = None;
        }
        encode_publish(publish, out);
    }

    /// Reads the stored form written by [`Message::encode_stored`].
    pub fn decode_stored(bytes: &mut Bytes) -> Option<Message> {
        if bytes.remaining() < 8 {
            return None;
        }
        let expires_at_ms = Some(bytes.get_u64()).filter(|&at| at != 0);
        let publish = decode_publish(bytes)?;
        // Keeps the Subscription Identifiers: they belong to this delivery.
        Some(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish.properties,
            expires_at_ms,
        })
    }
}

/// Appends one PUBLISH encoded as MQTT 5.0, the stored form of messages.
pub fn encode_publish(publish: Publish, out: &mut BytesMut) {
    codec::encode(&Packet::Publish(publish), ProtocolVersion::V5, out);
}

/// Reads one PUBLISH written by [`encode_publish`] from the rest of `bytes`.
pub fn decode_publish(bytes: &mut Bytes) -> Option<Publish> {
    let mut buffer = BytesMut::from(&bytes[..]);
    bytes.advance(bytes.remaining());
    match codec::decode(&mut buffer, Some(ProtocolVersion::V5), usize::MAX) {
        Ok(Some(Packet::Publish(publish))) => Some(publish),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::PropertyValues;

    #[test]
    fn stored_message_keeps_properties_and_expiry() {
        let message = Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"\x00\xffpayload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties::from(PropertyValues {
                content_type: Some("bin".into()),
                subscription_identifiers: vec![4, 5],
                user_properties: vec![("k".into(), "v".into())],
                ..PropertyValues::default()
            }),
            expires_at_ms: Some(123_456),
        };
        let mut out = BytesMut::new();
        message.encode_stored(&mut out);
        let restored = Message::decode_stored(&mut out.freeze()).unwrap();
        assert_eq!(restored, message);
    }

    #[test]
    fn publish_carries_remaining_expiry_rounded_up() {
        let message = Message {
            topic: "t".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            expires_at_ms: Some(10_500),
        };
        let publish = message.to_publish(None, false, 1_000);
        assert_eq!(publish.properties.message_expiry_interval, Some(10));
        assert!(!message.is_expired(10_499));
        assert!(message.is_expired(10_500));
    }

    #[test]
    fn damaged_stored_message_does_not_decode() {
        assert!(Message::decode_stored(&mut Bytes::from_static(&[0, 0])).is_none());
        assert!(Message::decode_stored(&mut Bytes::from_static(&[0; 12])).is_none());
    }
}
