//! The command line as users and operators meet it: the shared Kafka flags reach every
//! command's librdkafka clients, protected settings are refused with a reason,
//! `status` needs only the flags of the sections it shows, and its data-quality checks
//! (sample-ratio mismatch, multiple exposures) hold on both warehouses, as text, as
//! `--json` and as the exit code.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::harness::kafka::Kafka;
use crate::harness::postgres::Pg;
use crate::harness::process::exposures;
use crate::harness::redshift_emulator::DataApi;

/// Runs `exposures ARGS` with no `EXPOSURES_*` variables from the environment, bounded
/// by the harness deadline (the commands under test either exit or are killed).
async fn run(args: &[&str]) -> Output {
    let mut command = exposures();
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("EXPOSURES_")) {
        command.env_remove(key);
    }
    // No `up` of this machine: `status` takes no address from one.
    command.env("EXPOSURES_DATA_DIR", "/nonexistent/exposures-test-data");
    // Credentials for the AWS SDK clients (the Redshift Data API emulator takes any).
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let output = tokio::time::timeout(crate::harness::DEADLINE, command.args(args).output())
        .await
        .expect("the command ends before the deadline")
        .expect("the command runs");
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `exposures status` against `kafka` (its one topic standing in for both), with `more`.
async fn status(kafka: &Kafka, more: &[&str]) -> Output {
    let brokers = kafka.brokers();
    let mut args = vec![
        "status",
        "--brokers",
        &brokers,
        "--topic",
        &kafka.topic,
        "--files-topic",
        &kafka.topic,
    ];
    args.extend(more);
    run(&args).await
}

#[tokio::test]
async fn status_with_brokers_alone_shows_lag_and_exits_0() {
    let kafka = Kafka::new(3);
    let output = status(&kafka, &[]).await;
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.contains(&format!(
            "sink: 0 events waiting (topic {}, group exposures-sink)",
            kafka.topic
        )),
        "{shown}"
    );
    assert!(shown.contains("  partition   2  end            0"), "{shown}");
    assert!(shown.contains("load: 0 files waiting"), "{shown}");
    assert!(shown.contains("warehouse: not shown (add --warehouse"), "{shown}");
}

#[tokio::test]
async fn status_passes_kafka_properties_to_its_clients() {
    let kafka = Kafka::new(1);
    // TLS towards a plaintext broker: the handshake fails, so the lag is unknown. The
    // same command without the property reads it (the test above).
    let output = status(
        &kafka,
        &["--timeout", "3s", "--kafka-property", "security.protocol=SSL"],
    )
    .await;
    let shown = text(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "unreadable sections exit 2: {shown}"
    );
    assert!(shown.contains("sink: unknown — "), "{shown}");
    assert!(shown.contains("load: unknown — "), "{shown}");
}

/// Each command builds its Kafka clients from the shared flags: a value librdkafka
/// refuses is reported by every one of them, naming the property.
#[tokio::test]
async fn every_command_hands_kafka_properties_to_librdkafka() {
    let kafka = Kafka::new(1);
    let brokers = kafka.brokers();
    let lake = tempfile::tempdir().expect("tempdir");
    let lake_url = format!("file://{}", lake.path().display());
    let bad = ["--kafka-property", "security.protocol=carrier-pigeon"];
    let commands: [(&str, Vec<&str>); 4] = [
        ("ingest", vec!["--listen", "127.0.0.1:0", "--no-spool"]),
        (
            "sink",
            vec!["--lake", &lake_url, "--metrics-listen", "127.0.0.1:0"],
        ),
        (
            "load",
            vec![
                "--lake",
                &lake_url,
                "--warehouse",
                "postgres://nobody@127.0.0.1:1/none",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
        ),
        ("status", vec!["--timeout", "2s"]),
    ];
    for (command, flags) in commands {
        let mut args = vec![command, "--brokers", &brokers];
        args.extend(flags);
        args.extend(bad);
        let output = run(&args).await;
        let shown = text(&output);
        assert!(
            shown.contains("security.protocol") && shown.contains("carrier-pigeon"),
            "{command}: {shown}"
        );
        if command != "status" {
            assert!(!output.status.success(), "{command}: {shown}");
        }
    }
}

#[tokio::test]
async fn guarantees_cannot_be_overridden_and_the_refusal_says_why() {
    let kafka = Kafka::new(1);
    let brokers = kafka.brokers();
    let lake = tempfile::tempdir().expect("tempdir");
    let lake_url = format!("file://{}", lake.path().display());
    for (command, flags, property) in [
        ("ingest", vec!["--listen", "127.0.0.1:0", "--no-spool"], "acks=1"),
        (
            "sink",
            vec!["--lake", &lake_url, "--metrics-listen", "127.0.0.1:0"],
            "enable.auto.commit=true",
        ),
        (
            "sink",
            vec!["--lake", &lake_url, "--metrics-listen", "127.0.0.1:0"],
            "auto.offset.reset=latest",
        ),
    ] {
        let mut args = vec![command, "--brokers", &brokers];
        args.extend(flags);
        args.extend(["--kafka-property", property]);
        let output = tokio::time::timeout(Duration::from_secs(30), run(&args))
            .await
            .expect("refused at start-up");
        let shown = text(&output);
        let key = property.split('=').next().unwrap_or_default();
        assert!(!output.status.success(), "{command} {property}: {shown}");
        assert!(
            shown.contains(&format!("--kafka-property {key} cannot be set")),
            "{command} {property}: {shown}"
        );
    }
}

/// Exposures crafted in SQL: `skewed` (a 50/50 experiment fed 6,000/4,000 users), `fair`
/// (5,030/4,970) and `multi` (197 users, 3 of them in both variations: 1.52 %), all in
/// the last day; `old` (a 9/1 split) eight days ago, outside the default window.
async fn crafted_exposures(pg: &Pg) {
    let client = pg.client().await;
    client
        .batch_execute(&schemas::ddl::script(
            schemas::ddl::Dialect::Postgres,
            "analytics",
        ))
        .await
        .expect("objects");
    let insert = |experiment: &str, variation: &str, users: std::ops::Range<i64>, hours_ago: i64| {
        format!(
            "INSERT INTO analytics.exposures (event_id, ds_user_id, experiment_id, variation_id, exposed_at, \
             received_at, kafka_partition, kafka_offset) SELECT '{experiment}-{variation}-' || u, '{experiment}-user-' || u, \
             '{experiment}', '{variation}', now() - interval '{hours_ago} hours', now(), 0, u \
             FROM generate_series({}, {}) AS u;",
            users.start,
            users.end - 1
        )
    };
    let sql = [
        insert("skewed", "0", 0..6_000, 2),
        insert("skewed", "1", 6_000..10_000, 2),
        insert("fair", "0", 0..5_030, 2),
        insert("fair", "1", 5_030..10_000, 2),
        insert("multi", "0", 0..100, 2),
        insert("multi", "1", 97..197, 3),
        insert("old", "0", 0..900, 8 * 24),
        insert("old", "1", 900..1_000, 8 * 24),
    ]
    .concat();
    client.batch_execute(&sql).await.expect("crafted rows");
}

/// `status --json` against `warehouse` (with `more` flags): the exit code and the
/// experiments by id.
async fn data_quality(kafka: &Kafka, warehouse: &[&str], more: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["--warehouse"];
    args.extend(warehouse);
    args.extend(["--schema", "analytics", "--json"]);
    args.extend(more);
    let output = status(kafka, &args).await;
    let report: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)));
    let experiments: serde_json::Map<String, Value> = report["warehouse"]["experiments"]
        .as_array()
        .unwrap_or_else(|| panic!("no experiments: {report}"))
        .iter()
        .map(|e| (e["experiment_id"].as_str().expect("id").to_owned(), e.clone()))
        .collect();
    assert_eq!(
        report["exit_code"],
        output.status.code().map_or(Value::Null, Value::from)
    );
    (output.status.code(), Value::Object(experiments))
}

fn assert_crafted_verdicts(experiments: &Value) {
    assert_eq!(experiments["skewed"]["srm"], true, "{experiments}");
    assert!(experiments["skewed"]["p_value"].as_f64().expect("p") < 1e-50);
    assert_eq!(experiments["skewed"]["variations"][0]["users"], 6_000);
    assert_eq!(experiments["fair"]["srm"], false, "{experiments}");
    assert_eq!(experiments["fair"]["multiple_exposures"], false);
    assert_eq!(experiments["multi"]["users"], 197);
    assert_eq!(experiments["multi"]["users_in_several_variations"], 3);
    assert_eq!(experiments["multi"]["multiple_exposure_share"], 3.0 / 197.0);
    assert_eq!(experiments["multi"]["multiple_exposures"], true);
    assert!(
        experiments.get("old").is_none(),
        "outside the 7-day window: {experiments}"
    );
}

#[tokio::test]
async fn status_flags_sample_ratio_mismatch_and_multiple_exposures_on_postgres() {
    let kafka = Kafka::new(1);
    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    crafted_exposures(&pg).await;
    let url = pg.url();
    let (code, experiments) = data_quality(&kafka, &[&url], &[]).await;
    assert_eq!(code, Some(1), "experiments need attention");
    assert_crafted_verdicts(&experiments);

    // Declared 60/40, the skewed split is what was expected; a wider window sees `old`.
    let (_, experiments) =
        data_quality(&kafka, &[&url], &["--weights", "skewed=60,40", "--window", "9d"]).await;
    assert_eq!(experiments["skewed"]["srm"], false, "{experiments}");
    assert_eq!(experiments["old"]["srm"], true, "{experiments}");

    // Text, for a human.
    let output = status(&kafka, &["--warehouse", &url, "--schema", "analytics"]).await;
    let shown = text(&output);
    assert!(
        shown.contains("experiment skewed: SAMPLE RATIO MISMATCH"),
        "{shown}"
    );
    assert!(shown.contains("experiment multi: MULTIPLE EXPOSURES"), "{shown}");
    assert!(shown.contains("experiment fair: ok"), "{shown}");

    // Only fair experiments: exit 0.
    pg.client()
        .await
        .batch_execute("DELETE FROM analytics.exposures WHERE experiment_id IN ('skewed', 'multi')")
        .await
        .expect("delete");
    let (code, _) = data_quality(&kafka, &[&url], &[]).await;
    assert_eq!(code, Some(0));
}

/// The same queries through the Redshift Data API (the emulator runs them on PostgreSQL,
/// with Redshift's timestamp literals).
#[tokio::test]
async fn status_flags_sample_ratio_mismatch_and_multiple_exposures_on_redshift() {
    let kafka = Kafka::new(1);
    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    crafted_exposures(&pg).await;
    let lake = tempfile::tempdir().expect("tempdir");
    let s3 = loader::lake::embedded::serve(lake.path(), "lake", "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("S3");
    let options = loader::lake::AwsOptions {
        endpoint: Some(s3.endpoint()),
        region: None,
        static_credentials: Some(("test".into(), "test".into())),
    };
    let data_api = DataApi::start(pg.url(), options).await;
    let url = data_api.warehouse_url();
    let (code, experiments) =
        data_quality(&kafka, &[&url, "--redshift-endpoint", &data_api.endpoint], &[]).await;
    assert_eq!(code, Some(1));
    assert_crafted_verdicts(&experiments);
}

#[tokio::test]
async fn status_against_a_down_broker_says_so_with_a_short_stderr() {
    // A port nothing listens on, and a data directory with no `up` in it.
    let down = format!("127.0.0.1:{}", crate::harness::process::free_port());
    let empty = tempfile::tempdir().expect("tempdir");
    let output = exposures()
        .args(["status", "--timeout", "3s", "--data-dir"])
        .arg(empty.path())
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("status");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("sink: unknown") && stdout.contains("load: unknown"),
        "{stdout}"
    );
    assert!(
        stderr.contains("no running `exposures up`"),
        "it says it found no up: {stderr}"
    );
    assert!(
        stderr.lines().count() < 20,
        "{} lines on stderr:\n{stderr}",
        stderr.lines().count()
    );

    let output = exposures()
        .args(["status", "--timeout", "3s", "--brokers", &down])
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("status");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.lines().count() < 20,
        "{} lines on stderr:\n{stderr}",
        stderr.lines().count()
    );
}

/// A long-running stage against a broker that is down says so in a few lines, not the
/// ~460 in 10 s librdkafka's reconnect reports and the consumer's errors made before
/// (the limiter of src/logging.rs, `stage::RepeatedErrors`).
#[tokio::test]
async fn a_sink_against_a_down_broker_logs_a_few_lines_not_hundreds() {
    use tokio::io::AsyncBufReadExt;
    let down = format!("127.0.0.1:{}", crate::harness::process::free_port());
    let lake = tempfile::tempdir().expect("tempdir");
    let lake_url = format!("file://{}", lake.path().display());
    let mut sink = exposures()
        .args([
            "sink",
            "--brokers",
            &down,
            "--lake",
            &lake_url,
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sink");
    let mut lines = tokio::io::BufReader::new(sink.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    // Until the first consumer error, then an observation window of 8 s in which the
    // broker stays down: the count of lines in it is what is asserted.
    let reading = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let first_error = line.contains("Kafka consumer error")
                && !seen.iter().any(|l: &String| l.contains("Kafka consumer error"));
            seen.push(line);
            if first_error {
                let window = tokio::time::sleep(Duration::from_secs(8));
                tokio::pin!(window);
                loop {
                    tokio::select! {
                        _ = &mut window => return,
                        line = lines.next_line() => match line {
                            Ok(Some(line)) => seen.push(line),
                            _ => return,
                        },
                    }
                }
            }
        }
    };
    tokio::time::timeout(crate::harness::DEADLINE, reading)
        .await
        .expect("the sink reported the down broker");
    sink.start_kill().expect("kill");
    assert!(
        seen.iter().any(|line| line.contains("Kafka consumer error")),
        "{seen:#?}"
    );
    assert!(seen.len() < 20, "{} lines:\n{}", seen.len(), seen.join("\n"));
}

#[tokio::test]
async fn a_second_ingest_on_the_same_spool_dir_is_refused() {
    let kafka = Kafka::new(1);
    let spool = tempfile::tempdir().expect("tempdir");
    let spool_dir = spool.path().to_str().expect("utf-8 path");
    let ingest = || {
        let mut command = exposures();
        command
            .args(["ingest", "--listen", "127.0.0.1:0", "--brokers", &kafka.brokers()])
            .args(["--topic", &kafka.topic, "--spool-dir", spool_dir])
            .env("RUST_BACKTRACE", "0");
        command
    };
    let mut first = ingest()
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("first ingest");
    let first_pid = first.id().expect("running");
    // The first holds the lock once its lock file names it.
    let lock = spool.path().join("lock");
    let deadline = std::time::Instant::now() + crate::harness::DEADLINE;
    while std::fs::read_to_string(&lock)
        .ok()
        .map(|holder| holder.trim().to_owned())
        != Some(first_pid.to_string())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first ingest never locked its spool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
    }
    let second = ingest().output();
    let second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second ingest exits at once")
        .expect("run ingest");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another exposures process")
            && stderr.contains(&format!("pid {first_pid}"))
            && stderr.contains("--spool-dir"),
        "{stderr}"
    );
    first.start_kill().expect("kill");
}
