//! The MQTT broker core: every protocol rule of one namespace, with no I/O.
//!
//! A [`Broker`] owns the sessions, subscriptions, retained messages and
//! in-flight messages of one namespace. It never reads a clock and never
//! touches a socket or a database. The embedding (the Durable Object, or a
//! test) drives it:
//!
//! 1. Create it with [`Broker::restore`], passing every row previously
//!    written to storage and the records of the sockets that are still open.
//!    Then set the authentication with [`Broker::set_authentication`]; it is
//!    off until set.
//! 2. Feed it events: [`Broker::handle_open`] for a new socket (followed by
//!    [`Broker::set_ingress_grant`] when a token came with the upgrade),
//!    [`Broker::handle_data`] for received bytes, [`Broker::handle_closed`]
//!    when a socket closes, and [`Broker::handle_timeout`] when the time
//!    returned by [`Broker::next_timeout`] has passed. Each takes the current
//!    time in milliseconds since the Unix epoch.
//! 3. After each event, drain [`Broker::poll_output`] until it returns `None`
//!    and carry out every [`Output`] in order: storage writes before sends,
//!    because a PUBACK must not leave before the message it acknowledges is
//!    stored.
//!
//! Call [`Broker::poll_output`] after [`Broker::restore`] too: restoring
//! can close connections whose records are damaged and publish wills.
//!
//! Modules:
//! - `config`: limits and advertised capabilities, with defaults.
//! - `store`: the rows the embedding keeps for the core, and their kinds.
//! - `topic`: topic name and filter checks, matching, shared subscriptions.
//! - `message`: application messages and their stored form.
//! - `session`: sessions, subscriptions, in-flight and queued messages.
//! - `subscriptions`: the index of every subscription by topic level.
//! - `connection`: per-socket state and its hibernation record.
//! - `retained`: retained messages.
//! - `connect`: CONNECT, CONNACK, session takeover and resumption.
//! - `publish`: PUBLISH and its acknowledgements in both directions, routing.
//! - `subscribe`: SUBSCRIBE and UNSUBSCRIBE.
//! - `lifecycle`: the end of connections and sessions, wills and deadlines.
//! - `problem`: Reason Strings on error packets, and when a client gets them.
//! - `restore`: rebuilding the state from rows and connection records.
//! - `external`: HTTP publish, retained reads, the routed-message feed and
//!   the admin listing of clients.
//! - `presence`: `$SYS/presence/` events and `$SYS/broker/` status.
//! - `metrics`: counters per namespace and their Prometheus text form.
//! - `access`: authentication at CONNECT and the topic ACL of each session.
//! - `limits`: the token buckets behind each client's message and byte rates.
//! - `archive`: the R2 key layout, NDJSON records, audit settings, flush
//!   and retention policy, retained import and scheduled upkeep.
//! - `bridge`: bridge rules, queue messages and the outbox policy of the
//!   bridge to Cloudflare Queues.

#![warn(missing_docs)]

pub mod archive;
pub mod bridge;
pub mod config;
pub mod metrics;
pub mod store;
pub mod topic;

mod access;
mod connect;
mod connection;
mod external;
mod lifecycle;
mod limits;
mod message;
mod presence;
mod problem;
mod publish;
mod restore;
mod retained;
mod session;
mod subscribe;
mod subscriptions;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use codec::{Packet, ProtocolVersion};

use crate::connection::Connection;
use crate::lifecycle::Ending;
use crate::retained::Retained;
use crate::session::Session;
use crate::subscriptions::SubscriptionTree;

pub use access::Authentication;
pub use config::Config;
pub use external::{ClientInfo, ExternalPublishError, RetainedPage, SubscriptionInfo};
pub use message::Message;
pub use metrics::Metrics;
pub use store::{Row, RowKey, StoreOp};

/// Identifies one socket for as long as it is open. Assigned by the core.
pub type ConnId = u64;

/// What the core asks the embedding to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes (one or more whole packets) as one binary message.
    Send {
        /// The socket to send on.
        conn: ConnId,
        /// Whole encoded packets.
        bytes: Bytes,
    },
    /// Close the socket once the sends before this output are flushed.
    Close {
        /// The socket to close.
        conn: ConnId,
    },
    /// Keep this record with the socket (the Durable Object's WebSocket
    /// attachment) so that the connection survives hibernation. The record
    /// is at most 15 KiB.
    SaveConnection {
        /// The socket the record belongs to.
        conn: ConnId,
        /// The latest record, replacing any earlier one.
        record: Bytes,
    },
    /// Write to durable storage.
    Store(StoreOp),
}

/// The protocol state of one namespace.
pub struct Broker {
    config: Config,
    connections: BTreeMap<ConnId, Connection>,
    sessions: BTreeMap<String, Session>,
    /// Every subscription of `sessions`, indexed for routing.
    subscription_tree: SubscriptionTree,
    retained: Retained,
    outputs: VecDeque<Output>,
    /// Connections whose record changed during the current event.
    changed_records: BTreeSet<ConnId>,
    next_conn_id: ConnId,
    /// Rotates deliveries among the members of shared subscription groups.
    shared_cursor: usize,
    dropped_messages: u64,
    metrics: Metrics,
    /// The name presence events carry; empty until the embedding sets it.
    namespace_name: String,
    /// When the broker was built, for the uptime in `$SYS/broker/uptime`.
    started_at_ms: u64,
    /// When the next `$SYS/broker/` status is due.
    next_status_ms: Option<u64>,
    observe_routed: bool,
    routed: external::RoutedFeed,
    /// How CONNECT is authenticated, and the rate limit of failure logs.
    access: access::AccessControl,
}

impl Broker {
    /// Builds a broker from stored rows and the records of open sockets, as
    /// saved through [`Output::SaveConnection`]. Rows and records that do not
    /// decode are skipped; a connection whose record is damaged is closed.
    pub fn restore(
        config: Config,
        rows: Vec<Row>,
        connections: Vec<(ConnId, Bytes)>,
        now_ms: u64,
    ) -> Broker {
        let mut broker = Broker {
            config,
            connections: BTreeMap::new(),
            sessions: BTreeMap::new(),
            subscription_tree: SubscriptionTree::default(),
            retained: Retained::default(),
            outputs: VecDeque::new(),
            changed_records: BTreeSet::new(),
            next_conn_id: 1,
            shared_cursor: 0,
            dropped_messages: 0,
            metrics: Metrics::default(),
            namespace_name: String::new(),
            started_at_ms: now_ms,
            next_status_ms: None,
            observe_routed: false,
            routed: Default::default(),
            access: Default::default(),
        };
        broker.restore_rows(rows, now_ms);
        broker.restore_connections(connections, now_ms);
        broker.flush_records();
        broker
    }

    /// Registers a new socket and returns its id.
    pub fn handle_open(&mut self, now_ms: u64) -> ConnId {
        let conn = self.next_conn_id;
        self.next_conn_id += 1;
        self.connections.insert(conn, Connection::new(now_ms));
        self.changed_records.insert(conn);
        self.flush_records();
        conn
    }

    /// Processes bytes received on a socket. Bytes for an unknown or closed
    /// socket are ignored.
    pub fn handle_data(&mut self, conn: ConnId, data: &[u8], now_ms: u64) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        connection.buffer.extend_from_slice(data);
        self.changed_records.insert(conn);
        self.read_packets(conn, now_ms);
        self.flush_records();
    }

    /// Processes the close of a socket, by the peer or after an error. The
    /// close of a socket the broker already closed (after a takeover, say)
    /// changes nothing.
    pub fn handle_closed(&mut self, conn: ConnId, now_ms: u64) {
        self.end_connection(conn, Ending::SocketClosed, now_ms);
        self.flush_records();
    }

    /// Runs every deadline that has passed: keepalive, CONNECT timeout,
    /// will delay, session expiry and the `$SYS/broker/` status.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.run_deadlines(now_ms);
        self.run_status(now_ms);
        self.flush_records();
    }

    /// Returns the earliest time at which [`Broker::handle_timeout`] has work
    /// to do. Message expiry sets no deadline, because expired messages are
    /// dropped when they would be sent.
    pub fn next_timeout(&self) -> Option<u64> {
        let status = self.status_deadline();
        match (self.earliest_deadline(), status) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Returns the next action for the embedding, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Number of open sockets, including those still waiting for CONNECT.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Number of sessions, connected or not.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Messages dropped since this broker was built because a session queue
    /// was full or a message exceeded a client's Maximum Packet Size.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages
    }

    /// Decodes and handles every whole packet in the connection's buffer.
    fn read_packets(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(connection) = self.connections.get_mut(&conn) else {
                return;
            };
            let version = connection.version();
            let buffered = connection.buffer.len();
            let decoded =
                codec::decode(&mut connection.buffer, version, self.config.max_packet_size);
            let size = buffered.saturating_sub(connection.buffer.len());
            match decoded {
                Ok(Some(packet)) => {
                    connection.last_packet_ms = now_ms;
                    if !self.admit_packet(conn, &packet, size, now_ms) {
                        return;
                    }
                    self.handle_packet(conn, packet, now_ms);
                }
                Ok(None) => return,
                Err(error) => {
                    log::debug!("connection {conn}: {error}");
                    self.handle_decode_error(conn, version, &error, now_ms);
                    return;
                }
            }
        }
    }

    fn handle_packet(&mut self, conn: ConnId, packet: Packet, now_ms: u64) {
        let connected = self
            .connections
            .get(&conn)
            .is_some_and(|c| c.session.is_some());
        match packet {
            Packet::Connect(connect) if !connected => self.handle_connect(conn, connect, now_ms),
            // A second CONNECT is a protocol error (MQTT-3.1.0-2).
            Packet::Connect(_) => {
                self.protocol_error(conn, "second CONNECT (MQTT-3.1.0-2)", now_ms)
            }
            _ if !connected => {
                self.protocol_error(conn, "first packet is not CONNECT (MQTT-3.1.0-1)", now_ms)
            }
            Packet::Publish(publish) => self.handle_publish(conn, publish, now_ms),
            Packet::PubAck(ack) => self.handle_puback(conn, ack.pkid, now_ms),
            Packet::PubRec(rec) => self.handle_pubrec(conn, rec, now_ms),
            Packet::PubRel(rel) => self.handle_pubrel(conn, rel.pkid),
            Packet::PubComp(comp) => self.handle_pubcomp(conn, comp.pkid, now_ms),
            Packet::Subscribe(subscribe) => self.handle_subscribe(conn, subscribe, now_ms),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(conn, unsubscribe),
            Packet::PingReq => self.send(conn, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.handle_disconnect(conn, disconnect, now_ms),
            // The broker offers no extended authentication, so AUTH is never
            // expected; nor are the packets only a server sends.
            Packet::Auth(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => self.protocol_error(conn, "unexpected packet type", now_ms),
        }
    }

    /// Closes a connection that broke a protocol rule, with DISCONNECT 0x82
    /// for MQTT 5.0 clients. `detail` names the rule and becomes the Reason
    /// String, so it must not contain a payload or a token.
    fn protocol_error(&mut self, conn: ConnId, detail: &str, now_ms: u64) {
        log::debug!("connection {conn}: protocol error: {detail}");
        let ending = Ending::ServerClose(codec::ReasonCode::ProtocolError);
        let reason_string = format!("protocol error: {detail}");
        self.end_connection_explained(conn, ending, Some(reason_string), now_ms);
    }

    /// Encodes a packet for a connection in its protocol version and queues
    /// it, appended to the previous output when that is a send to the same
    /// socket so that one event produces few WebSocket messages.
    /// Packets with an error reason code get a Reason String unless the
    /// client's Request Problem Information or Maximum Packet Size forbids it.
    fn send(&mut self, conn: ConnId, packet: &Packet) {
        let connected = self.connections.get(&conn).and_then(|c| c.session.as_ref());
        let Some(connected) = connected else {
            return;
        };
        let version = connected.version;
        let limits = problem::ProblemLimits {
            request_problem_information: connected.request_problem_information,
            maximum_packet_size: connected.maximum_packet_size,
        };
        let mut packet = packet.clone();
        problem::explain(&mut packet, version, limits);
        self.send_as(conn, version, &packet);
    }

    fn send_as(&mut self, conn: ConnId, version: ProtocolVersion, packet: &Packet) {
        let mut bytes = BytesMut::new();
        codec::encode(packet, version, &mut bytes);
        self.send_bytes(conn, bytes.freeze());
    }

    fn send_bytes(&mut self, conn: ConnId, bytes: Bytes) {
        if let Some(Output::Send {
            conn: last_conn,
            bytes: last,
        }) = self.outputs.back_mut()
        {
            if *last_conn == conn {
                let mut joined = BytesMut::with_capacity(last.len() + bytes.len());
                joined.extend_from_slice(last);
                joined.extend_from_slice(&bytes);
                *last = joined.freeze();
                return;
            }
        }
        self.outputs.push_back(Output::Send { conn, bytes });
    }

    fn store(&mut self, op: StoreOp) {
        self.outputs.push_back(Output::Store(op));
    }

    /// Emits the record of every connection that changed.
    fn flush_records(&mut self) {
        for conn in std::mem::take(&mut self.changed_records) {
            let record = self
                .connections
                .get_mut(&conn)
                .and_then(Connection::record_to_save);
            if let Some(record) = record {
                self.outputs
                    .push_back(Output::SaveConnection { conn, record });
            }
        }
    }
}
