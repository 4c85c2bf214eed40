//! Load generator for the MQTT broker, over WebSocket.
//!
//! - `link`: one client connection, MQTT 3.1.1 or the relay's raw frames.
//! - `stats`: payload stamps (publisher, sequence number, send time),
//!   delivery bookkeeping and percentiles.
//! - `workload`: N publishers and M subscribers for a fixed time.
//! - `storm`: many retained messages, then many subscribers at once.
//! - `connections`: idle connections and the connection rate.
//! - `counters`: the broker's storage counters from `/admin/metrics`.
//! - `server`: `wrangler dev` and mosquitto on free ports of 127.0.0.1, and
//!   their CPU time and memory from `/proc`.
//! - `suite`, `summary`, `plot`: the side-by-side run, its tables and charts.
//!
//! `loadgen run` measures one workload against a running server;
//! `loadgen suite` starts each server itself and runs every scenario.

mod connections;
mod counters;
mod link;
mod plot;
mod server;
mod stats;
mod storm;
mod suite;
mod summary;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use codec::QoS;

use crate::link::{Target, Wire};
use crate::suite::System;
use crate::workload::{Layout, Workload};

#[derive(Parser)]
#[command(about = "MQTT over WebSocket load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload against a server that is already running.
    Run(RunArgs),
    /// Start the broker, the relay and mosquitto in turn and run every scenario.
    Suite(SuiteArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// WebSocket URL, such as ws://127.0.0.1:8787/mqtt.
    #[arg(long)]
    url: String,
    /// `relay` sends bare payloads to the relay baseline instead of MQTT.
    #[arg(long, value_enum, default_value = "mqtt")]
    wire: WireArg,
    #[arg(long, default_value_t = 1)]
    publishers: u32,
    #[arg(long, default_value_t = 1)]
    subscribers: u32,
    /// `shared`: one topic for all; `pairs`: publisher k to subscriber k.
    #[arg(long, value_enum, default_value = "shared")]
    layout: LayoutArg,
    /// QoS of the PUBLISH packets and of the subscriptions: 0, 1 or 2.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes; at least the 20-byte stamp is sent.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Total messages per second over all publishers; as fast as the window allows if absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds the publishers send.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Messages per subscriber a publisher may have sent but not yet delivered.
    #[arg(long, default_value_t = 64)]
    window: u32,
    /// Where to write the JSON report; an SVG timeline goes next to it.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SuiteArgs {
    /// Folder for results.json, summary.md and the SVG charts.
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
    /// Shorter runs and smaller counts (about two minutes).
    #[arg(long, env = "BENCH_QUICK", value_parser = parse_flag, default_value = "0")]
    quick: bool,
    /// Systems to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "broker,relay,mosquitto"
    )]
    systems: Vec<System>,
    /// Idle connections to hold open. The default is 10,000 (1,000 in quick
    /// mode), or fewer when the open-file limit cannot carry that many.
    #[arg(long)]
    idle_connections: Option<usize>,
    /// Run only these scenarios (comma-separated): pub/sub scenario names,
    /// `storm`, `connect-rate` or `idle`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WireArg {
    Mqtt,
    Relay,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Shared,
    Pairs,
}

/// Accepts the usual spellings of an environment flag.
fn parse_flag(value: &str) -> Result<bool, String> {
    match value {
        "" | "0" | "false" | "no" => Ok(false),
        "1" | "true" | "yes" => Ok(true),
        other => Err(format!("invalid flag value {other:?}: use 0 or 1")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_file_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("starting the tokio runtime failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run_one(args).await,
            Command::Suite(args) => run_suite(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

/// File descriptors per WebSocket in this process and in the server that
/// it connects to: 1 each in the load generator, mosquitto and the Worker's
/// own `workerd` (measured with wrangler 4.86 here). The suite connects
/// past wrangler's entry `workerd`, which would hold about 5 per
/// connection and exit at its open-file limit.
const FILES_PER_CONNECTION: usize = 1;

/// Returns how many idle connections fit the open-file limit that the
/// server inherits from this process, keeping 2,000 descriptors for
/// everything else.
fn idle_connections_within_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return usize::MAX;
    }
    let files = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    files.saturating_sub(2_000) / FILES_PER_CONNECTION
}

/// Raises the open-file limit to its hard maximum: every connection is a
/// file descriptor here and in the server, which inherits the limit.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn run_one(args: RunArgs) -> Result<(), String> {
    if args.layout_is_pairs() && args.publishers != args.subscribers {
        return Err("--layout pairs needs as many publishers as subscribers".into());
    }
    let workload = Workload {
        publishers: args.publishers,
        subscribers: args.subscribers,
        layout: match args.layout {
            LayoutArg::Shared => Layout::Shared,
            LayoutArg::Pairs => Layout::Pairs,
        },
        qos: QoS::from_u8(args.qos).unwrap_or_default(),
        payload_bytes: args.payload,
        rate_per_s: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        window: args.window.max(1),
        topic_prefix: format!("bench/run-{}", std::process::id()),
    };
    let wire = match args.wire {
        WireArg::Mqtt => Wire::Mqtt,
        WireArg::Relay => Wire::Relay,
    };
    let report = workload::run(
        &workload,
        &Target {
            url: args.url,
            wire,
        },
        None,
        None,
    )
    .await?;
    println!("{}", summary::run_line("run", &report));
    if let Some(out) = args.out {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|error| format!("encoding the report failed: {error}"))?;
        std::fs::write(&out, json)
            .map_err(|error| format!("writing {} failed: {error}", out.display()))?;
        let svg = plot::timeline(
            "Deliveries per second (100 ms bins)",
            "messages/s",
            0.1,
            &[("run".into(), report.timeline_per_s.clone())],
        );
        let svg_path = out.with_extension("svg");
        std::fs::write(&svg_path, svg)
            .map_err(|error| format!("writing {} failed: {error}", svg_path.display()))?;
    }
    Ok(())
}

impl RunArgs {
    fn layout_is_pairs(&self) -> bool {
        matches!(self.layout, LayoutArg::Pairs)
    }
}

async fn run_suite(args: SuiteArgs) -> Result<(), String> {
    let root = std::env::current_dir()
        .map_err(|error| format!("reading the current folder failed: {error}"))?;
    if !root.join("wrangler.toml").exists() {
        return Err("run `loadgen suite` from the repository root (where wrangler.toml is)".into());
    }
    let default_count = if args.quick { 1_000 } else { 10_000 };
    let idle_connections = args
        .idle_connections
        .unwrap_or_else(|| default_count.min(idle_connections_within_file_limit()));
    let settings = suite::Settings {
        root,
        out: args.out,
        quick: args.quick,
        systems: args.systems,
        idle_connections,
        only: args.only,
    };
    let report = suite::run(&settings).await?;
    print!("{}", summary::markdown(&report));
    Ok(())
}
