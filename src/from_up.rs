//! `status` and `reconcile` next to a running `exposures up`: every address they were not
//! given (on the command line or in the environment) comes from the endpoints `up`
//! recorded in its data directory, so they need no flags there.

use anyhow::{bail, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use loader::reconcile::ReconcileConfig;
use loader::status::{StatusConfig, UpEndpoints};

/// Whether `id` took its default (neither the command line nor the environment gave it).
fn defaulted(given: &ArgMatches, id: &str) -> bool {
    !matches!(
        given.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Takes every address `status` was not given from the endpoints a running `up` recorded
/// in `--data-dir`, if there are any.
pub fn fill_in_status(config: &mut StatusConfig, given: &ArgMatches) {
    let defaulted = |id: &str| defaulted(given, id);
    let Some(up) = UpEndpoints::read(&config.data_dir) else {
        if defaulted("brokers") {
            eprintln!(
                "note: no running `exposures up` recorded in {}; asking the brokers at {} (give --brokers, \
                 or --data-dir of the up to look at)",
                config.data_dir.display(),
                config.kafka.brokers
            );
        }
        return;
    };
    if defaulted("brokers") {
        config.kafka = stage::KafkaArgs::plaintext(up.brokers);
        if defaulted("topic") {
            config.topic = up.topic;
        }
        if defaulted("files_topic") {
            config.files_topic = up.files_topic;
        }
        if defaulted("sink_group") {
            config.sink_group = up.sink_group;
        }
        if defaulted("load_group") {
            config.load_group = up.load_group;
        }
    }
    if defaulted("ingest_url") && config.ingest_url.is_none() {
        config.ingest_url = Some(up.api);
    }
    if defaulted("warehouse") && config.warehouse.warehouse.is_none() {
        config.warehouse.warehouse = up.warehouse;
        if defaulted("schema") {
            config.warehouse.schema = up.schema;
        }
    }
}

/// Takes the lake (with the embedded S3 server's address and credentials), the
/// warehouse and the brokers `reconcile` was not given from a running `up`; without one,
/// a lake must be given.
pub fn fill_in_reconcile(config: &mut ReconcileConfig, given: &ArgMatches) -> Result<()> {
    let defaulted = |id: &str| defaulted(given, id);
    match UpEndpoints::read(&config.data_dir) {
        Some(up) => {
            if defaulted("lake") && !up.lake.is_empty() {
                config.lake = loader::lake::embedded::lake_args(&up.lake, &up.s3_endpoint);
            }
            if defaulted("warehouse") && config.warehouse.warehouse.is_none() {
                config.warehouse.warehouse = up.warehouse;
                if defaulted("schema") {
                    config.warehouse.schema = up.schema;
                }
            }
            if defaulted("brokers") {
                config.kafka = stage::KafkaArgs::plaintext(up.brokers);
                if defaulted("files_topic") {
                    config.files_topic = up.files_topic;
                }
            }
        }
        None if config.lake.url.is_empty() => bail!(
            "no lake given and no running `exposures up` recorded in {}: pass --lake (the sink's, \
             s3://BUCKET[/PREFIX] or file:///DIR) and --warehouse, or --data-dir of the up to look at",
            config.data_dir.display()
        ),
        None => {}
    }
    Ok(())
}
