//! Tests of the spool: order, restart, position, crash points, corruption, capacity.

use std::fs::OpenOptions;

use super::*;

fn record(n: u32) -> SpoolRecord {
    SpoolRecord {
        key: format!("user-{}", n % 7).into_bytes(),
        timestamp_ms: 1_700_000_000_000 + i64::from(n),
        value: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

async fn drain(spool: &Spool) -> Vec<SpoolRecord> {
    let mut out = Vec::new();
    loop {
        let mut segments = spool.sealed_segments().unwrap();
        if segments.is_empty() {
            match spool.seal_or_clear().await.unwrap() {
                Some(id) => segments.push(id),
                None => return out,
            }
        }
        for id in segments {
            let records = spool.unreplayed(id).unwrap();
            if let Some((_, end)) = records.last() {
                spool.mark_replayed(id, *end, records.len() as u64);
            }
            out.extend(records.into_iter().map(|(r, _)| r));
            spool.remove_segment(id).unwrap();
        }
    }
}

/// A spool in a fresh directory holding records `0..count` in one sealed segment: the
/// directory, the spool and the segment's id.
async fn sealed_spool(count: u32) -> (tempfile::TempDir, Spool, u64) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append((0..count).map(record).collect()).await.unwrap();
    let id = spool.seal_or_clear().await.unwrap().unwrap();
    (dir, spool, id)
}

/// The records of segment `id` not yet replayed.
fn unreplayed_records(spool: &Spool, id: u64) -> Vec<SpoolRecord> {
    spool
        .unreplayed(id)
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect()
}

#[tokio::test]
async fn appends_replay_in_order_and_clear_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert!(!spool.has_backlog());
    let writes = (0..50u32).map(|n| {
        let spool = spool.clone();
        async move { spool.append(vec![record(n * 2), record(n * 2 + 1)]).await }
    });
    for result in futures::future::join_all(writes).await {
        result.unwrap();
    }
    assert!(spool.has_backlog());
    assert_eq!(spool.pending_records(), 100);
    let replayed = drain(&spool).await;
    assert_eq!(replayed.len(), 100);
    // Each append's pair stays adjacent and in order.
    for pair in replayed.chunks(2) {
        assert_eq!(pair[0].timestamp_ms + 1, pair[1].timestamp_ms);
    }
    assert!(!spool.has_backlog());
    assert_eq!(spool.pending_records(), 0);
}

#[tokio::test]
async fn reopen_replays_what_was_acknowledged_and_ignores_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append((0..10).map(record).collect()).await.unwrap();
        spool.close();
    }
    // Simulate a crash mid-write of an unacknowledged record.
    let segment = segment_path(dir.path(), 1);
    let mut tail = Vec::new();
    record(99).encode_into(&mut tail);
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&tail[..tail.len() - 3]).unwrap();

    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert!(spool.has_backlog());
    assert_eq!(spool.pending_records(), 10);
    spool.append(vec![record(10)]).await.unwrap();
    let replayed = drain(&spool).await;
    let expected: Vec<_> = (0..11).map(record).collect();
    assert_eq!(replayed, expected);
}

#[tokio::test]
async fn position_skips_what_was_already_replayed() {
    let (dir, spool, id) = sealed_spool(4).await;
    let records = spool.unreplayed(id).unwrap();
    spool.mark_replayed(id, records[1].1, 2);
    spool.close();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.pending_records(), 2);
    let left = unreplayed_records(&spool, id);
    assert_eq!(left, vec![record(2), record(3)]);
}

#[tokio::test]
async fn a_crash_while_deleting_a_segment_never_skips_later_records() {
    let (dir, spool, id) = sealed_spool(4).await;
    let records = spool.unreplayed(id).unwrap();
    spool.mark_replayed(id, records[3].1, 4);
    spool.close();
    // The crash point of the old order: segment deleted, its position still there.
    fs::remove_file(segment_path(dir.path(), id)).unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append((10..13).map(record).collect()).await.unwrap();
    let replayed = drain(&spool).await;
    assert_eq!(
        replayed,
        (10..13).map(record).collect::<Vec<_>>(),
        "every later record"
    );
}

#[tokio::test]
async fn a_tail_that_does_not_decode_is_set_aside() {
    let (dir, spool, id) = sealed_spool(3).await;
    let path = segment_path(dir.path(), id);
    let mut damaged = fs::read(&path).unwrap();
    damaged.extend_from_slice(b"\x20\x00\x00\x00garbage");
    fs::write(&path, &damaged).unwrap();
    assert_eq!(drain(&spool).await, (0..3).map(record).collect::<Vec<_>>());
    let kept = fs::read(dir.path().join("corrupt").join(format!("{id:020}.seg.tail"))).unwrap();
    assert_eq!(kept, b"\x20\x00\x00\x00garbage");
    assert!(!path.exists());
}

#[tokio::test]
async fn full_spool_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 100).unwrap();
    spool.append(vec![record(1)]).await.unwrap();
    let big = SpoolRecord {
        value: vec![b'x'; 200],
        ..record(2)
    };
    assert!(matches!(
        spool.append(vec![big]).await,
        Err(SpoolError::Full { .. })
    ));
}

/// When `replay.pos` cannot be written (a full disk; here its temporary file is a
/// directory), the replay still knows what Kafka acknowledged: nothing is sent twice
/// while the process runs, and the segment is deleted, which frees the disk.
#[tokio::test]
async fn replay_goes_on_when_the_position_cannot_be_saved() {
    let (dir, spool, id) = sealed_spool(4).await;
    fs::create_dir(dir.path().join(format!("{POSITION_FILE}.tmp"))).unwrap();
    let records = spool.unreplayed(id).unwrap();
    spool.mark_replayed(id, records[1].1, 2);
    assert!(
        read_position(dir.path()).is_none(),
        "the position file could not be written"
    );
    let left = unreplayed_records(&spool, id);
    assert_eq!(
        left,
        vec![record(2), record(3)],
        "acknowledged records are not sent again"
    );
    spool.mark_replayed(id, records[3].1, 2);
    spool.remove_segment(id).unwrap();
    assert!(!segment_path(dir.path(), id).exists());
    assert_eq!(spool.pending_records(), 0);
}

/// A sealed segment the replay read to its last byte is deleted without reading it a
/// second time (up to 64 MiB per segment during an outage's recovery). Shown by changing
/// the file after the replay read it: removal no longer looks at its bytes.
#[tokio::test]
async fn a_segment_read_to_its_end_is_removed_without_a_second_read() {
    let (dir, spool, id) = sealed_spool(3).await;
    let records = spool.unreplayed(id).unwrap();
    spool.mark_replayed(id, records[2].1, 3);
    let path = segment_path(dir.path(), id);
    let mut changed = fs::read(&path).unwrap();
    changed.extend_from_slice(b"\x20\x00\x00\x00not read again");
    fs::write(&path, &changed).unwrap();
    spool.remove_segment(id).unwrap();
    assert!(!path.exists());
    assert!(!dir.path().join("corrupt").exists(), "the segment was read again");
}
