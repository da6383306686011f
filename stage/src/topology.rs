//! The names the stages must agree on: the topics between them and the consumer groups of
//! the sink and the loader. Every command's flags default to these, and `exposures up`
//! records them for `status` and `reconcile`; a deployment that renames one passes the
//! same flag to every command that has it.

/// Ingest produces exposures here; the sink consumes them (`--topic`).
pub const EXPOSURES_TOPIC: &str = "exposures";
/// The sink announces each file it wrote here; the loader consumes them
/// (`--files-topic`).
pub const FILES_TOPIC: &str = "exposures.files";
/// The sinks' consumer group (`sink --group`, `status --sink-group`).
pub const SINK_GROUP: &str = "exposures-sink";
/// The loaders' consumer group (`load --group`, `status --load-group`).
pub const LOAD_GROUP: &str = "exposures-load";
