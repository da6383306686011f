//! The production shape under faults: `ingest`, `sink` and `load` as separate processes
//! against a Kafka-protocol broker (librdkafka's mock cluster, for outages on demand), an
//! S3-protocol server and a PostgreSQL, driven by a load generator at a fixed
//! rate while, on a schedule, each stage is killed with SIGKILL and restarted, the broker is
//! gone for a while, the object store fails, PostgreSQL stops, and the disk under the
//! spool is full during a broker outage.
//!
//! At the end, exactly the events that got a 200 are in the warehouse (none lost, none
//! twice), none that got a 4xx/503 is there, and each user's events are in Kafka in the
//! order they were acknowledged. The figures are printed per fault window.
//!
//! CI-sized by default (about 70 s of load at 100 requests/s); longer runs locally with
//! `EXPOSURES_CHAOS_SECONDS` (the schedule stretches with it) and `EXPOSURES_CHAOS_RATE`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::api::{http, python_body};
use crate::harness::disk::SmallDisk;
use crate::harness::kafka::{by_key, read_exactly, record_count, Kafka};
use crate::harness::postgres::Pg;
use crate::harness::process::{free_port, DevBroker, Stage};
use crate::harness::DEADLINE;

const LAKE: &str = "s3://lake/chaos";

fn args(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

/// What the generator sent, and what it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    /// 4xx or 503: nothing of it may reach the warehouse.
    Refused,
    /// No answer (the process died mid-request, a timeout): it may or may not be durable.
    Unknown,
}

#[derive(Debug, Clone)]
struct Sent {
    event_id: String,
    user: usize,
    seq: usize,
    at: Duration,
    answer: Answer,
}

/// A fault and when it was active, relative to the start of the load.
#[derive(Debug, Clone)]
struct Window {
    fault: &'static str,
    from: Duration,
    to: Duration,
}

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends `rate` requests per second for `duration`, spread over `users` users; each user
/// posts sequentially (waits for its answer, as an SDK callback does), with a
/// client-generated `event_id`.
async fn generate(url: String, rate: f64, duration: Duration, users: usize, started: Instant) -> Vec<Sent> {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let interval = Duration::from_secs_f64(users as f64 / rate);
    let tasks: Vec<_> = (0..users)
        .map(|user| {
            let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for seq in 0.. {
                    ticks.tick().await;
                    let at = started.elapsed();
                    if at >= duration {
                        break;
                    }
                    let event_id = uuid::Uuid::now_v7().to_string();
                    let mut body = python_body(&format!("chaos-user-{user}"));
                    body["event_id"] = json!(event_id);
                    body["attributes"]["seq"] = json!(seq);
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await;
                    let answer = match response {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(_) => Answer::Ok,
                            Err(_) => Answer::Unknown,
                        },
                        Ok(r) if r.status().is_client_error() || r.status() == 503 => Answer::Refused,
                        _ => Answer::Unknown,
                    };
                    sent.lock().expect("lock").push(Sent {
                        event_id,
                        user,
                        seq,
                        at,
                        answer,
                    });
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("generator");
    }
    let sent = sent.lock().expect("lock").clone();
    sent
}

async fn serve_lake(root: &Path, address: SocketAddr) -> loader::lake::embedded::EmbeddedS3 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match loader::lake::embedded::serve(root, "lake", address).await {
            Ok(server) => return server,
            Err(error) => {
                assert!(Instant::now() < deadline, "S3 server did not restart: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await; // the port is being released
            }
        }
    }
}

async fn warehouse_ids(pg: &Pg) -> Option<Vec<String>> {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    let rows = client
        .query("SELECT event_id FROM analytics.exposures", &[])
        .await
        .ok()?;
    Some(rows.iter().map(|row| row.get(0)).collect())
}

/// The broker the stages run against.
enum Broker {
    /// librdkafka's mock cluster: outages on demand.
    Mock(Kafka),
    /// `exposures dev-broker` (the embedded tansu broker) as its own process.
    Dev(Box<DevBroker>),
}

/// The mock cluster, with every fault on the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_lands_once_while_stages_fail() {
    let kafka = Kafka::new(4);
    let files_topic = format!("{}.files", kafka.topic);
    kafka
        .cluster
        .create_topic(&files_topic, 1, 1)
        .expect("files topic");
    chaos(Broker::Mock(kafka), files_topic).await;
}

/// The broker `exposures` ships for development (`dev-broker`), with every stage on its
/// default flags (group membership), the stages killed and restarted, the broker itself
/// killed and restarted while they run, the object store down and PostgreSQL stopped.
/// Before vendor/tansu-storage's patches, the broker's restart wedged the pipeline: tansu
/// panicked when ingest's idempotent producer, having bumped its epoch, produced again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_lands_once_on_the_dev_broker_while_stages_fail() {
    let broker = DevBroker::start("exposures:4,exposures.files:1").await;
    chaos(Broker::Dev(Box::new(broker)), "exposures.files".into()).await;
}

async fn chaos(mut broker: Broker, files_topic: String) {
    let Some(disk) = SmallDisk::mount(8 * 1024 * 1024) else {
        return;
    };
    let seconds = env_or("EXPOSURES_CHAOS_SECONDS", 70.0);
    let rate = env_or("EXPOSURES_CHAOS_RATE", 100.0);
    let at = |fraction: f64| Duration::from_secs_f64(seconds * fraction);
    let data = tempfile::tempdir().expect("tempdir");
    let (brokers, topic) = match &broker {
        Broker::Mock(kafka) => (kafka.brokers(), kafka.topic.clone()),
        Broker::Dev(dev) => (dev.brokers.clone(), "exposures".to_owned()),
    };
    // On the mock cluster, one sink and one loader reading every partition from their
    // commits: a killed one is back at once. On the dev broker, the stages' defaults
    // (group membership), as a user running them separately has them: a killed member
    // must be expired and its partitions handed to its successor.
    let assignment = match &broker {
        Broker::Mock(_) => "all",
        Broker::Dev(_) => "group",
    };

    let lake_root: PathBuf = data.path().join("lake-root");
    let lake_address: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut lake = Some(serve_lake(&lake_root, lake_address).await);
    let s3_endpoint = format!("http://{lake_address}");

    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let http_port = free_port();
    let url = format!("http://127.0.0.1:{http_port}/exposure");
    let spool = disk.path().join("spool");
    let mut ingest = Stage::new("ingest", {
        let mut a = args(&[
            "ingest",
            "--listen",
            &format!("127.0.0.1:{http_port}"),
            "--brokers",
            &brokers,
            "--topic",
            &topic,
        ]);
        a.extend(["--spool-dir".into(), spool.clone().into_os_string()]);
        a.extend(args(&["--delivery-timeout", "2s"]));
        a
    });
    let mut sink = Stage::new(
        "sink",
        args(&[
            "sink",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--files-topic",
            &files_topic,
            "--lake",
            LAKE,
            "--s3-endpoint",
            &s3_endpoint,
            "--flush-interval",
            "2s",
            "--session-timeout",
            "10s",
            "--assignment",
            assignment,
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
    );
    let mut load = Stage::new(
        "load",
        args(&[
            "load",
            "--brokers",
            &brokers,
            "--files-topic",
            &files_topic,
            "--lake",
            LAKE,
            "--s3-endpoint",
            &s3_endpoint,
            "--warehouse",
            &pg.url(),
            "--schema",
            "analytics",
            "--batch-interval",
            "1s",
            "--assignment",
            assignment,
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
    );
    ingest.start();
    sink.start();
    load.start();
    let client = http();
    let deadline = Instant::now() + DEADLINE;
    while !client
        .get(format!("http://127.0.0.1:{http_port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "ingest did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }

    let started = Instant::now();
    let users = 20;
    let generator = tokio::spawn(generate(url, rate, at(1.0), users, started));
    let mut windows: Vec<Window> = Vec::new();
    let until = |moment: Duration| async move {
        let now = started.elapsed();
        if moment > now {
            tokio::time::sleep(moment - now).await; // the fault schedule, not synchronisation
        }
    };
    let mut restart = |stage: &'static str| {
        let now = started.elapsed();
        windows.push(Window {
            fault: stage,
            from: now,
            to: now,
        });
    };

    until(at(0.06)).await;
    restart("ingest killed -9, restarted");
    ingest.kill().await;
    ingest.start();

    until(at(0.14)).await;
    restart("sink killed -9, restarted");
    sink.kill().await;
    sink.start();

    until(at(0.22)).await;
    restart("load killed -9, restarted");
    load.kill().await;
    load.start();

    if let Broker::Mock(kafka) = &broker {
        until(at(0.30)).await;
        let from = started.elapsed();
        kafka.down();
        until(at(0.37)).await;
        let filler = disk.fill();
        let full_from = started.elapsed();
        until(at(0.44)).await;
        kafka.up();
        windows.push(Window {
            fault: "broker gone 10 s",
            from,
            to: started.elapsed(),
        });
        until(at(0.48)).await;
        std::fs::remove_file(&filler).expect("free the disk");
        windows.push(Window {
            fault: "spool disk full (broker gone)",
            from: full_from,
            to: started.elapsed(),
        });
    }

    if let Broker::Dev(dev) = &mut broker {
        let stage = &mut dev.stage;
        // The broker's own restart, under load, with none of the stages restarted: ingest
        // spools meanwhile, and every client of it resumes on its own.
        until(at(0.30)).await;
        let from = started.elapsed();
        stage.kill().await;
        until(at(0.44)).await;
        stage.start();
        windows.push(Window {
            fault: "broker killed -9, back 10 s later",
            from,
            to: started.elapsed(),
        });
    }

    until(at(0.56)).await;
    let from = started.elapsed();
    if let Some(server) = lake.take() {
        server.stop();
    }
    until(at(0.70)).await;
    lake = Some(serve_lake(&lake_root, lake_address).await);
    windows.push(Window {
        fault: "object store down 10 s",
        from,
        to: started.elapsed(),
    });

    until(at(0.76)).await;
    let from = started.elapsed();
    tokio::task::block_in_place(|| pg.stop_server());
    until(at(0.90)).await;
    tokio::task::block_in_place(|| pg.start_server());
    windows.push(Window {
        fault: "PostgreSQL stopped 10 s",
        from,
        to: started.elapsed(),
    });

    let sent = generator.await.expect("generator");
    let acknowledged: HashSet<&str> = sent
        .iter()
        .filter(|s| s.answer == Answer::Ok)
        .map(|s| s.event_id.as_str())
        .collect();
    let refused: HashSet<&str> = sent
        .iter()
        .filter(|s| s.answer == Answer::Refused)
        .map(|s| s.event_id.as_str())
        .collect();

    // Wait until every acknowledged event is in the warehouse (or the deadline).
    let deadline = Instant::now() + Duration::from_secs(180);
    let rows = loop {
        let rows = warehouse_ids(&pg).await.unwrap_or_default();
        let have: HashSet<&str> = rows.iter().map(String::as_str).collect();
        if acknowledged.iter().all(|id| have.contains(id)) || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // polling a condition
    };
    let in_warehouse: HashSet<&str> = rows.iter().map(String::as_str).collect();
    let duplicated = rows.len() - in_warehouse.len();
    let lost: HashSet<&str> = acknowledged.difference(&in_warehouse).copied().collect();
    let refused_present: HashSet<&str> = refused.intersection(&in_warehouse).copied().collect();

    // Per-user order in Kafka: the first occurrence of each acknowledged event, by offset.
    let records = read_exactly(&brokers, &topic, record_count(&brokers, &topic).max(0) as usize).await;
    let seq_of: HashMap<&str, (usize, usize)> = sent
        .iter()
        .filter(|s| s.answer == Answer::Ok)
        .map(|s| (s.event_id.as_str(), (s.user, s.seq)))
        .collect();
    let mut order_violations = 0;
    for (_, events) in by_key(&records) {
        let mut seen = HashSet::new();
        let mut last: Option<usize> = None;
        for record in events {
            let id = record.value["event_id"].as_str().unwrap_or_default().to_owned();
            let Some(&(_, seq)) = seq_of.get(id.as_str()) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
            if last.is_some_and(|last| seq < last) {
                order_violations += 1;
            }
            last = Some(seq);
        }
    }

    let broker_name = match &broker {
        Broker::Mock(_) => "librdkafka mock cluster",
        Broker::Dev(_) => "exposures dev-broker",
    };
    println!("\nchaos run ({broker_name}): {seconds:.0} s at {rate:.0} requests/s, {users} users");
    println!(
        "{:<32} {:>8} {:>6} {:>8} {:>8} {:>6}",
        "window", "requests", "200", "refused", "unknown", "lost"
    );
    let report = |name: &str, from: Duration, to: Duration| {
        let in_window: Vec<&Sent> = sent.iter().filter(|s| s.at >= from && s.at <= to).collect();
        let count = |answer| in_window.iter().filter(|s| s.answer == answer).count();
        let lost_here = in_window
            .iter()
            .filter(|s| lost.contains(s.event_id.as_str()))
            .count();
        println!(
            "{name:<32} {:>8} {:>6} {:>8} {:>8} {:>6}",
            in_window.len(),
            count(Answer::Ok),
            count(Answer::Refused),
            count(Answer::Unknown),
            lost_here
        );
    };
    for window in &windows {
        // A kill is an instant: show the requests around it.
        let (from, to) = if window.from == window.to {
            (
                window.from.saturating_sub(Duration::from_secs(1)),
                window.to + Duration::from_secs(3),
            )
        } else {
            (window.from, window.to)
        };
        report(window.fault, from, to);
    }
    report("whole run", Duration::ZERO, at(1.0));
    println!(
        "warehouse rows {}, acknowledged {}, lost {}, duplicated {}, refused but present {}, order violations {}\n",
        rows.len(),
        acknowledged.len(),
        lost.len(),
        duplicated,
        refused_present.len(),
        order_violations
    );

    assert!(
        acknowledged.len() as f64 > rate * seconds * 0.5,
        "too few 200s to prove anything"
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events never reached the warehouse",
        lost.len()
    );
    assert_eq!(duplicated, 0, "events in the warehouse twice");
    assert!(refused_present.is_empty(), "refused events reached the warehouse");
    assert_eq!(order_violations, 0, "a user's events reached Kafka out of order");
    drop(lake);
    for stage in [&mut ingest, &mut sink, &mut load] {
        stage.kill().await;
    }
    if let Broker::Dev(dev) = &mut broker {
        dev.stage.kill().await;
    }
}

/// A sink process killed with SIGKILL and started again takes its partitions back and
/// goes on from the committed offsets: the lake ends up with every record once.
#[tokio::test]
async fn a_killed_sink_process_resumes_from_its_commits() {
    use crate::harness::lake::{exposures as events, produce, wait_committed, Lakeside};
    let side = Lakeside::new().await;
    let s3_endpoint = format!("http://{}", side.s3_address);
    let mut sink = Stage::new(
        "sink",
        args(&[
            "sink",
            "--brokers",
            &side.kafka.brokers(),
            "--topic",
            &side.kafka.topic,
            "--files-topic",
            &side.files_topic,
            "--group",
            "sink",
            "--lake",
            Lakeside::LAKE,
            "--s3-endpoint",
            &s3_endpoint,
            "--flush-interval",
            "1s",
            "--session-timeout",
            "6s",
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
    );
    let first = events(300, "resume-a");
    produce(&side.kafka.brokers(), &side.kafka.topic, &first).await;
    sink.start();
    wait_committed(&side, "sink", 300).await;
    sink.kill().await;
    let second = events(300, "resume-b");
    produce(&side.kafka.brokers(), &side.kafka.topic, &second).await;
    sink.start();
    wait_committed(&side, "sink", 600).await;
    sink.kill().await;
}
