//! Property tests: every generated packet of every type survives
//! `decode(encode(packet)) == packet` in each protocol version, and random
//! bytes never make `decode` panic.

mod common;

use codec::*;
use common::generate::any_packet;
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn check_round_trip(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = encode_vec(packet, version);
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = decode(&mut buf, Some(version), NO_LIMIT);
    prop_assert_eq!(decoded, Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn round_trip_v3_1(packet in any_packet(V3_1)) {
        check_round_trip(&packet, V3_1)?;
    }

    #[test]
    fn round_trip_v3_1_1(packet in any_packet(V3_1_1)) {
        check_round_trip(&packet, V3_1_1)?;
    }

    #[test]
    fn round_trip_v5(packet in any_packet(V5)) {
        check_round_trip(&packet, V5)?;
    }

    #[test]
    fn two_packets_in_one_buffer_decode_in_order(
        first in any_packet(V5),
        second in any_packet(V5),
    ) {
        let mut buf = BytesMut::new();
        encode(&first, V5, &mut buf);
        encode(&second, V5, &mut buf);
        prop_assert_eq!(decode(&mut buf, Some(V5), NO_LIMIT), Ok(Some(first)));
        prop_assert_eq!(decode(&mut buf, Some(V5), NO_LIMIT), Ok(Some(second)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn random_bytes_never_panic(
        selector in 0..4u8,
        bytes in vec(any::<u8>(), 0..64),
    ) {
        let version = [None, Some(V3_1), Some(V3_1_1), Some(V5)][selector as usize];
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, version, NO_LIMIT) {}
    }

    #[test]
    fn mutated_packets_never_panic(
        packet in any_packet(V5),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = encode_vec(&packet, V5);
        let index = position.index(bytes.len());
        bytes[index] = byte;
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, Some(V5), NO_LIMIT) {}
    }
}
