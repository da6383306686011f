//! The `exposures` binary as a child process, and free ports to give it.

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
