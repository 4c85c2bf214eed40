//! Side by side: MQTT 5.0 packets that break a rule. The server closes the
//! connection (MQTT-4.13.1-1), after a DISCONNECT with the reason code that
//! MQTT 5.0 section 4.13 recommends. mosquitto 2.0.11 keeps the connection
//! open for some of these, closes without DISCONNECT or sends another code,
//! so the tests assert the Worker's behaviour and only print mosquitto's.

use interop_tests::{BrokerAddress, Wrangler};
use libtest_mimic::Failed;

use crate::side_by_side::{namespace, observe};
use crate::wire::{
    encode_publish, option, packet, property, Connect, Incoming, Properties, Publish, Value,
    Version, Wire,
};

const V5: Version = Version::V5;
const MALFORMED_PACKET: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
const TOPIC_NAME_INVALID: u8 = 0x90;
const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("side_by_side_error_qos0_with_dup", qos0_with_dup),
    ("side_by_side_error_qos3_publish", qos3_publish),
    (
        "side_by_side_error_pubrel_reserved_flags",
        pubrel_reserved_flags,
    ),
    (
        "side_by_side_error_wildcard_in_topic_name",
        wildcard_in_topic_name,
    ),
    (
        "side_by_side_error_subscription_id_from_client",
        subscription_identifier_from_client,
    ),
    ("side_by_side_error_no_local_on_shared", no_local_on_shared),
    (
        "side_by_side_error_unknown_topic_alias",
        unknown_topic_alias,
    ),
    (
        "side_by_side_error_receive_maximum_exceeded",
        receive_maximum_exceeded,
    ),
];

/// What a client saw after it broke a rule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// The connection stayed open: a PINGREQ sent after the packet got its
    /// PINGRESP.
    Open,
    /// The server closed the connection, after a DISCONNECT with this
    /// reason code if it sent one.
    Closed(Option<u8>),
}

/// Sends `bytes` and a PINGREQ on a new connection and returns what
/// happened.
async fn send_and_watch(
    address: &BrokerAddress,
    id: &str,
    bytes: Vec<u8>,
) -> Result<Outcome, Failed> {
    let mut wire = Wire::connected(address, V5, &Connect::new(id)).await?;
    wire.send(bytes).await?;
    wire.send(vec![0xC0, 0x00]).await?;
    let mut disconnect = None;
    loop {
        match wire.recv().await? {
            Incoming::PingResp => return Ok(Outcome::Open),
            Incoming::Disconnect { reason, .. } => disconnect = Some(reason),
            Incoming::Closed => return Ok(Outcome::Closed(disconnect)),
            _ => {}
        }
    }
}

/// Sends `bytes` to both brokers. The Worker must send DISCONNECT with one
/// of `allowed` and close; mosquitto's outcome is only printed.
fn check(server: &Wrangler, name: &str, bytes: Vec<u8>, allowed: &[u8]) -> Result<(), Failed> {
    let (reference, worker) = observe(server, &namespace(name, V5), |address| {
        let bytes = bytes.clone();
        async move { send_and_watch(&address, "error-client", bytes).await }
    })?;
    eprintln!("{name}: mosquitto {reference:02x?}, the Worker {worker:02x?}");
    match worker {
        Outcome::Closed(Some(reason)) if allowed.contains(&reason) => Ok(()),
        other => {
            Err(format!("expected DISCONNECT with one of {allowed:02x?}, got {other:02x?}").into())
        }
    }
}

/// DUP set on a QoS 0 PUBLISH (MQTT-3.3.1-2); mosquitto 2.0.11 accepts it.
fn qos0_with_dup(server: &Wrangler) -> Result<(), Failed> {
    let mut publish = Publish::new("err/x", b"x", 0, 0);
    publish.dup = true;
    let bytes = encode_publish(V5, &publish);
    check(
        server,
        "err-dup",
        bytes,
        &[MALFORMED_PACKET, PROTOCOL_ERROR],
    )
}

/// A PUBLISH with both QoS bits set is a Malformed Packet (MQTT-3.3.1-4).
fn qos3_publish(server: &Wrangler) -> Result<(), Failed> {
    let mut bytes = encode_publish(V5, &Publish::new("err/x", b"x", 1, 1));
    bytes[0] |= 0x06;
    check(server, "err-qos3", bytes, &[MALFORMED_PACKET])
}

/// PUBREL flags other than 0010 are a Malformed Packet (MQTT-3.6.1-1).
fn pubrel_reserved_flags(server: &Wrangler) -> Result<(), Failed> {
    check(
        server,
        "err-pubrel",
        packet(0x60, &[0x00, 0x01]),
        &[MALFORMED_PACKET],
    )
}

/// A Topic Name with a wildcard (MQTT-3.3.2-2, MQTT-4.7.0-1).
fn wildcard_in_topic_name(server: &Wrangler) -> Result<(), Failed> {
    let bytes = encode_publish(V5, &Publish::new("err/+", b"x", 1, 1));
    let allowed = [MALFORMED_PACKET, PROTOCOL_ERROR, TOPIC_NAME_INVALID];
    check(server, "err-wildcard", bytes, &allowed)
}

/// A client's PUBLISH must not carry a Subscription Identifier
/// (MQTT-3.3.4-6), and a subscriber must only see the identifiers of its
/// own subscriptions (MQTT-3.3.4-3). mosquitto 2.0.11 accepts the PUBLISH
/// and forwards it without the identifier.
fn subscription_identifier_from_client(server: &Wrangler) -> Result<(), Failed> {
    let (reference, worker) = observe(server, &namespace("err-subid", V5), |address| async move {
        let mut subscriber = Wire::connected(&address, V5, &Connect::new("subid-sub")).await?;
        subscriber.auto_ack = true;
        subscriber
            .subscribe(1, &[("err/#", 1)], &Properties::default())
            .await?;
        let publish = Publish::new("err/x", b"x", 1, 1)
            .property(property::SUBSCRIPTION_IDENTIFIER, Value::VariableByte(3));
        let outcome = send_and_watch(&address, "subid-pub", encode_publish(V5, &publish)).await?;
        let forwarded_ids = match outcome {
            Outcome::Open => {
                let received = subscriber.expect_publish().await?;
                received
                    .properties
                    .all(property::SUBSCRIPTION_IDENTIFIER)
                    .len()
            }
            Outcome::Closed(_) => 0,
        };
        Ok((outcome, forwarded_ids))
    })?;
    eprintln!("subscription identifier: mosquitto {reference:02x?}, the Worker {worker:02x?}");
    assert_eq!(
        worker.1, 0,
        "MQTT-3.3.4-3: the publisher's Subscription Identifier was forwarded"
    );
    assert!(
        matches!(
            worker.0,
            Outcome::Closed(Some(MALFORMED_PACKET | PROTOCOL_ERROR))
        ),
        "MQTT-3.3.4-6: expected DISCONNECT 0x81 or 0x82, got {:02x?}",
        worker.0
    );
    Ok(())
}

/// No Local on a shared subscription is a Protocol Error (MQTT-3.8.3-4);
/// mosquitto 2.0.11 accepts it.
fn no_local_on_shared(server: &Wrangler) -> Result<(), Failed> {
    let filters = [("$share/g/err/#", 1 | option::NO_LOCAL)];
    let bytes = crate::wire::encode_subscribe(V5, 1, &filters, &Properties::default());
    check(server, "err-nolocal", bytes, &[PROTOCOL_ERROR])
}

/// An empty Topic Name with a Topic Alias that was never set is a
/// Protocol Error (MQTT 5.0 section 3.3.2.3.4).
fn unknown_topic_alias(server: &Wrangler) -> Result<(), Failed> {
    let publish = Publish::new("", b"x", 1, 1).property(property::TOPIC_ALIAS, Value::TwoByte(5));
    let bytes = encode_publish(V5, &publish);
    check(server, "err-alias", bytes, &[PROTOCOL_ERROR])
}

/// One QoS 2 PUBLISH more than the Receive Maximum of the CONNACK, with
/// none released, makes the server send DISCONNECT 0x93 (MQTT 5.0 section
/// 3.3.4).
/// mosquitto 2.0.11 keeps the connection open.
fn receive_maximum_exceeded(server: &Wrangler) -> Result<(), Failed> {
    let (reference, worker) = observe(
        server,
        &namespace("err-recvmax", V5),
        |address| async move {
            let (wire, connack) = Wire::connect(&address, V5, &Connect::new("rm-probe")).await?;
            drop(wire);
            let maximum = match connack {
                Incoming::ConnAck { properties, .. } => {
                    match properties.get(property::RECEIVE_MAXIMUM) {
                        Some(Value::TwoByte(maximum)) => *maximum,
                        _ => u16::MAX,
                    }
                }
                other => return Err(format!("expected CONNACK, got {other:?}").into()),
            };
            let mut bytes = Vec::new();
            for pkid in 1..=maximum + 1 {
                bytes.extend(encode_publish(V5, &Publish::new("err/x", b"x", 2, pkid)));
            }
            Ok((maximum, send_and_watch(&address, "rm-client", bytes).await?))
        },
    )?;
    eprintln!("receive maximum: mosquitto {reference:02x?}, the Worker {worker:02x?}");
    let expected = Outcome::Closed(Some(RECEIVE_MAXIMUM_EXCEEDED));
    assert_eq!(
        worker.1,
        expected,
        "after {} unreleased QoS 2 PUBLISH",
        u32::from(worker.0) + 1
    );
    Ok(())
}
