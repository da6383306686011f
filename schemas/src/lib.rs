//! The exposure record: the one definition every stage of the pipeline shares.
//!
//! This crate owns what an exposure *is*:
//!
//! - [`Normalizer`] turns the JSON object a GrowthBook SDK callback POSTs into an
//!   [`Exposure`], enforcing the field rules of DESIGN.md §3 (user id alternatives,
//!   length, size and depth limits, `variation_id` string|int → string, the timestamp
//!   skew window, `event_id` or a server UUIDv7, unknown fields kept in `extra`).
//!   Every rejection is a [`FieldError`] that names the field, so the HTTP API can tell
//!   the caller exactly what to fix. [`Normalizer::encode`] is ingest's hot path: one
//!   event's JSON text straight to its Kafka value, byte for byte what `normalize`
//!   and serialising give, without building the record when a scan of the text
//!   (`json_scan`) shows it can be kept as written.
//! - [`Exposure`] is the normalised record. Its JSON form is the Kafka message value the
//!   ingest API produces and the sink consumes.
//! - [`IpPolicy`] is the privacy policy for the `forwarded_for` attribute.
//! - [`loadable`] is the one definition of what every warehouse can store (no NUL
//!   characters, byte limits, JSON ≤ 65,535 bytes, numbers a double can hold), which the
//!   normaliser enforces, so an event answered `200` never fails a load. `attributes`
//!   and `extra` keep the client's JSON verbatim: serde_json's `arbitrary_precision`
//!   (enabled for the workspace) keeps every number as the digits that were sent.
//!
//! - [`LakeRow`] reads a Kafka value straight into the lake's row (borrowing from the
//!   message, checking it by the loadable rules): the sink's hot path.
//! - [`COLUMNS`] is the exposure table, from which [`arrow_schema`] (the lake's Parquet
//!   schema) is generated and [`ExposureBatchBuilder`] fills Arrow columns; [`ddl`]
//!   generates the warehouse tables and GrowthBook views from the same list, and
//!   [`ledger`] the SQL both warehouse loaders share (ledger, JSON cast, literals).
//! - [`lake_layout`] is where everything is in the lake (data files, dead letters, their
//!   hour partitions), what a file's Parquet metadata says of its row range, and the
//!   file record the sink announces: the sink writes by it, the load stage and
//!   `reconcile` read by it.
//! - [`external`] prints the lake itself as an external table (Athena, Redshift
//!   Spectrum), its columns generated from the same Arrow schema as the Parquet files.

mod columns;
pub mod ddl;
mod dialect;
mod error;
pub mod external;
mod json_scan;
pub mod json_schema;
mod lake_batch;
pub mod lake_layout;
mod lake_row;
pub mod ledger;
pub mod loadable;
mod normalize;
mod privacy;
mod record;
#[cfg(test)]
mod test_values;
mod timestamp;
pub mod tracked;

pub use columns::{
    arrow_schema, Column, ColumnType, TableDef, COLUMNS, EXPOSURES, LAKE_SCHEMA_VERSION,
    PROMOTED_BOOLEAN_ATTRIBUTE, PROMOTED_TEXT_ATTRIBUTES, TABLES,
};
pub use error::{ErrorCode, FieldError};
pub use lake_batch::ExposureBatchBuilder;
pub use lake_row::{LakeRow, RowError};
pub use normalize::{EncodeError, EncodedExposure, Limits, Normalizer};
pub use privacy::IpPolicy;
pub use record::Exposure;
