//! MQTT 3.1, 3.1.1 and 5.0 packets: types, a streaming decoder and an encoder.
//!
//! - [`packet`]: one struct per control packet, shared by every version.
//! - [`properties`]: MQTT 5.0 properties.
//! - [`reason`]: MQTT 5.0 reason codes and the 3.1.1 return codes.
//! - [`error`]: decode errors, each naming the rule it enforces, and the one
//!   mapping from an error to what the broker sends.
//! - [`topic`]: topic name and filter validation, and matching.
//! - `decode`, `encode`: the two directions of the wire format, behind
//!   [`decode()`] and [`encode()`].
//! - `wire`: Variable Byte Integers, strings and binary data.
//! - `scan`: word-at-a-time checks of strings for NUL, wildcards and
//!   non-ASCII bytes.
//!
//! The codec does no I/O. [`decode`] takes whatever bytes have arrived and
//! returns `Ok(None)` until a whole packet is there; [`encode`] appends one
//! packet to a buffer.

mod decode;
mod encode;
pub mod error;
pub mod packet;
pub mod properties;
pub mod reason;
mod scan;
pub mod topic;
mod wire;

pub use bytes::{Bytes, BytesMut};
pub use bytestring::ByteString;
pub use error::{DecodeError, V3Response};
pub use packet::*;
pub use properties::{Properties, PropertyValues};
pub use reason::{ReasonCode, ReasonKind};
pub use topic::{matches, split_shared, valid_topic_filter, valid_topic_name};
pub use wire::VARIABLE_BYTE_INTEGER_MAX;

/// Decodes the next packet from the front of `buf` and removes its bytes.
///
/// `version` is the protocol version of the connection, or `None` before
/// CONNECT: the only packet accepted then is CONNECT, whose own protocol
/// level selects the version. A packet whose announced size exceeds
/// `max_packet_size` is rejected from its fixed header, before its body is
/// buffered. Returns `Ok(None)` when `buf` does not yet hold a whole packet,
/// and then leaves `buf` unchanged. When the packet fills `buf` to its
/// capacity, the packet takes over `buf`'s allocation and leaves `buf` empty
/// with no capacity.
///
/// A CONNECT that arrives when `version` is already set is decoded with its
/// own level too; rejecting a second CONNECT (MQTT-3.1.0-2) is the broker's
/// job. After an error the connection must be closed: see
/// [`DecodeError::reason_code`] and [`DecodeError::v3_response`] for what to
/// send first.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    decode::decode(buf, version, max_packet_size)
}

/// Appends the encoding of `packet` for `version` to `out`.
///
/// Fields that `version` lacks are left out: properties and most reason codes
/// before 5.0, where CONNACK and SUBACK reasons map to the 3.1.1 return codes.
/// MQTT 5.0 acknowledgements and DISCONNECT use the short forms when the
/// reason is Success and there are no properties. CONNECT is always encoded
/// for its own `protocol`. Use [`Packet::encoded_len`] to check a packet
/// against the peer's Maximum Packet Size first.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    encode::encode(packet, version, out)
}
