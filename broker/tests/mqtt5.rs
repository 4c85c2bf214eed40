//! MQTT 5.0 behaviour: CONNACK properties, reason codes on errors, topic
//! aliases, message expiry, shared subscriptions, subscription options,
//! property forwarding and flow control.

mod harness;

use bytes::Bytes;
use codec::{
    Disconnect, Packet, Properties, PropertyValues, ProtocolVersion::V3_1_1, ProtocolVersion::V5,
    PubAck, QoS, ReasonCode, RetainHandling, SubscribeFilter,
};
use harness::{connect_packet, pkid, publish_packet, Harness};

fn expect_disconnect(h: &mut Harness, conn: broker::ConnId) -> ReasonCode {
    match h.next(conn) {
        Some(Packet::Disconnect(disconnect)) => disconnect.reason,
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

fn publish_with(h: &mut Harness, conn: broker::ConnId, topic: &str, properties: Properties) {
    let mut publish = publish_packet(topic, "x", QoS::AtMostOnce, false);
    publish.properties = properties;
    h.send(conn, Packet::Publish(publish));
}

#[test]
fn connack_properties_advertise_capabilities() {
    let config = broker::Config {
        max_qos: QoS::AtLeastOnce,
        retain_available: false,
        ..Default::default()
    };
    let mut h = Harness::with_config(config.clone());
    let (_, connack) = h.connect_with(connect_packet("c1", V5, true));
    let properties = connack.properties;
    assert_eq!(properties.receive_maximum, Some(config.receive_maximum));
    assert_eq!(properties.maximum_qos, Some(1));
    assert_eq!(properties.retain_available, Some(0));
    assert_eq!(
        properties.maximum_packet_size,
        Some(config.max_packet_size as u32)
    );
    assert_eq!(
        properties.topic_alias_maximum,
        Some(config.topic_alias_maximum)
    );
    assert_eq!(properties.wildcard_subscription_available, Some(1));
    assert_eq!(properties.subscription_identifier_available, Some(1));
    assert_eq!(properties.shared_subscription_available, Some(1));
    assert_eq!(
        properties.server_keep_alive, None,
        "client keep alive accepted"
    );
    assert_eq!(properties.assigned_client_identifier, None);
}

#[test]
fn empty_client_id_gets_assigned_identifier() {
    let mut h = Harness::new();
    let (_, connack) = h.connect_with(connect_packet("", V5, false));
    assert_eq!(connack.reason, ReasonCode::Success);
    let assigned = connack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("assigned id");
    assert!(!assigned.is_empty());
    assert_eq!(h.broker.session_count(), 1);
}

#[test]
fn max_keep_alive_sent_as_server_keep_alive() {
    let config = broker::Config {
        max_keep_alive: 60,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let mut connect = connect_packet("c1", V5, true);
    connect.keep_alive = 600;
    let (conn, connack) = h.connect_with(connect);
    assert_eq!(connack.properties.server_keep_alive, Some(60));
    h.advance(90_000);
    assert!(h.is_closed(conn));
    assert_eq!(
        expect_disconnect(&mut h, conn),
        ReasonCode::KeepAliveTimeout
    );
}

#[test]
fn takeover_sends_disconnect_session_taken_over() {
    let mut h = Harness::new();
    let old = h.connect("c1", V5);
    h.connect("c1", V5);
    assert_eq!(expect_disconnect(&mut h, old), ReasonCode::SessionTakenOver);
    assert!(h.is_closed(old));
}

#[test]
fn malformed_packet_gets_disconnect_with_reason() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V5);
    // PUBLISH with both QoS bits set, which is malformed (MQTT-3.3.1-4).
    h.send_bytes(conn, &[0x36, 0x04, 0x00, 0x01, b't', 0x00]);
    assert_eq!(expect_disconnect(&mut h, conn), ReasonCode::MalformedPacket);
    assert!(h.is_closed(conn));
}

#[test]
fn second_connect_gets_protocol_error() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V5);
    h.send(conn, Packet::Connect(connect_packet("c1", V5, true)));
    assert_eq!(expect_disconnect(&mut h, conn), ReasonCode::ProtocolError);
}

#[test]
fn topic_alias_resolves_and_is_not_forwarded() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    let publisher = h.connect("pub", V5);
    h.subscribe(sub, "t/alias", QoS::AtMostOnce);

    let set = Properties::from(PropertyValues {
        topic_alias: Some(1),
        ..PropertyValues::default()
    });
    publish_with(&mut h, publisher, "t/alias", set);
    let first = h.expect_publish(sub);
    assert_eq!(first.topic, "t/alias");
    assert_eq!(first.properties.topic_alias, None);

    let mut by_alias = publish_packet("", "y", QoS::AtMostOnce, false);
    by_alias.properties.topic_alias = Some(1);
    h.send(publisher, Packet::Publish(by_alias));
    let second = h.expect_publish(sub);
    assert_eq!(second.topic, "t/alias");
    assert_eq!(second.payload, "y");
    assert_eq!(second.properties.topic_alias, None);
}

#[test]
fn topic_alias_survives_hibernation() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    let publisher = h.connect("pub", V5);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    publish_with(
        &mut h,
        publisher,
        "t",
        Properties::from(PropertyValues {
            topic_alias: Some(2),
            ..PropertyValues::default()
        }),
    );
    h.expect_publish(sub);
    h.hibernate();
    publish_with(
        &mut h,
        publisher,
        "",
        Properties::from(PropertyValues {
            topic_alias: Some(2),
            ..PropertyValues::default()
        }),
    );
    assert_eq!(h.expect_publish(sub).topic, "t");
}

#[test]
fn topic_alias_above_maximum_gets_disconnect() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    let alias = h.config.topic_alias_maximum + 1;
    publish_with(
        &mut h,
        publisher,
        "t",
        Properties::from(PropertyValues {
            topic_alias: Some(alias),
            ..PropertyValues::default()
        }),
    );
    assert_eq!(
        expect_disconnect(&mut h, publisher),
        ReasonCode::TopicAliasInvalid
    );
    assert!(h.is_closed(publisher));
}

#[test]
fn subscription_identifier_from_client_gets_protocol_error() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    publish_with(
        &mut h,
        publisher,
        "t",
        Properties::from(PropertyValues {
            subscription_identifiers: vec![3],
            ..PropertyValues::default()
        }),
    );
    assert_eq!(
        expect_disconnect(&mut h, publisher),
        ReasonCode::ProtocolError
    );
    assert!(h.is_closed(publisher));
}

#[test]
fn unknown_topic_alias_gets_protocol_error() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    publish_with(
        &mut h,
        publisher,
        "",
        Properties::from(PropertyValues {
            topic_alias: Some(3),
            ..PropertyValues::default()
        }),
    );
    assert_eq!(
        expect_disconnect(&mut h, publisher),
        ReasonCode::ProtocolError
    );
}

#[test]
fn message_expiry_forwards_remaining_interval() {
    let mut h = Harness::new();
    let mut connect = connect_packet("sub", V5, true);
    connect.properties.session_expiry_interval = Some(600);
    let (sub, _) = h.connect_with(connect);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.disconnect(sub);

    let publisher = h.connect("pub", V5);
    let mut publish = publish_packet("t", "short", QoS::AtLeastOnce, false);
    publish.properties.message_expiry_interval = Some(10);
    h.send(publisher, Packet::Publish(publish.clone()));
    publish.payload = Bytes::from_static(b"long");
    publish.properties.message_expiry_interval = Some(100);
    h.send(publisher, Packet::Publish(publish));
    h.advance(20_000);

    let mut resume = connect_packet("sub", V5, false);
    resume.properties.session_expiry_interval = Some(600);
    let (sub, _) = h.connect_with(resume);
    let delivered = h.expect_publish(sub);
    assert_eq!(delivered.payload, "long", "the expired message is dropped");
    assert_eq!(delivered.properties.message_expiry_interval, Some(80));
    h.assert_silent(sub);
}

#[test]
fn shared_subscription_delivers_once_per_group() {
    let mut h = Harness::new();
    let first = h.connect("first", V5);
    let second = h.connect("second", V5);
    let plain = h.connect("plain", V5);
    let publisher = h.connect("pub", V5);
    h.subscribe(first, "$share/g/t/+", QoS::AtMostOnce);
    h.subscribe(second, "$share/g/t/+", QoS::AtMostOnce);
    h.subscribe(plain, "t/+", QoS::AtMostOnce);

    for _ in 0..4 {
        h.publish(publisher, "t/a", "x", QoS::AtMostOnce, false);
    }
    let count = |h: &mut Harness, conn| std::iter::from_fn(|| h.next(conn)).count();
    let (first_count, second_count) = (count(&mut h, first), count(&mut h, second));
    assert_eq!(
        first_count + second_count,
        4,
        "one delivery per message to the group"
    );
    assert!(
        first_count > 0 && second_count > 0,
        "deliveries rotate among members"
    );
    assert_eq!(count(&mut h, plain), 4);
}

#[test]
fn shared_subscription_gets_no_retained() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", "kept", QoS::AtMostOnce, true);
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "$share/g/t", QoS::AtMostOnce);
    h.assert_silent(sub);
}

#[test]
fn no_local_skips_own_messages() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V5);
    let mut filter = SubscribeFilter::new("t", QoS::AtMostOnce);
    filter.no_local = true;
    h.subscribe_with(conn, filter, Properties::default());
    h.publish(conn, "t", "x", QoS::AtMostOnce, false);
    h.assert_silent(conn);

    let other = h.connect("other", V5);
    h.publish(other, "t", "y", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(conn).payload, "y");
}

#[test]
fn retain_as_published_keeps_retain_flag() {
    let mut h = Harness::new();
    let kept = h.connect("kept", V5);
    let cleared = h.connect("cleared", V5);
    let mut filter = SubscribeFilter::new("t", QoS::AtMostOnce);
    filter.retain_as_published = true;
    h.subscribe_with(kept, filter, Properties::default());
    h.subscribe(cleared, "t", QoS::AtMostOnce);

    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", "x", QoS::AtMostOnce, true);
    assert!(h.expect_publish(kept).retain);
    assert!(!h.expect_publish(cleared).retain);
}

#[test]
fn retain_handling_controls_retained_on_subscribe() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", "kept", QoS::AtMostOnce, true);
    let sub = h.connect("sub", V5);

    let mut if_new = SubscribeFilter::new("t", QoS::AtMostOnce);
    if_new.retain_handling = RetainHandling::SendIfNew;
    h.subscribe_with(sub, if_new.clone(), Properties::default());
    assert_eq!(h.expect_publish(sub).payload, "kept", "new subscription");
    h.subscribe_with(sub, if_new, Properties::default());
    h.assert_silent(sub);

    let mut never = SubscribeFilter::new("t/#", QoS::AtMostOnce);
    never.retain_handling = RetainHandling::DoNotSend;
    h.subscribe_with(sub, never, Properties::default());
    h.assert_silent(sub);

    h.subscribe(sub, "t", QoS::AtMostOnce);
    assert_eq!(
        h.expect_publish(sub).payload,
        "kept",
        "Retain Handling 0 always sends"
    );
}

#[test]
fn subscription_identifiers_sent_with_deliveries() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "a/b", "kept", QoS::AtMostOnce, true);
    let sub = h.connect("sub", V5);
    let with_id = |id| {
        Properties::from(PropertyValues {
            subscription_identifiers: vec![id],
            ..PropertyValues::default()
        })
    };
    h.subscribe_with(
        sub,
        SubscribeFilter::new("a/+", QoS::AtMostOnce),
        with_id(7),
    );
    let retained = h.expect_publish(sub);
    assert_eq!(retained.properties.subscription_identifiers, [7]);
    h.subscribe_with(
        sub,
        SubscribeFilter::new("a/#", QoS::AtMostOnce),
        with_id(9),
    );
    h.expect_publish(sub);

    h.publish(publisher, "a/b", "live", QoS::AtMostOnce, false);
    let mut identifiers = h
        .expect_publish(sub)
        .properties
        .into_values()
        .subscription_identifiers;
    identifiers.sort();
    assert_eq!(identifiers, [7, 9]);
}

#[test]
fn publication_properties_forwarded_unchanged() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = h.connect("pub", V5);
    let properties = Properties::from(PropertyValues {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        ..PropertyValues::default()
    });
    let mut publish = publish_packet("t", "x", QoS::AtLeastOnce, false);
    publish.properties = properties.clone();
    h.send(publisher, Packet::Publish(publish));
    let delivered = h.expect_publish(sub);
    assert_eq!(delivered.properties, properties);
}

#[test]
fn client_receive_maximum_limits_inflight() {
    let mut h = Harness::new();
    let mut connect = connect_packet("sub", V5, true);
    connect.properties.receive_maximum = Some(1);
    let (sub, _) = h.connect_with(connect);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", "1", QoS::AtLeastOnce, false);
    h.publish(publisher, "t", "2", QoS::AtLeastOnce, false);

    let first = h.expect_publish(sub);
    h.assert_silent(sub);
    h.send(sub, Packet::PubAck(PubAck::new(first.pkid.unwrap())));
    assert_eq!(h.expect_publish(sub).payload, "2");
}

#[test]
fn inbound_receive_maximum_exceeded_gets_disconnect() {
    let config = broker::Config {
        receive_maximum: 1,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", "1", QoS::ExactlyOnce, false);
    assert!(matches!(h.next(publisher), Some(Packet::PubRec(_))));
    let mut second = publish_packet("t", "2", QoS::ExactlyOnce, false);
    second.pkid = Some(pkid(2));
    h.send(publisher, Packet::Publish(second));
    assert_eq!(
        expect_disconnect(&mut h, publisher),
        ReasonCode::ReceiveMaximumExceeded
    );
}

#[test]
fn message_too_big_for_subscriber_is_not_sent() {
    let mut h = Harness::new();
    let mut connect = connect_packet("sub", V5, true);
    connect.properties.maximum_packet_size = Some(64);
    let (sub, _) = h.connect_with(connect);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", &"x".repeat(100), QoS::AtLeastOnce, false);
    h.assert_silent(sub);
    assert_eq!(h.broker.dropped_messages(), 1);
    assert_eq!(h.rows_of_kind("message"), 0);

    h.publish(publisher, "t", "small", QoS::AtLeastOnce, false);
    assert_eq!(h.expect_publish(sub).payload, "small");
}

#[test]
fn packet_above_maximum_size_gets_disconnect() {
    let config = broker::Config {
        max_packet_size: 128,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", &"x".repeat(200), QoS::AtMostOnce, false);
    assert_eq!(
        expect_disconnect(&mut h, publisher),
        ReasonCode::PacketTooLarge
    );
}

#[test]
fn publish_above_maximum_qos_gets_disconnect() {
    let config = broker::Config {
        max_qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", "x", QoS::ExactlyOnce, false);
    assert_eq!(
        expect_disconnect(&mut h, publisher),
        ReasonCode::QoSNotSupported
    );
}

#[test]
fn retain_when_unavailable_gets_disconnect() {
    let config = broker::Config {
        retain_available: false,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "t", "x", QoS::AtMostOnce, true);
    assert_eq!(
        expect_disconnect(&mut h, publisher),
        ReasonCode::RetainNotSupported
    );
}

#[test]
fn publish_to_sys_gets_not_authorized() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "$SYS/x", "x", QoS::AtLeastOnce, false);
    match h.next(publisher) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[test]
fn wildcard_first_filter_skips_dollar_topics() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "$internal/x", "x", QoS::AtMostOnce, false);
    h.assert_silent(sub);
}

#[test]
fn unsubscribe_reports_missing_subscription() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V5);
    h.subscribe(conn, "a", QoS::AtMostOnce);
    let unsubscribe = codec::Unsubscribe {
        pkid: pkid(3),
        filters: vec!["a".into(), "b".into()],
        properties: Default::default(),
    };
    h.send(conn, Packet::Unsubscribe(unsubscribe));
    match h.next(conn) {
        Some(Packet::UnsubAck(unsuback)) => assert_eq!(
            unsuback.reasons,
            [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
        ),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

#[test]
fn disconnect_cannot_set_expiry_on_ending_session() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V5);
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(60);
    h.send(conn, Packet::Disconnect(disconnect));
    assert_eq!(expect_disconnect(&mut h, conn), ReasonCode::ProtocolError);
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn disconnect_can_shorten_session_expiry() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V5, true);
    connect.properties.session_expiry_interval = Some(600);
    let (conn, _) = h.connect_with(connect);
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(0);
    h.send(conn, Packet::Disconnect(disconnect));
    assert!(h.is_closed(conn));
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn mqtt311_subscriber_gets_no_properties() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    let publisher = h.connect("pub", V5);
    let properties = Properties::from(PropertyValues {
        content_type: Some("a".into()),
        ..PropertyValues::default()
    });
    publish_with(&mut h, publisher, "t", properties);
    let delivered = h.expect_publish(sub);
    assert_eq!(delivered.properties, Properties::default());
}

#[test]
fn expired_retained_message_not_sent() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    let mut publish = publish_packet("t", "brief", QoS::AtMostOnce, true);
    publish.properties.message_expiry_interval = Some(5);
    h.send(publisher, Packet::Publish(publish));
    h.advance(5_000);

    let sub = h.connect("sub", V5);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    h.assert_silent(sub);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    h.assert_silent(sub);

    h.hibernate();
    assert_eq!(h.broker.retained_count(), 0);
    assert_eq!(h.rows_of_kind("retained"), 0, "the expired row is deleted");
}
