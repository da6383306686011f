//! The loader stages of the exposures pipeline.
//!
//! - [`sink`]: consumes the `exposures` topic and writes hour-partitioned Parquet objects
//!   to the [`lake`] (S3 or a local directory), exactly once, announcing each file on
//!   `exposures.files` as a file record. Where objects go and what they say of
//!   themselves is `schemas::lake_layout`, which the sink, load and reconcile share
//!   (none of them imports another).
//! - [`load`]: consumes `exposures.files` and loads the objects into the warehouse —
//!   Redshift through the Data API, or PostgreSQL — with a ledger that makes reloads
//!   harmless (DESIGN.md §5).
//! - [`aws`]: the one place AWS SDK clients are configured ([`aws::LakeArgs`] are the
//!   lake's S3 flags).
//! - [`status`]: `exposures status`, the lag of both stages and the warehouse's state,
//!   with the experiments' data-quality checks of [`quality`] (SRM, multiple exposures).
//! - [`reconcile`]: `exposures reconcile`, the lake against the ledger and the table,
//!   re-announcing objects never loaded (`--repair`).
//!
//! Kafka clients, retries and shutdown come from the `stage` crate, as in every stage.

pub mod aws;
pub mod lake;
pub mod load;
pub mod metrics;
pub mod quality;
pub mod reconcile;
pub mod sink;
pub mod status;
