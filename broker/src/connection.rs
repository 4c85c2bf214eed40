//! Connections: the per-socket state, and the record that keeps it across
//! hibernation in the WebSocket attachment.

use std::collections::BTreeMap;

use auth::Grant;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use codec::{ByteString, ProtocolVersion};
use serde::{Deserialize, Serialize};

use crate::limits::RateLimit;
use crate::ConnId;

/// Largest connection record. The WebSocket attachment takes at most 16 KiB
/// (Cloudflare Durable Objects limits, 2026), and the embedding adds its own
/// fields around the record.
const MAX_RECORD_SIZE: usize = 15 * 1024;

/// One open socket.
#[derive(Debug)]
pub struct Connection {
    /// When the socket opened, for the CONNECT timeout.
    pub opened_ms: u64,
    /// When the last whole packet arrived, for the keep alive.
    pub last_packet_ms: u64,
    /// Received bytes that do not yet form a whole packet.
    pub buffer: BytesMut,
    /// Set when a restored record had lost its partial packet: the byte
    /// stream can no longer be parsed, so the connection is closed.
    pub buffer_lost: bool,
    /// `None` until CONNECT is accepted.
    pub session: Option<Connected>,
    /// The token the ingress verified on the upgrade request, kept until
    /// CONNECT arrives.
    pub grant: Option<Grant>,
    /// The client's message and byte buckets, created full at its first
    /// packet after CONNECT. Not kept in the record, so they start full
    /// again after hibernation.
    pub rate_limit: Option<RateLimit>,
    /// The last record handed to the embedding, with the last-packet time
    /// it contains. `None` until the first one.
    saved: Option<(u64, Bytes)>,
}

/// The state of a connection once CONNECT is accepted.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The client id, also the key of the session.
    pub client_id: String,
    /// The protocol version of CONNECT.
    pub version: ProtocolVersion,
    /// The keep alive in force, in seconds; 0 for none.
    pub keep_alive: u16,
    /// The client's Receive Maximum: QoS 1 and 2 messages it accepts at once.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size, if it set one.
    pub maximum_packet_size: Option<u32>,
    /// Whether the client accepts Reason Strings and User Properties on
    /// packets other than PUBLISH, CONNACK and DISCONNECT.
    pub request_problem_information: bool,
    /// Topic aliases the client has set, by alias.
    pub topic_aliases: BTreeMap<u16, ByteString>,
    /// When the client's token expires, in milliseconds since the Unix
    /// epoch; the connection is closed then.
    pub token_expires_ms: Option<u64>,
}

impl Connection {
    /// Creates the state of a socket that has not sent CONNECT yet.
    pub fn new(now_ms: u64) -> Connection {
        Connection {
            opened_ms: now_ms,
            last_packet_ms: now_ms,
            buffer: BytesMut::new(),
            buffer_lost: false,
            session: None,
            grant: None,
            rate_limit: None,
            saved: None,
        }
    }

    /// The protocol version, once CONNECT is accepted.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.session.as_ref().map(|connected| connected.version)
    }

    /// The time at which the connection must be closed: the CONNECT timeout
    /// before CONNECT, then the earlier of the token's expiry and one and a
    /// half keep alive periods after the last packet (MQTT-3.1.2-22).
    pub fn deadline_ms(&self, connect_timeout_ms: u64) -> Option<u64> {
        match &self.session {
            None => Some(self.opened_ms.saturating_add(connect_timeout_ms)),
            Some(connected) => {
                let keep_alive = (connected.keep_alive != 0).then(|| {
                    let grace_ms = u64::from(connected.keep_alive) * 1500;
                    self.last_packet_ms.saturating_add(grace_ms)
                });
                match (keep_alive, connected.token_expires_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Reports whether the connection's token has expired at `now_ms`.
    pub fn token_expired(&self, now_ms: u64) -> bool {
        self.session
            .as_ref()
            .and_then(|connected| connected.token_expires_ms)
            .is_some_and(|at| at <= now_ms)
    }

    /// Encodes the record with the current last-packet time.
    #[cfg(test)]
    pub fn encode_record(&self) -> Bytes {
        self.encode_record_at(self.last_packet_ms)
    }

    /// Returns the record to save, or `None` while the saved one is still
    /// good enough. Saving the attachment on every packet costs a
    /// serialization across the Wasm boundary, so a record whose only change
    /// is a later last-packet time is saved once per quarter keep alive.
    /// After hibernation the keep alive deadline is then at most that much
    /// early, still more than one keep alive after the real last packet.
    pub fn record_to_save(&mut self) -> Option<Bytes> {
        let step_ms = match &self.session {
            Some(connected) if connected.keep_alive > 0 => u64::from(connected.keep_alive) * 250,
            _ => u64::MAX,
        };
        let last_packet_ms = match &self.saved {
            Some((saved_ms, _)) if self.last_packet_ms.saturating_sub(*saved_ms) < step_ms => {
                *saved_ms
            }
            _ => self.last_packet_ms,
        };
        let record = self.encode_record_at(last_packet_ms);
        if self
            .saved
            .as_ref()
            .is_some_and(|(_, saved)| *saved == record)
        {
            return None;
        }
        self.saved = Some((last_packet_ms, record.clone()));
        Some(record)
    }

    /// Encodes the record kept in the WebSocket attachment: a 4-byte length,
    /// a JSON header, then the partial packet as raw bytes. The record stays
    /// within [`MAX_RECORD_SIZE`]: topic aliases are left out first, then the
    /// partial packet.
    fn encode_record_at(&self, last_packet_ms: u64) -> Bytes {
        let mut header = RecordHeader {
            opened_ms: self.opened_ms,
            last_packet_ms,
            buffer_lost: self.buffer_lost,
            session: self.session.as_ref().map(ConnectedRecord::from),
            grant: self.grant.clone(),
        };
        let fits = |json: &[u8], buffer: usize| 4 + json.len() + buffer <= MAX_RECORD_SIZE;
        let mut json = serde_json::to_vec(&header).unwrap_or_default();
        if !fits(&json, self.buffer.len()) {
            // NOTE: aliases left out here are unknown after hibernation, and
            // a client that uses one gets a Protocol Error.
            if let Some(session) = header.session.as_mut() {
                session.topic_aliases.clear();
            }
            json = serde_json::to_vec(&header).unwrap_or_default();
        }
        let keep_buffer = fits(&json, self.buffer.len());
        if !keep_buffer {
            // TODO: keep large partial packets (in storage, say) so that a
            // connection survives hibernation in the middle of one. Until
            // then a restored connection that lost one is closed.
            header.buffer_lost = true;
            json = serde_json::to_vec(&header).unwrap_or_default();
        }

        let mut out = BytesMut::with_capacity(4 + json.len() + self.buffer.len());
        out.put_u32(u32::try_from(json.len()).unwrap_or(u32::MAX));
        out.put_slice(&json);
        if keep_buffer {
            out.put_slice(&self.buffer);
        }
        out.freeze()
    }

    /// Decodes a record written by [`Connection::encode_record`].
    pub fn decode_record(mut record: Bytes) -> Option<Connection> {
        if record.remaining() < 4 {
            return None;
        }
        let json_len = usize::try_from(record.get_u32()).ok()?;
        if record.remaining() < json_len {
            return None;
        }
        let json = record.split_to(json_len);
        let header: RecordHeader = serde_json::from_slice(&json).ok()?;
        let session = match header.session {
            Some(connected) => Some(connected.into_connected()?),
            None => None,
        };
        Some(Connection {
            opened_ms: header.opened_ms,
            last_packet_ms: header.last_packet_ms,
            buffer: BytesMut::from(&record[..]),
            buffer_lost: header.buffer_lost,
            session,
            grant: header.grant,
            rate_limit: None,
            saved: None,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct RecordHeader {
    opened_ms: u64,
    last_packet_ms: u64,
    buffer_lost: bool,
    session: Option<ConnectedRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<Grant>,
}

#[derive(Serialize, Deserialize)]
struct ConnectedRecord {
    client_id: String,
    level: u8,
    keep_alive: u16,
    receive_maximum: u16,
    maximum_packet_size: Option<u32>,
    /// Written only when false, the rare case, and read as true when
    /// missing, its default in CONNECT.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    request_problem_information: bool,
    topic_aliases: Vec<(u16, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_expires_ms: Option<u64>,
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl From<&Connected> for ConnectedRecord {
    fn from(connected: &Connected) -> Self {
        ConnectedRecord {
            client_id: connected.client_id.clone(),
            level: connected.version.level(),
            keep_alive: connected.keep_alive,
            receive_maximum: connected.receive_maximum,
            maximum_packet_size: connected.maximum_packet_size,
            request_problem_information: connected.request_problem_information,
            topic_aliases: connected
                .topic_aliases
                .iter()
                .map(|(&alias, topic)| (alias, topic.to_string()))
                .collect(),
            token_expires_ms: connected.token_expires_ms,
        }
    }
}

impl ConnectedRecord {
    fn into_connected(self) -> Option<Connected> {
        let version = match self.level {
            3 => ProtocolVersion::V3_1,
            4 => ProtocolVersion::V3_1_1,
            5 => ProtocolVersion::V5,
            _ => return None,
        };
        Some(Connected {
            client_id: self.client_id,
            version,
            keep_alive: self.keep_alive,
            receive_maximum: self.receive_maximum,
            maximum_packet_size: self.maximum_packet_size,
            request_problem_information: self.request_problem_information,
            topic_aliases: self
                .topic_aliases
                .into_iter()
                .map(|(alias, topic)| (alias, ByteString::from(topic)))
                .collect(),
            token_expires_ms: self.token_expires_ms,
        })
    }
}

/// Picks the first id for new sockets after a restore. It is above every
/// restored id and at least the current time in milliseconds, so ids are not
/// reused across restarts unless sockets opened faster than one per
/// millisecond before the restart.
pub fn first_new_id(restored: impl Iterator<Item = ConnId>, now_ms: u64) -> ConnId {
    let after_restored = restored
        .max()
        .map_or(1, |highest| highest.saturating_add(1));
    after_restored.max(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected() -> Connected {
        Connected {
            client_id: "c1".to_string(),
            version: ProtocolVersion::V5,
            keep_alive: 30,
            receive_maximum: 10,
            maximum_packet_size: Some(1000),
            request_problem_information: false,
            topic_aliases: BTreeMap::from([(1, ByteString::from("a/b"))]),
            token_expires_ms: Some(1_900_000_000_000),
        }
    }

    #[test]
    fn record_round_trips_state_and_partial_packet() {
        let mut connection = Connection::new(5);
        connection.last_packet_ms = 7;
        connection.buffer.extend_from_slice(&[0x30, 0x05, 0x00]);
        connection.session = Some(connected());

        let restored = Connection::decode_record(connection.encode_record()).unwrap();
        assert_eq!(restored.opened_ms, 5);
        assert_eq!(restored.last_packet_ms, 7);
        assert_eq!(&restored.buffer[..], &[0x30, 0x05, 0x00]);
        assert!(!restored.buffer_lost);
        let session = restored.session.unwrap();
        assert_eq!(session.client_id, "c1");
        assert_eq!(session.version, ProtocolVersion::V5);
        assert_eq!(session.keep_alive, 30);
        assert_eq!(session.receive_maximum, 10);
        assert_eq!(session.maximum_packet_size, Some(1000));
        assert!(!session.request_problem_information);
        assert_eq!(
            session.topic_aliases.get(&1).map(|t| t.as_ref()),
            Some("a/b")
        );
    }

    #[test]
    fn record_drops_oversized_partial_packet() {
        let mut connection = Connection::new(0);
        connection
            .buffer
            .extend_from_slice(&vec![0u8; MAX_RECORD_SIZE]);
        let record = connection.encode_record();
        assert!(record.len() < 1024, "record of {} bytes", record.len());
        let restored = Connection::decode_record(record).unwrap();
        assert!(restored.buffer_lost);
        assert!(restored.buffer.is_empty());
    }

    #[test]
    fn record_leaves_out_aliases_that_do_not_fit() {
        let mut session = connected();
        for alias in 1..=10 {
            let topic = format!("{alias}/{}", "t".repeat(4000));
            session.topic_aliases.insert(alias, ByteString::from(topic));
        }
        let mut connection = Connection::new(0);
        connection.session = Some(session);
        let record = connection.encode_record();
        assert!(
            record.len() <= MAX_RECORD_SIZE,
            "record of {} bytes",
            record.len()
        );
        let restored = Connection::decode_record(record).unwrap();
        assert!(restored.session.unwrap().topic_aliases.is_empty());
        assert!(!restored.buffer_lost);
    }

    #[test]
    fn record_without_problem_information_flag_reads_true() {
        let json = br#"{"opened_ms":1,"last_packet_ms":2,"buffer_lost":false,
            "session":{"client_id":"c1","level":5,"keep_alive":30,"receive_maximum":10,
            "maximum_packet_size":null,"topic_aliases":[]}}"#;
        let mut record = BytesMut::new();
        record.put_u32(json.len() as u32);
        record.put_slice(json);
        let restored = Connection::decode_record(record.freeze()).unwrap();
        assert!(restored.session.unwrap().request_problem_information);
    }

    #[test]
    fn record_leaves_out_default_problem_information_flag() {
        let mut session = connected();
        session.request_problem_information = true;
        let mut connection = Connection::new(0);
        connection.session = Some(session);
        let record = connection.encode_record();
        let text = String::from_utf8_lossy(&record[4..]);
        assert!(!text.contains("request_problem_information"), "{text}");
    }

    #[test]
    fn damaged_record_does_not_decode() {
        assert!(Connection::decode_record(Bytes::new()).is_none());
        assert!(Connection::decode_record(Bytes::from_static(&[0, 0, 0, 9, b'{'])).is_none());
        assert!(Connection::decode_record(Bytes::from_static(&[0, 0, 0, 1, b'{'])).is_none());
    }

    #[test]
    fn new_ids_follow_restored_ids_and_time() {
        assert_eq!(first_new_id([3, 9].into_iter(), 5), 10);
        assert_eq!(first_new_id([3].into_iter(), 100), 100);
        assert_eq!(first_new_id(std::iter::empty(), 0), 1);
    }
}
