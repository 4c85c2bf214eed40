//! Side by side: persistent sessions, session takeover and will messages.

use std::time::Instant;

use interop_tests::{BrokerAddress, Wrangler};
use libtest_mimic::Failed;

use crate::side_by_side::{deliveries_until, namespace, observe, same, Delivery};
use crate::wire::{property, Connect, Incoming, Publish, Value, Version, Will, Wire};

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("side_by_side_persistent_session_v311", |s| {
        persistent_session(s, Version::V311)
    }),
    ("side_by_side_persistent_session_v5", |s| {
        persistent_session(s, Version::V5)
    }),
    ("side_by_side_session_expiry_v5", session_expiry),
    ("side_by_side_session_takeover_v311", |s| {
        takeover(s, Version::V311)
    }),
    ("side_by_side_session_takeover_v5", |s| {
        takeover(s, Version::V5)
    }),
    ("side_by_side_will_on_socket_close_v311", |s| {
        will(s, Version::V311, Ending::SocketClosed)
    }),
    ("side_by_side_will_on_socket_close_v5", |s| {
        will(s, Version::V5, Ending::SocketClosed)
    }),
    ("side_by_side_will_on_keepalive_expiry_v311", |s| {
        will(s, Version::V311, Ending::KeepAlive)
    }),
    ("side_by_side_will_on_keepalive_expiry_v5", |s| {
        will(s, Version::V5, Ending::KeepAlive)
    }),
    ("side_by_side_will_on_protocol_error_v311", |s| {
        will(s, Version::V311, Ending::ProtocolError)
    }),
    ("side_by_side_will_on_protocol_error_v5", |s| {
        will(s, Version::V5, Ending::ProtocolError)
    }),
    ("side_by_side_will_on_disconnect_with_will_v5", |s| {
        will(s, Version::V5, Ending::DisconnectWithWill)
    }),
    ("side_by_side_no_will_on_disconnect_v311", |s| {
        will(s, Version::V311, Ending::Disconnect)
    }),
    ("side_by_side_no_will_on_disconnect_v5", |s| {
        will(s, Version::V5, Ending::Disconnect)
    }),
    ("side_by_side_will_qos_and_retain_v311", |s| {
        will_qos_and_retain(s, Version::V311)
    }),
    ("side_by_side_will_qos_and_retain_v5", |s| {
        will_qos_and_retain(s, Version::V5)
    }),
    (
        "side_by_side_will_delay_cancelled_by_reconnect_v5",
        will_delay_cancelled,
    ),
    ("side_by_side_will_on_takeover_v311", |s| {
        will_on_takeover(s, Version::V311)
    }),
    ("side_by_side_will_on_takeover_v5", |s| {
        will_on_takeover(s, Version::V5)
    }),
    ("side_by_side_long_offline_queue_v311", |s| {
        long_offline_queue(s, Version::V311)
    }),
    ("side_by_side_long_offline_queue_v5", |s| {
        long_offline_queue(s, Version::V5)
    }),
    ("side_by_side_ended_session_keeps_nothing_v311", |s| {
        ended_session_keeps_nothing(s, Version::V311)
    }),
    ("side_by_side_ended_session_keeps_nothing_v5", |s| {
        ended_session_keeps_nothing(s, Version::V5)
    }),
];

/// Builds a CONNECT for a session that outlives its connection: Clean Session 0
/// in 3.1.1, Clean Start `clean` with Session Expiry Interval 300 in 5.0.
fn persistent(client_id: &str, clean: bool, version: Version) -> Connect {
    let connect = Connect::new(client_id).clean(clean);
    match version {
        Version::V311 => connect,
        Version::V5 => connect.property(property::SESSION_EXPIRY_INTERVAL, Value::FourByte(300)),
    }
}

fn session_present(connack: &Incoming) -> Result<bool, Failed> {
    match connack {
        Incoming::ConnAck {
            session_present,
            code: 0,
            ..
        } => Ok(*session_present),
        other => Err(format!("connection rejected: {other:?}").into()),
    }
}

/// Connects a client that only watches `filter` and returns it.
async fn watcher(
    address: &BrokerAddress,
    version: Version,
    id: &str,
    filter: &str,
) -> Result<Wire, Failed> {
    let mut wire = Wire::connected(address, version, &Connect::new(id)).await?;
    wire.auto_ack = true;
    wire.subscribe(1, &[(filter, 2)], &Default::default())
        .await?;
    Ok(wire)
}

#[derive(Debug, PartialEq)]
struct SessionObservation {
    /// Session Present of each CONNACK, in order.
    session_present: Vec<bool>,
    /// What the resumed session received, in order.
    resumed: Vec<String>,
}

/// A persistent session keeps its subscription while offline. On
/// reconnection the broker first resends the unacknowledged QoS 1 and 2
/// PUBLISH with DUP and the same packet id, and the PUBREL of an unfinished
/// QoS 2 exchange. Then it sends the messages queued while offline, in
/// order (MQTT-4.4.0-1, MQTT-3.3.1-1, MQTT-4.6.0-5). QoS 0 is not queued, which
/// the specification allows and both brokers do by default. Session
/// Present is 0 for a new session, 1 for a resumed one and 0 after a clean
/// start (MQTT-3.2.2-2, MQTT-3.2.2-3).
fn persistent_session(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(
        server,
        &namespace("session", version),
        |address| async move {
            let mut session_present_flags = Vec::new();
            let mut publisher = watcher(&address, version, "ps-pub", "ps-will").await?;

            let will = Will {
                topic: "ps-will".into(),
                payload: b"gone".to_vec(),
                ..Will::default()
            };
            let first = persistent("ps-sub", false, version).will(will);
            let (mut subscriber, connack) = Wire::connect(&address, version, &first).await?;
            session_present_flags.push(session_present(&connack)?);
            subscriber
                .subscribe(1, &[("ps/#", 2)], &Default::default())
                .await?;

            publisher
                .publish_acknowledged(&Publish::new("ps/a", b"m1", 1, 1))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ps/a", b"m2", 2, 2))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ps/a", b"m3", 2, 3))
                .await?;
            let m1 = subscriber.expect_publish().await?;
            let m2 = subscriber.expect_publish().await?;
            let m3 = subscriber.expect_publish().await?;
            subscriber.pubrec(m3.pkid).await?;
            subscriber
                .expect(|p| matches!(p, Incoming::PubRel { .. }))
                .await?;
            subscriber.drop_connection().await?;
            // The will shows that the broker has seen the connection end, so
            // the next messages are queued rather than sent to the old socket.
            publisher.expect_publish().await?;

            publisher
                .publish_acknowledged(&Publish::new("ps/a", b"q1", 1, 4))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ps/a", b"q2", 2, 5))
                .await?;
            publisher
                .publish(&Publish::new("ps/a", b"z0", 0, 0))
                .await?;
            publisher
                .publish_acknowledged(&Publish::new("ps/a", b"q3", 1, 6))
                .await?;

            let (mut resumed, connack) =
                Wire::connect(&address, version, &persistent("ps-sub", false, version)).await?;
            session_present_flags.push(session_present(&connack)?);
            resumed.auto_ack = true;
            let mut events = Vec::new();
            loop {
                match resumed.recv().await? {
                    Incoming::Publish(publish) => {
                        let original = [&m1, &m2, &m3]
                            .into_iter()
                            .find(|m| m.payload == publish.payload);
                        let id = match original {
                            Some(original) if original.pkid == publish.pkid => "same id",
                            Some(_) => "new id",
                            None => "",
                        };
                        let text = publish.text();
                        events.push(format!(
                            "PUBLISH {text} qos={} dup={} {id}",
                            publish.qos, publish.dup
                        ));
                        if text == "q3" {
                            break;
                        }
                    }
                    Incoming::PubRel { pkid, .. } => {
                        let which = if pkid == m3.pkid { "m3" } else { "unknown id" };
                        events.push(format!("PUBREL {which}"));
                    }
                    Incoming::Closed => return Err("the resumed connection closed".into()),
                    _ => {}
                }
            }
            resumed.disconnect(0).await?;

            // A clean start discards the session. With Clean Session 1 (or
            // Session Expiry Interval 0) nothing is kept after it either.
            let (clean, connack) =
                Wire::connect(&address, version, &Connect::new("ps-sub")).await?;
            session_present_flags.push(session_present(&connack)?);
            clean.disconnect(0).await?;
            let (_, connack) =
                Wire::connect(&address, version, &persistent("ps-sub", false, version)).await?;
            session_present_flags.push(session_present(&connack)?);
            Ok(SessionObservation {
                session_present: session_present_flags,
                resumed: events,
            })
        },
    )?;
    assert_eq!(
        observed.session_present,
        [false, true, false, false],
        "MQTT-3.2.2-2, MQTT-3.2.2-3"
    );
    let expected = [
        "PUBLISH m1 qos=1 dup=true same id",
        "PUBLISH m2 qos=2 dup=true same id",
        "PUBREL m3",
        "PUBLISH q1 qos=1 dup=false ",
        "PUBLISH q2 qos=2 dup=false ",
        "PUBLISH q3 qos=1 dup=false ",
    ];
    assert_eq!(observed.resumed, expected, "MQTT-4.4.0-1");
    Ok(())
}

/// A session with Session Expiry Interval 1 ends one second after its
/// connection closes: its will (delayed by 60 s) is published then
/// (MQTT-3.1.2-8), and a later Clean Start 0 finds no session
/// (MQTT-4.1.0-2).
fn session_expiry(server: &Wrangler) -> Result<(), Failed> {
    let version = Version::V5;
    let observed = same(
        server,
        &namespace("expiry", version),
        |address| async move {
            let mut watcher = watcher(&address, version, "exp-watch", "exp/will").await?;
            let will = Will {
                topic: "exp/will".into(),
                payload: b"expired".to_vec(),
                properties: Default::default(),
                ..Will::default()
            };
            let mut will = will;
            will.properties
                .0
                .push((property::WILL_DELAY_INTERVAL, Value::FourByte(60)));
            let connect = Connect::new("exp-sub")
                .property(property::SESSION_EXPIRY_INTERVAL, Value::FourByte(1))
                .will(will);
            let mut subscriber = Wire::connected(&address, version, &connect).await?;
            subscriber
                .subscribe(1, &[("exp/data", 1)], &Default::default())
                .await?;
            let closed_at = Instant::now();
            subscriber.drop_connection().await?;

            let will = watcher.expect_publish().await?;
            let waited = closed_at.elapsed();
            let resume = Connect::new("exp-sub").clean(false);
            let (_, connack) = Wire::connect(&address, version, &resume).await?;
            Ok((
                will.text(),
                waited.as_millis() >= 900,
                session_present(&connack)?,
            ))
        },
    )?;
    assert_eq!(
        observed,
        ("expired".to_string(), true, false),
        "MQTT-3.1.2-8, MQTT-4.1.0-2"
    );
    Ok(())
}

/// A second connection with the same client id takes the session over: the
/// old connection is closed, in 5.0 after DISCONNECT 0x8E (MQTT-3.1.4-3),
/// and the new one resumes the subscription. mosquitto 2.0.11 closes the
/// old connection without DISCONNECT.
fn takeover(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let (reference, worker) = observe(
        server,
        &namespace("takeover", version),
        |address| async move {
            let mut old =
                Wire::connected(&address, version, &persistent("tk", false, version)).await?;
            old.subscribe(1, &[("tk/#", 1)], &Default::default())
                .await?;
            let (mut new, connack) =
                Wire::connect(&address, version, &persistent("tk", false, version)).await?;
            new.auto_ack = true;
            let old_saw = old.expect_closed_with().await?;
            let mut publisher = Wire::connected(&address, version, &Connect::new("tk-pub")).await?;
            publisher
                .publish_acknowledged(&Publish::new("tk/x", b"after", 1, 1))
                .await?;
            let received = new.expect_publish().await?;
            Ok((old_saw, session_present(&connack)?, received.text()))
        },
    )?;
    assert_eq!(reference.1, worker.1, "Session Present after takeover");
    assert_eq!(reference.2, worker.2, "delivery after takeover");
    let expected_disconnect = match version {
        Version::V311 => None,
        Version::V5 => Some(Incoming::Disconnect {
            reason: 0x8E,
            properties: Default::default(),
        }),
    };
    let worker_disconnect = worker.0.map(|packet| match packet {
        Incoming::Disconnect { reason, .. } => Incoming::Disconnect {
            reason,
            properties: Default::default(),
        },
        other => other,
    });
    assert_eq!(worker_disconnect, expected_disconnect, "MQTT-3.1.4-3");
    assert!(
        worker.1,
        "MQTT-3.2.2-3: the taken over session was not present"
    );
    Ok(())
}

/// How a connection with a will ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// The client closes the socket without DISCONNECT.
    SocketClosed,
    /// The client stays silent past one and a half keep alive periods.
    KeepAlive,
    /// The client sends a second CONNECT, a protocol error.
    ProtocolError,
    /// DISCONNECT with reason 0x04, Disconnect with Will Message.
    DisconnectWithWill,
    /// DISCONNECT with reason 0x00: no will.
    Disconnect,
}

/// Whether the will is published for each way a connection ends
/// (MQTT-3.1.2-8, MQTT-3.1.2-10, MQTT-3.14.4-3, MQTT-3.1.2-22). The Will
/// Flag description of MQTT 3.1.1 and 5.0 lists a server closing the
/// connection for a protocol error among the cases that publish the will,
/// but mosquitto 2.0.11 does not publish it after a second CONNECT. MQTT
/// 5.0 section 4.13 recommends DISCONNECT with the reason code (0x82 here)
/// before the close, and this broker sends it.
fn will(server: &Wrangler, version: Version, ending: Ending) -> Result<(), Failed> {
    let test = format!("will-{ending:?}").to_lowercase();
    let (reference, worker) = observe(server, &namespace(&test, version), |address| async move {
        let mut watcher = watcher(&address, version, "will-watch", "will/#").await?;
        let will = Will {
            topic: "will/topic".into(),
            payload: b"last words".to_vec(),
            qos: 1,
            ..Will::default()
        };
        let keep_alive = if ending == Ending::KeepAlive { 1 } else { 60 };
        let connect = Connect::new("will-client")
            .keep_alive(keep_alive)
            .will(will);
        let mut client = Wire::connected(&address, version, &connect).await?;
        let mut client_saw = None;
        match ending {
            Ending::SocketClosed => client.drop_connection().await?,
            Ending::KeepAlive => client_saw = client.expect_closed_with().await?,
            Ending::ProtocolError => {
                client
                    .send(crate::wire::encode_connect(
                        version,
                        &Connect::new("will-client"),
                    ))
                    .await?;
                client_saw = client.expect_closed_with().await?;
            }
            Ending::DisconnectWithWill => client.disconnect(0x04).await?,
            Ending::Disconnect => client.disconnect(0x00).await?,
        }
        // Except after SocketClosed, the client has seen the broker close
        // the connection, so a will, if any, was published before the marker.
        let will = match ending {
            Ending::SocketClosed => Some(Delivery::from(&watcher.expect_publish().await?)),
            _ => {
                watcher
                    .publish_acknowledged(&Publish::new("will/marker", b"marker", 1, 1))
                    .await?;
                deliveries_until(&mut watcher, "marker")
                    .await?
                    .first()
                    .map(Delivery::from)
            }
        };
        let client_saw = client_saw.map(|packet| match packet {
            Incoming::Disconnect { reason, .. } => reason,
            other => panic!("expected DISCONNECT, got {other:?}"),
        });
        Ok((will, client_saw))
    })?;
    if ending != Ending::ProtocolError {
        assert_eq!(
            reference.0, worker.0,
            "will delivery differs from mosquitto"
        );
    }
    let expected = match ending {
        Ending::Disconnect => None,
        _ => Some(Delivery {
            topic: "will/topic".into(),
            payload: "last words".into(),
            qos: 1,
            retain: false,
            dup: false,
        }),
    };
    assert_eq!(worker.0, expected, "MQTT-3.1.2-8, MQTT-3.1.2-10");
    if version == Version::V5 && ending == Ending::ProtocolError {
        assert_eq!(
            worker.1,
            Some(0x82),
            "DISCONNECT 0x82 (Protocol Error) before closing"
        );
    }
    Ok(())
}

/// A will with QoS 2 and RETAIN is published at QoS 2 and kept as a
/// retained message (MQTT-3.1.2-15).
fn will_qos_and_retain(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(
        server,
        &namespace("will-retain", version),
        |address| async move {
            let mut watcher = watcher(&address, version, "wr-watch", "wr/#").await?;
            let will = Will {
                topic: "wr/status".into(),
                payload: b"offline".to_vec(),
                qos: 2,
                retain: true,
                ..Will::default()
            };
            let client =
                Wire::connected(&address, version, &Connect::new("wr-client").will(will)).await?;
            client.drop_connection().await?;
            let live = Delivery::from(&watcher.expect_publish().await?);
            let late = watcher_retained(&address, version).await?;
            Ok((live, late))
        },
    )?;
    let retained = Delivery {
        topic: "wr/status".into(),
        payload: "offline".into(),
        qos: 2,
        retain: true,
        dup: false,
    };
    let live = Delivery {
        retain: false,
        ..retained.clone()
    };
    assert_eq!(observed, (live, retained), "MQTT-3.1.2-15");
    Ok(())
}

async fn watcher_retained(address: &BrokerAddress, version: Version) -> Result<Delivery, Failed> {
    let mut late = watcher(address, version, "wr-late", "wr/#").await?;
    Ok(Delivery::from(&late.expect_publish().await?))
}

/// A reconnection within the Will Delay Interval cancels the will
/// (MQTT-3.1.3-9). A second client with the same delay that does not come
/// back shows when the first will would have been due.
fn will_delay_cancelled(server: &Wrangler) -> Result<(), Failed> {
    let version = Version::V5;
    let observed = same(
        server,
        &namespace("will-delay", version),
        |address| async move {
            let mut watcher = watcher(&address, version, "wd-watch", "wd/#").await?;
            let delayed_will = |topic: &str| {
                let mut will = Will {
                    topic: topic.into(),
                    payload: topic.as_bytes().to_vec(),
                    ..Will::default()
                };
                will.properties
                    .0
                    .push((property::WILL_DELAY_INTERVAL, Value::FourByte(2)));
                will
            };
            let returning = persistent("wd-back", true, version).will(delayed_will("wd/back"));
            let staying_away = persistent("wd-away", true, version).will(delayed_will("wd/away"));
            let back = Wire::connected(&address, version, &returning).await?;
            let away = Wire::connected(&address, version, &staying_away).await?;
            back.drop_connection().await?;
            away.drop_connection().await?;
            let (_, connack) =
                Wire::connect(&address, version, &persistent("wd-back", false, version)).await?;

            let mut wills = Vec::new();
            loop {
                let will = watcher.expect_publish().await?;
                wills.push(will.topic.clone());
                if will.topic == "wd/away" {
                    break;
                }
            }
            watcher
                .publish_acknowledged(&Publish::new("wd/marker", b"marker", 1, 1))
                .await?;
            for late in deliveries_until(&mut watcher, "marker").await? {
                wills.push(late.topic);
            }
            Ok((session_present(&connack)?, wills))
        },
    )?;
    assert_eq!(
        observed,
        (true, vec!["wd/away".to_string()]),
        "MQTT-3.1.3-9"
    );
    Ok(())
}

/// A takeover closes the old connection without a DISCONNECT from its
/// client, so the old connection's will (without Will Delay Interval) is
/// published, as after any such close (MQTT-3.1.2-8).
fn will_on_takeover(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(
        server,
        &namespace("will-takeover", version),
        |address| async move {
            let mut watcher = watcher(&address, version, "wt-watch", "wt/#").await?;
            let will = Will {
                topic: "wt/will".into(),
                payload: b"taken over".to_vec(),
                ..Will::default()
            };
            let mut old =
                Wire::connected(&address, version, &Connect::new("wt-client").will(will)).await?;
            let _new = Wire::connected(&address, version, &Connect::new("wt-client")).await?;
            old.expect_closed_with().await?;
            watcher
                .publish_acknowledged(&Publish::new("wt/marker", b"marker", 1, 1))
                .await?;
            let wills: Vec<String> = deliveries_until(&mut watcher, "marker")
                .await?
                .iter()
                .map(Publish::text)
                .collect();
            Ok(wills)
        },
    )?;
    assert_eq!(observed, vec!["taken over".to_string()], "MQTT-3.1.2-8");
    Ok(())
}

/// More queued QoS 1 messages than either broker has in flight at once all
/// arrive after reconnection, in order (MQTT-4.6.0-5).
fn long_offline_queue(server: &Wrangler, version: Version) -> Result<(), Failed> {
    const COUNT: u16 = 60;
    let observed = same(
        server,
        &namespace("long-queue", version),
        |address| async move {
            let mut subscriber =
                Wire::connected(&address, version, &persistent("lq-sub", false, version)).await?;
            subscriber
                .subscribe(1, &[("lq/#", 1)], &Default::default())
                .await?;
            subscriber.disconnect(0).await?;

            let mut publisher = Wire::connected(&address, version, &Connect::new("lq-pub")).await?;
            for index in 0..COUNT {
                let payload = index.to_string();
                let publish = Publish::new("lq/x", payload.as_bytes(), 1, 1 + index);
                publisher.publish_acknowledged(&publish).await?;
            }
            publisher
                .publish_acknowledged(&Publish::new("lq/x", b"marker", 1, 100))
                .await?;

            let resume = persistent("lq-sub", false, version);
            let mut resumed = Wire::connected(&address, version, &resume).await?;
            resumed.auto_ack = true;
            let received = deliveries_until(&mut resumed, "marker").await?;
            Ok(received.iter().map(Publish::text).collect::<Vec<_>>())
        },
    )?;
    let expected: Vec<String> = (0..COUNT).map(|index| index.to_string()).collect();
    assert_eq!(observed, expected, "MQTT-4.6.0-5");
    Ok(())
}

/// A session that ends with its connection (Clean Session 1 in 3.1.1,
/// Session Expiry Interval 0 in 5.0) keeps nothing: a later Clean Start 0
/// connection gets Session Present 0, no old subscription and no queued
/// message (MQTT-3.1.2-4, MQTT-4.1.0-2, MQTT-3.2.2-3).
fn ended_session_keeps_nothing(server: &Wrangler, version: Version) -> Result<(), Failed> {
    let observed = same(server, &namespace("ended", version), |address| async move {
        let mut subscriber = Wire::connected(&address, version, &Connect::new("es-sub")).await?;
        subscriber
            .subscribe(1, &[("es/#", 1)], &Default::default())
            .await?;
        subscriber.disconnect(0).await?;

        let mut publisher = Wire::connected(&address, version, &Connect::new("es-pub")).await?;
        publisher
            .publish_acknowledged(&Publish::new("es/x", b"queued?", 1, 1))
            .await?;

        let resume = Connect::new("es-sub").clean(false);
        let (mut resumed, connack) = Wire::connect(&address, version, &resume).await?;
        resumed.auto_ack = true;
        resumed
            .subscribe(1, &[("es-marker", 1)], &Default::default())
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("es/x", b"live?", 1, 2))
            .await?;
        publisher
            .publish_acknowledged(&Publish::new("es-marker", b"marker", 1, 3))
            .await?;
        let received: Vec<String> = deliveries_until(&mut resumed, "marker")
            .await?
            .iter()
            .map(Publish::text)
            .collect();
        Ok((session_present(&connack)?, received))
    })?;
    assert_eq!(observed, (false, Vec::new()), "MQTT-3.1.2-4, MQTT-4.1.0-2");
    Ok(())
}
