//! Peer data must never panic the broker, because a panic in Wasm resets
//! every connection of the Durable Object. These tests feed it random bytes
//! and damaged packets from a fixed-seed generator, so failures reproduce.

mod harness;

use bytes::BytesMut;
use codec::{
    Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, QoS, Subscribe, SubscribeFilter,
    Unsubscribe,
};
use harness::{connect_packet, pkid, publish_packet, Harness};

/// A xorshift64 generator: deterministic and good enough to vary inputs.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn sample_packets(version: ProtocolVersion) -> Vec<u8> {
    let mut filter = SubscribeFilter::new("a/+", QoS::ExactlyOnce);
    filter.no_local = version == ProtocolVersion::V5;
    let packets = [
        Packet::Subscribe(Subscribe {
            pkid: pkid(1),
            filters: vec![filter, SubscribeFilter::new("$share/g/#", QoS::AtLeastOnce)],
            properties: Default::default(),
        }),
        Packet::Publish(publish_packet("a/b", "payload", QoS::AtLeastOnce, true)),
        Packet::Publish(publish_packet("a/c", "payload", QoS::ExactlyOnce, false)),
        Packet::PubRel(PubRel::new(pkid(1))),
        Packet::PubAck(PubAck::new(pkid(1))),
        Packet::PubRec(PubRec::new(pkid(1))),
        Packet::PubComp(PubComp::new(pkid(1))),
        Packet::Unsubscribe(Unsubscribe {
            pkid: pkid(2),
            filters: vec!["a/+".into()],
            properties: Default::default(),
        }),
        Packet::PingReq,
    ];
    let mut bytes = BytesMut::new();
    for packet in &packets {
        codec::encode(packet, version, &mut bytes);
    }
    bytes.to_vec()
}

#[test]
fn random_bytes_never_panic() {
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    for round in 0..300 {
        let mut h = Harness::new();
        let conn = h.open();
        if round % 2 == 0 {
            h.send(
                conn,
                Packet::Connect(connect_packet("c", ProtocolVersion::V5, true)),
            );
        }
        for _ in 0..8 {
            let length = random.below(40);
            let bytes: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
            h.send_bytes(conn, &bytes);
        }
        h.advance(60_000);
    }
}

#[test]
fn damaged_packets_never_panic() {
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    let versions = [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];
    for round in 0..600 {
        let version = versions[round % versions.len()];
        let mut h = Harness::new();
        let subscriber = h.connect_session("s", version, false);
        h.subscribe(subscriber, "#", QoS::ExactlyOnce);
        let conn = h.connect_session("c", version, round % 4 == 0);

        let mut bytes = sample_packets(version);
        for _ in 0..1 + random.below(3) {
            let position = random.below(bytes.len());
            bytes[position] = random.next() as u8;
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let split = 1 + random.below(rest.len());
            let (chunk, tail) = rest.split_at(split);
            h.send_bytes(conn, chunk);
            if random.below(4) == 0 {
                // The rows and records describe the same state as memory.
                let sessions = h.broker.session_count();
                let retained = h.broker.retained_count();
                let connections = h.broker.connection_count();
                h.hibernate();
                assert_eq!(h.broker.session_count(), sessions);
                assert_eq!(h.broker.retained_count(), retained);
                assert_eq!(h.broker.connection_count(), connections);
            }
            rest = tail;
        }
        h.advance(120_000);
    }
}

#[test]
fn undamaged_sample_packets_keep_connection_open() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut h = Harness::new();
        let conn = h.connect("c", version);
        h.send_bytes(conn, &sample_packets(version));
        assert!(!h.is_closed(conn), "{version:?}");
    }
}
