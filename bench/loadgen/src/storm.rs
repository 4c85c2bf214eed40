//! The subscription storm: a namespace contains many retained messages, then
//! several clients subscribe to all of them at once.

use std::time::Duration;

use bytes::Bytes;
use codec::{Packet, QoS};
use serde::Serialize;
use tokio::time::Instant;

use crate::link::{self, Role, Target};
use crate::server::Probe;
use crate::stats::{self, Percentiles};

/// How long one subscriber may take to receive every retained message.
const RECEIVE_LIMIT: Duration = Duration::from_secs(90);

/// A subscriber that receives nothing for this long stops waiting.
const QUIET_LIMIT: Duration = Duration::from_secs(5);

/// The measurements of a storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub retained: usize,
    pub subscribers: usize,
    /// Retained messages stored per second while populating.
    pub populate_per_s: f64,
    /// Retained messages each subscriber received.
    pub received_min: usize,
    /// From SUBSCRIBE to the last retained message, per subscriber.
    pub completion: Percentiles,
    /// All retained deliveries divided by the time until the last one.
    pub deliveries_per_s: f64,
    pub server_cpu_s: Option<f64>,
}

/// Stores `retained` messages under `prefix`, then has `subscribers`
/// clients subscribe to `prefix/#` at the same moment.
pub async fn run(
    target: &Target,
    prefix: &str,
    retained: usize,
    subscribers: usize,
    probe: Option<&Probe>,
) -> Result<StormReport, String> {
    let populate_per_s = populate(target, prefix, retained).await?;

    let mut clients = Vec::new();
    for index in 0..subscribers {
        let client_id = format!("{}-storm-{index}", prefix.replace('/', "-"));
        clients.push(link::open(target, &client_id, 0, Role::Receiver).await?);
    }
    let cpu_before = probe.map(Probe::cpu_sample);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut writer, mut reader, _) in clients {
        let filter = format!("{prefix}/#");
        tasks.push(tokio::spawn(async move {
            writer
                .send(&link::subscribe_packet(&filter, QoS::AtMostOnce))
                .await?;
            let mut received = 0;
            let mut last_received = started;
            let deadline = Instant::now() + RECEIVE_LIMIT;
            while received < retained {
                let quiet_deadline = (Instant::now() + QUIET_LIMIT).min(deadline);
                match tokio::time::timeout_at(quiet_deadline, reader.next_packet()).await {
                    Ok(Ok(Some(Packet::Publish(publish)))) if publish.retain => {
                        received += 1;
                        last_received = Instant::now();
                    }
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) | Err(_) => break,
                    Ok(Err(error)) => return Err(error),
                }
            }
            let elapsed = last_received.duration_since(started);
            writer.close().await;
            Ok::<_, String>((received, elapsed))
        }));
    }
    let mut counts = Vec::new();
    let mut completions = Vec::new();
    for task in tasks {
        let (received, elapsed) = task
            .await
            .map_err(|error| format!("storm subscriber failed: {error}"))??;
        counts.push(received);
        completions.push(elapsed);
    }
    let cpu_used = probe
        .zip(cpu_before.as_ref())
        .map(|(probe, before)| probe.cpu_seconds_since(before));
    let last = completions
        .iter()
        .max()
        .copied()
        .unwrap_or_default()
        .as_secs_f64();
    Ok(StormReport {
        retained,
        subscribers,
        populate_per_s,
        received_min: counts.iter().min().copied().unwrap_or(0),
        completion: stats::duration_percentiles(&completions),
        deliveries_per_s: counts.iter().sum::<usize>() as f64 / last.max(1e-9),
        server_cpu_s: cpu_used,
    })
}

/// Publishes `count` retained QoS 0 messages, then one QoS 1 message whose
/// PUBACK shows that the server has handled every earlier one (both brokers
/// handle one connection's packets in order). Returns messages per second.
async fn populate(target: &Target, prefix: &str, count: usize) -> Result<f64, String> {
    let client_id = format!("{}-retainer", prefix.replace('/', "-"));
    let (mut writer, mut reader, _) = link::open(target, &client_id, 0, Role::Sender).await?;
    let started = Instant::now();
    for index in 0..count {
        let payload = stats::stamp(0, index as u64, stats::STAMP_LEN);
        writer
            .feed(&link::publish_packet(
                &format!("{prefix}/r{index}"),
                QoS::AtMostOnce,
                true,
                None,
                payload,
            ))
            .await?;
        if index % 64 == 63 {
            writer.flush().await?;
        }
    }
    let marker = link::publish_packet(
        &format!("{prefix}-done"),
        QoS::AtLeastOnce,
        false,
        Some(std::num::NonZeroU16::MIN),
        Bytes::new(),
    );
    writer.send(&marker).await?;
    loop {
        match tokio::time::timeout(RECEIVE_LIMIT, reader.next_packet()).await {
            Ok(Ok(Some(Packet::PubAck(_)))) => break,
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => {
                return Err(format!(
                    "{client_id}: closed while storing retained messages"
                ))
            }
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(format!("{client_id}: no PUBACK within {RECEIVE_LIMIT:?}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    writer.close().await;
    Ok(count as f64 / seconds.max(1e-9))
}
