//! MQTT 5.0 properties.
//!
//! One struct carries every property; each packet type allows only some of
//! them, which the decoder checks and the encoder trusts.

use bytes::Bytes;
use bytestring::ByteString;

/// The properties of one packet (or of a will). Absent properties are `None`
/// or empty. Only User Property and Subscription Identifier may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01, PUBLISH and will: 0 means unspecified bytes, 1 means UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and will: lifetime in seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will.
    pub content_type: Option<ByteString>,
    /// 0x08, PUBLISH and will.
    pub response_topic: Option<ByteString>,
    /// 0x09, PUBLISH and will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: one in SUBSCRIBE; one or more in a forwarded PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK and DISCONNECT: seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x13, CONNACK: seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK and AUTH.
    pub authentication_method: Option<ByteString>,
    /// 0x16, CONNECT, CONNACK and AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT.
    pub request_problem_information: Option<u8>,
    /// 0x18, will only: seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<ByteString>,
    /// 0x1C, CONNACK and DISCONNECT.
    pub server_reference: Option<ByteString>,
    /// 0x1F, every packet with a reason code.
    pub reason_string: Option<ByteString>,
    /// 0x21, CONNECT and CONNACK.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT and CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK.
    pub retain_available: Option<u8>,
    /// 0x26, every packet that has properties, in order.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// 0x27, CONNECT and CONNACK: bytes.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK.
    pub shared_subscription_available: Option<u8>,
}
