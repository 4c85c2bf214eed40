//! Fuzz target for `codec::decode`.
//!
//! The first input byte picks the connection state (before CONNECT, or
//! connected with 3.1, 3.1.1 or 5.0); the rest is the byte stream. Every
//! packet that decodes must encode to bytes that decode to the same packet,
//! and nothing may panic.

#![no_main]

use codec::{decode, encode, BytesMut, Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let mut version = match selector % 4 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    };
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(packet)) = decode(&mut buf, version, usize::MAX) {
        if let Packet::Connect(connect) = &packet {
            version = Some(connect.protocol);
        }
        let Some(wire_version) = version else {
            unreachable!("a packet decoded before CONNECT that is not CONNECT")
        };
        let mut encoded = BytesMut::new();
        encode(&packet, wire_version, &mut encoded);
        assert_eq!(encoded.len(), packet.encoded_len(wire_version));
        let again = decode(&mut encoded, Some(wire_version), usize::MAX);
        assert_eq!(again, Ok(Some(packet)), "re-encoded packet decodes differently");
        assert!(encoded.is_empty(), "re-encoded packet left bytes behind");
    }
});
