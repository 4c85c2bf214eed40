//! Reason Strings on the packets the broker sends with an error reason code.
//! Request Problem Information 0 keeps them off every packet but CONNACK and
//! DISCONNECT (MQTT-3.1.2-29). The client's Maximum Packet Size drops them
//! when they would not fit, and MQTT 3.1.1 has none.

mod harness;

use std::sync::Arc;

use codec::{
    Connect, Packet, Properties, ProtocolVersion::V3_1_1, ProtocolVersion::V5, PubRec, PubRel, QoS,
    ReasonCode, Subscribe, SubscribeFilter,
};
use harness::{connect_packet, pkid, publish_packet, will, Harness};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

/// Builds a 5.0 CONNECT with the given Request Problem Information and Maximum
/// Packet Size properties.
fn connect_v5(client_id: &str, problem_information: Option<u8>, max: Option<u32>) -> Connect {
    let mut connect = connect_packet(client_id, V5, true);
    connect.properties.request_problem_information = problem_information;
    connect.properties.maximum_packet_size = max;
    connect
}

/// Connects a 5.0 client and asserts success.
fn connect(h: &mut Harness, client_id: &str, problem_information: Option<u8>) -> broker::ConnId {
    let (conn, connack) = h.connect_with(connect_v5(client_id, problem_information, None));
    assert_eq!(connack.reason, ReasonCode::Success);
    conn
}

/// Returns the reason code and Reason String of the next packet, which must
/// be an acknowledgement, CONNACK or DISCONNECT.
fn next_reason(h: &mut Harness, conn: broker::ConnId) -> (ReasonCode, Option<String>) {
    let (reason, properties) = match h.next(conn) {
        Some(Packet::ConnAck(ack)) => (ack.reason, ack.properties),
        Some(Packet::PubAck(ack)) => (ack.reason, ack.properties),
        Some(Packet::PubRec(ack)) => (ack.reason, ack.properties),
        Some(Packet::PubRel(ack)) => (ack.reason, ack.properties),
        Some(Packet::PubComp(ack)) => (ack.reason, ack.properties),
        Some(Packet::SubAck(ack)) => (ack.reasons[0], ack.properties),
        Some(Packet::Disconnect(disconnect)) => (disconnect.reason, disconnect.properties),
        other => panic!("expected a packet with a reason code, got {other:?}"),
    };
    (
        reason,
        properties.reason_string.as_ref().map(|s| s.to_string()),
    )
}

fn subscribe(h: &mut Harness, conn: broker::ConnId, filter: &str) {
    let subscribe = Subscribe {
        pkid: pkid(1),
        filters: vec![SubscribeFilter::new(filter, QoS::AtMostOnce)],
        properties: Properties::default(),
    };
    h.send(conn, Packet::Subscribe(subscribe));
}

const SECRET: &[u8] = b"broker-test-secret-of-at-least-32-bytes";

/// Builds a broker that checks tokens, for SUBACK 0x87: without a token
/// every filter is granted, and the codec rejects invalid filters before
/// they reach the broker.
fn token_harness() -> Harness {
    let settings = auth::Settings {
        algorithms: vec!["HS256".to_string()],
        ..auth::Settings::default()
    };
    let verifier = auth::Verifier::new(settings, Some(SECRET)).expect("valid test settings");
    let mut h = Harness::new();
    h.broker.set_namespace_name("default");
    h.broker
        .set_authentication(broker::Authentication::Tokens(Arc::new(verifier)));
    h
}

/// Builds a CONNECT whose token lets `client_id` use topics under `site1/`
/// only.
fn token_connect(client_id: &str, problem_information: Option<u8>, max: Option<u32>) -> Connect {
    let claims = json!({
        "sub": client_id,
        "exp": harness::START_MS / 1000 + 600,
        "mqtt_namespace": "default",
        "mqtt_acl": {"publish": ["site1/#"], "subscribe": ["site1/#"]},
    });
    let key = EncodingKey::from_secret(SECRET);
    let token = encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signing succeeds");
    let mut connect = connect_v5(client_id, problem_information, max);
    connect.username = Some("ignored".into());
    connect.password = Some(token.into_bytes().into());
    connect
}

/// Connects with a token and asserts success.
fn connect_token(h: &mut Harness, connect: Connect) -> broker::ConnId {
    let (conn, connack) = h.connect_with(connect);
    assert_eq!(connack.reason, ReasonCode::Success, "{connack:?}");
    conn
}

/// Sends a PUBLISH with a Topic Alias above the broker's maximum, which the
/// broker rejects with DISCONNECT 0x94.
fn publish_with_alias_over_maximum(h: &mut Harness, conn: broker::ConnId) {
    let mut publish = publish_packet("t", "x", QoS::AtMostOnce, false);
    publish.properties.topic_alias = Some(h.config.topic_alias_maximum + 1);
    h.send(conn, Packet::Publish(publish));
}

#[test]
fn puback_not_authorized_has_reason_string() {
    let mut h = Harness::new();
    let conn = connect(&mut h, "c1", None);
    h.publish(conn, "$SYS/x", "secret payload", QoS::AtLeastOnce, false);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::NotAuthorized);
    let text = text.expect("PUBACK 0x87 without a Reason String");
    assert_eq!(text, "PUBLISH to $SYS topics is not allowed");
    assert!(!text.contains("secret"));
}

#[test]
fn pubrec_not_authorized_has_reason_string() {
    let mut h = Harness::new();
    let conn = connect(&mut h, "c1", Some(1));
    h.publish(conn, "$SYS/x", "x", QoS::ExactlyOnce, false);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::NotAuthorized);
    assert_eq!(
        text.as_deref(),
        Some("PUBLISH to $SYS topics is not allowed")
    );
}

#[test]
fn pubrel_unknown_packet_id_has_reason_string() {
    let mut h = Harness::new();
    let conn = connect(&mut h, "c1", None);
    h.send(conn, Packet::PubRec(PubRec::new(pkid(7))));
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::PacketIdentifierNotFound);
    let text = text.expect("PUBREL 0x92 without a Reason String");
    assert!(text.contains("packet identifier 7"), "{text}");
}

#[test]
fn pubcomp_unknown_packet_id_has_reason_string() {
    let mut h = Harness::new();
    let conn = connect(&mut h, "c1", None);
    h.send(conn, Packet::PubRel(PubRel::new(pkid(9))));
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::PacketIdentifierNotFound);
    let text = text.expect("PUBCOMP 0x92 without a Reason String");
    assert!(text.contains("packet identifier 9"), "{text}");
}

#[test]
fn suback_not_authorized_has_reason_string() {
    let mut h = token_harness();
    let conn = connect_token(&mut h, token_connect("c1", None, None));
    subscribe(&mut h, conn, "site2/#");
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::NotAuthorized);
    assert_eq!(
        text.as_deref(),
        Some("not authorized to subscribe to site2/#")
    );
}

#[test]
fn suback_success_has_no_reason_string() {
    let mut h = Harness::new();
    let conn = connect(&mut h, "c1", None);
    subscribe(&mut h, conn, "a/b");
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::Success);
    assert_eq!(text, None);
}

#[test]
fn disconnect_topic_alias_has_reason_string() {
    let mut h = Harness::new();
    let conn = connect(&mut h, "c1", None);
    publish_with_alias_over_maximum(&mut h, conn);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::TopicAliasInvalid);
    let text = text.expect("DISCONNECT 0x94 without a Reason String");
    assert!(text.contains("MQTT-3.3.2-9"), "{text}");
    assert!(h.is_closed(conn));
}

#[test]
fn disconnect_decode_error_names_rule() {
    let config = broker::Config {
        max_packet_size: 1000,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let conn = connect(&mut h, "c1", None);
    let payload = "x".repeat(2000);
    h.publish(conn, "t", &payload, QoS::AtMostOnce, false);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::PacketTooLarge);
    let text = text.expect("DISCONNECT 0x95 without a Reason String");
    assert!(
        text.contains("exceeds the maximum packet size 1000"),
        "{text}"
    );
    assert!(
        !text.contains("xxx"),
        "payload in the Reason String: {text}"
    );
}

#[test]
fn disconnect_keep_alive_timeout_has_reason_string() {
    let mut h = Harness::new();
    let mut connect = connect_v5("c1", None, None);
    connect.keep_alive = 1;
    let (conn, _) = h.connect_with(connect);
    h.advance(2_000);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::KeepAliveTimeout);
    let text = text.expect("DISCONNECT 0x8D without a Reason String");
    assert!(text.contains("keep alive"), "{text}");
}

#[test]
fn connack_rejection_has_reason_string() {
    let config = broker::Config {
        max_qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let mut connect = connect_v5("c1", None, None);
    connect.will = Some(will("w", "x", QoS::ExactlyOnce, false));
    let (_, connack) = h.connect_with(connect);
    assert_eq!(connack.reason, ReasonCode::QoSNotSupported);
    let text = connack
        .properties
        .reason_string
        .clone()
        .expect("no Reason String");
    assert!(
        text.contains("will QoS 2 exceeds the Maximum QoS 1"),
        "{text}"
    );
}

#[test]
fn problem_information_0_keeps_acks_bare() {
    let mut h = token_harness();
    let conn = connect_token(&mut h, token_connect("c1", Some(0), None));

    h.publish(conn, "$SYS/x", "x", QoS::AtLeastOnce, false);
    assert_eq!(next_reason(&mut h, conn), (ReasonCode::NotAuthorized, None));

    h.publish(conn, "$SYS/x", "x", QoS::ExactlyOnce, false);
    assert_eq!(next_reason(&mut h, conn), (ReasonCode::NotAuthorized, None));

    h.send(conn, Packet::PubRec(PubRec::new(pkid(7))));
    let expected = (ReasonCode::PacketIdentifierNotFound, None);
    assert_eq!(next_reason(&mut h, conn), expected);

    h.send(conn, Packet::PubRel(PubRel::new(pkid(9))));
    assert_eq!(next_reason(&mut h, conn), expected);

    subscribe(&mut h, conn, "site2/#");
    assert_eq!(next_reason(&mut h, conn), (ReasonCode::NotAuthorized, None));

    // The closing DISCONNECT still explains itself.
    publish_with_alias_over_maximum(&mut h, conn);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::TopicAliasInvalid);
    assert!(text.is_some(), "DISCONNECT lost its Reason String");
}

#[test]
fn problem_information_0_keeps_disconnect_reason_string() {
    let mut h = Harness::new();
    let conn = connect(&mut h, "c1", Some(0));
    publish_with_alias_over_maximum(&mut h, conn);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::TopicAliasInvalid);
    assert!(text.is_some(), "DISCONNECT lost its Reason String");
}

#[test]
fn problem_information_0_keeps_connack_reason_string() {
    let mut h = Harness::new();
    let mut connect = connect_v5("c1", Some(0), None);
    connect.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (_, connack) = h.connect_with(connect);
    assert_eq!(connack.reason, ReasonCode::BadAuthenticationMethod);
    let text = connack
        .properties
        .reason_string
        .clone()
        .expect("no Reason String");
    assert!(text.contains("Authentication Method"), "{text}");
}

#[test]
fn problem_information_0_survives_hibernation() {
    let mut h = Harness::new();
    let quiet = connect(&mut h, "quiet", Some(0));
    let default = connect(&mut h, "default", None);
    h.hibernate();

    h.publish(quiet, "$SYS/x", "x", QoS::AtLeastOnce, false);
    assert_eq!(
        next_reason(&mut h, quiet),
        (ReasonCode::NotAuthorized, None)
    );

    h.publish(default, "$SYS/x", "x", QoS::AtLeastOnce, false);
    let (reason, text) = next_reason(&mut h, default);
    assert_eq!(reason, ReasonCode::NotAuthorized);
    assert!(text.is_some(), "Reason String lost after hibernation");
}

#[test]
fn reason_string_left_out_beyond_maximum_packet_size() {
    let mut h = token_harness();
    let conn = connect_token(&mut h, token_connect("c1", None, Some(60)));

    // "not authorized to subscribe to site2/#" fits in a SUBACK of 60 bytes.
    subscribe(&mut h, conn, "site2/#");
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::NotAuthorized);
    assert_eq!(
        text.as_deref(),
        Some("not authorized to subscribe to site2/#")
    );

    // A Reason String that quotes a 100-byte filter does not.
    let long_filter = format!("site2/{}", "a".repeat(100));
    subscribe(&mut h, conn, &long_filter);
    let (reason, text) = next_reason(&mut h, conn);
    assert_eq!(reason, ReasonCode::NotAuthorized);
    assert_eq!(text, None);
}

/// Checks the bytes on the wire, because the harness decodes 3.1.1 packets
/// without properties whatever the broker sent.
#[test]
fn mqtt311_suback_failure_has_no_properties() {
    let mut broker = broker::Broker::restore(Default::default(), Vec::new(), Vec::new(), 0);
    let conn = broker.handle_open(0);
    let mut bytes = bytes::BytesMut::new();
    let connect = connect_packet("c1", V3_1_1, true);
    codec::encode(&Packet::Connect(connect), V3_1_1, &mut bytes);
    let subscribe = Subscribe {
        pkid: pkid(1),
        filters: vec![SubscribeFilter::new("$share/g", QoS::AtMostOnce)],
        properties: Properties::default(),
    };
    codec::encode(&Packet::Subscribe(subscribe), V3_1_1, &mut bytes);
    broker.handle_data(conn, &bytes, 0);

    let mut sent = Vec::new();
    while let Some(output) = broker.poll_output() {
        if let broker::Output::Send { bytes, .. } = output {
            sent.extend_from_slice(&bytes);
        }
    }
    // CONNACK (4 bytes), then SUBACK with packet id 1 and return code 0x80.
    assert_eq!(&sent[4..], &[0x90, 0x03, 0x00, 0x01, 0x80]);
}
