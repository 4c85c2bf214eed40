//! Decode errors. Each variant names the rule it enforces, and
//! [`DecodeError::reason_code`] says what the broker sends for it.

use crate::reason::ReasonCode;

/// Why a byte sequence is not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The packet announces more bytes than the maximum packet size.
    PacketTooLarge { size: usize, max: usize },
    /// The first packet of a connection was not CONNECT (MQTT-3.1.0-1).
    FirstPacketNotConnect,
    /// CONNECT names a protocol or level this codec does not speak.
    UnsupportedProtocolVersion { name: String, level: u8 },
    /// Any other malformed packet; `rule` is the normative statement id.
    Malformed { rule: &'static str, detail: &'static str },
}

impl DecodeError {
    /// The reason code for the CONNACK or DISCONNECT that reports this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::FirstPacketNotConnect => ReasonCode::ProtocolError,
            DecodeError::UnsupportedProtocolVersion { .. } => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::Malformed { .. } => ReasonCode::MalformedPacket,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum packet size {max}")
            }
            DecodeError::FirstPacketNotConnect => {
                write!(f, "first packet is not CONNECT (MQTT-3.1.0-1)")
            }
            DecodeError::UnsupportedProtocolVersion { name, level } => {
                write!(f, "unsupported protocol {name:?} level {level}")
            }
            DecodeError::Malformed { rule, detail } => write!(f, "malformed packet: {detail} ({rule})"),
        }
    }
}

impl std::error::Error for DecodeError {}
