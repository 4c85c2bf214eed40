//! Support for the interop tests: starts the Worker under `wrangler dev` on a
//! free port of 127.0.0.1 and stops it by its process id.
//!
//! The tests themselves live in `tests/`; they need the Worker built first
//! (`make build`), because the server started here skips wrangler's build
//! step to start in seconds.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `wrangler dev` may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The repository root, where `wrangler.toml` and `node_modules` are.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crate is inside the repository").to_path_buf()
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 failed");
    listener.local_addr().expect("bound socket has an address").port()
}

/// A running `wrangler dev`, stopped by its process group id on drop.
pub struct Wrangler {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _work_dir: tempfile::TempDir,
}

impl Wrangler {
    /// Starts the built Worker with its storage in `persist_dir`, and
    /// `vars` (name, JSON value) replacing `[vars]` entries of `wrangler.toml`.
    pub fn start(persist_dir: &Path, vars: &[(&str, &str)]) -> Wrangler {
        let root = repo_root();
        let work_dir = tempfile::tempdir().expect("creating a temporary folder failed");
        let config_path = work_dir.path().join("wrangler.toml");
        fs::write(&config_path, test_config(&root, vars)).expect("writing the test wrangler.toml failed");

        let port = free_port();
        let inspector_port = free_port();
        let log_path = work_dir.path().join("wrangler.log");
        let log = fs::File::create(&log_path).expect("creating the wrangler log failed");
        let mut command = Command::new(root.join("node_modules/.bin/wrangler"));
        command
            .current_dir(&root)
            .args(["dev", "--config"])
            .arg(&config_path)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &inspector_port.to_string()])
            .arg("--persist-to")
            .arg(persist_dir)
            .args(["--show-interactive-dev-session=false", "--log-level", "info"])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log handle failed"))
            .stderr(log)
            .process_group(0);
        let child = command.spawn().expect("starting node_modules/.bin/wrangler failed; run `make test`");
        let mut server = Wrangler { child, port, log_path, _work_dir: work_dir };
        server.wait_ready();
        server
    }

    /// The port the Worker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:PORT` followed by `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// What wrangler and the Worker printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends a plain HTTP/1.1 GET and returns the status code.
    pub fn http_get_status(&self, path: &str) -> std::io::Result<u16> {
        http_get_status(self.port, path)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("wrangler dev exited with {status} before it was ready:\n{}", self.log());
            }
            if let Ok(426) = self.http_get_status("/mqtt") {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("wrangler dev did not answer within {START_TIMEOUT:?}:\n{}", self.log());
    }

    /// Stops the server: SIGTERM to its process group, then SIGKILL if it
    /// is still running after five seconds.
    pub fn stop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) with a negative pid signals the process group that
        // `process_group(0)` created for this child; it touches no memory.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; the group may already be gone, which is harmless.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Kills the server at once, as a crash would, leaving `persist_dir` as
    /// the runtime last wrote it.
    pub fn kill(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: see `stop`.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Wrangler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The repository's `wrangler.toml` without its `[build]` table (the tests
/// run on the Worker that `make build` made), with `main` as an absolute
/// path and with `vars` replacing entries of the `MQTT` settings table.
fn test_config(root: &Path, vars: &[(&str, &str)]) -> String {
    let original = fs::read_to_string(root.join("wrangler.toml")).expect("reading wrangler.toml failed");
    let mut out = String::new();
    let mut table = String::new();
    for line in original.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = trimmed.to_string();
            if table == "[vars.MQTT]" {
                out.push_str(line);
                out.push('\n');
                for (name, value) in vars {
                    out.push_str(&format!("{name} = {value}\n"));
                }
                continue;
            }
        }
        if table == "[build]" {
            continue;
        }
        if table == "[vars.MQTT]" && vars.iter().any(|(name, _)| trimmed.starts_with(&format!("{name} "))) {
            continue;
        }
        if table.is_empty() && trimmed.starts_with("main") {
            let main = root.join("edge/build/worker/shim.mjs");
            out.push_str(&format!("main = \"{}\"\n", main.display()));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Sends a plain HTTP/1.1 GET to 127.0.0.1:`port` and returns the status code.
pub fn http_get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    // workerd keeps the connection open for a while despite `Connection:
    // close`, so read only as far as the status line.
    let mut response = Vec::new();
    let mut chunk = [0u8; 256];
    while !response.windows(2).any(|pair| pair == b"\r\n") {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))
}
