//! The whole benchmark: every scenario against the broker under
//! `wrangler dev`, the relay baseline and mosquitto, one system after the
//! other, with the results written as JSON, Markdown tables and SVG charts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codec::QoS;
use serde::Serialize;

use crate::connections::{self, IdleReport, RateReport};
use crate::counters;
use crate::link::{self, Role, Target, Wire};
use crate::server::Server;
use crate::storm::{self, StormReport};
use crate::summary;
use crate::workload::{self, Layout, Workload, WorkloadReport};

/// Payload size of every pub/sub scenario, in bytes.
const PAYLOAD_BYTES: usize = 64;

/// The systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// This broker under `wrangler dev`.
    Broker,
    /// The relay Durable Object under `wrangler dev`.
    Relay,
    /// Debian's mosquitto with a WebSocket listener.
    Mosquitto,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Broker => "broker",
            System::Relay => "relay",
            System::Mosquitto => "mosquitto",
        }
    }
}

/// Options of a suite run.
pub struct Settings {
    /// The repository root.
    pub root: PathBuf,
    /// The folder for results, tables and charts.
    pub out: PathBuf,
    /// Shorter runs and smaller counts, for a smoke test.
    pub quick: bool,
    pub systems: Vec<System>,
    /// Idle connections to hold open: up to 10,000 in the full run.
    pub idle_connections: usize,
    /// Run only the scenarios with these names (`storm`, `connect-rate` and
    /// `idle` included). Empty runs everything.
    pub only: Vec<String>,
}

/// One named pub/sub scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub workload: Workload,
}

/// Everything measured on one system.
#[derive(Debug, Serialize)]
pub struct SystemReport {
    pub system: System,
    /// From spawn to the first HTTP 426 (wrangler) or open port (mosquitto).
    pub ready_ms: f64,
    /// Set-up time of the first connection after that, in milliseconds.
    pub first_connection_ms: Option<f64>,
    pub pids: Vec<i32>,
    /// Whether clients connected past wrangler's entry proxy.
    pub past_proxy: bool,
    pub runs: Vec<(String, WorkloadReport)>,
    pub storm: Option<StormReport>,
    pub connection_rate: Option<RateReport>,
    pub idle: Option<IdleReport>,
    pub errors: Vec<String>,
}

/// The machine and build the suite ran on.
#[derive(Debug, Serialize)]
pub struct Environment {
    pub cpus: usize,
    pub cpu_model: String,
    pub quick: bool,
    pub worker_wasm_gzip_bytes: Option<u64>,
    pub worker_js_gzip_bytes: Option<u64>,
    pub relay_wasm_gzip_bytes: Option<u64>,
    pub relay_js_gzip_bytes: Option<u64>,
}

/// The whole result file.
#[derive(Debug, Serialize)]
pub struct SuiteReport {
    pub environment: Environment,
    pub systems: Vec<SystemReport>,
}

/// Lists the pub/sub scenarios. The relay runs only the QoS 0 ones, because
/// it has no acknowledgements.
pub fn scenarios(quick: bool) -> Vec<Scenario> {
    let duration = Duration::from_secs(if quick { 2 } else { 10 });
    let latency_duration = Duration::from_secs(if quick { 3 } else { 10 });
    let workload =
        |publishers, subscribers, layout, qos, rate_per_s: Option<f64>, duration| Workload {
            publishers,
            subscribers,
            layout,
            qos,
            payload_bytes: PAYLOAD_BYTES,
            rate_per_s,
            duration,
            // About 256 messages in flight in the whole run: enough to keep the
            // server busy, few enough that latency does not only measure a queue.
            window: (256 / (publishers * subscribers_per_publisher(subscribers, layout))).max(1),
            topic_prefix: String::new(),
        };
    let (q0, q1, q2) = (QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce);
    let (shared, pairs) = (Layout::Shared, Layout::Pairs);
    vec![
        Scenario {
            name: "fan-in-q0",
            workload: workload(100, 1, shared, q0, None, duration),
        },
        Scenario {
            name: "fan-in-q1",
            workload: workload(100, 1, shared, q1, None, duration),
        },
        Scenario {
            name: "fan-in-q2",
            workload: workload(100, 1, shared, q2, None, duration),
        },
        Scenario {
            name: "fan-out-q0",
            workload: workload(1, 100, shared, q0, None, duration),
        },
        Scenario {
            name: "fan-out-q1",
            workload: workload(1, 100, shared, q1, None, duration),
        },
        Scenario {
            name: "pairs-q0",
            workload: workload(50, 50, pairs, q0, None, duration),
        },
        Scenario {
            name: "pairs-q1",
            workload: workload(50, 50, pairs, q1, None, duration),
        },
        Scenario {
            name: "rate-1000-q0",
            workload: workload(10, 10, pairs, q0, Some(1000.0), latency_duration),
        },
        Scenario {
            name: "rate-1000-q1",
            workload: workload(10, 10, pairs, q1, Some(1000.0), latency_duration),
        },
    ]
}

fn subscribers_per_publisher(subscribers: u32, layout: Layout) -> u32 {
    match layout {
        Layout::Shared => subscribers.max(1),
        Layout::Pairs => 1,
    }
}

/// Runs every scenario on every system and writes the results to `out`.
pub async fn run(settings: &Settings) -> Result<SuiteReport, String> {
    std::fs::create_dir_all(&settings.out)
        .map_err(|error| format!("creating {} failed: {error}", settings.out.display()))?;
    let mut systems = Vec::new();
    for &system in &settings.systems {
        eprintln!("== {}", system.name());
        systems.push(run_system(system, settings).await?);
    }
    let report = SuiteReport {
        environment: environment(settings),
        systems,
    };
    let json = serde_json::to_string_pretty(&report)
        .map_err(|error| format!("encoding the results failed: {error}"))?;
    write(&settings.out.join("results.json"), &json)?;
    write(
        &settings.out.join("summary.md"),
        &summary::markdown(&report),
    )?;
    for (name, svg) in summary::charts(&report) {
        write(&settings.out.join(name), &svg)?;
    }
    Ok(report)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text)
        .map_err(|error| format!("writing {} failed: {error}", path.display()))
}

async fn start(system: System, root: &Path) -> Result<Server, String> {
    match system {
        System::Broker => Server::start_wrangler(root, &root.join("wrangler.toml"), "/mqtt").await,
        System::Relay => {
            Server::start_wrangler(root, &root.join("bench/relay/wrangler.toml"), "/relay/").await
        }
        System::Mosquitto => Server::start_mosquitto().await,
    }
}

/// Returns the port that clients connect to. Under `wrangler dev` that is
/// the Worker's own `workerd`, past wrangler's entry proxy: Cloudflare runs
/// no such proxy, and the proxy's file descriptors would cap the idle
/// connections at about 3,000 here. The proxy's port is the fallback.
async fn client_port(system: System, server: &Server) -> u16 {
    let path = match system {
        System::Broker => "/mqtt",
        System::Relay => "/relay/",
        System::Mosquitto => return server.port,
    };
    match server.worker_port(path, 426).await {
        Some(port) => {
            eprintln!(
                "clients connect to the Worker's workerd on port {port}, past wrangler's proxy"
            );
            port
        }
        None => {
            eprintln!(
                "the Worker's workerd was not found; clients connect through wrangler's proxy"
            );
            server.port
        }
    }
}

fn target(system: System, port: u16, name: &str) -> Target {
    match system {
        System::Broker => Target {
            url: format!("ws://127.0.0.1:{port}/mqtt/{name}"),
            wire: Wire::Mqtt,
        },
        System::Relay => Target {
            url: format!("ws://127.0.0.1:{port}/relay/{name}"),
            wire: Wire::Relay,
        },
        // mosquitto 2.0.11 ignores the path; topics keep scenarios apart.
        System::Mosquitto => Target {
            url: format!("ws://127.0.0.1:{port}/mqtt"),
            wire: Wire::Mqtt,
        },
    }
}

async fn run_system(system: System, settings: &Settings) -> Result<SystemReport, String> {
    let mut server = start(system, &settings.root).await?;
    let port = client_port(system, &server).await;
    let first = link::open(
        &target(system, port, "startup"),
        "startup",
        0,
        Role::Receiver,
    )
    .await;
    let mut report = SystemReport {
        system,
        ready_ms: server.ready_after.as_secs_f64() * 1000.0,
        first_connection_ms: first
            .as_ref()
            .ok()
            .map(|(_, _, setup)| setup.as_secs_f64() * 1000.0),
        pids: server.probe.pids(),
        past_proxy: port != server.port,
        runs: Vec::new(),
        storm: None,
        connection_rate: None,
        idle: None,
        errors: Vec::new(),
    };
    eprintln!(
        "ready after {:.0} ms, first connection {:?} ms",
        report.ready_ms, report.first_connection_ms
    );
    if let Err(error) = first {
        // Every scenario would fail the same way; the log says why.
        eprintln!(
            "first connection failed: {error}\nserver log:\n{}",
            log_tail(&server)
        );
        report.errors.push(format!("first connection: {error}"));
        server.stop();
        return Ok(report);
    }

    for scenario in scenarios(settings.quick) {
        let skipped =
            !settings.only.is_empty() && !settings.only.iter().any(|name| name == scenario.name);
        if skipped || (system == System::Relay && scenario.workload.qos != QoS::AtMostOnce) {
            continue;
        }
        let mut workload = scenario.workload.clone();
        workload.topic_prefix = format!("bench/{}", scenario.name);
        let target = target(system, port, scenario.name);
        let counters = (system == System::Broker).then(|| counters::Source {
            port,
            admin_token: server.admin_token.clone(),
            namespace: scenario.name.to_string(),
        });
        match workload::run(&workload, &target, Some(&server.probe), counters.as_ref()).await {
            Ok(run) => {
                eprintln!("{}", summary::run_line(scenario.name, &run));
                report.runs.push((scenario.name.to_string(), run));
            }
            Err(error) => {
                eprintln!(
                    "{}: failed: {error}\nserver log:\n{}",
                    scenario.name,
                    log_tail(&server)
                );
                report.errors.push(format!("{}: {error}", scenario.name));
            }
        }
    }
    let selected =
        |name: &str| settings.only.is_empty() || settings.only.iter().any(|only| only == name);

    if system != System::Relay && selected("storm") {
        let (retained, subscribers) = if settings.quick {
            (1_000, 5)
        } else {
            (10_000, 10)
        };
        let target = target(system, port, "storm");
        match storm::run(
            &target,
            "bench/storm",
            retained,
            subscribers,
            Some(&server.probe),
        )
        .await
        {
            Ok(storm) => {
                eprintln!("storm: {storm:?}");
                report.storm = Some(storm);
            }
            Err(error) => report.errors.push(format!("storm: {error}")),
        }
    }

    if selected("connect-rate") {
        run_connection_rate(system, settings, &server, port, &mut report).await;
    }
    if selected("idle") {
        run_idle(system, settings, &server, port, &mut report).await;
    }
    server.stop();
    Ok(report)
}

async fn run_connection_rate(
    system: System,
    settings: &Settings,
    server: &Server,
    port: u16,
    report: &mut SystemReport,
) {
    let connections = if settings.quick { 300 } else { 2_000 };
    let rate = connections::rate(
        &target(system, port, "connect-rate"),
        connections,
        "rate",
        Some(&server.probe),
    )
    .await;
    eprintln!(
        "connection rate: {:.0}/s, {} failed",
        rate.connections_per_s, rate.failed
    );
    report.connection_rate = Some(rate);
}

async fn run_idle(
    system: System,
    settings: &Settings,
    server: &Server,
    port: u16,
    report: &mut SystemReport,
) {
    let idle = connections::idle(
        &target(system, port, "idle"),
        settings.idle_connections,
        "idle",
        Some(&server.probe),
    )
    .await;
    eprintln!(
        "idle: {} of {} open, {:?} bytes each, first error {:?}",
        idle.opened, idle.requested, idle.bytes_per_connection, idle.first_error
    );
    if idle.failed > 0 {
        eprintln!("server log:\n{}", log_tail(server));
    }
    report.idle = Some(idle);
}

/// Returns the last lines the server printed.
fn log_tail(server: &Server) -> String {
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn environment(settings: &Settings) -> Environment {
    let gzip_size = |path: &str| gzip_len(&settings.root.join(path));
    Environment {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpu_model(),
        quick: settings.quick,
        worker_wasm_gzip_bytes: gzip_size("edge/build/index_bg.wasm"),
        worker_js_gzip_bytes: gzip_size("edge/build/index.js"),
        relay_wasm_gzip_bytes: gzip_size("bench/relay/build/index_bg.wasm"),
        relay_js_gzip_bytes: gzip_size("bench/relay/build/index.js"),
    }
}

/// Returns the size of `path` compressed with gzip at the default level.
fn gzip_len(path: &Path) -> Option<u64> {
    use std::io::Write;
    let bytes = std::fs::read(path).ok()?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&bytes).ok()?;
    Some(encoder.finish().ok()?.len() as u64)
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .map_or_else(|| "unknown".into(), |model| model.trim().to_string())
}
