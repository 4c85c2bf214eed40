//! The bridge to Cloudflare Queues under `wrangler dev`, which runs the
//! queues, their consumer and R2 locally. Messages published over MQTT and
//! HTTP reach a webhook receiver started here, signed and with their id as
//! `Idempotency-Key`. Failed deliveries are retried, dead-lettered into R2
//! and re-driven through the admin API. A receiver that is down for a while
//! loses nothing.
//!
//! The tests share one server with short retry delays. Each test uses its
//! own namespace and sets that namespace's rules through the admin API; one
//! rule comes from `[vars.BRIDGE]`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use interop_tests::{free_port, Wrangler, TEST_ADMIN_TOKEN, TEST_WEBHOOK_SECRET};
use libtest_mimic::Failed;
use rumqttc::QoS;
use serde_json::Value;
use sha2::Sha256;

use crate::http::{post, request, HttpResponse};
use crate::mqtt::{run, Client};

pub const TESTS: &[(&str, crate::OwnServerTestFn)] = &[
    (
        "bridge_webhook_signed_with_idempotency_key",
        signed_delivery,
    ),
    ("bridge_configured_rule_delivers", configured_rule_delivers),
    (
        "bridge_webhook_retries_then_succeeds",
        retries_then_succeeds,
    ),
    ("bridge_dead_letter_and_redrive", dead_letter_and_redrive),
    ("bridge_r2_sink_writes_object", r2_sink_writes_object),
    (
        "bridge_outbox_survives_queue_outage",
        outbox_survives_queue_outage,
    ),
    (
        "bridge_no_loss_while_receiver_down",
        no_loss_while_receiver_down,
    ),
];

/// Delivery attempts of the test server: the consumer's `max_retries` (3)
/// plus one, with retry delays of 1, 2 and 2 seconds.
const MAX_ATTEMPTS: usize = 4;

/// How long a test waits for deliveries that need every retry, with the
/// consumer's one-second batch timeout between attempts.
const DELIVERY_WAIT: Duration = Duration::from_secs(45);

/// The shared server and the receiver of its configured rule.
struct BridgeServer {
    server: Wrangler,
    configured: Receiver,
    /// The server's storage folder, where R2 objects land as files.
    persist: tempfile::TempDir,
}

static SERVER: Mutex<Option<Arc<BridgeServer>>> = Mutex::new(None);

/// Starts the shared bridge server on first use.
fn server() -> Arc<BridgeServer> {
    let mut guard = SERVER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(server) = guard.as_ref() {
        return Arc::clone(server);
    }
    let configured = Receiver::start();
    let persist = tempfile::tempdir().expect("creating a temporary folder failed");
    let bridge = format!(
        "rules = [{{ name = \"configured\", filter = \"configured/#\", webhook = \"{}\" }}]\n\
         delivery_retry_base_secs = 1\n\
         delivery_retry_max_secs = 2\n\
         delivery_max_attempts = {MAX_ATTEMPTS}\n",
        configured.url()
    );
    let consumer = [("max_batch_timeout", "1"), ("max_retries", "3")];
    let server = Wrangler::start_with_bridge(persist.path(), &bridge, &consumer);
    let shared = Arc::new(BridgeServer {
        server,
        configured,
        persist,
    });
    *guard = Some(Arc::clone(&shared));
    shared
}

/// Stops the shared server, if a test started it. `main` calls it once
/// every test has finished.
pub fn stop_server() {
    let server = SERVER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    drop(server);
}

/// One request the receiver got, and the status it responded with.
#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn id(&self) -> String {
        self.json()["id"].as_str().unwrap_or_default().to_string()
    }

    fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the receiver's threads share.
#[derive(Default)]
struct ReceiverState {
    deliveries: Mutex<Vec<Delivery>>,
    arrived: Condvar,
    /// Requests still to respond to with 500 before responding with 200.
    fail_first: AtomicUsize,
    /// Respond to every request with 500.
    always_fail: AtomicBool,
}

/// A webhook receiver on 127.0.0.1: a small HTTP/1.1 server that records
/// every request, responds with 200 or 500 as configured, and closes each
/// connection.
struct Receiver {
    port: u16,
    state: Arc<ReceiverState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver on a free port.
    fn start() -> Receiver {
        Receiver::start_on(0, Arc::default()).expect("binding 127.0.0.1:0 failed")
    }

    /// Starts a receiver on `port` that adds to `state`.
    fn start_on(port: u16, state: Arc<ReceiverState>) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || accept_loop(listener, state, stop))
        };
        Ok(Receiver {
            port,
            state,
            stop,
            thread: Some(thread),
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Waits until the deliveries so far satisfy `done`, and returns them.
    fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Result<Vec<Delivery>, Failed> {
        wait_for_deliveries(&self.state, what, done)
    }

    /// Stops accepting connections and closes the port.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that the thread checks the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_deliveries(
    state: &ReceiverState,
    what: &str,
    done: impl Fn(&[Delivery]) -> bool,
) -> Result<Vec<Delivery>, Failed> {
    let deadline = Instant::now() + DELIVERY_WAIT;
    let mut deliveries = state
        .deliveries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    while !done(&deliveries) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{what}: not within {DELIVERY_WAIT:?}; received {:?}",
                deliveries
                    .iter()
                    .map(|d| (d.status, String::from_utf8_lossy(&d.body).into_owned()))
                    .collect::<Vec<_>>()
            )
            .into());
        }
        deliveries = state
            .arrived
            .wait_timeout(deliveries, left)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
    Ok(deliveries.clone())
}

fn accept_loop(listener: TcpListener, state: Arc<ReceiverState>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            continue;
        };
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            let _ = serve(stream, &state);
        });
    }
}

/// Reads one request, records it, answers, and closes the connection.
fn serve(mut stream: TcpStream, state: &ReceiverState) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..read]);
    }
    let body = raw[head_end..].to_vec();

    let fail = state.always_fail.load(Ordering::SeqCst)
        || state
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let status = if fail { 500 } else { 200 };
    let reason = if fail { "Internal Server Error" } else { "OK" };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Both);

    let mut deliveries = state
        .deliveries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    deliveries.push(Delivery {
        headers,
        body,
        status,
    });
    state.arrived.notify_all();
    Ok(())
}

/// The signature the Worker must send: `sha256=` and the hex HMAC-SHA256 of
/// the body under the test secret.
fn expected_signature(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(TEST_WEBHOOK_SECRET.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Checks the headers every webhook request carries.
fn assert_signed(delivery: &Delivery, namespace: &str) {
    let body = delivery.json();
    let id = body["id"].as_str().unwrap_or_default();
    assert!(
        id.starts_with(&format!("{namespace}:")),
        "id {id:?} is not <namespace>:<seq>"
    );
    assert_eq!(delivery.header("Idempotency-Key"), Some(id));
    assert_eq!(
        delivery.header("X-Bridge-Signature-256"),
        Some(expected_signature(&delivery.body).as_str()),
        "signature of {}",
        String::from_utf8_lossy(&delivery.body)
    );
    assert_eq!(body["namespace"], namespace);
    assert!(body.get("destination").is_none(), "{body}");
    assert!(
        delivery
            .header("Content-Type")
            .is_some_and(|value| value.starts_with("application/json")),
        "content type {:?}",
        delivery.header("Content-Type")
    );
}

fn admin_headers() -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))]
}

/// Replaces the bridge rules of `namespace` with one webhook rule.
async fn set_webhook_rule(
    port: u16,
    namespace: &str,
    filter: &str,
    url: &str,
) -> Result<(), Failed> {
    let [(name, value)] = admin_headers();
    let rules = serde_json::json!([{ "name": "hook", "filter": filter, "webhook": url }]);
    let path = format!("/admin/bridge/rules?namespace={namespace}");
    let response = request(
        port,
        "PUT",
        &path,
        &[(name, &value)],
        rules.to_string().as_bytes(),
    )
    .await?;
    assert_eq!(response.status, 200, "{}", response.text());
    Ok(())
}

async fn admin_get(port: u16, path: &str) -> Result<HttpResponse, Failed> {
    let [(name, value)] = admin_headers();
    request(port, "GET", path, &[(name, &value)], b"").await
}

/// Publishes over HTTP and expects 200.
async fn publish(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Failed> {
    let response = post(port, path, headers, body).await?;
    assert_eq!(response.status, 200, "POST {path}: {}", response.text());
    Ok(())
}

/// Checks that messages published over MQTT and HTTP reach the webhook as
/// signed JSON, with the id as `Idempotency-Key`, the payload as text or
/// base64, and the MQTT 5.0 properties. A topic no rule matches is not
/// bridged, and the metrics count what the outbox queued and sent.
fn signed_delivery() -> Result<(), Failed> {
    let shared = server();
    let server = &shared.server;
    let port = server.port();
    let receiver = Receiver::start();
    let namespace = "bridge-signed";
    run(async {
        set_webhook_rule(port, namespace, "signed/#", &receiver.url()).await?;
        publish(
            port,
            &format!("/publish/other/x?namespace={namespace}"),
            &[],
            b"skip",
        )
        .await?;

        let mut client =
            Client::connect(server, &format!("/mqtt/{namespace}"), "bridge-pub").await?;
        client
            .client
            .publish("signed/mqtt", QoS::AtLeastOnce, false, "from mqtt")
            .await?;
        client
            .expect(|packet| matches!(packet, rumqttc::Packet::PubAck(_)))
            .await?;

        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("MQTT-User-Property", "site=north"),
        ];
        let path = format!("/publish/signed/http?namespace={namespace}&qos=1&retain=true");
        publish(port, &path, &headers, &[0xff, 0x00, 0x01]).await?;
        Ok::<_, Failed>(())
    })?;

    let deliveries = receiver.wait_for("two signed deliveries", |d| d.len() >= 2)?;
    for delivery in &deliveries {
        assert_signed(delivery, namespace);
        assert_eq!(delivery.status, 200);
    }
    let by_topic = |topic: &str| {
        deliveries
            .iter()
            .map(Delivery::json)
            .find(|body| body["topic"] == topic)
            .ok_or(format!("no delivery on {topic}: {deliveries:?}"))
    };
    let mqtt = by_topic("signed/mqtt")?;
    assert_eq!(mqtt["payload"], "from mqtt");
    assert_eq!(mqtt["qos"], 1);
    assert_eq!(mqtt["retain"], false);
    assert_eq!(mqtt["rule"], "hook");
    assert!(mqtt["time"].as_u64().is_some_and(|time| time > 0), "{mqtt}");
    let http = by_topic("signed/http")?;
    assert_eq!(http["payload_base64"], "/wAB");
    assert!(http.get("payload").is_none(), "{http}");
    assert_eq!(http["retain"], true);
    assert_eq!(
        http["properties"]["content_type"],
        "application/octet-stream"
    );
    assert_eq!(http["properties"]["user_properties"][0][0], "site");
    assert_ne!(mqtt["id"], http["id"]);
    assert!(
        deliveries.iter().all(|d| d.json()["topic"] != "other/x"),
        "a message no rule matches was bridged"
    );

    let metrics = run(admin_get(
        port,
        &format!("/admin/metrics?namespace={namespace}"),
    ))?;
    let text = metrics.text();
    for line in [
        format!("mqtt_bridge_messages_queued_total{{namespace=\"{namespace}\"}} 2"),
        format!("mqtt_bridge_messages_sent_total{{namespace=\"{namespace}\"}} 2"),
        format!("mqtt_bridge_outbox_messages{{namespace=\"{namespace}\"}} 0"),
    ] {
        assert!(text.contains(&line), "expected {line} in\n{text}");
    }
    Ok(())
}

/// A rule from `[vars.BRIDGE]` applies to every namespace without any
/// admin call, and the admin API lists it.
fn configured_rule_delivers() -> Result<(), Failed> {
    let shared = server();
    let port = shared.server.port();
    let namespace = "bridge-configured";
    let topic = "configured/reading";
    run(publish(
        port,
        &format!("/publish/{topic}?namespace={namespace}"),
        &[],
        b"42",
    ))?;
    let deliveries = shared
        .configured
        .wait_for("the configured rule's delivery", |d| {
            d.iter().any(|d| d.json()["namespace"] == namespace)
        })?;
    let delivery = deliveries
        .iter()
        .find(|d| d.json()["namespace"] == namespace)
        .ok_or("delivery vanished")?;
    assert_signed(delivery, namespace);
    assert_eq!(delivery.json()["rule"], "configured");
    assert_eq!(delivery.json()["payload"], "42");

    let listing = run(admin_get(
        port,
        &format!("/admin/bridge/rules?namespace={namespace}"),
    ))?;
    assert_eq!(listing.status, 200, "{}", listing.text());
    let rules: Value = serde_json::from_slice(&listing.body)?;
    assert_eq!(rules["configured"][0]["name"], "configured");
    assert_eq!(rules["namespace"], serde_json::json!([]));
    Ok(())
}

/// A webhook that answers 500 twice gets the same message again, with the
/// same id and `Idempotency-Key`, until it answers 200.
fn retries_then_succeeds() -> Result<(), Failed> {
    let shared = server();
    let port = shared.server.port();
    let receiver = Receiver::start();
    receiver.state.fail_first.store(2, Ordering::SeqCst);
    let namespace = "bridge-retry";
    run(async {
        set_webhook_rule(port, namespace, "retry/#", &receiver.url()).await?;
        publish(
            port,
            &format!("/publish/retry/x?namespace={namespace}&qos=1"),
            &[],
            b"again",
        )
        .await
    })?;

    let deliveries =
        receiver.wait_for("a successful retry", |d| d.iter().any(Delivery::succeeded))?;
    let statuses: Vec<u16> = deliveries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    let ids: BTreeSet<String> = deliveries.iter().map(Delivery::id).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same id: {ids:?}");
    for delivery in &deliveries {
        assert_signed(delivery, namespace);
        assert_eq!(delivery.body, deliveries[0].body, "attempts differ");
    }
    Ok(())
}

/// Checks that a webhook that always fails gets every allowed attempt. The
/// message then appears under `/admin/dead-letters` with its last error.
/// Once the webhook recovers, a re-drive delivers it and empties the list.
fn dead_letter_and_redrive() -> Result<(), Failed> {
    let shared = server();
    let port = shared.server.port();
    let receiver = Receiver::start();
    receiver.state.always_fail.store(true, Ordering::SeqCst);
    let namespace = "bridge-dead";
    run(async {
        set_webhook_rule(port, namespace, "dead/#", &receiver.url()).await?;
        publish(
            port,
            &format!("/publish/dead/x?namespace={namespace}"),
            &[],
            b"lost?",
        )
        .await
    })?;

    let listing = format!("/admin/dead-letters?namespace={namespace}");
    let letters = wait_for_dead_letters(port, &listing, |letters| !letters.is_empty())?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["message"]["topic"], "dead/x");
    assert_eq!(letter["attempts"], MAX_ATTEMPTS);
    assert!(
        letter["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{letter}"
    );
    let id = letter["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let attempts = receiver.wait_for("every attempt", |d| d.len() >= MAX_ATTEMPTS)?;
    assert!(attempts.iter().all(|d| d.id() == id && !d.succeeded()));

    receiver.state.always_fail.store(false, Ordering::SeqCst);
    let [(name, value)] = admin_headers();
    let path = format!("/admin/dead-letters/redrive?namespace={namespace}");
    let response = run(request(port, "POST", &path, &[(name, &value)], b""))?;
    assert_eq!(response.status, 200, "{}", response.text());
    let redriven: Value = serde_json::from_slice(&response.body)?;
    assert_eq!(redriven["redriven"], 1);

    let deliveries = receiver.wait_for("the re-driven delivery", |d| {
        d.iter().any(Delivery::succeeded)
    })?;
    let delivered = deliveries
        .iter()
        .find(|d| d.succeeded())
        .ok_or("no success")?;
    assert_eq!(delivered.id(), id);
    assert_signed(delivered, namespace);
    let letters = wait_for_dead_letters(port, &listing, |letters| letters.is_empty())?;
    assert!(letters.is_empty());
    Ok(())
}

/// Polls the dead-letter listing until `done` accepts it.
fn wait_for_dead_letters(
    port: u16,
    path: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>, Failed> {
    let deadline = Instant::now() + DELIVERY_WAIT;
    loop {
        let response = run(admin_get(port, path))?;
        assert_eq!(response.status, 200, "{}", response.text());
        let listing: Value = serde_json::from_slice(&response.body)?;
        let letters = listing["dead_letters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&letters) {
            return Ok(letters);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "dead letters not as expected within {DELIVERY_WAIT:?}: {listing}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Messages published while the webhook's port is closed are retried
/// until it listens again: every one arrives, and redeliveries carry the
/// same id, so de-duplicating by id leaves exactly the messages published.
fn no_loss_while_receiver_down() -> Result<(), Failed> {
    let shared = server();
    let server = &shared.server;
    let port = server.port();
    let namespace = "bridge-offline";
    let receiver_port = free_port();
    let url = format!("http://127.0.0.1:{receiver_port}/hook");
    let count = 20;
    let batch: Vec<Value> = (0..count)
        .map(|i| serde_json::json!({ "topic": format!("offline/{i}"), "payload": i.to_string(), "qos": 1 }))
        .collect();
    run(async {
        set_webhook_rule(port, namespace, "offline/#", &url).await?;
        let body = serde_json::to_vec(&batch)?;
        publish(port, &format!("/publish?namespace={namespace}"), &[], &body).await
    })?;

    // The receiver stays down until the consumer has failed to reach it.
    let failure = format!("\"namespace\":\"{namespace}\"");
    let deadline = Instant::now() + DELIVERY_WAIT;
    while !server
        .log()
        .lines()
        .any(|line| line.contains("bridge delivery failed") && line.contains(&failure))
    {
        if Instant::now() > deadline {
            return Err(format!("no failed delivery logged within {DELIVERY_WAIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let state = Arc::new(ReceiverState::default());
    let receiver = Receiver::start_on(receiver_port, Arc::clone(&state))?;

    let expected: BTreeSet<String> = (0..count).map(|i| format!("offline/{i}")).collect();
    let deliveries = receiver.wait_for("every message after the outage", |d| {
        let topics: BTreeSet<String> = d
            .iter()
            .filter(|d| d.succeeded())
            .map(|d| d.json()["topic"].as_str().unwrap_or_default().to_string())
            .collect();
        topics == expected
    })?;
    let mut unique = BTreeSet::new();
    for delivery in deliveries.iter().filter(|d| d.succeeded()) {
        assert_signed(delivery, namespace);
        unique.insert((delivery.id(), delivery.json()["topic"].clone().to_string()));
    }
    let ids: BTreeSet<&String> = unique.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), count, "one id per message: {unique:?}");
    assert_eq!(
        unique.len(),
        count,
        "a repeated id carried another message: {unique:?}"
    );
    Ok(())
}

/// A rule with an R2 destination writes the message, as the webhook would
/// receive it, to the bucket. The test finds the object among the files
/// that `wrangler dev` keeps for R2 in the server's storage folder.
fn r2_sink_writes_object() -> Result<(), Failed> {
    let shared = server();
    let port = shared.server.port();
    let namespace = "bridge-r2";
    run(async {
        let [(name, value)] = admin_headers();
        let rules = serde_json::json!([{ "name": "archive", "filter": "r2/#", "r2": "sink" }]);
        let path = format!("/admin/bridge/rules?namespace={namespace}");
        let body = rules.to_string();
        let response = request(port, "PUT", &path, &[(name, &value)], body.as_bytes()).await?;
        assert_eq!(response.status, 200, "{}", response.text());
        publish(
            port,
            &format!("/publish/r2/x?namespace={namespace}"),
            &[],
            b"stored",
        )
        .await
    })?;

    let marker = format!("\"namespace\":\"{namespace}\"");
    let deadline = Instant::now() + DELIVERY_WAIT;
    let object = loop {
        if let Some(text) = find_file_containing(shared.persist.path(), &marker) {
            break text;
        }
        if Instant::now() > deadline {
            return Err(format!("no R2 object for {namespace} within {DELIVERY_WAIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let body: Value = serde_json::from_str(&object)?;
    assert_eq!(body["topic"], "r2/x");
    assert_eq!(body["payload"], "stored");
    assert_eq!(body["rule"], "archive");
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("bridge-r2:")),
        "{body}"
    );
    assert!(body.get("destination").is_none(), "{body}");
    Ok(())
}

/// Returns the text of the first file under `dir` that is JSON containing
/// `marker`.
fn find_file_containing(dir: &std::path::Path, marker: &str) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file_containing(&path, marker) {
                return Some(found);
            }
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if text.starts_with('{') && text.contains(marker) {
            return Some(text);
        }
    }
    None
}

/// While the bridge queue cannot be reached (its binding is missing), the
/// messages stay in the outbox and the alarm retries the send. After a
/// restart with the binding on the same storage, the outbox is sent and
/// every message reaches the webhook with the id it got at publication.
fn outbox_survives_queue_outage() -> Result<(), Failed> {
    let receiver = Receiver::start();
    let persist = tempfile::tempdir()?;
    let bridge = "send_retry_base_ms = 200\nsend_retry_max_ms = 1000\n";
    let consumer = [("max_batch_timeout", "1")];
    let namespace = "bridge-outage";
    let count = 3;

    let mut first = Wrangler::start_with_bridge_queue_missing(persist.path(), bridge, &consumer);
    let port = first.port();
    run(async {
        set_webhook_rule(port, namespace, "outage/#", &receiver.url()).await?;
        for i in 0..count {
            let path = format!("/publish/outage/{i}?namespace={namespace}&qos=1");
            publish(port, &path, &[], b"kept").await?;
        }
        Ok::<_, Failed>(())
    })?;

    let metrics_path = format!("/admin/metrics?namespace={namespace}");
    let depth = format!("mqtt_bridge_outbox_messages{{namespace=\"{namespace}\"}} {count}");
    let failures = format!("mqtt_bridge_send_failures_total{{namespace=\"{namespace}\"}} ");
    let deadline = Instant::now() + DELIVERY_WAIT;
    loop {
        let text = run(admin_get(port, &metrics_path))?.text();
        let failed: u64 = text
            .lines()
            .find_map(|line| line.strip_prefix(failures.as_str()))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        // Two failures show that the alarm retried the first one.
        if text.contains(&depth) && failed >= 2 {
            break;
        }
        if Instant::now() > deadline {
            return Err(
                format!("outbox not kept and retried within {DELIVERY_WAIT:?}:\n{text}").into(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        receiver
            .state
            .deliveries
            .lock()
            .map(|d| d.is_empty())
            .unwrap_or(false),
        "delivered without a queue"
    );
    first.stop();

    let _second = Wrangler::start_with_bridge(persist.path(), bridge, &consumer);
    let expected: BTreeSet<String> = (1..=count)
        .map(|seq| format!("{namespace}:{seq}"))
        .collect();
    let deliveries = receiver.wait_for("the outbox after the restart", |d| {
        let ids: BTreeSet<String> = d
            .iter()
            .filter(|d| d.succeeded())
            .map(Delivery::id)
            .collect();
        ids == expected
    })?;
    for delivery in &deliveries {
        assert_signed(delivery, namespace);
    }
    Ok(())
}
