//! The HTTP API against the Worker under `wrangler dev`: HTTP publish to
//! MQTT subscribers, error statuses, Idempotency-Key, retained reads,
//! presence events, `$SYS/broker/` counters, SSE and long polling.
//!
//! The client below speaks just enough HTTP/1.1 for these tests: one
//! request per connection, bodies with Content-Length or chunked.

use std::time::Duration;

use interop_tests::{Wrangler, TEST_ADMIN_TOKEN, TEST_HMAC_SECRET};
use libtest_mimic::Failed;
use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::mqtt::{run, Client, WAIT};
use crate::wire::{Connect, Incoming, Properties, Version, Wire};

pub const TESTS: &[(&str, crate::TestFn)] = &[
    (
        "http_publish_reaches_mqtt_subscribers",
        publish_reaches_mqtt_subscribers,
    ),
    (
        "http_retained_publish_and_reads",
        retained_publish_and_reads,
    ),
    ("http_publish_error_statuses", publish_error_statuses),
    ("http_rate_limit_answers_429", rate_limit_answers_429),
    (
        "http_idempotency_key_publishes_once",
        idempotency_key_publishes_once,
    ),
    (
        "http_presence_events_for_sys_subscriber",
        presence_events_for_sys_subscriber,
    ),
    ("http_admin_metrics_behind_gate", admin_metrics_behind_gate),
    (
        "http_sse_retained_live_and_resume",
        sse_retained_live_and_resume,
    ),
    (
        "http_sse_streams_presence_events",
        sse_streams_presence_events,
    ),
    (
        "http_long_poll_waits_for_message",
        long_poll_waits_for_message,
    ),
];

/// Tests that start their own server: one with `$SYS/broker/` status on,
/// one with anonymous access off and an admin bearer secret.
pub const OWN_SERVER_TESTS: &[(&str, crate::OwnServerTestFn)] = &[
    ("http_sys_status_counts_traffic", sys_status_counts_traffic),
    ("http_api_token_and_admin_auth", token_and_admin_auth),
    (
        "http_sse_stream_ends_after_maximum",
        sse_stream_ends_after_maximum,
    ),
    (
        "http_admin_lists_and_disconnects_clients",
        admin_lists_and_disconnects,
    ),
];

/// The admin API lists a client while it is connected, shows its
/// subscriptions, disconnects it with 0x98, and stops listing its ended
/// clean session.
fn admin_lists_and_disconnects() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start_authenticated(persist.path(), &[]);
    let port = server.port();
    run(async move {
        let admin = format!("Bearer {TEST_ADMIN_TOKEN}");
        let headers = [("Authorization", admin.as_str())];
        let clients = "/admin/clients?namespace=default";

        let token = client_token("admin-listed", "admin/#")?;
        let address = server.address(&format!("/mqtt?token={token}"));
        let connect = Connect::new("admin-listed");
        let mut client = Wire::connected(&address, Version::V5, &connect).await?;
        client
            .subscribe(1, &[("admin/x", 1)], &Properties::default())
            .await?;

        let listing = request(port, "GET", clients, &headers, b"").await?;
        assert_eq!(listing.status, 200, "{}", listing.text());
        assert!(
            listing.text().contains(r#""client_id":"admin-listed""#),
            "connected client not listed: {}",
            listing.text()
        );

        let one = "/admin/clients/admin-listed?namespace=default";
        let detail = request(port, "GET", one, &headers, b"").await?;
        assert_eq!(detail.status, 200, "{}", detail.text());
        assert!(detail.text().contains("admin/x"), "{}", detail.text());

        let kick = "/admin/clients/admin-listed/disconnect?namespace=default";
        let kicked = request(port, "POST", kick, &headers, b"").await?;
        assert_eq!(kicked.status, 200, "{}", kicked.text());
        match client.expect_closed_with().await? {
            Some(Incoming::Disconnect { reason, .. }) => assert_eq!(reason, 0x98),
            other => return Err(format!("expected DISCONNECT 0x98, got {other:?}").into()),
        }

        let listing = request(port, "GET", clients, &headers, b"").await?;
        assert!(
            !listing.text().contains("admin-listed"),
            "ended clean session still listed: {}",
            listing.text()
        );
        Ok(())
    })
}

/// A token for `client_id` in the default namespace that may publish and
/// subscribe under `filter`.
pub(crate) fn client_token(client_id: &str, filter: &str) -> Result<String, Failed> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let claims = serde_json::json!({
        "sub": client_id,
        "exp": now.as_secs() + 600,
        "mqtt_namespace": "default",
        "mqtt_acl": {"publish": [filter], "subscribe": [filter]},
    });
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_HMAC_SECRET.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// The broker ends an SSE stream after `sse_max_stream_secs`, so that a
/// stream whose client left unnoticed cannot keep the object in memory.
fn sse_stream_ends_after_maximum() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start_with_http(
        persist.path(),
        &[("sse_heartbeat_secs", "1"), ("sse_max_stream_secs", "2")],
    );
    run(async {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port())).await?;
        let request = "GET /sse?filter=ends/%23 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        stream.write_all(request.as_bytes()).await?;
        let opened = Instant::now();

        // The chunked response ends with a zero-length chunk; some proxies
        // close the connection instead.
        let mut received = Vec::new();
        let mut chunk = [0u8; 1024];
        let ended = timeout(Duration::from_secs(20), async {
            loop {
                let read = stream.read(&mut chunk).await?;
                received.extend_from_slice(&chunk[..read]);
                if read == 0 || received.ends_with(b"\r\n0\r\n\r\n") {
                    return Ok::<_, std::io::Error>(());
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(
            ended.is_ok(),
            "the SSE stream was still open after 20 s:\n{text}"
        );
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains(": heartbeat"),
            "no heartbeat before the end:\n{text}"
        );
        let lasted = opened.elapsed();
        assert!(
            lasted >= Duration::from_secs(2),
            "ended after only {lasted:?}"
        );
        Ok(())
    })
}

/// A received HTTP response.
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Returns the first string value of `"field":"..."` in compact JSON, as the
/// Worker writes it (serde_json, no spaces). Escapes are left as they are,
/// which is enough for the ids and topics these tests use.
pub(crate) fn json_string(json: &str, field: &str) -> Option<String> {
    let start = json.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let end = json[start..].find('"')? + start;
    Some(json[start..end].to_string())
}

/// Asserts that compact JSON contains `"field":value`.
pub(crate) fn assert_json_field(json: &str, field: &str, value: &str) {
    let expected = format!("\"{field}\":{value}");
    assert!(json.contains(&expected), "expected {expected} in {json}");
}

/// Sends one request and reads the whole response.
pub(crate) async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, Failed> {
    let mut stream = connect_and_send(port, method, path, headers, body).await?;
    let (status, headers, mut rest) = read_head(&mut stream).await?;
    let length = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let chunked = headers.iter().any(|(key, value)| {
        key.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    let body = timeout(WAIT, async {
        if chunked {
            let mut body = Vec::new();
            while !decode_chunks(&rest, &mut body) {
                read_more(&mut stream, &mut rest).await?;
            }
            return Ok::<_, Failed>(body);
        }
        let length = length.unwrap_or(0);
        while rest.len() < length {
            read_more(&mut stream, &mut rest).await?;
        }
        rest.truncate(length);
        Ok(rest)
    })
    .await
    .map_err(|_| format!("{method} {path}: body incomplete within {WAIT:?}"))??;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

async fn connect_and_send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<TcpStream, Failed> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    Ok(stream)
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), Failed> {
    let mut chunk = [0u8; 8192];
    let read = stream.read(&mut chunk).await?;
    if read == 0 {
        return Err("connection closed before the response was complete".into());
    }
    buffer.extend_from_slice(&chunk[..read]);
    Ok(())
}

/// Reads the status line and headers; returns them and the bytes after.
async fn read_head(
    stream: &mut TcpStream,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), Failed> {
    let mut buffer = Vec::new();
    let end = timeout(WAIT, async {
        loop {
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                return Ok::<_, Failed>(end);
            }
            read_more(stream, &mut buffer).await?;
        }
    })
    .await
    .map_err(|_| format!("no response head within {WAIT:?}"))??;
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok((status, headers, buffer[end + 4..].to_vec()))
}

/// Decodes the whole chunks in `raw` into `body`. Returns true once the
/// last (empty) chunk has arrived.
fn decode_chunks(raw: &[u8], body: &mut Vec<u8>) -> bool {
    body.clear();
    let mut at = 0;
    loop {
        let Some(line_end) = raw[at..].windows(2).position(|pair| pair == b"\r\n") else {
            return false;
        };
        let size_text = String::from_utf8_lossy(&raw[at..at + line_end]).into_owned();
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return false;
        };
        let start = at + line_end + 2;
        if size == 0 {
            return true;
        }
        if raw.len() < start + size + 2 {
            return false;
        }
        body.extend_from_slice(&raw[start..start + size]);
        at = start + size + 2;
    }
}

pub(crate) async fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, Failed> {
    request(port, "POST", path, headers, body).await
}

pub(crate) async fn get(port: u16, path: &str) -> Result<HttpResponse, Failed> {
    request(port, "GET", path, &[], b"").await
}

/// An open SSE stream and the text received so far.
pub(crate) struct SseStream {
    stream: TcpStream,
    raw: Vec<u8>,
    consumed: usize,
}

impl SseStream {
    pub(crate) async fn open(
        port: u16,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, Failed> {
        let mut headers = vec![("Accept", "text/event-stream")];
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        let mut stream = connect_and_send(port, "GET", path, &headers, b"").await?;
        let (status, headers, raw) = read_head(&mut stream).await?;
        assert_eq!(status, 200, "SSE status");
        let content_type = headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.clone());
        assert_eq!(content_type.as_deref(), Some("text/event-stream"));
        Ok(SseStream {
            stream,
            raw,
            consumed: 0,
        })
    }

    /// Waits for the next `message` event; returns its id and JSON data.
    pub(crate) async fn next_message(&mut self) -> Result<(Option<String>, String), Failed> {
        loop {
            let (kind, id, data) = self.next_event().await?;
            if kind == "message" {
                return Ok((id, data));
            }
        }
    }

    /// Waits for the next event of any type (`message`, `gap`); returns
    /// its type, id and data.
    pub(crate) async fn next_event(&mut self) -> Result<(String, Option<String>, String), Failed> {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut body = Vec::new();
            decode_chunks(&self.raw, &mut body);
            let text = String::from_utf8_lossy(&body).into_owned();
            let events: Vec<&str> = text.split("\n\n").collect();
            // The last piece may be an event still arriving.
            let complete = events.len().saturating_sub(1);
            for (index, event) in events.iter().enumerate().take(complete).skip(self.consumed) {
                self.consumed = index + 1;
                let Some(kind) = event.lines().find_map(|line| line.strip_prefix("event: ")) else {
                    continue;
                };
                let id = event
                    .lines()
                    .find_map(|line| line.strip_prefix("id: "))
                    .map(str::to_string);
                let data = event
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .ok_or("SSE event without data")?;
                return Ok((kind.to_string(), id, data.to_string()));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match timeout(remaining, read_more(&mut self.stream, &mut self.raw)).await {
                Ok(result) => result?,
                Err(_) => return Err(format!("no SSE event within {WAIT:?}").into()),
            }
        }
    }
}

fn publish_reaches_mqtt_subscribers(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        let mut subscriber = Client::connect(server, "/mqtt", "http-sub").await?;
        subscriber.subscribe("httppub/#", QoS::AtLeastOnce).await?;

        let response = post(port, "/publish/httppub/zero", &[], b"zero").await?;
        assert_eq!(response.status, 200, "{}", response.text());
        let message = subscriber.expect_publish().await?;
        assert_eq!(message.topic, "httppub/zero");
        assert_eq!(&message.payload[..], b"zero");
        assert_eq!(message.qos, QoS::AtMostOnce);
        assert!(!message.retain);

        let response = post(port, "/publish/httppub/one?qos=1", &[], b"one").await?;
        assert_eq!(response.status, 200, "{}", response.text());
        let message = subscriber.expect_publish().await?;
        assert_eq!(message.topic, "httppub/one");
        assert_eq!(message.qos, QoS::AtLeastOnce);

        // A percent-encoded slash is a level separator like a plain one.
        let response = post(port, "/publish/httppub%2Fencoded?qos=1", &[], b"enc").await?;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(subscriber.expect_publish().await?.topic, "httppub/encoded");

        // A batch: every message arrives, in order.
        let batch = br#"[{"topic":"httppub/b1","payload":"1","qos":1},{"topic":"httppub/b2","payload_base64":"AAE="}]"#;
        let response = post(
            port,
            "/publish",
            &[("Content-Type", "application/json")],
            batch,
        )
        .await?;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_json_field(&response.text(), "messages", "2");
        assert_eq!(subscriber.expect_publish().await?.topic, "httppub/b1");
        let binary = subscriber.expect_publish().await?;
        assert_eq!(binary.topic, "httppub/b2");
        assert_eq!(&binary.payload[..], &[0, 1]);
        Ok(())
    })
}

fn retained_publish_and_reads(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        let headers = [
            ("Content-Type", "text/plain"),
            ("MQTT-User-Property", "site=north"),
            ("MQTT-Correlation-Data", "AAE="),
        ];
        for topic in ["a", "b", "c"] {
            let path = format!("/publish/httpret/{topic}?qos=1&retain=true&namespace=http-ret");
            let response = post(port, &path, &headers, topic.as_bytes()).await?;
            assert_eq!(response.status, 200, "{}", response.text());
        }

        // A retained message published over HTTP reaches a later MQTT
        // subscriber with RETAIN set.
        let mut late = Client::connect(server, "/mqtt/http-ret", "http-ret-late").await?;
        late.subscribe("httpret/a", QoS::AtLeastOnce).await?;
        let message = late.expect_publish().await?;
        assert_eq!(&message.payload[..], b"a");
        assert!(message.retain);

        let one = get(port, "/retained/httpret/b?namespace=http-ret").await?;
        assert_eq!(one.status, 200, "{}", one.text());
        assert_eq!(one.body, b"b");
        assert_eq!(one.header("Content-Type"), Some("text/plain"));
        assert_eq!(one.header("MQTT-QoS"), Some("1"));
        assert_eq!(one.header("MQTT-User-Property"), Some("site=north"));
        assert_eq!(one.header("MQTT-Correlation-Data"), Some("AAE="));

        let missing = get(port, "/retained/httpret/none?namespace=http-ret").await?;
        assert_eq!(missing.status, 404);

        let first = get(
            port,
            "/retained?namespace=http-ret&filter=httpret/%23&limit=2",
        )
        .await?;
        assert_eq!(first.status, 200, "{}", first.text());
        let first = first.text();
        assert!(first.contains(r#""topic":"httpret/a""#), "{first}");
        assert!(first.contains(r#""topic":"httpret/b""#), "{first}");
        assert!(
            !first.contains(r#""topic":"httpret/c""#),
            "limit 2 returned more: {first}"
        );
        let cursor = json_string(&first, "next_cursor").ok_or("first page has no next_cursor")?;
        assert_eq!(cursor, "httpret/b");

        let path =
            format!("/retained?namespace=http-ret&filter=httpret/%23&limit=2&cursor={cursor}");
        let second = get(port, &path).await?.text();
        assert_eq!(
            json_string(&second, "topic").as_deref(),
            Some("httpret/c"),
            "{second}"
        );
        assert_json_field(&second, "payload", r#""c""#);
        assert_json_field(&second, "next_cursor", "null");
        Ok(())
    })
}

fn publish_error_statuses(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        let cases: [(&str, u16); 14] = [
            ("/sse?filter=a&session=bad%20name", 400),
            ("/sse?filter=a&session=", 400),
            ("/poll?filter=a&session=httperr&cursor=abc", 400),
            ("/publish/httperr/%2B", 400),
            ("/publish/httperr/%23", 400),
            ("/publish/%24SYS/x", 400),
            ("/publish/httperr/a?qos=3", 400),
            ("/publish/httperr/a?retain=maybe", 400),
            ("/publish/httperr/a?namespace=bad%2Fname", 400),
            ("/retained?filter=a/%23/b", 400),
            ("/publish/", 400),
            ("/sse?filter=a/%23/b", 400),
            ("/sse", 400),
            ("/poll?filter=%24share/g/a", 400),
        ];
        for (path, expected) in cases {
            let response = match path.starts_with("/publish") {
                true => post(port, path, &[], b"x").await?,
                false => get(port, path).await?,
            };
            assert_eq!(response.status, expected, "{path}: {}", response.text());
            assert!(
                !response.body.is_empty(),
                "{path}: the error names no problem"
            );
        }

        let bad_header = post(
            port,
            "/publish/httperr/a",
            &[("MQTT-Message-Expiry", "soon")],
            b"x",
        )
        .await?;
        assert_eq!(bad_header.status, 400);
        assert!(
            bad_header.text().contains("MQTT-Message-Expiry"),
            "{}",
            bad_header.text()
        );

        // Above the maximum packet size of wrangler.toml (1 MiB).
        let big = vec![b'x'; 1024 * 1024 + 1];
        let too_large = post(port, "/publish/httperr/big", &[], &big).await?;
        assert_eq!(too_large.status, 413, "{}", too_large.text());
        assert!(
            too_large.text().contains("maximum packet size"),
            "{}",
            too_large.text()
        );

        let unknown = get(port, "/publish/httperr/a").await?;
        assert_eq!(unknown.status, 404, "GET is not a publish");
        Ok(())
    })
}

fn rate_limit_answers_429(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        // The default bucket contains 200 messages and refills 100 per
        // second: batches of 100 sent back to back soon exceed it.
        let messages: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"topic":"rate/{i}"}}"#))
            .collect();
        let batch = format!("[{}]", messages.join(","));
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let response =
                post(port, "/publish?namespace=http-rate", &[], batch.as_bytes()).await?;
            statuses.push(response.status);
            if response.status == 429 {
                assert!(
                    response.text().contains("rate limit"),
                    "{}",
                    response.text()
                );
                break;
            }
        }
        assert_eq!(statuses[0], 200, "{statuses:?}");
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        Ok(())
    })
}

fn idempotency_key_publishes_once(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        let mut subscriber = Client::connect(server, "/mqtt", "http-idem-sub").await?;
        subscriber.subscribe("httpidem/#", QoS::AtLeastOnce).await?;
        let key = [("Idempotency-Key", "idem-key-1")];

        let first = post(port, "/publish/httpidem/a?qos=1", &key, b"once").await?;
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(first.header("Idempotent-Replayed"), None);
        let second = post(port, "/publish/httpidem/a?qos=1", &key, b"once").await?;
        assert_eq!(second.status, 200, "{}", second.text());
        assert_eq!(second.header("Idempotent-Replayed"), Some("true"));
        assert_eq!(
            second.body, first.body,
            "the replay returns the first result"
        );

        post(port, "/publish/httpidem/marker?qos=1", &[], b"marker").await?;
        assert_eq!(&subscriber.expect_publish().await?.payload[..], b"once");
        let next = subscriber.expect_publish().await?;
        assert_eq!(
            next.topic, "httpidem/marker",
            "the keyed message arrived twice"
        );
        Ok(())
    })
}

fn presence_events_for_sys_subscriber(server: &Wrangler) -> Result<(), Failed> {
    run(async move {
        let mut dashboard =
            Client::connect(server, "/mqtt/http-presence", "presence-dashboard").await?;
        dashboard
            .subscribe("$SYS/presence/#", QoS::AtMostOnce)
            .await?;

        let device = Client::connect(server, "/mqtt/http-presence", "presence-device").await?;
        let connected = dashboard.expect_publish().await?;
        assert_eq!(connected.topic, "$SYS/presence/presence-device/connected");
        let event = String::from_utf8_lossy(&connected.payload).into_owned();
        assert_json_field(&event, "client_id", r#""presence-device""#);
        assert_json_field(&event, "namespace", r#""http-presence""#);
        assert!(event.contains(r#""time_ms":"#), "{event}");

        device.client.disconnect().await?;
        let disconnected = dashboard.expect_publish().await?;
        assert_eq!(
            disconnected.topic,
            "$SYS/presence/presence-device/disconnected"
        );
        let event = String::from_utf8_lossy(&disconnected.payload).into_owned();
        assert_json_field(&event, "clean", "true");
        assert_json_field(&event, "reason", r#""client_disconnect""#);

        // The lifecycle log line is JSON with the ids as fields.
        let expected = r#""client_id":"presence-device""#;
        let deadline = Instant::now() + WAIT;
        while !server
            .log()
            .lines()
            .any(|line| line.contains(expected) && line.contains("client disconnected"))
        {
            if Instant::now() > deadline {
                return Err(format!("no JSON disconnect log line with {expected}").into());
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    })
}

fn admin_metrics_behind_gate(server: &Wrangler) -> Result<(), Failed> {
    run(async move {
        // The test server has no ADMIN_TOKEN, so the gate keeps the admin
        // API closed; the metrics text itself is tested in the broker crate.
        let response = get(server.port(), "/admin/metrics?namespace=default").await?;
        assert!(
            matches!(response.status, 401 | 404),
            "status {}: {}",
            response.status,
            response.text()
        );
        assert!(
            !response.text().contains("mqtt_"),
            "metrics leaked past the gate"
        );
        Ok(())
    })
}

fn sse_retained_live_and_resume(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        let retained = post(
            port,
            "/publish/ssetest/state?retain=true&namespace=http-sse",
            &[],
            b"kept",
        )
        .await?;
        assert_eq!(retained.status, 200, "{}", retained.text());

        let path = "/sse?namespace=http-sse&filter=ssetest/%23&filter=other/%23";
        let mut stream = SseStream::open(port, path, None).await?;
        let (_, first) = stream.next_message().await?;
        assert_json_field(&first, "topic", r#""ssetest/state""#);
        assert_json_field(&first, "payload", r#""kept""#);
        assert_json_field(&first, "retain", "true");

        // An MQTT publish reaches the SSE stream too.
        let publisher = Client::connect(server, "/mqtt/http-sse", "sse-publisher").await?;
        publisher
            .client
            .publish("ssetest/live", QoS::AtMostOnce, false, "live")
            .await?;
        let (id, live) = stream.next_message().await?;
        assert_json_field(&live, "topic", r#""ssetest/live""#);
        assert_json_field(&live, "payload", r#""live""#);
        let id = id.ok_or("a live event has no id")?;
        drop(stream);

        // Resuming from the last id replays what was missed, without the
        // retained messages.
        let missed = post(
            port,
            "/publish/ssetest/missed?namespace=http-sse",
            &[],
            b"missed",
        )
        .await?;
        assert_eq!(missed.status, 200);
        let mut resumed = SseStream::open(port, path, Some(&id)).await?;
        let (_, replayed) = resumed.next_message().await?;
        assert_json_field(&replayed, "topic", r#""ssetest/missed""#);
        Ok(())
    })
}

fn sse_streams_presence_events(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        // A browser dashboard without MQTT follows presence over SSE.
        let path = "/sse?namespace=http-sse-presence&filter=%24SYS/presence/%23";
        let mut stream = SseStream::open(port, path, None).await?;
        let _device = Client::connect(server, "/mqtt/http-sse-presence", "sse-device").await?;
        let (_, event) = stream.next_message().await?;
        assert_json_field(&event, "topic", r#""$SYS/presence/sse-device/connected""#);
        Ok(())
    })
}

fn long_poll_waits_for_message(server: &Wrangler) -> Result<(), Failed> {
    let port = server.port();
    run(async move {
        let start = get(port, "/poll?namespace=http-poll&filter=polltest/%23&wait=0").await?;
        assert_eq!(start.status, 200, "{}", start.text());
        let cursor = json_string(&start.text(), "cursor").ok_or("no cursor")?;

        // The poll waits up to 20 s; the publish ends the wait. Had the
        // publish come first, the cursor would still return it.
        let path = format!("/poll?namespace=http-poll&filter=polltest/%23&wait=20&cursor={cursor}");
        let waiting =
            tokio::spawn(async move { get(port, &path).await.map_err(|e| format!("{e:?}")) });
        let sent = post(
            port,
            "/publish/polltest/a?namespace=http-poll",
            &[],
            b"polled",
        )
        .await?;
        assert_eq!(sent.status, 200);
        let response = timeout(WAIT, waiting)
            .await
            .map_err(|_| "the long poll did not return")???;
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.text();
        assert_json_field(&body, "topic", r#""polltest/a""#);
        assert_json_field(&body, "payload", r#""polled""#);
        assert_ne!(
            json_string(&body, "cursor"),
            Some(cursor),
            "the cursor did not move"
        );
        Ok(())
    })
}

fn sys_status_counts_traffic() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start(persist.path(), &[("sys_interval_secs", "1")]);
    let port = server.port();
    run(async {
        let mut watcher = Client::connect(&server, "/mqtt", "sys-watcher").await?;
        watcher
            .subscribe("$SYS/broker/messages/received", QoS::AtMostOnce)
            .await?;
        let before: u64 =
            String::from_utf8_lossy(&watcher.expect_publish().await?.payload).parse()?;

        let response = post(port, "/publish/systest/a", &[], b"x").await?;
        assert_eq!(response.status, 200);
        let deadline = Instant::now() + WAIT;
        loop {
            let value: u64 =
                String::from_utf8_lossy(&watcher.expect_publish().await?.payload).parse()?;
            if value > before {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("messages/received stayed at {value}").into());
            }
        }
    })
}

/// Signs an HS256 token for namespace `default` that may publish to
/// `publish` only, with the harness's HMAC key.
fn publish_token(publish: &str) -> Result<String, Failed> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let claims = serde_json::json!({
        "sub": "http-auth",
        "exp": now.as_secs() + 600,
        "mqtt_namespace": "default",
        "mqtt_acl": {"publish": [publish], "subscribe": []},
    });
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_HMAC_SECRET.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// Checks that `response` is `{"error": …}` JSON whose message starts
/// with `prefix`.
fn assert_json_error(response: &HttpResponse, prefix: &str) {
    let content_type = response.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type {content_type:?}: {}",
        response.text()
    );
    let body: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", response.text()));
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.starts_with(prefix), "error message: {message:?}");
}

/// With anonymous access off, `POST /publish/...` needs a token whose ACL
/// covers the topic, and `/admin/metrics` needs the admin bearer secret.
fn token_and_admin_auth() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start_authenticated(persist.path(), &[]);
    let port = server.port();
    run(async {
        let path = "/publish/authtest/allowed";
        let response = post(port, path, &[], b"x").await?;
        assert_eq!(response.status, 401, "no token: {}", response.text());

        let malformed = [("Authorization", "Bearer not-a-jwt")];
        let response = post(port, path, &malformed, b"x").await?;
        assert_eq!(response.status, 401, "malformed token: {}", response.text());
        assert_json_error(&response, "invalid token");

        let narrow = format!("Bearer {}", publish_token("authtest/other")?);
        let response = post(port, path, &[("Authorization", &narrow)], b"x").await?;
        assert_eq!(
            response.status,
            403,
            "topic outside the ACL: {}",
            response.text()
        );

        let good = format!("Bearer {}", publish_token("authtest/#")?);
        let response = post(port, path, &[("Authorization", &good)], b"x").await?;
        assert_eq!(response.status, 200, "good token: {}", response.text());

        let metrics = "/admin/metrics?namespace=default";
        let response = get(port, metrics).await?;
        assert_eq!(response.status, 401, "no admin secret: {}", response.text());
        assert!(
            !response.text().contains("mqtt_"),
            "metrics leaked past the gate"
        );
        assert_json_error(&response, "admin credentials missing or invalid");

        let response = get(port, "/nope").await?;
        assert_eq!(response.status, 404, "unknown route: {}", response.text());
        assert_json_error(&response, "not found: /nope");

        let admin = format!("Bearer {TEST_ADMIN_TOKEN}");
        let headers = [("Authorization", admin.as_str())];
        let response = request(port, "GET", metrics, &headers, b"").await?;
        assert_eq!(response.status, 200, "admin secret: {}", response.text());
        let text = response.text();
        assert!(
            text.contains("# TYPE mqtt_connects_total counter"),
            "not Prometheus text: {text}"
        );
        assert!(
            text.contains("mqtt_messages_received_total{namespace=\"default\",qos=\"0\"} 1"),
            "the accepted publish is not counted: {text}"
        );
        assert!(text.contains("mqtt_rate_limit_disconnects_total"), "{text}");

        // The ingress logs the malformed token above without a client id.
        let deadline = Instant::now() + WAIT;
        while !server.log().lines().any(|line| {
            line.contains("\"message\":\"authentication failed")
                && line.contains("\"client_id\":\"(HTTP request)\"")
        }) {
            if Instant::now() > deadline {
                return Err(format!("no HTTP auth failure log line:\n{}", server.log()).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
}
