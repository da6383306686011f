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
use crate::harness::process::{exposures, start_up, IngestProcess};
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

/// `--body-read-timeout` bounds the whole body: a client that sends a byte every 200 ms
/// (each within any per-frame timeout) still gets its 408 once the body's time is up.
#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_times_out_as_a_whole() {
    let kafka = Kafka::new(1);
    let ingest = IngestProcess::start(&kafka.brokers(), &kafka.topic, &["--body-read-timeout", "1s"]).await;
    let mut trickle = TcpStream::connect(ingest.address).await.expect("connect");
    trickle
        .write_all(
            b"POST /exposure HTTP/1.1\r\nHost: exposures\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n",
        )
        .await
        .expect("write");
    let started = Instant::now();
    let (mut reader, mut writer) = trickle.into_split();
    let trickling = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await; // the client's pace
        }
    });
    // Until the answer's head is in (the connection closes after it, and the next
    // trickled byte meets a closed socket).
    let mut answer = Vec::new();
    let reading = async {
        let mut chunk = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, reading).await;
    let took = started.elapsed();
    trickling.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
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

/// A 2 MiB body: twice `POST /exposure`'s default limit (1 MiB), under the drain's 4 MiB.
const TWICE_THE_EVENT_LIMIT: usize = 2 * 1024 * 1024;

/// Sends `head` and then all of `body` before reading anything, as Python `requests`
/// (http.client) does, then reads until the server closes. The answer, or how the
/// exchange broke (a reset while writing the body, or while reading the answer).
async fn send_all_then_read(
    address: std::net::SocketAddr,
    head: &[u8],
    body: &[u8],
) -> Result<String, String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(head)
        .await
        .map_err(|e| format!("writing the head: {e}"))?;
    stream
        .write_all(body)
        .await
        .map_err(|e| format!("writing the body: {e}"))?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection before the deadline");
    let text = String::from_utf8_lossy(&answer).into_owned();
    match read {
        Ok(_) => Ok(text),
        Err(e) => Err(format!("reading the answer: {e} (after {:?})", text)),
    }
}

/// `body` in HTTP/1.1 chunked encoding, 64 KiB a chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(body.len() + 1024);
    for chunk in body.chunks(64 * 1024) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

/// Sends a 2 MiB body to `POST /exposure` at `address` as a client that writes all of it
/// before reading, 20 times with a Content-Length (refused before a byte is read) and 20
/// times chunked (refused mid-stream once the chunks pass the limit): each must read its
/// 413, since without the drain most tries, not all, end in a reset.
async fn every_oversized_body_gets_its_413(address: std::net::SocketAddr) {
    let body = format!(
        "{{\"ds_user_id\":\"u\",\"pad\":\"{}\"}}",
        "x".repeat(TWICE_THE_EVENT_LIMIT - 30)
    )
    .into_bytes();
    assert!(body.len() > TWICE_THE_EVENT_LIMIT - 10);
    let declared = format!(
        "POST /exposure HTTP/1.1\r\nHost: exposures\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let streamed = "POST /exposure HTTP/1.1\r\nHost: exposures\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
    let chunked_body = chunked(&body);
    let mut failures = Vec::new();
    for (kind, head, body) in [
        ("Content-Length", declared.as_bytes(), &body[..]),
        ("chunked", streamed.as_bytes(), &chunked_body[..]),
    ] {
        for attempt in 0..20 {
            match send_all_then_read(address, head, body).await {
                Ok(answer)
                    if answer.starts_with("HTTP/1.1 413")
                        && answer.contains("body_too_large")
                        && answer.to_ascii_lowercase().contains("connection: close") => {}
                Ok(answer) => failures.push(format!("{kind} #{attempt}: answered {answer:?}")),
                Err(broke) => failures.push(format!("{kind} #{attempt}: {broke}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 40 clients did not read a 413:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_client_that_sends_its_whole_oversized_body_first_reads_the_413() {
    let kafka = Kafka::new(1);
    let ingest = IngestProcess::start(&kafka.brokers(), &kafka.topic, &[]).await;
    every_oversized_body_gets_its_413(ingest.address).await;
    // The server still serves, on a new connection.
    let (status, _) = post_json(
        &http(),
        &format!("{}/exposure", ingest.url),
        &python_body("after-413s"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn under_up_a_client_that_sends_its_whole_oversized_body_first_reads_the_413() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = crate::harness::process::free_port();
    let _up = start_up(data.path(), port, crate::harness::process::free_port(), &[]).await;
    every_oversized_body_gets_its_413(([127, 0, 0, 1], port).into()).await;
}

#[tokio::test]
async fn the_drain_of_a_refused_body_is_bounded_in_bytes_and_time() {
    let kafka = Kafka::new(1);
    // A body-read timeout far beyond the drain's: the drain must stop on its own bound.
    let ingest = IngestProcess::start(&kafka.brokers(), &kafka.topic, &["--body-read-timeout", "10m"]).await;
    let head = |length: usize, extra: &str| {
        format!(
            "POST /exposure HTTP/1.1\r\nHost: exposures\r\nContent-Type: application/json\r\n\
             {extra}Content-Length: {length}\r\n\r\n"
        )
    };

    // Declared far beyond the drain's bytes: nothing is read, the 413 comes at once and the
    // connection closes (no body was sent, so nothing is reset).
    let mut huge = TcpStream::connect(ingest.address).await.expect("connect");
    huge.write_all(head(1 << 30, "").as_bytes()).await.expect("write");
    let (answer, took) = until_closed(&mut huge).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");

    // A client waiting for `100 Continue` is refused without being asked for its body.
    let mut expecting = TcpStream::connect(ingest.address).await.expect("connect");
    expecting
        .write_all(head(TWICE_THE_EVENT_LIMIT, "Expect: 100-continue\r\n").as_bytes())
        .await
        .expect("write");
    let (answer, took) = until_closed(&mut expecting).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "no 100 Continue first: {answer}"
    );
    assert!(took < Duration::from_secs(3), "closed after {took:?}");

    // A client that declares 2 MiB and then stalls: the 413 is sent at once, while the
    // body is awaited, and the connection is closed at the drain's deadline.
    let mut stalled = TcpStream::connect(ingest.address).await.expect("connect");
    let started = Instant::now();
    stalled
        .write_all(head(TWICE_THE_EVENT_LIMIT, "").as_bytes())
        .await
        .expect("write");
    stalled.write_all(&[b' '; 1024]).await.expect("write");
    let mut status_line = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(3), stalled.read_exact(&mut status_line))
        .await
        .expect("the 413 is sent before the drain ends")
        .expect("read");
    assert_eq!(&status_line, b"HTTP/1.1 413");
    let (rest, _) = until_closed(&mut stalled).await;
    let took = started.elapsed();
    assert!(rest.to_ascii_lowercase().contains("connection: close"), "{rest}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "closed after {took:?}: the drain waits for the body, for ~5 s at most"
    );
}
