//! `POST /track`, the endpoint GrowthBook's tracking plugin posts to, over real sockets
//! against a real Kafka-protocol broker: both SDK dialects, per-event judgement, the
//! client-key allow-list. The real plugins drive it in `sdk_callers.rs`.

use serde_json::{json, Value};

use crate::harness::api::{self, http, Server};
use crate::harness::kafka::{read_exactly, Kafka};
use crate::harness::lake::{start_sink, wait_committed};
use crate::harness::scenario::{on_both_warehouses, Kind, Scenario};

/// An experiment view as JS 1.8's plugin posts it.
fn js_exposure(user: &str, variation: &str) -> Value {
    json!({
        "event_name": "Experiment Viewed",
        "properties_json": {"experimentId": "checkout-button-color", "variationId": variation,
                            "hashAttribute": "user_id", "hashValue": user},
        "user_id": user, "device_id": format!("device-{user}"), "page_id": "p-1",
        "session_id": null, "utm_campaign": "winter",
        "sdk_language": "js", "sdk_version": "1.8.0", "url": "https://shop.example/cart",
        "context_json": {"country": "DE", "is_kf_verified": true}
    })
}

/// An experiment view as Python 4.0's plugin posts it.
fn python_exposure(user: &str, index: u32, key: &str) -> Value {
    json!({
        "event_name": "$$experiment_viewed",
        "properties_json": {"experiment_id": "checkout-button-color", "variation_id": index,
                            "variation_key": key, "in_experiment": true, "hash_used": true,
                            "hash_attribute": "user_id", "hash_value": user},
        "sdk_language": "python", "sdk_version": "4.0.0", "url": "",
        "context_json": {"country": "US"},
        "user_id": user, "device_id": null, "page_id": null, "session_id": null
    })
}

/// Posts `events` to `/track` the way the plugins do: a JSON array as `text/plain`.
async fn track(client: &reqwest::Client, server: &Server, query: &str, events: &Value) -> (u16, Value) {
    let response = client
        .post(format!("{}/track{query}", server.url))
        .header("content-type", "text/plain")
        .header("origin", "https://shop.example")
        .body(events.to_string())
        .send()
        .await
        .expect("POST /track");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn both_dialects_land_as_exposures_with_the_variation_key_and_a_bad_event_costs_only_itself() {
    let kafka = Kafka::new(2);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.client_keys = crate::harness::flags::<ingest::HttpConfig>(&[
        "--client-keys",
        "sdk-live=production,sdk-dev=staging",
    ])
    .client_keys;
    let server = Server::start(config).await;
    let client = http();

    // Nested past the JSON parser's depth limit: refused alone.
    let mut too_deep = json!("bottom");
    for _ in 0..200 {
        too_deep = json!([too_deep]);
    }
    let events = json!([
        js_exposure("u-js", "green"),
        {"event_name": "Experiment Viewed", "properties_json": {"variationId": "red"}, "user_id": "u-bad"},
        python_exposure("u-py", 2, "red"),
        {"event_name": "Feature Evaluated", "properties_json": {"feature": "free_shipping", "value": true}},
        "not an object",
        {"event_name": "Deep", "properties_json": {"deep": too_deep}},
    ]);
    // Python's json.dumps writes NaN for float("nan"): not JSON, so the body does not
    // parse; the array is split by structure and only that event is refused.
    let body = events.to_string();
    let body = format!(
        r#"{}, {{"event_name": "Purchase", "properties_json": {{"amount": NaN}}, "user_id": "u-nan"}}]"#,
        &body[..body.len() - 1]
    );
    let response = client
        .post(format!("{}/track?client_key=sdk-live", server.url))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("POST /track");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["rejected"], 4, "{answer}");
    let failures: Vec<(u64, &str)> = answer["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            (
                f["index"].as_u64().expect("index"),
                f["code"].as_str().expect("code"),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            (1, "missing_field"),
            (4, "not_an_object"),
            (5, "too_deep"),
            (6, "not_an_object")
        ]
    );
    assert_eq!(answer["failures"][0]["field"], "properties_json.experimentId");

    let records = read_exactly(&kafka.brokers(), &kafka.topic, 3).await;
    let feature = records
        .iter()
        .find(|r| r.value["$table"] == "feature_usage")
        .expect("the feature evaluation is a feature_usage row");
    assert_eq!(feature.value["feature_key"], "free_shipping");
    assert_eq!(feature.value["value"], true);
    assert_eq!(feature.value["environment"], "production");
    assert!(feature.value["event_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));
    let record = |user: &str| {
        records
            .iter()
            .find(|r| r.key == user && r.value.get("$table").is_none())
            .unwrap_or_else(|| panic!("{user} not in Kafka: {records:?}"))
            .value
            .clone()
    };
    let js = record("u-js");
    assert_eq!(js["ds_user_id"], "u-js");
    assert_eq!(js["anonymous_id"], "device-u-js");
    assert_eq!(js["experiment_id"], "checkout-button-color");
    assert_eq!(js["variation_id"], "green");
    assert_eq!(js["source"], "growthbook-js");
    assert_eq!(
        js["attributes"],
        json!({"country": "DE", "is_kf_verified": true, "user_id": "u-js",
               "device_id": "device-u-js", "page_id": "p-1", "utm_campaign": "winter"})
    );
    assert_eq!(js["extra"]["environment"], "production");
    assert_eq!(js["extra"]["hash_attribute"], "user_id");
    assert_eq!(js["extra"]["sdk_version"], "1.8.0");
    assert_eq!(js["extra"]["url"], "https://shop.example/cart");
    assert!(js["event_id"].as_str().is_some_and(|id| id.len() == 36), "{js}");

    let python = record("u-py");
    assert_eq!(python["variation_id"], "red", "the key, never the index");
    assert_eq!(python["extra"]["variation_index"], 2);
    assert_eq!(python["source"], "growthbook-python");
    assert_eq!(python["extra"]["in_experiment"], true);

    let metrics = server.metrics_text(&client).await;
    for series in [
        r#"exposures_ingest_track_events_total{kind="exposure",outcome="accepted"}"#,
        r#"exposures_ingest_track_events_total{kind="exposure",outcome="rejected"}"#,
        r#"exposures_ingest_track_events_total{kind="feature",outcome="accepted"}"#,
        r#"exposures_ingest_track_events_total{kind="unknown",outcome="rejected"}"#,
        r#"exposures_ingest_events_rejected_total{reason="not_an_object"}"#,
    ] {
        assert!(metrics.contains(series), "/metrics lacks {series}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_client_key_allow_list_decides_who_may_track() {
    let kafka = Kafka::new(1);
    let mut config = api::config(&kafka.brokers(), &kafka.topic);
    config.http.client_keys =
        crate::harness::flags::<ingest::HttpConfig>(&["--client-keys", "sdk-live=production"]).client_keys;
    let listed = Server::start(config).await;
    let client = http();
    let events = json!([js_exposure("u-1", "green")]);
    for query in ["?client_key=sdk-other", "", "?client_key="] {
        let (status, answer) = track(&client, &listed, query, &events).await;
        assert_eq!(status, 403, "{query}: {answer}");
        assert_eq!(answer["error"]["code"], "client_key_refused");
    }
    let (status, answer) = track(&client, &listed, "?client_key=sdk-live", &events).await;
    assert_eq!((status, &answer["accepted"]), (200, &json!(1)), "{answer}");
    listed.stop().await;

    // No allow-list: any key, no environment.
    let open = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let (status, answer) = track(&client, &open, "?client_key=anything", &events).await;
    assert_eq!(status, 200, "{answer}");
    let records = read_exactly(&kafka.brokers(), &kafka.topic, 2).await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.value["extra"]["environment"] == "production")
            .count(),
        1
    );
    open.stop().await;

    // Write keys without client keys: /track cannot be reached by the plugin, and says why.
    let mut keyed = api::config(&kafka.brokers(), &kafka.topic);
    keyed.http.write_keys = vec!["k-123".into()];
    let keyed = Server::start(keyed).await;
    let (status, answer) = track(&client, &keyed, "?client_key=sdk-live", &events).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--client-keys")),
        "{answer}"
    );
    keyed.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_an_array_of_events_is_refused_whole() {
    let kafka = Kafka::new(1);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let client = http();
    let url = format!("{}/track?client_key=k", server.url);
    for (body, status, code) in [
        ("[", 400, "malformed_json"),
        ("[]", 400, "empty_batch"),
        ("", 400, "empty_batch"),
    ] {
        let response = client
            .post(&url)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), status, "{body:?}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["error"]["code"], code, "{body:?}");
    }
    // The browser plugin's beacon: text/plain from another origin, no preflight.
    let response = client
        .post(&url)
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "https://shop.example")
        .body(json!([js_exposure("beacon", "green")]).to_string())
        .send()
        .await
        .expect("beacon");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    // An ingestorHost given with a trailing slash: the JS plugin posts to `//track`.
    let response = client
        .post(format!("{}//track?client_key=k", server.url))
        .header("content-type", "text/plain")
        .body(json!([js_exposure("slash", "green")]).to_string())
        .send()
        .await
        .expect("//track");
    assert_eq!(response.status(), 200);
    read_exactly(&kafka.brokers(), &kafka.topic, 2).await;
    server.stop().await;
}

on_both_warehouses!(tracked_rows_in_their_tables =>
    postgres_loads_every_tracked_event_into_its_table_exactly_once,
    redshift_loads_every_tracked_event_into_its_table_exactly_once);

/// Every event `/track` accepted — exposures, feature evaluations and custom events of
/// both SDKs, odd-but-legal values included — is a row of its table once, through the
/// same sink, lake and loader as `/exposure`'s.
async fn tracked_rows_in_their_tables(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let side = &scenario.side;
    let server = Server::start(api::config(&side.kafka.brokers(), &side.kafka.topic)).await;
    let client = http();
    let mut deep = json!("bottom");
    for _ in 0..30 {
        deep = json!({"next": deep});
    }
    let users: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("user-{i}"),
            1 => format!("ü-🚀-{i}"),
            2 => format!("quote\"back\\slash-{i}"),
            _ => format!("tab\tnewline\n-{i}"),
        })
        .collect();
    let mut batch = Vec::new();
    for (i, user) in users.iter().enumerate() {
        batch.push(js_exposure(user, "green"));
        batch.push(python_exposure(user, 1, "green"));
        batch.push(json!({
            "event_name": "Feature Evaluated",
            "properties_json": {"feature": "free_shipping", "source": "force", "value": {"tiers": [1, 12345678901234567890u64, 1.5e300]},
                                "ruleId": "fr_1", "variationId": ""},
            "user_id": user, "device_id": null, "page_id": null, "session_id": null,
            "sdk_language": "js", "sdk_version": "1.8.0", "url": format!("https://shop.example/{}", "p".repeat(3000)),
            "context_json": {"country": "DE", "deep": deep}
        }));
        batch.push(json!({
            "event_name": "$$feature_evaluated",
            "properties_json": {"feature_key": "checkout_button", "feature_value": "green", "source": "experiment",
                                "rule_id": "fr_2", "experiment_id": "checkout-button-color", "variation_id": 1,
                                "in_experiment": true},
            "sdk_language": "python", "sdk_version": "4.0.0", "url": "",
            "context_json": {}, "user_id": user, "device_id": null, "page_id": null, "session_id": null
        }));
        batch.push(json!({
            "event_name": if i % 2 == 0 { "Purchase" } else { "Grüße \u{1}🚀" },
            "properties_json": {"amount": i as f64 + 0.5, "note": "é".repeat(1000), "control": "\u{7}\u{1b}"},
            "user_id": user, "device_id": format!("d-{i}"), "page_id": "p", "session_id": "s",
            "page_title": "Cart", "utm_source": "newsletter",
            "sdk_language": "js", "sdk_version": "1.8.0", "url": "https://shop.example/cart",
            "context_json": {"country": "DE"}
        }));
    }
    for chunk in batch.chunks(50) {
        let (status, answer) = track(&client, &server, "?client_key=k", &json!(chunk)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["rejected"], 0, "{answer}");
    }
    let records = users.len() * 5;

    let sink = start_sink(side.config("sink"));
    let loader = scenario.start_loader();
    let n = users.len() as i64;
    scenario
        .wait_count("SELECT count(*) FROM analytics.exposures", 2 * n)
        .await;
    scenario
        .wait_count("SELECT count(*) FROM analytics.feature_usage", 2 * n)
        .await;
    scenario
        .wait_count("SELECT count(*) FROM analytics.events", n)
        .await;
    wait_committed(side, "sink", records as i64).await;
    for table in ["exposures", "feature_usage", "events"] {
        assert_eq!(
            scenario
                .count(&format!("SELECT count(DISTINCT event_id) FROM analytics.{table}"))
                .await,
            scenario
                .count(&format!("SELECT count(*) FROM analytics.{table}"))
                .await,
            "{table}: one row per event"
        );
    }
    // Every user's rows, with the values as sent.
    let pg = scenario.client().await;
    for user in &users {
        let features = pg
            .query(
                "SELECT feature_key, value::text, variation_id, extra::text, url FROM analytics.feature_usage \
                 WHERE user_id = $1 ORDER BY feature_key",
                &[user],
            )
            .await
            .expect("features");
        assert_eq!(features.len(), 2, "{user}");
        let (key, value, variation): (String, String, Option<String>) =
            (features[0].get(0), features[0].get(1), features[0].get(2));
        assert_eq!(key, "checkout_button");
        assert_eq!(value, "\"green\"");
        assert_eq!(variation, None, "Python's index is not the key");
        assert_eq!(
            features[0].get::<_, Option<String>>(3).as_deref(),
            Some(r#"{"variation_index": 1}"#)
        );
        let free: String = features[1].get(1);
        assert!(free.contains("12345678901234567890"), "{free}");
        assert_eq!(
            features[1].get::<_, Option<String>>(4).map(|url| url.len()),
            Some(3021)
        );
        let events = pg
            .query(
                "SELECT event_name, properties->>'note', properties->>'control' FROM analytics.events WHERE user_id = $1",
                &[user],
            )
            .await
            .expect("events");
        assert_eq!(events.len(), 1, "{user}");
        assert_eq!(events[0].get::<_, String>(1), "é".repeat(1000));
        assert_eq!(events[0].get::<_, String>(2), "\u{7}\u{1b}");
        let variations: Vec<String> = pg
            .query(
                "SELECT variation_id FROM analytics.exposures WHERE ds_user_id = $1",
                &[user],
            )
            .await
            .expect("exposures")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(variations, ["green", "green"], "{user}");
    }

    // `status` and `reconcile` cover the tracking tables too.
    let status = loader::status::gather(&scenario.status_config())
        .await
        .to_string();
    for line in [
        format!("analytics.feature_usage: {} rows, newest received_at", 2 * n),
        format!("analytics.events: {n} rows, newest received_at"),
    ] {
        assert!(status.contains(&line), "{line} not in:\n{status}");
    }
    let report = loader::reconcile::run(&scenario.reconcile_config(false)).await;
    assert_eq!(report.exit_code(), 0, "{report}");
    assert!(report.ledger_rows >= 3, "a file per table at least: {report}");
    pg.execute(
        "DELETE FROM analytics.feature_usage WHERE feature_key = 'free_shipping' AND user_id = 'user-0'",
        &[],
    )
    .await
    .expect("delete");
    let report = loader::reconcile::run(&scenario.reconcile_config(false)).await;
    assert_eq!(report.exit_code(), 1, "{report}");
    assert_eq!(report.mismatches.len(), 1, "{report}");
    assert!(
        report.mismatches[0].key.contains("/feature_usage/v1/"),
        "{report}"
    );

    loader.stop().await;
    sink.stop().await;
    server.stop().await;
}

on_both_warehouses!(a_users_own_events_table =>
    a_postgres_users_own_events_table_is_left_alone_and_exposures_still_load,
    a_redshift_users_own_events_table_is_left_alone_and_exposures_still_load);

/// A schema that already holds a table named `events` of the user's own: the loader
/// leaves it alone, keeps loading exposures, and quarantines the plugin's event files
/// with a reason that says what to do.
async fn a_users_own_events_table(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let pg = scenario.client().await;
    pg.batch_execute(
        "CREATE SCHEMA analytics; CREATE TABLE analytics.events (id integer, name text); \
         INSERT INTO analytics.events VALUES (1, 'mine')",
    )
    .await
    .expect("the user's table");
    let side = &scenario.side;
    let server = Server::start(api::config(&side.kafka.brokers(), &side.kafka.topic)).await;
    let client = http();
    let custom = json!({"event_name": "Purchase", "properties_json": {"amount": 1}, "user_id": "u-1"});
    let (status, answer) = track(
        &client,
        &server,
        "?client_key=k",
        &json!([js_exposure("u-1", "green"), custom]),
    )
    .await;
    assert_eq!((status, &answer["accepted"]), (200, &json!(2)), "{answer}");

    let sink = start_sink(side.config("sink"));
    let loader = scenario.start_loader();
    scenario
        .wait_count("SELECT count(*) FROM analytics.exposures", 1)
        .await;
    scenario
        .wait_count(
            "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'quarantined' \
             AND object_key LIKE '%/events/v1/%' AND reason LIKE '%analytics.events%'",
            1,
        )
        .await;
    let mine: Vec<(i32, String)> = pg
        .query("SELECT id, name FROM analytics.events", &[])
        .await
        .expect("the user's rows")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(mine, [(1, "mine".to_owned())], "the user's table is untouched");
    let status = loader::status::gather(&scenario.status_config())
        .await
        .to_string();
    assert!(status.contains("analytics.feature_usage: 0 rows"), "{status}");
    loader.stop().await;
    sink.stop().await;
    server.stop().await;
}

on_both_warehouses!(a_dead_lettered_tracked_row =>
    a_dead_lettered_tracked_row_reloads_into_its_own_postgres_table_once_fixed,
    a_dead_lettered_tracked_row_reloads_into_its_own_redshift_table_once_fixed);

/// A record of the plugin's tables that the sink could not make a row of (a foreign
/// producer's NUL) is dead-lettered like an exposure; fixed, `reload-rejected` puts it in
/// its own table, not in `exposures`.
async fn a_dead_lettered_tracked_row(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let poison = br#"{"$table":"events","event_id":"poison-1","received_at":"2026-12-05T08:00:00Z","event_name":"Pur\u0000chase","user_id":"u-9"}"#;
    scenario.produce_raw("u-9", poison).await;
    let sink = start_sink(scenario.side.config("sink"));
    let loader = scenario.start_loader();
    let rejected = "SELECT count(*) FROM analytics.exposures_rejected";
    scenario.wait_count(rejected, 1).await;
    loader.stop().await;
    sink.stop().await;

    let config = scenario.status_config();
    let reload = || loader::load::reload_rejected(&config.warehouse, &config.redshift);
    let again = reload().await.expect("reload");
    assert_eq!(
        (again.reloaded, again.still_refused),
        (0, 1),
        "refused until fixed"
    );
    let pg = scenario.client().await;
    pg.execute(
        r"UPDATE analytics.exposures_rejected SET raw_row = replace(raw_row, '\u0000', '')",
        &[],
    )
    .await
    .expect("fix");
    let fixed = reload().await.expect("reload");
    assert_eq!((fixed.reloaded, fixed.still_refused), (1, 0));
    assert_eq!(
        scenario
            .count("SELECT count(*) FROM analytics.events WHERE event_id = 'poison-1' AND event_name = 'Purchase'")
            .await,
        1
    );
    assert_eq!(
        scenario.count("SELECT count(*) FROM analytics.exposures").await,
        0
    );
    assert_eq!(scenario.count(rejected).await, 0);
}
