//! Access from outside MQTT: HTTP publishes, retained reads, the routed
//! message feed, presence events, `$SYS/broker/` status, metrics and the
//! admin listing.

mod harness;

use broker::ExternalPublishError;
use bytes::Bytes;
use codec::{
    Packet, Properties, PropertyValues, ProtocolVersion::V3_1_1, ProtocolVersion::V5, QoS,
};
use harness::{publish_packet, Harness};

/// Publishes from outside and carries out the outputs.
fn publish_external(h: &mut Harness, publish: codec::Publish) -> Result<(), ExternalPublishError> {
    let result = h.broker.publish_external(publish, h.now);
    h.pump();
    result
}

#[test]
fn external_publish_reaches_subscribers_like_mqtt() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "ext/#", QoS::AtLeastOnce);

    let mut publish = publish_packet("ext/a", "hello", QoS::AtLeastOnce, false);
    publish.properties.content_type = Some("text/plain".into());
    publish.properties.user_properties = vec![("k".into(), "v".into())];
    publish_external(&mut h, publish).unwrap();

    let received = h.expect_publish(sub);
    assert_eq!(received.topic, "ext/a");
    assert_eq!(&received.payload[..], b"hello");
    assert_eq!(received.qos, QoS::AtLeastOnce);
    assert_eq!(
        received.properties.content_type.as_deref(),
        Some("text/plain")
    );
    assert_eq!(received.properties.user_properties.len(), 1);
}

#[test]
fn external_retained_publish_is_stored_before_return() {
    let mut h = Harness::new();
    let publish = publish_packet("ext/state", "on", QoS::AtLeastOnce, true);
    let result = h.broker.publish_external(publish, h.now);
    assert!(result.is_ok());
    // The storage write is among the outputs, ready before any response.
    h.pump();
    assert_eq!(h.rows_of_kind("retained"), 1);

    let late = h.connect("late", V3_1_1);
    h.subscribe(late, "ext/#", QoS::AtLeastOnce);
    let received = h.expect_publish(late);
    assert_eq!(&received.payload[..], b"on");
    assert!(received.retain);
}

#[test]
fn external_publish_rejections() {
    let config = broker::Config {
        max_qos: QoS::AtLeastOnce,
        retain_available: false,
        max_packet_size: 64,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let cases = [
        (
            publish_packet("a/+", "x", QoS::AtMostOnce, false),
            ExternalPublishError::InvalidTopic,
        ),
        (
            publish_packet("", "x", QoS::AtMostOnce, false),
            ExternalPublishError::InvalidTopic,
        ),
        (
            publish_packet("$SYS/x", "x", QoS::AtMostOnce, false),
            ExternalPublishError::SystemTopic,
        ),
        (
            publish_packet("a", "x", QoS::ExactlyOnce, false),
            ExternalPublishError::QoSNotSupported,
        ),
        (
            publish_packet("a", "x", QoS::AtMostOnce, true),
            ExternalPublishError::RetainNotSupported,
        ),
    ];
    for (publish, expected) in cases {
        assert_eq!(publish_external(&mut h, publish), Err(expected));
    }
    let big = publish_packet("a", &"x".repeat(100), QoS::AtMostOnce, false);
    assert!(matches!(
        publish_external(&mut h, big),
        Err(ExternalPublishError::PacketTooLarge { max: 64, .. })
    ));
}

#[test]
fn retained_reads_one_topic_and_pages() {
    let mut h = Harness::new();
    for topic in ["r/a", "r/b", "r/c", "other"] {
        publish_external(&mut h, publish_packet(topic, topic, QoS::AtMostOnce, true)).unwrap();
    }
    let one = h.broker.retained_message("r/b", h.now).unwrap();
    assert_eq!(&one.payload[..], b"r/b");
    assert!(h.broker.retained_message("r/none", h.now).is_none());

    let first = h.broker.retained_page("r/#", None, 2, h.now);
    let topics: Vec<&str> = first.messages.iter().map(|m| &*m.topic).collect();
    assert_eq!(topics, ["r/a", "r/b"]);
    assert_eq!(first.next_after.as_deref(), Some("r/b"));

    let second = h
        .broker
        .retained_page("r/#", first.next_after.as_deref(), 2, h.now);
    let topics: Vec<&str> = second.messages.iter().map(|m| &*m.topic).collect();
    assert_eq!(topics, ["r/c"]);
    assert_eq!(second.next_after, None);

    assert!(h
        .broker
        .retained_page("a/#/b", None, 10, h.now)
        .messages
        .is_empty());
}

#[test]
fn routed_feed_sees_every_message_once() {
    let mut h = Harness::new();
    h.broker.set_observe_routed(true);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "feed/x", "1", QoS::AtMostOnce, false);
    publish_external(
        &mut h,
        publish_packet("feed/y", "2", QoS::AtLeastOnce, true),
    )
    .unwrap();

    let mut topics = Vec::new();
    while let Some(message) = h.broker.poll_routed() {
        topics.push(message.topic.to_string());
    }
    assert!(topics.contains(&"feed/x".to_string()));
    assert!(topics.contains(&"feed/y".to_string()));
    assert_eq!(topics.iter().filter(|t| t.as_str() == "feed/x").count(), 1);

    h.broker.set_observe_routed(false);
    h.publish(publisher, "feed/z", "3", QoS::AtMostOnce, false);
    assert!(h.broker.poll_routed().is_none());
}

#[test]
fn presence_events_on_connect_and_disconnect() {
    let mut h = Harness::new();
    h.broker.set_namespace_name("site-1");
    let dashboard = h.connect("dashboard", V5);
    h.subscribe(dashboard, "$SYS/presence/#", QoS::AtMostOnce);

    let client = h.connect("device/1", V5);
    let connected = h.expect_publish(dashboard);
    assert_eq!(connected.topic, "$SYS/presence/device_1/connected");
    let event: serde_json::Value = serde_json::from_slice(&connected.payload).unwrap();
    assert_eq!(event["client_id"], "device/1");
    assert_eq!(event["namespace"], "site-1");
    assert_eq!(event["protocol"], "5.0");

    h.disconnect(client);
    let disconnected = h.expect_publish(dashboard);
    assert_eq!(disconnected.topic, "$SYS/presence/device_1/disconnected");
    let event: serde_json::Value = serde_json::from_slice(&disconnected.payload).unwrap();
    assert_eq!(event["clean"], true);
    assert_eq!(event["reason"], "client_disconnect");

    let lost = h.connect("lost", V5);
    h.expect_publish(dashboard);
    h.close_socket(lost);
    let event: serde_json::Value =
        serde_json::from_slice(&h.expect_publish(dashboard).payload).unwrap();
    assert_eq!(event["clean"], false);
    assert_eq!(event["reason"], "connection_lost");
}

#[test]
fn presence_events_not_matched_by_hash() {
    let mut h = Harness::new();
    let everything = h.connect("everything", V5);
    h.subscribe(everything, "#", QoS::AtMostOnce);
    let other = h.connect("other", V5);
    h.disconnect(other);
    h.assert_silent(everything);
}

#[test]
fn status_published_only_while_connected() {
    let config = broker::Config {
        sys_interval_secs: 10,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    assert_eq!(
        h.broker.next_timeout(),
        None,
        "an idle broker sets no deadline"
    );

    let watcher = h.connect("watcher", V5);
    h.subscribe(watcher, "$SYS/broker/#", QoS::AtMostOnce);
    assert_eq!(h.broker.next_timeout(), Some(h.now + 10_000));
    h.advance(10_000);
    let mut topics = Vec::new();
    while let Some(Packet::Publish(publish)) = h.next(watcher) {
        topics.push(publish.topic.to_string());
    }
    assert!(
        topics.contains(&"$SYS/broker/clients/connected".to_string()),
        "{topics:?}"
    );
    assert!(
        topics.contains(&"$SYS/broker/uptime".to_string()),
        "{topics:?}"
    );

    h.disconnect(watcher);
    assert_eq!(
        h.broker.next_timeout(),
        None,
        "no status deadline once every client left"
    );
}

#[test]
fn metrics_count_traffic_and_drops() {
    let config = broker::Config {
        max_queued_messages: 1,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let sub = h.connect_session("sub", V3_1_1, false);
    h.subscribe(sub, "m/#", QoS::AtLeastOnce);
    let publisher = h.connect("pub", V3_1_1);
    h.publish_qos1(publisher, "m/a", "abc", false);
    h.publish(publisher, "m/b", "de", QoS::AtMostOnce, false);

    let metrics = h.broker.metrics();
    assert_eq!(metrics.received.messages, [1, 1, 0]);
    assert_eq!(metrics.received.bytes, [2, 3, 0]);
    assert_eq!(metrics.sent.messages, [1, 1, 0]);
    assert_eq!(metrics.connected_clients, 2);
    assert_eq!(metrics.subscriptions, 1);
    assert_eq!(metrics.connects, 2);

    // Offline with a queue of one: the second QoS 1 message is dropped.
    h.close_socket(sub);
    h.publish_qos1(publisher, "m/c", "1", false);
    h.publish_qos1(publisher, "m/d", "2", false);
    let metrics = h.broker.metrics();
    assert_eq!(metrics.dropped_queue_full, 1);
    assert_eq!(metrics.disconnects, 1);
    assert!(metrics
        .to_prometheus("default")
        .contains("reason=\"queue_full\"} 1"));
}

#[test]
fn admin_lists_and_disconnects_clients() {
    let mut h = Harness::new();
    let conn = h.connect("admin-target", V5);
    h.subscribe(conn, "a/b", QoS::AtLeastOnce);

    let clients = h.broker.clients();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].client_id, "admin-target");
    assert!(clients[0].connected);
    assert_eq!(clients[0].protocol, Some("5.0"));
    let subscriptions = h.broker.client_subscriptions("admin-target").unwrap();
    assert_eq!(subscriptions[0].filter, "a/b");
    assert_eq!(subscriptions[0].qos, 1);

    assert!(h.broker.disconnect_client("admin-target", h.now));
    h.pump();
    assert!(h.is_closed(conn));
    match h.next(conn) {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, codec::ReasonCode::AdministrativeAction)
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert!(!h.broker.disconnect_client("admin-target", h.now));
    assert!(!h.broker.disconnect_client("nobody", h.now));
}

#[test]
fn external_publish_keeps_message_expiry() {
    let mut h = Harness::new();
    let mut publish = publish_packet("exp/a", "x", QoS::AtMostOnce, true);
    publish.properties = Properties::from(PropertyValues {
        message_expiry_interval: Some(5),
        ..PropertyValues::default()
    });
    publish.payload = Bytes::from_static(b"x");
    publish_external(&mut h, publish).unwrap();
    assert!(h.broker.retained_message("exp/a", h.now).is_some());
    h.advance(5_000);
    assert!(h.broker.retained_message("exp/a", h.now).is_none());
}
