//! Support for the interop tests: starts the Worker under `wrangler dev`, and
//! Debian's `mosquitto` as a reference broker, on free ports of 127.0.0.1,
//! and stops each by its process id.
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

/// The HMAC key (`AUTH_HMAC_SECRET`) of every server the tests start; tests
/// sign their HS256 tokens with it.
pub const TEST_HMAC_SECRET: &str = "interop-test-hmac-secret-0123456789abcdef";

/// The `/admin/` bearer secret (`ADMIN_TOKEN`) of servers started with
/// [`Wrangler::start_authenticated`] or [`Wrangler::start_with_bridge`];
/// other servers have none.
pub const TEST_ADMIN_TOKEN: &str = "interop-test-admin-token-0123456789";

/// The webhook signing secret (`BRIDGE_WEBHOOK_SECRET`) of servers started
/// with [`Wrangler::start_with_bridge`].
pub const TEST_WEBHOOK_SECRET: &str = "interop-test-webhook-secret-0123456789";

/// How long `wrangler dev` may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The repository root, where `wrangler.toml` and `node_modules` are.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate is inside the repository")
        .to_path_buf()
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 failed");
    listener
        .local_addr()
        .expect("bound socket has an address")
        .port()
}

/// A running `wrangler dev`, stopped by its process group id on drop.
pub struct Wrangler {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _work_dir: tempfile::TempDir,
}

impl Wrangler {
    /// Starts the built Worker with its storage in `persist_dir`, anonymous
    /// clients allowed, and `vars` (name, JSON value) replacing `[vars]`
    /// entries of `wrangler.toml`.
    pub fn start(persist_dir: &Path, vars: &[(&str, &str)]) -> Wrangler {
        Wrangler::launch(persist_dir, vars, true, &[])
    }

    /// Starts the built Worker with anonymous clients rejected, so that
    /// every client needs a token signed with [`TEST_HMAC_SECRET`] (or a
    /// configured public key), the admin API open to [`TEST_ADMIN_TOKEN`],
    /// and `auth` (name, TOML value) replacing or adding entries of the
    /// `[vars.AUTH]` table of `wrangler.toml`.
    pub fn start_authenticated(persist_dir: &Path, auth: &[(&str, &str)]) -> Wrangler {
        Wrangler::launch(persist_dir, &[], false, auth)
    }

    /// Starts the built Worker with `http` (name, TOML value) as its
    /// `[vars.HTTP]` settings table.
    pub fn start_with_http(persist_dir: &Path, http: &[(&str, &str)]) -> Wrangler {
        let table: String = http
            .iter()
            .map(|(name, value)| format!("{name} = {value}\n"))
            .collect();
        Wrangler::launch_with(
            persist_dir,
            &[],
            true,
            &[],
            &format!("\n[vars.HTTP]\n{table}"),
            &[],
        )
    }

    /// Starts the built Worker with anonymous clients allowed and the
    /// `simple` line of the `[[ratelimits]]` binding named `binding`
    /// replaced by `rate_limit`; other bindings keep the high test limit.
    pub fn start_with_rate_limit(persist_dir: &Path, binding: &str, rate_limit: &str) -> Wrangler {
        Wrangler::launch_with(persist_dir, &[], true, &[], "", &[(binding, rate_limit)])
    }

    /// Starts the built Worker with anonymous clients rejected, the admin
    /// API open to [`TEST_ADMIN_TOKEN`], and `audit` (name, TOML value) as
    /// its `[vars.AUDIT]` archive settings table.
    pub fn start_with_audit(persist_dir: &Path, audit: &[(&str, &str)]) -> Wrangler {
        let table: String = audit
            .iter()
            .map(|(name, value)| format!("{name} = {value}\n"))
            .collect();
        let extra = format!("\n[vars.AUDIT]\n{table}");
        Wrangler::launch_with(persist_dir, &[], false, &[], &extra, &[])
    }

    fn launch(
        persist_dir: &Path,
        vars: &[(&str, &str)],
        anonymous: bool,
        auth: &[(&str, &str)],
    ) -> Wrangler {
        Wrangler::launch_with(persist_dir, vars, anonymous, auth, "", &[])
    }

    /// Starts the built Worker with anonymous clients allowed, the admin API
    /// open to [`TEST_ADMIN_TOKEN`], webhooks signed with
    /// [`TEST_WEBHOOK_SECRET`], `bridge` (TOML lines) as its `[vars.BRIDGE]`
    /// table, and `consumer` (name, TOML value) replacing those entries of
    /// every `[[queues.consumers]]` table.
    pub fn start_with_bridge(
        persist_dir: &Path,
        bridge: &str,
        consumer: &[(&str, &str)],
    ) -> Wrangler {
        Wrangler::launch_bridge(persist_dir, bridge, consumer, false)
    }

    /// Starts the Worker as [`Wrangler::start_with_bridge`] does, but with
    /// the `BRIDGE_QUEUE` producer binding renamed, so that every send to
    /// the bridge queue fails.
    pub fn start_with_bridge_queue_missing(
        persist_dir: &Path,
        bridge: &str,
        consumer: &[(&str, &str)],
    ) -> Wrangler {
        Wrangler::launch_bridge(persist_dir, bridge, consumer, true)
    }

    fn launch_bridge(
        persist_dir: &Path,
        bridge: &str,
        consumer: &[(&str, &str)],
        queue_missing: bool,
    ) -> Wrangler {
        let extra = format!("\n[vars.BRIDGE]\n{bridge}\n");
        let secrets = [
            ("ADMIN_TOKEN", TEST_ADMIN_TOKEN),
            ("BRIDGE_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET),
        ];
        let edit = |config: String| {
            let config = with_consumer_settings(config, consumer);
            match queue_missing {
                true => config.replace(
                    "binding = \"BRIDGE_QUEUE\"",
                    "binding = \"BRIDGE_QUEUE_RENAMED\"",
                ),
                false => config,
            }
        };
        Wrangler::launch_full(persist_dir, &[], true, &[], &extra, &[], &secrets, &edit)
    }

    /// Starts the server; `extra` is appended to the configuration, and
    /// `rate_limits` (binding name, `simple` line) replace the test limit
    /// of those bindings.
    fn launch_with(
        persist_dir: &Path,
        vars: &[(&str, &str)],
        anonymous: bool,
        auth: &[(&str, &str)],
        extra: &str,
        rate_limits: &[(&str, &str)],
    ) -> Wrangler {
        let unchanged = |config: String| config;
        Wrangler::launch_full(
            persist_dir,
            vars,
            anonymous,
            auth,
            extra,
            rate_limits,
            &[],
            &unchanged,
        )
    }

    /// Starts the server like [`Wrangler::launch_with`], and also passes
    /// `secrets` (name, value) with `--var` and applies `edit` to the
    /// configuration last.
    #[allow(clippy::too_many_arguments)]
    fn launch_full(
        persist_dir: &Path,
        vars: &[(&str, &str)],
        anonymous: bool,
        auth: &[(&str, &str)],
        extra: &str,
        rate_limits: &[(&str, &str)],
        secrets: &[(&str, &str)],
        edit: &dyn Fn(String) -> String,
    ) -> Wrangler {
        let root = repo_root();
        let work_dir = tempfile::tempdir().expect("creating a temporary folder failed");
        let config_path = work_dir.path().join("wrangler.toml");
        // wrangler reloads the Worker, dropping every connection, when the
        // files behind `main` change. A copy keeps a rebuild running in the
        // same tree (`make build`) from disturbing a test.
        let build = work_dir.path().join("build");
        copy_dir(&root.join("edge/build"), &build)
            .expect("copying edge/build failed; run `make build`");
        let main = build.join("worker/shim.mjs");
        let config = with_auth_settings(test_config(&root, &main, vars), auth);
        let mut config = with_rate_limits(config, rate_limits);
        config.push_str(extra);
        let config = edit(config);
        fs::write(&config_path, config).expect("writing the test wrangler.toml failed");

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
            .args(["--show-interactive-dev-session=false", "--log-level", "log"])
            // Serves `/__scheduled?cron=…`, which runs the scheduled upkeep.
            .arg("--test-scheduled")
            // Most tests connect without credentials, as `make dev` allows.
            .arg("--var")
            .arg(format!("AUTH_ANONYMOUS:{anonymous}"))
            .arg("--var")
            .arg(format!("AUTH_HMAC_SECRET:{TEST_HMAC_SECRET}"))
            .args(admin_token_var(anonymous))
            .args(
                secrets
                    .iter()
                    .flat_map(|(name, value)| ["--var".to_string(), format!("{name}:{value}")]),
            )
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log handle failed"))
            .stderr(log)
            .process_group(0);
        let child = command
            .spawn()
            .expect("starting node_modules/.bin/wrangler failed; run `make test`");
        let mut server = Wrangler {
            child,
            port,
            log_path,
            _work_dir: work_dir,
        };
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

    /// The address of one namespace, `path` being `/mqtt` or `/mqtt/NAME`.
    pub fn address(&self, path: &str) -> BrokerAddress {
        BrokerAddress {
            url: self.ws_url(path),
            port: self.port,
        }
    }

    /// What wrangler and the Worker printed so far, including the Worker's
    /// `console.log` lines (wrangler's `log` level).
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
                panic!(
                    "wrangler dev exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if let Ok(426) = self.http_get_status("/mqtt") {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "wrangler dev did not answer within {START_TIMEOUT:?}:\n{}",
            self.log()
        );
    }

    /// Stops the server: SIGTERM to its process group, then SIGKILL if it
    /// is still running after five seconds.
    pub fn stop(&mut self) {
        stop_process_group(&mut self.child);
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

/// The `--var` arguments that set `ADMIN_TOKEN`: none for servers with
/// anonymous access, which keep the admin API closed as `make dev` does.
fn admin_token_var(anonymous: bool) -> Vec<String> {
    match anonymous {
        true => Vec::new(),
        false => vec![
            "--var".to_string(),
            format!("ADMIN_TOKEN:{TEST_ADMIN_TOKEN}"),
        ],
    }
}

/// Copies the files and folders of `from` into `to`, except hidden ones
/// (worker-build's `.tmp`).
/// Copies the folder `from` to `to`, leaving out hidden files.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The connection rate limit of the test servers, per address.
const TEST_RATE_LIMIT: &str = "simple = { limit = 100000, period = 10 }";

/// Stops a child started with `process_group(0)` and everything it spawned
/// (wrangler starts workerd): SIGTERM to the group, then SIGKILL if the
/// child is still running after five seconds.
pub fn stop_process_group(child: &mut Child) {
    let group = -(child.id() as i32);
    // SAFETY: kill(2) with a negative pid signals the process group that
    // `process_group(0)` created for this child; it touches no memory.
    unsafe { libc::kill(group, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; the group may already be gone, which is harmless.
    unsafe { libc::kill(group, libc::SIGKILL) };
    let _ = child.wait();
}

/// The repository's `wrangler.toml` prepared by [`local_config`] for the
/// tests, which run on the Worker that `make build` made.
fn test_config(root: &Path, main: &Path, vars: &[(&str, &str)]) -> String {
    let original =
        fs::read_to_string(root.join("wrangler.toml")).expect("reading wrangler.toml failed");
    // Every test client comes from 127.0.0.1, one address, and the whole
    // suite opens far more than the production limit of connections per
    // address in ten seconds.
    local_config(&original, main, TEST_RATE_LIMIT, vars)
}

/// Rewrites a wrangler configuration for a run on a prebuilt Worker: drops
/// the `[build]` table, sets `main` to the absolute path `main`, replaces the
/// `simple` line of every `[[ratelimits]]` table with `rate_limit`, and sets
/// `vars` (name, TOML value) in the `[vars.MQTT]` table, replacing entries of
/// the same names.
pub fn local_config(
    original: &str,
    main: &Path,
    rate_limit: &str,
    vars: &[(&str, &str)],
) -> String {
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
        if table == "[[ratelimits]]" && trimmed.starts_with("simple") {
            out.push_str(rate_limit);
            out.push('\n');
            continue;
        }
        if table == "[vars.MQTT]"
            && vars
                .iter()
                .any(|(name, _)| trimmed.starts_with(&format!("{name} ")))
        {
            continue;
        }
        if table.is_empty() && trimmed.starts_with("main") {
            out.push_str(&format!("main = \"{}\"\n", main.display()));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Replaces the `simple` line of each `[[ratelimits]]` table whose `name`
/// is in `rate_limits` (binding name, `simple` line).
fn with_rate_limits(config: String, rate_limits: &[(&str, &str)]) -> String {
    if rate_limits.is_empty() {
        return config;
    }
    let mut out = String::new();
    let mut binding = None;
    for line in config.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            binding = None;
        }
        if let Some(name) = trimmed.strip_prefix("name = ") {
            let name = name.trim_matches('"');
            binding = rate_limits.iter().find(|(bound, _)| *bound == name);
        }
        if let (Some((_, rate_limit)), true) = (binding, trimmed.starts_with("simple")) {
            out.push_str(rate_limit);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Replaces the entries named in `settings` (name, TOML value) in every
/// `[[queues.consumers]]` table of a configuration.
fn with_consumer_settings(config: String, settings: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut in_consumer = false;
    for line in config.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_consumer = trimmed == "[[queues.consumers]]";
        }
        let replaced = settings
            .iter()
            .find(|(name, _)| trimmed.starts_with(&format!("{name} ")));
        match (in_consumer, replaced) {
            (true, Some((name, value))) => out.push_str(&format!("{name} = {value}\n")),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Sets `auth` (name, TOML value) in the `[vars.AUTH]` table of a
/// configuration, replacing entries of the same names.
fn with_auth_settings(config: String, auth: &[(&str, &str)]) -> String {
    if auth.is_empty() {
        return config;
    }
    let replaced = |line: &str| {
        auth.iter()
            .any(|(name, _)| line.trim_start().starts_with(&format!("{name} ")))
    };
    let mut out = String::new();
    let mut in_auth_table = false;
    for line in config.lines() {
        if line.trim().starts_with('[') {
            in_auth_table = line.trim() == "[vars.AUTH]";
        }
        if in_auth_table && replaced(line) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[vars.AUTH]" {
            for (name, value) in auth {
                out.push_str(&format!("{name} = {value}\n"));
            }
        }
    }
    out
}

/// Sends a plain HTTP/1.1 GET to 127.0.0.1:`port` and returns the status code.
pub fn http_get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
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

/// Where an MQTT over WebSocket client connects: what rumqttc takes as the
/// host (the whole URL) and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// `ws://127.0.0.1:PORT/PATH`.
    pub url: String,
    /// The TCP port of `url`.
    pub port: u16,
}

/// How long mosquitto may take to accept connections on its WebSocket port.
const MOSQUITTO_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `mosquitto` with a TCP listener and a WebSocket listener, both
/// on 127.0.0.1, stopped by its process id on drop.
pub struct Mosquitto {
    child: Child,
    tcp_port: u16,
    websocket_port: u16,
    log_path: PathBuf,
    _work_dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto with anonymous access and no persistence.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(&[])
    }

    /// Starts mosquitto with `extra` lines appended to the global part of
    /// its configuration, such as `persistence true`. Persistence, if
    /// turned on, goes to this server's temporary folder.
    pub fn start_with(extra: &[&str]) -> Mosquitto {
        let work_dir = tempfile::tempdir().expect("creating a temporary folder failed");
        let tcp_port = free_port();
        let websocket_port = free_port();
        let config_path = work_dir.path().join("mosquitto.conf");
        let config = mosquitto_config(work_dir.path(), tcp_port, websocket_port, extra);
        fs::write(&config_path, config).expect("writing mosquitto.conf failed");

        let log_path = work_dir.path().join("mosquitto.log");
        let log = fs::File::create(&log_path).expect("creating the mosquitto log failed");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log handle failed"))
            .stderr(log)
            .spawn()
            .expect("starting mosquitto failed; run `make mosquitto` to install it");
        let mut server = Mosquitto {
            child,
            tcp_port,
            websocket_port,
            log_path,
            _work_dir: work_dir,
        };
        server.wait_ready();
        server
    }

    /// The port of the plain TCP listener.
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// The address of the WebSocket listener, with the path `/mqtt`.
    pub fn address(&self) -> BrokerAddress {
        let port = self.websocket_port;
        BrokerAddress {
            url: format!("ws://127.0.0.1:{port}/mqtt"),
            port,
        }
    }

    /// What mosquitto logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + MOSQUITTO_START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "mosquitto exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.websocket_port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "mosquitto did not accept connections within {MOSQUITTO_START_TIMEOUT:?}:\n{}",
            self.log()
        );
    }

    /// Stops mosquitto: SIGTERM, then SIGKILL if it is still running after
    /// five seconds.
    pub fn stop(&mut self) {
        let pid = self.child.id() as i32;
        stop_process(&mut self.child, pid);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A mosquitto configuration: one TCP and one WebSocket listener on
/// 127.0.0.1, anonymous access, logs to stderr, then `extra`.
fn mosquitto_config(dir: &Path, tcp_port: u16, websocket_port: u16, extra: &[&str]) -> String {
    let mut config = String::new();
    config.push_str("per_listener_settings false\n");
    config.push_str("allow_anonymous true\n");
    config.push_str("log_dest stderr\n");
    config.push_str("log_type all\n");
    // Running as root, mosquitto switches to the `mosquitto` user, which
    // cannot write to a root-owned temporary folder.
    config.push_str("user root\n");
    config.push_str(&format!("persistence_location {}/\n", dir.display()));
    config.push_str("persistence false\n");
    for line in extra {
        config.push_str(line);
        config.push('\n');
    }
    config.push_str(&format!("listener {tcp_port} 127.0.0.1\n"));
    config.push_str(&format!("listener {websocket_port} 127.0.0.1\n"));
    config.push_str("protocol websockets\n");
    config
}

/// Sends SIGTERM to `pid` (a negative pid is a process group), waits up to
/// five seconds for `child` to exit, then sends SIGKILL.
fn stop_process(child: &mut Child, pid: i32) {
    // SAFETY: kill(2) only sends a signal to a process this crate started;
    // it touches no memory.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; the process may already be gone, which is harmless.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
}
