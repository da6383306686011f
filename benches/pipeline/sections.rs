//! The ingest, end-to-end and soak sections of the suite (the sink's is `sink.rs`). Each
//! starts what it measures, prints a table and puts its figures in the report.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::load::{self, Latencies};
use crate::procs::{self, Proc};
use crate::roles::{self, Broker};
use crate::Report;

const CONNECTIONS: u32 = 64;
const PARTITIONS: i32 = 6;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn exposures() -> Command {
    Command::new(env!("CARGO_BIN_EXE_exposures"))
}

fn print_header() {
    println!(
        "  {:<46} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7}",
        "peer", "req/s", "events/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
}

fn print_row(name: &str, run: &Latencies, events_per_request: u32) {
    println!(
        "  {:<46} {:>10.0} {:>12.0} {:>8.2} {:>8.2} {:>8.1} {:>7}",
        name,
        run.per_second,
        run.per_second * f64::from(events_per_request),
        run.p50_ms,
        run.p99_ms,
        run.max_ms,
        run.errors
    );
    if run.errors > 0 {
        println!(
            "    ^ {} answers were not 200: this row is not a valid result",
            run.errors
        );
    }
}

/// A 2 s warm-up (connections, JIT-less caches, the broker's first batches), then the
/// measured wrk run.
fn wrk_peer(report: &mut Report, key: &str, name: &str, port: u16, path: &str, events: u32) -> Latencies {
    let seconds = env_u64("EXPOSURES_BENCH_SECONDS", 10);
    load::wrk(port, path, CONNECTIONS, 2, events);
    let run = load::wrk(port, path, CONNECTIONS, seconds, events);
    print_row(name, &run, events);
    report.put("ingest", key, json!(run));
    run
}

/// Single events, ingest against the no-op ceiling, in alternating rounds
/// (`EXPOSURES_BENCH_ROUNDS`, default 3): on 2 shared cores one 10 s run of each gave
/// 0.61 and then 0.36 for the same build, so the ratio is taken round by round, with
/// both servers up throughout, and the median reported.
pub fn ingest_ratio(report: &mut Report) {
    let seconds = env_u64("EXPOSURES_BENCH_SECONDS", 10);
    let rounds = env_u64("EXPOSURES_BENCH_ROUNDS", 3).max(1);
    let broker = Broker::start(&[("bench-ratio", PARTITIONS)]);
    println!("\n== ratio: ingest / no-op ceiling, single events, {rounds} alternating rounds of {seconds} s");
    let (_noop, noop_port) = roles::rust_peer("__noop");
    let (mut ingest, ingest_port, _spool) = start_ingest(&broker.bootstrap, "bench-ratio", &[]);
    load::wrk(noop_port, "/exposure", CONNECTIONS, 2, 1);
    load::wrk(ingest_port, "/exposure", CONNECTIONS, 2, 1);
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let ceiling = load::wrk(noop_port, "/exposure", CONNECTIONS, seconds, 1);
        // Ingest's own cost per request, to tell this machine's two modes apart: the same
        // build runs at two rates from one run to the next, and the slow mode spends more
        // CPU and more context switches per request (README "Results", 2026-12-05).
        let (cpu_before, switches_before) = (
            procs::cpu_seconds(ingest.pid()),
            procs::context_switches(ingest.pid()),
        );
        let ours = load::wrk(ingest_port, "/exposure", CONNECTIONS, seconds, 1);
        let requests = (ours.per_second * seconds as f64).max(1.0);
        let cpu_us_per_request = (procs::cpu_seconds(ingest.pid()) - cpu_before) * 1e6 / requests;
        let switches_per_request =
            procs::context_switches(ingest.pid()).saturating_sub(switches_before) as f64 / requests;
        let ratio = ours.per_second / ceiling.per_second;
        println!(
            "  round {round}: no-op {:>8.0} req/s, ingest {:>8.0} req/s (p99 {:.2} ms; {cpu_us_per_request:.1} CPU µs and {switches_per_request:.2} context switches per request): {ratio:.2}",
            ceiling.per_second, ours.per_second, ours.p99_ms
        );
        report.put(
            "ratio",
            &format!("round_{round}"),
            json!({
                "noop": ceiling,
                "ingest": ours,
                "ratio": ratio,
                "ingest_cpu_us_per_request": cpu_us_per_request,
                "ingest_context_switches_per_request": switches_per_request,
            }),
        );
        ratios.push(ratio);
    }
    ingest.assert_running();
    ratios.sort_by(f64::total_cmp);
    report.ratio(
        "ingest / no-op ceiling, single events (median of alternating rounds)",
        ratios[ratios.len() / 2],
        "≥ 0.6",
    );
}

/// `exposures ingest` on a free port with its own spool; ready once /readyz says so.
fn start_ingest(brokers: &str, topic: &str, extra: &[&str]) -> (Proc, u16, tempfile::TempDir) {
    let port = procs::free_port();
    let spool = tempfile::tempdir().expect("spool dir");
    let proc = Proc::spawn(
        &format!("ingest-{topic}"),
        exposures()
            .args(["ingest", "--brokers", brokers, "--topic", topic])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--spool-dir")
            .arg(spool.path())
            .args(extra),
    );
    procs::wait_http_ok("exposures ingest", port, "/readyz");
    (proc, port, spool)
}

/// `exposures up` on free ports over a fresh data dir, optionally loading `warehouse`.
fn start_up(name: &str, warehouse: Option<&str>) -> (Proc, u16, tempfile::TempDir) {
    let port = procs::free_port();
    let data = tempfile::tempdir().expect("data dir");
    let mut command = exposures();
    command
        .args(["up", "--data-dir"])
        .arg(data.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    if let Some(url) = warehouse {
        command.args(["--warehouse", url]);
    }
    let proc = Proc::spawn(name, &mut command);
    procs::wait_http_ok("exposures up", port, "/readyz");
    (proc, port, data)
}

pub fn ingest(report: &mut Report, venv: &Path) {
    let seconds = env_u64("EXPOSURES_BENCH_SECONDS", 10);
    let broker = Broker::start(&[
        ("bench-python", PARTITIONS),
        ("bench-ingest", PARTITIONS),
        ("bench-ingest-linger5", PARTITIONS),
        ("bench-ingest-batch", PARTITIONS),
    ]);
    println!(
        "\n== ingest: wrk -t1 -c{CONNECTIONS} -d{seconds}s, one seed exposure per request, one user each"
    );
    println!(
        "   broker: librdkafka mock cluster (own process) at {}",
        broker.bootstrap
    );
    print_header();

    let (noop, port) = roles::rust_peer("__noop");
    let ceiling = wrk_peer(
        report,
        "noop_axum",
        "no-op axum handler (HTTP ceiling)",
        port,
        "/exposure",
        1,
    );
    let noop_batch = wrk_peer(
        report,
        "noop_axum_batch100",
        "  batches of 100",
        port,
        "/v1/exposures",
        100,
    );
    drop(noop);

    let (serde, port) = roles::rust_peer("__serde");
    wrk_peer(
        report,
        "axum_serde_json",
        "axum + serde_json parse",
        port,
        "/exposure",
        1,
    );
    wrk_peer(
        report,
        "axum_serde_json_batch100",
        "  batches of 100",
        port,
        "/v1/exposures",
        100,
    );
    drop(serde);

    // The linger `exposures ingest` defaults to (ingest/src/lib.rs).
    let (python, port) = roles::python_peer(venv, &broker.bootstrap, "bench-python", "0.1");
    let python_run = wrk_peer(
        report,
        "fastapi_confluent_kafka",
        "FastAPI + confluent-kafka (uvicorn, 2 workers)",
        port,
        "/exposure",
        1,
    );
    drop(python);

    let (mut ingest, port, _spool) = start_ingest(&broker.bootstrap, "bench-ingest", &[]);
    let ours = wrk_peer(
        report,
        "exposures_ingest",
        "exposures ingest",
        port,
        "/exposure",
        1,
    );
    ingest.assert_running();
    // Open loop at half the peak: the latency a sized deployment sees.
    let half = ours.per_second / 2.0;
    let bodies = Arc::new((0..4096).map(load::event).collect::<Vec<_>>());
    let at_half = load::fixed_rate(
        port,
        "/exposure",
        CONNECTIONS as usize,
        half,
        Duration::from_secs(seconds),
        bodies.clone(),
        |_| {},
    );
    print_row(
        &format!("  open loop at half its peak ({half:.0}/s)"),
        &at_half,
        1,
    );
    report.put("ingest", "exposures_ingest_half_peak", json!(at_half));
    drop(ingest);

    let (ingest, port, _spool) = start_ingest(&broker.bootstrap, "bench-ingest-batch", &[]);
    let batches = wrk_peer(
        report,
        "exposures_ingest_batch100",
        "exposures ingest, batches of 100",
        port,
        "/v1/exposures",
        100,
    );
    drop(ingest);

    // librdkafka's default linger (5 ms) for comparison: the setting's effect in this run.
    let (ingest, port, _spool) = start_ingest(
        &broker.bootstrap,
        "bench-ingest-linger5",
        &["--kafka-property", "linger.ms=5"],
    );
    wrk_peer(
        report,
        "exposures_ingest_linger5",
        "exposures ingest, linger.ms=5",
        port,
        "/exposure",
        1,
    );
    drop(ingest);

    let (mut up, port, _data) = start_up("up-ingest", None);
    let up_run = wrk_peer(
        report,
        "exposures_up",
        "exposures up (embedded broker)",
        port,
        "/exposure",
        1,
    );
    up.assert_running();
    drop(up);

    println!();
    report.ratio(
        "ingest / no-op ceiling (single events)",
        ours.per_second / ceiling.per_second,
        "≥ 0.6",
    );
    report.ratio(
        "ingest / FastAPI + confluent-kafka",
        ours.per_second / python_run.per_second,
        "≥ 10",
    );
    report.ratio("ingest p99 ms at half peak (open loop)", at_half.p99_ms, "< 5");
    report.ratio(
        "ingest batches of 100: thousand events/s",
        batches.per_second * 100.0 / 1e3,
        "≥ 200",
    );
    report.ratio(
        "ingest batches / no-op ceiling batches",
        batches.per_second / noop_batch.per_second,
        "—",
    );
    report.ratio("up p99 ms at 64 connections", up_run.p99_ms, "< 50");
}

/// Resident memory of `pid` once a second, as (second, bytes).
type Samples = Arc<Mutex<Vec<(u64, u64)>>>;

pub fn end_to_end(report: &mut Report) {
    let total = env_u64("EXPOSURES_BENCH_EVENTS", 1_000_000);
    println!(
        "\n== end to end: {total} exposures in batches of 1,000 (8 connections) → exposures up → PostgreSQL"
    );
    let pg = procs::Postgres::start();
    let (mut up, port, _data) = start_up("up-e2e", Some(&pg.url()));
    let pid = up.pid();
    let started = Instant::now();
    let (posting, retried) = load::post_all(port, "/v1/exposures", 8, total, 1000);
    let accepted = started.elapsed().as_secs_f64();
    up.assert_running();
    println!(
        "  accepted in {accepted:.1} s ({:.0} events/s; batch p50 {:.1} ms, p99 {:.1} ms; {retried} retried after 503)",
        total as f64 / accepted,
        posting.p50_ms,
        posting.p99_ms
    );
    let runtime = load::one_thread_runtime();
    let loaded = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(connection);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let count: i64 = client
                .query_one("SELECT count(*) FROM public.exposures", &[])
                .await
                .map(|row| row.get(0))
                .unwrap_or(0);
            if count as u64 >= total {
                return Some(started.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let (rss, peak) = procs::memory(pid);
    let cpu = procs::cpu_seconds(pid);
    let loaded = loaded.expect("every event queryable within 10 minutes");
    println!(
        "  all {total} queryable after {loaded:.1} s; up's peak resident memory {:.0} MiB (now {:.0} MiB), {cpu:.1} CPU s",
        peak as f64 / 1048576.0,
        rss as f64 / 1048576.0
    );
    report.put(
        "e2e",
        "up_postgres",
        json!({"events": total, "accepted_s": accepted, "queryable_s": loaded, "peak_rss_mib": peak as f64 / 1048576.0,
               "cpu_s": cpu, "retried_batches": retried, "batch_latency": posting}),
    );
    report.ratio(
        &format!("e2e seconds until all {total} queryable"),
        loaded,
        "< 30 (1M)",
    );
    report.ratio("e2e peak RSS MiB", peak as f64 / 1048576.0, "< 256");
}

pub fn soak(report: &mut Report) {
    let seconds = env_u64("EXPOSURES_BENCH_SOAK_SECONDS", 60);
    let rate = env_u64("EXPOSURES_BENCH_SOAK_RATE", 2000) as f64;
    println!("\n== soak: exposures up → PostgreSQL at {rate:.0} events/s (16 connections, single events) for {seconds} s");
    let pg = procs::Postgres::start();
    let (mut up, port, _data) = start_up("up-soak", Some(&pg.url()));
    let pid = up.pid();
    let samples: Samples = Arc::default();
    let sampled = samples.clone();
    let bodies = Arc::new((0..100_000).map(load::event).collect::<Vec<_>>());
    let run = load::fixed_rate(
        port,
        "/exposure",
        16,
        rate,
        Duration::from_secs(seconds),
        bodies,
        move |second| {
            let (rss, _) = procs::memory(pid);
            if let Ok(mut samples) = sampled.lock() {
                samples.push((second, rss));
            }
        },
    );
    up.assert_running();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let at = |second: u64| {
        samples
            .iter()
            .find(|(s, _)| *s >= second)
            .map_or(0, |(_, rss)| *rss)
    };
    let max = samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
    let settled = seconds / 3;
    let (first, last) = (at(settled), samples.last().map_or(0, |(_, rss)| *rss));
    println!(
        "  resident MiB: at {settled} s {:.0}, at the end {:.0}, max {:.0}; p50 {:.1} ms, p99 {:.1} ms, {} errors",
        mib(first),
        mib(last),
        mib(max),
        run.p50_ms,
        run.p99_ms,
        run.errors
    );
    let series: Vec<f64> = samples
        .iter()
        .map(|(_, rss)| (mib(*rss) * 10.0).round() / 10.0)
        .collect();
    println!("  every second: {series:?}");
    report.put(
        "soak",
        "up_postgres",
        json!({"rate": rate, "seconds": seconds, "rss_mib_per_second": series, "latency": run}),
    );
    report.ratio(
        &format!("soak RSS growth MiB from {settled} s to the end"),
        mib(last) - mib(first),
        "≈ 0 (flat)",
    );
}
