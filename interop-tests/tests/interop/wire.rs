//! A hand-made MQTT 3.1.1 and 5.0 client over WebSocket that shows every
//! field a client library hides: packet ids, DUP, reason codes, properties,
//! and whether the server closed the connection. It acknowledges nothing
//! unless `auto_ack` is set, so tests decide when PUBACK, PUBREC and PUBCOMP
//! leave.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use interop_tests::BrokerAddress;
use libtest_mimic::Failed;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::mqtt::WAIT;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The protocol version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

/// MQTT 5.0 property identifiers used by the tests.
pub mod property {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
}

/// The value of one MQTT 5.0 property, by its wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VariableByte(u32),
    String(String),
    Binary(Vec<u8>),
    Pair(String, String),
}

/// MQTT 5.0 properties in wire order, as (identifier, value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(pub Vec<(u8, Value)>);

impl Properties {
    /// Appends one property.
    pub fn with(mut self, id: u8, value: Value) -> Properties {
        self.0.push((id, value));
        self
    }

    /// Returns the first value of property `id`.
    pub fn get(&self, id: u8) -> Option<&Value> {
        self.0
            .iter()
            .find(|(found, _)| *found == id)
            .map(|(_, value)| value)
    }

    /// Returns every value of property `id`, in order.
    pub fn all(&self, id: u8) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|(found, _)| *found == id)
            .map(|(_, value)| value)
            .collect()
    }
}

/// A Will Message in CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub properties: Properties,
}

/// The fields of a CONNECT.
#[derive(Debug, Clone)]
pub struct Connect {
    pub client_id: String,
    /// Clean Session in 3.1.1, Clean Start in 5.0.
    pub clean: bool,
    pub keep_alive: u16,
    pub properties: Properties,
    pub will: Option<Will>,
}

impl Connect {
    /// A clean CONNECT with keep alive 60 and no will.
    pub fn new(client_id: &str) -> Connect {
        Connect {
            client_id: client_id.to_string(),
            clean: true,
            keep_alive: 60,
            properties: Properties::default(),
            will: None,
        }
    }

    /// Sets Clean Session (3.1.1) or Clean Start (5.0).
    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    /// Sets the keep alive in seconds.
    pub fn keep_alive(mut self, seconds: u16) -> Connect {
        self.keep_alive = seconds;
        self
    }

    /// Appends a CONNECT property (ignored in 3.1.1).
    pub fn property(mut self, id: u8, value: Value) -> Connect {
        self.properties.0.push((id, value));
        self
    }

    /// Sets the Will Message.
    pub fn will(mut self, will: Will) -> Connect {
        self.will = Some(will);
        self
    }
}

/// A PUBLISH in either direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// 0 for QoS 0, which carries no packet identifier.
    pub pkid: u16,
    pub properties: Properties,
}

impl Publish {
    /// Builds a PUBLISH without properties, DUP or RETAIN.
    pub fn new(topic: &str, payload: &[u8], qos: u8, pkid: u16) -> Publish {
        Publish {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos,
            pkid,
            ..Publish::default()
        }
    }

    /// Sets RETAIN.
    pub fn retain(mut self) -> Publish {
        self.retain = true;
        self
    }

    /// Appends a property.
    pub fn property(mut self, id: u8, value: Value) -> Publish {
        self.properties.0.push((id, value));
        self
    }

    /// Returns the payload as text, for readable comparisons.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A packet from the server, or the end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    ConnAck {
        session_present: bool,
        code: u8,
        properties: Properties,
    },
    Publish(Publish),
    PubAck {
        pkid: u16,
        reason: u8,
    },
    PubRec {
        pkid: u16,
        reason: u8,
    },
    PubRel {
        pkid: u16,
        reason: u8,
    },
    PubComp {
        pkid: u16,
        reason: u8,
    },
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    UnsubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    PingResp,
    Disconnect {
        reason: u8,
        properties: Properties,
    },
    /// The server closed the WebSocket or the TCP connection.
    Closed,
}

/// Subscription option bits of MQTT 5.0 (the low two bits are the QoS).
pub mod option {
    pub const NO_LOCAL: u8 = 0x04;
    pub const RETAIN_AS_PUBLISHED: u8 = 0x08;
    pub const RETAIN_HANDLING_NEW_ONLY: u8 = 0x10;
    pub const RETAIN_HANDLING_NEVER: u8 = 0x20;
}

/// One client connection.
pub struct Wire {
    socket: Socket,
    version: Version,
    buffer: Vec<u8>,
    /// Decoded packets not read yet.
    pending: VecDeque<Incoming>,
    /// Packets that `expect` passed over, for later reads.
    skipped: VecDeque<Incoming>,
    closed: bool,
    /// Whether to acknowledge as packets arrive: PUBACK for a QoS 1 PUBLISH,
    /// PUBREC for QoS 2, PUBCOMP for PUBREL, and PUBREL for a PUBREC to this
    /// client's own QoS 2 PUBLISH.
    pub auto_ack: bool,
}

impl Wire {
    /// Opens a WebSocket offering the `mqtt` subprotocol.
    pub async fn open(address: &BrokerAddress, version: Version) -> Result<Wire, Failed> {
        let mut request = address.url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
        let (socket, _) = timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| format!("WebSocket upgrade to {} timed out", address.url))??;
        Ok(Wire {
            socket,
            version,
            buffer: Vec::new(),
            pending: VecDeque::new(),
            skipped: VecDeque::new(),
            closed: false,
            auto_ack: false,
        })
    }

    /// Opens a connection, sends CONNECT and returns the client with the
    /// CONNACK's Session Present, reason code and properties.
    pub async fn connect(
        address: &BrokerAddress,
        version: Version,
        connect: &Connect,
    ) -> Result<(Wire, Incoming), Failed> {
        let mut wire = Wire::open(address, version).await?;
        wire.send(encode_connect(version, connect)).await?;
        let connack = wire.recv().await?;
        if !matches!(connack, Incoming::ConnAck { .. }) {
            return Err(format!("expected CONNACK, received {connack:?}").into());
        }
        Ok((wire, connack))
    }

    /// Connects and fails unless the CONNACK accepts the connection.
    pub async fn connected(
        address: &BrokerAddress,
        version: Version,
        connect: &Connect,
    ) -> Result<Wire, Failed> {
        let (wire, connack) = Wire::connect(address, version, connect).await?;
        match connack {
            Incoming::ConnAck { code: 0, .. } => Ok(wire),
            other => Err(format!("connection of {} rejected: {other:?}", connect.client_id).into()),
        }
    }

    /// Sends bytes (one or more packets) as one binary message.
    pub async fn send(&mut self, bytes: Vec<u8>) -> Result<(), Failed> {
        self.socket.send(Frame::binary(bytes)).await?;
        Ok(())
    }

    /// Sends a PUBLISH.
    pub async fn publish(&mut self, publish: &Publish) -> Result<(), Failed> {
        self.send(encode_publish(self.version, publish)).await
    }

    /// Subscribes to each (filter, options) pair with one SUBSCRIBE and
    /// returns the SUBACK reason codes.
    pub async fn subscribe(
        &mut self,
        pkid: u16,
        filters: &[(&str, u8)],
        properties: &Properties,
    ) -> Result<Vec<u8>, Failed> {
        self.send(encode_subscribe(self.version, pkid, filters, properties))
            .await?;
        match self
            .expect(|p| matches!(p, Incoming::SubAck { .. }))
            .await?
        {
            Incoming::SubAck { pkid: acked, codes } if acked == pkid => Ok(codes),
            other => Err(format!("expected SUBACK {pkid}, received {other:?}").into()),
        }
    }

    /// Publishes at QoS 1 or 2 and completes the flow: waits for PUBACK, or
    /// for PUBREC, then sends PUBREL and waits for PUBCOMP. Returns the
    /// reason code of the PUBACK or PUBREC.
    pub async fn publish_acknowledged(&mut self, publish: &Publish) -> Result<u8, Failed> {
        self.publish(publish).await?;
        let pkid = publish.pkid;
        match publish.qos {
            1 => match self
                .expect(|p| matches!(p, Incoming::PubAck { .. }))
                .await?
            {
                Incoming::PubAck {
                    pkid: acked,
                    reason,
                } if acked == pkid => Ok(reason),
                other => Err(format!("expected PUBACK {pkid}, received {other:?}").into()),
            },
            2 => {
                let reason = match self
                    .expect(|p| matches!(p, Incoming::PubRec { .. }))
                    .await?
                {
                    Incoming::PubRec {
                        pkid: acked,
                        reason,
                    } if acked == pkid => reason,
                    other => {
                        return Err(format!("expected PUBREC {pkid}, received {other:?}").into())
                    }
                };
                if reason >= 0x80 {
                    return Ok(reason);
                }
                // With `auto_ack` the PUBREL left when the PUBREC arrived.
                if !self.auto_ack {
                    self.pubrel(pkid).await?;
                }
                match self
                    .expect(|p| matches!(p, Incoming::PubComp { .. }))
                    .await?
                {
                    Incoming::PubComp { pkid: acked, .. } if acked == pkid => Ok(reason),
                    other => Err(format!("expected PUBCOMP {pkid}, received {other:?}").into()),
                }
            }
            _ => Ok(0),
        }
    }

    /// Sends PUBACK.
    pub async fn puback(&mut self, pkid: u16) -> Result<(), Failed> {
        self.send(encode_ack(self.version, 0x40, pkid)).await
    }

    /// Sends PUBREC.
    pub async fn pubrec(&mut self, pkid: u16) -> Result<(), Failed> {
        self.send(encode_ack(self.version, 0x50, pkid)).await
    }

    /// Sends PUBREL.
    pub async fn pubrel(&mut self, pkid: u16) -> Result<(), Failed> {
        self.send(encode_ack(self.version, 0x62, pkid)).await
    }

    /// Sends PUBCOMP.
    pub async fn pubcomp(&mut self, pkid: u16) -> Result<(), Failed> {
        self.send(encode_ack(self.version, 0x70, pkid)).await
    }

    /// Sends DISCONNECT with `reason` (always 0 in 3.1.1) and closes the
    /// connection, as the sender of DISCONNECT must (MQTT-3.14.4-2).
    /// Returns once the server has replied to the WebSocket close, so after
    /// it has read the DISCONNECT.
    pub async fn disconnect(mut self, reason: u8) -> Result<(), Failed> {
        let bytes = match self.version {
            Version::V311 => vec![0xE0, 0x00],
            Version::V5 => vec![0xE0, 0x02, reason, 0x00],
        };
        self.send(bytes).await?;
        let _ = self.socket.close(None).await;
        let drained = async { while let Some(Ok(_)) = self.socket.next().await {} };
        timeout(WAIT, drained)
            .await
            .map_err(|_| format!("the server did not close within {WAIT:?}"))?;
        Ok(())
    }

    /// Closes the WebSocket without DISCONNECT.
    pub async fn drop_connection(mut self) -> Result<(), Failed> {
        let _ = self.socket.close(None).await;
        Ok(())
    }

    /// Returns the next packet from the server, or `Incoming::Closed`.
    /// Fails if nothing arrives within [`WAIT`].
    pub async fn recv(&mut self) -> Result<Incoming, Failed> {
        self.recv_within(WAIT)
            .await?
            .ok_or_else(|| format!("nothing received within {WAIT:?}").into())
    }

    /// Like [`Wire::recv`], but returns `None` when nothing arrives within
    /// `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Incoming>, Failed> {
        if let Some(packet) = self.skipped.pop_front() {
            return Ok(Some(packet));
        }
        self.read_new(limit).await
    }

    /// Waits for the next packet that `wanted` accepts. Packets it skips
    /// stay queued, in order, for later calls.
    pub async fn expect(&mut self, wanted: impl Fn(&Incoming) -> bool) -> Result<Incoming, Failed> {
        if let Some(position) = self.skipped.iter().position(&wanted) {
            return Ok(self.skipped.remove(position).expect("position is in range"));
        }
        loop {
            let packet = self
                .read_new(WAIT)
                .await?
                .ok_or_else(|| format!("no expected packet within {WAIT:?}"))?;
            if wanted(&packet) {
                return Ok(packet);
            }
            if packet == Incoming::Closed {
                return Err(format!(
                    "connection closed before the expected packet; received {:?}",
                    self.skipped
                )
                .into());
            }
            self.skipped.push_back(packet);
        }
    }

    /// Reads the next packet from the socket and acknowledges it if
    /// `auto_ack` is set.
    async fn read_new(&mut self, limit: Duration) -> Result<Option<Incoming>, Failed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(packet) = self.pending.pop_front() {
                self.answer(&packet).await?;
                return Ok(Some(packet));
            }
            if self.closed {
                return Ok(Some(Incoming::Closed));
            }
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(frame) => frame,
            };
            match frame {
                None | Some(Err(_)) | Some(Ok(Frame::Close(_))) => self.closed = true,
                Some(Ok(Frame::Binary(data))) => {
                    self.buffer.extend_from_slice(&data);
                    self.decode_buffered()?;
                }
                Some(Ok(Frame::Text(text))) => return Err(format!("text frame {text:?}").into()),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Waits for the next PUBLISH, skipping acknowledgements.
    pub async fn expect_publish(&mut self) -> Result<Publish, Failed> {
        match self.expect(|p| matches!(p, Incoming::Publish(_))).await? {
            Incoming::Publish(publish) => Ok(publish),
            _ => unreachable!("filtered on PUBLISH"),
        }
    }

    /// Waits until the server closes the connection and returns the
    /// DISCONNECT it sent before, if any. Fails on a PUBLISH.
    pub async fn expect_closed_with(&mut self) -> Result<Option<Incoming>, Failed> {
        let mut disconnect = None;
        loop {
            match self.recv().await? {
                Incoming::Closed => return Ok(disconnect),
                packet @ Incoming::Disconnect { .. } => disconnect = Some(packet),
                Incoming::Publish(publish) => {
                    return Err(
                        format!("expected the connection to close, received {publish:?}").into(),
                    )
                }
                _ => {}
            }
        }
    }

    fn decode_buffered(&mut self) -> Result<(), Failed> {
        while let Some((packet, used)) = decode(&self.buffer, self.version)? {
            self.buffer.drain(..used);
            self.pending.push_back(packet);
        }
        Ok(())
    }

    async fn answer(&mut self, packet: &Incoming) -> Result<(), Failed> {
        if !self.auto_ack {
            return Ok(());
        }
        match packet {
            Incoming::Publish(Publish { qos: 1, pkid, .. }) => self.puback(*pkid).await,
            Incoming::Publish(Publish { qos: 2, pkid, .. }) => self.pubrec(*pkid).await,
            Incoming::PubRel { pkid, .. } => self.pubcomp(*pkid).await,
            Incoming::PubRec { pkid, reason } if *reason < 0x80 => self.pubrel(*pkid).await,
            _ => Ok(()),
        }
    }
}

/// Appends `value` with its two-byte length prefix.
fn put_string(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn put_variable(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return;
        }
    }
}

fn encode_properties(properties: &Properties) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, value) in &properties.0 {
        body.push(*id);
        match value {
            Value::Byte(byte) => body.push(*byte),
            Value::TwoByte(number) => body.extend_from_slice(&number.to_be_bytes()),
            Value::FourByte(number) => body.extend_from_slice(&number.to_be_bytes()),
            Value::VariableByte(number) => put_variable(&mut body, *number as usize),
            Value::String(text) => put_string(&mut body, text.as_bytes()),
            Value::Binary(data) => put_string(&mut body, data),
            Value::Pair(name, value) => {
                put_string(&mut body, name.as_bytes());
                put_string(&mut body, value.as_bytes());
            }
        }
    }
    let mut out = Vec::new();
    put_variable(&mut out, body.len());
    out.extend(body);
    out
}

/// Encodes a packet: the fixed header with its remaining length, then
/// `body`.
pub fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    put_variable(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

pub fn encode_connect(version: Version, connect: &Connect) -> Vec<u8> {
    let mut body = Vec::new();
    put_string(&mut body, b"MQTT");
    body.push(match version {
        Version::V311 => 4,
        Version::V5 => 5,
    });
    let mut flags = if connect.clean { 0x02 } else { 0x00 };
    if let Some(will) = &connect.will {
        flags |= 0x04 | (will.qos << 3) | if will.retain { 0x20 } else { 0 };
    }
    body.push(flags);
    body.extend_from_slice(&connect.keep_alive.to_be_bytes());
    if version == Version::V5 {
        body.extend(encode_properties(&connect.properties));
    }
    put_string(&mut body, connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if version == Version::V5 {
            body.extend(encode_properties(&will.properties));
        }
        put_string(&mut body, will.topic.as_bytes());
        put_string(&mut body, &will.payload);
    }
    packet(0x10, &body)
}

pub fn encode_publish(version: Version, publish: &Publish) -> Vec<u8> {
    let mut first = 0x30 | (publish.qos << 1);
    if publish.retain {
        first |= 0x01;
    }
    if publish.dup {
        first |= 0x08;
    }
    let mut body = Vec::new();
    put_string(&mut body, publish.topic.as_bytes());
    if publish.qos > 0 {
        body.extend_from_slice(&publish.pkid.to_be_bytes());
    }
    if version == Version::V5 {
        body.extend(encode_properties(&publish.properties));
    }
    body.extend_from_slice(&publish.payload);
    packet(first, &body)
}

/// PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) with
/// reason code 0, which both versions encode as the packet id alone.
pub fn encode_ack(_version: Version, first_byte: u8, pkid: u16) -> Vec<u8> {
    packet(first_byte, &pkid.to_be_bytes())
}

pub fn encode_subscribe(
    version: Version,
    pkid: u16,
    filters: &[(&str, u8)],
    properties: &Properties,
) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.extend(encode_properties(properties));
    }
    for (filter, options) in filters {
        put_string(&mut body, filter.as_bytes());
        body.push(*options);
    }
    packet(0x82, &body)
}

/// Encodes UNSUBSCRIBE for `filters`, without properties.
pub fn encode_unsubscribe(version: Version, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0);
    }
    for filter in filters {
        put_string(&mut body, filter.as_bytes());
    }
    packet(0xA2, &body)
}

/// Reads from a received packet, failing on truncation.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Failed> {
        let (&first, rest) = self.data.split_first().ok_or("packet truncated")?;
        self.data = rest;
        Ok(first)
    }

    fn bytes(&mut self, count: usize) -> Result<&[u8], Failed> {
        if self.data.len() < count {
            return Err("packet truncated".into());
        }
        let (head, rest) = self.data.split_at(count);
        self.data = rest;
        Ok(head)
    }

    fn two(&mut self) -> Result<u16, Failed> {
        Ok(u16::from_be_bytes(self.bytes(2)?.try_into()?))
    }

    fn four(&mut self) -> Result<u32, Failed> {
        Ok(u32::from_be_bytes(self.bytes(4)?.try_into()?))
    }

    fn variable(&mut self) -> Result<u32, Failed> {
        let mut value = 0u32;
        for shift in [0, 7, 14, 21] {
            let byte = self.byte()?;
            value |= u32::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("variable byte integer longer than 4 bytes".into())
    }

    fn binary(&mut self) -> Result<Vec<u8>, Failed> {
        let length = self.two()? as usize;
        Ok(self.bytes(length)?.to_vec())
    }

    fn string(&mut self) -> Result<String, Failed> {
        Ok(String::from_utf8(self.binary()?)?)
    }

    fn properties(&mut self) -> Result<Properties, Failed> {
        let length = self.variable()? as usize;
        let mut reader = Reader {
            data: self.bytes(length)?,
        };
        let mut properties = Properties::default();
        while !reader.data.is_empty() {
            let id = reader.byte()?;
            let value = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                    Value::Byte(reader.byte()?)
                }
                0x13 | 0x21 | 0x22 | 0x23 => Value::TwoByte(reader.two()?),
                0x02 | 0x11 | 0x18 | 0x27 => Value::FourByte(reader.four()?),
                0x0B => Value::VariableByte(reader.variable()?),
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Value::String(reader.string()?),
                0x09 | 0x16 => Value::Binary(reader.binary()?),
                0x26 => Value::Pair(reader.string()?, reader.string()?),
                _ => return Err(format!("unknown property identifier {id:#04x}").into()),
            };
            properties.0.push((id, value));
        }
        Ok(properties)
    }
}

/// Decodes one packet from the start of `data`, returning it and the bytes
/// it used, or `None` if the packet is not complete yet.
fn decode(data: &[u8], version: Version) -> Result<Option<(Incoming, usize)>, Failed> {
    let Some(&first) = data.first() else {
        return Ok(None);
    };
    let mut length = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = data.get(header) else {
            return Ok(None);
        };
        length |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Err("remaining length longer than 4 bytes".into());
        }
    }
    if data.len() < header + length {
        return Ok(None);
    }
    let body = &data[header..header + length];
    let packet = decode_body(first, body, version).map_err(|error| {
        format!(
            "cannot decode {:02x?}: {}",
            &data[..header + length],
            error.message().unwrap_or("")
        )
    })?;
    Ok(Some((packet, header + length)))
}

fn decode_body(first: u8, body: &[u8], version: Version) -> Result<Incoming, Failed> {
    let v5 = version == Version::V5;
    let mut reader = Reader { data: body };
    let packet = match first >> 4 {
        2 => {
            let session_present = reader.byte()? & 0x01 == 1;
            let code = reader.byte()?;
            let properties = if v5 && !reader.data.is_empty() {
                reader.properties()?
            } else {
                Properties::default()
            };
            Incoming::ConnAck {
                session_present,
                code,
                properties,
            }
        }
        3 => {
            let qos = (first >> 1) & 0x03;
            let topic = reader.string()?;
            let pkid = if qos > 0 { reader.two()? } else { 0 };
            let properties = if v5 {
                reader.properties()?
            } else {
                Properties::default()
            };
            Incoming::Publish(Publish {
                topic,
                payload: reader.data.to_vec(),
                qos,
                retain: first & 0x01 == 1,
                dup: first & 0x08 != 0,
                pkid,
                properties,
            })
        }
        kind @ 4..=7 => {
            let pkid = reader.two()?;
            let reason = if reader.data.is_empty() {
                0
            } else {
                reader.byte()?
            };
            match kind {
                4 => Incoming::PubAck { pkid, reason },
                5 => Incoming::PubRec { pkid, reason },
                6 => Incoming::PubRel { pkid, reason },
                _ => Incoming::PubComp { pkid, reason },
            }
        }
        kind @ (9 | 11) => {
            let pkid = reader.two()?;
            if v5 {
                reader.properties()?;
            }
            let codes = reader.data.to_vec();
            if kind == 9 {
                Incoming::SubAck { pkid, codes }
            } else {
                Incoming::UnsubAck { pkid, codes }
            }
        }
        13 => Incoming::PingResp,
        14 => {
            let reason = if reader.data.is_empty() {
                0
            } else {
                reader.byte()?
            };
            let properties = if reader.data.is_empty() {
                Properties::default()
            } else {
                reader.properties()?
            };
            Incoming::Disconnect { reason, properties }
        }
        other => return Err(format!("unexpected packet type {other} from a server").into()),
    };
    Ok(packet)
}
