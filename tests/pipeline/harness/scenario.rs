//! A loading scenario: a lake side (Kafka + S3), a warehouse — PostgreSQL, or Redshift
//! through the Data API emulator over a PostgreSQL — and the loader, `status` and
//! `reconcile` configured for them from flags. Either way the rows end up in
//! [`Scenario::pg`], where the test reads them. [`on_both_warehouses!`] runs one scenario
//! as two tests, one per warehouse.

use std::time::{Duration, Instant};

use loader::load::{LoadConfig, LoadError, RedshiftArgs};
use loader::sink::file::{OpenFile, ParquetCodec};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use schemas::lake_layout::{FileKey, FileRecord, Hour};

use super::kafka::{read_exactly, record_count};
use super::lake::{produce, start_sink, wait_committed, wait_committed_on, Lakeside};
use super::postgres::{assert_warehouse_exact, Pg};
use super::redshift_emulator::DataApi;
use super::DEADLINE;

/// Which warehouse a scenario loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Postgres,
    Redshift,
}

/// Runs `scenario(kind)` as two tests, `postgres_name` and `redshift_name` (the
/// scenario's doc comment says what they prove).
macro_rules! on_both_warehouses {
    ($scenario:ident => $postgres:ident, $redshift:ident) => {
        #[tokio::test]
        async fn $postgres() {
            $scenario($crate::harness::scenario::Kind::Postgres).await;
        }

        #[tokio::test]
        async fn $redshift() {
            $scenario($crate::harness::scenario::Kind::Redshift).await;
        }
    };
}
pub(crate) use on_both_warehouses;

/// The schema every scenario loads into.
pub(crate) const SCHEMA: &str = "analytics";

pub(crate) struct Scenario {
    pub side: Lakeside,
    pub pg: Pg,
    /// The Data API emulator in front of `pg`, when the scenario loads Redshift.
    pub data_api: Option<DataApi>,
}

impl Scenario {
    pub async fn start(kind: Kind) -> Scenario {
        let side = Lakeside::new().await;
        let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
        let data_api = match kind {
            Kind::Postgres => None,
            Kind::Redshift => Some(DataApi::start(pg.url(), side.lake_args().aws_options()).await),
        };
        Scenario { side, pg, data_api }
    }

    /// The emulator of a Redshift scenario.
    pub fn data_api(&self) -> &DataApi {
        self.data_api.as_ref().expect("a Redshift scenario")
    }

    /// `--schema` and `--warehouse` (Redshift's through the emulator).
    fn warehouse_flags(&self) -> Vec<String> {
        let mut flags = vec!["--schema".to_owned(), SCHEMA.into(), "--warehouse".into()];
        match &self.data_api {
            Some(data_api) => flags.extend([
                data_api.warehouse_url(),
                "--redshift-endpoint".into(),
                data_api.endpoint.clone(),
                "--statement-timeout".into(),
                "60s".into(),
            ]),
            None => flags.push(self.pg.url()),
        }
        flags
    }

    /// The loader's configuration, in consumer group `group`: small batches, a short
    /// interval.
    pub fn load_config(&self, group: &str) -> LoadConfig {
        let mut flags = self.kafka_flags(&["--files-topic", &self.side.files_topic, "--group", group]);
        flags.extend(
            [
                "--lake",
                Lakeside::LAKE,
                "--batch-files",
                "7",
                "--batch-interval",
                "300ms",
                "--iam-role",
                "arn:aws:iam::123456789012:role/exposures-copy",
            ]
            .map(String::from),
        );
        flags.extend(self.warehouse_flags());
        let mut config: LoadConfig = super::flags(&flags);
        config.lake = self.side.lake_args();
        with_test_credentials(&mut config.redshift);
        config
    }

    /// What `exposures status` is given for this scenario.
    pub fn status_config(&self) -> loader::status::StatusConfig {
        let side = &self.side;
        let mut flags = self.kafka_flags(&[
            "--topic",
            &side.kafka.topic,
            "--sink-group",
            "sink",
            "--files-topic",
            &side.files_topic,
            "--load-group",
            "load",
            "--data-dir",
            "./no-up-here",
        ]);
        flags.extend(self.warehouse_flags());
        let mut config: loader::status::StatusConfig = super::flags(&flags);
        with_test_credentials(&mut config.redshift);
        config
    }

    /// What `exposures reconcile` (with `--repair` if `repair`) is given: the last 7
    /// days, no grace (the test's objects were all just written).
    pub fn reconcile_config(&self, repair: bool) -> loader::reconcile::ReconcileConfig {
        let mut flags = self.kafka_flags(&[
            "--files-topic",
            &self.side.files_topic,
            "--lake",
            Lakeside::LAKE,
            "--since",
            "7d",
            "--grace",
            "0s",
        ]);
        if repair {
            flags.push("--repair".into());
        }
        flags.extend(self.warehouse_flags());
        let mut config: loader::reconcile::ReconcileConfig = super::flags(&flags);
        config.lake = self.side.lake_args();
        with_test_credentials(&mut config.redshift);
        config
    }

    fn kafka_flags(&self, more: &[&str]) -> Vec<String> {
        let mut flags = vec!["--brokers".to_owned(), self.side.kafka.brokers()];
        flags.extend(more.iter().map(|flag| flag.to_string()));
        flags
    }

    /// The loader of [`Scenario::load_config`] in group `load`, as a task.
    pub fn start_loader(&self) -> RunningLoader {
        RunningLoader::start(self.load_config("load"))
    }

    /// A client of the PostgreSQL the rows end up in.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.pg.client().await
    }

    /// The count `sql` answers on a new connection; -1 while the server is unreachable.
    pub async fn count(&self, sql: &str) -> i64 {
        match tokio_postgres::connect(&self.pg.url(), tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                count(&client, sql).await
            }
            Err(_) => -1,
        }
    }

    /// Waits until `sql` counts exactly `expected`; counting more fails at once.
    pub async fn wait_count(&self, sql: &str, expected: i64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let n = self.count(sql).await;
            if n == expected {
                return;
            }
            assert!(n <= expected, "{sql}: {n}, expected {expected}");
            assert!(Instant::now() < deadline, "{sql}: {n}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
        }
    }

    /// Waits until `sql` counts at least `at_least`; `what` says what did not happen.
    pub async fn wait_at_least(&self, sql: &str, at_least: i64, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        while self.count(sql).await < at_least {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
        }
    }

    /// Waits until loader group `group` has committed `records` file records (the files
    /// topic starts at offset 0): it has dealt with every one of them.
    pub async fn wait_loader_committed(&self, group: &str, records: i64) {
        let side = &self.side;
        wait_committed_on(&side.kafka.brokers(), &side.files_topic, group, records).await;
    }

    /// Waits until `analytics.exposures` holds exactly `expected` rows.
    pub async fn wait_rows(&self, expected: i64) {
        self.wait_count("SELECT count(*) FROM analytics.exposures", expected)
            .await;
    }

    /// The table holds exactly `events`, each once, all in GrowthBook's view.
    pub async fn assert_exact(&self, events: &[schemas::Exposure]) {
        assert_warehouse_exact(&self.pg, events).await;
    }

    /// Sinks `events` into the lake and returns the file records announced for them.
    pub async fn sink(&self, events: &[schemas::Exposure]) -> Vec<serde_json::Value> {
        self.sink_after_foreign_records(events, 0).await
    }

    /// Sinks `events`, and `foreign` records already produced, into the lake, in files
    /// of at most 300 rows.
    pub async fn sink_after_foreign_records(
        &self,
        events: &[schemas::Exposure],
        foreign: i64,
    ) -> Vec<serde_json::Value> {
        let side = &self.side;
        produce(&side.kafka.brokers(), &side.kafka.topic, events).await;
        let mut config = side.config("sink");
        config.files.max_file_rows = 300;
        let sink = start_sink(config);
        wait_committed(side, "sink", events.len() as i64 + foreign).await;
        sink.stop().await;
        let files = record_count(&side.kafka.brokers(), &side.files_topic);
        read_exactly(&side.kafka.brokers(), &side.files_topic, files as usize)
            .await
            .into_iter()
            .map(|r| r.value)
            .collect()
    }

    /// Produces `payload` with `key` straight to the exposures topic, as a foreign
    /// producer would.
    pub async fn produce_raw(&self, key: &str, payload: &[u8]) {
        self.produce_raw_repeated(key, payload, 1).await;
    }

    /// [`Scenario::produce_raw`], `times` times.
    pub async fn produce_raw_repeated(&self, key: &str, payload: &[u8], times: usize) {
        let producer = self.producer();
        for _ in 0..times {
            producer
                .send(
                    FutureRecord::to(&self.side.kafka.topic).key(key).payload(payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
        }
    }

    /// Writes `events` as one Parquet file of partition 0 starting at `first_offset`,
    /// compressed with `codec`, as another writer of the lake would, without announcing
    /// it; returns the record the sink would announce.
    pub async fn write_file(
        &self,
        events: &[schemas::Exposure],
        first_offset: i64,
        codec: ParquetCodec,
    ) -> FileRecord {
        let topic = &self.side.kafka.topic;
        let hour = Hour::of_millis(events[0].received_at.timestamp_millis());
        let mut file = OpenFile::new(&schemas::EXPOSURES, 0, hour, first_offset, topic, codec);
        for (offset, event) in (first_offset..).zip(events) {
            file.append(&schemas::LakeRow::from_exposure(event), offset)
                .expect("encoded");
        }
        let encoded = file.encode().expect("parquet");
        let lake = self.side.lake().await;
        let parts = FileKey {
            table: &schemas::EXPOSURES,
            hour,
            partition: 0,
            first_offset,
        };
        let key = lake.key(&parts.data_key());
        let stored = lake.put(&key, encoded.bytes).await.expect("put");
        FileRecord {
            lake: lake.describe(),
            bucket: lake.bucket(),
            key,
            size: stored.size,
            etag: stored.etag,
            rows: events.len() as u64,
            topic: topic.clone(),
            partition: 0,
            first_offset,
            last_offset: first_offset + events.len() as i64 - 1,
            hour: hour.label(),
            written_at: chrono::Utc::now(),
            rejected_key: None,
            rejected_rows: 0,
            table: "exposures".into(),
        }
    }

    /// [`Scenario::write_file`], then announces the file as the sink would.
    pub async fn place_file(&self, events: &[schemas::Exposure], first_offset: i64, codec: ParquetCodec) {
        let record = self.write_file(events, first_offset, codec).await;
        self.announce(&serde_json::to_value(&record).expect("json")).await;
    }

    /// Announces `record` (a file record, or something posing as one) on the files
    /// topic.
    pub async fn announce(&self, record: &serde_json::Value) {
        let topic = self.side.files_topic.clone();
        let key = record["key"].as_str().expect("key").to_owned();
        self.send(&topic, &key, record.to_string().as_bytes()).await;
    }

    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.side.kafka.brokers())
            .create()
            .expect("producer")
    }

    /// Announces `records` on the files topic through one producer.
    pub async fn announce_all(&self, records: &[FileRecord]) {
        let producer = self.producer();
        for record in records {
            let payload = serde_json::to_vec(record).expect("json");
            producer
                .send(
                    FutureRecord::to(&self.side.files_topic)
                        .key(&record.key)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("announced");
        }
    }

    async fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        self.producer()
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
}

/// The emulator's credentials, which no flag gives.
fn with_test_credentials(redshift: &mut RedshiftArgs) {
    redshift.redshift_static_credentials = Some(("test".into(), "test".into()));
}

/// The count `sql` answers on `client`; -1 if the query fails.
pub(crate) async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .map(|row| row.get::<_, i64>(0))
        .unwrap_or(-1)
}

/// `exposures load` as a task of this test.
pub(crate) struct RunningLoader {
    stop: stage::Shutdown,
    task: tokio::task::JoinHandle<Result<(), LoadError>>,
}

impl RunningLoader {
    pub fn start(config: LoadConfig) -> RunningLoader {
        let stop = stage::Shutdown::new();
        let task = tokio::spawn(loader::load::run(config, stop.clone()));
        RunningLoader { stop, task }
    }

    /// Asks it to stop and asserts it stopped cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("loader task").expect("loader");
    }

    /// Kills it where it is: the task is dropped mid-work, and whatever transaction it
    /// had open is rolled back with its connection.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits (within the deadline) for it to end by itself, and returns its error.
    pub async fn failure(self) -> LoadError {
        let ended = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the loader ended instead of retrying")
            .expect("loader task");
        ended.expect_err("a failure, not a clean stop")
    }
}
