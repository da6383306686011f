//! A small disk that really fills up: a tmpfs mounted for one test (root only).

/// A small tmpfs mounted for one test and unmounted when dropped: a disk that really fills
/// up (ENOSPC), which a size limit in our own code would not show.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        super::available("a tmpfs mount (root)", mounted, "run the tests as root")
            .then_some(SmallDisk { dir })
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a failed test may leave the server's files open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

impl SmallDisk {
    /// Fills the disk with a file until writes fail (ENOSPC); returns its path, to delete
    /// when the disk should have room again.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).and_then(|()| file.sync_data()).is_ok() {}
        path
    }
}
