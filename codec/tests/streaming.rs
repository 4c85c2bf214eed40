//! Streaming behaviour: `decode` waits for whole packets, consumes exactly
//! one packet per call and leaves the bytes that follow.

mod common;

use codec::*;
use common::*;

use ProtocolVersion::{V3_1_1, V5};

/// Builds the bytes of a CONNECT, a PUBLISH with properties, a SUBSCRIBE and
/// a PINGREQ, as one MQTT 5.0 client would send them.
fn session_bytes() -> Vec<u8> {
    let mut bytes = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a".to_vec();
    bytes.extend(b"\x34\x0d\x00\x01t\x00\x0b\x05\x01\x01\x23\x00\x05hi");
    bytes.extend(b"\x82\x0b\x00\x01\x02\x0b\x07\x00\x03a/#\x2d");
    bytes.extend(b"\xc0\x00");
    bytes
}

/// Decodes every whole packet of `buf` into `packets`, switching `version`
/// to the CONNECT's version.
fn drain(buf: &mut BytesMut, version: &mut Option<ProtocolVersion>, packets: &mut Vec<Packet>) {
    while let Some(packet) = decode(buf, *version, NO_LIMIT).unwrap() {
        if let Packet::Connect(connect) = &packet {
            *version = Some(connect.protocol);
        }
        packets.push(packet);
    }
}

fn decode_stream(buf: &mut BytesMut) -> Vec<Packet> {
    let mut packets = Vec::new();
    drain(buf, &mut None, &mut packets);
    packets
}

#[test]
fn several_packets_decode_in_order() {
    let mut buf = BytesMut::from(&session_bytes()[..]);
    let packets = decode_stream(&mut buf);
    assert!(buf.is_empty());
    assert_eq!(packets.len(), 4);
    assert!(matches!(packets[0], Packet::Connect(_)));
    assert!(matches!(packets[1], Packet::Publish(_)));
    assert!(matches!(packets[2], Packet::Subscribe(_)));
    assert!(matches!(packets[3], Packet::PingReq));
}

#[test]
fn split_at_every_byte_decodes_once() {
    let bytes = session_bytes();
    let expected = decode_stream(&mut BytesMut::from(&bytes[..]));
    for split in 0..=bytes.len() {
        let mut buf = BytesMut::from(&bytes[..split]);
        let mut version = None;
        let mut packets = Vec::new();
        drain(&mut buf, &mut version, &mut packets);
        buf.extend_from_slice(&bytes[split..]);
        drain(&mut buf, &mut version, &mut packets);
        assert!(buf.is_empty(), "split {split}: {} bytes left", buf.len());
        assert_eq!(packets, expected, "split {split}");
    }
}

#[test]
fn byte_by_byte_feeding_decodes_each_packet_once() {
    let bytes = session_bytes();
    let expected = decode_stream(&mut BytesMut::from(&bytes[..]));
    let mut buf = BytesMut::new();
    let mut version = None;
    let mut packets = Vec::new();
    for &byte in &bytes {
        buf.extend_from_slice(&[byte]);
        drain(&mut buf, &mut version, &mut packets);
    }
    assert_eq!(packets, expected);
    assert!(buf.is_empty());
}

#[test]
fn incomplete_packet_consumes_nothing() {
    let bytes = b"\x30\x05\x00\x01thi";
    for end in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..end]);
        assert_eq!(decode(&mut buf, Some(V3_1_1), NO_LIMIT), Ok(None), "{end}");
        assert_eq!(buf.len(), end);
    }
}

#[test]
fn following_packet_stays_in_buffer() {
    let mut buf = BytesMut::from(&b"\xc0\x00\xd0"[..]);
    assert_eq!(
        decode(&mut buf, Some(V5), NO_LIMIT),
        Ok(Some(Packet::PingReq))
    );
    assert_eq!(&buf[..], b"\xd0");
    assert_eq!(decode(&mut buf, Some(V5), NO_LIMIT), Ok(None));
    buf.extend_from_slice(b"\x00");
    assert_eq!(
        decode(&mut buf, Some(V5), NO_LIMIT),
        Ok(Some(Packet::PingResp))
    );
}
