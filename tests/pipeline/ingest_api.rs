//! The HTTP API over real sockets against a real Kafka-protocol broker.

use std::collections::HashSet;
use std::io::Write;

use serde_json::{json, Value};

use crate::harness::api::{self, http, nextjs_body, post_json, python_body, Server};
use crate::harness::kafka::{by_key, read_exactly, Kafka, Record};

#[tokio::test]
async fn seed_python_and_nextjs_bodies_become_one_record_each() {
    let kafka = Kafka::new(3);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let client = http();
    let before = chrono_now_ms();

    let python = python_body("user_12345");
    let (status, answer) = post_json(&client, &format!("{}/exposure", server.url), &python).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ok");
    let python_id = answer["event_id"].as_str().expect("event_id").to_owned();

    // The Next.js callback, as the browser sends it from another origin.
    let nextjs = nextjs_body("user_777");
    let response = client
        .post(format!("{}/exposure", server.url))
        .header("content-type", "application/json")
        .header("origin", "https://shop.example.com")
        .body(nextjs.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let nextjs_id = response.json::<Value>().await.expect("json")["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();

    let records = read_exactly(&kafka.brokers(), &kafka.topic, 2).await;
    let after = chrono_now_ms();
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r.value["event_id"] == id)
            .unwrap_or_else(|| panic!("event {id} not in Kafka"))
            .clone()
    };
    let p = by_id(&python_id);
    assert_eq!(p.key, "user_12345");
    assert_eq!(p.value["ds_user_id"], "user_12345");
    assert_eq!(p.value["experiment_id"], "new_search_ui");
    assert_eq!(p.value["variation_id"], "1");
    assert_eq!(p.value["source"], "search_core_python");
    assert_eq!(p.value["attributes"], python["attributes"]);
    assert!(p.value.get("extra").is_none());
    assert!(
        (before..=after).contains(&p.timestamp_ms),
        "record timestamp is the receive time"
    );
    assert_eq!(p.value["exposed_at"], p.value["received_at"]);

    let n = by_id(&nextjs_id);
    assert_eq!(n.key, "user_777");
    assert_eq!(
        n.value["variation_id"], "2",
        "numeric variation keys are stored as strings"
    );
    assert_eq!(n.value["source"], "nextjs_web");
    assert_eq!(n.value["attributes"], nextjs["attributes"]);
    server.stop().await;
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[tokio::test]
async fn browsers_preflight_and_send_beacons() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.cors_origins = vec!["https://shop.example.com".into()];
    let server = Server::start(config).await;
    let client = http();

    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/exposure", server.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://shop.example.com").await.expect("preflight");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .expect("methods");
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("headers");
    assert!(headers.contains("content-type"), "{headers}");

    let denied = preflight("https://evil.example.net").await.expect("preflight");
    assert!(denied.headers().get("access-control-allow-origin").is_none());

    // navigator.sendBeacon(url, JSON.stringify(body)) sends text/plain.
    let beacon = client
        .post(format!("{}/exposure", server.url))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "https://shop.example.com")
        .body(nextjs_body("beacon-user").to_string())
        .send()
        .await
        .expect("beacon");
    assert_eq!(beacon.status(), 200);
    // Cross-origin code may read Retry-After (to honour a 429 or 503).
    let exposed = beacon.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    let records = read_exactly(&kafka.brokers(), &kafka.topic, 1).await;
    assert_eq!(records[0].key, "beacon-user");
    server.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn batch(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut body = python_body(&format!("{prefix}-user-{}", i % 37));
            body["attributes"]["seq"] = json!(i);
            body
        })
        .collect()
}

#[tokio::test]
async fn batches_of_1000_as_array_ndjson_and_gzip() {
    let kafka = Kafka::new(3);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let client = http();
    let url = format!("{}/v1/exposures", server.url);
    let mut ids = Vec::new();

    let array = serde_json::to_vec(&batch("array", 1000)).expect("json");
    let ndjson: String = batch("ndjson", 1000).iter().map(|e| format!("{e}\n")).collect();
    let gzipped = gzip(&serde_json::to_vec(&batch("gzip", 1000)).expect("json"));
    let requests = [
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(array),
        client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(ndjson),
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gzipped),
    ];
    for request in requests {
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["accepted"], 1000);
        let batch_ids = body["event_ids"].as_array().expect("ids");
        assert_eq!(batch_ids.len(), 1000);
        ids.extend(batch_ids.iter().map(|v| v.as_str().expect("id").to_owned()));
    }
    let records = read_exactly(&kafka.brokers(), &kafka.topic, 3000).await;
    let in_kafka: HashSet<String> = records
        .iter()
        .map(|r| r.value["event_id"].as_str().expect("id").to_owned())
        .collect();
    let answered: HashSet<String> = ids.into_iter().collect();
    assert_eq!(in_kafka.len(), 3000, "event ids are unique");
    assert_eq!(in_kafka, answered);
    // Within one user, a batch keeps its order.
    for (_, records) in by_key(&records) {
        for pair in records.windows(2) {
            if pair[0].value["ds_user_id"] == pair[1].value["ds_user_id"]
                && pair[0].value["source"] == pair[1].value["source"]
                && pair[0].key.starts_with("array")
            {
                let seq = |r: &Record| r.value["attributes"]["seq"].as_i64().expect("seq");
                assert!(seq(&pair[0]) < seq(&pair[1]));
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_batch_with_one_bad_item_is_refused_whole() {
    let kafka = Kafka::new(3);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let client = http();
    let mut events = batch("bad", 1000);
    events[417]["variation_id"] = json!(1.5);
    events[901]
        .as_object_mut()
        .expect("object")
        .remove("experiment_id");
    let (status, body) = post_json(&client, &format!("{}/v1/exposures", server.url), &json!(events)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_batch");
    assert_eq!(body["error"]["indexes"], json!([417, 901]));
    assert_eq!(body["failures"][0]["field"], "variation_id");
    assert_eq!(body["failures"][1]["field"], "experiment_id");
    assert_eq!(body["failures"][1]["code"], "missing_field");

    // Nothing was produced: the next valid request is the only record.
    let (status, _) = post_json(
        &client,
        &format!("{}/exposure", server.url),
        &python_body("after"),
    )
    .await;
    assert_eq!(status, 200);
    let records = read_exactly(&kafka.brokers(), &kafka.topic, 1).await;
    assert_eq!(records[0].key, "after");
    server.stop().await;
}

/// A request the API must refuse, and the error it must answer with.
struct BadInput<'a> {
    method: &'a str,
    url: &'a str,
    content_type: &'a str,
    content_encoding: Option<&'a str>,
    body: Vec<u8>,
    /// The HTTP status of the answer.
    status: u16,
    /// The answer's `error.code`.
    code: &'a str,
    /// The answer's `error.field`, for errors about one field.
    field: Option<&'a str>,
}

impl<'a> BadInput<'a> {
    /// A JSON `POST` of `body` to `url`, to be answered `status` with `error.code` `code`.
    fn post(url: &'a str, body: Vec<u8>, status: u16, code: &'a str) -> BadInput<'a> {
        BadInput {
            method: "POST",
            url,
            content_type: "application/json",
            content_encoding: None,
            body,
            status,
            code,
            field: None,
        }
    }

    fn method(self, method: &'a str) -> BadInput<'a> {
        BadInput { method, ..self }
    }

    fn content_type(self, content_type: &'a str) -> BadInput<'a> {
        BadInput { content_type, ..self }
    }

    fn encoded(self, encoding: &'a str) -> BadInput<'a> {
        BadInput {
            content_encoding: Some(encoding),
            ..self
        }
    }

    fn field(self, field: &'a str) -> BadInput<'a> {
        BadInput {
            field: Some(field),
            ..self
        }
    }
}

#[tokio::test]
async fn every_bad_input_class_gets_its_status_and_nothing_is_produced() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.max_batch_events = 50;
    let server = Server::start(config).await;
    let client = http();
    let single = format!("{}/exposure", server.url);
    let batch_url = format!("{}/v1/exposures", server.url);
    let unknown_url = format!("{}/exposures", server.url);
    let with = |field: &str, value: Value| {
        let mut body = python_body("u1");
        body[field] = value;
        body.to_string().into_bytes()
    };
    let mut too_deep = json!("leaf");
    for _ in 0..9 {
        too_deep = json!({ "n": too_deep });
    }
    let no_user = {
        let mut body = python_body("u1");
        body.as_object_mut().expect("object").remove("ds_user_id");
        body.to_string().into_bytes()
    };
    let huge = format!(
        "{{\"ds_user_id\":\"u\",\"pad\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    )
    .into_bytes();
    let bomb = gzip(&vec![b' '; 9 * 1024 * 1024]);

    let cases = vec![
        BadInput::post(&single, b"{\"ds_user_id\": ".to_vec(), 400, "malformed_json"),
        BadInput::post(&single, b"[1,2]".to_vec(), 400, "not_an_object"),
        BadInput::post(&single, no_user, 400, "missing_user_id").field("ds_user_id"),
        BadInput::post(&single, with("experiment_id", json!("")), 400, "empty").field("experiment_id"),
        BadInput::post(
            &single,
            with("experiment_id", json!("e".repeat(257))),
            400,
            "too_long",
        )
        .field("experiment_id"),
        BadInput::post(&single, with("variation_id", json!(true)), 400, "wrong_type").field("variation_id"),
        BadInput::post(&single, with("attributes", json!([1])), 400, "wrong_type").field("attributes"),
        BadInput::post(&single, with("attributes", too_deep), 400, "too_deep").field("attributes"),
        BadInput::post(
            &single,
            with("attributes", json!({"b": "x".repeat(40_000)})),
            400,
            "too_large",
        )
        .field("attributes"),
        BadInput::post(&single, with("source", json!("s".repeat(200))), 400, "too_long").field("source"),
        BadInput::post(
            &single,
            with("timestamp", json!("last tuesday")),
            400,
            "invalid_timestamp",
        )
        .field("timestamp"),
        BadInput::post(&single, with("event_id", json!(["x"])), 400, "wrong_type").field("event_id"),
        BadInput::post(&single, huge, 413, "body_too_large"),
        BadInput::post(&batch_url, bomb, 413, "body_too_large").encoded("gzip"),
        BadInput::post(&batch_url, b"not gzip at all".to_vec(), 400, "corrupt_gzip").encoded("gzip"),
        BadInput::post(&batch_url, b"[]".to_vec(), 415, "unsupported_encoding").encoded("br"),
        BadInput::post(&batch_url, b"[]".to_vec(), 400, "empty_batch"),
        BadInput::post(
            &batch_url,
            serde_json::to_vec(&batch("many", 51)).expect("json"),
            413,
            "too_many_events",
        ),
        BadInput::post(&single, b"<exposure/>".to_vec(), 415, "unsupported_media_type")
            .content_type("application/xml"),
        BadInput::post(
            &single,
            with("source", json!("curl")),
            415,
            "unsupported_media_type",
        )
        .content_type("application/x-www-form-urlencoded"),
        BadInput::post(&single, Vec::new(), 405, "method_not_allowed").method("GET"),
        BadInput::post(&batch_url, b"[]".to_vec(), 405, "method_not_allowed").method("PUT"),
        BadInput::post(&unknown_url, b"{}".to_vec(), 404, "not_found"),
    ];
    for case in cases {
        let BadInput {
            method,
            url,
            content_type,
            content_encoding: encoding,
            body,
            status,
            code,
            field,
        } = case;
        let mut request = client
            .request(method.parse().expect("method"), url)
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.expect("request");
        let got = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{method} {url} expecting {code}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(!answer["error"]["message"].as_str().unwrap_or_default().is_empty());
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
    }

    let (status, _) = post_json(&client, &single, &python_body("still-works")).await;
    assert_eq!(status, 200);
    let records = read_exactly(&kafka.brokers(), &kafka.topic, 1).await;
    assert_eq!(records[0].key, "still-works");
    server.stop().await;
}

#[tokio::test]
async fn write_keys_when_configured() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.write_keys = vec!["k-123".into()];
    let server = Server::start(config).await;
    let client = http();
    let body = python_body("keyed").to_string();
    let send = |url: String, auth: Option<&'static str>| {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let url = format!("{}/exposure", server.url);
    assert_eq!(send(url.clone(), None).await.expect("req").status(), 401);
    assert_eq!(
        send(url.clone(), Some("Bearer nope"))
            .await
            .expect("req")
            .status(),
        401
    );
    assert_eq!(
        send(url.clone(), Some("Bearer k-123"))
            .await
            .expect("req")
            .status(),
        200
    );
    assert_eq!(
        send(format!("{url}?key=k-123"), None)
            .await
            .expect("req")
            .status(),
        200
    );
    read_exactly(&kafka.brokers(), &kafka.topic, 2).await;
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let kafka = Kafka::new(1);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let client = http();
    let (status, _) = post_json(&client, &format!("{}/exposure", server.url), &python_body("m")).await;
    assert_eq!(status, 200);
    let healthz = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    let readyz = client
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200, "a spool with room makes the API ready");
    let text = server.metrics_text(&client).await;
    for name in [
        "exposures_ingest_requests_total{route=\"/exposure\",status=\"200\"}",
        "exposures_ingest_request_duration_seconds_bucket",
        "exposures_ingest_events_accepted_total{path=\"kafka\"}",
        "exposures_ingest_kafka_ack_duration_seconds_bucket",
        "exposures_ingest_spool_records",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn per_client_rate_limit_answers_429_with_retry_after() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.rate_limit = 1;
    config.http.rate_limit_burst = Some(3);
    let server = Server::start(config).await;
    let client = http();
    let url = format!("{}/exposure", server.url);
    let mut statuses = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..6 {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(python_body(&format!("limited-{i}")).to_string())
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    // The burst of 3 passes; after it, one request per elapsed second at most.
    let elapsed = started.elapsed().as_secs() as usize;
    assert_eq!(statuses[..3], [200, 200, 200]);
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        refused >= 3usize.saturating_sub(elapsed),
        "{statuses:?} in {elapsed} s"
    );
    assert!(refused >= 1 || elapsed >= 3, "{statuses:?}");
    // Refused requests produce nothing.
    read_exactly(&kafka.brokers(), &kafka.topic, statuses.len() - refused).await;
    server.stop().await;
}

/// A JSON value parsed from text: numbers as written (`1.0`, beyond 64 bits).
fn json_text(text: &str) -> Value {
    serde_json::from_str(text).expect("json")
}

fn event(fields: Value) -> Value {
    let mut event = json!({"ds_user_id": "schema-user", "experiment_id": "e", "variation_id": "v"});
    for (name, value) in fields.as_object().expect("object") {
        event[name] = value.clone();
    }
    event
}

fn without(field: &str) -> Value {
    let mut event = event(json!({}));
    event.as_object_mut().expect("object").remove(field);
    event
}

#[tokio::test]
async fn the_json_schema_is_public_and_agrees_with_the_api() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.write_keys = vec!["k-schema".into()];
    let server = Server::start(config).await;
    let client = http();

    // Public: no write key, from any origin, with its media type.
    let response = client
        .get(format!("{}/v1/schema", server.url))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/schema+json");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let served_text = response.text().await.expect("body");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(schemas::json_schema::CHECKED_IN_PATH);
    let checked_in_text = std::fs::read_to_string(&path).expect("checked-in schema");
    assert!(
        served_text == checked_in_text,
        "GET /v1/schema (default limits) differs from {}: regenerate it with {}",
        schemas::json_schema::CHECKED_IN_PATH,
        schemas::json_schema::BLESS_COMMAND
    );
    let schema: Value = serde_json::from_str(&served_text).expect("schema is JSON");
    assert_eq!(
        schema,
        schemas::json_schema::exposure_schema(&schemas::Limits::default())
    );
    jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");

    let now = chrono::Utc::now();
    let uuid = uuid::Uuid::new_v4().to_string().to_uppercase();
    let accepted = [
        python_body("schema-python"),
        nextjs_body("schema-nextjs"),
        json!({"anonymous_id": 42, "experiment_id": "e", "variation_id": 0}),
        json!({"user_id": "alias", "experiment_id": "e", "variation_id": "v", "source": null, "attributes": null}),
        json!({"ds_user_id": "", "anonymous_id": "anon", "experiment_id": "e", "variation_id": i64::MIN}),
        event(json!({"variation_id": u64::MAX, "ds_user_id": u64::MAX})),
        event(
            json!({"event_id": uuid, "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
        ),
        event(json!({"event_id": "order-123:exposure", "timestamp": now.timestamp_millis()})),
        event(json!({"timestamp": "2001-01-01T00:00:00Z"})), // outside the window: kept in extra
        event(json!({"event_id": null, "timestamp": null, "attributes": {}})),
        event(json!({"app_version": "1.2.3", "nested": {"a": [1, 2.50, "é"]}})),
        event(
            json!({"experiment_id": "x".repeat(256), "source": "s".repeat(128), "event_id": "i".repeat(128)}),
        ),
        event(json!({"source": ""})),
    ];
    let refused = [
        without("experiment_id"),
        without("variation_id"),
        json!({"experiment_id": "e", "variation_id": "v"}),
        event(json!({"ds_user_id": ""})),
        event(json!({"ds_user_id": null})),
        event(json!({"ds_user_id": {"id": 1}})),
        event(json!({"ds_user_id": null, "user_id": json_text("1.5")})),
        event(json!({"experiment_id": 5})),
        event(json!({"experiment_id": ""})),
        event(json!({"experiment_id": "x".repeat(257)})),
        event(json!({"experiment_id": "a\u{0}b"})),
        event(json!({"variation_id": true})),
        event(json!({"variation_id": json_text("1.5")})),
        event(json!({"variation_id": [1]})),
        event(json!({"variation_id": json_text("18446744073709551616")})),
        event(json!({"attributes": []})),
        event(json!({"attributes": "x"})),
        event(json!({"source": 7})),
        event(json!({"source": "s".repeat(129)})),
        event(json!({"event_id": 7})),
        event(json!({"event_id": ""})),
        event(json!({"event_id": "i".repeat(129)})),
        event(json!({"timestamp": true})),
        event(json!({"timestamp": "yesterday"})),
        event(json!({"timestamp": 10_000_000_000_000_000_i64})),
        event(json!({"bad\u{0}key": 1})),
        json!("just a string"),
        json!([python_body("in-an-array")]),
    ];
    // What JSON Schema cannot say exactly: the schema is looser there, never stricter
    // (its descriptions state these rules).
    let looser = [
        event(json!({"experiment_id": "é".repeat(129)})), // 129 characters, 258 bytes
        event(json!({"variation_id": json_text("1.0")})), // an integer to JSON Schema
        event(json!({"attributes": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}})),
        event(json!({"attributes": {"k": "a\u{0}"}})),
        event(json!({"attributes": {"n": json_text("1e400")}})),
        event(json!({"blob": "x".repeat(40_000)})), // extra over 32 KiB
    ];

    let url = format!("{}/exposure", server.url);
    let mut disagreements = Vec::new();
    let cases = accepted
        .iter()
        .map(|body| (body, true, 200))
        .chain(refused.iter().map(|body| (body, false, 400)))
        .chain(looser.iter().map(|body| (body, true, 400)));
    for (body, schema_valid, api_status) in cases {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer k-schema")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let answer = response.text().await.unwrap_or_default();
        let valid = validator.is_valid(body);
        if valid != schema_valid || status != api_status {
            let body = body.to_string();
            let body = body.get(..300).unwrap_or(&body);
            disagreements.push(format!(
                "{body}\n  schema valid: {valid} (expected {schema_valid}); API: {status} (expected {api_status}) {answer}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    read_exactly(&kafka.brokers(), &kafka.topic, accepted.len()).await;
    server.stop().await;
}
