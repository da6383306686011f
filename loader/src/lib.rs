//! The loader stages of the exposures pipeline.
//!
//! - `sink`: consumes the `exposures` topic and writes hour-partitioned Parquet objects to
//!   the lake (S3 or a local directory), exactly once, announcing each file on
//!   `exposures.files` (DESIGN.md §4).
//! - `load`: consumes `exposures.files` and loads the objects into the warehouse —
//!   Redshift through the Data API, or PostgreSQL — with a ledger that makes reloads
//!   harmless (DESIGN.md §5).
//!
//! Neither stage exists yet: they are tracked as their own issues and land here. Until then
//! this crate deliberately exports nothing, so nothing can call a stage that is not built.
