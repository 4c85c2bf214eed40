//! Side by side with a real client library: rumqttc 0.25 in MQTT 3.1.1 and
//! 5.0, which does its own acknowledgements, packet ids and resending.

use std::time::Duration;

use bytes::Bytes;
use interop_tests::{BrokerAddress, Wrangler};
use libtest_mimic::Failed;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{Event, Packet, QoS, Transport};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::mqtt::WAIT;
use crate::side_by_side::same;

pub const TESTS: &[(&str, crate::TestFn)] = &[
    (
        "side_by_side_rumqttc_offline_queue_v311",
        offline_queue_v311,
    ),
    (
        "side_by_side_rumqttc_offline_queue_and_properties_v5",
        offline_queue_v5,
    ),
];

/// Waits for the next item on `incoming` that `pick` maps to a value.
async fn next<P, T>(
    incoming: &mut mpsc::UnboundedReceiver<P>,
    pick: impl Fn(P) -> Option<T>,
) -> Result<T, Failed> {
    let search = async {
        while let Some(packet) = incoming.recv().await {
            if let Some(value) = pick(packet) {
                return Some(value);
            }
        }
        None
    };
    match timeout(WAIT, search).await {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err("connection ended before the expected packet".into()),
        Err(_) => Err(format!("no expected packet within {WAIT:?}").into()),
    }
}

/// Connects a rumqttc 3.1.1 client and returns it with the packets it
/// receives.
async fn connect_v311(
    address: &BrokerAddress,
    id: &str,
    clean_session: bool,
) -> Result<(rumqttc::AsyncClient, mpsc::UnboundedReceiver<Packet>), Failed> {
    let mut options = rumqttc::MqttOptions::new(id, &address.url, address.port);
    options.set_transport(Transport::Ws);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(clean_session);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    let (sender, incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(packet) = event {
                if sender.send(packet).is_err() {
                    return;
                }
            }
        }
    });
    Ok((client, incoming))
}

/// A subscriber with Clean Session 0 goes offline. QoS 1 and 2 messages
/// published meanwhile arrive in order after it reconnects, with Session
/// Present 1 (MQTT-3.2.2-3, MQTT-4.6.0-5). QoS 0 is not queued.
fn offline_queue_v311(server: &Wrangler) -> Result<(), Failed> {
    let observed = same(server, "sbs-rumqttc-v311", |address| async move {
        let (subscriber, mut incoming) = connect_v311(&address, "rq-sub", false).await?;
        let first = next(&mut incoming, |p| {
            if let Packet::ConnAck(ack) = p {
                Some(ack.session_present)
            } else {
                None
            }
        })
        .await?;
        subscriber.subscribe("rq/#", QoS::ExactlyOnce).await?;
        next(&mut incoming, |p| {
            matches!(p, Packet::SubAck(_)).then_some(())
        })
        .await?;
        subscriber.disconnect().await?;
        // The event loop ends when the broker closes the connection.
        while incoming.recv().await.is_some() {}

        let (publisher, mut acks) = connect_v311(&address, "rq-pub", true).await?;
        for (payload, qos) in [
            ("one", QoS::AtLeastOnce),
            ("zero", QoS::AtMostOnce),
            ("two", QoS::ExactlyOnce),
        ] {
            publisher.publish("rq/x", qos, false, payload).await?;
        }
        next(&mut acks, |p| matches!(p, Packet::PubComp(_)).then_some(())).await?;

        let (_resumed, mut incoming) = connect_v311(&address, "rq-sub", false).await?;
        let resumed = next(&mut incoming, |p| {
            if let Packet::ConnAck(ack) = p {
                Some(ack.session_present)
            } else {
                None
            }
        })
        .await?;
        let mut received = Vec::new();
        for _ in 0..2 {
            let publish = next(&mut incoming, |p| {
                if let Packet::Publish(p) = p {
                    Some(p)
                } else {
                    None
                }
            })
            .await?;
            received.push((
                String::from_utf8_lossy(&publish.payload).into_owned(),
                publish.qos as u8,
            ));
        }
        Ok(((first, resumed), received))
    })?;
    assert_eq!(observed.0, (false, true), "Session Present");
    assert_eq!(
        observed.1,
        vec![("one".to_string(), 1), ("two".to_string(), 2)]
    );
    Ok(())
}

/// Connects a rumqttc 5.0 client and returns it with the packets it
/// receives.
async fn connect_v5(
    address: &BrokerAddress,
    id: &str,
    clean_start: bool,
) -> Result<(rumqttc::v5::AsyncClient, mpsc::UnboundedReceiver<Packet5>), Failed> {
    let mut options = rumqttc::v5::MqttOptions::new(id, &address.url, address.port);
    options.set_transport(Transport::Ws);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_start(clean_start);
    options.set_session_expiry_interval(Some(300));
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 100);
    let (sender, incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let rumqttc::v5::Event::Incoming(packet) = event {
                if sender.send(packet).is_err() {
                    return;
                }
            }
        }
    });
    Ok((client, incoming))
}

/// The 5.0 form of the offline queue, with Session Expiry Interval 300, and
/// the message properties that rumqttc sends (MQTT-3.3.2-4, MQTT-3.3.2-15
/// to MQTT-3.3.2-18, MQTT-3.3.2-20) reaching the subscriber unchanged
/// through the queue.
fn offline_queue_v5(server: &Wrangler) -> Result<(), Failed> {
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some("rq5/reply".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            ("z".into(), "1".into()),
            ("a".into(), "2".into()),
            ("z".into(), "3".into()),
        ],
        content_type: Some("text/plain".into()),
        ..PublishProperties::default()
    };
    let sent = properties.clone();
    let observed = same(server, "sbs-rumqttc-v5", move |address| {
        let properties = properties.clone();
        async move {
            let (subscriber, mut incoming) = connect_v5(&address, "rq5-sub", true).await?;
            let first = next(&mut incoming, |p| {
                if let Packet5::ConnAck(ack) = p {
                    Some(ack.session_present)
                } else {
                    None
                }
            })
            .await?;
            subscriber.subscribe("rq5/#", QoS5::ExactlyOnce).await?;
            next(&mut incoming, |p| {
                matches!(p, Packet5::SubAck(_)).then_some(())
            })
            .await?;
            subscriber.disconnect().await?;
            while incoming.recv().await.is_some() {}

            let (publisher, mut acks) = connect_v5(&address, "rq5-pub", true).await?;
            publisher
                .publish_with_properties(
                    "rq5/x",
                    QoS5::AtLeastOnce,
                    false,
                    "one",
                    properties.clone(),
                )
                .await?;
            publisher
                .publish_with_properties("rq5/x", QoS5::ExactlyOnce, false, "two", properties)
                .await?;
            next(&mut acks, |p| {
                matches!(p, Packet5::PubComp(_)).then_some(())
            })
            .await?;

            let (_resumed, mut incoming) = connect_v5(&address, "rq5-sub", false).await?;
            let resumed = next(&mut incoming, |p| {
                if let Packet5::ConnAck(ack) = p {
                    Some(ack.session_present)
                } else {
                    None
                }
            })
            .await?;
            let mut received = Vec::new();
            for _ in 0..2 {
                let publish = next(&mut incoming, |p| {
                    if let Packet5::Publish(p) = p {
                        Some(p)
                    } else {
                        None
                    }
                })
                .await?;
                let payload = String::from_utf8_lossy(&publish.payload).into_owned();
                received.push((payload, publish.qos as u8, publish.properties));
            }
            Ok(((first, resumed), received))
        }
    })?;
    assert_eq!(observed.0, (false, true), "Session Present");
    let expected = vec![
        ("one".to_string(), 1, Some(sent.clone())),
        ("two".to_string(), 2, Some(sent)),
    ];
    assert_eq!(observed.1, expected, "MQTT-3.3.2-17, MQTT-3.3.2-18");
    Ok(())
}
