//! Clients in other languages, run as child processes: paho-mqtt (Python)
//! and MQTT.js (Node), including the `mqtt` command line of the README.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use interop_tests::{repo_root, Wrangler};
use libtest_mimic::Failed;

use crate::mqtt::WAIT;

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("paho_python_roundtrip", paho_roundtrip),
    ("mqttjs_roundtrip", mqttjs_roundtrip),
    ("mqttjs_cli_sub_and_pub", mqttjs_cli),
];

/// How long a client script may run in all.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a client script and fails with its output unless it exits 0.
fn run_script(program: &str, script: &str, server: &Wrangler) -> Result<(), Failed> {
    let root = repo_root();
    let child = Command::new(program)
        .current_dir(&root)
        .arg(root.join("interop-tests/clients").join(script))
        .arg(server.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("starting {program} failed: {error}"))?;
    let (done, finished) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(SCRIPT_TIMEOUT) {
        Ok(output) => {
            let output = output?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{script} failed ({}):\n{}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )
                .into())
            }
        }
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child this test started; no memory is touched.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Err(format!("{script} did not finish within {SCRIPT_TIMEOUT:?}").into())
        }
    }
}

fn paho_roundtrip(server: &Wrangler) -> Result<(), Failed> {
    run_script("python3", "paho_roundtrip.py", server)
}

fn mqttjs_roundtrip(server: &Wrangler) -> Result<(), Failed> {
    run_script("node", "mqttjs_roundtrip.mjs", server)
}

/// The first session of the README: `mqtt sub` prints what `mqtt pub` sends.
fn mqttjs_cli(server: &Wrangler) -> Result<(), Failed> {
    let root = repo_root();
    let cli = root.join("node_modules/.bin/mqtt");
    let port = server.port().to_string();
    let common = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-l",
        "ws",
        "--path",
        "/mqtt",
    ];
    let mut subscriber = Command::new(&cli)
        .args(["sub", "-t", "cli/#", "-v"])
        .args(common)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = subscriber.stdout.take().ok_or("no stdout from mqtt sub")?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    // `mqtt sub` prints nothing when its SUBACK arrives, so publish until the
    // first message shows up, at most for WAIT.
    let deadline = std::time::Instant::now() + WAIT;
    let result = loop {
        let status = Command::new(&cli)
            .args(["pub", "-t", "cli/greeting", "-m", "hello"])
            .args(common)
            .status()?;
        if !status.success() {
            break Err(format!("mqtt pub exited with {status}").into());
        }
        match received.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                break if line == "cli/greeting hello" {
                    Ok(())
                } else {
                    Err(format!("mqtt sub printed {line:?}").into())
                }
            }
            Err(_) if std::time::Instant::now() < deadline => continue,
            Err(_) => break Err(format!("mqtt sub printed nothing within {WAIT:?}").into()),
        }
    };
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    result
}
