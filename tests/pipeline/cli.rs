//! The command line as users and operators meet it: the shared Kafka flags reach every
//! command's librdkafka clients, protected settings are refused with a reason, and
//! `status` needs only the flags of the sections it shows.

use std::process::Output;
use std::time::Duration;

use crate::harness::kafka::Kafka;
use crate::harness::process::exposures;

/// Runs `exposures ARGS` with no `EXPOSURES_*` variables from the environment, bounded
/// by the harness deadline (the commands under test either exit or are killed).
async fn run(args: &[&str]) -> Output {
    let mut command = exposures();
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("EXPOSURES_")) {
        command.env_remove(key);
    }
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
    assert!(output.status.success(), "{shown}");
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
