//! The `exposures` binary as a child process, and free ports to give it.

use std::ffi::OsString;
use std::process::Stdio;

use tokio::process::Command;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub(crate) fn exposures() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exposures"));
    command.kill_on_drop(true).stdin(Stdio::null());
    command
}

/// `exposures ingest` as a child process against `brokers`, ready to serve.
pub(crate) struct IngestProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) url: String,
    pub(crate) address: std::net::SocketAddr,
    _spool: tempfile::TempDir,
}

impl IngestProcess {
    /// Starts it with `extra` flags and waits until `/healthz` answers.
    pub(crate) async fn start(brokers: &str, topic: &str, extra: &[&str]) -> IngestProcess {
        let spool = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = exposures()
            .args(["ingest", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--brokers", brokers, "--topic", topic])
            .arg("--spool-dir")
            .arg(spool.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn exposures ingest");
        let url = format!("http://127.0.0.1:{port}");
        let client = super::api::http();
        let deadline = std::time::Instant::now() + super::DEADLINE;
        loop {
            let ready = client
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "exposures ingest did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await; // polling a condition
        }
        IngestProcess {
            child,
            url,
            address: ([127, 0, 0, 1], port).into(),
            _spool: spool,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory of the process, in bytes (VmRSS of /proc/PID/status).
    pub(crate) fn resident_bytes(&self) -> u64 {
        resident_bytes(self.pid())
    }

    /// Sends SIGTERM (graceful shutdown).
    pub(crate) fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// VmRSS of process `pid`, in bytes.
pub(crate) fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmRSS")
}

/// One `exposures` command as a child process that can be killed and started again with
/// the same arguments (same ports, same directories).
pub(crate) struct Stage {
    pub(crate) name: &'static str,
    pub(crate) args: Vec<OsString>,
    pub(crate) child: Option<tokio::process::Child>,
}

impl Stage {
    pub(crate) fn new(name: &'static str, args: Vec<OsString>) -> Stage {
        Stage {
            name,
            args,
            child: None,
        }
    }

    pub(crate) fn start(&mut self) {
        let child = exposures()
            .args(&self.args)
            // The S3 server's credentials, through the AWS default chain as in production.
            .env("AWS_ACCESS_KEY_ID", loader::lake::embedded::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", loader::lake::embedded::SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(
                "RUST_LOG",
                std::env::var("EXPOSURES_CHAOS_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn exposures {}: {e}", self.name));
        self.child = Some(child);
    }

    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// `exposures dev-broker` as a child process with its own data directory and port, so
/// that it can be killed and started again where it was.
pub(crate) struct DevBroker {
    /// `host:port` for `bootstrap.servers`.
    pub(crate) brokers: String,
    pub(crate) stage: Stage,
    _data: tempfile::TempDir,
}

impl DevBroker {
    /// Starts it with `topics` (`NAME:PARTITIONS,…`) and waits until it serves the first.
    pub(crate) async fn start(topics: &str) -> DevBroker {
        let data = tempfile::tempdir().expect("tempdir");
        let brokers = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<OsString> = ["dev-broker", "--listen", &brokers, "--topics", topics]
            .iter()
            .map(OsString::from)
            .collect();
        args.extend(["--data-dir".into(), data.path().join("broker").into_os_string()]);
        let mut broker = DevBroker {
            brokers,
            stage: Stage::new("dev-broker", args),
            _data: data,
        };
        broker.stage.start();
        let first_topic = topics.split([',', ':']).next().unwrap_or(topics).to_owned();
        broker.wait_serving(&first_topic).await;
        broker
    }

    /// Waits until the broker answers for `topic`.
    pub(crate) async fn wait_serving(&self, topic: &str) {
        let deadline = std::time::Instant::now() + super::DEADLINE;
        while super::kafka::record_count(&self.brokers, topic) < 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "dev-broker does not serve {topic}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await; // polling a condition
        }
    }
}

/// `exposures up` on `http_port` and `broker_port` with `extra` flags and files closed
/// after 1 s, ready to serve (`/readyz` answers 200).
pub(crate) async fn start_up(
    data_dir: &std::path::Path,
    http_port: u16,
    broker_port: u16,
    extra: &[&str],
) -> tokio::process::Child {
    let child = exposures()
        .args(["up", "--listen", &format!("127.0.0.1:{http_port}")])
        .args(["--broker-listen", &format!("127.0.0.1:{broker_port}")])
        .args(["--flush-interval", "1s"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn exposures up");
    let client = super::api::http();
    let deadline = std::time::Instant::now() + super::DEADLINE;
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{http_port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return child;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exposures up did not become ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // polling a condition
    }
}
