//! Reason Strings on the broker's error acknowledgements, read byte by byte
//! from the WebSocket because the `wire` client does not decode the
//! properties of PUBACK.

use futures_util::{SinkExt, StreamExt};
use interop_tests::Wrangler;
use libtest_mimic::Failed;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::mqtt::{run, WAIT};
use crate::wire::{encode_connect, encode_publish, Connect, Publish, Value, Version};

pub const TESTS: &[(&str, crate::TestFn)] = &[(
    "reason_string_on_puback_follows_request_problem_information",
    puback_reason_string,
)];

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const REASON_STRING: u8 = 0x1F;
const NOT_AUTHORIZED: u8 = 0x87;

/// A 5.0 client publishes at QoS 1 to `$SYS/x`, which no client may do. The
/// PUBACK 0x87 carries a Reason String by default, and none when the
/// client's CONNECT set Request Problem Information to 0 (MQTT-3.1.2-29).
fn puback_reason_string(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let default = sys_puback(server, "reason-string-default", None).await?;
        assert_eq!(
            default.as_deref(),
            Some("PUBLISH to $SYS topics is not allowed"),
            "PUBACK with Request Problem Information absent"
        );
        let quiet = sys_puback(server, "reason-string-quiet", Some(0)).await?;
        assert_eq!(quiet, None, "PUBACK with Request Problem Information 0");
        Ok(())
    })
}

/// Connects with the given Request Problem Information, publishes to
/// `$SYS/x` at QoS 1 and returns the Reason String of the PUBACK 0x87.
async fn sys_puback(
    server: &Wrangler,
    client_id: &str,
    problem_information: Option<u8>,
) -> Result<Option<String>, Failed> {
    let mut request = server.ws_url("/mqtt").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;

    let mut connect = Connect::new(client_id);
    if let Some(value) = problem_information {
        connect = connect.property(REQUEST_PROBLEM_INFORMATION, Value::Byte(value));
    }
    let mut message = encode_connect(Version::V5, &connect);
    message.extend(encode_publish(
        Version::V5,
        &Publish::new("$SYS/x", b"x", 1, 1),
    ));
    socket.send(Message::binary(message)).await?;

    let mut buffer = Vec::new();
    let (connack, _) = read_packet(&mut socket, &mut buffer).await?;
    assert_eq!(connack >> 4, 2, "first packet is not CONNACK");
    let (puback, body) = read_packet(&mut socket, &mut buffer).await?;
    assert_eq!(puback, 0x40, "second packet is not PUBACK: {body:02x?}");
    assert_eq!(&body[..2], &[0, 1], "PUBACK packet identifier");
    assert_eq!(body.get(2), Some(&NOT_AUTHORIZED), "PUBACK reason code");
    let reason_string = reason_string(&body[3..])?;
    socket.close(None).await.ok();
    Ok(reason_string)
}

/// Reads until `buffer` contains a whole packet, removes it and returns its
/// first byte and body.
async fn read_packet(socket: &mut Socket, buffer: &mut Vec<u8>) -> Result<(u8, Vec<u8>), Failed> {
    loop {
        if let Some((header, length)) = fixed_header(buffer)? {
            if buffer.len() >= header + length {
                let first = buffer[0];
                let body = buffer[header..header + length].to_vec();
                buffer.drain(..header + length);
                return Ok((first, body));
            }
        }
        match timeout(WAIT, socket.next()).await {
            Err(_) => return Err(format!("received {buffer:02x?}, then nothing").into()),
            Ok(Some(Ok(Message::Binary(data)))) => buffer.extend_from_slice(&data),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => return Err(format!("expected binary data, received {other:?}").into()),
        }
    }
}

/// Returns the length of the fixed header and the remaining length, or
/// `None` while the header is incomplete.
fn fixed_header(data: &[u8]) -> Result<Option<(usize, usize)>, Failed> {
    let mut length = 0usize;
    for (index, &byte) in data.iter().enumerate().skip(1).take(4) {
        length |= usize::from(byte & 0x7F) << (7 * (index - 1));
        if byte & 0x80 == 0 {
            return Ok(Some((index + 1, length)));
        }
    }
    match data.len() > 4 {
        true => Err("remaining length longer than 4 bytes".into()),
        false => Ok(None),
    }
}

/// Returns the Reason String among PUBACK properties (a variable byte
/// length, then the properties). Fails on any other property, since the
/// broker sends none on an error PUBACK.
fn reason_string(data: &[u8]) -> Result<Option<String>, Failed> {
    let Some(&length) = data.first() else {
        return Ok(None);
    };
    if length & 0x80 != 0 {
        return Err("PUBACK properties longer than 127 bytes".into());
    }
    let properties = data
        .get(1..1 + usize::from(length))
        .ok_or("PUBACK properties cut short")?;
    match properties {
        [] => Ok(None),
        [REASON_STRING, high, low, text @ ..]
            if text.len() == usize::from(u16::from_be_bytes([*high, *low])) =>
        {
            Ok(Some(String::from_utf8(text.to_vec())?))
        }
        other => Err(format!("unexpected PUBACK properties {other:02x?}").into()),
    }
}
