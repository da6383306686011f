//! End-to-end tests of the pipeline over real protocols (one test binary, so the
//! workspace links it once). See each module's doc for what it proves; the fixtures they
//! share are in `harness`.

mod chaos;
mod cli;
mod delivery_faults;
mod embedded_broker;
mod harness;
mod hostile;
mod infra;
mod ingest_api;
mod lake_table;
mod load;
mod reconcile;
mod sdk_callers;
mod sink;
mod track;
mod up_process;
mod verbatim;
