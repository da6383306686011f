//! End-to-end tests of the pipeline over real protocols (one test binary, so the
//! workspace links it once). See each module's doc for what it proves.

mod delivery_faults;
mod infra;
mod ingest_api;
mod load;
mod postgres;
mod redshift_emulator;
mod sdk_callers;
mod sink;
mod support;
mod up_process;
