//! QoS 2 in both directions, persistent sessions with queues, session
//! expiry and will messages.

mod harness;

use codec::{
    Disconnect, Packet, ProtocolVersion::V3_1_1, ProtocolVersion::V5, PubAck, PubComp, PubRec,
    PubRel, QoS, ReasonCode,
};
use harness::{connect_packet, pkid, publish_packet, will, Harness};

#[test]
fn qos2_inbound_flow_delivers_once() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);

    h.publish(publisher, "t", "x", QoS::ExactlyOnce, false);
    assert_eq!(
        h.next(publisher),
        Some(Packet::PubRec(PubRec::new(pkid(1))))
    );
    assert_eq!(h.expect_publish(sub).payload, "x");
    assert_eq!(h.rows_of_kind("incoming_qos2"), 1);

    let mut again = publish_packet("t", "x", QoS::ExactlyOnce, false);
    again.dup = true;
    h.send(publisher, Packet::Publish(again));
    assert_eq!(
        h.next(publisher),
        Some(Packet::PubRec(PubRec::new(pkid(1))))
    );
    h.assert_silent(sub);

    h.send(publisher, Packet::PubRel(PubRel::new(pkid(1))));
    assert_eq!(
        h.next(publisher),
        Some(Packet::PubComp(PubComp::new(pkid(1))))
    );
    assert_eq!(h.rows_of_kind("incoming_qos2"), 0);

    // After PUBREL the packet id is free and a new message is delivered.
    h.publish(publisher, "t", "y", QoS::ExactlyOnce, false);
    assert_eq!(h.expect_publish(sub).payload, "y");
}

#[test]
fn qos2_inbound_duplicate_detected_after_hibernation() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    h.publish(publisher, "t", "x", QoS::ExactlyOnce, false);
    h.next(publisher);
    h.expect_publish(sub);

    h.hibernate();
    h.publish(publisher, "t", "x", QoS::ExactlyOnce, false);
    assert_eq!(
        h.next(publisher),
        Some(Packet::PubRec(PubRec::new(pkid(1))))
    );
    h.assert_silent(sub);
}

#[test]
fn qos2_outbound_flow_completes() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    h.publish(publisher, "t", "x", QoS::ExactlyOnce, false);

    let publish = h.expect_publish(sub);
    assert_eq!(publish.qos, QoS::ExactlyOnce);
    let id = publish.pkid.unwrap();
    h.send(sub, Packet::PubRec(PubRec::new(id)));
    assert_eq!(h.next(sub), Some(Packet::PubRel(PubRel::new(id))));
    assert_eq!(h.rows_of_kind("message"), 1, "released state is stored");
    h.send(sub, Packet::PubComp(PubComp::new(id)));
    assert_eq!(h.rows_of_kind("message"), 0);
}

#[test]
fn qos2_pubrel_resent_after_reconnect() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    h.publish(publisher, "t", "x", QoS::ExactlyOnce, false);
    let id = h.expect_publish(sub).pkid.unwrap();
    h.send(sub, Packet::PubRec(PubRec::new(id)));
    assert_eq!(h.next(sub), Some(Packet::PubRel(PubRel::new(id))));
    h.close_socket(sub);

    h.hibernate();
    let sub = h.connect_session("sub", V3_1_1, false);
    assert_eq!(h.next(sub), Some(Packet::PubRel(PubRel::new(id))));
    h.assert_silent(sub);
}

#[test]
fn persistent_session_queues_messages_while_offline() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.disconnect(sub);
    assert_eq!(h.broker.session_count(), 1);

    let publisher = h.connect("pub", V3_1_1);
    for payload in ["1", "2", "3"] {
        h.publish_qos1(publisher, "t", payload, false);
    }
    h.publish(publisher, "t", "qos0", QoS::AtMostOnce, false);
    assert_eq!(
        h.rows_of_kind("message"),
        3,
        "QoS 0 is not queued by default"
    );

    let (sub, connack) = h.connect_with(connect_packet("sub", V3_1_1, false));
    assert!(connack.session_present);
    for payload in ["1", "2", "3"] {
        let publish = h.expect_publish(sub);
        assert_eq!(publish.payload, payload);
        assert!(!publish.dup, "first sending of a queued message");
    }
    h.assert_silent(sub);
}

#[test]
fn unacknowledged_messages_resent_with_dup_before_queue() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.publish_qos1(publisher, "t", "first", false);
    let first = h.expect_publish(sub);
    h.close_socket(sub);
    h.publish_qos1(publisher, "t", "second", false);

    h.hibernate();
    let sub = h.connect_session("sub", V3_1_1, false);
    let resent = h.expect_publish(sub);
    assert_eq!(resent.payload, "first");
    assert!(resent.dup);
    assert_eq!(resent.pkid, first.pkid);
    let queued = h.expect_publish(sub);
    assert_eq!(queued.payload, "second");
    assert!(!queued.dup);
    assert_ne!(queued.pkid, first.pkid);
}

#[test]
fn session_present_matches_stored_session() {
    let mut h = Harness::new();
    let (conn, connack) = h.connect_with(connect_packet("c1", V3_1_1, false));
    assert!(!connack.session_present, "no session existed");
    h.disconnect(conn);

    let (conn, connack) = h.connect_with(connect_packet("c1", V3_1_1, false));
    assert!(connack.session_present, "session resumed");
    h.disconnect(conn);

    let (conn, connack) = h.connect_with(connect_packet("c1", V3_1_1, true));
    assert!(!connack.session_present, "clean session discards it");
    h.disconnect(conn);

    let (_, connack) = h.connect_with(connect_packet("c1", V3_1_1, false));
    assert!(
        !connack.session_present,
        "the clean session ended at disconnect"
    );
}

#[test]
fn clean_session_discards_stored_subscriptions() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.disconnect(sub);
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.publish_qos1(publisher, "t", "x", false);
    h.assert_silent(sub);
}

#[test]
fn session_expiry_ends_offline_session() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V5, true);
    connect.properties.session_expiry_interval = Some(60);
    let (conn, _) = h.connect_with(connect);
    h.subscribe(conn, "t", QoS::AtLeastOnce);
    h.disconnect(conn);
    assert_eq!(h.broker.next_timeout(), Some(h.now + 60_000));

    h.hibernate(); // moves the clock 1 ms
    h.advance(59_998);
    assert_eq!(h.broker.session_count(), 1);
    h.advance(1);
    assert_eq!(h.broker.session_count(), 0);
    assert!(h.rows.is_empty(), "rows left: {:?}", h.rows.keys());
}

#[test]
fn session_expiry_maximum_caps_requested_expiry() {
    let config = broker::Config {
        session_expiry_maximum: 10,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let mut connect = connect_packet("c1", V5, true);
    connect.properties.session_expiry_interval = Some(3600);
    let (conn, connack) = h.connect_with(connect);
    assert_eq!(connack.properties.session_expiry_interval, Some(10));
    h.disconnect(conn);
    h.advance(10_000);
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn offline_qos0_queued_when_configured() {
    let config = broker::Config {
        queue_qos0: true,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let sub = h.connect_session("sub", V3_1_1, false);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    h.disconnect(sub);
    let publisher = h.connect("pub", V3_1_1);
    h.publish(publisher, "t", "x", QoS::AtMostOnce, false);
    let sub = h.connect_session("sub", V3_1_1, false);
    assert_eq!(h.expect_publish(sub).payload, "x");
    assert_eq!(h.rows_of_kind("message"), 0);
}

#[test]
fn full_queue_drops_newest_and_counts() {
    let config = broker::Config {
        max_queued_messages: 2,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let sub = h.connect_session("sub", V3_1_1, false);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.disconnect(sub);
    let publisher = h.connect("pub", V3_1_1);
    for payload in ["1", "2", "3"] {
        h.publish_qos1(publisher, "t", payload, false);
    }
    assert_eq!(h.broker.dropped_messages(), 1);

    let sub = h.connect_session("sub", V3_1_1, false);
    assert_eq!(h.expect_publish(sub).payload, "1");
    assert_eq!(h.expect_publish(sub).payload, "2");
    h.assert_silent(sub);
}

#[test]
fn queue_byte_limit_drops_messages() {
    let config = broker::Config {
        max_queued_bytes: 10,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let sub = h.connect_session("sub", V3_1_1, false);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.disconnect(sub);
    let publisher = h.connect("pub", V3_1_1);
    h.publish_qos1(publisher, "t", "12345", false);
    h.publish_qos1(publisher, "t", "67890", false);
    assert_eq!(h.broker.dropped_messages(), 1);
}

#[test]
fn inflight_window_queues_until_acknowledged() {
    let config = broker::Config {
        max_inflight: 1,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.publish_qos1(publisher, "t", "1", false);
    h.publish_qos1(publisher, "t", "2", false);
    let first = h.expect_publish(sub);
    h.assert_silent(sub);
    h.send(sub, Packet::PubAck(PubAck::new(first.pkid.unwrap())));
    assert_eq!(h.expect_publish(sub).payload, "2");
}

#[test]
fn will_published_on_socket_close() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "will/#", QoS::AtLeastOnce);
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.will = Some(will("will/c1", "gone", QoS::AtLeastOnce, false));
    let (conn, _) = h.connect_with(connect);
    assert_eq!(h.rows_of_kind("will"), 1);

    h.close_socket(conn);
    let publish = h.expect_publish(sub);
    assert_eq!(publish.topic, "will/c1");
    assert_eq!(publish.payload, "gone");
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    assert_eq!(h.rows_of_kind("will"), 0);
}

#[test]
fn will_published_on_keepalive_expiry() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.keep_alive = 2;
    connect.will = Some(will("will", "timeout", QoS::AtMostOnce, false));
    let (conn, _) = h.connect_with(connect);
    h.advance(3_000);
    assert!(h.is_closed(conn));
    assert_eq!(h.expect_publish(sub).payload, "timeout");
}

#[test]
fn will_published_on_protocol_error() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.will = Some(will("will", "error", QoS::AtMostOnce, false));
    let (conn, _) = h.connect_with(connect.clone());
    h.send(conn, Packet::Connect(connect));
    assert!(h.is_closed(conn));
    assert_eq!(h.expect_publish(sub).payload, "error");
}

#[test]
fn will_not_published_on_normal_disconnect() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.will = Some(will("will", "no", QoS::AtMostOnce, false));
    let (conn, _) = h.connect_with(connect);
    h.disconnect(conn);
    h.assert_silent(sub);
    assert_eq!(h.rows_of_kind("will"), 0);
}

#[test]
fn will_published_on_disconnect_with_will_message() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let mut connect = connect_packet("c1", V5, true);
    connect.will = Some(will("will", "asked", QoS::AtMostOnce, false));
    let (conn, _) = h.connect_with(connect);
    let disconnect = Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        ..Default::default()
    };
    h.send(conn, Packet::Disconnect(disconnect));
    assert!(h.is_closed(conn));
    assert_eq!(h.expect_publish(sub).payload, "asked");
}

#[test]
fn will_retain_sets_retained_message() {
    let mut h = Harness::new();
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.will = Some(will("status/c1", "offline", QoS::AtLeastOnce, true));
    let (conn, _) = h.connect_with(connect);
    h.close_socket(conn);
    assert_eq!(h.broker.retained_count(), 1);

    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "status/+", QoS::AtLeastOnce);
    let publish = h.expect_publish(sub);
    assert_eq!(publish.payload, "offline");
    assert!(publish.retain);
}

fn delayed_will_connect(delay: u32, session_expiry: u32) -> codec::Connect {
    let mut connect = connect_packet("c1", V5, true);
    connect.properties.session_expiry_interval = Some(session_expiry);
    let mut last_will = will("will", "late", QoS::AtMostOnce, false);
    last_will.properties.will_delay_interval = Some(delay);
    connect.will = Some(last_will);
    connect
}

#[test]
fn will_delay_publishes_after_delay() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let (conn, _) = h.connect_with(delayed_will_connect(30, 300));
    h.close_socket(conn);
    h.assert_silent(sub);

    h.hibernate(); // moves the clock 1 ms
    h.advance(29_998);
    h.assert_silent(sub);
    h.advance(1);
    assert_eq!(h.expect_publish(sub).payload, "late");
    assert_eq!(h.rows_of_kind("will"), 0);
    assert_eq!(h.broker.session_count(), 2, "the session outlives its will");
}

#[test]
fn will_delay_cancelled_by_reconnect() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let (conn, _) = h.connect_with(delayed_will_connect(30, 300));
    h.close_socket(conn);
    h.advance(10_000);

    let mut resume = connect_packet("c1", V5, false);
    resume.properties.session_expiry_interval = Some(300);
    let (_, connack) = h.connect_with(resume);
    assert!(connack.session_present);
    h.advance(60_000);
    h.assert_silent(sub);
    assert_eq!(h.rows_of_kind("will"), 0);
}

#[test]
fn will_delay_cut_short_by_session_expiry() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let (conn, _) = h.connect_with(delayed_will_connect(30, 5));
    h.close_socket(conn);
    h.advance(5_000);
    assert_eq!(h.expect_publish(sub).payload, "late");
    assert_eq!(h.broker.session_count(), 1);
}

#[test]
fn takeover_publishes_old_will() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.will = Some(will("will", "replaced", QoS::AtMostOnce, false));
    h.connect_with(connect);
    h.connect("c1", V3_1_1);
    assert_eq!(h.expect_publish(sub).payload, "replaced");
}

#[test]
fn persistent_session_survives_hibernation_while_offline() {
    let mut h = Harness::new();
    let sub = h.connect_session("sub", V3_1_1, false);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.disconnect(sub);
    h.hibernate();

    let publisher = h.connect("pub", V3_1_1);
    h.publish_qos1(publisher, "t", "x", false);
    h.hibernate();

    let (sub, connack) = h.connect_with(connect_packet("sub", V3_1_1, false));
    assert!(connack.session_present);
    assert_eq!(h.expect_publish(sub).payload, "x");
}

#[test]
fn socket_vanished_during_hibernation_ends_clean_session() {
    let mut h = Harness::new();
    let sub = h.connect("watcher", V3_1_1);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    let mut connect = connect_packet("c1", V3_1_1, true);
    connect.will = Some(will("will", "vanished", QoS::AtMostOnce, false));
    let (conn, _) = h.connect_with(connect);

    // The socket closed while the object slept: its record is not passed.
    h.records.remove(&conn);
    h.closed.insert(conn);
    h.hibernate();
    assert_eq!(h.broker.session_count(), 1);
    assert_eq!(h.expect_publish(sub).payload, "vanished");
}

#[test]
fn takeover_of_ending_session_publishes_delayed_will() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    // Session Expiry 0: the session ends with the old connection, and with
    // it the will delay.
    h.connect_with(delayed_will_connect(30, 0));
    let (_, connack) = h.connect_with(connect_packet("c1", V5, false));
    assert!(!connack.session_present);
    assert_eq!(h.expect_publish(sub).payload, "late");
}

#[test]
fn takeover_of_continuing_session_cancels_delayed_will() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "will", QoS::AtMostOnce);
    h.connect_with(delayed_will_connect(30, 300));
    let mut resume = connect_packet("c1", V5, false);
    resume.properties.session_expiry_interval = Some(300);
    let (_, connack) = h.connect_with(resume);
    assert!(connack.session_present);
    h.advance(60_000);
    h.assert_silent(sub);
}

#[test]
fn restore_prefers_newest_of_two_records() {
    let mut h = Harness::new();
    let old = h.connect_session("c1", V3_1_1, false);
    let old_record = h.records.get(&old).cloned().unwrap();
    let new = h.connect_session("c1", V3_1_1, false);
    h.subscribe(new, "t", QoS::AtMostOnce);
    assert!(h.is_closed(old));

    // The closed socket is still listed when the object wakes.
    h.closed.remove(&old);
    h.records.insert(old, old_record);
    h.hibernate();
    assert!(h.is_closed(old));
    assert!(!h.is_closed(new));

    let publisher = h.connect("pub", V3_1_1);
    h.publish(publisher, "t", "x", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(new).payload, "x");
}

#[test]
fn qos2_outbound_flow_for_clean_session() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V3_1_1);
    let publisher = h.connect("pub", V3_1_1);
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    h.publish(publisher, "t", "x", QoS::AtLeastOnce, false);

    let id = h.expect_publish(sub).pkid.unwrap();
    h.send(sub, Packet::PubRec(PubRec::new(id)));
    assert_eq!(h.next(sub), Some(Packet::PubRel(PubRel::new(id))));
    h.send(sub, Packet::PubComp(PubComp::new(id)));
    h.assert_silent(sub);
    assert_eq!(h.rows_of_kind("message"), 0);

    h.publish(publisher, "t", "y", QoS::ExactlyOnce, false);
    assert_eq!(h.expect_publish(sub).payload, "y");
}
