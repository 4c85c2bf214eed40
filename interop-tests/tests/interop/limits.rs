//! Abuse limits end to end: the exact code a client sees when it sends an
//! oversize packet, stays silent instead of sending CONNECT, floods PUBLISH
//! packets, connects to a full namespace or subscribes too often. After each
//! rejection another client still completes a publish/subscribe round trip.
//!
//! Limits that the shared server keeps at their defaults get servers of
//! their own, started with low values.

use std::time::{Duration, Instant};

use interop_tests::{BrokerAddress, Wrangler};
use libtest_mimic::Failed;

use crate::mqtt::run;
use crate::wire::{Connect, Incoming, Properties, Publish, Version, Wire};

pub const TESTS: &[(&str, crate::TestFn)] = &[
    (
        "limits_oversize_packet_v5_disconnect_0x95",
        oversize_packet_v5,
    ),
    ("limits_oversize_packet_v311_closes", oversize_packet_v311),
    ("limits_subscriptions_per_client", subscriptions_per_client),
];

pub const OWN_SERVER_TESTS: &[(&str, crate::OwnServerTestFn)] = &[
    ("limits_slow_connect_closes", slow_connect_closes),
    (
        "limits_message_flood_disconnects",
        message_flood_disconnects,
    ),
    (
        "limits_connections_per_namespace",
        connections_per_namespace,
    ),
    (
        "limits_offline_queue_drops_newest",
        offline_queue_drops_newest,
    ),
];

/// A persistent session queues at most `max_queued_messages` while its
/// client is offline; the messages beyond that are dropped, newest first.
fn offline_queue_drops_newest() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start(persist.path(), &[("max_queued_messages", "3")]);
    run(async {
        let address = server.address("/mqtt/limits-queue");
        let session = Connect::new("limits-queue-sub").clean(false);
        let mut subscriber = Wire::connected(&address, Version::V311, &session).await?;
        subscriber
            .subscribe(1, &[("limits/queue", 1)], &Properties::default())
            .await?;
        subscriber.disconnect(0).await?;

        let publisher_id = Connect::new("limits-queue-pub");
        let mut publisher = Wire::connected(&address, Version::V311, &publisher_id).await?;
        for number in 1..=5u16 {
            let payload = format!("m{number}");
            let publish = Publish::new("limits/queue", payload.as_bytes(), 1, number);
            publisher.publish_acknowledged(&publish).await?;
        }

        let mut subscriber = Wire::connected(&address, Version::V311, &session).await?;
        let mut received = Vec::new();
        for _ in 0..3 {
            received.push(subscriber.expect_publish().await?.text());
        }
        assert_eq!(received, ["m1", "m2", "m3"]);

        // The next message the session gets must be a live one: m4 and m5
        // were dropped when the queue was full.
        let marker = Publish::new("limits/queue", b"live", 1, 6);
        publisher.publish_acknowledged(&marker).await?;
        assert_eq!(subscriber.expect_publish().await?.text(), "live");
        Ok(())
    })
}

/// MQTT 5.0 reason codes the tests expect.
const PACKET_TOO_LARGE: u8 = 0x95;
const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
const QUOTA_EXCEEDED: u8 = 0x97;
/// The 3.1.1 CONNACK return code Server unavailable.
const SERVER_UNAVAILABLE_V311: u8 = 0x03;
/// The 3.1.1 SUBACK return code Failure.
const SUBACK_FAILURE_V311: u8 = 0x80;

/// Checks that a new subscriber and publisher in `path` still exchange a
/// message, so that the broker kept serving after a rejection.
async fn assert_round_trip(server: &Wrangler, path: &str, name: &str) -> Result<(), Failed> {
    let address = server.address(path);
    let topic = format!("limits/{name}/after");
    let subscriber_id = format!("{name}-after-sub");
    let publisher_id = format!("{name}-after-pub");
    let mut subscriber =
        Wire::connected(&address, Version::V5, &Connect::new(&subscriber_id)).await?;
    subscriber
        .subscribe(1, &[(&topic, 0)], &Properties::default())
        .await?;
    let mut publisher =
        Wire::connected(&address, Version::V311, &Connect::new(&publisher_id)).await?;
    publisher
        .publish(&Publish::new(&topic, b"still served", 0, 0))
        .await?;
    let received = subscriber.expect_publish().await?;
    assert_eq!(received.topic, topic);
    assert_eq!(received.text(), "still served");
    subscriber.disconnect(0).await?;
    publisher.disconnect(0).await
}

/// Encodes the fixed header of a QoS 0 PUBLISH whose Remaining Length announces
/// `length` bytes; the body is never sent.
fn publish_header(length: usize) -> Vec<u8> {
    let mut out = vec![0x30];
    let mut rest = length;
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if rest == 0 {
            return out;
        }
    }
}

/// Sends the header of a PUBLISH above the default `max_packet_size`
/// (1 MiB) and returns the DISCONNECT sent before the close, if any.
async fn send_oversize_packet(
    address: &BrokerAddress,
    version: Version,
    client_id: &str,
) -> Result<Option<Incoming>, Failed> {
    let mut client = Wire::connected(address, version, &Connect::new(client_id)).await?;
    client.send(publish_header(2 * 1024 * 1024)).await?;
    client.expect_closed_with().await
}

fn oversize_packet_v5(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let address = server.address("/mqtt");
        let disconnect = send_oversize_packet(&address, Version::V5, "limits-big-v5").await?;
        match disconnect {
            Some(Incoming::Disconnect { reason, .. }) => assert_eq!(reason, PACKET_TOO_LARGE),
            other => return Err(format!("expected DISCONNECT 0x95, got {other:?}").into()),
        }
        assert_round_trip(server, "/mqtt", "big-v5").await
    })
}

fn oversize_packet_v311(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let address = server.address("/mqtt");
        let disconnect = send_oversize_packet(&address, Version::V311, "limits-big-v311").await?;
        assert_eq!(disconnect, None, "3.1.1 has no DISCONNECT from the server");
        assert_round_trip(server, "/mqtt", "big-v311").await
    })
}

/// Subscribes to one filter more than the default limit of 100 in one
/// SUBSCRIBE: the last filter is rejected, the others are granted and used.
fn subscriptions_per_client(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let address = server.address("/mqtt");
        for (version, name, refused) in [
            (Version::V5, "subs-v5", QUOTA_EXCEEDED),
            (Version::V311, "subs-v311", SUBACK_FAILURE_V311),
        ] {
            let client_id = format!("limits-{name}");
            let mut client = Wire::connected(&address, version, &Connect::new(&client_id)).await?;
            let filters: Vec<String> = (0..101).map(|i| format!("limits/{name}/{i}")).collect();
            let requested: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 0)).collect();
            let codes = client
                .subscribe(1, &requested, &Properties::default())
                .await?;
            assert_eq!(codes.len(), 101, "{version:?}");
            assert!(
                codes[..100].iter().all(|&code| code == 0),
                "{version:?}: {codes:?}"
            );
            assert_eq!(codes[100], refused, "{version:?}");

            let topic = format!("limits/{name}/0");
            client
                .publish(&Publish::new(&topic, b"granted", 0, 0))
                .await?;
            assert_eq!(client.expect_publish().await?.text(), "granted");
            client.disconnect(0).await?;
            assert_round_trip(server, "/mqtt", name).await?;
        }
        Ok(())
    })
}

/// Checks that a socket that never sends CONNECT is closed after
/// `connect_timeout_ms`.
fn slow_connect_closes() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start(persist.path(), &[("connect_timeout_ms", "1500")]);
    run(async {
        let address = server.address("/mqtt");
        let mut silent = Wire::open(&address, Version::V311).await?;
        let opened = Instant::now();
        assert_eq!(silent.expect_closed_with().await?, None);
        let waited = opened.elapsed();
        assert!(
            waited >= Duration::from_millis(1000),
            "closed after only {waited:?}"
        );
        assert_round_trip(&server, "/mqtt", "slow-connect").await
    })
}

/// PUBLISH packets beyond a burst of 20 (at 10 per second), sent in one
/// WebSocket message, close the connection: DISCONNECT 0x96 in 5.0, a plain
/// close in 3.1.1.
fn message_flood_disconnects() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start(
        persist.path(),
        &[("max_messages_per_sec", "10"), ("max_message_burst", "20")],
    );
    run(async {
        let address = server.address("/mqtt");
        for (version, client_id) in [
            (Version::V5, "limits-flood-v5"),
            (Version::V311, "limits-flood-v311"),
        ] {
            let mut flooder = Wire::connected(&address, version, &Connect::new(client_id)).await?;
            let mut flood = Vec::new();
            for i in 0..100 {
                let payload = i.to_string();
                let publish = Publish::new("limits/flood", payload.as_bytes(), 0, 0);
                flood.extend(crate::wire::encode_publish(version, &publish));
            }
            flooder.send(flood).await?;
            let disconnect = flooder.expect_closed_with().await?;
            match (version, disconnect) {
                (Version::V5, Some(Incoming::Disconnect { reason, .. })) => {
                    assert_eq!(reason, MESSAGE_RATE_TOO_HIGH)
                }
                (Version::V311, None) => {}
                (_, other) => return Err(format!("{version:?}: unexpected {other:?}").into()),
            }
        }
        assert_round_trip(&server, "/mqtt", "flood").await
    })
}

/// With `max_connections = 2`, a third client gets CONNACK 0x97 (5.0) or
/// 0x03 (3.1.1) and is closed, while the two connected clients go on.
fn connections_per_namespace() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = Wrangler::start(persist.path(), &[("max_connections", "2")]);
    run(async {
        let path = "/mqtt/limits-connections";
        let address = server.address(path);
        let mut subscriber =
            Wire::connected(&address, Version::V5, &Connect::new("limits-conn-1")).await?;
        let mut publisher =
            Wire::connected(&address, Version::V311, &Connect::new("limits-conn-2")).await?;

        for (version, expected) in [
            (Version::V5, QUOTA_EXCEEDED),
            (Version::V311, SERVER_UNAVAILABLE_V311),
        ] {
            let connect = Connect::new("limits-conn-3");
            let (mut refused, connack) = Wire::connect(&address, version, &connect).await?;
            match connack {
                Incoming::ConnAck { code, .. } => assert_eq!(code, expected, "{version:?}"),
                other => return Err(format!("expected CONNACK, got {other:?}").into()),
            }
            assert_eq!(refused.expect_closed_with().await?, None, "{version:?}");
        }

        subscriber
            .subscribe(1, &[("limits/connections", 0)], &Properties::default())
            .await?;
        publisher
            .publish(&Publish::new("limits/connections", b"still served", 0, 0))
            .await?;
        assert_eq!(subscriber.expect_publish().await?.text(), "still served");

        // A freed slot is usable again.
        publisher.disconnect(0).await?;
        subscriber.disconnect(0).await?;
        assert_round_trip(&server, path, "connections").await
    })
}
