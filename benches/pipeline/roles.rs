//! What the suite runs in processes of its own, by re-executing itself: the broker
//! (librdkafka's mock cluster, so its CPU is not the measured process's) and the two
//! Rust HTTP peers that bound what any ingest on axum can do.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};

use crate::procs::{self, Proc};

/// `__broker TOPIC:PARTITIONS…`: a one-broker mock cluster with those topics; prints its
/// bootstrap servers and lives until its stdin closes (when the suite exits).
pub fn broker(topics: &[String]) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in topics {
        let (name, partitions) = topic.split_once(':').expect("TOPIC:PARTITIONS");
        cluster
            .create_topic(name, partitions.parse().expect("partitions"), 1)
            .expect("create topic");
    }
    println!("{}", cluster.bootstrap_servers());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A mock cluster in a child process; its address.
pub struct Broker {
    pub bootstrap: String,
    process: Proc,
}

impl Broker {
    pub fn start(topics: &[(&str, i32)]) -> Broker {
        let mut child = Command::new(std::env::current_exe().expect("own executable"))
            .arg("__broker")
            .args(
                topics
                    .iter()
                    .map(|(name, partitions)| format!("{name}:{partitions}")),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mock broker process");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("broker stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("broker address");
        Broker {
            bootstrap: line.trim().to_owned(),
            process: Proc::from_child("mock-broker", child),
        }
    }
}

impl Broker {
    /// The mock cluster's process, whose CPU the broker section reads.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// `__noop PORT`: axum answering every POST with a fixed JSON body after reading the
/// request: the HTTP ceiling on this machine.
pub fn noop(port: &str) {
    serve(
        port,
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(post(|_body: Bytes| async { Json(json!({"status": "ok"})) })),
    );
}

/// `__serde PORT`: axum that also parses the body with serde_json (one object or an
/// array), as any JSON API must.
pub fn serde_peer(port: &str) {
    async fn parse(body: Bytes) -> Result<Json<Value>, StatusCode> {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(events)) => Ok(Json(json!({"accepted": events.len()}))),
            Ok(Value::Object(_)) => Ok(Json(json!({"status": "ok"}))),
            _ => Err(StatusCode::BAD_REQUEST),
        }
    }
    serve(
        port,
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(post(parse)),
    );
}

fn serve(port: &str, router: Router) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("port");
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        axum::serve(listener, router).await.expect("serve");
    });
}

/// Starts `__noop` or `__serde` on a free port.
pub fn rust_peer(role: &str) -> (Proc, u16) {
    let port = procs::free_port();
    let proc = Proc::spawn(
        role.trim_start_matches('_'),
        Command::new(std::env::current_exe().expect("own executable"))
            .arg(role)
            .arg(port.to_string()),
    );
    procs::wait_http_ok(role, port, "/healthz");
    (proc, port)
}

/// The FastAPI + confluent-kafka peer under uvicorn with 2 workers.
pub fn python_peer(venv: &Path, brokers: &str, topic: &str, linger_ms: &str) -> (Proc, u16) {
    let port = procs::free_port();
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    let proc = Proc::spawn(
        "fastapi",
        Command::new(venv.join("bin/uvicorn"))
            .args([
                "fastapi_ingest:app",
                "--workers",
                "2",
                "--no-access-log",
                "--log-level",
                "warning",
            ])
            .arg("--app-dir")
            .arg(&peers)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("BENCH_BROKERS", brokers)
            .env("BENCH_TOPIC", topic)
            .env("BENCH_LINGER_MS", linger_ms),
    );
    procs::wait_until("the FastAPI peer", Duration::from_secs(60), || {
        procs::http_get_status(port, "/docs") == Some(200)
    });
    (proc, port)
}
