//! Broker outages, the spool, and graceful shutdown: every 200 ends up in Kafka exactly
//! once and in per-user order.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::api::{self, http, post_json, python_body, Server};
use crate::harness::disk::SmallDisk;
use crate::harness::kafka::{by_key, read_exactly, record_count, Kafka, Record};

/// Sends `per_user` events for each of `users` users, one user's events sequentially
/// (each waits for its 200, as an SDK callback does); users run concurrently.
async fn post_sequences(url: &str, users: usize, per_user: usize, tag: &str) -> Vec<String> {
    let client = http();
    let tasks = (0..users).map(|u| {
        let client = client.clone();
        let url = url.to_owned();
        let tag = tag.to_owned();
        async move {
            let mut ids = Vec::new();
            for seq in 0..per_user {
                let mut body = python_body(&format!("{tag}-user-{u}"));
                body["attributes"]["seq"] = json!(seq);
                let (status, answer) = post_json(&client, &url, &body).await;
                assert_eq!(status, 200, "{answer}");
                ids.push(answer["event_id"].as_str().expect("id").to_owned());
            }
            ids
        }
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn assert_per_user_order(records: &[Record]) {
    for (user, events) in by_key(records) {
        let seqs: Vec<i64> = events
            .iter()
            .map(|r| r.value["attributes"]["seq"].as_i64().expect("seq"))
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "events of {user} out of order");
    }
}

/// Kafka holds exactly the `answered` events, each once, each user's in order.
async fn assert_delivered_once_in_order(kafka: &Kafka, answered: &[String]) {
    let records = read_exactly(&kafka.brokers(), &kafka.topic, answered.len()).await;
    assert_eq!(
        event_ids(&records),
        answered.iter().cloned().collect::<HashSet<_>>()
    );
    assert_per_user_order(&records);
}

fn event_ids(records: &[Record]) -> HashSet<String> {
    records
        .iter()
        .map(|r| r.value["event_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn broker_outage_spools_then_replays_exactly_once_in_order() {
    let kafka = Kafka::new(3);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let url = format!("{}/exposure", server.url);

    // Healthy first, so the outage starts with direct delivery in use.
    let mut answered = post_sequences(&url, 4, 5, "before").await;
    kafka.down();
    answered.extend(post_sequences(&url, 4, 10, "during").await);
    let spooled = std::fs::read_dir(&server.spool_dir)
        .expect("spool dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count();
    assert!(spooled > 0, "events during the outage were spooled");
    kafka.up();
    // After recovery, new events queue behind the backlog and keep per-user order.
    answered.extend(post_sequences(&url, 4, 5, "during").await);

    let records = read_exactly(&kafka.brokers(), &kafka.topic, answered.len()).await;
    assert_eq!(
        event_ids(&records),
        answered.iter().cloned().collect::<HashSet<_>>()
    );
    assert_eq!(event_ids(&records).len(), answered.len(), "no duplicates");
    // The "during" users posted seq 0..10 in the outage and 0..5 after it: split them
    // by source order within the key and check each run ascends.
    for (user, events) in by_key(&records) {
        let seqs: Vec<i64> = events
            .iter()
            .map(|r| r.value["attributes"]["seq"].as_i64().expect("seq"))
            .collect();
        let expected: Vec<i64> = if user.starts_with("during") {
            (0..10).chain(0..5).collect()
        } else {
            (0..5).collect()
        };
        assert_eq!(seqs, expected, "events of {user} reached Kafka out of order");
    }
    server.stop().await;
}

#[tokio::test]
async fn spool_disabled_and_broker_down_answers_503_with_retry_after() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.delivery.no_spool = true;
    config.delivery.delivery_timeout = Duration::from_millis(800);
    let server = Server::start(config).await;
    let client = http();
    kafka.down();
    let started = Instant::now();
    let response = client
        .post(format!("{}/exposure", server.url))
        .header("content-type", "application/json")
        .body(python_body("refused").to_string())
        .send()
        .await
        .expect("request");
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable");
    // The deadline is the delivery timeout, well inside the SDK's 5 s HTTP timeout.
    assert!(elapsed < Duration::from_secs(5), "answered after {elapsed:?}");
    server.stop().await;
}

#[tokio::test]
async fn spool_survives_restart_and_drains_on_the_next_run() {
    let kafka = Kafka::new(3);
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.delivery.spool_dir = Some(spool_dir.path().to_path_buf());
    config.delivery.delivery_timeout = Duration::from_millis(800);

    kafka.down();
    let server = Server::start(config.clone()).await;
    let answered = post_sequences(&format!("{}/exposure", server.url), 3, 7, "restart").await;
    server.stop().await;

    kafka.up();
    let server = Server::start(config).await;
    assert_delivered_once_in_order(&kafka, &answered).await;
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_under_load_keeps_every_200() {
    let kafka = Kafka::new(3);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let url = format!("{}/exposure", server.url);
    let client = http();
    let (first_answer_tx, mut first_answer) = tokio::sync::mpsc::channel::<()>(1);
    let load = (0..8).map(|worker| {
        let (client, url, tx) = (client.clone(), url.clone(), first_answer_tx.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for seq in 0..200 {
                let mut body = python_body(&format!("load-{worker}"));
                body["attributes"]["seq"] = json!(seq);
                let Ok(response) = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                else {
                    break; // the server stopped accepting
                };
                if response.status() != 200 {
                    break;
                }
                let answer: Value = response.json().await.expect("json");
                acknowledged.push(answer["event_id"].as_str().expect("id").to_owned());
                let _ = tx.try_send(());
            }
            acknowledged
        })
    });
    let load: Vec<_> = load.collect();
    drop(first_answer_tx);
    first_answer.recv().await.expect("some request succeeded");
    server.stop().await;
    let mut acknowledged = Vec::new();
    for worker in load {
        acknowledged.extend(worker.await.expect("worker"));
    }
    assert!(!acknowledged.is_empty());
    // The producer is flushed, so the topic is final. A request cut off by the shutdown
    // may have reached Kafka without its 200 reaching the client; every 200 must be there.
    let total = record_count(&kafka.brokers(), &kafka.topic);
    let records = read_exactly(&kafka.brokers(), &kafka.topic, total as usize).await;
    let in_kafka = event_ids(&records);
    assert_eq!(in_kafka.len(), records.len(), "no duplicates");
    let missing: Vec<_> = acknowledged.iter().filter(|id| !in_kafka.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing from Kafka",
        missing.len()
    );
    assert_per_user_order(&records);
}

/// The disk under the spool fills up during a broker outage: events past it are answered
/// 503 (none of them is in Kafka later), every 200 reaches Kafka once and in order, and once
/// the broker is back the spool drains and 200s resume without a restart, although the
/// replay position cannot be written while the disk is full.
#[tokio::test]
async fn a_full_disk_under_the_spool_answers_503_and_recovers_without_restart() {
    let Some(disk) = SmallDisk::mount(256 * 1024) else {
        return;
    };
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.delivery.spool_dir = Some(disk.path().join("spool"));
    config.delivery.delivery_timeout = Duration::from_millis(300);
    let server = Server::start(config).await;
    let url = format!("{}/exposure", server.url);
    let client = http();
    let post = |seq: usize| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let mut body = python_body("full-disk-user");
            body["attributes"]["seq"] = json!(seq);
            body["attributes"]["padding"] = json!("x".repeat(2_000));
            post_json(&client, &url, &body).await
        }
    };

    kafka.down();
    let mut answered = Vec::new();
    let mut refused = 0;
    let mut seq = 0;
    while refused == 0 {
        assert!(seq < 2_000, "the spool never filled the 256 KiB disk");
        let (status, answer) = post(seq).await;
        match status {
            200 => answered.push(answer["event_id"].as_str().expect("id").to_owned()),
            503 => refused += 1,
            other => panic!("answered {other}: {answer}"),
        }
        seq += 1;
    }
    assert!(
        answered.len() > 10,
        "{} events spooled before the disk was full",
        answered.len()
    );

    kafka.up();
    // The first event after the broker is back, then five more, each answered 200 in the
    // end. Until the replay has freed the disk, an event whose acknowledgement takes longer
    // than the 300 ms deadline (a loaded machine) falls back to the full spool and gets a
    // 503 — nothing of it reaches Kafka (checked below) — and the client retries.
    let deadline = Instant::now() + crate::harness::DEADLINE;
    for _ in 0..6 {
        loop {
            let (status, answer) = post(seq).await;
            seq += 1;
            if status == 200 {
                answered.push(answer["event_id"].as_str().expect("id").to_owned());
                break;
            }
            assert_eq!(status, 503, "{answer}");
            assert!(
                Instant::now() < deadline,
                "still 503 long after the broker came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await; // a client's retry pause
        }
    }

    assert_delivered_once_in_order(&kafka, &answered).await;
    server.stop().await;
}

/// A record Kafka will never take (here larger than the producer's `message.max.bytes`)
/// does not block the spool: it is set aside in `dead-letters/` with the reason, and the
/// events behind it reach Kafka, in order.
#[tokio::test]
async fn a_record_kafka_refuses_for_good_is_dead_lettered_and_the_rest_go_on() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.kafka.properties = vec![("message.max.bytes".into(), "2000".into())];
    let server = Server::start(config).await;
    let url = format!("{}/exposure", server.url);
    let client = http();

    let mut huge = python_body("dead-letter-user");
    huge["attributes"]["padding"] = json!("x".repeat(4_000));
    let (status, answer) = post_json(&client, &url, &huge).await;
    assert_eq!(status, 200, "spooled: {answer}");
    let huge_id = answer["event_id"].as_str().expect("id").to_owned();
    let mut after = Vec::new();
    for seq in 0..5 {
        let mut body = python_body("dead-letter-user");
        body["attributes"]["seq"] = json!(seq);
        let (status, answer) = post_json(&client, &url, &body).await;
        assert_eq!(status, 200, "{answer}");
        after.push(answer["event_id"].as_str().expect("id").to_owned());
    }

    let records = read_exactly(&kafka.brokers(), &kafka.topic, after.len()).await;
    assert_eq!(event_ids(&records), after.iter().cloned().collect::<HashSet<_>>());
    assert_per_user_order(&records);
    let letters: Vec<_> = std::fs::read_dir(server.spool_dir.join("dead-letters"))
        .expect("dead-letters dir")
        .map(|entry| std::fs::read_to_string(entry.expect("entry").path()).expect("letter"))
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter: Value = serde_json::from_str(&letters[0]).expect("json");
    assert!(
        letter["value"].as_str().is_some_and(|v| v.contains(&huge_id)),
        "{letter}"
    );
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("MessageSizeTooLarge")),
        "{letter}"
    );
    server.stop().await;
}
