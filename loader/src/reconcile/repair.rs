//! `--repair`: announcing the objects with no ledger row, with file records built from
//! the objects themselves.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::lake_layout::{DeadLetter, FileKey, FileRecord};
use schemas::EXPOSURES;
use stage::ClientRole;

use super::{LakeObject, ReconcileConfig, ReconcileError, Report, ANNOUNCE_TIMEOUT};
use crate::lake::{Lake, LakeError};

/// The key of an object's dead-letter file.
pub(super) fn rejected_key(lake: &Lake, file: &FileKey) -> String {
    lake.key(&file.dead_letter_key())
}

/// Lines of an object's dead-letter file; `None` if it has none. A range's dead letters
/// go with its `exposures` file only.
pub(super) async fn count_dead_letters(lake: &Lake, file: &FileKey) -> Result<Option<u64>, LakeError> {
    if file.table != &EXPOSURES {
        return Ok(None);
    }
    match lake.get(&rejected_key(lake, file)).await {
        Ok(body) => Ok(Some(DeadLetter::lines_of(&body).count() as u64)),
        Err(LakeError::Missing(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The file record of a lake object, built from the object itself.
async fn record_of(lake: &Lake, key: &str, object: &LakeObject) -> Result<FileRecord, ReconcileError> {
    let bad = |why: String| ReconcileError::Object {
        key: key.to_owned(),
        why,
    };
    let range = object.range.clone().map_err(bad)?;
    let stored = lake
        .head(key)
        .await?
        .ok_or_else(|| bad("gone from the lake".into()))?;
    let (rejected_key, rejected_rows) = match count_dead_letters(lake, &object.parts).await? {
        Some(rows) => (Some(rejected_key(lake, &object.parts)), rows),
        None => (None, 0),
    };
    Ok(FileRecord {
        lake: lake.describe(),
        bucket: lake.bucket(),
        key: key.to_owned(),
        size: stored.size,
        etag: stored.etag,
        rows: range.rows,
        topic: range.topic,
        partition: range.partition,
        first_offset: range.first_offset,
        last_offset: range.last_offset,
        hour: object.parts.hour.label(),
        written_at: object.listed.last_modified.unwrap_or_else(Utc::now),
        rejected_key,
        rejected_rows,
        table: object.parts.table.name.to_owned(),
    })
}

/// Announces the objects of list 1 among `objects` (one table's; quarantined ones only
/// with --retry-quarantined).
pub(super) async fn repair(
    config: &ReconcileConfig,
    lake: &Lake,
    objects: &BTreeMap<String, LakeObject>,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let wanted: BTreeSet<String> = report
        .not_loaded
        .iter()
        .filter(|n| !n.quarantined || config.retry_quarantined)
        .filter(|n| n.announced.is_none() && objects.contains_key(&n.key))
        .map(|n| n.key.clone())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let producer: FutureProducer<stage::StageContext> = config
        .kafka
        .create(
            ClientRole::Producer {
                client_id: "exposures-reconcile",
                message_timeout: ANNOUNCE_TIMEOUT,
            },
            &[],
        )
        .map_err(|e| ReconcileError::Kafka(e.to_string()))?;
    for entry in report.not_loaded.iter_mut().filter(|n| wanted.contains(&n.key)) {
        let Some(object) = objects.get(&entry.key) else {
            continue;
        };
        let result = match record_of(lake, &entry.key, object).await {
            Ok(record) => match serde_json::to_vec(&record) {
                Ok(payload) => producer
                    .send(
                        FutureRecord::to(&config.files_topic)
                            .key(&record.key)
                            .payload(&payload),
                        ANNOUNCE_TIMEOUT,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| format!("not announced: {error}")),
                Err(error) => Err(error.to_string()),
            },
            Err(error @ ReconcileError::Object { .. }) => Err(error.to_string()),
            Err(error) => return Err(error),
        };
        if let Err(why) = &result {
            tracing::warn!(key = %entry.key, %why, "not re-announced");
        }
        entry.announced = Some(result);
    }
    Ok(())
}
