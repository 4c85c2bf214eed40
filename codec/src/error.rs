//! Decode errors. Each variant names the rule it enforces, and this file is
//! the one place that maps an error to what the broker puts on the wire:
//! [`DecodeError::reason_code`] for MQTT 5.0 and [`DecodeError::v3_response`]
//! for MQTT 3.1 and 3.1.1.

use crate::reason::ReasonCode;

/// Why a byte sequence is not a valid packet.
///
/// `rule` fields hold the id of the normative statement in the MQTT 5.0
/// specification (`"MQTT-3.3.1-4"`). Rules that exist only in MQTT 3.1.1 carry
/// a `(3.1.1)` suffix, and rules the specification states without an id name
/// their section (`"section 2.1.4"`).
///
/// After any error the connection must be closed. The bytes of a packet whose
/// body failed to decode have already been removed from the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The packet announces more bytes than the maximum packet size.
    PacketTooLarge {
        /// Fixed header plus remaining length, in bytes.
        size: usize,
        /// The maximum packet size the decoder was given.
        max: usize,
    },
    /// The first packet of a connection was not CONNECT (MQTT-3.1.0-1).
    FirstPacketNotConnect,
    /// CONNECT names a protocol or level this codec does not speak.
    UnsupportedProtocolVersion {
        /// The protocol name, with invalid UTF-8 replaced.
        name: String,
        /// The protocol level byte.
        level: u8,
    },
    /// Any other malformed packet; `rule` is the normative statement id.
    Malformed {
        /// The normative statement id or specification section.
        rule: &'static str,
        /// A description of the fault, for logs.
        detail: &'static str,
    },
    /// A well-formed packet that the specification calls a Protocol Error.
    ProtocolError {
        /// The normative statement id or specification section.
        rule: &'static str,
        /// A description of the fault, for logs.
        detail: &'static str,
    },
    /// An invalid topic name in PUBLISH or in a will: one that contains a
    /// wildcard (MQTT-3.3.2-2), or an empty one where no Topic Alias may
    /// replace it (MQTT-4.7.3-1).
    TopicNameInvalid {
        /// The normative statement id or specification section.
        rule: &'static str,
        /// A description of the fault, for logs.
        detail: &'static str,
    },
    /// A Topic Alias property of 0 (MQTT-3.3.2-8).
    TopicAliasInvalid {
        /// The normative statement id.
        rule: &'static str,
    },
    /// A Payload Format Indicator of 1 with a payload that is not UTF-8.
    PayloadFormatInvalid {
        /// The specification section.
        rule: &'static str,
    },
    /// A client identifier that the protocol version does not allow, such as
    /// an empty one with Clean Session 0 in MQTT 3.1.1.
    ClientIdentifierNotValid {
        /// The normative statement id or specification section.
        rule: &'static str,
        /// A description of the fault, for logs.
        detail: &'static str,
    },
}

/// The broker's response to a decode error on an MQTT 3.1 or 3.1.1
/// connection, which has no DISCONNECT with a reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V3Response {
    /// Close the network connection without sending anything.
    Close,
    /// Send a CONNACK with this return code, then close the connection.
    ConnAckThenClose {
        /// The 3.1.1 CONNACK return code.
        return_code: u8,
    },
}

impl DecodeError {
    /// The reason code for the CONNACK or DISCONNECT that reports this error
    /// on an MQTT 5.0 connection.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::FirstPacketNotConnect => ReasonCode::ProtocolError,
            DecodeError::UnsupportedProtocolVersion { .. } => {
                ReasonCode::UnsupportedProtocolVersion
            }
            DecodeError::Malformed { .. } => ReasonCode::MalformedPacket,
            DecodeError::ProtocolError { .. } => ReasonCode::ProtocolError,
            DecodeError::TopicNameInvalid { .. } => ReasonCode::TopicNameInvalid,
            DecodeError::TopicAliasInvalid { .. } => ReasonCode::TopicAliasInvalid,
            DecodeError::PayloadFormatInvalid { .. } => ReasonCode::PayloadFormatInvalid,
            DecodeError::ClientIdentifierNotValid { .. } => ReasonCode::ClientIdentifierNotValid,
        }
    }

    /// Returns the broker's response to this error on an MQTT 3.1 or 3.1.1
    /// connection. MQTT 3.1.1 closes the connection on every error, and only
    /// CONNECT problems get a CONNACK first: return code 0x01 for a protocol
    /// level it does not support (MQTT-3.1.2-2 in 3.1.1) and 0x02 for a
    /// rejected client identifier (MQTT-3.1.3-9 in 3.1.1).
    pub fn v3_response(&self) -> V3Response {
        match self {
            // A CONNECT whose name is not an MQTT name may be another
            // protocol, so the broker does not answer in MQTT.
            DecodeError::UnsupportedProtocolVersion { name, .. }
                if name == "MQTT" || name == "MQIsdp" =>
            {
                V3Response::ConnAckThenClose {
                    return_code: ReasonCode::UnsupportedProtocolVersion.to_v3_connack(),
                }
            }
            DecodeError::ClientIdentifierNotValid { .. } => V3Response::ConnAckThenClose {
                return_code: ReasonCode::ClientIdentifierNotValid.to_v3_connack(),
            },
            _ => V3Response::Close,
        }
    }

    /// The rule the error enforces, for logs.
    pub fn rule(&self) -> &'static str {
        match self {
            DecodeError::PacketTooLarge { .. } => "MQTT-3.2.2-15",
            DecodeError::FirstPacketNotConnect => "MQTT-3.1.0-1",
            DecodeError::UnsupportedProtocolVersion { .. } => "MQTT-3.1.2-1",
            DecodeError::Malformed { rule, .. }
            | DecodeError::ProtocolError { rule, .. }
            | DecodeError::TopicNameInvalid { rule, .. }
            | DecodeError::TopicAliasInvalid { rule }
            | DecodeError::PayloadFormatInvalid { rule }
            | DecodeError::ClientIdentifierNotValid { rule, .. } => rule,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::PacketTooLarge { size, max } => {
                write!(
                    f,
                    "packet of {size} bytes exceeds the maximum packet size {max}"
                )
            }
            DecodeError::FirstPacketNotConnect => {
                write!(f, "first packet is not CONNECT (MQTT-3.1.0-1)")
            }
            DecodeError::UnsupportedProtocolVersion { name, level } => {
                write!(f, "unsupported protocol {name:?} level {level}")
            }
            DecodeError::Malformed { rule, detail } => {
                write!(f, "malformed packet: {detail} ({rule})")
            }
            DecodeError::ProtocolError { rule, detail } => {
                write!(f, "protocol error: {detail} ({rule})")
            }
            DecodeError::TopicNameInvalid { rule, detail } => {
                write!(f, "invalid topic name: {detail} ({rule})")
            }
            DecodeError::TopicAliasInvalid { rule } => {
                write!(f, "invalid topic alias 0 ({rule})")
            }
            DecodeError::PayloadFormatInvalid { rule } => {
                write!(
                    f,
                    "payload is not UTF-8 but its Payload Format Indicator is 1 ({rule})"
                )
            }
            DecodeError::ClientIdentifierNotValid { rule, detail } => {
                write!(f, "client identifier not valid: {detail} ({rule})")
            }
        }
    }
}

impl std::error::Error for DecodeError {}
