//! Odd but legal events keep their meaning from the HTTP API to PostgreSQL, and events
//! no warehouse could store are refused up front (issue 11, `schemas::loadable`).
//!
//! Events with integers past 64 bits, long decimals, exponents, `-0`, separators
//! (U+2028/U+2029), controls, astral characters raw and as surrogate escapes, keys with
//! quotes, dots and backslashes, deep nesting, unknown fields (→ `extra`) and promoted
//! attributes at their byte width go through the real ingest API, Kafka, the sink and the
//! PostgreSQL load. The lake's JSON text is the client's (same key order, same digits),
//! and the warehouse's `jsonb` equals what PostgreSQL makes of the text the client sent.
//! A NUL anywhere, or `1e400`, gets a 400 naming the field, and nothing of its request
//! reaches Kafka.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::api::{config, http, Server};
use crate::harness::kafka::record_count;
use crate::harness::lake::{lake_json_columns, start_sink, wait_committed, Lakeside};
use crate::harness::postgres::Pg;
use crate::harness::redshift_emulator::DataApi;
use crate::harness::{flags, DEADLINE};

/// One accepted event: its id and the JSON text the client sent for `attributes`.
struct Sent {
    event_id: String,
    attributes: String,
    body: String,
}

fn event(n: usize, attributes: &str, more: &str) -> Sent {
    let event_id = format!("verbatim-{n}");
    let body = format!(
        r#"{{"ds_user_id": "v-user-{n}", "experiment_id": "verbatim", "variation_id": "1",
            "event_id": "{event_id}"{more}, "attributes": {attributes}}}"#
    );
    Sent {
        event_id,
        attributes: attributes.to_owned(),
        body,
    }
}

const NUMBERS: &str = r#"{"big": 123456789012345678901234567890, "neg": -98765432109876543210987654321,
    "u64max": 18446744073709551615, "past_u64": 18446744073709551616,
    "pi": 3.14159265358979323846264338327950288, "cents": 1.50, "sci": 6.02E23, "zero": -0,
    "tiny": 1e-300, "huge": 1.7976931348623157e308, "list": [1, 1.0, 10000000000000000000000001]}"#;

const UNICODE: &str = r#"{"sep": "a\u2028b\u2029c", "raw_sep": "a b c", "emoji": "😀",
    "escaped": "\ud83d\ude00", "ctl": "\u0001\u001f\t\n\r", "del": "\u007f", "bom": "\ufeff",
    "nonchar": "\uffff", "max": "\udbff\udfff", "rtl": "שלום", "quote\"key": "v",
    "dot.key": {"back\\slash": "\\"}, "": "empty key", "slash": "\/"}"#;

const ORDER: &str = r#"{"z": 1, "a": {"y": [3, 2, 1], "b": null}, "m": [{"k2": true, "k1": false}],
    "d1": {"d2": {"d3": {"d4": {"d5": {"d6": {"d7": "seven objects deep"}}}}}}}"#;

const PROMOTED: &str = r#"{"geo_country_code": "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀",
    "platform": 12345678901234567890123, "locale": 1.50, "is_kf_verified": 1,
    "ds_session_id": "€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€"}"#;

const EXTRA: &str = r#", "timestamp": "2001-01-01T00:00:00Z",
    "order": {"total": 99999999999999999999.99, "id": 123456789012345678901234567890, "note": "\u2028"},
    "page.path": "/search?q=\"x\"""#;

/// What the JSON text means once parsed and written compactly (serde_json with
/// `preserve_order` and `arbitrary_precision`: same order, same digits).
fn compact(text: &str) -> String {
    let value: Value = serde_json::from_str(text).expect("the test's JSON is valid");
    value.to_string()
}

/// Waits until `analytics.exposures` holds `expected` rows.
async fn wait_for_rows(warehouse: &tokio_postgres::Client, expected: usize) {
    wait_for_table_rows(warehouse, "exposures", expected).await;
}

/// Waits until `analytics.{table}` holds `expected` rows.
async fn wait_for_table_rows(warehouse: &tokio_postgres::Client, table: &str, expected: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rows: i64 = warehouse
            .query_one(&format!("SELECT count(*) FROM analytics.{table}"), &[])
            .await
            .map(|row| row.get(0))
            .unwrap_or(0);
        if rows == expected as i64 {
            return;
        }
        assert!(Instant::now() < deadline, "{rows} of {expected} rows loaded");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn load_config(side: &Lakeside, pg: &Pg) -> loader::load::LoadConfig {
    let mut config: loader::load::LoadConfig = flags(&["--lake", Lakeside::LAKE]);
    config.kafka = stage::KafkaArgs::plaintext(side.kafka.brokers());
    config.files_topic = side.files_topic.clone();
    config.group = "load".into();
    config.warehouse.warehouse = Some(pg.url());
    config.warehouse.schema = "analytics".into();
    config.batches.batch_interval = Some(Duration::from_millis(300));
    config.lake = side.lake_args();
    config
}

/// The loader's configuration for Redshift through `data_api` (over `pg`), in its own group.
fn redshift_load_config(side: &Lakeside, pg: &Pg, data_api: &DataApi) -> loader::load::LoadConfig {
    let mut config = load_config(side, pg);
    config.group = "load-redshift".into();
    config.warehouse.warehouse = Some(data_api.warehouse_url());
    config.redshift.redshift_endpoint = Some(data_api.endpoint.clone());
    config.redshift.redshift_static_credentials = Some(("test".into(), "test".into()));
    config
}

/// Runs a loader with `config` until `pg` holds `expected` rows, stops it, and checks
/// that it quarantined no file; returns a client of `pg`.
async fn load_everything(
    config: loader::load::LoadConfig,
    pg: &Pg,
    expected: usize,
) -> tokio_postgres::Client {
    let stop = stage::Shutdown::new();
    let loader = tokio::spawn(loader::load::run(config, stop.clone()));
    let warehouse = pg.client().await;
    wait_for_rows(&warehouse, expected).await;
    stop.cancel();
    loader.await.expect("loader task").expect("loader");
    let quarantined: i64 = warehouse
        .query_one(
            "SELECT count(*) FROM analytics.exposures_loads WHERE status <> 'loaded'",
            &[],
        )
        .await
        .expect("ledger")
        .get(0);
    assert_eq!(quarantined, 0, "no file was quarantined");
    warehouse
}

#[tokio::test]
async fn odd_but_legal_events_reach_postgres_verbatim_and_unloadable_ones_get_400() {
    let side = Lakeside::new().await;
    let server = Server::start(config(&side.kafka.brokers(), &side.kafka.topic)).await;
    let client = http();
    let single = format!("{}/exposure", server.url);
    let batch = format!("{}/v1/exposures", server.url);

    let mut sent = vec![
        event(1, NUMBERS, ""),
        event(2, UNICODE, ""),
        event(3, ORDER, EXTRA),
        // Large: about 30,000 bytes of three-byte characters in one attribute.
        event(5, &format!(r#"{{"blob": "{}"}}"#, "€".repeat(10_000)), ""),
    ];
    // Byte limits: a 256-byte experiment_id and a 128-byte event_id of multi-byte text.
    let mut promoted = event(4, PROMOTED, "");
    promoted.event_id = "😀".repeat(32);
    promoted.body = promoted.body.replace("verbatim-4", &promoted.event_id).replace(
        r#""experiment_id": "verbatim""#,
        &format!(r#""experiment_id": "{}""#, "é".repeat(128)),
    );
    sent.push(promoted);

    for event in &sent[..3] {
        let (status, answer) = post(&client, &single, event.body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["event_id"], json!(event.event_id));
    }
    let ndjson = format!(
        "{}\n{}\n",
        sent[3].body.replace('\n', " "),
        sent[4].body.replace('\n', " ")
    );
    let (status, answer) = post(&client, &batch, ndjson).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], json!(2));

    // Refused: the error names the field, and nothing of the request is produced.
    let refused = [
        (
            r#"{"ds_user_id": "r1", "experiment_id": "e", "variation_id": "1", "attributes": {"utm": {"source": "goo\u0000gle"}}}"#,
            "nul_character",
            "attributes.utm.source",
        ),
        (
            r#"{"ds_user_id": "r2", "experiment_id": "exp\u0000", "variation_id": "1"}"#,
            "nul_character",
            "experiment_id",
        ),
        (
            r#"{"ds_user_id": "r3", "experiment_id": "e", "variation_id": "1", "page": {"p\u0000th": "/"}}"#,
            "nul_character",
            r#"page["p\u0000th"]"#,
        ),
        (
            r#"{"ds_user_id": "r4", "experiment_id": "e", "variation_id": "1", "attributes": {"n": 1e400}}"#,
            "number_out_of_range",
            "attributes.n",
        ),
    ];
    for (body, code, field) in refused {
        let (status, answer) = post(&client, &single, body.to_owned()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], json!(code), "{answer}");
        assert_eq!(answer["error"]["field"], json!(field), "{answer}");
    }
    let mixed = format!(
        r#"[{}, {{"ds_user_id": "r5", "experiment_id": "e", "variation_id": "1", "attributes": {{"k\u0000": 1}}}}]"#,
        event(6, "{}", "").body
    );
    let (status, answer) = post(&client, &batch, mixed).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], json!("invalid_batch"));
    assert_eq!(answer["failures"][0]["index"], json!(1));
    assert_eq!(answer["failures"][0]["code"], json!("nul_character"));
    assert_eq!(answer["failures"][0]["field"], json!(r#"attributes["k\u0000"]"#));
    server.stop().await;
    assert_eq!(
        record_count(&side.kafka.brokers(), &side.kafka.topic),
        sent.len() as i64,
        "exactly the accepted events are in Kafka"
    );

    // Sink them into the lake, then load the lake into PostgreSQL.
    let sink = start_sink(side.config("sink"));
    wait_committed(&side, "sink", sent.len() as i64).await;
    sink.stop().await;
    let lake = lake_json_columns(&side.lake().await).await;
    assert_eq!(lake.len(), sent.len());
    for event in &sent {
        let (attributes, _) = &lake[&event.event_id];
        assert_eq!(
            attributes.as_deref(),
            Some(compact(&event.attributes).as_str()),
            "{}: the lake holds the attributes as sent",
            event.event_id
        );
    }
    let (numbers, _) = &lake["verbatim-1"];
    let numbers = numbers.as_deref().unwrap_or_default();
    for digits in [
        r#""big":123456789012345678901234567890"#,
        r#""past_u64":18446744073709551616"#,
        r#""pi":3.14159265358979323846264338327950288"#,
        r#""cents":1.50"#,
        r#""zero":-0"#,
        r#""list":[1,1.0,10000000000000000000000001]"#,
    ] {
        assert!(numbers.contains(digits), "{digits} in {numbers}");
    }
    assert!(lake["verbatim-3"].0.as_deref().is_some_and(
        |text| text.starts_with(r#"{"z":1,"a":{"y":[3,2,1],"b":null},"m":[{"k2":true,"k1":false}]"#)
    ));
    let expected_extra = compact(
        r#"{"timestamp": "2001-01-01T00:00:00Z",
            "order": {"total": 99999999999999999999.99, "id": 123456789012345678901234567890, "note": "\u2028"},
            "page.path": "/search?q=\"x\""}"#,
    );
    assert_eq!(lake["verbatim-3"].1.as_deref(), Some(expected_extra.as_str()));

    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let warehouse = load_everything(load_config(&side, &pg), &pg, sent.len()).await;
    let mut stored = HashMap::new();
    for row in warehouse
        .query(
            "SELECT event_id, attributes::text, extra::text, experiment_id FROM analytics.exposures",
            &[],
        )
        .await
        .expect("rows")
    {
        let id: String = row.get(0);
        stored.insert(
            id,
            (
                row.get::<_, Option<String>>(1),
                row.get::<_, Option<String>>(2),
                row.get::<_, String>(3),
            ),
        );
    }
    for event in &sent {
        let (attributes, _, _) = &stored[&event.event_id];
        // jsonb as PostgreSQL reads the client's own text: equal only if every key,
        // string and digit (scale included) survived.
        let expected: String = warehouse
            .query_one("SELECT $1::text::jsonb::text", &[&event.attributes])
            .await
            .expect("jsonb")
            .get(0);
        assert_eq!(
            attributes.as_deref(),
            Some(expected.as_str()),
            "{}",
            event.event_id
        );
    }
    let big: String = warehouse
        .query_one(
            "SELECT attributes->>'big' FROM analytics.exposures WHERE event_id = 'verbatim-1'",
            &[],
        )
        .await
        .expect("big")
        .get(0);
    assert_eq!(big, "123456789012345678901234567890");
    let (_, extra, _) = &stored["verbatim-3"];
    let expected: String = warehouse
        .query_one("SELECT $1::text::jsonb::text", &[&expected_extra])
        .await
        .expect("jsonb")
        .get(0);
    assert_eq!(extra.as_deref(), Some(expected.as_str()));

    // Promoted columns: cut to their width in bytes on a character boundary.
    let row = warehouse
        .query_one(
            "SELECT geo_country_code, ds_session_id, platform, locale, is_kf_verified, experiment_id
             FROM analytics.exposures WHERE event_id = $1",
            &[&"😀".repeat(32)],
        )
        .await
        .expect("promoted");
    assert_eq!(row.get::<_, String>(0), "😀".repeat(16));
    assert_eq!(row.get::<_, String>(1), "€".repeat(85));
    assert_eq!(row.get::<_, String>(2), "12345678901234567890123");
    assert_eq!(row.get::<_, String>(3), "1.50");
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, String>(5), "é".repeat(128));

    // Redshift counts VARCHAR in bytes (the emulator too): values at exactly their
    // column's width in multi-byte text load, none is cut further, no file is refused.
    let redshift_pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let data_api = DataApi::start(redshift_pg.url(), side.lake_args().aws_options()).await;
    let redshift = load_everything(
        redshift_load_config(&side, &redshift_pg, &data_api),
        &redshift_pg,
        sent.len(),
    )
    .await;
    let row = redshift
        .query_one(
            "SELECT geo_country_code, ds_session_id, experiment_id FROM analytics.exposures WHERE event_id = $1",
            &[&"😀".repeat(32)],
        )
        .await
        .expect("promoted");
    assert_eq!(row.get::<_, String>(0), "😀".repeat(16));
    assert_eq!(row.get::<_, String>(1), "€".repeat(85));
    assert_eq!(row.get::<_, String>(2), "é".repeat(128));
}

/// Arbitrary JSON as a client would write it: strings with every character class (NUL,
/// separators, quotes, backslashes, astral), keys with dots and quotes, integers past 64
/// bits, long decimals, exponents, `-0`, out-of-range numbers, nesting.
fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let character = prop_oneof![
        4 => any::<char>(),
        1 => Just('\0'),
        1 => Just('\u{2028}'),
        1 => Just('"'),
        1 => Just('\\'),
        1 => Just('😀'),
        1 => Just('.'),
    ];
    let text = proptest::collection::vec(character, 0..10)
        .prop_map(|chars| Value::String(chars.into_iter().collect()).to_string());
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[1-9][0-9]{18,45}",
        "-?(0|[1-9][0-9]{0,3})\\.[0-9]{1,30}",
        Just("-0".to_owned()),
        Just("1E+2".to_owned()),
        Just("1e400".to_owned()),
        text.clone(),
    ];
    leaf.prop_recursive(4, 40, 5, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec((text.clone(), inner), 0..5).prop_map(|pairs| {
                let members: Vec<String> = pairs
                    .iter()
                    .map(|(key, value)| format!("{key}: {value}"))
                    .collect();
                format!("{{{}}}", members.join(", "))
            }),
        ]
    })
}

/// Generated events through the real API: each is refused with a 4xx naming the problem,
/// or arrives in PostgreSQL and in Redshift (the Data API emulator) with the meaning the
/// client's own text has — every key, string and digit.
#[tokio::test]
async fn generated_events_are_refused_or_reach_both_warehouses_with_their_meaning() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let side = Lakeside::new().await;
    let server = Server::start(config(&side.kafka.brokers(), &side.kafka.topic)).await;
    let client = http();
    let single = format!("{}/exposure", server.url);
    let mut runner = TestRunner::deterministic();
    let strategy = json_text();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for n in 0..80 {
        let value = strategy.new_tree(&mut runner).expect("generated").current();
        let attributes = format!(r#"{{"generated": {value}, "n": {n}}}"#);
        let sent = event(100 + n, &attributes, "");
        let (status, answer) = post(&client, &single, sent.body.clone()).await;
        match status {
            200 => accepted.push(sent),
            400 | 413 => {
                refused += 1;
                let field = answer["error"]["field"].as_str().unwrap_or_default();
                assert!(field.starts_with("attributes"), "{attributes}: {answer}");
            }
            other => panic!("{attributes} answered {other}: {answer}"),
        }
    }
    server.stop().await;
    println!("generated events: {} accepted, {refused} refused", accepted.len());
    assert!(
        accepted.len() >= 20 && refused >= 5,
        "{} / {refused}",
        accepted.len()
    );
    assert_eq!(
        record_count(&side.kafka.brokers(), &side.kafka.topic),
        accepted.len() as i64
    );

    let both = sink_and_load_into_both(&side, accepted.len()).await;
    for pg in both.warehouses() {
        let warehouse = pg.client().await;
        wait_for_rows(&warehouse, accepted.len()).await;
        for sent in &accepted {
            let row = warehouse
                .query_one(
                    "SELECT attributes::text = $2::text::jsonb::text, attributes::text \
                     FROM analytics.exposures WHERE event_id = $1",
                    &[&sent.event_id, &sent.attributes],
                )
                .await
                .expect("the row");
            assert!(
                row.get::<_, bool>(0),
                "{} stored {}",
                sent.attributes,
                row.get::<_, String>(1)
            );
        }
    }
    both.stop().await;
}

/// PostgreSQL, and Redshift through the Data API emulator (over a PostgreSQL of its own),
/// each loaded by a running loader from the same lake.
struct BothWarehouses {
    postgres: Pg,
    redshift_pg: Pg,
    _data_api: DataApi,
    stop: stage::Shutdown,
    loaders: Vec<tokio::task::JoinHandle<Result<(), loader::load::LoadError>>>,
}

impl BothWarehouses {
    /// The PostgreSQL servers the two warehouses' rows are in.
    fn warehouses(&self) -> [&Pg; 2] {
        [&self.postgres, &self.redshift_pg]
    }

    async fn stop(self) {
        self.stop.cancel();
        for loader in self.loaders {
            loader.await.expect("loader task").expect("loader");
        }
    }
}

/// Sinks the `records` on `side`'s topic into its lake, then starts a loader into each
/// warehouse.
async fn sink_and_load_into_both(side: &Lakeside, records: usize) -> BothWarehouses {
    let sink = start_sink(side.config("sink"));
    wait_committed(side, "sink", records as i64).await;
    sink.stop().await;
    let postgres = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let redshift_pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let data_api = DataApi::start(redshift_pg.url(), side.lake_args().aws_options()).await;
    let stop = stage::Shutdown::new();
    let loaders = vec![
        tokio::spawn(loader::load::run(load_config(side, &postgres), stop.clone())),
        tokio::spawn(loader::load::run(
            redshift_load_config(side, &redshift_pg, &data_api),
            stop.clone(),
        )),
    ];
    BothWarehouses {
        postgres,
        redshift_pg,
        _data_api: data_api,
        stop,
        loaders,
    }
}

/// Generated values as the properties of custom events through `POST /track`, each beside
/// a plain event in the same batch: a generated one is refused with its field named, or
/// reaches `events` in PostgreSQL and in Redshift (the Data API emulator) with the meaning
/// the client's text has; the plain ones always land — a refused event costs only itself.
#[tokio::test]
async fn generated_track_events_are_judged_alone_and_keep_their_meaning_in_both_warehouses() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let side = Lakeside::new().await;
    let server = Server::start(config(&side.kafka.brokers(), &side.kafka.topic)).await;
    let client = http();
    let track = format!("{}/track?client_key=verbatim", server.url);
    let mut runner = TestRunner::deterministic();
    let strategy = json_text();
    let mut accepted: Vec<(usize, String)> = Vec::new();
    let mut refused = 0;
    let batches = 60;
    for n in 0..batches {
        let value = strategy.new_tree(&mut runner).expect("generated").current();
        let properties = format!(r#"{{"generated": {value}, "n": {n}}}"#);
        let body = format!(
            r#"[{{"event_name": "Generated-{n}", "properties_json": {properties}, "user_id": "g-{n}",
                 "sdk_language": "js", "context_json": {{}}}},
                {{"event_name": "Plain", "properties_json": {{"n": {n}}}, "user_id": "plain-{n}"}}]"#
        );
        let response = client
            .post(&track)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .expect("POST /track");
        assert_eq!(response.status(), 200, "{properties}");
        let answer: Value = response.json().await.expect("json");
        match answer["accepted"].as_u64() {
            Some(2) => accepted.push((n, properties)),
            Some(1) => {
                refused += 1;
                assert_eq!(answer["failures"][0]["index"], 0, "{properties}: {answer}");
                let field = answer["failures"][0]["field"].as_str().unwrap_or_default();
                assert!(field.starts_with("properties"), "{properties}: {answer}");
            }
            _ => panic!("{properties}: {answer}"),
        }
    }
    server.stop().await;
    println!(
        "generated /track events: {} accepted, {refused} refused",
        accepted.len()
    );
    assert!(
        accepted.len() >= 15 && refused >= 5,
        "{} / {refused}",
        accepted.len()
    );
    let records = accepted.len() + batches;
    assert_eq!(
        record_count(&side.kafka.brokers(), &side.kafka.topic),
        records as i64
    );

    let both = sink_and_load_into_both(&side, records).await;
    for pg in both.warehouses() {
        let warehouse = pg.client().await;
        wait_for_table_rows(&warehouse, "events", records).await;
        let plain: i64 = warehouse
            .query_one(
                "SELECT count(DISTINCT user_id) FROM analytics.events WHERE event_name = 'Plain'",
                &[],
            )
            .await
            .expect("plain")
            .get(0);
        assert_eq!(plain, batches as i64, "every plain event landed");
        for (n, properties) in &accepted {
            let row = warehouse
                .query_one(
                    "SELECT properties = $2::text::jsonb, properties::text FROM analytics.events WHERE event_name = $1",
                    &[&format!("Generated-{n}"), properties],
                )
                .await
                .expect("the row");
            assert!(
                row.get::<_, bool>(0),
                "{properties} stored {}",
                row.get::<_, String>(1)
            );
        }
    }
    both.stop().await;
}
