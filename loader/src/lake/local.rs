//! The lake in a local directory (`file:///DIR`): objects written aside, synced and
//! renamed into place, so a reader never sees half of one.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::LakeError;

pub(super) async fn put_local(root: &Path, key: &str, body: Bytes) -> Result<String, LakeError> {
    let root = root.to_path_buf();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let path = root.join(&key);
        let io = |operation: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| LakeError::Io {
                operation,
                path,
                source,
            }
        };
        let dir = path.parent().unwrap_or(&root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let tmp = path.with_extension("parquet.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&body)
            .and_then(|()| file.sync_all())
            .map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &dir))?;
        Ok(local_etag(&body))
    })
    .await
    .unwrap_or_else(|join| {
        Err(LakeError::Io {
            operation: "write",
            path: PathBuf::new(),
            source: std::io::Error::other(join.to_string()),
        })
    })
}

/// The etag of a local object: its CRC-32 and length (what [`Lake::put`] returns).
pub(super) fn local_etag(body: &[u8]) -> String {
    format!("{:08x}-{}", crc32fast::hash(body), body.len())
}

pub(super) fn list_local(root: &Path, dir: &Path, keys: &mut Vec<String>) -> Result<(), LakeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LakeError::Io {
                operation: "list",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_local(root, &path, keys)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            keys.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
