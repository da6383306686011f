//! `DATA_DIR/endpoints.json`: where a running `exposures up` can be reached, so `status`
//! and `reconcile` next to it need no flags.

/// Where a running `exposures up` can be reached, written to
/// `DATA_DIR/`[`UpEndpoints::FILE`] when it starts and removed when it stops.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpEndpoints {
    /// `http://ADDRESS` of the HTTP API.
    pub api: String,
    pub brokers: String,
    pub topic: String,
    pub files_topic: String,
    pub sink_group: String,
    pub load_group: String,
    pub s3_endpoint: String,
    /// The lake's URL (`s3://BUCKET`) on that endpoint.
    #[serde(default)]
    pub lake: String,
    /// The warehouse URL without its password (see [`UpEndpoints::without_password`]).
    pub warehouse: Option<String>,
    pub schema: String,
}

impl UpEndpoints {
    pub const FILE: &'static str = "endpoints.json";

    /// `url` without its password: no secret is written to disk. `status` then connects
    /// as the same user with the password from `--warehouse`/`EXPOSURES_WAREHOUSE` if
    /// given, or with none (trust or peer authentication next to `up`).
    pub fn without_password(url: &str) -> String {
        match url::Url::parse(url) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(None);
                parsed.to_string()
            }
            _ => url.to_owned(),
        }
    }

    /// Writes the file atomically (temporary file, then rename), readable by its owner
    /// only: it says where the broker and the warehouse are.
    pub fn write(&self, data_dir: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let path = data_dir.join(Self::FILE);
        let temporary = data_dir.join(format!("{}.tmp", Self::FILE));
        // A leftover temporary file keeps its mode when reopened: start afresh.
        let _ = std::fs::remove_file(&temporary);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    }

    /// The endpoints recorded in `data_dir`, if an `up` recorded any.
    pub fn read(data_dir: &std::path::Path) -> Option<UpEndpoints> {
        let text = std::fs::read(data_dir.join(Self::FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::UpEndpoints;

    #[test]
    fn endpoints_keep_the_warehouse_url_without_its_password() {
        assert_eq!(
            UpEndpoints::without_password(
                "postgres://loader:s3cr%40t@db.internal:5432/analytics?sslmode=require"
            ),
            "postgres://loader@db.internal:5432/analytics?sslmode=require"
        );
        let plain = "postgres://postgres@127.0.0.1:5432/postgres";
        assert_eq!(UpEndpoints::without_password(plain), plain);
    }

    #[cfg(unix)]
    #[test]
    fn the_endpoints_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoints = UpEndpoints {
            api: "http://127.0.0.1:8080".into(),
            brokers: "127.0.0.1:9092".into(),
            topic: "exposures".into(),
            files_topic: "exposures.files".into(),
            sink_group: "exposures-sink".into(),
            load_group: "exposures-load".into(),
            s3_endpoint: "http://127.0.0.1:9000".into(),
            lake: "s3://lake".into(),
            warehouse: None,
            schema: "public".into(),
        };
        // Twice: the second write replaces the first, mode included.
        endpoints.write(dir.path()).expect("write");
        endpoints.write(dir.path()).expect("write again");
        let mode = std::fs::metadata(dir.path().join(UpEndpoints::FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(UpEndpoints::read(dir.path()), Some(endpoints));
    }
}
