//! Fan-in through the sans-IO core: 100 publishers to 1 subscriber on one
//! topic, with every output carried out in memory. Storage writes go to a
//! row map, sends to the subscriber are decoded and acknowledged.
//!
//! Each iteration is one round: every publisher sends `WINDOW` messages,
//! then the subscriber acknowledges what it received until the broker has
//! delivered all of them. With 100 publishers and a window of 2, 200
//! messages are in flight at once, as in the end-to-end `fan-in` scenario,
//! so most of them wait in the subscriber's queue behind its in-flight
//! window. Before the timing, the bench prints the outputs per message.
//!
//! Run: `cargo bench -p broker --bench fan_in`.

use std::collections::BTreeMap;
use std::hint::black_box;

use broker::{Broker, Config, ConnId, Output, StoreOp};
use bytes::{Bytes, BytesMut};
use codec::{
    ByteString, Connect, Packet, PacketId, Properties, ProtocolVersion, PubAck, Publish, QoS,
    Subscribe, SubscribeFilter,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PUBLISHERS: usize = 100;
const WINDOW: usize = 2;
const TOPIC: &str = "bench/fan-in";
const PAYLOAD_BYTES: usize = 64;
const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Outputs carried out, by kind.
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    puts: u64,
    deletes: u64,
    records: u64,
    sends: u64,
    delivered: u64,
}

/// The broker, a row map and the sockets of one fan-in.
struct FanIn {
    broker: Broker,
    rows: BTreeMap<(&'static str, String, String), Bytes>,
    subscriber: ConnId,
    publishers: Vec<ConnId>,
    /// Packet ids the subscriber has received and not yet acknowledged.
    to_acknowledge: Vec<PacketId>,
    next_pkid: u16,
    now: u64,
    counts: Counts,
}

impl FanIn {
    fn new(qos: QoS) -> FanIn {
        let broker = Broker::restore(Config::default(), Vec::new(), Vec::new(), 1_700_000_000_000);
        let mut fan_in = FanIn {
            broker,
            rows: BTreeMap::new(),
            subscriber: 0,
            publishers: Vec::new(),
            to_acknowledge: Vec::new(),
            next_pkid: 1,
            now: 1_700_000_000_000,
            counts: Counts::default(),
        };
        fan_in.subscriber = fan_in.connect("subscriber");
        let subscribe = Subscribe {
            pkid: PacketId::new(1).unwrap(),
            filters: vec![SubscribeFilter::new(TOPIC, qos)],
            properties: Properties::default(),
        };
        fan_in.send(fan_in.subscriber, &Packet::Subscribe(subscribe));
        fan_in.publishers = (0..PUBLISHERS)
            .map(|i| fan_in.connect(&format!("publisher-{i}")))
            .collect();
        fan_in.to_acknowledge.clear();
        fan_in.counts = Counts::default();
        fan_in
    }

    fn connect(&mut self, client_id: &str) -> ConnId {
        let conn = self.broker.handle_open(self.now);
        self.pump();
        let connect = Connect {
            protocol: VERSION,
            clean_start: true,
            keep_alive: 60,
            client_id: ByteString::from(client_id),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        self.send(conn, &Packet::Connect(connect));
        conn
    }

    fn send(&mut self, conn: ConnId, packet: &Packet) {
        let mut bytes = BytesMut::new();
        codec::encode(packet, VERSION, &mut bytes);
        self.broker.handle_data(conn, &bytes, self.now);
        self.pump();
    }

    fn pump(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Store(StoreOp::Put { key, value }) => {
                    self.counts.puts += 1;
                    self.rows.insert((key.kind, key.owner, key.name), value);
                }
                Output::Store(StoreOp::Delete { key }) => {
                    self.counts.deletes += 1;
                    self.rows.remove(&(key.kind, key.owner, key.name));
                }
                Output::Store(StoreOp::DeleteOwner { kind, owner }) => {
                    self.counts.deletes += 1;
                    self.rows
                        .retain(|(k, o, _), _| !(*k == kind && *o == owner));
                }
                Output::SaveConnection { .. } => self.counts.records += 1,
                Output::Send { conn, bytes } => {
                    self.counts.sends += 1;
                    if conn == self.subscriber {
                        self.receive(bytes);
                    }
                }
                Output::Close { .. } => {}
            }
        }
    }

    /// Decodes what the subscriber received and notes what it must acknowledge.
    fn receive(&mut self, bytes: Bytes) {
        let mut buffer = BytesMut::from(&bytes[..]);
        while let Ok(Some(packet)) = codec::decode(&mut buffer, Some(VERSION), usize::MAX) {
            if let Packet::Publish(publish) = packet {
                self.counts.delivered += 1;
                if let Some(pkid) = publish.pkid {
                    self.to_acknowledge.push(pkid);
                }
            }
        }
    }

    /// Runs one round: every publisher sends its window, then the subscriber
    /// acknowledges until nothing is left in flight.
    fn round(&mut self, qos: QoS) {
        let payload = Bytes::from(vec![0x5a; PAYLOAD_BYTES]);
        for _ in 0..WINDOW {
            for index in 0..self.publishers.len() {
                let pkid = (qos != QoS::AtMostOnce).then(|| self.take_pkid());
                let publish = Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: ByteString::from_static(TOPIC),
                    pkid,
                    payload: payload.clone(),
                    properties: Properties::default(),
                };
                self.now += 1;
                self.send(self.publishers[index], &Packet::Publish(publish));
            }
        }
        while !self.to_acknowledge.is_empty() {
            for pkid in std::mem::take(&mut self.to_acknowledge) {
                self.now += 1;
                self.send(self.subscriber, &Packet::PubAck(PubAck::new(pkid)));
            }
        }
    }

    fn take_pkid(&mut self) -> PacketId {
        let pkid = PacketId::new(self.next_pkid).unwrap();
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        pkid
    }
}

fn print_outputs_per_message(qos: QoS) {
    let mut fan_in = FanIn::new(qos);
    let rounds = 50;
    for _ in 0..rounds {
        fan_in.round(qos);
    }
    let messages = (rounds * WINDOW * PUBLISHERS) as f64;
    let counts = fan_in.counts;
    eprintln!(
        "fan-in {qos:?}: per message {:.2} row puts, {:.2} row deletes, {:.2} connection \
         records, {:.2} sends; {} of {} delivered, {} rows left",
        counts.puts as f64 / messages,
        counts.deletes as f64 / messages,
        counts.records as f64 / messages,
        counts.sends as f64 / messages,
        counts.delivered,
        messages,
        fan_in.rows.len(),
    );
}

fn fan_in(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_in");
    group.throughput(Throughput::Elements((WINDOW * PUBLISHERS) as u64));
    for (name, qos) in [("q0", QoS::AtMostOnce), ("q1", QoS::AtLeastOnce)] {
        print_outputs_per_message(qos);
        let mut fan_in = FanIn::new(qos);
        group.bench_function(name, |b| b.iter(|| fan_in.round(black_box(qos))));
    }
    group.finish();
}

criterion_group!(benches, fan_in);
criterion_main!(benches);
