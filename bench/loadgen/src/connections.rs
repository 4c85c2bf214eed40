//! Connection scenarios: many idle connections (memory per connection) and
//! the rate at which connections can be opened and closed.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::link::{self, Reader, Role, Target, Writer};
use crate::server::Probe;
use crate::stats::{self, Percentiles};

/// Connection attempts in progress at once.
const CONCURRENCY: usize = 64;

/// Failed attempts after which the idle scenario stops opening more.
const MAX_FAILURES: usize = 50;

/// How long the idle scenario waits after the last open before it reads
/// the server's memory, so that the server settles.
const SETTLE: Duration = Duration::from_secs(2);

/// What the idle scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub requested: usize,
    pub opened: usize,
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub bytes_per_connection: Option<f64>,
    pub open_seconds: f64,
    pub connections_per_s: f64,
    pub setup: Percentiles,
}

/// What the connection-rate scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct RateReport {
    pub connections: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Connections opened (through CONNACK for MQTT) and closed per second.
    pub connections_per_s: f64,
    pub setup: Percentiles,
    pub server_cpu_s: Option<f64>,
}

type Opened = (Writer, Reader, Duration);

/// Opens up to `count` connections and keeps them open without traffic;
/// reads the server's memory before and after.
pub async fn idle(target: &Target, count: usize, label: &str, probe: Option<&Probe>) -> IdleReport {
    // One connection first, so that the Durable Object and its namespace
    // exist before the "before" reading.
    let warm = link::open(target, &format!("{label}-warm"), 0, Role::Receiver)
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = probe.map(Probe::rss_bytes);

    let started = Instant::now();
    let (opened, errors) = open_many(target, count, label, true).await;
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_after = probe.map(Probe::rss_bytes);

    let setups: Vec<Duration> = opened.iter().map(|(_, _, setup)| *setup).collect();
    let bytes_per_connection = rss_before
        .zip(rss_after)
        .filter(|_| !opened.is_empty())
        .map(|(before, after)| (after as f64 - before as f64) / opened.len() as f64);
    let report = IdleReport {
        requested: count,
        opened: opened.len(),
        failed: errors.len(),
        first_error: errors.first().cloned(),
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        bytes_per_connection,
        open_seconds,
        connections_per_s: opened.len() as f64 / open_seconds.max(1e-9),
        setup: stats::duration_percentiles(&setups),
    };
    close_all(opened).await;
    if let Some((mut writer, _, _)) = warm {
        writer.close().await;
    }
    report
}

/// Opens and closes `count` connections, [`CONCURRENCY`] at a time.
pub async fn rate(target: &Target, count: usize, label: &str, probe: Option<&Probe>) -> RateReport {
    let cpu_before = probe.map(Probe::cpu_sample);
    let started = Instant::now();
    let (setups, errors) = open_and_close_many(target, count, label).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_used = probe
        .zip(cpu_before.as_ref())
        .map(|(probe, before)| probe.cpu_seconds_since(before));
    RateReport {
        connections: setups.len(),
        failed: errors.len(),
        first_error: errors.first().cloned(),
        seconds,
        connections_per_s: setups.len() as f64 / seconds.max(1e-9),
        setup: stats::duration_percentiles(&setups),
        server_cpu_s: cpu_used,
    }
}

async fn open_many(
    target: &Target,
    count: usize,
    label: &str,
    stop_on_failures: bool,
) -> (Vec<Opened>, Vec<String>) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(count);
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for index in 0..count {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if stop_on_failures && failures.load(std::sync::atomic::Ordering::Relaxed) >= MAX_FAILURES {
            break;
        }
        let (target, client_id, failures) =
            (target.clone(), format!("{label}-{index}"), failures.clone());
        tasks.push(tokio::spawn(async move {
            let opened = link::open(&target, &client_id, 0, Role::Receiver).await;
            if opened.is_err() {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(permit);
            opened
        }));
    }
    let mut opened = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(connection)) => opened.push(connection),
            Ok(Err(error)) => errors.push(error),
            Err(error) => errors.push(format!("connection task failed: {error}")),
        }
    }
    (opened, errors)
}

async fn open_and_close_many(
    target: &Target,
    count: usize,
    label: &str,
) -> (Vec<Duration>, Vec<String>) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (target, client_id) = (target.clone(), format!("{label}-{index}"));
        tasks.push(tokio::spawn(async move {
            let opened = link::open(&target, &client_id, 0, Role::Receiver).await;
            let result = match opened {
                Ok((mut writer, _reader, setup)) => {
                    writer.close().await;
                    Ok(setup)
                }
                Err(error) => Err(error),
            };
            drop(permit);
            result
        }));
    }
    let mut setups = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(setup)) => setups.push(setup),
            Ok(Err(error)) => errors.push(error),
            Err(error) => errors.push(format!("connection task failed: {error}")),
        }
    }
    (setups, errors)
}

async fn close_all(opened: Vec<Opened>) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY * 4));
    let mut tasks = Vec::new();
    for (mut writer, reader, _) in opened {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tasks.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), writer.close()).await;
            drop(reader);
            drop(permit);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}
