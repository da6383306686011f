//! An exclusive lock on a directory for as long as a process uses it: two processes on
//! one spool or one `up` data directory would interleave their writes and delete each
//! other's files. `flock` on `DIR/lock`, released by the kernel when the process ends,
//! however it ends, so a SIGKILL leaves no stale lock; the file holds the holder's pid
//! for the message the next one gets.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// Held while alive.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    #[error("{} is in use by another exposures process{holder}: stop it, or give this one another {flag}", dir.display())]
    Held {
        dir: PathBuf,
        /// ` (pid N)`, or empty when the holder did not say.
        holder: String,
        flag: &'static str,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl DirLock {
    /// Locks `dir` (which must exist), or says who holds it; `flag` is the option that
    /// names the directory, for the message.
    pub fn acquire(dir: &Path, flag: &'static str) -> Result<DirLock, DirLockError> {
        let path = dir.join("lock");
        let io = |source| DirLockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd as _;
            // SAFETY: flock on a file descriptor this function owns; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DirLockError::Held {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    },
                    flag,
                });
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("dir-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let first = DirLock::acquire(&dir, "--data-dir").expect("first lock");
        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process's would.
        let refused = DirLock::acquire(&dir, "--data-dir").expect_err("second lock");
        let message = refused.to_string();
        assert!(
            message.contains("in use by another exposures process")
                && message.contains(&format!("(pid {})", std::process::id()))
                && message.contains("--data-dir"),
            "{message}"
        );
        drop(first);
        DirLock::acquire(&dir, "--data-dir").expect("free again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
