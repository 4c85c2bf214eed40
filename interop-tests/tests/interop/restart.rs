//! State that must outlive the process: each test kills `wrangler dev`
//! without warning and starts it again on the same `--persist-to` folder.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use interop_tests::Wrangler;
use libtest_mimic::Failed;
use rumqttc::{Packet, QoS};

use crate::mqtt::{run, Client, WAIT};
use crate::wire::{Connect, Incoming, Publish, Version, Wire};

pub const TESTS: &[(&str, crate::OwnServerTestFn)] = &[
    ("restart_keeps_retained_messages", retained_survives_restart),
    (
        "restart_after_kill_delivers_acknowledged_messages",
        acknowledged_messages_survive_kill,
    ),
];

fn retained_survives_restart() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let mut first = Wrangler::start(persist.path(), &[]);
    run(async {
        let mut publisher = Client::connect(&first, "/mqtt", "restart-pub").await?;
        publisher
            .client
            .publish("restart/state", QoS::AtLeastOnce, true, "durable")
            .await?;
        publisher.expect(|p| matches!(p, Packet::PubAck(_))).await?;
        Ok(())
    })?;
    first.kill();

    let second = Wrangler::start(persist.path(), &[]);
    run(async {
        let mut subscriber = Client::connect(&second, "/mqtt", "restart-sub").await?;
        subscriber.subscribe("restart/#", QoS::AtLeastOnce).await?;
        let message = subscriber.expect_publish().await?;
        assert_eq!(message.topic, "restart/state");
        assert_eq!(&message.payload[..], b"durable");
        assert!(message.retain);
        Ok(())
    })
}

/// Messages the publisher sends before the kill, at most, per QoS.
const STREAM_LENGTH: u16 = 300;
/// PUBACKs after which `wrangler dev` is killed.
const KILL_AFTER_PUBACKS: usize = 40;
/// Messages per QoS the publisher keeps unacknowledged at once.
const WINDOW: usize = 8;

const Q1_TOPIC: &str = "dur/q1";
const Q2_TOPIC: &str = "dur/q2";

/// The publisher's view of one numbered stream at QoS 1 and one at QoS 2.
#[derive(Default)]
struct Outbox {
    sent: u16,
    pubacked: BTreeSet<u16>,
    pubrec: BTreeSet<u16>,
    pubcomp: BTreeSet<u16>,
}

impl Outbox {
    fn q1_pkid(n: u16) -> u16 {
        1 + n
    }

    fn q2_pkid(n: u16) -> u16 {
        1 + STREAM_LENGTH + n
    }

    /// Records an acknowledgement and returns the packet id to release if
    /// it is a PUBREC.
    fn record(&mut self, packet: &Incoming) -> Option<u16> {
        match *packet {
            Incoming::PubAck { pkid, .. } => {
                self.pubacked.insert(pkid - 1);
            }
            Incoming::PubRec { pkid, .. } => {
                self.pubrec.insert(pkid - 1 - STREAM_LENGTH);
                return Some(pkid);
            }
            Incoming::PubComp { pkid, .. } => {
                self.pubcomp.insert(pkid - 1 - STREAM_LENGTH);
            }
            _ => {}
        }
        None
    }

    /// Handles one packet from the broker, releasing QoS 2 messages.
    /// Send failures are ignored, because the broker may be gone.
    async fn handle(&mut self, publisher: &mut Wire, packet: &Incoming) {
        if let Some(pkid) = self.record(packet) {
            let _ = publisher.pubrel(pkid).await;
        }
    }
}

/// The subscribing application, with the receiver's side of QoS 2: a
/// PUBLISH whose packet id was acknowledged with PUBREC and not released
/// yet is a duplicate and is not delivered again (MQTT-4.3.3-10).
#[derive(Default)]
struct Inbox {
    /// (topic, number) in order of delivery.
    delivered: Vec<(String, u16)>,
    unreleased: HashSet<u16>,
    marker_seen: bool,
}

impl Inbox {
    /// Handles one packet, acknowledging it. Send failures are ignored,
    /// because the broker may be gone.
    async fn handle(&mut self, wire: &mut Wire, packet: Incoming) -> Result<(), Failed> {
        match packet {
            Incoming::Publish(publish) => {
                if publish.topic == "dur/end" {
                    self.marker_seen = true;
                    let _ = wire.puback(publish.pkid).await;
                    return Ok(());
                }
                let number = publish.text().parse::<u16>()?;
                match publish.qos {
                    1 => {
                        self.delivered.push((publish.topic.clone(), number));
                        let _ = wire.puback(publish.pkid).await;
                    }
                    2 => {
                        if self.unreleased.insert(publish.pkid) {
                            self.delivered.push((publish.topic.clone(), number));
                        }
                        let _ = wire.pubrec(publish.pkid).await;
                    }
                    qos => return Err(format!("unexpected QoS {qos} delivery").into()),
                }
            }
            Incoming::PubRel { pkid, .. } => {
                self.unreleased.remove(&pkid);
                let _ = wire.pubcomp(pkid).await;
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts how often each number arrived on `topic`.
    fn counts(&self, topic: &str) -> BTreeMap<u16, usize> {
        let mut counts = BTreeMap::new();
        for (_, number) in self.delivered.iter().filter(|(t, _)| t == topic) {
            *counts.entry(*number).or_default() += 1;
        }
        counts
    }
}

/// Builds a CONNECT for a session that survives restarts: Clean Session 0
/// in MQTT 3.1.1.
fn durable(client_id: &str) -> Connect {
    Connect::new(client_id).clean(false)
}

/// Kills `wrangler dev` with SIGKILL in the middle of a QoS 1 and a QoS 2
/// stream, restarts it on the same `--persist-to` folder and resumes both
/// sessions. Every message the publisher got PUBACK or PUBREC for arrives
/// (MQTT-4.3.2-4, MQTT-4.3.3-8: the server owns it then); QoS 1 may
/// arrive twice, QoS 2 exactly once. The publisher resends what was not
/// acknowledged, as MQTT-4.4.0-1 requires, so every message must arrive.
fn acknowledged_messages_survive_kill() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let mut first = Wrangler::start(persist.path(), &[]);
    let address = first.address("/mqtt/durable");
    let version = Version::V311;
    let subscriptions = [(Q1_TOPIC, 1), (Q2_TOPIC, 2), ("dur/end", 1)];

    let mut outbox = Outbox::default();
    let mut inbox = run(async {
        let mut subscriber = Wire::connected(&address, version, &durable("dur-sub")).await?;
        subscriber
            .subscribe(1, &subscriptions, &Default::default())
            .await?;
        let mut publisher = Wire::connected(&address, version, &durable("dur-pub")).await?;

        let receiving = tokio::spawn(async move {
            let mut inbox = Inbox::default();
            loop {
                match subscriber.recv_within(Duration::from_secs(30)).await? {
                    None => {
                        return Err::<Inbox, Failed>("subscriber: no packet and no close".into())
                    }
                    Some(Incoming::Closed) => return Ok(inbox),
                    Some(packet) => inbox.handle(&mut subscriber, packet).await?,
                }
            }
        });

        for n in 0..STREAM_LENGTH {
            let payload = n.to_string();
            publisher
                .publish(&Publish::new(
                    Q1_TOPIC,
                    payload.as_bytes(),
                    1,
                    Outbox::q1_pkid(n),
                ))
                .await?;
            publisher
                .publish(&Publish::new(
                    Q2_TOPIC,
                    payload.as_bytes(),
                    2,
                    Outbox::q2_pkid(n),
                ))
                .await?;
            outbox.sent = n + 1;
            let in_flight = |o: &Outbox| usize::from(o.sent) - o.pubacked.len().min(o.pubrec.len());
            while let Some(packet) = publisher.recv_within(Duration::ZERO).await? {
                outbox.handle(&mut publisher, &packet).await;
            }
            while in_flight(&outbox) > WINDOW {
                let packet = publisher.recv().await?;
                outbox.handle(&mut publisher, &packet).await;
            }
            if outbox.pubacked.len() >= KILL_AFTER_PUBACKS {
                break;
            }
        }
        first.kill();
        // Acknowledgements that arrived before the kill still count.
        while let Some(packet) = publisher.recv_within(Duration::ZERO).await? {
            if packet == Incoming::Closed {
                break;
            }
            outbox.record(&packet);
        }
        receiving.await?
    })?;
    eprintln!(
        "before the kill: {} sent per QoS, {} PUBACK, {} PUBREC, {} PUBCOMP, {} delivered",
        outbox.sent,
        outbox.pubacked.len(),
        outbox.pubrec.len(),
        outbox.pubcomp.len(),
        inbox.delivered.len()
    );
    let acknowledged_q1 = outbox.pubacked.clone();
    let acknowledged_q2 = outbox.pubrec.clone();

    let second = Wrangler::start(persist.path(), &[]);
    let address = second.address("/mqtt/durable");
    run(async {
        let (mut subscriber, connack) =
            Wire::connect(&address, version, &durable("dur-sub")).await?;
        assert!(
            matches!(
                connack,
                Incoming::ConnAck {
                    session_present: true,
                    code: 0,
                    ..
                }
            ),
            "subscriber: {connack:?}"
        );
        let (mut publisher, connack) =
            Wire::connect(&address, version, &durable("dur-pub")).await?;
        assert!(
            matches!(
                connack,
                Incoming::ConnAck {
                    session_present: true,
                    code: 0,
                    ..
                }
            ),
            "publisher: {connack:?}"
        );

        // The publisher resends what was not acknowledged, with DUP and the
        // same packet ids, and releases what was received (MQTT-4.4.0-1).
        for n in 0..outbox.sent {
            let payload = n.to_string();
            if !outbox.pubacked.contains(&n) {
                let mut publish = Publish::new(Q1_TOPIC, payload.as_bytes(), 1, Outbox::q1_pkid(n));
                publish.dup = true;
                publisher.publish(&publish).await?;
            }
            if !outbox.pubrec.contains(&n) {
                let mut publish = Publish::new(Q2_TOPIC, payload.as_bytes(), 2, Outbox::q2_pkid(n));
                publish.dup = true;
                publisher.publish(&publish).await?;
            } else if !outbox.pubcomp.contains(&n) {
                publisher.pubrel(Outbox::q2_pkid(n)).await?;
            }
        }
        while outbox.pubacked.len() < usize::from(outbox.sent)
            || outbox.pubcomp.len() < usize::from(outbox.sent)
        {
            let packet = publisher.recv().await?;
            if packet == Incoming::Closed {
                return Err("the publisher's connection closed after the restart".into());
            }
            outbox.handle(&mut publisher, &packet).await;
        }
        publisher
            .publish(&Publish::new("dur/end", b"end", 1, 2 * STREAM_LENGTH + 10))
            .await?;

        while !inbox.marker_seen {
            let packet = tokio::time::timeout(WAIT, subscriber.recv())
                .await
                .map_err(|_| "subscriber: no marker after the restart")??;
            if packet == Incoming::Closed {
                return Err("the subscriber's connection closed after the restart".into());
            }
            inbox.handle(&mut subscriber, packet).await?;
        }
        Ok(())
    })?;

    let q1 = inbox.counts(Q1_TOPIC);
    let q2 = inbox.counts(Q2_TOPIC);
    let lost_q1: Vec<u16> = acknowledged_q1
        .iter()
        .filter(|n| !q1.contains_key(n))
        .copied()
        .collect();
    let lost_q2: Vec<u16> = acknowledged_q2
        .iter()
        .filter(|n| !q2.contains_key(n))
        .copied()
        .collect();
    assert_eq!(
        lost_q1,
        Vec::<u16>::new(),
        "QoS 1 messages acknowledged with PUBACK before the kill were lost"
    );
    assert_eq!(
        lost_q2,
        Vec::<u16>::new(),
        "QoS 2 messages acknowledged with PUBREC before the kill were lost"
    );
    let duplicated_q2: Vec<(u16, usize)> = q2
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    assert_eq!(
        duplicated_q2,
        Vec::new(),
        "QoS 2 messages delivered more than once"
    );
    let all: Vec<u16> = (0..outbox.sent).collect();
    assert_eq!(
        q1.keys().copied().collect::<Vec<_>>(),
        all,
        "QoS 1 messages missing after resending"
    );
    assert_eq!(
        q2.keys().copied().collect::<Vec<_>>(),
        all,
        "QoS 2 messages missing after resending"
    );
    Ok(())
}
