//! Markdown tables and SVG charts from a suite's results, each figure with
//! its ratio to the other systems.

use std::fmt::Write;

use crate::plot;
use crate::suite::{SuiteReport, System, SystemReport};
use crate::workload::WorkloadReport;

/// Formats one run as a line for the console.
pub fn run_line(name: &str, run: &WorkloadReport) -> String {
    format!(
        "{name}: {:.0} msg/s delivered, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, lost {}, duplicates {}, cpu {:?} us/publish",
        run.throughput_per_s, run.latency.p50_ms, run.latency.p99_ms, run.latency.max_ms, run.lost, run.duplicates, run.cpu_us_per_publish
    )
}

fn find(report: &SuiteReport, system: System) -> Option<&SystemReport> {
    report.systems.iter().find(|entry| entry.system == system)
}

fn run<'a>(report: &'a SuiteReport, system: System, scenario: &str) -> Option<&'a WorkloadReport> {
    find(report, system)?
        .runs
        .iter()
        .find(|(name, _)| name == scenario)
        .map(|(_, run)| run)
}

/// Finds the relay's run for `scenario`. The relay has no QoS, so its QoS 0
/// run is the baseline of every QoS level.
fn relay_run<'a>(report: &'a SuiteReport, scenario: &str) -> Option<&'a WorkloadReport> {
    let base = scenario
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches("-q");
    run(report, System::Relay, &format!("{base}-q0"))
}

fn scenario_names(report: &SuiteReport) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for system in &report.systems {
        for (name, _) in &system.runs {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".into(), |value| format!("{value:.decimals$}"))
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}", n / d),
        _ => "–".into(),
    }
}

/// Writes the tables for `docs/benchmarks.md`.
pub fn markdown(report: &SuiteReport) -> String {
    let mut out = String::new();
    let environment = &report.environment;
    let _ = writeln!(
        out,
        "Machine: {} CPUs, {}. Quick mode: {}.\n",
        environment.cpus, environment.cpu_model, environment.quick
    );
    throughput_table(&mut out, report);
    latency_table(&mut out, report);
    delivery_table(&mut out, report);
    cpu_table(&mut out, report);
    storage_table(&mut out, report);
    connection_tables(&mut out, report);
    let kib = |bytes: Option<u64>| cell(bytes.map(|b| b as f64 / 1024.0), 1);
    let _ = writeln!(
        out,
        "Bundle, gzip -6: broker `index_bg.wasm` {} KiB + `index.js` {} KiB; relay {} KiB + {} KiB.\n",
        kib(environment.worker_wasm_gzip_bytes),
        kib(environment.worker_js_gzip_bytes),
        kib(environment.relay_wasm_gzip_bytes),
        kib(environment.relay_js_gzip_bytes)
    );
    for system in &report.systems {
        for error in &system.errors {
            let _ = writeln!(out, "- {} error: {error}", system.system.name());
        }
    }
    out
}

fn throughput_table(out: &mut String, report: &SuiteReport) {
    let _ = writeln!(out, "| scenario | broker msg/s | relay msg/s | mosquitto msg/s | broker/relay | broker/mosquitto | relay/mosquitto |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for name in scenario_names(report) {
        let broker = run(report, System::Broker, &name).map(|r| r.throughput_per_s);
        let relay = relay_run(report, &name).map(|r| r.throughput_per_s);
        let mosquitto = run(report, System::Mosquitto, &name).map(|r| r.throughput_per_s);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            cell(broker, 0),
            cell(relay, 0),
            cell(mosquitto, 0),
            ratio(broker, relay),
            ratio(broker, mosquitto),
            ratio(relay, mosquitto)
        );
    }
    out.push('\n');
}

fn latency_table(out: &mut String, report: &SuiteReport) {
    let _ = writeln!(
        out,
        "| scenario | system | p50 ms | p95 ms | p99 ms | max ms | p99 / relay | p99 / mosquitto |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for name in scenario_names(report) {
        let relay_p99 = relay_run(report, &name).map(|r| r.latency.p99_ms);
        let mosquitto_p99 = run(report, System::Mosquitto, &name).map(|r| r.latency.p99_ms);
        for system in [System::Broker, System::Relay, System::Mosquitto] {
            let Some(entry) = run(report, system, &name) else {
                continue;
            };
            let latency = &entry.latency;
            let _ = writeln!(
                out,
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                system.name(),
                latency.p50_ms,
                latency.p95_ms,
                latency.p99_ms,
                latency.max_ms,
                ratio(Some(latency.p99_ms), relay_p99),
                ratio(Some(latency.p99_ms), mosquitto_p99)
            );
        }
    }
    out.push('\n');
}

fn delivery_table(out: &mut String, report: &SuiteReport) {
    let _ = writeln!(out, "| scenario | system | published | expected | delivered | lost | duplicates | set-up p50 ms | set-up max ms |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for name in scenario_names(report) {
        for system in [System::Broker, System::Relay, System::Mosquitto] {
            let Some(entry) = run(report, system, &name) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                system.name(),
                entry.published,
                entry.expected_deliveries,
                entry.delivered,
                entry.lost,
                entry.duplicates,
                entry.setup.p50_ms,
                entry.setup.max_ms
            );
        }
    }
    out.push('\n');
}

fn cpu_table(out: &mut String, report: &SuiteReport) {
    let _ = writeln!(out, "Server CPU time (user + system, from `/proc/PID/stat`) per message published, in microseconds:\n");
    let _ = writeln!(
        out,
        "| scenario | broker | relay | mosquitto | broker/relay | broker/mosquitto |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for name in scenario_names(report) {
        let broker = run(report, System::Broker, &name).and_then(|r| r.cpu_us_per_publish);
        let relay = relay_run(report, &name).and_then(|r| r.cpu_us_per_publish);
        let mosquitto = run(report, System::Mosquitto, &name).and_then(|r| r.cpu_us_per_publish);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} |",
            cell(broker, 1),
            cell(relay, 1),
            cell(mosquitto, 1),
            ratio(broker, relay),
            ratio(broker, mosquitto)
        );
    }
    out.push('\n');
}

/// Memory that Cloudflare bills a Durable Object's duration for, in GB.
const DURATION_GB: f64 = 0.128;

/// Returns the duration, in GB-s, that a million messages cost when the
/// object stays in memory for the whole run, at the run's publish rate.
fn awake_gb_s_per_million(run: &WorkloadReport) -> Option<f64> {
    let seconds = run.workload.duration.as_secs_f64();
    let rate = run.published as f64 / seconds;
    (rate > 0.0).then(|| DURATION_GB * 1e6 / rate)
}

/// Writes the broker's own counters over each run, and the Cloudflare
/// billing units per million messages published: 20 incoming WebSocket
/// messages are one request. Duration comes as two estimates: "busy"
/// bills the server's CPU time per message, "awake" the whole run's
/// wall-clock time.
fn storage_table(out: &mut String, report: &SuiteReport) {
    let _ = writeln!(
        out,
        "Broker counters from `/admin/metrics`, first send to last delivery:\n"
    );
    let _ = writeln!(out, "| scenario | published | WebSocket messages in | rows written | rows read | SQL statements | write batches | requests per million published | rows written per million published | rows read per million published | GB-s per million published, busy | GB-s per million published, awake |");
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for name in scenario_names(report) {
        let Some(run) = run(report, System::Broker, &name) else {
            continue;
        };
        let Some(storage) = run.storage else {
            continue;
        };
        let per_million = |count: f64| {
            let published = run.published.max(1) as f64;
            format!("{:.0}", count * 1e6 / published)
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.published,
            storage.websocket_messages,
            storage.rows_written,
            storage.rows_read,
            storage.statements,
            storage.batches,
            per_million(storage.websocket_messages as f64 / 20.0),
            per_million(storage.rows_written as f64),
            per_million(storage.rows_read as f64),
            cell(run.cpu_us_per_publish.map(|cpu_us| cpu_us * DURATION_GB), 1),
            cell(awake_gb_s_per_million(run), 1),
        );
    }
    out.push('\n');
}

fn connection_tables(out: &mut String, report: &SuiteReport) {
    let _ = writeln!(out, "| system | ready ms | first connection ms | connections/s | set-up p50 ms | set-up p99 ms | idle open / asked | RSS per idle connection KiB | storm deliveries/s | storm completion max s |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for system in &report.systems {
        let rate = system.connection_rate.as_ref();
        let idle = system.idle.as_ref();
        let storm = system.storm.as_ref();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            system.system.name(),
            system.ready_ms,
            cell(system.first_connection_ms, 1),
            cell(rate.map(|r| r.connections_per_s), 0),
            cell(rate.map(|r| r.setup.p50_ms), 2),
            cell(rate.map(|r| r.setup.p99_ms), 2),
            idle.map_or_else(|| "–".into(), |i| format!("{} / {}", i.opened, i.requested)),
            cell(
                idle.and_then(|i| i.bytes_per_connection)
                    .map(|b| b / 1024.0),
                1
            ),
            cell(storm.map(|s| s.deliveries_per_s), 0),
            cell(storm.map(|s| s.completion.max_ms / 1000.0), 2)
        );
    }
    out.push('\n');
}

/// Draws one timeline per scenario and bar charts across scenarios.
pub fn charts(report: &SuiteReport) -> Vec<(String, String)> {
    let systems: Vec<String> = report
        .systems
        .iter()
        .map(|s| s.system.name().to_string())
        .collect();
    let names = scenario_names(report);
    let mut charts = Vec::new();
    for name in &names {
        let series: Vec<(String, Vec<f64>)> = report
            .systems
            .iter()
            .filter_map(|s| {
                run(report, s.system, name)
                    .map(|r| (s.system.name().to_string(), r.timeline_per_s.clone()))
            })
            .collect();
        let title = format!("{name}: deliveries per second (100 ms bins)");
        charts.push((
            format!("timeline-{name}.svg"),
            plot::timeline(&title, "messages/s", 0.1, &series),
        ));
    }
    let per_scenario =
        |value: &dyn Fn(&WorkloadReport) -> Option<f64>| -> Vec<(String, Vec<Option<f64>>)> {
            names
                .iter()
                .map(|name| {
                    (
                        name.clone(),
                        report
                            .systems
                            .iter()
                            .map(|s| run(report, s.system, name).and_then(value))
                            .collect(),
                    )
                })
                .collect()
        };
    let throughput = per_scenario(&|r| Some(r.throughput_per_s));
    charts.push((
        "throughput.svg".into(),
        plot::bars(
            "Delivered messages per second",
            "messages/s",
            &systems,
            &throughput,
        ),
    ));
    let p99 = per_scenario(&|r| Some(r.latency.p99_ms));
    charts.push((
        "latency-p99.svg".into(),
        plot::bars("End-to-end latency, p99", "ms", &systems, &p99),
    ));
    let cpu = per_scenario(&|r| r.cpu_us_per_publish);
    charts.push((
        "cpu-per-publish.svg".into(),
        plot::bars(
            "Server CPU per message published",
            "microseconds",
            &systems,
            &cpu,
        ),
    ));
    charts
}
