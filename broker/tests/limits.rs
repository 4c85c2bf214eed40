//! Abuse limits: the message and byte rate of each client, connected clients
//! per namespace and subscriptions per session, in MQTT 5.0 and 3.1.1.

mod harness;

use broker::{Config, ConnId};
use codec::{
    Packet, ProtocolVersion, ProtocolVersion::V3_1_1, ProtocolVersion::V5, QoS, ReasonCode,
    Subscribe, SubscribeFilter,
};
use harness::{connect_packet, pkid, Harness};

/// Builds a config with 10 messages per second, a burst of 5 and no byte
/// limit.
fn message_rate_config() -> Config {
    Config {
        max_messages_per_sec: 10,
        max_message_burst: 5,
        max_bytes_per_sec: 0,
        ..Config::default()
    }
}

fn publish_burst(h: &mut Harness, conn: ConnId, count: usize) {
    for i in 0..count {
        h.publish(conn, "t", &i.to_string(), QoS::AtMostOnce, false);
    }
}

/// Checks that a subscriber on `t` and a publisher still exchange a message.
fn assert_round_trip(h: &mut Harness, version: ProtocolVersion) {
    let subscriber = h.connect("after-sub", version);
    h.subscribe(subscriber, "t", QoS::AtMostOnce);
    let publisher = h.connect("after-pub", version);
    h.publish(publisher, "t", "still served", QoS::AtMostOnce, false);
    assert_eq!(h.expect_publish(subscriber).payload, "still served");
}

#[test]
fn message_flood_gets_disconnect_0x96_v5() {
    let mut h = Harness::with_config(message_rate_config());
    let flooder = h.connect("flooder", V5);
    publish_burst(&mut h, flooder, 5);
    assert!(!h.is_closed(flooder), "the burst itself is allowed");

    h.publish(flooder, "t", "one too many", QoS::AtMostOnce, false);
    match h.next(flooder) {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, ReasonCode::MessageRateTooHigh)
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert!(h.is_closed(flooder));
    assert_eq!(h.broker.metrics().rate_limit_disconnects, 1);
    assert_round_trip(&mut h, V5);
}

#[test]
fn message_flood_closes_connection_v311() {
    let mut h = Harness::with_config(message_rate_config());
    let flooder = h.connect("flooder", V3_1_1);
    publish_burst(&mut h, flooder, 6);
    assert_eq!(
        h.next(flooder),
        None,
        "3.1.1 has no DISCONNECT from the server"
    );
    assert!(h.is_closed(flooder));
    assert_eq!(h.broker.metrics().rate_limit_disconnects, 1);
    assert_round_trip(&mut h, V3_1_1);
}

#[test]
fn message_bucket_refills_at_rate() {
    let mut h = Harness::with_config(message_rate_config());
    let client = h.connect("steady", V5);
    publish_burst(&mut h, client, 5);
    // 10 messages per second refill one token every 100 ms.
    for _ in 0..20 {
        h.advance(100);
        h.publish(client, "t", "x", QoS::AtMostOnce, false);
    }
    assert!(!h.is_closed(client));
}

/// The buckets are not part of the hibernation record, so a restored
/// connection gets a full burst again, and the limit still applies after it.
#[test]
fn buckets_start_full_after_hibernation() {
    let mut h = Harness::with_config(message_rate_config());
    let client = h.connect("sleeper", V5);
    publish_burst(&mut h, client, 5);
    h.hibernate();
    publish_burst(&mut h, client, 5);
    assert!(!h.is_closed(client));
    h.publish(client, "t", "one too many", QoS::AtMostOnce, false);
    assert!(h.is_closed(client));
}

#[test]
fn message_rate_zero_is_no_limit() {
    let config = Config {
        max_messages_per_sec: 0,
        max_message_burst: 1,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    let client = h.connect("c", V3_1_1);
    publish_burst(&mut h, client, 50);
    assert!(!h.is_closed(client));
}

#[test]
fn byte_flood_gets_disconnect() {
    for version in [V5, V3_1_1] {
        // The byte bucket size is max(100 bytes, max_packet_size = 64).
        let config = Config {
            max_packet_size: 64,
            max_bytes_per_sec: 100,
            ..Config::default()
        };
        let mut h = Harness::with_config(config);
        let flooder = h.connect("flooder", version);
        let payload = "x".repeat(40);
        h.publish(flooder, "t", &payload, QoS::AtMostOnce, false);
        h.publish(flooder, "t", &payload, QoS::AtMostOnce, false);
        assert!(
            !h.is_closed(flooder),
            "{version:?}: 2 packets fit in 100 bytes"
        );
        h.publish(flooder, "t", &payload, QoS::AtMostOnce, false);
        assert!(
            h.is_closed(flooder),
            "{version:?}: 3 packets exceed 100 bytes"
        );
        let disconnect = h.next(flooder);
        match version {
            V5 => assert!(
                matches!(
                    &disconnect,
                    Some(Packet::Disconnect(d)) if d.reason == ReasonCode::MessageRateTooHigh
                ),
                "{disconnect:?}"
            ),
            _ => assert_eq!(disconnect, None),
        }
    }
}

#[test]
fn burst_of_one_closes_second_message() {
    let config = Config {
        max_messages_per_sec: 1,
        max_message_burst: 1,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    let client = h.connect("c", V5);
    h.publish(client, "t", "1", QoS::AtMostOnce, false);
    assert!(!h.is_closed(client));
    h.publish(client, "t", "2", QoS::AtMostOnce, false);
    assert!(h.is_closed(client));
}

fn connection_limit_config() -> Config {
    Config {
        max_connections: 2,
        ..Config::default()
    }
}

#[test]
fn connect_over_limit_gets_quota_exceeded() {
    for (version, expected) in [
        (V5, ReasonCode::QuotaExceeded),
        // 0x03 Server unavailable, the 3.1.1 return code closest to it.
        (V3_1_1, ReasonCode::ServerUnavailable),
    ] {
        let mut h = Harness::with_config(connection_limit_config());
        let first = h.connect("first", version);
        h.connect("second", version);

        let (third, connack) = h.connect_with(connect_packet("third", version, true));
        assert_eq!(connack.reason, expected, "{version:?}");
        assert!(h.is_closed(third), "{version:?}");
        assert_eq!(h.broker.metrics().connection_limit_rejections, 1);

        // A takeover replaces a client, and a freed slot is usable again.
        let first_again = h.connect("first", version);
        assert!(h.is_closed(first), "{version:?}: taken over");
        h.disconnect(first_again);
        h.connect("third", version);
    }
}

fn subscribe_many(h: &mut Harness, conn: ConnId, filters: &[&str]) -> Vec<ReasonCode> {
    let subscribe = Subscribe {
        pkid: pkid(7),
        filters: filters
            .iter()
            .map(|filter| SubscribeFilter::new(*filter, QoS::AtMostOnce))
            .collect(),
        properties: Default::default(),
    };
    h.send(conn, Packet::Subscribe(subscribe));
    match h.next(conn) {
        Some(Packet::SubAck(suback)) => suback.reasons,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn subscribe_over_limit_is_rejected() {
    for (version, refused) in [
        (V5, ReasonCode::QuotaExceeded),
        // 3.1.1 has one failure code, 0x80.
        (V3_1_1, ReasonCode::UnspecifiedError),
    ] {
        let config = Config {
            max_subscriptions_per_client: 2,
            ..Config::default()
        };
        let mut h = Harness::with_config(config);
        let client = h.connect("c", version);
        let reasons = subscribe_many(&mut h, client, &["a", "b", "c"]);
        assert_eq!(
            reasons,
            [ReasonCode::Success, ReasonCode::Success, refused],
            "{version:?}"
        );
        // Replacing a subscription adds none, so it is still granted.
        let reasons = subscribe_many(&mut h, client, &["d", "a"]);
        assert_eq!(reasons, [refused, ReasonCode::Success], "{version:?}");
        assert_eq!(h.broker.metrics().subscriptions, 2);
        assert_eq!(h.broker.metrics().subscription_limit_rejections, 2);
        assert!(!h.is_closed(client));

        h.publish(client, "c", "not subscribed", QoS::AtMostOnce, false);
        h.publish(client, "a", "subscribed", QoS::AtMostOnce, false);
        assert_eq!(h.expect_publish(client).payload, "subscribed");
    }
}
