use super::*;
use crate::COLUMNS;

#[test]
fn stage_columns_match_the_parquet_schema_by_position() {
    let stage = stage_table(Dialect::Redshift, "s");
    let inner = stage
        .strip_prefix("CREATE TEMP TABLE s (")
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("stage DDL shape");
    let stage_names: Vec<&str> = inner
        .split(", ")
        .map(|column| column.split(' ').next().unwrap_or_default())
        .collect();
    let parquet_names: Vec<String> = crate::arrow_schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    assert_eq!(stage_names, parquet_names);
    assert!(inner.contains("attributes VARCHAR(65535)"), "{inner}");
    assert!(
        !inner.contains("SUPER"),
        "COPY cannot fill SUPER from Parquet text"
    );
}

#[test]
fn start_up_creates_what_is_missing_and_replaces_only_stale_owned_views() {
    let row = |kind: &str, name: &str, owned: &str, comment: Option<&str>| ExistingObject {
        kind: kind.to_owned(),
        name: name.to_owned(),
        owned: owned == "t",
        comment: comment.map(str::to_owned),
    };
    let (run, warnings) = plan(Dialect::Postgres, "a", &[], &[]);
    assert_eq!(
        run,
        statements(Dialect::Postgres, "a"),
        "a new schema gets everything"
    );
    assert!(warnings.is_empty());
    let marker = |name: &str| {
        objects(Dialect::Postgres, "a")
            .into_iter()
            .find(|o| o.name == name)
            .map(|o| o.marker())
            .expect("view")
    };
    let growthbook = marker("exposures_growthbook");
    let events = marker("exposure_events");
    let tables = [
        row("schema", "a", "t", None),
        row("table", "exposures", "t", None),
        row("index", "exposures_event_id", "t", None),
        row("index", "exposures_user_time", "t", None),
        row("table", "feature_usage", "t", None),
        row("index", "feature_usage_event_id", "t", None),
        row("index", "feature_usage_user_time", "t", None),
        row("table", "events", "t", None),
        row("index", "events_event_id", "t", None),
        row("index", "events_user_time", "t", None),
        row("table", "exposures_loads", "t", None),
    ];
    let with_views =
        |views: [ExistingObject; 2]| -> Vec<ExistingObject> { tables.iter().cloned().chain(views).collect() };

    let current = with_views([
        row("view", "exposures_growthbook", "f", Some(&growthbook)),
        row("view", "exposure_events", "t", Some(&events)),
    ]);
    let (run, warnings) = plan(Dialect::Postgres, "a", &current, &[]);
    assert_eq!(run.len(), 1, "only the missing table: {run:#?}");
    assert!(run[0].starts_with("CREATE TABLE IF NOT EXISTS a.exposures_rejected"));
    assert!(warnings.is_empty(), "current views are left alone, owned or not");

    // A warehouse made before the tracking plugin's tables: they (and their indexes) are
    // made on the next start, nothing else is touched.
    let before_tracking: Vec<ExistingObject> = current
        .iter()
        .filter(|object| !object.name.starts_with("feature_usage") && !object.name.starts_with("events"))
        .cloned()
        .collect();
    let (run, _) = plan(Dialect::Postgres, "a", &before_tracking, &[]);
    let made: Vec<&str> = run
        .iter()
        .map(|statement| statement.split(" (").next().unwrap_or_default())
        .collect();
    assert_eq!(
        made,
        [
            "CREATE TABLE IF NOT EXISTS a.feature_usage",
            "CREATE UNIQUE INDEX IF NOT EXISTS feature_usage_event_id ON a.feature_usage",
            "CREATE INDEX IF NOT EXISTS feature_usage_user_time ON a.feature_usage",
            "CREATE TABLE IF NOT EXISTS a.events",
            "CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON a.events",
            "CREATE INDEX IF NOT EXISTS events_user_time ON a.events",
            "CREATE TABLE IF NOT EXISTS a.exposures_rejected",
        ]
    );

    let stale = with_views([
        row(
            "view",
            "exposures_growthbook",
            "f",
            Some("exposures ddl 0000000000000000"),
        ),
        row("view", "exposure_events", "t", None),
    ]);
    let readers = [
        ViewReader {
            view_name: "exposure_events".into(),
            reader: "IAMR:growthbook".into(),
        },
        ViewReader {
            view_name: "exposure_events".into(),
            reader: "analyst\"s".into(),
        },
        ViewReader {
            view_name: "exposures_growthbook".into(),
            reader: "someone".into(),
        },
    ];
    let (run, warnings) = plan(Dialect::Postgres, "a", &stale, &readers);
    assert_eq!(run.len(), 5, "{run:#?}");
    assert_eq!(run[1], "DROP VIEW a.exposure_events");
    assert!(run[2].starts_with("CREATE OR REPLACE VIEW a.exposure_events"));
    assert_eq!(run[3], format!("COMMENT ON VIEW a.exposure_events IS '{events}'"));
    assert_eq!(
        run[4], "GRANT SELECT ON a.exposure_events TO \"IAMR:growthbook\", \"analyst\"\"s\"",
        "its readers, and only its, get their grant back"
    );
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("a.exposures_growthbook is not the current definition and belongs to another")
    );
}

#[test]
fn statements_split_the_script_without_comments() {
    let statements = statements(Dialect::Redshift, "analytics");
    assert_eq!(statements.len(), 10, "{statements:#?}");
    assert_eq!(statements[0], "CREATE SCHEMA IF NOT EXISTS analytics");
    assert!(statements[1].ends_with("SORTKEY (exposed_at)"));
    assert!(statements
        .iter()
        .all(|s| !s.contains(';') && !s.starts_with("--")));
}

#[test]
fn redshift_table_snapshot() {
    assert_eq!(
        exposures_table(Dialect::Redshift, "analytics"),
        "CREATE TABLE IF NOT EXISTS analytics.exposures (
    event_id VARCHAR(128) NOT NULL,
    ds_user_id VARCHAR(256),
    anonymous_id VARCHAR(256),
    experiment_id VARCHAR(256) NOT NULL,
    variation_id VARCHAR(256) NOT NULL,
    exposed_at TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL,
    source VARCHAR(128),
    attributes SUPER,
    ds_session_id VARCHAR(256),
    geo_country_code VARCHAR(64),
    geo_city VARCHAR(256),
    currency_id VARCHAR(64),
    locale VARCHAR(64),
    platform VARCHAR(64),
    is_kf_verified BOOLEAN,
    user_agent VARCHAR(1024),
    extra SUPER,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL
)
DISTSTYLE KEY
DISTKEY (ds_user_id)
SORTKEY (exposed_at);
"
    );
}

#[test]
fn ledger_table_snapshot() {
    assert_eq!(
        loads_table(Dialect::Redshift, "analytics"),
        "CREATE TABLE IF NOT EXISTS analytics.exposures_loads (
    object_key VARCHAR(1024) NOT NULL,
    etag VARCHAR(1024) NOT NULL,
    size_bytes BIGINT NOT NULL,
    rows_in_file BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    batch_id VARCHAR(1024) NOT NULL,
    status VARCHAR(1024) NOT NULL,
    reason VARCHAR(1024),
    loaded_at TIMESTAMP NOT NULL,
    rows_rejected BIGINT NOT NULL
);
"
    );
    let postgres = loads_table(Dialect::Postgres, "public");
    assert!(postgres.contains("    object_key TEXT NOT NULL,\n"), "{postgres}");
    assert!(
        postgres.contains("    loaded_at TIMESTAMPTZ NOT NULL,\n"),
        "{postgres}"
    );
    assert!(
        postgres.contains("    rows_rejected BIGINT NOT NULL\n"),
        "{postgres}"
    );
}

#[test]
fn postgres_table_snapshot() {
    let sql = exposures_table(Dialect::Postgres, "public");
    assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS public.exposures (\n    event_id TEXT NOT NULL,\n"));
    assert!(sql.contains("    exposed_at TIMESTAMPTZ NOT NULL,\n"));
    assert!(sql.contains("    attributes JSONB,\n"));
    assert!(script(Dialect::Postgres, "public")
        .contains("CREATE UNIQUE INDEX IF NOT EXISTS exposures_event_id ON public.exposures (event_id);"));
    assert!(!sql.contains("DISTKEY"));
}

#[test]
fn growthbook_view_snapshot() {
    assert_eq!(
        growthbook_view("analytics").trim_end(),
        "CREATE OR REPLACE VIEW analytics.exposures_growthbook AS
SELECT
    ds_user_id AS user_id,
    exposed_at AS \"timestamp\",
    experiment_id,
    variation_id,
    source,
    geo_country_code,
    geo_city,
    currency_id,
    locale,
    platform,
    is_kf_verified,
    ds_session_id
FROM analytics.exposures
WHERE ds_user_id IS NOT NULL;"
    );
}

#[test]
fn every_column_has_a_type_in_each_dialect_and_dimensions_exist() {
    for dialect in [Dialect::Redshift, Dialect::Postgres] {
        let table = exposures_table(dialect, "s");
        for column in COLUMNS {
            assert!(
                table.contains(&format!("    {} ", column.name)),
                "{dialect}: {}",
                column.name
            );
        }
    }
    for dimension in GROWTHBOOK_DIMENSIONS {
        assert!(COLUMNS.iter().any(|c| c.name == dimension), "{dimension}");
    }
    assert_eq!("Redshift".parse::<Dialect>(), Ok(Dialect::Redshift));
    assert!("mysql".parse::<Dialect>().is_err());
    assert!(script(Dialect::Postgres, "x").contains("CREATE SCHEMA IF NOT EXISTS x;"));
}

#[test]
fn the_tracking_plugins_tables_and_indexes_are_told_from_the_rest() {
    for name in [
        "feature_usage",
        "feature_usage_event_id",
        "events",
        "events_user_time",
    ] {
        assert!(is_tracked_object(name), "{name}");
    }
    for name in [
        "exposures",
        "exposure_events",
        "exposures_loads",
        "eventsx",
        "analytics",
    ] {
        assert!(!is_tracked_object(name), "{name}");
    }
}
