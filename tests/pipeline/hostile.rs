//! Hostile clients against the ingest API, over real sockets: memory amplification,
//! idle and trickling connections, connection floods, key guessing, proxies and the
//! privacy policy. Each mechanism has a test that fails without it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::api::{self, http, post_json, python_body, Server};
use crate::harness::kafka::{read_exactly, Kafka};
use crate::harness::process::{exposures, IngestProcess};
use crate::harness::DEADLINE;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Reads from `stream` until the server closes it (or it is reset); returns what arrived
/// and how long it took. Fails at the harness deadline.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buffer))
            .await
            .expect("the server closes the connection before the deadline");
        match read {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&received).into_owned(), started.elapsed()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn amplification_attack_keeps_resident_memory_bounded() {
    let kafka = Kafka::new(1);
    let ingest = IngestProcess::start(&kafka.brokers(), &kafka.topic, &[]).await;
    let client = http();
    let (status, _) = post_json(&client, &format!("{}/exposure", ingest.url), &python_body("warm")).await;
    assert_eq!(status, 200);
    let idle = ingest.resident_bytes();

    // 8 KiB of gzip inflating to 8 MiB of [0,0,0,…], and 1 MiB single events.
    let zeros = format!("[{}0]", "0,".repeat(4 * 1024 * 1024 - 2));
    let bomb = gzip(zeros.as_bytes());
    let big_event = json!({"ds_user_id": "u", "experiment_id": "e", "variation_id": 1,
        "pad": "x".repeat(1024 * 1024 - 100)})
    .to_string();
    // 1 MiB of numbers inside one event: each is a value of its own once parsed.
    let numbers = format!(
        r#"{{"ds_user_id":"u","experiment_id":"e","variation_id":1,"attributes":{{"a":[{}0]}}}}"#,
        "0,".repeat(512 * 1024 - 64)
    );
    let peak = Arc::new(AtomicU64::new(idle));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), ingest.pid());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(crate::harness::process::resident_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await; // sampling, not synchronisation
            }
        })
    };
    let mut requests = Vec::new();
    for i in 0..104 {
        let client = client.clone();
        let request = if i % 4 == 2 {
            client
                .post(format!("{}/exposure", ingest.url))
                .header("content-type", "application/json")
                .body(big_event.clone())
        } else if i % 4 == 3 {
            client
                .post(format!("{}/exposure", ingest.url))
                .header("content-type", "application/json")
                .body(numbers.clone())
        } else {
            client
                .post(format!("{}/v1/exposures", ingest.url))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(bomb.clone())
        };
        requests.push(tokio::spawn(async move {
            request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.expect("request task"));
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let grown = peak.load(Ordering::Relaxed).saturating_sub(idle);
    println!(
        "amplification: idle {} MiB, peak {} MiB (+{} MiB) over 52 gzip bombs, 26 1 MiB events and 26 1 MiB \
         arrays of numbers; answers {:?}",
        idle >> 20,
        peak.load(Ordering::Relaxed) >> 20,
        grown >> 20,
        {
            let mut counts = std::collections::BTreeMap::new();
            for status in &statuses {
                *counts.entry(*status).or_insert(0) += 1;
            }
            counts
        }
    );
    assert!(
        statuses.iter().all(|s| [400, 413, 503].contains(s)),
        "every attack request is refused with a 4xx or shed with 503: {statuses:?}"
    );
    assert!(
        grown < 100 << 20,
        "resident memory grew by {} MiB under the attack",
        grown >> 20
    );
    // Still serving.
    let (status, _) = post_json(
        &client,
        &format!("{}/exposure", ingest.url),
        &python_body("after"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn half_sent_headers_idle_keep_alives_and_trickled_bodies_time_out() {
    let kafka = Kafka::new(1);
    let ingest = IngestProcess::start(
        &kafka.brokers(),
        &kafka.topic,
        &["--header-read-timeout", "1s", "--body-read-timeout", "1s"],
    )
    .await;

    let mut half_header = TcpStream::connect(ingest.address).await.expect("connect");
    half_header
        .write_all(b"POST /exposure HTTP/1.1\r\nHost: exposures\r\nContent-Ty")
        .await
        .expect("write");
    let (_, took) = until_closed(&mut half_header).await;
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");

    let mut keep_alive = TcpStream::connect(ingest.address).await.expect("connect");
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: exposures\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut keep_alive).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut trickle = TcpStream::connect(ingest.address).await.expect("connect");
    trickle
        .write_all(
            b"POST /exposure HTTP/1.1\r\nHost: exposures\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"ds_user_",
        )
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut trickle).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_a_normal_post_still_succeeds() {
    let kafka = Kafka::new(1);
    let ingest = IngestProcess::start(
        &kafka.brokers(),
        &kafka.topic,
        &["--max-connections", "3", "--header-read-timeout", "2s"],
    )
    .await;
    // (Should the readiness probe's connection still hold a slot, the POST only waits
    // longer: the assertion below is a lower bound.)
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(ingest.address).await.expect("connect"));
    }
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let (status, _) = post_json(
        &client,
        &format!("{}/exposure", ingest.url),
        &python_body("queued"),
    )
    .await;
    let waited = started.elapsed();
    println!("connection cap: a POST behind 3 idle connections waited {waited:?}");
    assert_eq!(status, 200);
    assert!(
        waited >= Duration::from_secs(1),
        "answered after {waited:?}: it was not held behind the cap"
    );
    read_exactly(&kafka.brokers(), &kafka.topic, 1).await;
}

#[tokio::test]
async fn a_trickling_client_cannot_hold_up_shutdown() {
    let kafka = Kafka::new(1);
    let mut ingest = IngestProcess::start(
        &kafka.brokers(),
        &kafka.topic,
        &["--body-read-timeout", "10m", "--shutdown-timeout", "1s"],
    )
    .await;
    let mut trickle = TcpStream::connect(ingest.address).await.expect("connect");
    trickle
        .write_all(
            b"POST /exposure HTTP/1.1\r\nHost: exposures\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
    ingest.terminate();
    let exited = tokio::time::timeout(DEADLINE, ingest.child.wait())
        .await
        .expect("ingest exits within the shutdown bound")
        .expect("wait");
    assert!(exited.success(), "{exited:?}");
}

#[tokio::test]
async fn unsafe_configurations_are_refused_at_start() {
    for (flags, says) in [
        (vec!["--write-keys", "k1,"], "empty key"),
        (vec!["--forwarded-for", "hash"], "at least 16 bytes"),
        (
            vec!["--forwarded-for", "hash", "--ip-hash-salt", "short"],
            "at least 16 bytes",
        ),
    ] {
        let output = tokio::time::timeout(
            DEADLINE,
            exposures()
                .args(["ingest", "--listen", "127.0.0.1:0", "--no-spool"])
                .args(&flags)
                .env_remove("EXPOSURES_IP_HASH_SALT")
                .env_remove("EXPOSURES_WRITE_KEYS")
                .output(),
        )
        .await
        .expect("refused at once")
        .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} started");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}

#[tokio::test]
async fn wrong_write_keys_are_limited_per_client_and_empty_keys_never_match() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.write_keys = vec!["k-123".into()];
    let server = Server::start(config).await;
    let client = http();
    let url = format!("{}/exposure", server.url);
    let send = |url: String, auth: Option<String>| {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(python_body("keyed").to_string());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(send(format!("{url}?key="), None).await, 401);
    assert_eq!(send(url.clone(), Some("Bearer ".into())).await, 401);
    for guess in 0..8 {
        assert_eq!(
            send(url.clone(), Some(format!("Bearer guess-{guess}"))).await,
            401
        );
    }
    // The burst of failures is spent: further guesses, right or wrong, are refused unchecked.
    assert_eq!(send(url.clone(), Some("Bearer guess-x".into())).await, 429);
    assert_eq!(send(url.clone(), Some("Bearer k-123".into())).await, 429);
    server.stop().await;
}

#[tokio::test]
async fn the_rate_limit_trusts_forwarded_for_only_from_trusted_proxies() {
    for (trusted, second_client_status) in [(true, 200), (false, 429)] {
        let kafka = Kafka::new(1);
        let mut config = api::config(&kafka.brokers(), &kafka.topic);
        config.http.rate_limit = 1;
        config.http.rate_limit_replenish = Some(Duration::from_secs(3600));
        if trusted {
            // The API's own host and the load balancers' network.
            config.http.trusted_proxies = vec![
                "127.0.0.0/8".parse().expect("cidr"),
                "10.0.0.0/8".parse().expect("cidr"),
            ];
        }
        let server = Server::start(config).await;
        let client = http();
        let send = |client_ip: &'static str| {
            let request = client
                .post(format!("{}/exposure", server.url))
                .header("content-type", "application/json")
                .header("x-forwarded-for", format!("{client_ip}, 10.1.2.3"))
                .body(python_body("proxied").to_string());
            async move { request.send().await.expect("request").status().as_u16() }
        };
        assert_eq!(send("203.0.113.5").await, 200);
        assert_eq!(
            send("203.0.113.6").await,
            second_client_status,
            "trusted proxies: {trusted}"
        );
        assert_eq!(send("203.0.113.5").await, 429, "trusted proxies: {trusted}");
        server.stop().await;
    }
}

#[tokio::test]
async fn forwarded_for_that_is_not_a_string_is_never_stored_under_truncate_or_hash() {
    for policy in ["truncate", "hash", "drop"] {
        let kafka = Kafka::new(1);
        let mut config = api::config(&kafka.brokers(), &kafka.topic);
        config.http.forwarded_for = policy.parse().expect("policy");
        config.http.ip_hash_salt = "0123456789abcdef-salt".into();
        let server = Server::start(config).await;
        let mut body = python_body("privacy");
        body["attributes"]["forwarded_for"] = json!(["198.51.100.7", {"real": "198.51.100.8"}]);
        let (status, _) = post_json(&http(), &format!("{}/exposure", server.url), &body).await;
        assert_eq!(status, 200);
        let records = read_exactly(&kafka.brokers(), &kafka.topic, 1).await;
        let stored = records[0].value["attributes"]["forwarded_for"].clone();
        let text = stored.to_string();
        assert!(!text.contains("198.51.100"), "{policy} kept {text}");
        match policy {
            "hash" => assert!(
                stored.as_str().is_some_and(|s| s.starts_with("sha256:")),
                "{text}"
            ),
            _ => assert!(stored.is_null(), "{policy} kept {text}"),
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn write_keys_never_reach_the_logs() {
    let kafka = Kafka::new(1);
    let port = crate::harness::process::free_port();
    let secret = "k-7f3a9c-never-log-me";
    let child = exposures()
        .args(["ingest", "--listen", &format!("127.0.0.1:{port}"), "--no-spool"])
        .args(["--brokers", &kafka.brokers(), "--topic", &kafka.topic])
        .args(["--write-keys", secret])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}");
    let client = http();
    let deadline = Instant::now() + DEADLINE;
    while client.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "ingest did not start");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
    }
    for target in [
        format!("{url}/exposure?key={secret}"),
        format!("{url}/exposure?key={secret}-wrong"),
        format!("{url}/nowhere?key={secret}"),
    ] {
        let _ = client
            .post(target)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {secret}"))
            .body(python_body("logged").to_string())
            .send()
            .await
            .expect("request");
    }
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("ingest API ready"), "{logs}");
    assert!(
        !logs.contains("k-7f3a9c"),
        "a write key reached the logs:\n{logs}"
    );
}
