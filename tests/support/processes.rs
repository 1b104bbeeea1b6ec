//! Processes the fault tests start and end: `toolbox worker`s and private
//! `redis-server`s. Each is ended by its own pid when its guard drops, never by name.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::artifacts;

/// A `toolbox worker` process; killed (SIGKILL) when dropped if still running.
pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    /// Starts `toolbox worker` on `plugins` against `broker`/`prefix` with `extra` flags;
    /// its stderr goes to `log_dir/<name>.log` for failure messages.
    pub fn start(
        plugins: &Path,
        broker: &str,
        prefix: &str,
        log_dir: &Path,
        name: &str,
        extra: &[&str],
    ) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let stderr = fs::File::create(&log).expect("worker log file");
        let child = Command::new(&artifacts().toolbox)
            .arg("worker")
            .args(["--broker", broker, "--prefix", prefix, "--plugins"])
            .arg(plugins)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("toolbox worker starts");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process has exited (and reaps it).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` of the test's own on a free port, persisting every write (AOF with
/// fsync always) so that a restart keeps what it accepted.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: no goodbye) and starts it again on the same port and data.
    pub fn restart(&mut self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.spawn();
    }

    /// Stops the server until [`PrivateRedis::start_again`].
    pub fn stop_for_test(&mut self) {
        self.stop();
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `toolbox serve` (or `toolbox api`) process on a free port; killed when dropped.
pub struct ServerProcess {
    pub base: String,
    child: Child,
    log: PathBuf,
    _logs: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `toolbox <command> --bind 127.0.0.1:<free port> --plugins <plugins>` with
    /// `extra` flags and waits until `/health` answers.
    pub fn start(command: &str, plugins: &Path, extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let logs = tempfile::tempdir().expect("temp dir");
        let log = logs.path().join("server.log");
        let child = Command::new(&artifacts().toolbox)
            .arg(command)
            .args(["--bind", &format!("127.0.0.1:{port}"), "--plugins"])
            .arg(plugins)
            .args(extra)
            .current_dir(logs.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("toolbox starts");
        let mut server = Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _logs: logs,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "toolbox {command} exited with {status}:\n{}",
                    server.log_tail()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "toolbox {command} did not listen:\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
