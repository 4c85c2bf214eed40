//! The R2 archive under `wrangler dev`, which runs R2 and cron triggers
//! locally: the retained mirror with export, mirror reads and restore into
//! a fresh namespace, the audit log read back and replayed in order, and
//! the scheduled upkeep fired through `/__scheduled`.
//!
//! Each test starts its own server with short flush and retention settings,
//! anonymous access off and the admin API open to [`TEST_ADMIN_TOKEN`].
//! Waits poll the HTTP API until the expected state shows, with a timeout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use interop_tests::{Wrangler, TEST_ADMIN_TOKEN, TEST_HMAC_SECRET};
use libtest_mimic::Failed;
use rumqttc::{Packet, QoS};
use tokio::time::{sleep, Instant};

use crate::http::{request, HttpResponse};
use crate::mqtt::{run, Client};

pub const TESTS: &[(&str, crate::OwnServerTestFn)] = &[
    (
        "archive_retained_export_and_restore",
        retained_export_and_restore,
    ),
    ("archive_audit_range_and_replay", audit_range_and_replay),
    ("archive_upkeep_removes_expired", upkeep_removes_expired),
];

/// How long a test waits for R2 or the alarm to catch up.
const ARCHIVE_WAIT: Duration = Duration::from_secs(30);

/// Pause between two polls of a state that is still changing.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The cron expression of `wrangler.toml`, URL-encoded for `/__scheduled`.
const CRON: &str = "17+*+*+*+*";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Signs a token for `client_id` in `namespace` that may publish and
/// subscribe to every topic.
fn token(namespace: &str, client_id: &str) -> Result<String, Failed> {
    let claims = serde_json::json!({
        "sub": client_id,
        "exp": now_ms() / 1000 + 600,
        "mqtt_namespace": namespace,
        "mqtt_acl": {"publish": ["#"], "subscribe": ["#"]},
    });
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_HMAC_SECRET.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// Sends an admin request with the test's bearer secret.
async fn admin(port: u16, method: &str, path: &str, body: &[u8]) -> Result<HttpResponse, Failed> {
    let bearer = format!("Bearer {TEST_ADMIN_TOKEN}");
    request(port, method, path, &[("Authorization", &bearer)], body).await
}

/// Publishes over HTTP with a token of the namespace; fails unless 200.
async fn publish(
    port: u16,
    namespace: &str,
    topic: &str,
    payload: &[u8],
    extra: &[(&str, &str)],
) -> Result<(), Failed> {
    let bearer = format!("Bearer {}", token(namespace, "http-publisher")?);
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    let path = format!("/publish/{topic}?namespace={namespace}&qos=1&retain=true");
    let response = request(port, "POST", &path, &headers, payload).await?;
    if response.status != 200 {
        return Err(format!(
            "publish to {topic}: {} {}",
            response.status,
            response.text()
        )
        .into());
    }
    Ok(())
}

/// Polls `GET path` (admin) until `done` accepts the body; returns it.
async fn poll_admin(port: u16, path: &str, done: impl Fn(&str) -> bool) -> Result<String, Failed> {
    let deadline = Instant::now() + ARCHIVE_WAIT;
    loop {
        let response = admin(port, "GET", path, b"").await?;
        let text = response.text();
        if response.status == 200 && done(&text) {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "GET {path} within {ARCHIVE_WAIT:?}: last {} {text}",
                response.status
            )
            .into());
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Parses NDJSON into JSON values.
fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn payload_of(record: &serde_json::Value) -> String {
    use base64::Engine;
    let encoded = record["payload_base64"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Receives `count` retained PUBLISH packets; returns (topic, payload)
/// sorted by topic.
async fn retained_messages(
    client: &mut Client,
    count: usize,
) -> Result<Vec<(String, String)>, Failed> {
    let mut received = Vec::new();
    for _ in 0..count {
        let publish = client.expect_publish().await?;
        assert!(
            publish.retain,
            "expected a retained message, got {publish:?}"
        );
        received.push((
            publish.topic.clone(),
            String::from_utf8_lossy(&publish.payload).into_owned(),
        ));
    }
    received.sort();
    Ok(received)
}

/// Retained messages set and cleared over HTTP reach the R2 mirror. The
/// ingress exports them as NDJSON and reads one without the namespace.
/// Both import routes restore them into fresh namespaces, whose new
/// subscribers receive them as retained messages. After a restart, the
/// reads still work without building the namespace's object.
fn retained_export_and_restore() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start_with_audit(persist.path(), &[]);
    let port = server.port();
    run(async move {
        let source = "arch-src";
        publish(port, source, "plant/a", b"1", &[]).await?;
        publish(port, source, "plant/b", b"2", &[]).await?;
        publish(port, source, "plant/c", b"3", &[]).await?;
        publish(port, source, "plant/c", b"", &[]).await?;
        publish(port, source, "plant/a", b"1b", &[]).await?;

        let export_path = format!("/admin/retained/export?namespace={source}");
        let exported = poll_admin(port, &export_path, |text| {
            let records = lines(text);
            records.len() == 2 && records.iter().any(|r| payload_of(r) == "1b")
        })
        .await?;
        let records = lines(&exported);
        let topics: Vec<&str> = records.iter().filter_map(|r| r["topic"].as_str()).collect();
        assert_eq!(
            topics,
            ["plant/a", "plant/b"],
            "exported topics: {exported}"
        );
        assert_eq!(payload_of(&records[1]), "2");

        let mirror = admin(
            port,
            "GET",
            &format!("/admin/retained/mirror/plant/b?namespace={source}"),
            b"",
        )
        .await?;
        assert_eq!(mirror.status, 200, "{}", mirror.text());
        assert_eq!(mirror.text(), "2");
        assert_eq!(mirror.header("MQTT-QoS"), Some("1"));
        let cleared = admin(
            port,
            "GET",
            &format!("/admin/retained/mirror/plant/c?namespace={source}"),
            b"",
        )
        .await?;
        assert_eq!(
            cleared.status,
            404,
            "cleared topic still mirrored: {}",
            cleared.text()
        );

        let bad = admin(
            port,
            "POST",
            "/admin/retained/import?namespace=arch-bad",
            b"not json\n",
        )
        .await?;
        assert_eq!(bad.status, 400, "{}", bad.text());
        assert!(bad.text().contains("line 1"), "{}", bad.text());

        let body_import = admin(
            port,
            "POST",
            "/admin/retained/import?namespace=arch-dst1",
            exported.as_bytes(),
        )
        .await?;
        assert_eq!(body_import.status, 200, "{}", body_import.text());
        assert!(
            body_import.text().contains(r#""imported":2"#),
            "{}",
            body_import.text()
        );

        let mirror_import = admin(
            port,
            "POST",
            &format!("/admin/retained/import?namespace=arch-dst2&from={source}"),
            b"",
        )
        .await?;
        assert_eq!(mirror_import.status, 200, "{}", mirror_import.text());
        assert!(
            mirror_import.text().contains(r#""imported":2"#),
            "{}",
            mirror_import.text()
        );

        let expected = vec![
            ("plant/a".to_string(), "1b".to_string()),
            ("plant/b".to_string(), "2".to_string()),
        ];
        for namespace in ["arch-dst1", "arch-dst2"] {
            let path = format!("/mqtt/{namespace}?token={}", token(namespace, "restored")?);
            let mut subscriber = Client::connect(&server, &path, "restored").await?;
            subscriber.subscribe("plant/#", QoS::AtLeastOnce).await?;
            let received = retained_messages(&mut subscriber, 2).await?;
            assert_eq!(received, expected, "retained messages of {namespace}");
        }
        // The check after the restart below looks for this line.
        assert!(
            !crate::broker_starts(&server.log(), "arch-src").is_empty(),
            "no \"broker started\" line of arch-src in the log"
        );
        Ok(())
    })?;

    // A new runtime on the same storage has no object in memory, so the
    // export and the mirror read must come from R2 without building one.
    let restarted = Wrangler::start_with_audit(persist.path(), &[]);
    let port = restarted.port();
    run(async move {
        let export = admin(
            port,
            "GET",
            "/admin/retained/export?namespace=arch-src",
            b"",
        )
        .await?;
        assert_eq!(export.status, 200, "{}", export.text());
        assert_eq!(lines(&export.text()).len(), 2, "{}", export.text());
        let path = "/admin/retained/mirror/plant/b?namespace=arch-src";
        let mirror = admin(port, "GET", path, b"").await?;
        assert_eq!(mirror.text(), "2");
        Ok(())
    })?;
    let log = restarted.log();
    assert!(
        crate::broker_starts(&log, "arch-src").is_empty(),
        "an archive read built the namespace's object:\n{log}"
    );
    Ok(())
}

/// With audit on for `audit/#`, messages published over HTTP and MQTT are
/// flushed to R2 by count and by age, although none has a subscriber. The
/// range comes back in order, and a replay publishes it again, in order,
/// under a prefix.
fn audit_range_and_replay() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let audit = [
        ("enabled", "true"),
        ("filters", r#"["audit/#"]"#),
        ("flush_messages", "3"),
        ("flush_interval_secs", "1"),
    ];
    let server = Wrangler::start_with_audit(persist.path(), &audit);
    let port = server.port();
    run(async move {
        let namespace = "arch-audit";
        let from = now_ms();
        publish(port, namespace, "audit/x/1", b"m1", &[]).await?;
        publish(port, namespace, "other/t", b"not audited", &[]).await?;
        publish(port, namespace, "audit/x/2", b"m2", &[]).await?;
        let path = format!("/mqtt/{namespace}?token={}", token(namespace, "audit-pub")?);
        let mut publisher = Client::connect(&server, &path, "audit-pub").await?;
        for (topic, payload) in [("audit/y/3", "m3"), ("audit/x/4", "m4")] {
            publisher
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
            // The PUBACK orders this message before the next HTTP publish.
            publisher.expect(|p| matches!(p, Packet::PubAck(_))).await?;
        }
        publish(port, namespace, "audit/x/5", b"m5", &[]).await?;

        let range = format!("/admin/audit/range?namespace={namespace}&from={from}");
        let text = poll_admin(port, &range, |text| lines(text).len() >= 5).await?;
        let records = lines(&text);
        let payloads: Vec<String> = records.iter().map(payload_of).collect();
        assert_eq!(
            payloads,
            ["m1", "m2", "m3", "m4", "m5"],
            "audit range: {text}"
        );
        let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "sequences out of order: {seqs:?}"
        );
        let to = records[4]["time_ms"]
            .as_u64()
            .ok_or("record without time_ms")?
            + 1;

        let status = admin(
            port,
            "GET",
            &format!("/admin/audit?namespace={namespace}"),
            b"",
        )
        .await?;
        assert!(
            status.text().contains(r#""enabled":true"#),
            "{}",
            status.text()
        );

        let watcher_path = format!(
            "/mqtt/{namespace}?token={}",
            token(namespace, "replay-watch")?
        );
        let mut watcher = Client::connect(&server, &watcher_path, "replay-watch").await?;
        watcher.subscribe("replay/#", QoS::AtLeastOnce).await?;
        let replay =
            format!("/admin/audit/replay?namespace={namespace}&from={from}&to={to}&prefix=replay");
        let replayed = admin(port, "POST", &replay, b"").await?;
        assert_eq!(replayed.status, 200, "{}", replayed.text());
        assert!(
            replayed.text().contains(r#""replayed":5"#),
            "{}",
            replayed.text()
        );
        let mut received = Vec::new();
        while received.len() < 5 {
            match watcher.expect(|p| matches!(p, Packet::Publish(_))).await? {
                Packet::Publish(publish) => received.push((
                    publish.topic.clone(),
                    String::from_utf8_lossy(&publish.payload).into_owned(),
                )),
                _ => unreachable!("filtered on PUBLISH"),
            }
        }
        let expected: Vec<(String, String)> = [
            ("replay/audit/x/1", "m1"),
            ("replay/audit/x/2", "m2"),
            ("replay/audit/y/3", "m3"),
            ("replay/audit/x/4", "m4"),
            ("replay/audit/x/5", "m5"),
        ]
        .iter()
        .map(|(topic, payload)| (topic.to_string(), payload.to_string()))
        .collect();
        assert_eq!(received, expected, "replayed messages");

        let missing = admin(
            port,
            "POST",
            &format!("/admin/audit/replay?namespace={namespace}&from={from}"),
            b"",
        )
        .await?;
        assert_eq!(
            missing.status,
            400,
            "replay without a target: {}",
            missing.text()
        );

        // The admin API's policy replaces the settings for one namespace,
        // and a flush request writes its buffer at once.
        let other = "arch-audit-admin";
        let policy_path = format!("/admin/audit?namespace={other}");
        let invalid = admin(
            port,
            "PUT",
            &policy_path,
            br#"{"enabled":true,"filters":["a/#/b"]}"#,
        )
        .await?;
        assert_eq!(invalid.status, 400, "{}", invalid.text());
        let policy = br#"{"enabled":true,"filters":["only/#"]}"#;
        let set = admin(port, "PUT", &policy_path, policy).await?;
        assert_eq!(set.status, 200, "{}", set.text());
        publish(port, other, "audit/x/6", b"not audited here", &[]).await?;
        publish(port, other, "only/1", b"m6", &[]).await?;
        let flushed = admin(
            port,
            "POST",
            &format!("/admin/audit/flush?namespace={other}"),
            b"",
        )
        .await?;
        assert!(
            flushed.text().contains(r#""buffered_messages":0"#),
            "{}",
            flushed.text()
        );
        let range = format!("/admin/audit/range?namespace={other}&from={from}");
        let text = poll_admin(port, &range, |text| !lines(text).is_empty()).await?;
        let payloads: Vec<String> = lines(&text).iter().map(payload_of).collect();
        assert_eq!(payloads, ["m6"], "admin policy range: {text}");
        Ok(())
    })
}

/// Checks that a scheduled run removes an expired retained message and its
/// mirror, deletes audit objects past their retention, and reports the
/// counts in the metrics and the log. Expired sessions are covered by the
/// broker's own tests, because the alarm ends them before any upkeep.
fn upkeep_removes_expired() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let audit = [
        ("enabled", "true"),
        ("filters", r#"["cron/#"]"#),
        ("flush_messages", "1"),
        ("retention_secs", "1"),
    ];
    let server = Wrangler::start_with_audit(persist.path(), &audit);
    let port = server.port();
    run(async move {
        let namespace = "arch-cron";
        publish(
            port,
            namespace,
            "cron/short",
            b"expires",
            &[("MQTT-Message-Expiry", "1")],
        )
        .await?;
        publish(port, namespace, "cron/long", b"stays", &[]).await?;
        let export = format!("/admin/retained/export?namespace={namespace}");
        poll_admin(port, &export, |text| lines(text).len() == 2).await?;
        let range = format!("/admin/audit/range?namespace={namespace}&from=0");
        poll_admin(port, &range, |text| lines(text).len() == 2).await?;

        // Only the scheduled handler reaches a namespace's upkeep.
        let upkeep = format!("/admin/upkeep?namespace={namespace}");
        let outside = admin(port, "POST", &upkeep, b"").await?;
        assert_eq!(outside.status, 404, "{}", outside.text());

        let metrics = format!("/admin/metrics?namespace={namespace}");
        let deadline = Instant::now() + ARCHIVE_WAIT;
        let mut retained_removed = false;
        let mut audit_removed = false;
        while !(retained_removed && audit_removed) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "upkeep did not remove expired state within {ARCHIVE_WAIT:?}:\n{}",
                    server.log()
                )
                .into());
            }
            sleep(POLL_INTERVAL).await;
            let fired =
                request(port, "GET", &format!("/__scheduled?cron={CRON}"), &[], b"").await?;
            assert_eq!(fired.status, 200, "/__scheduled: {}", fired.text());
            let text = admin(port, "GET", &metrics, b"").await?.text();
            retained_removed |= counter(&text, "mqtt_upkeep_expired_retained_total") >= 1;
            audit_removed |= counter(&text, "mqtt_upkeep_audit_objects_deleted_total") >= 1;
        }

        let remaining = poll_admin(port, &export, |text| lines(text).len() == 1).await?;
        assert!(remaining.contains("cron/long"), "{remaining}");
        let audit_left = admin(port, "GET", &range, b"").await?;
        assert_eq!(lines(&audit_left.text()).len(), 0, "{}", audit_left.text());
        let log = server.log();
        assert!(
            log.contains("scheduled upkeep finished") && log.contains(r#""expired_retained":1"#),
            "no upkeep report in the log:\n{log}"
        );
        Ok(())
    })
}

/// Reads the value of an unlabelled-by-QoS counter from Prometheus text.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|line| line.starts_with(&format!("{name}{{")))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}
