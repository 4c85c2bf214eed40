//! rumqttc (MQTT 3.1.1 over WebSocket) against the Worker.

use std::time::Duration;

use interop_tests::Wrangler;
use libtest_mimic::Failed;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, Transport};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long a test waits for one expected packet.
pub const WAIT: Duration = Duration::from_secs(10);

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("rumqttc_qos0_and_qos1_roundtrip", qos0_and_qos1_roundtrip),
    ("rumqttc_delivery_at_lower_qos", delivery_at_lower_qos),
    ("rumqttc_wildcards", wildcards),
    (
        "rumqttc_dollar_topics_skip_wildcards",
        dollar_topics_skip_wildcards,
    ),
    (
        "rumqttc_retained_set_replace_clear",
        retained_set_replace_clear,
    ),
    (
        "rumqttc_unsubscribe_stops_delivery",
        unsubscribe_stops_delivery,
    ),
    ("rumqttc_namespaces_are_isolated", namespaces_are_isolated),
];

/// A connected rumqttc client whose incoming packets arrive on a channel.
pub struct Client {
    pub client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
}

impl Client {
    /// Connects with a clean session and waits for CONNACK.
    pub async fn connect(server: &Wrangler, path: &str, id: &str) -> Result<Client, Failed> {
        let mut options = MqttOptions::new(id, server.ws_url(path), server.port());
        options.set_transport(Transport::Ws);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, eventloop) = AsyncClient::new(options, 100);
        let (sender, incoming) = mpsc::unbounded_channel();
        tokio::spawn(forward_incoming(eventloop, sender));
        let mut client = Client { client, incoming };
        client.expect(|p| matches!(p, Packet::ConnAck(_))).await?;
        Ok(client)
    }

    /// Waits for the next packet that `wanted` accepts, skipping others.
    pub async fn expect(&mut self, wanted: impl Fn(&Packet) -> bool) -> Result<Packet, Failed> {
        let search = async {
            while let Some(packet) = self.incoming.recv().await {
                if wanted(&packet) {
                    return Some(packet);
                }
            }
            None
        };
        match timeout(WAIT, search).await {
            Ok(Some(packet)) => Ok(packet),
            Ok(None) => Err("connection ended before the expected packet".into()),
            Err(_) => Err(format!("no expected packet within {WAIT:?}").into()),
        }
    }

    /// Waits for the next PUBLISH.
    pub async fn expect_publish(&mut self) -> Result<Publish, Failed> {
        match self.expect(|p| matches!(p, Packet::Publish(_))).await? {
            Packet::Publish(publish) => Ok(publish),
            _ => unreachable!("filtered on PUBLISH"),
        }
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), Failed> {
        self.client.subscribe(filter, qos).await?;
        self.expect(|p| matches!(p, Packet::SubAck(_))).await?;
        Ok(())
    }
}

async fn forward_incoming(mut eventloop: EventLoop, sender: mpsc::UnboundedSender<Packet>) {
    while let Ok(event) = eventloop.poll().await {
        if let Event::Incoming(packet) = event {
            if sender.send(packet).is_err() {
                return;
            }
        }
    }
}

/// Runs an async test body on a fresh runtime and returns its result.
pub fn run<T>(body: impl std::future::Future<Output = Result<T, Failed>>) -> Result<T, Failed> {
    tokio::runtime::Runtime::new()?.block_on(body)
}

fn qos0_and_qos1_roundtrip(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut subscriber = Client::connect(server, "/mqtt", "rt-sub").await?;
        subscriber
            .subscribe("roundtrip/+", QoS::AtLeastOnce)
            .await?;
        let mut publisher = Client::connect(server, "/mqtt", "rt-pub").await?;

        publisher
            .client
            .publish("roundtrip/a", QoS::AtMostOnce, false, "zero")
            .await?;
        let message = subscriber.expect_publish().await?;
        assert_eq!(message.topic, "roundtrip/a");
        assert_eq!(&message.payload[..], b"zero");
        assert_eq!(message.qos, QoS::AtMostOnce);

        publisher
            .client
            .publish("roundtrip/b", QoS::AtLeastOnce, false, "one")
            .await?;
        publisher.expect(|p| matches!(p, Packet::PubAck(_))).await?;
        let message = subscriber.expect_publish().await?;
        assert_eq!(message.topic, "roundtrip/b");
        assert_eq!(&message.payload[..], b"one");
        assert_eq!(message.qos, QoS::AtLeastOnce);
        assert_ne!(message.pkid, 0);
        assert!(!message.retain);
        Ok(())
    })
}

fn delivery_at_lower_qos(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut subscriber = Client::connect(server, "/mqtt", "lower-sub").await?;
        subscriber.subscribe("lower/qos", QoS::AtMostOnce).await?;
        let publisher = Client::connect(server, "/mqtt", "lower-pub").await?;
        publisher
            .client
            .publish("lower/qos", QoS::AtLeastOnce, false, "x")
            .await?;
        let message = subscriber.expect_publish().await?;
        assert_eq!(message.qos, QoS::AtMostOnce, "granted QoS 0 caps delivery");
        Ok(())
    })
}

fn wildcards(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut multi = Client::connect(server, "/mqtt", "wild-multi").await?;
        multi.subscribe("wild/#", QoS::AtMostOnce).await?;
        let mut single = Client::connect(server, "/mqtt", "wild-single").await?;
        single.subscribe("wild/+/leaf", QoS::AtMostOnce).await?;
        let publisher = Client::connect(server, "/mqtt", "wild-pub").await?;

        // `wild/#` also matches the parent level `wild`.
        publisher
            .client
            .publish("wild", QoS::AtMostOnce, false, "parent")
            .await?;
        assert_eq!(multi.expect_publish().await?.topic, "wild");

        publisher
            .client
            .publish("wild/x/leaf", QoS::AtMostOnce, false, "leaf")
            .await?;
        assert_eq!(multi.expect_publish().await?.topic, "wild/x/leaf");
        assert_eq!(single.expect_publish().await?.topic, "wild/x/leaf");

        // `+` matches exactly one level, so the next PUBLISH that reaches
        // `single` must be the marker, not `wild/x/y/leaf`.
        publisher
            .client
            .publish("wild/x/y/leaf", QoS::AtMostOnce, false, "deep")
            .await?;
        publisher
            .client
            .publish("wild/marker/leaf", QoS::AtMostOnce, false, "marker")
            .await?;
        assert_eq!(single.expect_publish().await?.topic, "wild/marker/leaf");
        Ok(())
    })
}

fn dollar_topics_skip_wildcards(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut everything = Client::connect(server, "/mqtt/dollar", "dollar-all").await?;
        everything.subscribe("#", QoS::AtMostOnce).await?;
        everything.subscribe("+/status", QoS::AtMostOnce).await?;
        let mut explicit = Client::connect(server, "/mqtt/dollar", "dollar-explicit").await?;
        explicit.subscribe("$app/#", QoS::AtMostOnce).await?;
        let publisher = Client::connect(server, "/mqtt/dollar", "dollar-pub").await?;

        publisher
            .client
            .publish("$app/status", QoS::AtMostOnce, false, "hidden")
            .await?;
        assert_eq!(explicit.expect_publish().await?.topic, "$app/status");
        publisher
            .client
            .publish("plain/status", QoS::AtMostOnce, false, "seen")
            .await?;
        let first = everything.expect_publish().await?;
        assert_eq!(
            first.topic, "plain/status",
            "a filter starting with a wildcard matched a $ topic"
        );
        Ok(())
    })
}

fn retained_set_replace_clear(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let publisher = Client::connect(server, "/mqtt", "ret-pub").await?;
        let mut acks = publisher;
        acks.client
            .publish("retained/state", QoS::AtLeastOnce, true, "first")
            .await?;
        acks.expect(|p| matches!(p, Packet::PubAck(_))).await?;
        acks.client
            .publish("retained/state", QoS::AtLeastOnce, true, "second")
            .await?;
        acks.expect(|p| matches!(p, Packet::PubAck(_))).await?;

        let mut late = Client::connect(server, "/mqtt", "ret-late").await?;
        late.subscribe("retained/#", QoS::AtLeastOnce).await?;
        let message = late.expect_publish().await?;
        assert_eq!(message.topic, "retained/state");
        assert_eq!(
            &message.payload[..],
            b"second",
            "a retained message replaces the previous one"
        );
        assert!(
            message.retain,
            "a retained message sent on subscribe carries RETAIN"
        );

        // A live delivery to an existing subscription has RETAIN cleared.
        acks.client
            .publish("retained/state", QoS::AtLeastOnce, true, "third")
            .await?;
        let live = late.expect_publish().await?;
        assert_eq!(&live.payload[..], b"third");
        assert!(
            !live.retain,
            "a live delivery must not carry RETAIN in 3.1.1"
        );

        // An empty retained payload clears the topic.
        acks.client
            .publish("retained/state", QoS::AtLeastOnce, true, "")
            .await?;
        acks.expect(|p| matches!(p, Packet::PubAck(_))).await?;
        acks.client
            .publish("retained/marker", QoS::AtLeastOnce, true, "marker")
            .await?;
        acks.expect(|p| matches!(p, Packet::PubAck(_))).await?;
        let mut after = Client::connect(server, "/mqtt", "ret-after").await?;
        after.subscribe("retained/#", QoS::AtLeastOnce).await?;
        let first = after.expect_publish().await?;
        assert_eq!(
            first.topic, "retained/marker",
            "the cleared topic was still retained"
        );
        Ok(())
    })
}

fn unsubscribe_stops_delivery(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut subscriber = Client::connect(server, "/mqtt", "unsub-sub").await?;
        subscriber.subscribe("unsub/a", QoS::AtMostOnce).await?;
        subscriber.subscribe("unsub/b", QoS::AtMostOnce).await?;
        subscriber.client.unsubscribe("unsub/a").await?;
        subscriber
            .expect(|p| matches!(p, Packet::UnsubAck(_)))
            .await?;
        let publisher = Client::connect(server, "/mqtt", "unsub-pub").await?;
        publisher
            .client
            .publish("unsub/a", QoS::AtMostOnce, false, "gone")
            .await?;
        publisher
            .client
            .publish("unsub/b", QoS::AtMostOnce, false, "kept")
            .await?;
        assert_eq!(subscriber.expect_publish().await?.topic, "unsub/b");
        Ok(())
    })
}

fn namespaces_are_isolated(server: &Wrangler) -> Result<(), Failed> {
    run(async {
        let mut other = Client::connect(server, "/mqtt/iso-b", "iso-sub-b").await?;
        other.subscribe("iso/#", QoS::AtMostOnce).await?;
        let mut same = Client::connect(server, "/mqtt/iso-a", "iso-sub-a").await?;
        same.subscribe("iso/#", QoS::AtMostOnce).await?;
        let publisher = Client::connect(server, "/mqtt/iso-a", "iso-pub").await?;
        publisher
            .client
            .publish("iso/x", QoS::AtMostOnce, false, "a only")
            .await?;
        assert_eq!(same.expect_publish().await?.topic, "iso/x");

        let publisher_b = Client::connect(server, "/mqtt/iso-b", "iso-pub-b").await?;
        publisher_b
            .client
            .publish("iso/marker", QoS::AtMostOnce, false, "b")
            .await?;
        assert_eq!(
            other.expect_publish().await?.topic,
            "iso/marker",
            "a message crossed namespaces"
        );
        Ok(())
    })
}
