//! Authentication at CONNECT and the topic ACL: CONNACK codes for rejected
//! tokens in both protocol versions, client id binding, the namespace
//! claim, publish and subscribe checks, filtering on delivery, and the ACL
//! and ingress grant across hibernation.

mod harness;

use std::sync::{Arc, Mutex};

use auth::{Grant, Settings, Verifier};
use broker::{Authentication, ConnId};
use bytes::Bytes;
use codec::{
    ByteString, Connect, Packet, Properties, ProtocolVersion,
    ProtocolVersion::{V3_1_1, V5},
    PubComp, PubRec, PubRel, QoS, ReasonCode, SubAck, Subscribe, SubscribeFilter,
};
use harness::{connect_packet, pkid, will, Harness, START_MS};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &[u8] = b"broker-test-secret-of-at-least-32-bytes";
const NAMESPACE: &str = "default";
const NOW_SECS: u64 = START_MS / 1000;

fn verifier(anonymous: bool) -> Arc<Verifier> {
    let settings = Settings {
        algorithms: vec!["HS256".to_string()],
        anonymous,
        ..Settings::default()
    };
    Arc::new(Verifier::new(settings, Some(SECRET)).expect("valid test settings"))
}

/// Builds a broker of namespace `default` that checks tokens.
fn harness(anonymous: bool) -> Harness {
    let mut h = Harness::new();
    configure(&mut h, anonymous);
    h
}

/// Sets the namespace and the authentication again, as the Durable Object
/// does after every restore.
fn configure(h: &mut Harness, anonymous: bool) {
    h.broker.set_namespace_name(NAMESPACE);
    h.broker
        .set_authentication(Authentication::Tokens(verifier(anonymous)));
}

fn claims(sub: &str, publish: &[&str], subscribe: &[&str]) -> Value {
    json!({
        "sub": sub,
        "exp": NOW_SECS + 600,
        "mqtt_namespace": NAMESPACE,
        "mqtt_acl": {"publish": publish, "subscribe": subscribe},
    })
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("signing succeeds")
}

/// Signs a valid token for `sub` that may publish and subscribe under
/// `site1/`.
fn site1_token(sub: &str) -> String {
    sign(&claims(sub, &["site1/#"], &["site1/#"]), SECRET)
}

fn with_password(mut connect: Connect, token: &str) -> Connect {
    connect.username = Some(ByteString::from("ignored"));
    connect.password = Some(Bytes::copy_from_slice(token.as_bytes()));
    connect
}

/// Connects `client_id` with `token` as the CONNECT password and asserts
/// success.
fn connect_token(
    h: &mut Harness,
    client_id: &str,
    version: ProtocolVersion,
    token: &str,
) -> ConnId {
    let connect = with_password(connect_packet(client_id, version, true), token);
    let (conn, connack) = h.connect_with(connect);
    assert_eq!(connack.reason, ReasonCode::Success, "{connack:?}");
    conn
}

/// Sends a CONNECT with `token` as password and returns the CONNACK reason.
fn connack_reason(
    h: &mut Harness,
    client_id: &str,
    version: ProtocolVersion,
    token: &str,
) -> ReasonCode {
    let connect = with_password(connect_packet(client_id, version, true), token);
    let (conn, connack) = h.connect_with(connect);
    if connack.reason.is_error() {
        assert!(h.is_closed(conn), "rejected connection {conn} stays open");
    }
    connack.reason
}

fn subscribe_many(h: &mut Harness, conn: ConnId, filters: &[&str]) -> SubAck {
    let subscribe = Subscribe {
        pkid: pkid(1),
        filters: filters
            .iter()
            .map(|filter| SubscribeFilter::new(*filter, QoS::AtLeastOnce))
            .collect(),
        properties: Properties::default(),
    };
    h.send(conn, Packet::Subscribe(subscribe));
    match h.next(conn) {
        Some(Packet::SubAck(suback)) => suback,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn rejected_tokens_get_connack_codes() {
    let valid = claims("dev1", &["site1/#"], &["site1/#"]);
    let mut expired = valid.clone();
    expired["exp"] = json!(NOW_SECS - 3600);
    let mut not_yet_valid = valid.clone();
    not_yet_valid["nbf"] = json!(NOW_SECS + 3600);
    let mut other_namespace = valid.clone();
    other_namespace["mqtt_namespace"] = json!("other");
    let unsigned = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        sign(&valid, SECRET).split('.').nth(1).unwrap()
    );

    // (case, token, MQTT 5.0 reason); MQTT 3.1.1 gets return code 0x05 for each.
    let cases = [
        (
            "wrong key",
            sign(&valid, b"another-secret-of-at-least-32-bytes!!"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (
            "expired",
            sign(&expired, SECRET),
            ReasonCode::BadUserNameOrPassword,
        ),
        (
            "not yet valid",
            sign(&not_yet_valid, SECRET),
            ReasonCode::BadUserNameOrPassword,
        ),
        ("alg none", unsigned, ReasonCode::BadUserNameOrPassword),
        (
            "other namespace",
            sign(&other_namespace, SECRET),
            ReasonCode::NotAuthorized,
        ),
        (
            "not a token",
            "secret".to_string(),
            ReasonCode::BadUserNameOrPassword,
        ),
    ];
    let mut h = harness(false);
    for (case, token, v5_reason) in cases {
        assert_eq!(
            connack_reason(&mut h, "dev1", V5, &token),
            v5_reason,
            "{case}, MQTT 5.0"
        );
        assert_eq!(
            connack_reason(&mut h, "dev1", V3_1_1, &token),
            ReasonCode::NotAuthorized,
            "{case}, MQTT 3.1.1 (return code 0x05)"
        );
    }
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn tampered_signature_is_rejected() {
    let mut h = harness(false);
    let token = site1_token("dev1");
    let (rest, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{rest}.{flipped}{}", &signature[1..]);
    assert_eq!(
        connack_reason(&mut h, "dev1", V5, &tampered),
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connack_reason(&mut h, "dev1", V3_1_1, &tampered),
        ReasonCode::NotAuthorized
    );
}

#[test]
fn missing_token_rejected_without_anonymous() {
    let mut h = harness(false);
    let (conn, connack) = h.connect_with(connect_packet("c1", V5, true));
    assert_eq!(connack.reason, ReasonCode::NotAuthorized);
    assert!(h.is_closed(conn));
    let (conn, connack) = h.connect_with(connect_packet("c1", V3_1_1, true));
    assert_eq!(connack.reason, ReasonCode::NotAuthorized);
    assert!(h.is_closed(conn));
}

#[test]
fn anonymous_client_uses_every_topic_but_sys() {
    let mut h = harness(true);
    let sub = h.connect("anon-sub", V5);
    let publisher = h.connect("anon-pub", V5);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    h.subscribe(sub, "$app/#", QoS::AtMostOnce);

    h.publish(publisher, "a/b", "x", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(sub).topic, "a/b");
    h.publish(publisher, "$app/status", "y", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(sub).topic, "$app/status");

    h.publish(publisher, "$SYS/fake", "z", QoS::AtLeastOnce, false);
    match h.next(publisher) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[test]
fn client_id_bound_to_sub() {
    let mut h = harness(false);
    let token = site1_token("dev1");
    assert_eq!(
        connack_reason(&mut h, "dev2", V5, &token),
        ReasonCode::ClientIdentifierNotValid
    );
    assert_eq!(
        connack_reason(&mut h, "dev2", V3_1_1, &token),
        ReasonCode::ClientIdentifierNotValid
    );
    let conn = connect_token(&mut h, "dev1", V5, &token);
    assert!(!h.is_closed(conn));
}

#[test]
fn empty_client_id_gets_sub() {
    let mut h = harness(false);
    let token = sign(
        &claims("dev1", &["devices/%c/out"], &["devices/%c/in"]),
        SECRET,
    );

    let connect = with_password(connect_packet("", V5, true), &token);
    let (conn, connack) = h.connect_with(connect);
    assert_eq!(connack.reason, ReasonCode::Success);
    assert_eq!(
        connack.properties.assigned_client_identifier.as_deref(),
        Some("dev1")
    );
    // `%c` resolves to the assigned id.
    assert_eq!(
        h.subscribe(conn, "devices/dev1/in", QoS::AtMostOnce)
            .reasons,
        [ReasonCode::Success]
    );
    h.disconnect(conn);

    // MQTT 3.1.1 has no Assigned Client Identifier; a connection with the
    // id `dev1` taking over the session shows which id it got.
    let connect = with_password(connect_packet("", V3_1_1, true), &token);
    let (conn, connack) = h.connect_with(connect);
    assert_eq!(connack.reason, ReasonCode::Success);
    connect_token(&mut h, "dev1", V3_1_1, &token);
    assert!(h.is_closed(conn));
    assert_eq!(h.broker.session_count(), 1);
}

#[test]
fn token_for_other_namespace_rejected() {
    let mut h = harness(false);
    h.broker.set_namespace_name("site-b");
    let token = site1_token("dev1");
    assert_eq!(
        connack_reason(&mut h, "dev1", V5, &token),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        connack_reason(&mut h, "dev1", V3_1_1, &token),
        ReasonCode::NotAuthorized
    );
}

#[test]
fn misconfigured_authentication_rejects_connect() {
    let mut h = Harness::new();
    h.broker.set_authentication(Authentication::Misconfigured(
        "algorithm HS256 is enabled but no key of its kind is configured".into(),
    ));
    let (conn, connack) = h.connect_with(connect_packet("c1", V5, true));
    assert_eq!(connack.reason, ReasonCode::ServerUnavailable);
    assert!(h.is_closed(conn));
    let (conn, connack) = h.connect_with(connect_packet("c1", V3_1_1, true));
    assert_eq!(connack.reason, ReasonCode::ServerUnavailable);
    assert!(h.is_closed(conn));
}

#[test]
fn publish_outside_acl_dropped_v311() {
    let mut h = harness(true);
    let sub = h.connect("watcher", V3_1_1);
    h.subscribe(sub, "#", QoS::ExactlyOnce);
    let publisher = connect_token(&mut h, "dev1", V3_1_1, &site1_token("dev1"));

    h.publish(publisher, "site2/a", "q0", QoS::AtMostOnce, true);
    h.assert_silent(publisher);
    h.publish(publisher, "site2/a", "q1", QoS::AtLeastOnce, true);
    assert!(matches!(h.next(publisher), Some(Packet::PubAck(_))));
    h.publish(publisher, "site2/a", "q2", QoS::ExactlyOnce, true);
    assert!(matches!(h.next(publisher), Some(Packet::PubRec(_))));
    h.send(publisher, Packet::PubRel(PubRel::new(pkid(1))));
    assert!(matches!(h.next(publisher), Some(Packet::PubComp(_))));
    h.assert_silent(sub);
    assert_eq!(h.broker.retained_count(), 0);
    assert_eq!(h.rows_of_kind("incoming_qos2"), 0);

    // Inside the ACL the same client is served.
    h.publish(publisher, "site1/a", "ok", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(sub).topic, "site1/a");
}

#[test]
fn publish_outside_acl_gets_0x87_v5() {
    let mut h = harness(true);
    let sub = h.connect("watcher", V5);
    h.subscribe(sub, "#", QoS::ExactlyOnce);
    let publisher = connect_token(&mut h, "dev1", V5, &site1_token("dev1"));

    h.publish(publisher, "site2/a", "q1", QoS::AtLeastOnce, true);
    match h.next(publisher) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    h.publish(publisher, "site2/a", "q2", QoS::ExactlyOnce, true);
    match h.next(publisher) {
        Some(Packet::PubRec(rec)) => assert_eq!(rec.reason, ReasonCode::NotAuthorized),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    h.publish(
        publisher,
        "$SYS/broker/uptime",
        "0",
        QoS::AtLeastOnce,
        false,
    );
    match h.next(publisher) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    h.assert_silent(sub);
    assert_eq!(h.broker.retained_count(), 0);

    h.publish(publisher, "site1/a", "q2", QoS::ExactlyOnce, false);
    assert_eq!(
        h.next(publisher),
        Some(Packet::PubRec(PubRec::new(pkid(1))))
    );
    h.send(publisher, Packet::PubRel(PubRel::new(pkid(1))));
    assert_eq!(
        h.next(publisher),
        Some(Packet::PubComp(PubComp::new(pkid(1))))
    );
    assert_eq!(h.expect_publish(sub).topic, "site1/a");
}

#[test]
fn widening_wildcard_rejected() {
    let filters = [
        "#",
        "site1/+/temp",
        "+/temp",
        "site1/#",
        "site2/a",
        "$SYS/#",
    ];
    let mut h = harness(false);
    let conn = connect_token(&mut h, "dev1", V3_1_1, &site1_token("dev1"));
    let suback = subscribe_many(&mut h, conn, &filters);
    // 3.1.1 has one failure return code, 0x80.
    let rejected = ReasonCode::UnspecifiedError;
    let granted = ReasonCode::GrantedQoS1;
    assert_eq!(
        suback.reasons,
        [rejected, granted, rejected, granted, rejected, rejected]
    );

    let conn = connect_token(&mut h, "dev1", V5, &site1_token("dev1"));
    let suback = subscribe_many(&mut h, conn, &filters);
    let rejected = ReasonCode::NotAuthorized;
    assert_eq!(
        suback.reasons,
        [rejected, granted, rejected, granted, rejected, rejected]
    );

    // A rejected filter does not become a subscription.
    let publisher = h.connect_with(with_password(
        connect_packet("dev2", V5, true),
        &site1_token("dev2"),
    ));
    assert_eq!(publisher.1.reason, ReasonCode::Success);
    h.publish(publisher.0, "site1/x/temp", "20", QoS::AtMostOnce, false);
    let delivery = h.expect_publish(conn);
    assert_eq!(delivery.topic, "site1/x/temp");
    h.assert_silent(conn);
}

#[test]
fn shared_subscription_judged_by_inner_filter() {
    let mut h = harness(false);
    let conn = connect_token(&mut h, "dev1", V5, &site1_token("dev1"));
    let suback = subscribe_many(&mut h, conn, &["$share/g/site1/#", "$share/g/#"]);
    assert_eq!(
        suback.reasons,
        [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
    );
}

#[test]
fn retained_messages_filtered_by_acl() {
    let mut h = harness(true);
    let anonymous = h.connect("anon", V5);
    h.publish_qos1(anonymous, "site1/a", "one", true);
    h.publish_qos1(anonymous, "site2/b", "two", true);

    let conn = connect_token(&mut h, "dev1", V5, &site1_token("dev1"));
    assert_eq!(
        subscribe_many(&mut h, conn, &["#"]).reasons,
        [ReasonCode::NotAuthorized]
    );
    h.assert_silent(conn);
    h.subscribe(conn, "site1/#", QoS::AtMostOnce);
    let retained = h.expect_publish(conn);
    assert_eq!(retained.topic, "site1/a");
    assert!(retained.retain);
    h.assert_silent(conn);
}

/// A session whose subscriptions were made without restriction keeps them
/// when it resumes with a token, but receives only what the token allows:
/// live messages, `$SYS` events and the offline queue alike.
#[test]
fn resumed_session_filtered_by_new_acl() {
    let mut h = harness(true);
    let mut connect = connect_packet("dev1", V5, false);
    connect.properties.session_expiry_interval = Some(600);
    let (conn, _) = h.connect_with(connect.clone());
    for filter in ["#", "$SYS/#"] {
        h.subscribe(conn, filter, QoS::AtLeastOnce);
    }
    h.disconnect(conn);

    // Queued while offline, before the token's ACL is known.
    let publisher = h.connect("anon-pub", V5);
    h.publish_qos1(publisher, "site2/queued", "no", false);
    h.publish_qos1(publisher, "site1/queued", "yes", false);

    let (conn, connack) = h.connect_with(with_password(connect, &site1_token("dev1")));
    assert!(connack.session_present);
    let queued = h.expect_publish(conn);
    assert_eq!(queued.topic, "site1/queued");
    h.assert_silent(conn);
    let ack = codec::PubAck::new(queued.pkid.expect("QoS 1 delivery"));
    h.send(conn, Packet::PubAck(ack));
    assert_eq!(
        h.rows_of_kind("message"),
        0,
        "the rejected queued message left a row"
    );

    h.publish_qos1(publisher, "site2/live", "no", false);
    h.assert_silent(conn);
    h.publish_qos1(publisher, "site1/live", "yes", false);
    assert_eq!(h.expect_publish(conn).topic, "site1/live");

    // Presence events of other clients are `$SYS` topics outside the ACL.
    h.connect("another", V5);
    h.assert_silent(conn);
}

#[test]
fn sys_topics_delivered_when_allowed() {
    let mut h = harness(false);
    let token = sign(&claims("dash", &[], &["$SYS/presence/#"]), SECRET);
    let conn = connect_token(&mut h, "dash", V5, &token);
    assert_eq!(
        subscribe_many(&mut h, conn, &["$SYS/#"]).reasons,
        [ReasonCode::NotAuthorized]
    );
    assert_eq!(
        subscribe_many(&mut h, conn, &["$SYS/presence/#"]).reasons,
        [ReasonCode::GrantedQoS1]
    );
    connect_token(&mut h, "dev1", V5, &site1_token("dev1"));
    assert_eq!(h.expect_publish(conn).topic, "$SYS/presence/dev1/connected");
}

#[test]
fn will_topic_outside_acl_rejected() {
    let mut h = harness(true);
    let token = site1_token("dev1");
    for version in [V5, V3_1_1] {
        let mut connect = with_password(connect_packet("dev1", version, true), &token);
        connect.will = Some(will("site2/will", "gone", QoS::AtMostOnce, false));
        let (conn, connack) = h.connect_with(connect);
        assert_eq!(connack.reason, ReasonCode::NotAuthorized, "{version:?}");
        assert!(h.is_closed(conn));
    }
    // An anonymous client may not place a will under $SYS either.
    let mut connect = connect_packet("anon", V5, true);
    connect.will = Some(will("$SYS/will", "gone", QoS::AtMostOnce, false));
    assert_eq!(h.connect_with(connect).1.reason, ReasonCode::NotAuthorized);

    let mut connect = with_password(connect_packet("dev1", V5, true), &token);
    connect.will = Some(will("site1/will", "gone", QoS::AtMostOnce, false));
    assert_eq!(h.connect_with(connect).1.reason, ReasonCode::Success);
    assert_eq!(h.broker.session_count(), 1);
}

#[test]
fn acl_survives_hibernation() {
    let mut h = harness(false);
    let conn = connect_token(&mut h, "dev1", V5, &site1_token("dev1"));
    h.hibernate();
    configure(&mut h, false);

    h.publish(conn, "site2/a", "x", QoS::AtLeastOnce, false);
    match h.next(conn) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert_eq!(
        subscribe_many(&mut h, conn, &["#"]).reasons,
        [ReasonCode::NotAuthorized]
    );
    assert_eq!(
        subscribe_many(&mut h, conn, &["site1/#"]).reasons,
        [ReasonCode::GrantedQoS1]
    );
}

/// The session row keeps the ACL, so that messages for an offline session
/// are filtered after hibernation too.
#[test]
fn offline_session_keeps_acl_across_hibernation() {
    let mut h = harness(true);
    let mut connect = connect_packet("dev1", V5, false);
    connect.properties.session_expiry_interval = Some(600);
    let (conn, _) = h.connect_with(connect.clone());
    h.subscribe(conn, "#", QoS::AtLeastOnce);
    h.disconnect(conn);
    let (conn, _) = h.connect_with(with_password(connect.clone(), &site1_token("dev1")));
    h.disconnect(conn);
    // New connection ids start at the clock after a restore; move it past
    // the ids used so far.
    h.advance(1000);
    h.hibernate();
    configure(&mut h, true);

    let publisher = h.connect("anon-pub", V5);
    h.publish_qos1(publisher, "site2/a", "no", false);
    h.publish_qos1(publisher, "site1/a", "yes", false);
    assert_eq!(
        h.rows_of_kind("message"),
        1,
        "only the allowed message is queued"
    );

    let (conn, connack) = h.connect_with(with_password(connect, &site1_token("dev1")));
    assert!(connack.session_present);
    assert_eq!(h.expect_publish(conn).topic, "site1/a");
    h.assert_silent(conn);
}

#[test]
fn ingress_grant_used_at_connect() {
    let mut h = harness(false);
    let grant = Grant {
        sub: "dev1".into(),
        namespace: NAMESPACE.into(),
        publish: vec!["site1/#".into()],
        subscribe: vec!["site1/#".into()],
        expires_at: Some(NOW_SECS + 600),
    };
    let conn = h.open();
    h.broker.set_ingress_grant(conn, Some(grant.clone()));
    h.pump();
    // The grant survives hibernation before CONNECT.
    h.hibernate();
    configure(&mut h, false);
    h.send(conn, Packet::Connect(connect_packet("", V5, true)));
    match h.next(conn) {
        Some(Packet::ConnAck(connack)) => {
            assert_eq!(connack.reason, ReasonCode::Success);
            assert_eq!(
                connack.properties.assigned_client_identifier.as_deref(),
                Some("dev1")
            );
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(
        subscribe_many(&mut h, conn, &["#"]).reasons,
        [ReasonCode::NotAuthorized]
    );

    // A grant for another client id is rejected like a token.
    let conn = h.open();
    h.broker.set_ingress_grant(conn, Some(grant));
    h.pump();
    h.send(conn, Packet::Connect(connect_packet("dev2", V3_1_1, true)));
    match h.next(conn) {
        Some(Packet::ConnAck(connack)) => {
            assert_eq!(connack.reason, ReasonCode::ClientIdentifierNotValid)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(h.is_closed(conn));
}

#[test]
fn rejected_client_leaves_others_served() {
    let mut h = harness(false);
    let sub = connect_token(&mut h, "sub", V3_1_1, &site1_token("sub"));
    h.subscribe(sub, "site1/#", QoS::AtMostOnce);
    for _ in 0..50 {
        let bad = sign(
            &claims("x", &["#"], &["#"]),
            b"wrong-secret-of-at-least-32-bytes-long",
        );
        assert_eq!(
            connack_reason(&mut h, "x", V5, &bad),
            ReasonCode::BadUserNameOrPassword
        );
    }
    let publisher = connect_token(&mut h, "pub", V5, &site1_token("pub"));
    h.publish(publisher, "site1/a", "x", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(sub).payload, "x");
}

#[test]
fn without_authentication_everything_allowed() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "any/topic", "x", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(sub).topic, "any/topic");
    // A password that is no token changes nothing.
    let connect = with_password(connect_packet("c3", V3_1_1, true), "secret");
    assert_eq!(h.connect_with(connect).1.reason, ReasonCode::Success);
}

/// Log lines written during the test that follows, with their key-value
/// pairs.
static LOG_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct CapturingLogger;

impl log::Log for CapturingLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        struct Pairs(String);
        impl<'kvs> log::kv::VisitSource<'kvs> for Pairs {
            fn visit_pair(
                &mut self,
                key: log::kv::Key<'kvs>,
                value: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0.push_str(&format!(" {key}={value}"));
                Ok(())
            }
        }
        let mut pairs = Pairs(String::new());
        let _ = record.key_values().visit(&mut pairs);
        let line = format!("{} {}{}", record.level(), record.args(), pairs.0);
        LOG_LINES.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static LOGGER: CapturingLogger = CapturingLogger;

#[test]
fn failures_logged_at_limited_rate_without_token() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    let mut h = harness(false);
    let bad = sign(
        &claims("logdev", &["#"], &["#"]),
        b"wrong-secret-of-at-least-32-bytes-long",
    );

    for _ in 0..25 {
        connack_reason(&mut h, "logdev", V5, &bad);
    }
    let failures = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|line| line.contains("client_id=logdev"))
            .cloned()
            .collect()
    };
    let logged = failures(&LOG_LINES.lock().unwrap());
    assert_eq!(logged.len(), 20, "{logged:#?}");
    let first = &logged[0];
    assert!(first.contains("namespace=default"), "{first}");
    assert!(first.contains("reason=bad_signature"), "{first}");
    for line in LOG_LINES.lock().unwrap().iter() {
        assert!(!line.contains(&bad), "token in log line {line}");
        let signature = bad.rsplit('.').next().unwrap();
        assert!(!line.contains(signature), "signature in log line {line}");
    }

    h.advance(60_000);
    connack_reason(&mut h, "logdev", V5, &bad);
    let logged = failures(&LOG_LINES.lock().unwrap());
    assert_eq!(logged.len(), 21);
    assert!(logged[20].contains("suppressed=5"), "{}", logged[20]);
}

/// A connection lives no longer than its token: at `exp` and the leeway an MQTT 5.0 client
/// gets DISCONNECT 0x87 and the socket closes, also after hibernation, and a
/// 3.1.1 client's socket closes.
#[test]
fn connection_closed_when_token_expires() {
    let mut h = harness(false);
    let mut short = claims("dev1", &["site1/#"], &["site1/#"]);
    short["exp"] = json!(NOW_SECS + 120);
    let conn = connect_token(&mut h, "dev1", V5, &sign(&short, SECRET));
    let mut short311 = claims("dev2", &["site1/#"], &["site1/#"]);
    short311["exp"] = json!(NOW_SECS + 120);
    let conn311 = connect_token(&mut h, "dev2", V3_1_1, &sign(&short311, SECRET));
    let lasting = connect_token(&mut h, "dev3", V5, &site1_token("dev3"));
    h.hibernate();
    configure(&mut h, false);

    // CONNECT accepts a token up to `leeway_secs` (60 by default) past its
    // `exp`, so the connection lasts that long too.
    h.advance(179_000);
    assert!(!h.is_closed(conn), "closed before the token expired");
    h.advance(2_000);
    match h.next(conn) {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, ReasonCode::NotAuthorized);
            assert_eq!(
                disconnect.properties.reason_string.as_deref(),
                Some("token expired")
            );
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert!(h.is_closed(conn));
    assert!(h.is_closed(conn311));
    assert!(
        !h.is_closed(lasting),
        "a connection with a valid token closed"
    );
}
