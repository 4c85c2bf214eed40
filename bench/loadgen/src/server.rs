//! The servers under test: `wrangler dev` (the broker or the relay) and
//! mosquitto, each on a free port of 127.0.0.1 and stopped by process id.
//! Their CPU time and resident memory come from `/proc`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long `wrangler dev` may take to respond to its first request.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// mosquitto's queue limit per client. With its default of 1,000, mosquitto
/// drops retained messages beyond that in the subscription storm. The
/// pub/sub scenarios keep at most about 256 messages in flight anyway.
const MOSQUITTO_MAX_QUEUED: usize = 100_000;

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 failed");
    listener
        .local_addr()
        .expect("bound socket has an address")
        .port()
}

/// A running server process group.
pub struct Server {
    child: Child,
    /// The port clients connect to.
    pub port: u16,
    /// From spawn to the first HTTP 426 (wrangler) or accepted connection
    /// (mosquitto).
    pub ready_after: Duration,
    /// Processes whose CPU time and memory count as the server's.
    pub probe: Probe,
    /// The bearer secret of `/admin/` (wrangler only; empty for mosquitto).
    pub admin_token: String,
    log_path: PathBuf,
    _work_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `wrangler dev` on the Worker that `config` describes, without
    /// its `[build]` step, with fresh storage and anonymous access (the
    /// broker's `AUTH_ANONYMOUS`, as `make dev` sets it). `probe_path` is a
    /// path that returns 426 without an upgrade.
    pub async fn start_wrangler(
        root: &Path,
        config: &Path,
        probe_path: &str,
    ) -> Result<Server, String> {
        let work_dir = tempfile::tempdir()
            .map_err(|error| format!("creating a temporary folder failed: {error}"))?;
        let copy = work_dir.path().join("wrangler.toml");
        // wrangler dev reads secrets from `.dev.vars` next to the config.
        // The broker rejects every CONNECT while HS256 is on without a key,
        // even with anonymous access on, so each run gets a throwaway key.
        // The benchmark clients send no token.
        let secret: String = random_bytes()?
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let admin_token: String = random_bytes()?
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        fs::write(
            work_dir.path().join(".dev.vars"),
            format!("{HMAC_SECRET_NAME}={secret}\n{ADMIN_TOKEN_NAME}={admin_token}\n"),
        )
        .map_err(|error| format!("writing .dev.vars failed: {error}"))?;
        let main = copy_build(config, work_dir.path())?;
        fs::write(&copy, config_without_build(config, &main)?)
            .map_err(|error| format!("writing {} failed: {error}", copy.display()))?;
        let port = free_port();
        let log_path = work_dir.path().join("wrangler.log");
        let log = fs::File::create(&log_path)
            .map_err(|error| format!("creating the wrangler log failed: {error}"))?;
        let log_copy = log
            .try_clone()
            .map_err(|error| format!("duplicating the log handle failed: {error}"))?;
        let mut command = Command::new(root.join("node_modules/.bin/wrangler"));
        command
            .current_dir(root)
            .args(["dev", "--config"])
            .arg(&copy)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .arg("--persist-to")
            .arg(work_dir.path().join("state"))
            .args(["--var", "AUTH_ANONYMOUS:true"])
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                "warn",
            ])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(log_copy)
            .stderr(log)
            .process_group(0);
        let spawned = Instant::now();
        let child = command
            .spawn()
            .map_err(|error| format!("starting node_modules/.bin/wrangler failed: {error}"))?;
        let probe = Probe {
            pid: child.id() as i32,
            group: true,
            only: Some("workerd"),
        };
        let mut server = Server {
            child,
            port,
            ready_after: Duration::ZERO,
            probe,
            log_path,
            admin_token,
            _work_dir: work_dir,
        };
        server.wait_for_status(probe_path, 426, spawned).await?;
        server.ready_after = spawned.elapsed();
        Ok(server)
    }

    /// Starts mosquitto with a TCP and a WebSocket listener on 127.0.0.1;
    /// `port` is the WebSocket one.
    pub async fn start_mosquitto() -> Result<Server, String> {
        let work_dir = tempfile::tempdir()
            .map_err(|error| format!("creating a temporary folder failed: {error}"))?;
        let (tcp_port, port) = (free_port(), free_port());
        let config_path = work_dir.path().join("mosquitto.conf");
        let config = format!(
            "per_listener_settings false\nallow_anonymous true\nlog_dest stderr\nlog_type error\n\
             user root\npersistence false\nmax_queued_messages {MOSQUITTO_MAX_QUEUED}\n\
             listener {tcp_port} 127.0.0.1\nlistener {port} 127.0.0.1\nprotocol websockets\n"
        );
        fs::write(&config_path, config)
            .map_err(|error| format!("writing mosquitto.conf failed: {error}"))?;
        let log_path = work_dir.path().join("mosquitto.log");
        let log = fs::File::create(&log_path)
            .map_err(|error| format!("creating the mosquitto log failed: {error}"))?;
        let log_copy = log
            .try_clone()
            .map_err(|error| format!("duplicating the log handle failed: {error}"))?;
        let spawned = Instant::now();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_copy)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|error| format!("starting mosquitto failed ({error}); install it with `apt-get install -y mosquitto`"))?;
        let probe = Probe {
            pid: child.id() as i32,
            group: false,
            only: None,
        };
        let mut server = Server {
            child,
            port,
            ready_after: Duration::ZERO,
            probe,
            log_path,
            admin_token: String::new(),
            _work_dir: work_dir,
        };
        let deadline = spawned + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(format!(
                    "mosquitto did not listen within 10 s:\n{}",
                    server.log()
                ));
            }
            server.check_running()?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.ready_after = spawned.elapsed();
        Ok(server)
    }

    /// Finds the port of the `workerd` process that runs the Worker itself,
    /// as opposed to the entry `workerd` on [`Server::port`] that `wrangler
    /// dev` puts in front of it. The entry one proxies every WebSocket and
    /// uses about 5 file descriptors per connection, the Worker's own uses
    /// one. Returns the first other port of 127.0.0.1 that a measured
    /// process listens on and that returns HTTP `expected` for `path`.
    pub async fn worker_port(&self, path: &str, expected: u16) -> Option<u16> {
        for port in listening_ports(&self.probe.pids()) {
            if port != self.port && http_get_status(port, path).await == Some(expected) {
                return Some(port);
            }
        }
        None
    }

    /// Returns what the server printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("the server exited with {status}:\n{}", self.log())),
            _ => Ok(()),
        }
    }

    async fn wait_for_status(
        &mut self,
        path: &str,
        expected: u16,
        since: Instant,
    ) -> Result<(), String> {
        while since.elapsed() < START_TIMEOUT {
            self.check_running()?;
            if http_get_status(self.port, path).await == Some(expected) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "no HTTP {expected} on {path} within {START_TIMEOUT:?}:\n{}",
            self.log()
        ))
    }

    /// Stops the process group: SIGTERM, then SIGKILL after five seconds.
    pub fn stop(&mut self) {
        interop_tests::stop_process_group(&mut self.child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The processes measured as one server: the spawned process, or for
/// wrangler every `workerd` in its process group. wrangler itself is a
/// Node.js supervisor. The processes are looked up again at every reading,
/// because wrangler starts `workerd` after it is spawned, and again when
/// the Worker's files change.
pub struct Probe {
    pid: i32,
    /// Whether to measure the process group of `pid` instead of `pid`.
    group: bool,
    /// The command name that a group member must have to be measured.
    only: Option<&'static str>,
}

/// CPU ticks (user plus system) per measured process at one moment.
pub struct CpuSample(HashMap<i32, u64>);

impl Probe {
    /// Returns the measured process ids.
    pub fn pids(&self) -> Vec<i32> {
        if !self.group {
            return vec![self.pid];
        }
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            let Some(stat) = read_stat(pid) else {
                continue;
            };
            if stat.group == self.pid && self.only.is_none_or(|name| stat.command == name) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Reads the CPU ticks of every measured process.
    pub fn cpu_sample(&self) -> CpuSample {
        let pids = self.pids().into_iter();
        CpuSample(
            pids.filter_map(|pid| read_stat(pid).map(|stat| (pid, stat.cpu_ticks)))
                .collect(),
        )
    }

    /// Returns the CPU seconds used since `before`. A process that started
    /// since then counts in full; one that exited since then is missed.
    pub fn cpu_seconds_since(&self, before: &CpuSample) -> f64 {
        // SAFETY: sysconf only reads a system constant.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let after = self.cpu_sample();
        let ticks: u64 = after
            .0
            .iter()
            .map(|(pid, ticks)| ticks.saturating_sub(before.0.get(pid).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / ticks_per_second
    }

    /// Returns the resident memory of every measured process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.pids().into_iter().filter_map(rss_bytes).sum()
    }
}

/// The fields of `/proc/PID/stat` that the probe uses.
struct Stat {
    command: String,
    group: i32,
    cpu_ticks: u64,
}

/// Lists the TCP ports on 127.0.0.1 that `pids` listen on, from their
/// socket inodes and `/proc/net/tcp`.
fn listening_ports(pids: &[i32]) -> Vec<u16> {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|target| target.strip_prefix("socket:["))
                .and_then(|target| target.strip_suffix(']'));
            if let Some(inode) = inode {
                inodes.insert(inode.to_string());
            }
        }
    }
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut ports = Vec::new();
    for line in table.lines().skip(1) {
        // Fields: slot, local address, remote address, state, queues,
        // timer, retransmits, uid, timeout, inode. State 0A is LISTEN.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != "0A" || !inodes.contains(*inode) {
            continue;
        }
        let port = local
            .strip_prefix("0100007F:")
            .and_then(|port| u16::from_str_radix(port, 16).ok());
        ports.extend(port);
    }
    ports
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command is in parentheses and may contain spaces; the fields
    // after the last ')' are space-separated, starting with field 3 (state).
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let command = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 2..].split(' ').collect();
    let group = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        command,
        group,
        cpu_ticks: utime + stime,
    })
}

fn rss_bytes(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// The broker's secret binding for its HS256 key.
const HMAC_SECRET_NAME: &str = "AUTH_HMAC_SECRET";

/// The secret of the broker's `/admin/` API, from which the suite reads
/// its storage counters.
const ADMIN_TOKEN_NAME: &str = "ADMIN_TOKEN";

/// Reads 32 random bytes for a throwaway HMAC key.
fn random_bytes() -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(|error| format!("reading /dev/urandom failed: {error}"))?;
    Ok(bytes)
}

/// A connection-rate limit no benchmark reaches: every client of a run
/// comes from 127.0.0.1, one address for the limiter.
const BENCH_RATE_LIMIT: &str = "simple = { limit = 1000000, period = 10 }";

/// The broker's connection limit per namespace in the benchmark, above its
/// default of 10,000 so that the idle scenario's warm-up connection and its
/// 10,000 idle ones fit in one namespace.
const BENCH_MAX_CONNECTIONS: &str = "20000";

/// Turns the R2 mirror of retained messages off. With it on, local R2 writes
/// of the storm's 10,000 retained messages kept the object from responding
/// for about 16 s (wrangler 4.86 here). A client waits less for its
/// WebSocket upgrade, so the storm would measure R2 instead of the broker.
const BENCH_AUDIT_SETTINGS: &str = "\n[vars.AUDIT]\nmirror_retained = false\n";

/// Copies the build folder of the Worker that `config` names (the folder
/// two levels above `main`, such as `edge/build`) into `work_dir`, and
/// returns the path of `main` in the copy. wrangler watches `main` and
/// restarts the Worker when it changes, which a rebuild in the working tree
/// would otherwise do in the middle of a run.
fn copy_build(config: &Path, work_dir: &Path) -> Result<PathBuf, String> {
    let original = fs::read_to_string(config)
        .map_err(|error| format!("reading {} failed: {error}", config.display()))?;
    let main = original
        .lines()
        .take_while(|line| !line.trim().starts_with('['))
        .find(|line| line.trim().starts_with("main"))
        .and_then(|line| line.split('"').nth(1))
        .ok_or_else(|| format!("{}: missing `main`", config.display()))?;
    let main = config.parent().unwrap_or(Path::new(".")).join(main);
    let build = main
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{}: `main` is not inside a build folder", config.display()))?;
    let relative = main
        .strip_prefix(build)
        .map_err(|error| format!("{}: {error}", main.display()))?;
    let copy = work_dir.join("build");
    interop_tests::copy_dir(build, &copy).map_err(|error| {
        format!(
            "copying {} failed: {error}; run `make build` first",
            build.display()
        )
    })?;
    Ok(copy.join(relative))
}

/// Returns `config` without its `[build]` table and with these changes:
/// `main` is the absolute path `main`, `max_connections` is
/// [`BENCH_MAX_CONNECTIONS`], and every `[[ratelimits]]` limit is
/// [`BENCH_RATE_LIMIT`]. The per-client message rate limit is off, because
/// the storm's one client stores 10,000 retained messages as fast as it
/// can. [`BENCH_AUDIT_SETTINGS`] is added unless the config has an
/// `[vars.AUDIT]` table. The limiter still runs on every upgrade, so its
/// cost stays measured.
fn config_without_build(config: &Path, main: &Path) -> Result<String, String> {
    let original = fs::read_to_string(config)
        .map_err(|error| format!("reading {} failed: {error}", config.display()))?;
    let mut config = interop_tests::local_config(
        &original,
        main,
        BENCH_RATE_LIMIT,
        &[
            ("max_connections", BENCH_MAX_CONNECTIONS),
            ("max_messages_per_sec", "0"),
        ],
    );
    if !config.contains("[vars.AUDIT]") {
        config.push_str(BENCH_AUDIT_SETTINGS);
    }
    Ok(config)
}

/// Sends a plain HTTP/1.1 GET and returns the status code, or `None` when
/// nothing responds.
pub async fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // workerd may keep the connection open, so read only the status line.
        let mut response = Vec::new();
        let mut chunk = [0u8; 256];
        while !response.windows(2).any(|pair| pair == b"\r\n") {
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..read]);
        }
        String::from_utf8_lossy(&response)
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_table_is_dropped() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("wrangler.toml");
        fs::write(&path, "name = \"x\"\nmain = \"build/worker/shim.mjs\"\n[build]\ncommand = \"make\"\n[vars]\nA = 1\n[[ratelimits]]\nsimple = { limit = 5, period = 10 }\n").expect("write");
        let main = Path::new("/copy/build/worker/shim.mjs");
        let config = config_without_build(&path, main).expect("config");
        assert!(!config.contains("command"));
        assert!(config.contains("main = \"/copy/build/worker/shim.mjs\""));
        assert!(config.contains("A = 1"));
        assert!(config.contains(BENCH_RATE_LIMIT));
    }
}
