//! The performance suite: what one box takes, against peers measured in the same run.
//!
//!     cargo bench --bench pipeline                 # every section (≈ 12 min)
//!     cargo bench --bench pipeline -- ingest sink  # some: ingest, ratio, sink, broker, e2e, soak
//!
//! - **ingest**: `wrk -t1 -c64` POSTing the seed's exposure, one user per request, at
//!   `exposures ingest` and its peers: a no-op axum handler (the HTTP ceiling), axum +
//!   serde_json, FastAPI + confluent-kafka (uvicorn, 2 workers, 200 after the acks=all
//!   report); all producers to one librdkafka mock cluster in its own process. Then
//!   ingest's latency at half its peak (open loop), batches of 100, and `exposures up`.
//! - **sink**: Kafka values → Arrow → Parquet bytes, from a pre-filled topic and from
//!   memory, against pyarrow doing the same on the same rows.
//! - **broker**: the embedded broker's CPU per record produced and fetched (100,000
//!   records, as ingest produces and the sink reads), against librdkafka's mock cluster
//!   and, given `EXPOSURES_BENCH_BASELINE_BIN`, an older binary's `dev-broker`.
//! - **e2e**: 1,000,000 exposures POSTed in batches of 1,000 to `exposures up
//!   --warehouse postgres://…` until all are queryable; peak resident memory.
//! - **soak**: `up` at a fixed rate for 60 s; resident memory every second.
//!
//! Prints tables and ratios and writes `target/bench/results.json`. It asserts nothing
//! about time: this machine is shared and noisy. It installs what it lacks: `wrk` (apt,
//! as root) and a virtualenv with the Python peers (`target/bench-venv`).
//! `EXPOSURES_BENCH_SECONDS` (10), `EXPOSURES_BENCH_EVENTS` (1,000,000) and
//! `EXPOSURES_BENCH_SOAK_SECONDS` (60) size the runs.

// The allocator `exposures` runs on, so the peers are measured on it too.
#[path = "../../src/allocator.rs"]
mod allocator;
mod broker;
mod load;
mod procs;
mod roles;
mod sections;
mod sink;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__broker") => return roles::broker(&args[1..]),
        Some("__noop") => return roles::noop(&args[1]),
        Some("__serde") => return roles::serde_peer(&args[1]),
        _ => {}
    }
    // cargo passes --bench; anything else not starting with '-' names a section.
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |section: &str| wanted.is_empty() || wanted.contains(&section);
    let mut report = Report::default();
    let venv = if run("ingest") || run("sink") {
        Some(python_venv())
    } else {
        None
    };
    if run("ingest") {
        ensure_wrk();
        sections::ingest(&mut report, venv.as_deref().expect("venv"));
    }
    if run("ratio") {
        ensure_wrk();
        sections::ingest_ratio(&mut report);
    }
    if run("sink") {
        sink::sink(&mut report, venv.as_deref().expect("venv"));
    }
    if run("broker") {
        broker::broker(&mut report);
    }
    if run("e2e") {
        sections::end_to_end(&mut report);
    }
    if run("soak") {
        sections::soak(&mut report);
    }
    report.finish();
}

/// Figures by section, and the ratios the targets are stated in.
#[derive(Default)]
pub struct Report {
    sections: serde_json::Map<String, Value>,
    ratios: Vec<(String, f64, String)>,
}

impl Report {
    pub fn put(&mut self, section: &str, key: &str, value: Value) {
        let entry = self
            .sections
            .entry(section.to_owned())
            .or_insert_with(|| json!({}));
        entry[key] = value;
    }

    /// A ratio and the target it is read against (printed, never asserted).
    pub fn ratio(&mut self, name: &str, value: f64, target: &str) {
        println!("  {name:<58} {value:>8.2}   (target {target})");
        self.ratios.push((name.to_owned(), value, target.to_owned()));
    }

    fn finish(self) {
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_default();
        let results = json!({
            "date": chrono::Utc::now().to_rfc3339(),
            "commit": commit,
            "machine": {"cpus": std::thread::available_parallelism().map_or(0, |n| n.get()), "cpu": cpu},
            "sections": self.sections,
            "ratios": self.ratios.iter().map(|(name, value, target)| json!({"name": name, "value": value, "target": target})).collect::<Vec<_>>(),
        });
        let path = procs::out_dir().join("results.json");
        std::fs::write(&path, serde_json::to_string_pretty(&results).expect("json")).expect("results.json");
        println!("\nratios:");
        for (name, value, target) in &self.ratios {
            println!("  {name:<58} {value:>8.2}   (target {target})");
        }
        println!("\nwritten: {}", path.display());
    }
}

fn ensure_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    println!("installing wrk (apt-get install wrk)…");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "wrk is missing: install it (Debian: apt-get install wrk) and run again"
    );
}

/// target/bench-venv with benches/peers/requirements.txt, created once.
fn python_venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/bench-venv");
    let requirements = root.join("benches/peers/requirements.txt");
    let stamp = venv.join(".requirements");
    let wanted = std::fs::read_to_string(&requirements).expect("benches/peers/requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return venv;
    }
    println!("creating {} with the Python peers…", venv.display());
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        created,
        "python3 -m venv failed: install python3-venv (Debian) and run again"
    );
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .is_ok_and(|s| s.success());
    assert!(installed, "pip install -r {} failed", requirements.display());
    std::fs::write(&stamp, wanted).expect("venv stamp");
    venv
}
