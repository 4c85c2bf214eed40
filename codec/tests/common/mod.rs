//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod generate;

use codec::{decode, encode, BytesMut, DecodeError, Packet, ProtocolVersion};

/// A maximum packet size that never limits a test packet.
pub const NO_LIMIT: usize = usize::MAX;

/// Decodes `bytes` as one whole packet and checks that nothing is left.
pub fn decode_whole(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, Some(version), NO_LIMIT)?;
    let packet = packet.expect("the test bytes hold a whole packet");
    assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    Ok(packet)
}

/// Decodes `bytes` with no version yet, as the first packet of a connection.
pub fn decode_first(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), None, NO_LIMIT)
}

/// Returns the error that decoding `bytes` gives.
pub fn decode_error(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    match decode(&mut BytesMut::from(bytes), Some(version), NO_LIMIT) {
        Err(error) => error,
        Ok(packet) => panic!("expected an error, decoded {packet:?}"),
    }
}

/// Encodes `packet` into a fresh vector.
pub fn encode_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out);
    assert_eq!(
        out.len(),
        packet.encoded_len(version),
        "encoded_len disagrees"
    );
    out.to_vec()
}

/// Checks that `bytes` decodes to `packet` and that `packet` encodes to
/// `bytes`.
pub fn assert_wire(bytes: &[u8], packet: &Packet, version: ProtocolVersion) {
    let decoded = decode_whole(bytes, version).expect("valid packet");
    assert_eq!(&decoded, packet, "decoded packet");
    assert_eq!(encode_vec(packet, version), bytes, "encoded bytes");
}

/// Prefixes `body` with a fixed header.
pub fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![first_byte];
    let mut length = body.len();
    loop {
        let byte = (length % 128) as u8;
        length /= 128;
        if length == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(body);
    bytes
}

/// Encodes a length-prefixed string or binary field.
pub fn field(data: &[u8]) -> Vec<u8> {
    let mut bytes = (data.len() as u16).to_be_bytes().to_vec();
    bytes.extend_from_slice(data);
    bytes
}
