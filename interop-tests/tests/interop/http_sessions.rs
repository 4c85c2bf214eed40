//! Named SSE and long-poll sessions against `wrangler dev`. A reader that
//! passes `session=<name>` resumes from its `Last-Event-ID` or `cursor`
//! after the Durable Object was evicted from memory or the runtime was
//! restarted. It gets exactly the messages it missed, in order, once.
//! Also the per-client limit of HTTP publishes at the ingress.

use std::time::Duration;

use interop_tests::Wrangler;
use libtest_mimic::Failed;
use tokio::time::Instant;

use crate::http::{assert_json_field, client_token, get, json_string, post, request, SseStream};
use crate::mqtt::run;
use crate::wire::{property, Connect, Value, Version, Wire};

pub const TESTS: &[(&str, crate::OwnServerTestFn)] = &[
    (
        "http_sessions_resume_after_eviction",
        sessions_resume_after_eviction,
    ),
    (
        "http_sessions_resume_after_restart",
        sessions_resume_after_restart,
    ),
    (
        "http_publish_rate_limit_per_client",
        publish_rate_limit_per_client,
    ),
];

/// HTTP settings of the servers below. Short SSE streams end the stream's
/// heartbeat task soon after the client leaves, so that nothing keeps the
/// object in memory.
const SESSION_SETTINGS: [(&str, &str); 3] = [
    ("sse_heartbeat_secs", "1"),
    ("sse_max_stream_secs", "5"),
    ("session_max_messages", "3"),
];

/// How long a test waits for workerd to evict the object and an alarm to
/// build it again.
const EVICTION_TIMEOUT: Duration = Duration::from_secs(90);

/// An SSE session and a poll session miss messages while the object is
/// evicted from memory, and each gets exactly those messages afterwards.
fn sessions_resume_after_eviction() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start_with_http(persist.path(), &SESSION_SETTINGS);
    let port = server.port();
    let namespace = "resume-evict";
    run(async {
        let readers = Readers::start(port, namespace).await?;
        let away = readers.publish_while_away(port).await?;

        // Sessions that expire 27, 40 and 55 s after their clients leave
        // set alarms. The first one after the eviction builds the object
        // again, which logs `broker started`. The requests above built it
        // once, and that line may not be in the log file yet.
        let starts = broker_starts(&server.log(), namespace).max(1);
        let address = server.address(&format!("/mqtt/{namespace}"));
        for (index, seconds) in [27, 40, 55].into_iter().enumerate() {
            let connect = Connect::new(&format!("evict-timer-{index}"))
                .keep_alive(0)
                .property(property::SESSION_EXPIRY_INTERVAL, Value::FourByte(seconds));
            Wire::connected(&address, Version::V5, &connect)
                .await?
                .disconnect(0)
                .await?;
        }
        let waited = Instant::now();
        while broker_starts(&server.log(), namespace) <= starts {
            if waited.elapsed() > EVICTION_TIMEOUT {
                return Err(format!(
                    "the object was not built again within {EVICTION_TIMEOUT:?}:\n{}",
                    server.log()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("object built again after {:?}", waited.elapsed());

        readers.resume(port, away).await
    })
}

/// The same after `wrangler dev` is killed and started again on the same
/// storage. A session that stores at most three messages and missed five
/// reports a gap and returns the newest three.
fn sessions_resume_after_restart() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let mut first = Wrangler::start_with_http(persist.path(), &SESSION_SETTINGS);
    let port = first.port();
    let namespace = "resume-restart";
    let (readers, away, slow_cursor) = run(async {
        let readers = Readers::start(port, namespace).await?;
        let slow_cursor = poll(port, namespace, "slow", "slow/%23", None).await?.1;
        let away = readers.publish_while_away(port).await?;
        for index in 1..=5 {
            publish(port, namespace, &format!("slow/{index}")).await?;
        }
        Ok((readers, away, slow_cursor))
    })?;
    first.kill();

    let second = Wrangler::start_with_http(persist.path(), &SESSION_SETTINGS);
    let port = second.port();
    run(async {
        readers.resume(port, away).await?;

        let path = format!(
            "/poll?namespace={namespace}&session=slow&filter=slow/%23&wait=0&cursor={slow_cursor}"
        );
        let response = get(port, &path).await?;
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.text();
        assert_json_field(&body, "gap", "true");
        assert_json_field(&body, "gap_reason", r#""messages_dropped""#);
        assert_eq!(topics(&body), ["slow/3", "slow/4", "slow/5"], "{body}");
        Ok(())
    })
}

/// One SSE reader and one long-poll reader, each with its own session, and
/// what each has acknowledged before it went away.
struct Readers {
    namespace: &'static str,
    /// The id of the last SSE event received.
    last_event_id: String,
    /// The cursor of the last long poll.
    cursor: String,
}

/// What was published while the readers were away, in order.
struct Away {
    sse: Vec<String>,
    poll: Vec<String>,
}

impl Readers {
    /// Opens both sessions, lets each receive two messages, and closes the
    /// SSE stream.
    async fn start(port: u16, namespace: &'static str) -> Result<Readers, Failed> {
        let mut stream = SseStream::open(port, &sse_path(namespace), None).await?;
        let (_, cursor) = poll(port, namespace, "poller", "poll/%23", None).await?;

        let mut ids = Vec::new();
        for topic in ["sse/1", "sse/2"] {
            publish(port, namespace, topic).await?;
            let (id, data) = stream.next_message().await?;
            assert_json_field(&data, "topic", &format!("{topic:?}"));
            ids.push(id.ok_or("a session event has no id")?);
        }
        assert!(sequence(&ids[1])? > sequence(&ids[0])?, "{ids:?}");
        drop(stream);

        publish(port, namespace, "poll/1").await?;
        publish(port, namespace, "poll/2").await?;
        let (body, cursor) = poll(port, namespace, "poller", "poll/%23", Some(&cursor)).await?;
        assert_eq!(topics(&body), ["poll/1", "poll/2"], "{body}");
        Ok(Readers {
            namespace,
            last_event_id: ids[1].clone(),
            cursor,
        })
    }

    async fn publish_while_away(&self, port: u16) -> Result<Away, Failed> {
        let away = Away {
            sse: vec!["sse/3".into(), "sse/4".into()],
            poll: vec!["poll/3".into(), "poll/4".into()],
        };
        for topic in away.sse.iter().chain(&away.poll) {
            publish(port, self.namespace, topic).await?;
        }
        Ok(away)
    }

    /// Reconnects both readers from their positions and checks that each
    /// gets exactly what it missed, once.
    async fn resume(&self, port: u16, away: Away) -> Result<(), Failed> {
        let namespace = self.namespace;
        let path = sse_path(namespace);
        let mut stream = SseStream::open(port, &path, Some(&self.last_event_id)).await?;
        let mut previous = sequence(&self.last_event_id)?;
        for expected in &away.sse {
            let (kind, id, data) = stream.next_event().await?;
            assert_eq!(kind, "message", "{data}");
            assert_json_field(&data, "topic", &format!("{expected:?}"));
            let id = sequence(&id.ok_or("a replayed session event has no id")?)?;
            assert!(id > previous, "ids out of order: {id} after {previous}");
            previous = id;
        }
        // The next event is a new message, not a replayed one again.
        publish(port, namespace, "sse/live").await?;
        let (kind, _, data) = stream.next_event().await?;
        assert_eq!(kind, "message", "{data}");
        assert_json_field(&data, "topic", r#""sse/live""#);

        let (body, cursor) =
            poll(port, namespace, "poller", "poll/%23", Some(&self.cursor)).await?;
        assert_json_field(&body, "gap", "false");
        assert_eq!(topics(&body), away.poll, "{body}");
        let (body, _) = poll(port, namespace, "poller", "poll/%23", Some(&cursor)).await?;
        assert!(topics(&body).is_empty(), "messages delivered twice: {body}");
        Ok(())
    }
}

fn sse_path(namespace: &str) -> String {
    format!("/sse?namespace={namespace}&session=dashboard&filter=sse/%23")
}

/// Polls a session without waiting; returns the body and its cursor.
async fn poll(
    port: u16,
    namespace: &str,
    session: &str,
    filter: &str,
    cursor: Option<&str>,
) -> Result<(String, String), Failed> {
    let mut path = format!("/poll?namespace={namespace}&session={session}&filter={filter}&wait=0");
    if let Some(cursor) = cursor {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let response = get(port, &path).await?;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    let body = response.text();
    let cursor = json_string(&body, "cursor").ok_or_else(|| format!("no cursor: {body}"))?;
    Ok((body, cursor))
}

/// Publishes the topic's own name as payload, at QoS 0.
async fn publish(port: u16, namespace: &str, topic: &str) -> Result<(), Failed> {
    let path = format!("/publish/{topic}?namespace={namespace}");
    let response = post(port, &path, &[], topic.as_bytes()).await?;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    Ok(())
}

/// Returns the topics of the messages in a long poll's JSON, in order.
fn topics(body: &str) -> Vec<String> {
    body.split(r#""topic":""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

fn sequence(id: &str) -> Result<u64, Failed> {
    id.parse()
        .map_err(|_| format!("session event id {id:?} is not a sequence number").into())
}

/// Counts the `broker started` lines of a namespace: one each time the
/// object builds its broker.
fn broker_starts(log: &str, namespace: &str) -> usize {
    crate::broker_starts(log, namespace).len()
}

/// With a limit of three publish requests per client a minute, a client
/// that exceeds it gets 429 with `Retry-After`, while a client with another
/// token still publishes.
fn publish_rate_limit_per_client() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start_with_rate_limit(
        persist.path(),
        "HTTP_PUBLISH_RATE_LIMITER",
        "simple = { limit = 3, period = 60 }",
    );
    let port = server.port();
    run(async move {
        let busy = format!("Bearer {}", client_token("rate-busy", "ratetest/#")?);
        let quiet = format!("Bearer {}", client_token("rate-quiet", "ratetest/#")?);
        let path = "/publish/ratetest/a";

        // The runtime counts in windows of the period, so a window may
        // restart once during the loop. A fourth request within one window
        // is rejected in any case.
        let mut statuses = Vec::new();
        let mut limited = None;
        for _ in 0..8 {
            let response = request(port, "POST", path, &[("Authorization", &busy)], b"x").await?;
            statuses.push(response.status);
            if response.status == 429 {
                limited = Some(response);
                break;
            }
        }
        let limited = limited.ok_or_else(|| format!("never limited: {statuses:?}"))?;
        assert!(
            statuses[..3].iter().all(|&status| status == 200),
            "{statuses:?}"
        );
        assert_eq!(limited.header("Retry-After"), Some("10"));
        let message = limited.text();
        assert!(message.contains("too many publish requests"), "{message}");
        assert!(message.contains("rate-busy"), "{message}");

        let other = request(port, "POST", path, &[("Authorization", &quiet)], b"x").await?;
        assert_eq!(other.status, 200, "another client: {}", other.text());
        let anonymous = post(port, path, &[], b"x").await?;
        assert_eq!(
            anonymous.status,
            200,
            "an anonymous client: {}",
            anonymous.text()
        );
        Ok(())
    })
}
