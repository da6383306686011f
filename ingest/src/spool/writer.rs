//! The spool's one writer thread: group commit of appends (write everything queued,
//! `fdatasync` once, answer them all), segment sealing at [`super::SEGMENT_BYTES`], and the
//! backlog flag it alone clears (module doc of [`super`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{io_error, segment_path, sync_dir, Command, Shared, SpoolError, SpoolRecord, SEGMENT_BYTES};

pub(super) struct ActiveSegment {
    id: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) next_id: u64,
    pub(super) active: Option<ActiveSegment>,
}

impl Writer {
    pub(super) fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut buffer = Vec::new();
        while let Some(first) = receiver.blocking_recv() {
            // Group commit: take everything already queued, write it, sync once.
            let mut waiting: Vec<oneshot::Sender<Result<(), SpoolError>>> = Vec::new();
            let mut appended_records = 0usize;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(records, reply) => {
                        let size: u64 = records.iter().map(SpoolRecord::encoded_len).sum();
                        let used = self.shared.bytes.load(Ordering::Relaxed) + buffer.len() as u64;
                        if used + size > self.shared.max_bytes {
                            let _ = reply.send(Err(SpoolError::Full {
                                used,
                                max: self.shared.max_bytes,
                            }));
                        } else {
                            for record in &records {
                                record.encode_into(&mut buffer);
                            }
                            appended_records += records.len();
                            waiting.push(reply);
                        }
                    }
                    Command::SealOrClear(reply) => {
                        self.commit(&mut buffer, &mut waiting, &mut appended_records);
                        let _ = reply.send(self.seal_or_clear());
                    }
                }
                if waiting.len() < 4096 {
                    next = receiver.try_recv().ok();
                }
            }
            self.commit(&mut buffer, &mut waiting, &mut appended_records);
        }
        // Channel closed: flush is already done by the last commit.
    }

    fn commit(
        &mut self,
        buffer: &mut Vec<u8>,
        waiting: &mut Vec<oneshot::Sender<Result<(), SpoolError>>>,
        appended_records: &mut usize,
    ) {
        if waiting.is_empty() {
            return;
        }
        let result = self.write_and_sync(buffer);
        let ok = result.is_ok();
        if ok {
            self.shared
                .bytes
                .fetch_add(buffer.len() as u64, Ordering::Relaxed);
            self.shared
                .records
                .fetch_add(*appended_records as u64, Ordering::Relaxed);
            self.shared.backlog.store(true, Ordering::Release);
            self.shared.backlog_added.notify_waiters();
            self.shared.publish_gauges();
        }
        let error_text = result.err().map(|e| e.to_string());
        for reply in waiting.drain(..) {
            let answer = match &error_text {
                None => Ok(()),
                Some(text) => Err(SpoolError::Io {
                    path: self.shared.dir.clone(),
                    source: io::Error::other(text.clone()),
                }),
            };
            let _ = reply.send(answer);
        }
        buffer.clear();
        *appended_records = 0;
        if self.active.as_ref().is_some_and(|a| a.len >= SEGMENT_BYTES) {
            self.seal();
        }
    }

    fn write_and_sync(&mut self, buffer: &[u8]) -> Result<(), SpoolError> {
        if self.active.is_none() {
            let id = self.next_id;
            self.next_id += 1;
            let path = segment_path(&self.shared.dir, id);
            self.shared.active_id.store(id, Ordering::Release);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_error(&path))?;
            // Make the new file's directory entry durable too.
            sync_dir(&self.shared.dir).map_err(io_error(&self.shared.dir))?;
            self.active = Some(ActiveSegment {
                id,
                path,
                file,
                len: 0,
            });
        }
        let Some(active) = self.active.as_mut() else {
            return Err(SpoolError::Stopped);
        };
        let written = active
            .file
            .write_all(buffer)
            .and_then(|()| active.file.sync_data());
        match written {
            Ok(()) => {
                active.len += buffer.len() as u64;
                Ok(())
            }
            Err(source) => {
                // Cut off whatever part of the group reached the file: none of it is
                // acknowledged, so none of it may be replayed.
                let _ = active.file.set_len(active.len);
                let _ = active.file.sync_data();
                Err(SpoolError::Io {
                    path: active.path.clone(),
                    source,
                })
            }
        }
    }

    fn seal(&mut self) -> Option<u64> {
        let active = self.active.take()?;
        self.shared.active_id.store(0, Ordering::Release);
        Some(active.id)
    }

    fn seal_or_clear(&mut self) -> Option<u64> {
        if self.active.as_ref().is_some_and(|a| a.len > 0) {
            return self.seal();
        }
        self.shared.backlog.store(false, Ordering::Release);
        None
    }
}
