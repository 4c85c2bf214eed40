//! One client connection: MQTT 3.1.1 over WebSocket, or the relay's raw
//! binary frames.

use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use codec::{
    ConnAck, Connect, Packet, Properties, ProtocolVersion, PubAck, PubComp, PubRec, PubRel,
    Publish, QoS, Subscribe, SubscribeFilter,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Largest MQTT packet the load generator accepts.
const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;

/// How long a connection may take from TCP connect to CONNACK.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The MQTT protocol version every client speaks.
pub const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The wire a system under test speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// MQTT 3.1.1 packets in binary WebSocket frames.
    Mqtt,
    /// The relay baseline: each binary frame is one message payload.
    Relay,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `ws://127.0.0.1:PORT/PATH`; the relay adds `?send=` or `?recv=`.
    pub url: String,
    /// The wire protocol of `url`.
    pub wire: Wire,
}

/// The role of a relay connection, which picks its query parameter.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Sender,
    Receiver,
}

/// The write half of a connection.
pub struct Writer {
    sink: SplitSink<Socket, Message>,
    wire: Wire,
    buf: BytesMut,
}

/// The read half of a connection, with its partial-packet buffer.
pub struct Reader {
    stream: SplitStream<Socket>,
    wire: Wire,
    buf: BytesMut,
}

/// What a reader returns: an MQTT packet or a relay payload.
// Each value is moved once and dropped; boxing the packet would add an
// allocation per received message.
#[allow(clippy::large_enum_variant)]
pub enum Incoming {
    Packet(Packet),
    Payload(Bytes),
}

/// Opens a WebSocket to `target`, and for MQTT sends CONNECT and waits for
/// CONNACK. Returns both halves and the time the whole set-up took.
pub async fn open(
    target: &Target,
    client_id: &str,
    group: u32,
    role: Role,
) -> Result<(Writer, Reader, Duration), String> {
    let started = Instant::now();
    let url = match target.wire {
        Wire::Mqtt => target.url.clone(),
        Wire::Relay => {
            let parameter = match role {
                Role::Sender => "send",
                Role::Receiver => "recv",
            };
            format!("{}?{parameter}={group}", target.url)
        }
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|error| format!("invalid URL {url}: {error}"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
    let (socket, _) = tokio::time::timeout(SETUP_TIMEOUT, connecting)
        .await
        .map_err(|_| format!("WebSocket handshake with {url} timed out"))?
        .map_err(|error| format!("WebSocket handshake with {url} failed: {error}"))?;
    let (sink, stream) = socket.split();
    let mut writer = Writer {
        sink,
        wire: target.wire,
        buf: BytesMut::new(),
    };
    let mut reader = Reader {
        stream,
        wire: target.wire,
        buf: BytesMut::new(),
    };
    if target.wire == Wire::Mqtt {
        writer.send(&connect_packet(client_id)).await?;
        let connack = tokio::time::timeout(SETUP_TIMEOUT, reader.next_packet())
            .await
            .map_err(|_| format!("{client_id}: no CONNACK within {SETUP_TIMEOUT:?}"))??;
        match connack {
            Some(Packet::ConnAck(ConnAck { reason, .. })) if !reason.is_error() => {}
            other => {
                return Err(format!(
                    "{client_id}: expected a successful CONNACK, got {other:?}"
                ))
            }
        }
    }
    Ok((writer, reader, started.elapsed()))
}

/// A clean-session CONNECT without keep alive, so idle connections cost
/// no PINGREQ.
fn connect_packet(client_id: &str) -> Packet {
    Packet::Connect(Connect {
        protocol: VERSION,
        clean_start: true,
        keep_alive: 0,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    })
}

/// A PUBLISH of `payload` to `topic`.
pub fn publish_packet(
    topic: &str,
    qos: QoS,
    retain: bool,
    pkid: Option<NonZeroU16>,
    payload: Bytes,
) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        pkid,
        payload,
        properties: Properties::default(),
    })
}

/// A SUBSCRIBE to one filter.
pub fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid: NonZeroU16::MIN,
        filters: vec![SubscribeFilter::new(filter, qos)],
        properties: Properties::default(),
    })
}

/// The acknowledgement a receiver owes for `packet`, if any: PUBACK or
/// PUBREC for a PUBLISH, PUBCOMP for a PUBREL, PUBREL for a PUBREC.
pub fn reply_to(packet: &Packet) -> Option<Packet> {
    match packet {
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            pkid: Some(id),
            ..
        }) => Some(Packet::PubAck(PubAck::new(*id))),
        Packet::Publish(Publish {
            qos: QoS::ExactlyOnce,
            pkid: Some(id),
            ..
        }) => Some(Packet::PubRec(PubRec::new(*id))),
        Packet::PubRel(rel) => Some(Packet::PubComp(PubComp::new(rel.pkid))),
        Packet::PubRec(rec) => Some(Packet::PubRel(PubRel::new(rec.pkid))),
        _ => None,
    }
}

impl Writer {
    /// Sends one packet and flushes it.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        self.feed(packet).await?;
        self.flush().await
    }

    /// Queues one packet without flushing.
    pub async fn feed(&mut self, packet: &Packet) -> Result<(), String> {
        codec::encode(packet, VERSION, &mut self.buf);
        let frame = self.buf.split().freeze();
        self.sink
            .feed(Message::Binary(frame))
            .await
            .map_err(|error| format!("send failed: {error}"))
    }

    /// Queues one message: a PUBLISH for MQTT, the bare payload for the relay.
    pub async fn feed_message(
        &mut self,
        topic: &str,
        qos: QoS,
        pkid: Option<NonZeroU16>,
        payload: Bytes,
    ) -> Result<(), String> {
        match self.wire {
            Wire::Mqtt => {
                self.feed(&publish_packet(topic, qos, false, pkid, payload))
                    .await
            }
            Wire::Relay => self
                .sink
                .feed(Message::Binary(payload))
                .await
                .map_err(|error| format!("send failed: {error}")),
        }
    }

    /// Writes every queued frame to the socket.
    pub async fn flush(&mut self) -> Result<(), String> {
        self.sink
            .flush()
            .await
            .map_err(|error| format!("send failed: {error}"))
    }

    /// Sends a WebSocket close frame.
    pub async fn close(&mut self) {
        let _ = self.sink.close().await;
    }
}

impl Reader {
    /// Returns the next packet or payload, or `None` when the socket closed.
    pub async fn next(&mut self) -> Result<Option<Incoming>, String> {
        match self.wire {
            Wire::Mqtt => Ok(self.next_packet().await?.map(Incoming::Packet)),
            Wire::Relay => loop {
                match self.stream.next().await {
                    Some(Ok(Message::Binary(data))) => return Ok(Some(Incoming::Payload(data))),
                    Some(Ok(Message::Close(_))) | None => return Ok(None),
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Err(format!("receive failed: {error}")),
                }
            },
        }
    }

    /// Returns the next MQTT packet, reading frames until one is whole.
    pub async fn next_packet(&mut self) -> Result<Option<Packet>, String> {
        loop {
            match codec::decode(&mut self.buf, Some(VERSION), MAX_PACKET_SIZE) {
                Ok(Some(packet)) => return Ok(Some(packet)),
                Ok(None) => {}
                Err(error) => return Err(format!("invalid packet from the server: {error:?}")),
            }
            match self.stream.next().await {
                Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(format!("receive failed: {error}")),
            }
        }
    }
}
