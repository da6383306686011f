//! The sink's flags: where it reads and writes (`SinkConfig`), and when it closes a file
//! (`FileLimits`, shared with `exposures up`).

use std::time::Duration;

use clap::Args;
use stage::{Assignment, KafkaArgs};

use super::file::ParquetCodec;
use crate::lake::LakeArgs;

/// Where a test may make the sink stop dead, as if the process were killed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    AfterUpload,
    AfterAnnounce,
    AfterCommit,
}

#[derive(Debug, Clone, Args)]
pub struct SinkConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic of exposures to consume.
    #[arg(long, env = "EXPOSURES_TOPIC", default_value = stage::topology::EXPOSURES_TOPIC)]
    pub topic: String,

    /// Consumer group; run several sinks in one group to share partitions.
    #[arg(long, env = "EXPOSURES_SINK_GROUP", default_value = stage::topology::SINK_GROUP)]
    pub group: String,

    /// How the sink gets its partitions: `group` (share them with the group's other
    /// sinks; for Kafka clusters) or `all` (read every partition from the group's
    /// committed offsets, one sink per group; for the embedded broker of `dev-broker`).
    #[arg(long, env = "EXPOSURES_SINK_ASSIGNMENT", value_enum, default_value_t = Assignment::Group)]
    pub assignment: Assignment,

    /// Topic each written file is announced on (consumed by `exposures load`).
    #[arg(long, env = "EXPOSURES_FILES_TOPIC", default_value = stage::topology::FILES_TOPIC)]
    pub files_topic: String,

    #[command(flatten)]
    pub lake: LakeArgs,

    #[command(flatten)]
    pub files: FileLimits,

    /// Test hook: stop dead at this point of the first file closed.
    #[arg(skip)]
    pub fault: Option<FaultPoint>,
}

/// `sink`'s bound on the bytes its open files hold together (`--max-buffered-bytes`).
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// `sink`'s `--flush-interval`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// When the sink closes a file, and how long the group waits for a silent member
/// (shared by `exposures sink` and `exposures up`).
#[derive(Debug, Clone, Args)]
pub struct FileLimits {
    /// Close a partition's file when its oldest row has waited this long. Default: 60 s
    /// for `sink` (fewer, larger files); 10 s under `up`, where rows should show soon.
    #[arg(long, env = "EXPOSURES_FLUSH_INTERVAL", value_parser = humantime::parse_duration)]
    pub flush_interval: Option<Duration>,

    /// Also close a partition's file once no record has come to it for this long (the
    /// traffic paused), instead of waiting out --flush-interval. Default: off for `sink`
    /// (larger files); 2 s under `up`, so a burst is queryable soon after it ends.
    #[arg(long, env = "EXPOSURES_FLUSH_WHEN_IDLE", value_parser = humantime::parse_duration)]
    pub flush_when_idle: Option<Duration>,

    /// Close a file at this many rows.
    #[arg(long, env = "EXPOSURES_MAX_FILE_ROWS", default_value_t = 1_000_000)]
    pub max_file_rows: usize,

    /// Close a file when it holds about this many bytes in memory: its Parquet so far
    /// (files are encoded as they grow) plus the rows not yet encoded. Bounds memory per
    /// assigned partition.
    #[arg(long, env = "EXPOSURES_MAX_FILE_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub max_file_bytes: usize,

    /// Close the largest open file when the open files of all assigned partitions
    /// together take this many bytes in memory, so memory is bounded whatever the number
    /// of partitions (--max-file-bytes bounds one file). Default: 256 MiB for `sink`,
    /// 32 MiB under `up`, which runs every stage in one process.
    #[arg(long, env = "EXPOSURES_MAX_BUFFERED_BYTES")]
    pub max_buffered_bytes: Option<usize>,

    /// How long the group waits for a silent sink (a killed process) before giving its
    /// partitions to another member (librdkafka `session.timeout.ms`).
    #[arg(long, env = "EXPOSURES_SESSION_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,

    /// Codec of the Parquet pages. snappy is read by Redshift COPY, Spectrum, Athena and
    /// DuckDB alike; zstd is smaller but Redshift Spectrum does not document it.
    #[arg(long, env = "EXPOSURES_COMPRESSION", value_enum, default_value_t = ParquetCodec::Snappy)]
    pub compression: ParquetCodec,
}

impl FileLimits {
    /// `--flush-interval`, or `sink`'s default.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval.unwrap_or(DEFAULT_FLUSH_INTERVAL)
    }
}
