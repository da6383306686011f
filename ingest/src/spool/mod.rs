//! The local spool: keeps accepted events durable while Kafka cannot acknowledge them.
//!
//! Layout: a directory of append-only segment files `{id:020}.seg` plus `replay.pos`.
//! A record is framed as `len: u32 LE | crc32(payload): u32 LE | payload`, the payload
//! being `timestamp_ms: i64 LE | key_len: u32 LE | key | value`.
//!
//! Invariants (the durability argument):
//! - **An append is acknowledged only after `fdatasync`.** A single writer thread takes
//!   every append waiting in its queue, writes them, syncs once and then answers them all
//!   (group commit), so a burst of requests costs one sync, not one each.
//! - **Only sealed segments are replayed.** The writer appends to one active segment;
//!   a restart always opens a new one, so a torn tail left by a crash is never appended
//!   to. A reader stops at the first record whose length or CRC does not check out:
//!   such a record was never acknowledged.
//! - **Order.** Segments are replayed in id order and records in file order, which is
//!   acknowledgement order. While anything is spooled ([`Spool::has_backlog`]) new events
//!   are appended behind it rather than sent to Kafka directly, so a user's events reach
//!   Kafka in the order they were accepted. The backlog flag is cleared by the writer
//!   thread itself ([`Spool::seal_or_clear`]), between two appends, so no event can slip
//!   past the backlog.
//! - **Deletion.** `replay.pos` (segment id and byte offset, replaced atomically) records
//!   what Kafka has acknowledged; a segment file is deleted once all its records are
//!   acknowledged. A crash between an acknowledgement and the position update replays
//!   those records again: at-least-once into Kafka, made exactly-once in the warehouse
//!   by the `event_id` dedup.
//! - **A position never applies to another segment.** Segment ids are never reused: the
//!   next id is above every segment on disk *and* the id in `replay.pos`. The position of
//!   a segment is removed before the segment itself, so a crash between the two leaves a
//!   replayed segment without position (replayed again, deduplicated downstream) rather
//!   than a stale position that would skip records of a later segment.
//! - **Corruption is set aside, never silently dropped.** A sealed segment whose bytes do
//!   not decode to its end (a torn tail from a crash, or damage) has its undecodable
//!   tail copied to `corrupt/` before the segment is deleted, with an error log line
//!   and `exposures_ingest_spool_corrupt_bytes_total`.
//!
//! Proven by `tests/pipeline` (`broker_outage_*`, `spool_survives_restart`) and the unit
//! tests below.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, Notify};

use crate::metrics as m;
use writer::Writer;

mod writer;

/// Segments are sealed at this size so replay can delete them piecemeal.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const FRAME_HEADER: usize = 8;
const POSITION_FILE: &str = "replay.pos";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({used} of {max} bytes used)")]
    Full { used: u64, max: u64 },
    #[error("spool I/O error in {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool writer has stopped")]
    Stopped,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One Kafka record waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub key: Vec<u8>,
    pub timestamp_ms: i64,
    pub value: Vec<u8>,
}

impl SpoolRecord {
    fn encoded_len(&self) -> u64 {
        (FRAME_HEADER + 12 + self.key.len() + self.value.len()) as u64
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let payload_len = 12 + self.key.len() + self.value.len();
        let start = out.len();
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
        let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decodes the valid prefix of a segment, starting at `from`. Returns each record with
/// the byte offset just past it.
fn decode_segment(bytes: &[u8], from: u64) -> Vec<(SpoolRecord, u64)> {
    decode_prefix(bytes, from).0
}

/// The valid prefix of a segment from `from`, and where it ends.
fn decode_prefix(bytes: &[u8], from: u64) -> (Vec<(SpoolRecord, u64)>, u64) {
    let mut records = Vec::new();
    let mut at = from as usize;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
            break; // torn tail: never acknowledged
        };
        if len < 12 || crc32fast::hash(payload) != crc {
            break;
        }
        let timestamp_ms = i64::from_le_bytes(payload[0..8].try_into().unwrap_or_default());
        let key_len = u32::from_le_bytes(payload[8..12].try_into().unwrap_or_default()) as usize;
        let Some(key) = payload.get(12..12 + key_len) else {
            break;
        };
        at += FRAME_HEADER + len;
        records.push((
            SpoolRecord {
                key: key.to_vec(),
                timestamp_ms,
                value: payload[12 + key_len..].to_vec(),
            },
            at as u64,
        ));
    }
    (records, at as u64)
}

enum Command {
    Append(Vec<SpoolRecord>, oneshot::Sender<Result<(), SpoolError>>),
    SealOrClear(oneshot::Sender<Option<u64>>),
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in segment files on disk.
    bytes: AtomicU64,
    /// Records not yet acknowledged by Kafka.
    records: AtomicU64,
    backlog: AtomicBool,
    backlog_added: Notify,
    /// Id of the segment the writer appends to (0: none). Set before the file is
    /// created, so a replayer that lists the directory never mistakes it for sealed.
    active_id: AtomicU64,
    /// What Kafka acknowledged, (segment id, offset): the truth while the process runs.
    /// `replay.pos` is its copy for the next start, written best-effort — a full disk
    /// must not stop the replay that frees it.
    position: Mutex<Option<(u64, u64)>>,
    /// Sealed segments read by [`Spool::unreplayed`] that decoded to their last byte, with
    /// their size: removing one then needs no second read of it.
    clean_segments: Mutex<HashMap<u64, u64>>,
}

impl Shared {
    fn publish_gauges(&self) {
        metrics::gauge!(m::SPOOL_BYTES).set(self.bytes.load(Ordering::Relaxed) as f64);
        metrics::gauge!(m::SPOOL_RECORDS).set(self.records.load(Ordering::Relaxed) as f64);
    }
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and starts its writer thread. Segments left
    /// by an earlier run are counted and become the backlog to replay.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let position = read_position(dir);
        let mut bytes = 0;
        let mut records = 0;
        let segments = list_segments(dir)?;
        for &id in &segments {
            let path = segment_path(dir, id);
            let content = fs::read(&path).map_err(io_error(&path))?;
            bytes += content.len() as u64;
            let from = match position {
                Some((pos_id, offset)) if pos_id == id => offset,
                _ => 0,
            };
            records += decode_segment(&content, from).len() as u64;
        }
        // A position whose segment is gone (a crash while deleting it) says nothing about
        // any other segment: drop it, and start new ids above it.
        let stale_position = position.filter(|(pos_id, _)| !segments.contains(pos_id));
        if let Some((pos_id, _)) = stale_position {
            let stale = dir.join(POSITION_FILE);
            tracing::warn!(
                segment = pos_id,
                "spool position of a deleted segment; removing it"
            );
            fs::remove_file(&stale).map_err(io_error(&stale))?;
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: AtomicU64::new(bytes),
            records: AtomicU64::new(records),
            backlog: AtomicBool::new(!segments.is_empty()),
            backlog_added: Notify::new(),
            active_id: AtomicU64::new(0),
            position: Mutex::new(position.filter(|_| stale_position.is_none())),
            clean_segments: Mutex::new(HashMap::new()),
        });
        shared.publish_gauges();
        let (commands, receiver) = mpsc::channel(1024);
        let highest = segments.last().copied().max(position.map(|(pos_id, _)| pos_id));
        let next_id = highest.map_or(1, |id| id + 1);
        let writer = Writer {
            shared: shared.clone(),
            next_id,
            active: None,
        };
        std::thread::Builder::new()
            .name("exposures-spool-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error(dir))?;
        Ok(Spool { shared, commands })
    }

    /// Appends records durably (fsync'd) before returning.
    pub async fn append(&self, records: Vec<SpoolRecord>) -> Result<(), SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Append(records, reply))
            .await
            .map_err(|_| SpoolError::Stopped)?;
        answer.await.map_err(|_| SpoolError::Stopped)?
    }

    /// True while events wait in the spool; new events must queue behind them.
    pub fn has_backlog(&self) -> bool {
        self.shared.backlog.load(Ordering::Acquire)
    }

    /// True while the spool can take more events (for `/readyz`).
    pub fn has_room(&self) -> bool {
        self.shared.bytes.load(Ordering::Relaxed) < self.shared.max_bytes
    }

    pub fn pending_records(&self) -> u64 {
        self.shared.records.load(Ordering::Relaxed)
    }

    /// Waits until something is appended (or returns at once if a backlog exists).
    pub async fn wait_for_backlog(&self) {
        loop {
            let notified = self.shared.backlog_added.notified();
            if self.has_backlog() {
                return;
            }
            notified.await;
        }
    }

    /// Sealed segments waiting for replay, oldest first.
    pub fn sealed_segments(&self) -> Result<Vec<u64>, SpoolError> {
        let mut ids = list_segments(&self.shared.dir)?;
        let active = self.shared.active_id.load(Ordering::Acquire);
        ids.retain(|&id| id != active);
        Ok(ids)
    }

    /// Seals the active segment if it holds records and returns its id; otherwise
    /// clears the backlog flag and returns `None`. Runs on the writer thread, so it is
    /// ordered with respect to every append.
    pub async fn seal_or_clear(&self) -> Result<Option<u64>, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SealOrClear(reply))
            .await
            .map_err(|_| SpoolError::Stopped)?;
        answer.await.map_err(|_| SpoolError::Stopped)
    }

    fn position(&self) -> Option<(u64, u64)> {
        match self.shared.position.lock() {
            Ok(position) => *position,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn set_position(&self, position: Option<(u64, u64)>) {
        match self.shared.position.lock() {
            Ok(mut guard) => *guard = position,
            Err(poisoned) => *poisoned.into_inner() = position,
        }
    }

    /// Records of sealed segment `id` not yet acknowledged, each with its end offset.
    pub fn unreplayed(&self, id: u64) -> Result<Vec<(SpoolRecord, u64)>, SpoolError> {
        let path = segment_path(&self.shared.dir, id);
        let content = fs::read(&path).map_err(io_error(&path))?;
        let from = match self.position() {
            Some((pos_id, offset)) if pos_id == id => offset,
            _ => 0,
        };
        let (records, decoded_to) = decode_prefix(&content, from);
        if decoded_to == content.len() as u64 {
            if let Ok(mut clean) = self.shared.clean_segments.lock() {
                clean.insert(id, decoded_to);
            }
        }
        Ok(records)
    }

    /// Records that Kafka acknowledged `count` records of segment `id`, up to `offset`.
    /// Saving the position in `replay.pos` may fail (a full disk): then it is logged and
    /// the replay goes on, since deleting replayed segments is what frees the disk; only
    /// a crash before the segment is deleted would replay those records again
    /// (deduplicated by `event_id` downstream).
    pub fn mark_replayed(&self, id: u64, offset: u64, count: u64) {
        self.set_position(Some((id, offset)));
        self.shared.records.fetch_sub(count, Ordering::Relaxed);
        self.shared.publish_gauges();
        if let Err(error) = write_position(&self.shared.dir, id, offset) {
            tracing::warn!(%error, segment = id, "spool position not saved; replay goes on (a restart now would send these records again)");
        }
    }

    /// Deletes a fully replayed segment: its position first (module doc), and any tail
    /// that did not decode is first copied to `corrupt/`. A segment [`Spool::unreplayed`]
    /// read to its last byte is not read again.
    pub fn remove_segment(&self, id: u64) -> Result<(), SpoolError> {
        let path = segment_path(&self.shared.dir, id);
        let known_clean = self
            .shared
            .clean_segments
            .lock()
            .ok()
            .and_then(|mut clean| clean.remove(&id));
        let size = match known_clean {
            Some(size) => size,
            None => self.set_aside_undecodable_tail(id, &path)?,
        };
        if self.position().is_some_and(|(pos_id, _)| pos_id == id) {
            self.set_position(None);
        }
        if read_position(&self.shared.dir).is_some_and(|(pos_id, _)| pos_id == id) {
            let position = self.shared.dir.join(POSITION_FILE);
            fs::remove_file(&position).map_err(io_error(&position))?;
            sync_dir(&self.shared.dir).map_err(io_error(&self.shared.dir))?;
        }
        fs::remove_file(&path).map_err(io_error(&path))?;
        self.shared.bytes.fetch_sub(size, Ordering::Relaxed);
        self.shared.publish_gauges();
        Ok(())
    }

    /// Reads segment `id` and copies whatever does not decode at its end to `corrupt/`
    /// (logged, counted); returns the segment's size. Needed only for a segment the replay
    /// did not read to its last byte.
    fn set_aside_undecodable_tail(&self, id: u64, path: &Path) -> Result<u64, SpoolError> {
        let content = fs::read(path).map_err(io_error(path))?;
        let size = content.len() as u64;
        let (_, decoded_to) = decode_prefix(&content, 0);
        if decoded_to < size {
            let corrupt = self.shared.dir.join("corrupt");
            let kept = corrupt.join(format!("{id:020}.seg.tail"));
            fs::create_dir_all(&corrupt)
                .and_then(|()| fs::write(&kept, &content[decoded_to as usize..]))
                .map_err(io_error(&kept))?;
            tracing::error!(
                segment = id,
                bytes = size - decoded_to,
                at = decoded_to,
                kept = %kept.display(),
                "spool segment has bytes that do not decode (a torn tail from a crash, or damage); \
                 set aside, not replayed"
            );
            metrics::counter!(m::SPOOL_CORRUPT_BYTES).increment(size - decoded_to);
        }
        Ok(size)
    }

    /// Keeps a record Kafka refuses for good as `dead-letters/{segment}-{offset}.json`
    /// (key, timestamp, value, reason), fsync'd, before the replay moves past it.
    pub fn dead_letter(
        &self,
        segment: u64,
        offset: u64,
        record: &SpoolRecord,
        reason: &str,
    ) -> Result<PathBuf, SpoolError> {
        let dir = self.shared.dir.join("dead-letters");
        let path = dir.join(format!("{segment:020}-{offset:020}.json"));
        let letter = serde_json::json!({
            "key": String::from_utf8_lossy(&record.key),
            "timestamp_ms": record.timestamp_ms,
            "value": String::from_utf8_lossy(&record.value),
            "reason": reason,
        });
        fs::create_dir_all(&dir)
            .and_then(|()| {
                let mut file = File::create(&path)?;
                file.write_all(letter.to_string().as_bytes())?;
                file.sync_data()
            })
            .and_then(|()| sync_dir(&dir))
            .map_err(io_error(&path))?;
        Ok(path)
    }

    /// Stops the writer thread once queued appends are done.
    pub fn close(self) {
        drop(self.commands);
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(id) = stem.parse::<u64>() {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn read_position(dir: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(dir.join(POSITION_FILE)).ok()?;
    let (id, offset) = text.trim().split_once(' ')?;
    Some((id.parse().ok()?, offset.parse().ok()?))
}

fn write_position(dir: &Path, id: u64, offset: u64) -> Result<(), SpoolError> {
    let tmp = dir.join(format!("{POSITION_FILE}.tmp"));
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(format!("{id} {offset}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(io_error(&tmp))?;
    let target = dir.join(POSITION_FILE);
    fs::rename(&tmp, &target).map_err(io_error(&target))?;
    sync_dir(dir).map_err(io_error(dir))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
