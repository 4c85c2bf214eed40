//! A publish/subscribe run: publishers send stamped messages for a fixed
//! time, subscribers check each one and measure its latency.
//!
//! "As fast as possible" is flow-controlled end to end: a publisher keeps at
//! most `window` messages per subscriber sent but not yet delivered. Without
//! that bound a QoS 0 flood would only measure how long the server's input
//! queue grows, and the latency figures would measure that queue.

use std::collections::HashMap;
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use codec::{Packet, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{Instant, MissedTickBehavior};

use crate::counters::{self, StorageCounts};
use crate::link::{self, Incoming, Reader, Role, Target, Writer};
use crate::server::Probe;
use crate::stats::{self, Percentiles, SeenSet};

/// Unacknowledged QoS 1 or 2 PUBLISH packets a publisher may have.
const QOS_WINDOW: usize = 16;

/// Width of one bin of the delivery timeline.
const BIN: Duration = Duration::from_millis(100);

/// After the publishers stop, how long without a new delivery ends the run.
const QUIET_END: Duration = Duration::from_secs(3);

/// After the publishers stop, the longest the run waits for deliveries.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// The mapping of publishers to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Every publisher sends to one topic that every subscriber follows.
    Shared,
    /// Publisher k sends to topic k, which only subscriber k follows.
    Pairs,
}

/// The parameters of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub publishers: u32,
    pub subscribers: u32,
    pub layout: Layout,
    #[serde(serialize_with = "serialize_qos")]
    pub qos: QoS,
    /// Payload size in bytes, at least the 20-byte stamp.
    pub payload_bytes: usize,
    /// Total messages per second over all publishers, or `None` for as fast
    /// as the flow-control window allows.
    pub rate_per_s: Option<f64>,
    /// How long the publishers send.
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    /// Messages per subscriber a publisher may have in flight end to end.
    pub window: u32,
    /// Topic prefix, unique per run.
    #[serde(skip)]
    pub topic_prefix: String,
}

/// The measurements of one run.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    pub workload: Workload,
    pub published: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Distinct deliveries per second, from the first send to the last delivery.
    pub throughput_per_s: f64,
    pub latency: Percentiles,
    /// From TCP connect to CONNACK (MQTT) or to the WebSocket upgrade (relay).
    pub setup: Percentiles,
    /// CPU seconds the server processes used from the first send to the end.
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` divided by the messages published, in microseconds.
    pub cpu_us_per_publish: Option<f64>,
    /// The broker's storage counters over the same span as `server_cpu_s`.
    pub storage: Option<StorageCounts>,
    /// Deliveries per second in 100 ms bins from the first send.
    pub timeline_per_s: Vec<f64>,
}

fn serialize_qos<S: serde::Serializer>(qos: &QoS, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u8(*qos as u8)
}

fn serialize_secs<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

impl Workload {
    fn publisher_group(&self, publisher: u32) -> u32 {
        match self.layout {
            Layout::Shared => 0,
            Layout::Pairs => publisher,
        }
    }

    fn subscriber_group(&self, subscriber: u32) -> u32 {
        match self.layout {
            Layout::Shared => 0,
            Layout::Pairs => subscriber,
        }
    }

    fn subscribers_of_group(&self, group: u32) -> u64 {
        (0..self.subscribers)
            .filter(|&s| self.subscriber_group(s) == group)
            .count() as u64
    }

    fn topic(&self, group: u32) -> String {
        format!("{}/g{group}", self.topic_prefix)
    }
}

/// Counters publishers and subscribers share.
struct Shared {
    /// Messages sent, per publisher.
    sent: Vec<AtomicU64>,
    /// Distinct deliveries counted by subscribers, per publisher.
    delivered: Vec<AtomicU64>,
    /// Woken on every delivery, per publisher.
    progress: Vec<Notify>,
    /// Subscribers of each publisher's group.
    fan_out: Vec<u64>,
}

impl Shared {
    fn total_delivered(&self) -> u64 {
        self.delivered
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    fn total_expected(&self) -> u64 {
        self.sent
            .iter()
            .zip(&self.fan_out)
            .map(|(sent, fan_out)| sent.load(Ordering::Relaxed) * fan_out)
            .sum()
    }
}

/// The result of one subscriber task.
struct SubscriberResult {
    latencies_us: Vec<u32>,
    seen: HashMap<u32, SeenSet>,
    bins: Vec<u32>,
    last_delivery_ns: u64,
}

/// Runs `workload` against `target`. `probe` reads the server's CPU time
/// and `counters` the broker's storage counters.
pub async fn run(
    workload: &Workload,
    target: &Target,
    probe: Option<&Probe>,
    counters: Option<&counters::Source>,
) -> Result<WorkloadReport, String> {
    let publishers = workload.publishers as usize;
    let shared = Arc::new(Shared {
        sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
        delivered: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
        progress: (0..publishers).map(|_| Notify::new()).collect(),
        fan_out: (0..workload.publishers)
            .map(|p| workload.subscribers_of_group(workload.publisher_group(p)))
            .collect(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (start_tx, start_rx) = watch::channel(None::<(u64, Instant)>);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<Duration, String>>(1024);

    let mut subscriber_tasks = Vec::new();
    for subscriber in 0..workload.subscribers {
        let (workload, target, shared) = (workload.clone(), target.clone(), shared.clone());
        let (ready, stop, start) = (ready_tx.clone(), stop_rx.clone(), start_rx.clone());
        subscriber_tasks.push(tokio::spawn(async move {
            subscribe(&workload, &target, subscriber, &shared, ready, start, stop).await
        }));
    }
    let mut setups = collect_ready(&mut ready_rx, workload.subscribers).await?;

    let mut publisher_tasks = Vec::new();
    for publisher in 0..workload.publishers {
        let (workload, target, shared) = (workload.clone(), target.clone(), shared.clone());
        let (ready, start) = (ready_tx.clone(), start_rx.clone());
        publisher_tasks.push(tokio::spawn(async move {
            publish(&workload, &target, publisher, &shared, ready, start).await
        }));
    }
    setups.extend(collect_ready(&mut ready_rx, workload.publishers).await?);

    let storage_before = match counters {
        Some(source) => Some(source.read().await?),
        None => None,
    };
    let cpu_before = probe.map(Probe::cpu_sample);
    let started_ns = stats::now_ns();
    let _ = start_tx.send(Some((started_ns, Instant::now() + workload.duration)));
    let mut published = 0;
    for task in publisher_tasks {
        published += task
            .await
            .map_err(|error| format!("publisher task failed: {error}"))??;
    }
    wait_for_deliveries(&shared).await;
    let cpu_used = probe
        .zip(cpu_before.as_ref())
        .map(|(probe, before)| probe.cpu_seconds_since(before));
    let storage = match (counters, storage_before) {
        (Some(source), Some(before)) => Some(source.read().await?.since(&before)),
        _ => None,
    };
    let _ = stop_tx.send(true);

    let mut results = Vec::new();
    for task in subscriber_tasks {
        results.push(
            task.await
                .map_err(|error| format!("subscriber task failed: {error}"))??,
        );
    }
    let server_cpu_s = cpu_used;
    let mut report = summarize(
        workload,
        &shared,
        results,
        &setups,
        published,
        started_ns,
        server_cpu_s,
    );
    report.storage = storage;
    Ok(report)
}

async fn collect_ready(
    ready: &mut mpsc::Receiver<Result<Duration, String>>,
    count: u32,
) -> Result<Vec<Duration>, String> {
    let mut setups = Vec::new();
    for _ in 0..count {
        match ready.recv().await {
            Some(Ok(setup)) => setups.push(setup),
            Some(Err(error)) => return Err(error),
            None => return Err("a client task ended before it connected".into()),
        }
    }
    Ok(setups)
}

/// Waits until every message sent was delivered, or deliveries stop.
async fn wait_for_deliveries(shared: &Shared) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut last_count = shared.total_delivered();
    let mut last_progress = Instant::now();
    while Instant::now() < deadline {
        let delivered = shared.total_delivered();
        if delivered >= shared.total_expected() {
            return;
        }
        if delivered != last_count {
            last_count = delivered;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= QUIET_END {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subscribe(
    workload: &Workload,
    target: &Target,
    subscriber: u32,
    shared: &Shared,
    ready: mpsc::Sender<Result<Duration, String>>,
    mut start: watch::Receiver<Option<(u64, Instant)>>,
    mut stop: watch::Receiver<bool>,
) -> Result<SubscriberResult, String> {
    let group = workload.subscriber_group(subscriber);
    let opened = subscriber_open(workload, target, subscriber, group).await;
    let (mut writer, mut reader, setup) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let _ = ready.send(Err(error.clone())).await;
            return Err(error);
        }
    };
    let _ = ready.send(Ok(setup)).await;
    let started_ns = match start.wait_for(Option::is_some).await {
        Ok(value) => value.map_or(0, |(ns, _)| ns),
        Err(_) => return Err("the run ended before it started".into()),
    };

    let mut result = SubscriberResult {
        latencies_us: Vec::new(),
        seen: HashMap::new(),
        bins: Vec::new(),
        last_delivery_ns: 0,
    };
    loop {
        let incoming = tokio::select! {
            incoming = reader.next() => incoming?,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let payload = match incoming {
            None => break,
            Some(Incoming::Payload(payload)) => payload,
            Some(Incoming::Packet(packet)) => {
                if let Some(reply) = link::reply_to(&packet) {
                    writer.send(&reply).await?;
                }
                match packet {
                    Packet::Publish(publish) => publish.payload,
                    _ => continue,
                }
            }
        };
        record_delivery(&mut result, shared, &payload, started_ns);
    }
    writer.close().await;
    Ok(result)
}

async fn subscriber_open(
    workload: &Workload,
    target: &Target,
    subscriber: u32,
    group: u32,
) -> Result<(Writer, Reader, Duration), String> {
    let client_id = format!(
        "{}-sub-{subscriber}",
        workload.topic_prefix.replace('/', "-")
    );
    let (mut writer, mut reader, setup) =
        link::open(target, &client_id, group, Role::Receiver).await?;
    if target.wire == link::Wire::Mqtt {
        writer
            .send(&link::subscribe_packet(
                &workload.topic(group),
                workload.qos,
            ))
            .await?;
        loop {
            match reader.next_packet().await? {
                Some(Packet::SubAck(_)) => break,
                Some(_) => continue,
                None => return Err(format!("{client_id}: closed before SUBACK")),
            }
        }
    }
    Ok((writer, reader, setup))
}

fn record_delivery(
    result: &mut SubscriberResult,
    shared: &Shared,
    payload: &[u8],
    started_ns: u64,
) {
    let Some((publisher, sequence, sent_ns)) = stats::read_stamp(payload) else {
        return;
    };
    let now = stats::now_ns();
    result
        .latencies_us
        .push((now.saturating_sub(sent_ns) / 1000).min(u64::from(u32::MAX)) as u32);
    if !result.seen.entry(publisher).or_default().insert(sequence) {
        return;
    }
    if let (Some(delivered), Some(progress)) = (
        shared.delivered.get(publisher as usize),
        shared.progress.get(publisher as usize),
    ) {
        delivered.fetch_add(1, Ordering::Relaxed);
        progress.notify_one();
    }
    let bin = (now.saturating_sub(started_ns) / BIN.as_nanos() as u64) as usize;
    if bin >= result.bins.len() {
        result.bins.resize(bin + 1, 0);
    }
    result.bins[bin] += 1;
    result.last_delivery_ns = result.last_delivery_ns.max(now);
}

/// The state of one publisher's QoS 1 or 2 flows.
struct Outstanding {
    next_pkid: u16,
    /// Packet ids awaiting PUBACK or PUBCOMP.
    pending: Vec<NonZeroU16>,
}

impl Outstanding {
    fn take_pkid(&mut self) -> NonZeroU16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        NonZeroU16::new(self.next_pkid).unwrap_or(NonZeroU16::MIN)
    }

    fn complete(&mut self, pkid: NonZeroU16) {
        self.pending.retain(|pending| *pending != pkid);
    }
}

async fn publish(
    workload: &Workload,
    target: &Target,
    publisher: u32,
    shared: &Shared,
    ready: mpsc::Sender<Result<Duration, String>>,
    mut start: watch::Receiver<Option<(u64, Instant)>>,
) -> Result<u64, String> {
    let group = workload.publisher_group(publisher);
    let client_id = format!(
        "{}-pub-{publisher}",
        workload.topic_prefix.replace('/', "-")
    );
    let (mut writer, mut reader, setup) =
        match link::open(target, &client_id, group, Role::Sender).await {
            Ok(opened) => opened,
            Err(error) => {
                let _ = ready.send(Err(error.clone())).await;
                return Err(error);
            }
        };
    let _ = ready.send(Ok(setup)).await;
    let end = match start.wait_for(Option::is_some).await {
        Ok(value) => value.map_or_else(Instant::now, |(_, end)| end),
        Err(_) => return Err("the run ended before it started".into()),
    };

    let topic = workload.topic(group);
    let index = publisher as usize;
    let fan_out = shared.fan_out[index].max(1);
    let in_flight_limit = u64::from(workload.window) * fan_out;
    let acknowledged = workload.qos != QoS::AtMostOnce;
    let mut ticker = workload.rate_per_s.map(|rate| {
        let period = Duration::from_secs_f64(f64::from(workload.publishers) / rate);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    let mut outstanding = Outstanding {
        next_pkid: 0,
        pending: Vec::new(),
    };
    let mut sequence = 0u64;
    let mut unflushed = 0;

    while Instant::now() < end {
        let in_flight = shared.sent[index].load(Ordering::Relaxed) * fan_out
            - shared.delivered[index].load(Ordering::Relaxed);
        let open = in_flight < in_flight_limit && outstanding.pending.len() < QOS_WINDOW;
        if open && ticker.is_none() && unflushed < 32 {
            send_one(
                &mut writer,
                workload,
                &topic,
                publisher,
                sequence,
                &mut outstanding,
                shared,
            )
            .await?;
            sequence += 1;
            unflushed += 1;
            continue;
        }
        writer.flush().await?;
        unflushed = 0;
        if open && ticker.is_none() {
            continue;
        }
        tokio::select! {
            biased;
            incoming = reader.next_packet(), if acknowledged => {
                handle_ack(&mut writer, &mut outstanding, incoming?).await?;
            }
            _ = shared.progress[index].notified(), if !open => {}
            _ = tick(&mut ticker), if open => {
                send_one(&mut writer, workload, &topic, publisher, sequence, &mut outstanding, shared).await?;
                sequence += 1;
                writer.flush().await?;
            }
            _ = tokio::time::sleep_until(end) => break,
        }
    }
    writer.flush().await?;

    // Let the last flows complete, so that QoS 1 and 2 publishers leave no
    // message half delivered.
    let deadline = Instant::now() + DRAIN_LIMIT;
    while acknowledged && !outstanding.pending.is_empty() {
        match tokio::time::timeout_at(deadline, reader.next_packet()).await {
            Ok(incoming) => handle_ack(&mut writer, &mut outstanding, incoming?).await?,
            Err(_) => break,
        }
    }
    writer.close().await;
    Ok(sequence)
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn send_one(
    writer: &mut Writer,
    workload: &Workload,
    topic: &str,
    publisher: u32,
    sequence: u64,
    outstanding: &mut Outstanding,
    shared: &Shared,
) -> Result<(), String> {
    let pkid = match workload.qos {
        QoS::AtMostOnce => None,
        _ => {
            let pkid = outstanding.take_pkid();
            outstanding.pending.push(pkid);
            Some(pkid)
        }
    };
    let payload = stats::stamp(publisher, sequence, workload.payload_bytes);
    shared.sent[publisher as usize].fetch_add(1, Ordering::Relaxed);
    writer
        .feed_message(topic, workload.qos, pkid, payload)
        .await
}

async fn handle_ack(
    writer: &mut Writer,
    outstanding: &mut Outstanding,
    incoming: Option<Packet>,
) -> Result<(), String> {
    let Some(packet) = incoming else {
        return Err("the server closed a publisher's connection".into());
    };
    match &packet {
        Packet::PubAck(ack) => outstanding.complete(ack.pkid),
        Packet::PubComp(comp) => outstanding.complete(comp.pkid),
        _ => {}
    }
    if let Some(reply) = link::reply_to(&packet) {
        writer.send(&reply).await?;
    }
    Ok(())
}

fn summarize(
    workload: &Workload,
    shared: &Shared,
    results: Vec<SubscriberResult>,
    setups: &[Duration],
    published: u64,
    started_ns: u64,
    server_cpu_s: Option<f64>,
) -> WorkloadReport {
    let expected_deliveries = shared.total_expected();
    let mut latencies = Vec::new();
    let mut bins: Vec<u32> = Vec::new();
    let (mut delivered, mut duplicates, mut last_ns) = (0, 0, started_ns);
    for result in results {
        latencies.extend(result.latencies_us);
        for seen in result.seen.values() {
            delivered += seen.unique;
            duplicates += seen.duplicates;
        }
        if bins.len() < result.bins.len() {
            bins.resize(result.bins.len(), 0);
        }
        for (total, count) in bins.iter_mut().zip(&result.bins) {
            *total += count;
        }
        last_ns = last_ns.max(result.last_delivery_ns);
    }
    let elapsed_s = (last_ns - started_ns) as f64 / 1e9;
    let throughput_per_s = if elapsed_s > 0.0 {
        delivered as f64 / elapsed_s
    } else {
        0.0
    };
    let per_second = 1.0 / BIN.as_secs_f64();
    WorkloadReport {
        workload: workload.clone(),
        published,
        expected_deliveries,
        delivered,
        lost: expected_deliveries.saturating_sub(delivered),
        duplicates,
        throughput_per_s,
        latency: stats::percentiles(&mut latencies),
        setup: stats::duration_percentiles(setups),
        server_cpu_s,
        cpu_us_per_publish: server_cpu_s
            .filter(|_| published > 0)
            .map(|cpu| cpu * 1e6 / published as f64),
        storage: None,
        timeline_per_s: bins
            .iter()
            .map(|&count| f64::from(count) * per_second)
            .collect(),
    }
}
