//! Side by side: MQTT 5.0 features.

use interop_tests::{BrokerAddress, Wrangler};
use libtest_mimic::Failed;

use crate::side_by_side::{deliveries_until, namespace, observe, same};
use crate::wire::{
    option, property, Connect, Incoming, Properties, Publish, Value, Version, Will, Wire,
};

const V5: Version = Version::V5;

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("side_by_side_topic_alias_from_client", topic_alias),
    ("side_by_side_topic_alias_zero_closes", |s| {
        topic_alias_invalid(s, "zero", false)
    }),
    ("side_by_side_topic_alias_above_maximum_closes", |s| {
        topic_alias_invalid(s, "above", true)
    }),
    ("side_by_side_message_expiry_interval", message_expiry),
    ("side_by_side_shared_subscription", shared_subscription),
    ("side_by_side_no_local", no_local),
    ("side_by_side_retain_as_published", retain_as_published),
    ("side_by_side_retain_handling", retain_handling),
    (
        "side_by_side_subscription_identifiers",
        subscription_identifiers,
    ),
    ("side_by_side_properties_forwarded", properties_forwarded),
    ("side_by_side_receive_maximum", receive_maximum),
    ("side_by_side_maximum_packet_size", maximum_packet_size),
    ("side_by_side_connack_properties", connack_properties),
    (
        "side_by_side_unsubscribe_reason_codes",
        unsubscribe_reason_codes,
    ),
    (
        "side_by_side_retained_message_expiry",
        retained_message_expiry,
    ),
    (
        "side_by_side_error_acknowledgements",
        error_acknowledgements,
    ),
];

fn ns(test: &str) -> String {
    namespace(test, V5)
}

async fn client(address: &BrokerAddress, id: &str) -> Result<Wire, Failed> {
    let mut wire = Wire::connected(address, V5, &Connect::new(id)).await?;
    wire.auto_ack = true;
    Ok(wire)
}

fn no_properties() -> Properties {
    Properties::default()
}

/// A client's topic alias: set with the topic, then used alone; the
/// subscriber gets the full topic name both times (MQTT-3.3.2-12).
fn topic_alias(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("alias"), |address| async move {
        let mut subscriber = client(&address, "alias-sub").await?;
        subscriber
            .subscribe(1, &[("alias/#", 1)], &no_properties())
            .await?;
        let mut publisher = client(&address, "alias-pub").await?;
        let set = Publish::new("alias/long/topic", b"set", 1, 1)
            .property(property::TOPIC_ALIAS, Value::TwoByte(3));
        publisher.publish_acknowledged(&set).await?;
        let used =
            Publish::new("", b"used", 1, 2).property(property::TOPIC_ALIAS, Value::TwoByte(3));
        publisher.publish_acknowledged(&used).await?;
        let first = subscriber.expect_publish().await?;
        let second = subscriber.expect_publish().await?;
        Ok(vec![
            (first.topic.clone(), first.text()),
            (second.topic.clone(), second.text()),
        ])
    })?;
    let topic = "alias/long/topic".to_string();
    assert_eq!(
        observed,
        vec![(topic.clone(), "set".into()), (topic, "used".into())],
        "MQTT-3.3.2-12"
    );
    Ok(())
}

/// Topic Alias 0 (MQTT-3.3.2-8) or above the Topic Alias Maximum of the
/// CONNACK (MQTT-3.3.2-9) is a protocol error, which MQTT 5.0 section
/// 3.3.2.3.4 handles with DISCONNECT 0x94 (Topic Alias invalid). For
/// alias 0, mosquitto 2.0.11 sends DISCONNECT 0x81 (Malformed Packet)
/// instead.
fn topic_alias_invalid(server: &Wrangler, name: &str, above_maximum: bool) -> Result<(), Failed> {
    let (reference, worker) = observe(
        server,
        &ns(&format!("alias-{name}")),
        |address| async move {
            let (mut publisher, connack) =
                Wire::connect(&address, V5, &Connect::new("alias-bad")).await?;
            let maximum = match &connack {
                Incoming::ConnAck { properties, .. } => {
                    match properties.get(property::TOPIC_ALIAS_MAXIMUM) {
                        Some(Value::TwoByte(maximum)) => *maximum,
                        _ => 0,
                    }
                }
                other => return Err(format!("expected CONNACK, got {other:?}").into()),
            };
            let alias = if above_maximum { maximum + 1 } else { 0 };
            let publish = Publish::new("alias/x", b"bad", 0, 0)
                .property(property::TOPIC_ALIAS, Value::TwoByte(alias));
            publisher.publish(&publish).await?;
            let disconnect = publisher.expect_closed_with().await?;
            let reason = match disconnect {
                Some(Incoming::Disconnect { reason, .. }) => Some(reason),
                _ => None,
            };
            Ok((maximum, reason))
        },
    )?;
    eprintln!(
        "Topic Alias Maximum and DISCONNECT: mosquitto {reference:02x?}, the Worker {worker:02x?}"
    );
    assert!(worker.0 > 0, "the Worker advertised no Topic Alias Maximum");
    assert_eq!(worker.1, Some(0x94), "DISCONNECT 0x94 before closing");
    Ok(())
}

/// A queued message whose Message Expiry Interval passes while its
/// subscriber is offline is dropped (MQTT-3.3.2-5). One that has not
/// expired is sent with the interval minus the time it waited
/// (MQTT-3.3.2-6). A will delayed by 2 s shows that 2 s have passed.
fn message_expiry(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("expiry-msg"), |address| async move {
        let persistent = |clean| {
            Connect::new("mx-sub")
                .clean(clean)
                .property(property::SESSION_EXPIRY_INTERVAL, Value::FourByte(300))
        };
        let mut subscriber = Wire::connected(&address, V5, &persistent(true)).await?;
        subscriber
            .subscribe(1, &[("mx/data", 1)], &no_properties())
            .await?;
        subscriber.disconnect(0).await?;

        let mut publisher = client(&address, "mx-pub").await?;
        publisher
            .subscribe(1, &[("mx/clock", 1)], &no_properties())
            .await?;
        let short = Publish::new("mx/data", b"short", 1, 2)
            .property(property::MESSAGE_EXPIRY_INTERVAL, Value::FourByte(1));
        publisher.publish_acknowledged(&short).await?;
        let long = Publish::new("mx/data", b"long", 1, 3)
            .property(property::MESSAGE_EXPIRY_INTERVAL, Value::FourByte(60));
        publisher.publish_acknowledged(&long).await?;

        let mut will = Will {
            topic: "mx/clock".into(),
            payload: b"2 s".to_vec(),
            ..Will::default()
        };
        will.properties
            .0
            .push((property::WILL_DELAY_INTERVAL, Value::FourByte(2)));
        let clock = Connect::new("mx-clock")
            .property(property::SESSION_EXPIRY_INTERVAL, Value::FourByte(10))
            .will(will);
        Wire::connected(&address, V5, &clock)
            .await?
            .drop_connection()
            .await?;
        publisher.expect_publish().await?;

        let mut resumed = Wire::connected(&address, V5, &persistent(false)).await?;
        resumed.auto_ack = true;
        publisher
            .publish_acknowledged(&Publish::new("mx/data", b"marker", 1, 4))
            .await?;
        let received = deliveries_until(&mut resumed, "marker").await?;
        let seen: Vec<(String, bool)> = received
            .iter()
            .map(|publish| {
                let remaining = match publish.properties.get(property::MESSAGE_EXPIRY_INTERVAL) {
                    Some(Value::FourByte(seconds)) => *seconds <= 58,
                    _ => false,
                };
                (publish.text(), remaining)
            })
            .collect();
        Ok(seen)
    })?;
    assert_eq!(
        observed,
        vec![("long".to_string(), true)],
        "MQTT-3.3.2-5, MQTT-3.3.2-6"
    );
    Ok(())
}

/// A shared subscription `$share/g/f` delivers each message to one member
/// of the group, and a plain subscription on the same filter still gets
/// every message. Retained messages are not sent for a new shared
/// subscription (MQTT 5.0, Shared Subscriptions), but mosquitto 2.0.11
/// sends them.
fn shared_subscription(server: &Wrangler) -> Result<(), Failed> {
    const COUNT: usize = 10;
    let (reference, worker) = observe(server, &ns("shared"), |address| async move {
        let mut publisher = client(&address, "sh-pub").await?;
        publisher
            .publish_acknowledged(&Publish::new("sh/old", b"retained", 1, 1).retain())
            .await?;

        let mut members = Vec::new();
        for id in ["sh-a", "sh-b"] {
            let mut member = client(&address, id).await?;
            member
                .subscribe(
                    1,
                    &[("$share/g/sh/#", 1), ("sh-end/#", 1)],
                    &no_properties(),
                )
                .await?;
            members.push(member);
        }
        let mut plain = client(&address, "sh-plain").await?;
        plain
            .subscribe(1, &[("sh/#", 1), ("sh-end/#", 1)], &no_properties())
            .await?;

        for index in 0..COUNT {
            let payload = index.to_string();
            publisher
                .publish_acknowledged(&Publish::new(
                    "sh/new",
                    payload.as_bytes(),
                    1,
                    2 + index as u16,
                ))
                .await?;
        }
        publisher
            .publish_acknowledged(&Publish::new("sh-end/x", b"marker", 1, 100))
            .await?;

        let mut group_payloads = Vec::new();
        let mut group_retained = Vec::new();
        for member in &mut members {
            for publish in deliveries_until(member, "marker").await? {
                if publish.retain {
                    group_retained.push(publish.text());
                } else {
                    group_payloads.push(publish.text());
                }
            }
        }
        group_payloads.sort();
        let plain_payloads: Vec<String> = deliveries_until(&mut plain, "marker")
            .await?
            .iter()
            .filter(|p| !p.retain)
            .map(Publish::text)
            .collect();
        Ok((group_payloads, plain_payloads, group_retained))
    })?;
    let mut expected: Vec<String> = (0..COUNT).map(|index| index.to_string()).collect();
    assert_eq!(
        reference.0, worker.0,
        "one delivery per message to the group"
    );
    assert_eq!(reference.1, worker.1, "the plain subscription");
    assert_eq!(worker.1, expected, "the plain subscription missed messages");
    expected.sort();
    assert_eq!(worker.0, expected, "each message once to the group");
    assert_eq!(
        worker.2,
        Vec::<String>::new(),
        "a retained message was sent to a shared subscription"
    );
    Ok(())
}

/// No Local: a client's own messages do not come back on that
/// subscription, while others still get them (MQTT-3.8.3-3).
fn no_local(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("nolocal"), |address| async move {
        let mut own = client(&address, "nl-own").await?;
        own.subscribe(1, &[("nl/#", 1 | option::NO_LOCAL)], &no_properties())
            .await?;
        let mut other = client(&address, "nl-other").await?;
        other.subscribe(1, &[("nl/#", 1)], &no_properties()).await?;
        own.publish_acknowledged(&Publish::new("nl/x", b"from own", 1, 1))
            .await?;
        other
            .publish_acknowledged(&Publish::new("nl/x", b"marker", 1, 2))
            .await?;
        let own_saw: Vec<String> = deliveries_until(&mut own, "marker")
            .await?
            .iter()
            .map(Publish::text)
            .collect();
        let other_saw = other.expect_publish().await?.text();
        Ok((own_saw, other_saw))
    })?;
    assert_eq!(
        observed,
        (Vec::new(), "from own".to_string()),
        "MQTT-3.8.3-3"
    );
    Ok(())
}

/// Retain As Published 1 keeps RETAIN on live deliveries, 0 clears it
/// (MQTT-3.3.1-12, MQTT-3.3.1-13).
fn retain_as_published(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("rap"), |address| async move {
        let mut keeps = client(&address, "rap-keep").await?;
        keeps
            .subscribe(
                1,
                &[("rap/#", 1 | option::RETAIN_AS_PUBLISHED)],
                &no_properties(),
            )
            .await?;
        let mut clears = client(&address, "rap-clear").await?;
        clears
            .subscribe(1, &[("rap/#", 1)], &no_properties())
            .await?;
        let mut publisher = client(&address, "rap-pub").await?;
        publisher
            .publish_acknowledged(&Publish::new("rap/x", b"live", 1, 1).retain())
            .await?;
        Ok((
            keeps.expect_publish().await?.retain,
            clears.expect_publish().await?.retain,
        ))
    })?;
    assert_eq!(observed, (true, false), "MQTT-3.3.1-12, MQTT-3.3.1-13");
    Ok(())
}

/// Retain Handling 0 sends retained messages on every SUBSCRIBE, 1 only
/// when the subscription is new, 2 never (MQTT-3.3.1-9 to MQTT-3.3.1-11,
/// MQTT-3.8.4-4).
fn retain_handling(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("rh"), |address| async move {
        let mut publisher = client(&address, "rh-pub").await?;
        publisher
            .publish_acknowledged(&Publish::new("rh/state", b"kept", 1, 1).retain())
            .await?;
        let mut subscriber = client(&address, "rh-sub").await?;
        subscriber
            .subscribe(1, &[("rh-marker", 1)], &no_properties())
            .await?;

        let steps = [
            ("rh/#", 1, "0 new"),
            ("rh/#", 1, "0 again"),
            ("rh/+", 1 | option::RETAIN_HANDLING_NEW_ONLY, "1 new"),
            ("rh/+", 1 | option::RETAIN_HANDLING_NEW_ONLY, "1 again"),
            ("rh/state", 1 | option::RETAIN_HANDLING_NEVER, "2 new"),
        ];
        let mut seen = Vec::new();
        for (index, (filter, options, label)) in steps.into_iter().enumerate() {
            subscriber
                .subscribe(2 + index as u16, &[(filter, options)], &no_properties())
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("rh-marker", b"marker", 1, 10 + index as u16))
                .await?;
            let count = deliveries_until(&mut subscriber, "marker").await?.len();
            seen.push((label, count));
        }
        Ok(seen)
    })?;
    let expected = vec![
        ("0 new", 1),
        ("0 again", 1),
        ("1 new", 1),
        ("1 again", 0),
        ("2 new", 0),
    ];
    assert_eq!(observed, expected, "MQTT-3.3.1-9 to MQTT-3.3.1-11");
    Ok(())
}

/// Subscription Identifiers come with retained and live messages. A
/// message that matches two subscriptions carries both ids, in one copy
/// or one each (MQTT-3.3.4-3 to MQTT-3.3.4-5).
fn subscription_identifiers(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("subid"), |address| async move {
        let mut publisher = client(&address, "si-pub").await?;
        publisher
            .publish_acknowledged(&Publish::new("si/a/leaf", b"retained", 1, 1).retain())
            .await?;
        let mut subscriber = client(&address, "si-sub").await?;
        let with_id = |id| {
            Properties::default().with(property::SUBSCRIPTION_IDENTIFIER, Value::VariableByte(id))
        };
        subscriber.subscribe(1, &[("si/#", 1)], &with_id(7)).await?;
        let retained = subscriber.expect_publish().await?;
        subscriber
            .subscribe(
                2,
                &[("si/+/leaf", 1 | option::RETAIN_HANDLING_NEVER)],
                &with_id(300),
            )
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("si/a/leaf", b"live", 1, 2))
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("si/end", b"marker", 1, 3))
            .await?;
        let ids = |publish: &Publish| -> Vec<Value> {
            publish
                .properties
                .all(property::SUBSCRIPTION_IDENTIFIER)
                .into_iter()
                .cloned()
                .collect()
        };
        let mut live_ids: Vec<u32> = Vec::new();
        for publish in deliveries_until(&mut subscriber, "marker").await? {
            for id in ids(&publish) {
                if let Value::VariableByte(id) = id {
                    live_ids.push(id);
                }
            }
        }
        live_ids.sort();
        Ok((ids(&retained), live_ids))
    })?;
    assert_eq!(
        observed,
        (vec![Value::VariableByte(7)], vec![7, 300]),
        "MQTT-3.3.4-3"
    );
    Ok(())
}

/// User Properties (in order, with a repeated name), Response Topic,
/// Correlation Data, Content Type and Payload Format Indicator reach the
/// subscriber unchanged (MQTT-3.3.2-4, MQTT-3.3.2-15 to MQTT-3.3.2-18,
/// MQTT-3.3.2-20).
fn properties_forwarded(server: &Wrangler) -> Result<(), Failed> {
    let sent = Properties::default()
        .with(property::PAYLOAD_FORMAT_INDICATOR, Value::Byte(1))
        .with(property::CONTENT_TYPE, Value::String("text/plain".into()))
        .with(property::RESPONSE_TOPIC, Value::String("reply/here".into()))
        .with(
            property::CORRELATION_DATA,
            Value::Binary(vec![0, 1, 2, 255]),
        )
        .with(property::USER_PROPERTY, Value::Pair("b".into(), "2".into()))
        .with(property::USER_PROPERTY, Value::Pair("a".into(), "1".into()))
        .with(property::USER_PROPERTY, Value::Pair("b".into(), "3".into()));
    let expected = sent.clone();
    let observed = same(server, &ns("props"), move |address| {
        let sent = sent.clone();
        async move {
            let mut subscriber = client(&address, "pr-sub").await?;
            subscriber
                .subscribe(1, &[("pr/#", 1)], &no_properties())
                .await?;
            let mut publisher = client(&address, "pr-pub").await?;
            let mut publish = Publish::new("pr/x", b"payload", 1, 1);
            publish.properties = sent;
            publisher.publish_acknowledged(&publish).await?;
            let received = subscriber.expect_publish().await?;
            let mut properties = received.properties.0;
            properties.sort_by_key(|(id, _)| *id);
            Ok(properties)
        }
    })?;
    let mut expected = expected.0;
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(observed, expected, "MQTT-3.3.2-17, MQTT-3.3.2-18");
    Ok(())
}

/// With Receive Maximum 2 the broker has at most two unacknowledged QoS 1
/// messages out to the client (MQTT-3.3.4-9). The limit counts QoS 1 and 2
/// only, so a QoS 0 marker published after five QoS 1 messages arrives
/// while the quota is used up.
fn receive_maximum(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("recvmax"), |address| async move {
        let connect = Connect::new("rm-sub").property(property::RECEIVE_MAXIMUM, Value::TwoByte(2));
        let mut subscriber = Wire::connected(&address, V5, &connect).await?;
        subscriber
            .subscribe(1, &[("rm/#", 1)], &no_properties())
            .await?;
        let mut publisher = client(&address, "rm-pub").await?;
        for index in 0..5u16 {
            let payload = format!("m{index}");
            publisher
                .publish_acknowledged(&Publish::new("rm/x", payload.as_bytes(), 1, 1 + index))
                .await?;
        }
        publisher
            .publish(&Publish::new("rm/x", b"marker", 0, 0))
            .await?;
        let before_ack: Vec<String> = deliveries_until(&mut subscriber, "marker")
            .await?
            .iter()
            .map(Publish::text)
            .collect();
        Ok(before_ack)
    })?;
    assert_eq!(
        observed,
        vec!["m0".to_string(), "m1".to_string()],
        "MQTT-3.3.4-9"
    );
    Ok(())
}

/// A message larger than the subscriber's Maximum Packet Size is not sent
/// to it (MQTT-3.1.2-24, MQTT-3.1.2-25), and later messages still are.
fn maximum_packet_size(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("maxpacket"), |address| async move {
        let connect =
            Connect::new("mp-sub").property(property::MAXIMUM_PACKET_SIZE, Value::FourByte(128));
        let mut subscriber = Wire::connected(&address, V5, &connect).await?;
        subscriber.auto_ack = true;
        subscriber
            .subscribe(1, &[("mp/#", 1)], &no_properties())
            .await?;
        let mut publisher = client(&address, "mp-pub").await?;
        publisher
            .publish_acknowledged(&Publish::new("mp/x", &[b'a'; 64], 1, 1))
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("mp/x", &[b'b'; 200], 1, 2))
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("mp/x", b"marker", 1, 3))
            .await?;
        let sizes: Vec<usize> = deliveries_until(&mut subscriber, "marker")
            .await?
            .iter()
            .map(|p| p.payload.len())
            .collect();
        Ok(sizes)
    })?;
    assert_eq!(observed, vec![64], "MQTT-3.1.2-24");
    Ok(())
}

/// CONNACK properties: an empty client id gets an Assigned Client
/// Identifier (MQTT-3.2.2-16). The other values are each broker's
/// settings, so the test checks only that the Worker sends its limits.
fn connack_properties(server: &Wrangler) -> Result<(), Failed> {
    let (reference, worker) = observe(server, &ns("connack"), |address| async move {
        let (_, connack) = Wire::connect(&address, V5, &Connect::new("")).await?;
        match connack {
            Incoming::ConnAck {
                code: 0,
                properties,
                ..
            } => Ok(properties),
            other => Err(format!("empty client id rejected: {other:?}").into()),
        }
    })?;
    for (broker, properties) in [("mosquitto", &reference), ("the Worker", &worker)] {
        let assigned = properties.get(property::ASSIGNED_CLIENT_IDENTIFIER);
        assert!(
            matches!(assigned, Some(Value::String(id)) if !id.is_empty()),
            "MQTT-3.2.2-16 ({broker})"
        );
    }
    // The Worker limits both, so it must advertise them (absent means
    // 65535 and no aliases). The values are broker settings.
    let receive_maximum = worker.get(property::RECEIVE_MAXIMUM);
    assert!(
        matches!(receive_maximum, Some(Value::TwoByte(1..))),
        "{receive_maximum:?}"
    );
    let alias_maximum = worker.get(property::TOPIC_ALIAS_MAXIMUM);
    assert!(
        matches!(alias_maximum, Some(Value::TwoByte(1..))),
        "{alias_maximum:?}"
    );
    // `max_packet_size` in the repository's wrangler.toml.
    let packet_size = worker.get(property::MAXIMUM_PACKET_SIZE);
    assert_eq!(packet_size, Some(&Value::FourByte(1_048_576)));
    // Maximum QoS 2 and Retain Available 1 are the defaults, which a
    // server leaves out.
    assert_eq!(worker.get(property::MAXIMUM_QOS), None);
    assert!(matches!(
        worker.get(property::RETAIN_AVAILABLE),
        None | Some(Value::Byte(1))
    ));
    Ok(())
}

/// UNSUBACK carries 0x00 for a removed subscription and 0x11 (No
/// subscription existed) for a filter without one, in order
/// (MQTT 5.0 section 3.11.3).
fn unsubscribe_reason_codes(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("unsub"), |address| async move {
        let mut client = client(&address, "us-client").await?;
        client
            .subscribe(1, &[("us/a", 1)], &no_properties())
            .await?;
        let unsubscribe = crate::wire::encode_unsubscribe(V5, 2, &["us/a", "us/none"]);
        client.send(unsubscribe).await?;
        client
            .expect(|p| matches!(p, Incoming::UnsubAck { .. }))
            .await
    })?;
    let expected = Incoming::UnsubAck {
        pkid: 2,
        codes: vec![0x00, 0x11],
    };
    assert_eq!(observed, expected, "UNSUBACK reason codes");
    Ok(())
}

/// A retained message whose Message Expiry Interval has passed is not sent
/// to a new subscriber (MQTT-3.3.2-5), and one that has not expired is sent
/// with the remaining interval (MQTT-3.3.2-6). A will delayed by 2 s shows
/// that 2 s have passed.
fn retained_message_expiry(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("retained-expiry"), |address| async move {
        let mut publisher = client(&address, "rx-pub").await?;
        publisher
            .subscribe(1, &[("rx-clock", 1)], &no_properties())
            .await?;
        let short = Publish::new("rx/short", b"short", 1, 1)
            .retain()
            .property(property::MESSAGE_EXPIRY_INTERVAL, Value::FourByte(1));
        publisher.publish_acknowledged(&short).await?;
        let long = Publish::new("rx/long", b"long", 1, 2)
            .retain()
            .property(property::MESSAGE_EXPIRY_INTERVAL, Value::FourByte(60));
        publisher.publish_acknowledged(&long).await?;

        let mut will = Will {
            topic: "rx-clock".into(),
            payload: b"2 s".to_vec(),
            ..Will::default()
        };
        will.properties
            .0
            .push((property::WILL_DELAY_INTERVAL, Value::FourByte(2)));
        let clock = Connect::new("rx-clock")
            .property(property::SESSION_EXPIRY_INTERVAL, Value::FourByte(10))
            .will(will);
        Wire::connected(&address, V5, &clock)
            .await?
            .drop_connection()
            .await?;
        publisher.expect_publish().await?;

        let mut subscriber = client(&address, "rx-sub").await?;
        subscriber
            .subscribe(1, &[("rx/#", 1)], &no_properties())
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("rx/end", b"marker", 1, 3))
            .await?;
        let received = deliveries_until(&mut subscriber, "marker").await?;
        let seen: Vec<(String, bool)> = received
            .iter()
            .map(|publish| {
                let remaining = publish.properties.get(property::MESSAGE_EXPIRY_INTERVAL);
                let reduced = matches!(remaining, Some(Value::FourByte(seconds)) if *seconds <= 58);
                (publish.text(), reduced)
            })
            .collect();
        Ok(seen)
    })?;
    assert_eq!(
        observed,
        vec![("long".to_string(), true)],
        "MQTT-3.3.2-5, MQTT-3.3.2-6"
    );
    Ok(())
}

/// A subscriber's PUBACK or PUBREC with a reason code of 0x80 or more
/// acknowledges the message: the broker sends no PUBREL for it and does not
/// send it again after reconnection (MQTT-4.4.0-2, MQTT-4.3.3-4).
fn error_acknowledgements(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, &ns("error-ack"), |address| async move {
        let persistent = |clean| {
            Connect::new("ea-sub")
                .clean(clean)
                .property(property::SESSION_EXPIRY_INTERVAL, Value::FourByte(300))
        };
        let mut subscriber = Wire::connected(&address, V5, &persistent(true)).await?;
        subscriber
            .subscribe(1, &[("ea/#", 2)], &no_properties())
            .await?;
        let mut publisher = client(&address, "ea-pub").await?;
        publisher
            .publish_acknowledged(&Publish::new("ea/x", b"one", 1, 1))
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("ea/x", b"two", 2, 2))
            .await?;

        // 0x80 is Unspecified error, valid in PUBACK and PUBREC.
        let one = subscriber.expect_publish().await?;
        subscriber
            .send(crate::wire::packet(
                0x40,
                &[(one.pkid >> 8) as u8, one.pkid as u8, 0x80],
            ))
            .await?;
        let two = subscriber.expect_publish().await?;
        subscriber
            .send(crate::wire::packet(
                0x50,
                &[(two.pkid >> 8) as u8, two.pkid as u8, 0x80],
            ))
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("ea/x", b"marker", 1, 3))
            .await?;
        let mut after = Vec::new();
        loop {
            match subscriber.recv().await? {
                Incoming::PubRel { .. } => after.push("PUBREL".to_string()),
                Incoming::Publish(publish) if publish.text() == "marker" => {
                    subscriber.puback(publish.pkid).await?;
                    break;
                }
                Incoming::Publish(publish) => after.push(publish.text()),
                Incoming::Closed => return Err("the subscriber's connection closed".into()),
                _ => {}
            }
        }
        subscriber.drop_connection().await?;

        let (mut resumed, connack) = Wire::connect(&address, V5, &persistent(false)).await?;
        resumed.auto_ack = true;
        publisher
            .publish_acknowledged(&Publish::new("ea/x", b"end", 1, 4))
            .await?;
        let resent: Vec<String> = deliveries_until(&mut resumed, "end")
            .await?
            .iter()
            .map(Publish::text)
            .collect();
        let session_present = matches!(
            connack,
            Incoming::ConnAck {
                session_present: true,
                ..
            }
        );
        Ok((after, session_present, resent))
    })?;
    assert_eq!(observed, (Vec::new(), true, Vec::new()), "MQTT-4.4.0-2");
    Ok(())
}
