//! MQTT 3.1 and 3.1.1 behaviour of one namespace: connecting, keep alive,
//! subscriptions, QoS 0 and 1, retained messages, takeover and hibernation.

mod harness;

use codec::{
    Packet, PacketId, ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, PubAck, QoS, ReasonCode,
    Unsubscribe,
};
use harness::{connect_packet, pkid, publish_packet, Event, Harness};

#[test]
fn connect_gets_connack_accepted() {
    let mut h = Harness::new();
    let (conn, connack) = h.connect_with(connect_packet("c1", V3_1_1, true));
    assert_eq!(connack.reason, ReasonCode::Success);
    assert!(!connack.session_present);
    assert!(!h.is_closed(conn));
    assert_eq!(h.broker.connection_count(), 1);
}

#[test]
fn mqtt31_connect_is_accepted() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1);
    h.send(conn, Packet::PingReq);
    assert_eq!(h.next(conn), Some(Packet::PingResp));
}

#[test]
fn unknown_protocol_level_rejected() {
    let mut h = Harness::new();
    let conn = h.open();
    // CONNECT, protocol "MQTT" level 6, Clean Session, keep alive 0, id "c".
    let connect = [
        0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 0, 0, 1, b'c',
    ];
    h.send_bytes(conn, &connect);
    match h.next(conn) {
        Some(Packet::ConnAck(connack)) => {
            assert_eq!(connack.reason.to_v3_connack(), 0x01);
            assert!(!connack.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(h.is_closed(conn));
}

#[test]
fn empty_id_without_clean_session_rejected() {
    let mut h = Harness::new();
    let (conn, connack) = h.connect_with(connect_packet("", V3_1_1, false));
    assert_eq!(connack.reason.to_v3_connack(), 0x02);
    assert!(h.is_closed(conn));
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn empty_id_with_clean_session_generated() {
    let mut h = Harness::new();
    let first = h.connect("", V3_1_1);
    let second = h.connect("", V3_1_1);
    assert_eq!(
        h.broker.session_count(),
        2,
        "each empty id gets its own session"
    );
    h.subscribe(first, "t", QoS::AtMostOnce);
    h.publish(second, "t", "hello", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(first).payload, "hello");
    assert!(!h.is_closed(second));
}

#[test]
fn first_packet_must_be_connect() {
    let mut h = Harness::new();
    let conn = h.open();
    h.send_bytes(conn, &[0xC0, 0x00]);
    assert!(h.is_closed(conn));
    h.assert_silent(conn);
}

#[test]
fn second_connect_closes_connection() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    h.send(conn, Packet::Connect(connect_packet("c1", V3_1_1, true)));
    assert!(h.is_closed(conn));
    h.assert_silent(conn);
}

#[test]
fn connect_timeout_closes_silent_socket() {
    let mut h = Harness::new();
    let conn = h.open();
    assert_eq!(
        h.broker.next_timeout(),
        Some(h.now + h.config.connect_timeout_ms)
    );
    h.advance(h.config.connect_timeout_ms - 1);
    assert!(!h.is_closed(conn));
    h.advance(1);
    assert!(h.is_closed(conn));
    assert_eq!(h.broker.next_timeout(), None);
}

#[test]
fn pingreq_gets_pingresp() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    h.send(conn, Packet::PingReq);
    assert_eq!(h.next(conn), Some(Packet::PingResp));
}

#[test]
fn keepalive_expiry_closes_connection() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.keep_alive = 10;
    let (conn, _) = h.connect_with(connect);
    h.advance(14_999);
    assert!(!h.is_closed(conn));
    h.advance(1);
    assert!(h.is_closed(conn), "closed after 1.5 times the keep alive");
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn keepalive_counts_from_last_packet() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.keep_alive = 10;
    let (conn, _) = h.connect_with(connect);
    h.advance(10_000);
    h.send(conn, Packet::PingReq);
    assert_eq!(h.next(conn), Some(Packet::PingResp));
    h.advance(14_999);
    assert!(!h.is_closed(conn));
    h.advance(1);
    assert!(h.is_closed(conn));
}

#[test]
fn keepalive_zero_sets_no_deadline() {
    let mut h = Harness::new();
    h.connect("c1", V3_1_1);
    assert_eq!(h.broker.next_timeout(), None);
}

#[test]
fn wildcard_subscriptions_match() {
    let mut h = Harness::new();
    let plus = h.connect("plus", V3_1_1);
    let hash = h.connect("hash", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(plus, "a/+/c", QoS::AtMostOnce);
    h.subscribe(hash, "a/#", QoS::AtMostOnce);

    h.publish(publisher, "a/b/c", "1", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(plus).topic, "a/b/c");
    assert_eq!(h.expect_publish(hash).topic, "a/b/c");

    h.publish(publisher, "a", "2", QoS::AtMostOnce, false);
    h.assert_silent(plus);
    assert_eq!(
        h.expect_publish(hash).payload,
        "2",
        "a/# matches its parent a"
    );

    h.publish(publisher, "b/c", "3", QoS::AtMostOnce, false);
    h.assert_silent(plus);
    h.assert_silent(hash);
}

#[test]
fn overlapping_subscriptions_deliver_once() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "a/#", QoS::AtMostOnce);
    h.subscribe(sub, "a/+", QoS::AtLeastOnce);
    h.publish(sub, "a/b", "x", QoS::AtLeastOnce, false);
    let mut publishes = 0;
    while let Some(packet) = h.next(sub) {
        if let Packet::Publish(publish) = packet {
            assert_eq!(publish.qos, QoS::AtLeastOnce, "highest granted QoS");
            publishes += 1;
        }
    }
    assert_eq!(publishes, 1);
}

#[test]
fn suback_grants_requested_qos() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    assert_eq!(
        h.subscribe(conn, "a", QoS::ExactlyOnce).reasons,
        [ReasonCode::GrantedQoS2]
    );
    assert_eq!(
        h.subscribe(conn, "b", QoS::AtLeastOnce).reasons,
        [ReasonCode::GrantedQoS1]
    );
}

#[test]
fn invalid_filter_closes_connection() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    let filter = codec::SubscribeFilter::new("a/#/b", QoS::AtMostOnce);
    let subscribe = codec::Subscribe {
        pkid: pkid(1),
        filters: vec![filter],
        properties: Default::default(),
    };
    h.send(conn, Packet::Subscribe(subscribe));
    assert!(h.is_closed(conn));
    h.assert_silent(conn);
}

#[test]
fn unsubscribe_stops_delivery() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    let unsubscribe = Unsubscribe {
        pkid: pkid(2),
        filters: vec!["t".into()],
        properties: Default::default(),
    };
    h.send(sub, Packet::Unsubscribe(unsubscribe));
    match h.next(sub) {
        Some(Packet::UnsubAck(unsuback)) => assert_eq!(unsuback.pkid, pkid(2)),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    h.publish(sub, "t", "x", QoS::AtMostOnce, false);
    h.assert_silent(sub);
    assert_eq!(h.rows_of_kind("subscription"), 0);
}

#[test]
fn qos0_publish_is_delivered() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.publish(publisher, "t", "x", QoS::AtMostOnce, false);
    h.assert_silent(publisher);
    let publish = h.expect_publish(sub);
    assert_eq!(publish.qos, QoS::AtMostOnce);
    assert_eq!(publish.pkid, None);
    assert_eq!(publish.payload, "x");
}

#[test]
fn qos1_publish_stored_before_puback() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.events.clear();
    h.publish_qos1(publisher, "t", "x", true);

    let position = |wanted: &dyn Fn(&Event) -> bool| h.events.iter().position(wanted);
    let stored_message =
        position(&|e| matches!(e, Event::Stored { kind, .. } if kind == "message"));
    let stored_retained =
        position(&|e| matches!(e, Event::Stored { kind, .. } if kind == "retained"));
    let puback = position(
        &|e| matches!(e, Event::Sent { conn, packet } if *conn == publisher && matches!(**packet, Packet::PubAck(_))),
    );
    let delivered = position(
        &|e| matches!(e, Event::Sent { conn, packet } if *conn == sub && matches!(**packet, Packet::Publish(_))),
    );
    assert!(stored_message.is_some());
    assert!(stored_retained.is_some());
    assert!(puback.is_some());
    assert!(stored_retained < puback, "retained row before PUBACK");
    assert!(
        stored_message < delivered,
        "in-flight row before the delivery"
    );
    assert!(stored_message < puback, "in-flight row before PUBACK");
}

#[test]
fn qos1_delivery_uses_packet_id_until_puback() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.publish_qos1(publisher, "t", "1", false);
    h.publish_qos1(publisher, "t", "2", false);

    let first = h.expect_publish(sub);
    let second = h.expect_publish(sub);
    assert_eq!(first.qos, QoS::AtLeastOnce);
    assert!(first.pkid.is_some());
    assert_ne!(first.pkid, second.pkid, "packet ids in use are not reused");
    assert_eq!(h.rows_of_kind("message"), 2);

    for publish in [first, second] {
        let pkid: PacketId = publish.pkid.unwrap();
        h.send(sub, Packet::PubAck(PubAck::new(pkid)));
    }
    assert_eq!(
        h.rows_of_kind("message"),
        0,
        "acknowledged messages are deleted"
    );
}

#[test]
fn clean_session_deliveries_write_no_rows() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.events.clear();
    h.publish_qos1(publisher, "t", "x", false);

    let publish = h.expect_publish(sub);
    h.send(sub, Packet::PubAck(PubAck::new(publish.pkid.unwrap())));
    let writes = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Stored { .. }))
        .count();
    assert_eq!(
        writes, 0,
        "a session that ends with its connection never resends"
    );
}

#[test]
fn delivery_qos_is_min_of_publish_and_granted() {
    let mut h = Harness::new();
    let low = h.connect("low", V3_1_1);
    let high = h.connect("high", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(low, "t", QoS::AtMostOnce);
    h.subscribe(high, "t", QoS::AtLeastOnce);

    h.publish_qos1(publisher, "t", "x", false);
    assert_eq!(h.expect_publish(low).qos, QoS::AtMostOnce);
    assert_eq!(h.expect_publish(high).qos, QoS::AtLeastOnce);

    h.publish(publisher, "t", "y", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(high).qos, QoS::AtMostOnce);
}

#[test]
fn retained_sent_to_new_subscription_with_original_topic() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V3_1_1);
    h.publish_qos1(publisher, "a/b", "kept", true);
    assert_eq!(h.broker.retained_count(), 1);

    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "a/+", QoS::AtLeastOnce);
    let publish = h.expect_publish(sub);
    assert_eq!(publish.topic, "a/b");
    assert_eq!(publish.payload, "kept");
    assert!(publish.retain);
    assert_eq!(publish.qos, QoS::AtLeastOnce);
}

#[test]
fn retained_replace_keeps_latest() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V3_1_1);
    h.publish(publisher, "t", "old", QoS::AtMostOnce, true);
    h.publish(publisher, "t", "new", QoS::AtMostOnce, true);
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    assert_eq!(h.expect_publish(sub).payload, "new");
    h.assert_silent(sub);
    assert_eq!(h.rows_of_kind("retained"), 1);
}

#[test]
fn retained_clear_with_empty_payload() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V3_1_1);
    h.publish(publisher, "t", "old", QoS::AtMostOnce, true);
    h.publish(publisher, "t", "", QoS::AtMostOnce, true);
    assert_eq!(h.broker.retained_count(), 0);
    assert_eq!(h.rows_of_kind("retained"), 0);
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    h.assert_silent(sub);
}

#[test]
fn forwarding_clears_retain_flag() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    h.publish(publisher, "t", "x", QoS::AtMostOnce, true);
    assert!(!h.expect_publish(sub).retain);
}

#[test]
fn disconnect_closes_connection_and_ends_clean_session() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    h.subscribe(conn, "t", QoS::AtLeastOnce);
    h.disconnect(conn);
    assert_eq!(h.broker.session_count(), 0);
    assert!(
        h.rows.is_empty(),
        "clean session leaves no rows: {:?}",
        h.rows.keys()
    );
}

#[test]
fn socket_close_ends_clean_session() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    h.close_socket(conn);
    assert_eq!(h.broker.connection_count(), 0);
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn takeover_closes_old_connection() {
    let mut h = Harness::new();
    let old = h.connect("c1", V3_1_1);
    let new = h.connect("c1", V3_1_1);
    assert!(h.is_closed(old));
    assert!(!h.is_closed(new));
    h.assert_silent(old);
}

#[test]
fn late_close_of_old_socket_keeps_new_session() {
    let mut h = Harness::new();
    let old = h.connect_session("c1", V3_1_1, false);
    let new = h.connect_session("c1", V3_1_1, false);
    h.subscribe(new, "t", QoS::AtMostOnce);
    h.close_socket(old);

    let publisher = h.connect("pub", V3_1_1);
    h.publish(publisher, "t", "x", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(new).payload, "x");
    assert_eq!(h.broker.session_count(), 2);
}

#[test]
fn restore_after_hibernation_keeps_subscriptions() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t/#", QoS::AtLeastOnce);
    h.publish_qos1(publisher, "t/kept", "retained", true);
    let first = h.expect_publish(sub);
    h.send(sub, Packet::PubAck(PubAck::new(first.pkid.unwrap())));

    h.hibernate();

    assert_eq!(h.broker.connection_count(), 2);
    assert_eq!(h.broker.session_count(), 2);
    h.publish_qos1(publisher, "t/live", "after", false);
    let publish = h.expect_publish(sub);
    assert_eq!(publish.topic, "t/live");
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    h.send(sub, Packet::PubAck(PubAck::new(publish.pkid.unwrap())));

    let late = h.connect("late", V3_1_1);
    h.subscribe(late, "t/kept", QoS::AtMostOnce);
    let retained = h.expect_publish(late);
    assert_eq!(retained.payload, "retained");
    assert!(retained.retain);
}

#[test]
fn restore_keeps_partial_packet() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);

    let mut bytes = bytes::BytesMut::new();
    let publish = publish_packet("t", "split", QoS::AtMostOnce, false);
    codec::encode(&Packet::Publish(publish), V3_1_1, &mut bytes);
    let (head, tail) = bytes.split_at(4);
    h.send_bytes(publisher, head);
    h.hibernate();
    h.send_bytes(publisher, tail);
    assert_eq!(h.expect_publish(sub).payload, "split");
}

#[test]
fn restore_keeps_keepalive_deadline() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.keep_alive = 10;
    let (conn, _) = h.connect_with(connect);
    let connected_at = h.now;
    h.advance(5_000);
    h.hibernate();
    assert_eq!(h.broker.next_timeout(), Some(connected_at + 15_000));
    h.advance(9_998);
    assert!(!h.is_closed(conn));
    h.advance(1);
    assert!(h.is_closed(conn));
}

#[test]
fn busy_connection_saves_record_once_per_quarter_keepalive() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.keep_alive = 20;
    let (conn, _) = h.connect_with(connect);
    let saved_after_connect = h.records_saved;

    // A quarter of the 20 s keep alive is 5 s: pings within it change only
    // the last-packet time, so no record is saved.
    for _ in 0..40 {
        h.advance(100);
        h.send(conn, Packet::PingReq);
    }
    assert_eq!(h.records_saved, saved_after_connect);

    h.advance(1_100);
    h.send(conn, Packet::PingReq);
    assert_eq!(h.records_saved, saved_after_connect + 1);
}

#[test]
fn restore_after_unsaved_packets_allows_a_keepalive() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.keep_alive = 20;
    let (conn, _) = h.connect_with(connect);
    let connected_at = h.now;
    h.advance(4_000);
    h.send(conn, Packet::PingReq);
    let last_packet = h.now;
    h.hibernate();

    // The record still has the CONNECT time, so the deadline comes up to a
    // quarter keep alive early, but never within one keep alive of the
    // last packet.
    let deadline = h.broker.next_timeout();
    assert_eq!(deadline, Some(connected_at + 30_000));
    assert!(deadline.is_some_and(|at| at >= last_packet + 20_000));
    h.advance(20_000);
    assert!(!h.is_closed(conn));
}

#[test]
fn restore_continues_connection_ids() {
    let mut h = Harness::new();
    let first = h.connect("c1", V3_1_1);
    h.hibernate();
    let second = h.open();
    assert!(
        second > first,
        "a new socket never reuses an open socket's id"
    );
}

#[test]
fn publish_to_sys_topic_is_dropped() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "$SYS/#", QoS::AtMostOnce);
    h.publish_qos1(sub, "$SYS/fake", "x", false);
    h.assert_silent(sub);
}

#[test]
fn publish_with_wildcard_topic_closes_connection() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    let mut bytes = bytes::BytesMut::new();
    let publish = publish_packet("a/+", "x", QoS::AtMostOnce, false);
    codec::encode(&Packet::Publish(publish), V3_1_1, &mut bytes);
    h.send_bytes(conn, &bytes);
    assert!(h.is_closed(conn));
}

#[test]
fn restore_closes_connection_with_lost_partial_packet() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    let mut bytes = bytes::BytesMut::new();
    let publish = publish_packet("t", &"x".repeat(20_000), QoS::AtMostOnce, false);
    codec::encode(&Packet::Publish(publish), V3_1_1, &mut bytes);
    h.send_bytes(conn, &bytes[..15_500]);
    assert!(!h.is_closed(conn));

    h.hibernate();
    assert!(
        h.is_closed(conn),
        "the rest of the packet could not be parsed"
    );
}

#[test]
fn restore_closes_connection_with_damaged_record() {
    let mut h = Harness::new();
    let conn = h.connect("c1", V3_1_1);
    h.records
        .insert(conn, bytes::Bytes::from_static(b"garbage"));
    h.hibernate();
    assert!(h.is_closed(conn));
    assert_eq!(h.broker.connection_count(), 0);
}
