//! An in-memory embedding for the broker: a row map that applies storage
//! writes, the connection records of open sockets, per-socket inboxes of
//! decoded packets, and a virtual clock.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use broker::{Broker, Config, ConnId, Output, Row, StoreOp};
use bytes::{Bytes, BytesMut};
use codec::{
    ByteString, ConnAck, Connect, Disconnect, LastWill, Packet, PacketId, Properties,
    ProtocolVersion, PubAck, Publish, QoS, SubAck, Subscribe, SubscribeFilter,
};

/// Start of the virtual clock, in milliseconds since the Unix epoch.
pub const START_MS: u64 = 1_700_000_000_000;

/// One output, as the harness records it for order checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A row write or delete: kind and name.
    Stored { kind: String, name: String },
    /// A packet sent to a socket.
    Sent { conn: ConnId, packet: Box<Packet> },
    /// A socket closed by the broker.
    Closed { conn: ConnId },
}

pub struct Harness {
    pub broker: Broker,
    pub config: Config,
    pub now: u64,
    pub rows: BTreeMap<(String, String, String), Bytes>,
    pub records: BTreeMap<ConnId, Bytes>,
    /// How many connection records the broker has output.
    pub records_saved: usize,
    pub versions: BTreeMap<ConnId, ProtocolVersion>,
    pub inbox: BTreeMap<ConnId, VecDeque<Packet>>,
    pub closed: BTreeSet<ConnId>,
    pub events: Vec<Event>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Harness {
        let broker = Broker::restore(config.clone(), Vec::new(), Vec::new(), START_MS);
        let mut harness = Harness {
            broker,
            config,
            now: START_MS,
            rows: BTreeMap::new(),
            records: BTreeMap::new(),
            records_saved: 0,
            versions: BTreeMap::new(),
            inbox: BTreeMap::new(),
            closed: BTreeSet::new(),
            events: Vec::new(),
        };
        harness.pump();
        harness
    }

    /// Carries out every output the broker has.
    pub fn pump(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Store(op) => self.apply(op),
                Output::Send { conn, bytes } => self.receive(conn, bytes),
                Output::Close { conn } => {
                    self.closed.insert(conn);
                    self.records.remove(&conn);
                    self.events.push(Event::Closed { conn });
                }
                Output::SaveConnection { conn, record } => {
                    assert!(
                        record.len() <= 16 * 1024,
                        "record of {} bytes",
                        record.len()
                    );
                    self.records.insert(conn, record);
                    self.records_saved += 1;
                }
            }
        }
    }

    fn apply(&mut self, op: StoreOp) {
        match op {
            StoreOp::Put { key, value } => {
                self.events.push(Event::Stored {
                    kind: key.kind.into(),
                    name: key.name.clone(),
                });
                self.rows
                    .insert((key.kind.to_string(), key.owner, key.name), value);
            }
            StoreOp::Delete { key } => {
                self.events.push(Event::Stored {
                    kind: key.kind.into(),
                    name: key.name.clone(),
                });
                self.rows
                    .remove(&(key.kind.to_string(), key.owner, key.name));
            }
            StoreOp::DeleteOwner { kind, owner } => {
                self.rows.retain(|(k, o, _), _| !(k == kind && *o == owner));
            }
        }
    }

    fn receive(&mut self, conn: ConnId, bytes: Bytes) {
        assert!(
            !self.closed.contains(&conn),
            "send to closed connection {conn}"
        );
        let version = self
            .versions
            .get(&conn)
            .copied()
            .unwrap_or(ProtocolVersion::V3_1_1);
        let mut buffer = BytesMut::from(&bytes[..]);
        while !buffer.is_empty() {
            let packet = codec::decode(&mut buffer, Some(version), usize::MAX)
                .expect("broker output decodes")
                .expect("broker output holds whole packets");
            self.events.push(Event::Sent {
                conn,
                packet: Box::new(packet.clone()),
            });
            self.inbox.entry(conn).or_default().push_back(packet);
        }
    }

    pub fn open(&mut self) -> ConnId {
        let conn = self.broker.handle_open(self.now);
        self.pump();
        conn
    }

    pub fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        self.broker.handle_data(conn, bytes, self.now);
        self.pump();
    }

    pub fn send(&mut self, conn: ConnId, packet: Packet) {
        if let Packet::Connect(connect) = &packet {
            self.versions.insert(conn, connect.protocol);
        }
        let version = self
            .versions
            .get(&conn)
            .copied()
            .unwrap_or(ProtocolVersion::V3_1_1);
        let mut bytes = BytesMut::new();
        codec::encode(&packet, version, &mut bytes);
        self.send_bytes(conn, &bytes);
    }

    /// Opens a socket, sends CONNECT and returns the socket and the CONNACK.
    pub fn connect_with(&mut self, connect: Connect) -> (ConnId, ConnAck) {
        let conn = self.open();
        self.send(conn, Packet::Connect(connect));
        match self.next(conn) {
            Some(Packet::ConnAck(connack)) => (conn, connack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with Clean Session/Start set and asserts success.
    pub fn connect(&mut self, client_id: &str, version: ProtocolVersion) -> ConnId {
        self.connect_session(client_id, version, true)
    }

    /// Connects and asserts success; `clean` is Clean Session or Clean Start.
    pub fn connect_session(
        &mut self,
        client_id: &str,
        version: ProtocolVersion,
        clean: bool,
    ) -> ConnId {
        let (conn, connack) = self.connect_with(connect_packet(client_id, version, clean));
        assert_eq!(connack.reason, codec::ReasonCode::Success, "{connack:?}");
        conn
    }

    pub fn subscribe(&mut self, conn: ConnId, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_with(
            conn,
            SubscribeFilter::new(filter, qos),
            Properties::default(),
        )
    }

    pub fn subscribe_with(
        &mut self,
        conn: ConnId,
        filter: SubscribeFilter,
        properties: Properties,
    ) -> SubAck {
        let subscribe = Subscribe {
            pkid: pkid(1),
            filters: vec![filter],
            properties,
        };
        self.send(conn, Packet::Subscribe(subscribe));
        match self.next(conn) {
            Some(Packet::SubAck(suback)) => suback,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends a PUBLISH; packet id 1 for QoS 1 and 2.
    pub fn publish(&mut self, conn: ConnId, topic: &str, payload: &str, qos: QoS, retain: bool) {
        self.send(
            conn,
            Packet::Publish(publish_packet(topic, payload, qos, retain)),
        );
    }

    /// Sends a QoS 1 PUBLISH and checks its PUBACK.
    pub fn publish_qos1(&mut self, conn: ConnId, topic: &str, payload: &str, retain: bool) {
        self.publish(conn, topic, payload, QoS::AtLeastOnce, retain);
        assert_eq!(self.next(conn), Some(Packet::PubAck(PubAck::new(pkid(1)))));
    }

    pub fn next(&mut self, conn: ConnId) -> Option<Packet> {
        self.inbox.get_mut(&conn).and_then(VecDeque::pop_front)
    }

    pub fn expect_publish(&mut self, conn: ConnId) -> Publish {
        match self.next(conn) {
            Some(Packet::Publish(publish)) => publish,
            other => panic!("expected PUBLISH on {conn}, got {other:?}"),
        }
    }

    pub fn assert_silent(&mut self, conn: ConnId) {
        assert_eq!(self.next(conn), None, "unexpected packet on {conn}");
    }

    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.closed.contains(&conn)
    }

    /// Moves the clock forward, running every deadline that passes.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        while let Some(deadline) = self.broker.next_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.broker.handle_timeout(self.now);
            self.pump();
        }
        self.now = target;
    }

    /// Closes the socket from the peer's side.
    pub fn close_socket(&mut self, conn: ConnId) {
        self.broker.handle_closed(conn, self.now);
        self.records.remove(&conn);
        self.closed.insert(conn);
        self.pump();
    }

    /// Replaces the broker by one rebuilt from the rows and the records of
    /// open sockets, as after hibernation. The clock moves 1 ms, because a
    /// restored broker numbers new sockets from the current time.
    pub fn hibernate(&mut self) {
        self.now += 1;
        let rows = self
            .rows
            .iter()
            .map(|((kind, owner, name), value)| Row {
                kind: kind.clone(),
                owner: owner.clone(),
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        let connections = self
            .records
            .iter()
            .filter(|(conn, _)| !self.closed.contains(conn))
            .map(|(&conn, record)| (conn, record.clone()))
            .collect();
        self.broker = Broker::restore(self.config.clone(), rows, connections, self.now);
        self.pump();
    }

    pub fn rows_of_kind(&self, kind: &str) -> usize {
        self.rows.keys().filter(|(k, _, _)| k == kind).count()
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        self.send(conn, Packet::Disconnect(Disconnect::default()));
        assert!(self.is_closed(conn));
    }
}

pub fn pkid(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero packet id")
}

pub fn connect_packet(client_id: &str, version: ProtocolVersion, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 0,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

pub fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: ByteString::from(topic),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: Properties::default(),
    }
}

pub fn publish_packet(topic: &str, payload: &str, qos: QoS, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic),
        pkid: (qos != QoS::AtMostOnce).then(|| pkid(1)),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        properties: Properties::default(),
    }
}
