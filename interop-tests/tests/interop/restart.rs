//! State that must outlive the process: each test kills `wrangler dev`
//! without warning and starts it again on the same `--persist-to` folder.

use interop_tests::Wrangler;
use libtest_mimic::Failed;
use rumqttc::{Packet, QoS};

use crate::mqtt::{run, Client};

pub const TESTS: &[(&str, fn() -> Result<(), Failed>)] =
    &[("restart_keeps_retained_messages", retained_survives_restart)];

fn retained_survives_restart() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let mut first = Wrangler::start(persist.path(), &[]);
    run(async {
        let mut publisher = Client::connect(&first, "/mqtt", "restart-pub").await?;
        publisher.client.publish("restart/state", QoS::AtLeastOnce, true, "durable").await?;
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
