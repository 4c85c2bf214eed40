//! Hand-made packets over a plain WebSocket, for what a well-behaved client
//! library never sends: coalesced and split packets, bad CONNECTs, silence.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use interop_tests::Wrangler;
use libtest_mimic::Failed;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::mqtt::{run, WAIT};

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("http_status_for_plain_get_and_unknown_paths", http_statuses),
    ("websocket_answers_mqtt_subprotocol", subprotocol_answered),
    (
        "websocket_rejects_unknown_subprotocol",
        unknown_subprotocol_rejected,
    ),
    (
        "raw_several_packets_in_one_message",
        several_packets_in_one_message,
    ),
    ("raw_packet_split_over_messages", packet_split_over_messages),
    (
        "raw_connack_unacceptable_protocol_level",
        connack_unacceptable_protocol_level,
    ),
    (
        "raw_connack_identifier_rejected",
        connack_identifier_rejected,
    ),
    (
        "raw_empty_client_id_with_clean_session",
        empty_client_id_with_clean_session,
    ),
    ("raw_second_connect_closes", second_connect_closes),
    ("raw_keepalive_expiry_closes", keepalive_expiry_closes),
    ("raw_text_frame_closes", text_frame_closes),
    (
        "raw_first_packet_not_connect_closes",
        first_packet_not_connect_closes,
    ),
];

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNACK_ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
const PINGREQ: [u8; 2] = [0xC0, 0x00];
const PINGRESP: [u8; 2] = [0xD0, 0x00];

/// Opens a WebSocket offering the `mqtt` subprotocol.
async fn open(server: &Wrangler, path: &str) -> Result<Socket, Failed> {
    let mut request = server.ws_url(path).into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// A string with its two-byte length prefix.
fn string(value: &str) -> Vec<u8> {
    let mut out = (value.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(value.as_bytes());
    out
}

/// A fixed header with a one- or two-byte remaining length, then `body`.
fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mut length = body.len();
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// CONNECT with protocol name `MQTT`, the given level and no will,
/// username or password.
fn connect(level: u8, client_id: &str, clean_session: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = string("MQTT");
    body.push(level);
    body.push(if clean_session { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend(string(client_id));
    packet(0x10, &body)
}

fn subscribe(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(string(filter));
    body.push(qos);
    packet(0x82, &body)
}

fn publish_qos0(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

/// Reads binary messages until `expected.len()` bytes arrived, and returns
/// them. The broker may send several packets in one message or in several.
async fn read_bytes(socket: &mut Socket, count: usize) -> Result<Vec<u8>, Failed> {
    let mut received = Vec::new();
    while received.len() < count {
        match timeout(WAIT, socket.next()).await {
            Err(_) => {
                return Err(format!("received {received:02x?}, then nothing for {WAIT:?}").into())
            }
            Ok(None) => return Err(format!("socket ended after {received:02x?}").into()),
            Ok(Some(message)) => match message? {
                Message::Binary(data) => received.extend_from_slice(&data),
                Message::Close(_) => {
                    return Err(format!("socket closed after {received:02x?}").into())
                }
                Message::Text(text) => return Err(format!("unexpected text frame {text:?}").into()),
                _ => {}
            },
        }
    }
    Ok(received)
}

/// Waits until the server closes the socket; fails on any MQTT data.
async fn expect_closed(socket: &mut Socket) -> Result<(), Failed> {
    loop {
        match timeout(WAIT, socket.next()).await {
            Err(_) => return Err(format!("socket still open after {WAIT:?}").into()),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) => return Ok(()),
            Ok(Some(Ok(Message::Binary(data)))) => {
                return Err(format!("expected the socket to close, received {data:02x?}").into())
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn http_statuses(server: &Wrangler) -> Result<(), Failed> {
    assert_eq!(server.http_get_status("/mqtt")?, 426, "plain GET on /mqtt");
    assert_eq!(
        server.http_get_status("/mqtt/site-1")?,
        426,
        "plain GET on a named namespace"
    );
    assert_eq!(
        server.http_get_status("/nothing-here")?,
        404,
        "unknown path"
    );
    assert_eq!(
        server.http_get_status("/mqtt/bad.name")?,
        400,
        "invalid namespace name"
    );
    Ok(())
}

fn subprotocol_answered(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut request = server.ws_url("/mqtt").into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
        let (_, response) = tokio_tungstenite::connect_async(request).await?;
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap_or(""));
        assert_eq!(chosen, Some("mqtt"));

        let mut request = server.ws_url("/mqtt").into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqttv3.1".parse()?);
        let (_, response) = tokio_tungstenite::connect_async(request).await?;
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap_or(""));
        assert_eq!(chosen, Some("mqttv3.1"));
        Ok(())
    })
}

fn unknown_subprotocol_rejected(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut request = server.ws_url("/mqtt").into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "chat".parse()?);
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 400);
                Ok(())
            }
            Err(other) => Err(format!("expected HTTP 400, got {other}").into()),
            Ok(_) => Err("the upgrade succeeded without the mqtt subprotocol".into()),
        }
    })
}

fn several_packets_in_one_message(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        let mut message = connect(4, "raw-coalesced", true, 60);
        message.extend(subscribe(7, "raw/coalesced", 0));
        message.extend(PINGREQ);
        socket.send(Message::binary(message)).await?;

        let mut expected = CONNACK_ACCEPTED.to_vec();
        expected.extend([0x90, 0x03, 0x00, 0x07, 0x00]);
        expected.extend(PINGRESP);
        assert_eq!(read_bytes(&mut socket, expected.len()).await?, expected);
        Ok(())
    })
}

fn packet_split_over_messages(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        let connect = connect(4, "raw-split", true, 60);
        let (head, tail) = connect.split_at(5);
        socket.send(Message::binary(head.to_vec())).await?;
        socket.send(Message::binary(tail.to_vec())).await?;
        assert_eq!(read_bytes(&mut socket, 4).await?, CONNACK_ACCEPTED);

        let mut stream = subscribe(9, "raw/split", 0);
        let publish = publish_qos0("raw/split", b"one byte at a time");
        stream.extend(&publish);
        for byte in stream {
            socket.send(Message::binary(vec![byte])).await?;
        }
        let mut expected = vec![0x90, 0x03, 0x00, 0x09, 0x00];
        expected.extend(&publish);
        assert_eq!(read_bytes(&mut socket, expected.len()).await?, expected);
        Ok(())
    })
}

fn connack_unacceptable_protocol_level(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        socket
            .send(Message::binary(connect(6, "raw-level", true, 60)))
            .await?;
        assert_eq!(read_bytes(&mut socket, 4).await?, [0x20, 0x02, 0x00, 0x01]);
        expect_closed(&mut socket).await
    })
}

fn connack_identifier_rejected(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        socket
            .send(Message::binary(connect(4, "", false, 60)))
            .await?;
        assert_eq!(read_bytes(&mut socket, 4).await?, [0x20, 0x02, 0x00, 0x02]);
        expect_closed(&mut socket).await
    })
}

fn empty_client_id_with_clean_session(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        socket
            .send(Message::binary(connect(4, "", true, 60)))
            .await?;
        assert_eq!(read_bytes(&mut socket, 4).await?, CONNACK_ACCEPTED);
        Ok(())
    })
}

fn second_connect_closes(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        socket
            .send(Message::binary(connect(4, "raw-twice", true, 60)))
            .await?;
        assert_eq!(read_bytes(&mut socket, 4).await?, CONNACK_ACCEPTED);
        socket
            .send(Message::binary(connect(4, "raw-twice", true, 60)))
            .await?;
        expect_closed(&mut socket).await
    })
}

fn keepalive_expiry_closes(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        socket
            .send(Message::binary(connect(4, "raw-keepalive", true, 1)))
            .await?;
        assert_eq!(read_bytes(&mut socket, 4).await?, CONNACK_ACCEPTED);
        let connected = Instant::now();
        expect_closed(&mut socket).await?;
        // The broker allows one and a half keepalive periods of silence.
        let silent = connected.elapsed();
        assert!(
            silent >= Duration::from_millis(1400),
            "closed after only {silent:?}"
        );
        Ok(())
    })
}

fn text_frame_closes(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        socket
            .send(Message::binary(connect(4, "raw-text", true, 60)))
            .await?;
        assert_eq!(read_bytes(&mut socket, 4).await?, CONNACK_ACCEPTED);
        socket.send(Message::text("PINGREQ")).await?;
        expect_closed(&mut socket).await
    })
}

fn first_packet_not_connect_closes(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut socket = open(server, "/mqtt").await?;
        socket.send(Message::binary(PINGREQ.to_vec())).await?;
        expect_closed(&mut socket).await
    })
}
