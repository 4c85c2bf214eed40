//! The broker calls behind the R2 archive: retained import, the routed
//! feed the audit log reads, and the scheduled upkeep.

mod harness;

use broker::archive::{MessageRecord, UpkeepReport};
use broker::{Config, ExternalPublishError};
use codec::{ProtocolVersion::V3_1_1, ProtocolVersion::V5, QoS};
use harness::{publish_packet, Harness};

fn retained_record(topic: &str, payload: &str, expires_at_ms: Option<u64>) -> broker::Message {
    let line = serde_json::json!({
        "topic": topic,
        "payload_base64": base64_of(payload),
        "qos": 1,
        "retain": true,
        "expires_at_ms": expires_at_ms,
    })
    .to_string();
    let records = broker::archive::parse_ndjson(&line).unwrap();
    records[0].to_message().unwrap()
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn import_sets_retained_without_delivery() {
    let mut h = Harness::new();
    let online = h.connect("online", V5);
    h.subscribe(online, "plant/#", QoS::AtLeastOnce);

    let imported = h
        .broker
        .import_retained(retained_record("plant/a", "1", None), h.now);
    h.pump();
    assert_eq!(imported, Ok(true));
    assert_eq!(h.rows_of_kind("retained"), 1);
    h.assert_silent(online);

    let late = h.connect("late", V3_1_1);
    h.subscribe(late, "plant/#", QoS::AtLeastOnce);
    let received = h.expect_publish(late);
    assert_eq!(received.topic, "plant/a");
    assert_eq!(&received.payload[..], b"1");
    assert!(received.retain);
}

#[test]
fn import_skips_expired_and_rejects_sys() {
    let mut h = Harness::new();
    let expired = retained_record("plant/old", "x", Some(h.now - 1));
    assert_eq!(h.broker.import_retained(expired, h.now), Ok(false));
    let system = retained_record("$SYS/x", "x", None);
    assert_eq!(
        h.broker.import_retained(system, h.now),
        Err(ExternalPublishError::SystemTopic)
    );
    h.pump();
    assert_eq!(h.rows_of_kind("retained"), 0);
}

#[test]
fn routed_feed_sees_publish_without_subscriber() {
    let mut h = Harness::new();
    h.broker.set_observe_routed(true);
    let publisher = h.connect("publisher", V5);
    h.publish_qos1(publisher, "nobody/listens", "hello", false);

    // Presence events under $SYS come first.
    let routed = std::iter::from_fn(|| h.broker.poll_routed())
        .find(|message| !message.topic.starts_with("$SYS/"))
        .expect("routed message");
    assert_eq!(routed.topic, "nobody/listens");
    let record = MessageRecord::from_message(&routed, Some(1), Some(h.now));
    assert_eq!(record.payload_base64, base64_of("hello"));
    assert_eq!(record.qos, 1);
}

#[test]
fn upkeep_removes_expired_retained() {
    let mut h = Harness::new();
    let mut short = publish_packet("state/short", "x", QoS::AtMostOnce, true);
    short.properties.message_expiry_interval = Some(1);
    h.broker.publish_external(short, h.now).unwrap();
    let long = publish_packet("state/long", "y", QoS::AtMostOnce, true);
    h.broker.publish_external(long, h.now).unwrap();
    h.pump();
    assert_eq!(h.rows_of_kind("retained"), 2);

    // Message expiry sets no deadline, so only the upkeep removes the row.
    h.advance(2_000);
    assert_eq!(h.rows_of_kind("retained"), 2);
    let report = h.broker.run_upkeep(h.now);
    h.pump();
    assert_eq!(
        report,
        UpkeepReport {
            expired_retained: 1,
            ..UpkeepReport::default()
        }
    );
    assert_eq!(h.rows_of_kind("retained"), 1);
    assert_eq!(h.broker.retained_count(), 1);
    let metrics = h.broker.metrics();
    assert_eq!(metrics.upkeep_runs, 1);
    assert_eq!(metrics.upkeep_expired_retained, 1);
    assert!(metrics
        .to_prometheus("n")
        .contains("mqtt_upkeep_expired_retained_total{namespace=\"n\"} 1"));
}

#[test]
fn upkeep_ends_session_a_lost_alarm_left() {
    let config = Config {
        session_expiry_maximum: 1,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    let conn = h.connect_session("sleeper", V3_1_1, false);
    h.disconnect(conn);
    assert_eq!(h.broker.session_count(), 1);

    // The clock moves past the expiry without the alarm firing.
    h.now += 5_000;
    let report = h.broker.run_upkeep(h.now);
    h.pump();
    assert_eq!(report.expired_sessions, 1);
    assert_eq!(h.broker.session_count(), 0);
    assert_eq!(h.rows_of_kind("session"), 0);
    h.broker.record_audit_objects_deleted(3);
    assert_eq!(h.broker.metrics().upkeep_audit_objects_deleted, 3);
}
