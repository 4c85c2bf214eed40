//! The same scenario against mosquitto 2.0.11 and against the Worker: each
//! scenario is an async function that takes a broker address and returns
//! what its clients observed, and the test compares the two.
//!
//! Where the MQTT specification leaves a choice, or mosquitto 2.0.11
//! deviates from it, the test asserts the specification's behaviour on the
//! Worker (with the normative statement id) instead of equality.
//!
//! This file contains the harness and the message delivery tests. Sessions
//! and wills are in `side_by_side_session.rs`, MQTT 5.0 features in
//! `side_by_side_v5.rs`.

use std::fmt::Debug;
use std::future::Future;

use interop_tests::{BrokerAddress, Mosquitto, Wrangler};
use libtest_mimic::Failed;

use crate::mqtt::run;

use crate::wire::{Connect, Incoming, Publish, Version, Wire};

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("side_by_side_qos_levels_v311", |s| {
        qos_levels(s, Version::V311)
    }),
    ("side_by_side_qos_levels_v5", |s| qos_levels(s, Version::V5)),
    ("side_by_side_qos2_duplicate_before_pubrel_v311", |s| {
        qos2_duplicate(s, Version::V311)
    }),
    ("side_by_side_qos2_duplicate_before_pubrel_v5", |s| {
        qos2_duplicate(s, Version::V5)
    }),
    ("side_by_side_ordering_per_topic_v311", |s| {
        ordering(s, Version::V311)
    }),
    ("side_by_side_ordering_per_topic_v5", |s| {
        ordering(s, Version::V5)
    }),
    ("side_by_side_overlapping_subscriptions_v311", |s| {
        overlapping(s, Version::V311)
    }),
    ("side_by_side_overlapping_subscriptions_v5", |s| {
        overlapping(s, Version::V5)
    }),
    ("side_by_side_retained_messages_v311", |s| {
        retained(s, Version::V311)
    }),
    ("side_by_side_retained_messages_v5", |s| {
        retained(s, Version::V5)
    }),
    ("side_by_side_dollar_topics_v311", |s| {
        dollar_topics(s, Version::V311)
    }),
    ("side_by_side_dollar_topics_v5", |s| {
        dollar_topics(s, Version::V5)
    }),
    ("side_by_side_subscription_replaced_v311", |s| {
        subscription_replaced(s, Version::V311)
    }),
    ("side_by_side_subscription_replaced_v5", |s| {
        subscription_replaced(s, Version::V5)
    }),
];

/// Runs `scenario` against a fresh mosquitto and against the Worker's
/// namespace `/mqtt/NAMESPACE` at the same time, and returns what each
/// observed as (mosquitto, Worker).
pub fn observe<T, F, Fut>(server: &Wrangler, namespace: &str, scenario: F) -> Result<(T, T), Failed>
where
    F: Fn(BrokerAddress) -> Fut,
    Fut: Future<Output = Result<T, Failed>>,
{
    let mosquitto = Mosquitto::start();
    let worker_address = server.address(&format!("/mqtt/{namespace}"));
    let result = run(async {
        let (reference, worker) =
            tokio::join!(scenario(mosquitto.address()), scenario(worker_address));
        let reference = reference.map_err(|error| against("mosquitto", error))?;
        let worker = worker.map_err(|error| against("the Worker", error))?;
        Ok((reference, worker))
    });
    if result.is_err() {
        eprintln!("mosquitto log:\n{}", mosquitto.log());
    }
    result
}

fn against(broker: &str, error: Failed) -> Failed {
    format!("against {broker}: {}", error.message().unwrap_or("failed")).into()
}

/// Runs `scenario` on both brokers and fails unless they observed the same.
pub fn same<T, F, Fut>(server: &Wrangler, namespace: &str, scenario: F) -> Result<T, Failed>
where
    T: Debug + PartialEq,
    F: Fn(BrokerAddress) -> Fut,
    Fut: Future<Output = Result<T, Failed>>,
{
    let (reference, worker) = observe(server, namespace, scenario)?;
    if reference != worker {
        return Err(format!(
            "mosquitto observed\n  {reference:?}\nthe Worker observed\n  {worker:?}"
        )
        .into());
    }
    Ok(worker)
}

/// A namespace name unique to one test and version.
pub fn namespace(test: &str, version: Version) -> String {
    match version {
        Version::V311 => format!("sbs-{test}-v311"),
        Version::V5 => format!("sbs-{test}-v5"),
    }
}

/// A received PUBLISH without the fields that differ between brokers
/// (packet ids, which each server assigns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
}

impl From<&Publish> for Delivery {
    fn from(publish: &Publish) -> Delivery {
        Delivery {
            topic: publish.topic.clone(),
            payload: publish.text(),
            qos: publish.qos,
            retain: publish.retain,
            dup: publish.dup,
        }
    }
}

/// Collects the PUBLISH packets that arrive before one with payload
/// `marker`, which is not included.
pub async fn deliveries_until(wire: &mut Wire, marker: &str) -> Result<Vec<Publish>, Failed> {
    let mut received = Vec::new();
    loop {
        let publish = wire.expect_publish().await?;
        if publish.payload == marker.as_bytes() {
            return Ok(received);
        }
        received.push(publish);
    }
}

/// What QoS 0, 1 and 2 looked like from both ends.
#[derive(Debug, PartialEq)]
struct QosObservation {
    /// Reason codes of the PUBACK and PUBREC the publisher received.
    publisher_acks: Vec<u8>,
    deliveries: Vec<Delivery>,
    /// Whether each QoS 1 and 2 delivery had a non-zero packet id.
    packet_ids_set: Vec<bool>,
    /// Whether the PUBREL for the QoS 2 delivery carried its packet id.
    pubrel_matches: bool,
}

/// QoS 0, 1 and 2 from a publisher through the broker to a subscriber that
/// acknowledges by hand, with the whole PUBREC/PUBREL/PUBCOMP exchange in
/// both directions (MQTT-4.3.2-4, MQTT-4.3.3-8, MQTT-4.3.3-11).
fn qos_levels(server: &Wrangler, version: Version) -> Result<(), Failed> {
    same(server, &namespace("qos", version), |address| async move {
        let mut subscriber = Wire::connected(&address, version, &Connect::new("qos-sub")).await?;
        subscriber
            .subscribe(1, &[("qos/#", 2)], &Default::default())
            .await?;
        let mut publisher = Wire::connected(&address, version, &Connect::new("qos-pub")).await?;

        let mut publisher_acks = Vec::new();
        let mut deliveries = Vec::new();
        let mut packet_ids_set = Vec::new();
        publisher
            .publish(&Publish::new("qos/0", b"zero", 0, 0))
            .await?;
        deliveries.push(Delivery::from(&subscriber.expect_publish().await?));

        publisher_acks.push(
            publisher
                .publish_acknowledged(&Publish::new("qos/1", b"one", 1, 10))
                .await?,
        );
        let one = subscriber.expect_publish().await?;
        packet_ids_set.push(one.pkid != 0);
        deliveries.push(Delivery::from(&one));
        subscriber.puback(one.pkid).await?;

        publisher_acks.push(
            publisher
                .publish_acknowledged(&Publish::new("qos/2", b"two", 2, 11))
                .await?,
        );
        let two = subscriber.expect_publish().await?;
        packet_ids_set.push(two.pkid != 0);
        deliveries.push(Delivery::from(&two));
        subscriber.pubrec(two.pkid).await?;
        let pubrel = subscriber
            .expect(|p| matches!(p, Incoming::PubRel { .. }))
            .await?;
        subscriber.pubcomp(two.pkid).await?;
        let pubrel_matches = pubrel
            == Incoming::PubRel {
                pkid: two.pkid,
                reason: 0,
            };
        Ok(QosObservation {
            publisher_acks,
            deliveries,
            packet_ids_set,
            pubrel_matches,
        })
    })?;
    Ok(())
}

/// A QoS 2 PUBLISH sent again with the same packet id before PUBREL is
/// acknowledged again but not delivered twice (MQTT-4.3.3-10).
fn qos2_duplicate(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(
        server,
        &namespace("qos2dup", version),
        |address| async move {
            let mut subscriber =
                Wire::connected(&address, version, &Connect::new("dup-sub")).await?;
            subscriber.auto_ack = true;
            subscriber
                .subscribe(1, &[("dup/#", 2)], &Default::default())
                .await?;
            let mut publisher =
                Wire::connected(&address, version, &Connect::new("dup-pub")).await?;

            let mut first = Publish::new("dup/x", b"once", 2, 7);
            publisher.publish(&first).await?;
            let pubrec = publisher
                .expect(|p| matches!(p, Incoming::PubRec { .. }))
                .await?;
            first.dup = true;
            publisher.publish(&first).await?;
            let second_pubrec = publisher
                .expect(|p| matches!(p, Incoming::PubRec { .. }))
                .await?;
            publisher.pubrel(7).await?;
            let pubcomp = publisher
                .expect(|p| matches!(p, Incoming::PubComp { .. }))
                .await?;
            publisher
                .publish(&Publish::new("dup/x", b"marker", 0, 0))
                .await?;

            let deliveries = deliveries_until(&mut subscriber, "marker").await?;
            let deliveries: Vec<Delivery> = deliveries.iter().map(Delivery::from).collect();
            Ok((pubrec, second_pubrec, pubcomp, deliveries))
        },
    )?;
    assert_eq!(
        observed.3.len(),
        1,
        "MQTT-4.3.3-10: a repeated QoS 2 PUBLISH was delivered twice"
    );
    Ok(())
}

/// Messages per topic arrive in the order they were published, at QoS 0,
/// 1 and 2, with the publisher not waiting for acknowledgements
/// (MQTT-4.6.0-5).
fn ordering(server: &Wrangler, version: Version) -> Result<(), Failed> {
    // 8 messages at QoS 1 and 8 at QoS 2 plus the marker stay below
    // mosquitto's Receive Maximum of 20 (MQTT-3.3.4-7).
    const COUNT: u16 = 8;
    let observed = same(server, &namespace("order", version), |address| async move {
        let mut subscriber = Wire::connected(&address, version, &Connect::new("order-sub")).await?;
        subscriber.auto_ack = true;
        subscriber
            .subscribe(1, &[("order/#", 2)], &Default::default())
            .await?;
        let mut publisher = Wire::connected(&address, version, &Connect::new("order-pub")).await?;
        publisher.auto_ack = true;

        for index in 0..COUNT {
            for qos in 0..=2u8 {
                let topic = format!("order/qos{qos}");
                let pkid = if qos == 0 {
                    0
                } else {
                    1 + u16::from(qos - 1) * COUNT + index
                };
                let payload = index.to_string();
                publisher
                    .publish(&Publish::new(&topic, payload.as_bytes(), qos, pkid))
                    .await?;
            }
        }
        // mosquitto forwards a QoS 2 message on PUBREL, which the publisher
        // sends as each PUBREC arrives; the marker goes after the last.
        for _ in 0..COUNT {
            publisher
                .expect(|p| matches!(p, Incoming::PubComp { .. }))
                .await?;
        }
        publisher
            .publish(&Publish::new("order/end", b"marker", 1, 1000))
            .await?;
        let received = deliveries_until(&mut subscriber, "marker").await?;
        let mut per_topic: Vec<(String, Vec<String>)> = Vec::new();
        for qos in 0..=2u8 {
            let topic = format!("order/qos{qos}");
            let payloads = received
                .iter()
                .filter(|p| p.topic == topic)
                .map(Publish::text)
                .collect();
            per_topic.push((topic, payloads));
        }
        Ok(per_topic)
    })?;
    let expected: Vec<String> = (0..COUNT).map(|index| index.to_string()).collect();
    for (topic, payloads) in observed {
        assert_eq!(payloads, expected, "MQTT-4.6.0-5: order on {topic}");
    }
    Ok(())
}

/// A message that matches two subscriptions of one client, at QoS 0 and 2.
/// MQTT 3.1.1 and 5.0 let the server send one copy or one per subscription.
/// Either way some copy must carry the maximum granted QoS (MQTT-3.3.4-2).
fn overlapping(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let (reference, worker) = observe(
        server,
        &namespace("overlap", version),
        |address| async move {
            let mut subscriber =
                Wire::connected(&address, version, &Connect::new("overlap-sub")).await?;
            subscriber.auto_ack = true;
            subscriber
                .subscribe(
                    1,
                    &[("overlap/#", 0), ("overlap/+/leaf", 2)],
                    &Default::default(),
                )
                .await?;
            let mut publisher =
                Wire::connected(&address, version, &Connect::new("overlap-pub")).await?;
            publisher
                .publish_acknowledged(&Publish::new("overlap/a/leaf", b"both", 2, 1))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("overlap/marker", b"marker", 1, 2))
                .await?;
            let received = deliveries_until(&mut subscriber, "marker").await?;
            Ok(received.iter().map(Delivery::from).collect::<Vec<_>>())
        },
    )?;
    for (broker, copies) in [("mosquitto", &reference), ("the Worker", &worker)] {
        assert!(
            !copies.is_empty(),
            "{broker}: the message was not delivered"
        );
        assert!(
            copies.len() <= 2,
            "{broker}: more copies than subscriptions: {copies:?}"
        );
        let max_qos = copies.iter().map(|copy| copy.qos).max();
        assert_eq!(max_qos, Some(2), "MQTT-3.3.4-2 ({broker}): {copies:?}");
    }
    Ok(())
}

/// Retained messages: replaced, cleared by an empty payload, sent on
/// subscribe with RETAIN set at the lower of the stored and the granted
/// QoS, and sent live without RETAIN (MQTT-3.3.1-5 to MQTT-3.3.1-8,
/// MQTT-3.3.1-12).
fn retained(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(
        server,
        &namespace("retained", version),
        |address| async move {
            let mut publisher =
                Wire::connected(&address, version, &Connect::new("ret-pub")).await?;
            publisher
                .publish_acknowledged(&Publish::new("ret/a", b"old", 1, 1).retain())
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ret/a", b"new", 2, 2).retain())
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ret/b", b"cleared", 1, 3).retain())
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ret/b", b"", 1, 4).retain())
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ret/c", b"not kept", 1, 5))
                .await?;

            let mut subscriber =
                Wire::connected(&address, version, &Connect::new("ret-sub")).await?;
            subscriber.auto_ack = true;
            subscriber
                .subscribe(1, &[("ret/#", 1)], &Default::default())
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ret/a", b"live", 1, 6).retain())
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ret/end", b"marker", 1, 7))
                .await?;
            let received = deliveries_until(&mut subscriber, "marker").await?;
            Ok(received.iter().map(Delivery::from).collect::<Vec<_>>())
        },
    )?;
    let expected = vec![
        Delivery {
            topic: "ret/a".into(),
            payload: "new".into(),
            qos: 1,
            retain: true,
            dup: false,
        },
        Delivery {
            topic: "ret/a".into(),
            payload: "live".into(),
            qos: 1,
            retain: false,
            dup: false,
        },
    ];
    assert_eq!(observed, expected);
    Ok(())
}

/// Topics starting with `$` match no filter that starts with a wildcard
/// (MQTT-4.7.2-1). A client's PUBLISH to `$SYS/...` reaches no subscriber
/// on either broker; the specification leaves `$SYS` to the server.
fn dollar_topics(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(
        server,
        &namespace("dollar", version),
        |address| async move {
            let mut wildcard =
                Wire::connected(&address, version, &Connect::new("dollar-wild")).await?;
            wildcard.auto_ack = true;
            wildcard
                .subscribe(1, &[("#", 1), ("+/status", 1)], &Default::default())
                .await?;
            let mut explicit =
                Wire::connected(&address, version, &Connect::new("dollar-explicit")).await?;
            explicit.auto_ack = true;
            explicit
                .subscribe(1, &[("$app/#", 1), ("$SYS/test/#", 1)], &Default::default())
                .await?;
            let mut publisher =
                Wire::connected(&address, version, &Connect::new("dollar-pub")).await?;

            publisher
                .publish_acknowledged(&Publish::new("$app/status", b"app", 1, 1))
                .await?;
            let sys_ack = publisher
                .publish_acknowledged(&Publish::new("$SYS/test/x", b"forged", 1, 2))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("plain/status", b"marker", 1, 3))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("$app/end", b"marker", 1, 4))
                .await?;
            let seen_by_wildcard = deliveries_until(&mut wildcard, "marker").await?;
            let seen_by_explicit = deliveries_until(&mut explicit, "marker").await?;
            let topics = |list: Vec<Publish>| list.into_iter().map(|p| p.topic).collect::<Vec<_>>();
            Ok((sys_ack, topics(seen_by_wildcard), topics(seen_by_explicit)))
        },
    )?;
    assert_eq!(
        observed.1,
        Vec::<String>::new(),
        "MQTT-4.7.2-1: a wildcard filter matched a $ topic"
    );
    assert_eq!(
        observed.2,
        vec!["$app/status".to_string()],
        "a client's $SYS message was forwarded"
    );
    Ok(())
}

/// A SUBSCRIBE with the filter of an existing subscription replaces it
/// (MQTT-3.8.4-3): one copy per message, at the new QoS, capped at the
/// subscription's QoS (MQTT-3.8.4-8). The retained message is sent again
/// on the second SUBSCRIBE (MQTT-3.8.4-4).
fn subscription_replaced(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(
        server,
        &namespace("replace", version),
        |address| async move {
            let mut publisher = Wire::connected(&address, version, &Connect::new("rp-pub")).await?;
            let retained = Publish::new("rp/state", b"retained", 2, 1).retain();
            publisher.publish_acknowledged(&retained).await?;

            let mut subscriber =
                Wire::connected(&address, version, &Connect::new("rp-sub")).await?;
            subscriber.auto_ack = true;
            let mut granted = subscriber
                .subscribe(1, &[("rp/#", 2)], &Default::default())
                .await?;
            let first = Delivery::from(&subscriber.expect_publish().await?);
            granted.extend(
                subscriber
                    .subscribe(2, &[("rp/#", 1)], &Default::default())
                    .await?,
            );
            let again = Delivery::from(&subscriber.expect_publish().await?);

            publisher
                .publish_acknowledged(&Publish::new("rp/live", b"live", 2, 2))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("rp/end", b"marker", 1, 3))
                .await?;
            let live: Vec<Delivery> = deliveries_until(&mut subscriber, "marker")
                .await?
                .iter()
                .map(Delivery::from)
                .collect();
            Ok((granted, first, again, live))
        },
    )?;
    let (granted, first, again, live) = observed;
    assert_eq!(granted, [2, 1], "granted QoS of the two SUBSCRIBE packets");
    assert_eq!(
        (first.qos, first.retain),
        (2, true),
        "retained message on the first SUBSCRIBE"
    );
    assert_eq!(
        (again.qos, again.retain),
        (1, true),
        "MQTT-3.8.4-4: retained message again"
    );
    let expected = vec![Delivery {
        topic: "rp/live".into(),
        payload: "live".into(),
        qos: 1,
        retain: false,
        dup: false,
    }];
    assert_eq!(live, expected, "MQTT-3.8.4-3, MQTT-3.8.4-8");
    Ok(())
}
