//! `exposures up` and `exposures dev-broker` as real processes: SIGKILL under load and a
//! restart on the same data dir lose no acknowledged event.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::api::{http, post_json, python_body};
use crate::harness::kafka::{read_exactly, record_count};
use crate::harness::lake::lake_event_ids;
use crate::harness::postgres::Pg;
use crate::harness::process::{exposures, free_port, start_up};
use crate::harness::DEADLINE;

/// Reads the topic until every id in `expected` is there; returns occurrences per id.
async fn wait_for_events(brokers: &str, topic: &str, expected: &[String]) -> HashMap<String, usize> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let total = record_count(brokers, topic);
        if total >= 0 {
            let records = read_exactly(brokers, topic, total as usize).await;
            let mut seen: HashMap<String, usize> = HashMap::new();
            for record in &records {
                *seen
                    .entry(record.value["event_id"].as_str().expect("id").to_owned())
                    .or_default() += 1;
            }
            if expected.iter().all(|id| seen.contains_key(id)) {
                return seen;
            }
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged events missing from the broker"
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // polling a condition
    }
}

#[tokio::test]
async fn up_killed_with_sigkill_under_load_keeps_every_acknowledged_event() {
    let data = tempfile::tempdir().expect("tempdir");
    let (http_port, broker_port) = (free_port(), free_port());
    let mut up = start_up(data.path(), http_port, broker_port, &[]).await;
    let url = format!("http://127.0.0.1:{http_port}/exposure");

    let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel::<()>();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (url, progress_tx) = (url.clone(), progress_tx.clone());
            tokio::spawn(async move {
                let client = http();
                let mut acknowledged = Vec::new();
                for seq in 0.. {
                    let mut body = python_body(&format!("kill-{worker}"));
                    body["attributes"]["seq"] = json!(seq);
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 200 {
                        break;
                    }
                    let Ok(answer) = response.json::<Value>().await else {
                        break;
                    };
                    acknowledged.push(answer["event_id"].as_str().expect("id").to_owned());
                    if progress_tx.send(()).is_err() {
                        break;
                    }
                }
                acknowledged
            })
        })
        .collect();
    drop(progress_tx);
    for _ in 0..150 {
        progress.recv().await.expect("load is running");
    }
    up.start_kill().expect("SIGKILL");
    up.wait().await.expect("reaped");
    drop(progress);
    let mut acknowledged = Vec::new();
    for worker in workers {
        acknowledged.extend(worker.await.expect("worker"));
    }
    assert!(acknowledged.len() >= 150);

    let _up = start_up(data.path(), http_port, broker_port, &[]).await;
    let (status, answer) = post_json(&http(), &url, &python_body("after-restart")).await;
    assert_eq!(status, 200, "{answer}");
    acknowledged.push(answer["event_id"].as_str().expect("id").to_owned());

    let seen = wait_for_events(&format!("127.0.0.1:{broker_port}"), "exposures", &acknowledged).await;
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated events: {duplicated:?}");

    // The sink, killed with the rest, resumes: every acknowledged event reaches the
    // lake (plain Parquet files under DATA_DIR/lake), and nothing is in it twice.
    let lake_dir = data.path().join("lake");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let in_lake = lake_event_ids(&lake_dir);
        let unique: std::collections::HashSet<&String> = in_lake.iter().collect();
        assert_eq!(unique.len(), in_lake.len(), "an event is in the lake twice");
        if seen.keys().all(|id| unique.contains(id)) {
            assert_eq!(
                in_lake.len(),
                seen.len(),
                "the lake holds exactly what Kafka holds"
            );
            break;
        }
        assert!(Instant::now() < deadline, "events in Kafka missing from the lake");
        tokio::time::sleep(Duration::from_millis(200)).await; // polling a condition
    }
}

#[tokio::test]
async fn dev_broker_prints_its_address_and_creates_topics() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut broker = exposures()
        .args([
            "dev-broker",
            "--listen",
            "127.0.0.1:0",
            "--topics",
            "t-one:2,t-two:1",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dev-broker");
    let stdout = broker.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("dev-broker printed its address in time")
        .expect("read")
        .expect("a line");
    let brokers = line
        .strip_prefix("bootstrap.servers=")
        .expect("bootstrap line")
        .to_owned();
    assert_eq!(record_count(&brokers, "t-one"), 0);
    assert_eq!(record_count(&brokers, "t-two"), 0);
    assert!(
        data.path().join("broker").is_dir(),
        "storage lives in the data dir"
    );
    let _ = broker.start_kill();
}

#[tokio::test]
async fn help_explains_every_subcommand() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["ingest", "--help"],
        vec!["dev-broker", "--help"],
    ] {
        let output = exposures().args(&args).output().await.expect("run");
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Usage: exposures"), "{args:?}: {text}");
        if args.len() == 2 && args[0] != "dev-broker" {
            for flag in [
                "--listen",
                "--delivery-timeout",
                "--spool-dir",
                "--cors-origins",
                "[env: EXPOSURES_LISTEN=",
            ] {
                assert!(text.contains(flag), "{args:?} lacks {flag}");
            }
        }
    }
    let bad = exposures()
        .args(["ingest", "--forwarded-for", "mask"])
        .output()
        .await
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected one of keep, truncate, hash, drop"));
}

/// The seed's analysis, end to end: SDK-shaped exposures go in over HTTP, `up` carries
/// them through Kafka and Parquet into PostgreSQL, and a click-through rate per
/// variation (clicks after the first exposure ÷ exposed users), joined with a fact table
/// shaped like the seed's `traveller_events_v2`, matches numbers computed by hand.
#[tokio::test]
async fn up_with_a_warehouse_answers_the_seeds_ctr_question() {
    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let sql = pg.client().await;
    sql.batch_execute(
        "CREATE TABLE public.traveller_events_v2 (event_time TIMESTAMPTZ, ds_user_id TEXT, ds_session_id TEXT, \
         event_type TEXT, page_name TEXT, geo_country_code TEXT)",
    )
    .await
    .expect("fact table");
    let data = tempfile::tempdir().expect("tempdir");
    let (http_port, broker_port) = (free_port(), free_port());
    // With a password (the test cluster trusts local connections, so it is never asked
    // for): it must not be written to disk.
    let url = pg.url().replacen("postgres@", "postgres:not-on-disk@", 1);
    let _up = start_up(
        data.path(),
        http_port,
        broker_port,
        &["--warehouse", &url, "--schema", "analytics"],
    )
    .await;
    let endpoints = data.path().join(loader::status::UpEndpoints::FILE);
    let recorded = std::fs::read_to_string(&endpoints).expect("endpoints.json");
    assert!(
        !recorded.contains("not-on-disk"),
        "the password is on disk: {recorded}"
    );
    assert!(recorded.contains(&pg.url()), "{recorded}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&endpoints)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "endpoints.json is readable by others");
    }

    // Ten users exposed a minute apart from t0; even users see variation 0, odd ones 1.
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(30);
    let at = |minutes: i64| (t0 + chrono::Duration::minutes(minutes)).to_rfc3339();
    let client = http();
    let exposure_url = format!("http://127.0.0.1:{http_port}/exposure");
    let mut bodies: Vec<Value> = (0..10)
        .map(|u| {
            let mut body = python_body(&format!("u{u}"));
            body["variation_id"] = json!((u % 2).to_string());
            body["timestamp"] = json!(at(u));
            body
        })
        .collect();
    // A repeat exposure is a real row, but CTR counts from the first one.
    let mut repeat = python_body("u0");
    repeat["variation_id"] = json!("0");
    repeat["timestamp"] = json!(at(20));
    bodies.push(repeat);
    for body in &bodies {
        let (status, answer) = post_json(&client, &exposure_url, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    // Clicks: u0 twice after exposure, u2 once before it (not counted), u1 and u3 once
    // after, u5 three times after.
    let clicks = [
        ("u0", 5),
        ("u0", 6),
        ("u2", 1),
        ("u1", 2),
        ("u3", 4),
        ("u5", 6),
        ("u5", 7),
        ("u5", 8),
    ];
    for (user, minute) in clicks {
        sql.execute(
            "INSERT INTO public.traveller_events_v2 VALUES ($1::text::timestamptz, $2, 's', 'click', 'product_listing', 'US')",
            &[&at(minute), &user],
        )
        .await
        .expect("click");
    }

    let deadline = Instant::now() + DEADLINE;
    loop {
        let loaded = sql
            .query_one("SELECT count(*) FROM analytics.exposures", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        if loaded == bodies.len() as i64 {
            break;
        }
        assert!(
            loaded < bodies.len() as i64,
            "{loaded} rows for {} exposures",
            bodies.len()
        );
        assert!(
            Instant::now() < deadline,
            "{loaded} of {} exposures reached PostgreSQL",
            bodies.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // polling a condition
    }
    let rows = sql
        .query(
            "WITH first_exposure AS ( \
                SELECT user_id, variation_id, min(\"timestamp\") AS exposed_at \
                FROM analytics.exposures_growthbook WHERE experiment_id = 'new_search_ui' \
                GROUP BY user_id, variation_id) \
             SELECT f.variation_id, count(DISTINCT f.user_id) AS users, count(c.ds_user_id) AS clicks \
             FROM first_exposure f LEFT JOIN public.traveller_events_v2 c \
               ON c.ds_user_id = f.user_id AND c.event_type = 'click' AND c.event_time >= f.exposed_at \
             GROUP BY f.variation_id ORDER BY f.variation_id",
            &[],
        )
        .await
        .expect("CTR query");
    let ctr: Vec<(String, i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        ctr,
        vec![("0".to_owned(), 5, 2), ("1".to_owned(), 5, 5)],
        "CTR 0.4 vs 1.0"
    );
    let exposure_events = sql
        .query_one(
            "SELECT count(*) FROM analytics.exposure_events WHERE event_type = 'exposure'",
            &[],
        )
        .await
        .expect("exposure_events")
        .get::<_, i64>(0);
    assert_eq!(exposure_events, bodies.len() as i64);

    // `status` next to a running `up` needs only its data directory: the broker, topics,
    // groups and warehouse come from what `up` recorded there.
    let output = exposures()
        .args(["status", "--json", "--data-dir"])
        .arg(data.path())
        .env_remove("EXPOSURES_BROKERS")
        .env_remove("EXPOSURES_WAREHOUSE")
        .output()
        .await
        .expect("status");
    let report: Value = serde_json::from_slice(&output.stdout).expect("status --json");
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["sink"]["topic"], "exposures", "{report}");
    assert_eq!(
        report["ingest"]["accepted_total"],
        bodies.len() as f64,
        "{report}"
    );
    assert_eq!(report["ingest"]["unavailable_share"], 0.0, "{report}");
    assert_eq!(
        loader::status::INGEST_EVENTS_ACCEPTED,
        ingest::metrics::EVENTS_ACCEPTED
    );
    assert_eq!(
        loader::status::INGEST_EVENTS_REJECTED,
        ingest::metrics::EVENTS_REJECTED
    );
    assert_eq!(report["warehouse"]["rows"], bodies.len() as i64, "{report}");
    assert_eq!(
        report["warehouse"]["experiments"][0]["experiment_id"], "new_search_ui",
        "{report}"
    );
    assert_eq!(report["warehouse"]["experiments"][0]["srm"], false, "{report}");

    // So does `reconcile`: the lake (on up's S3 server, with its credentials) and the
    // warehouse come from there too, and the AWS SDK probes no instance metadata.
    let output = exposures()
        .args(["reconcile", "--json", "--grace", "0s", "--data-dir"])
        .arg(data.path())
        .env_remove("EXPOSURES_BROKERS")
        .env_remove("EXPOSURES_WAREHOUSE")
        .env_remove("EXPOSURES_LAKE")
        .output()
        .await
        .expect("reconcile");
    let report: Value = serde_json::from_slice(&output.stdout).expect("reconcile --json");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{report}\n{stderr}");
    assert!(report["objects"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert_eq!(report["lake"], "s3://lake", "{report}");
    assert!(stderr.lines().count() < 20, "{stderr}");
}

#[tokio::test]
async fn up_with_a_bad_setting_exits_at_once_without_a_banner() {
    // Each is refused before anything starts: no banner, no data directory, exit 1.
    /// Environment, flags, and what the refusal says.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: [Case; 3] = [
        (&[("EXPOSURES_WRITE_KEYS", "k1,")], &[], "empty key"),
        (&[], &["--forwarded-for", "hash"], "salt"),
        (
            &[],
            &["--warehouse", "postgres//typo"],
            "unsupported warehouse URL",
        ),
    ];
    for (env, args, reason) in cases {
        let data = tempfile::tempdir().expect("tempdir");
        let data_dir = data.path().join("never-created");
        let output = exposures()
            .args(["up", "--listen", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0"])
            .args(["--s3-listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_BACKTRACE", "0")
            .arg("--data-dir")
            .arg(&data_dir)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(20), output)
            .await
            .unwrap_or_else(|_| panic!("up {args:?} {env:?} did not exit"))
            .expect("run up");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert_eq!(output.status.code(), Some(1), "{args:?} {env:?}: {stderr}");
        assert!(
            !stdout.contains("exposures up:"),
            "{args:?} {env:?} printed its banner: {stdout}"
        );
        assert!(
            stderr.contains("cannot start up") && stderr.contains(reason),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(!data_dir.exists(), "{args:?} {env:?} created its data directory");
    }
}

#[tokio::test]
async fn a_second_up_on_the_same_data_dir_is_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let (http_port, broker_port) = (free_port(), free_port());
    let mut first = start_up(data.path(), http_port, broker_port, &[]).await;
    let pid = first.id().expect("running");
    let second = exposures()
        .args(["up", "--listen", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0"])
        .args(["--s3-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_BACKTRACE", "0")
        .output();
    let second = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second up exits at once")
        .expect("run up");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another exposures process") && stderr.contains(&format!("pid {pid}")),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&second.stdout).contains("exposures up:"));
    // The first one is untouched: still serving, its endpoints still recorded.
    let (status, answer) = post_json(
        &http(),
        &format!("http://127.0.0.1:{http_port}/exposure"),
        &python_body("after-a-second-up"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(data.path().join(loader::status::UpEndpoints::FILE).exists());
    first.start_kill().expect("kill");
}
