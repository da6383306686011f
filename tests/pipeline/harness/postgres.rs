//! A throwaway PostgreSQL cluster per test: `initdb` + `pg_ctl` on a free port in a temp
//! dir, stopped on drop. As root, the server runs as the `postgres` user.

use std::path::PathBuf;
use std::process::Command;

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|bin| bin.join("initdb").exists())
        .expect("PostgreSQL server binaries (apt-get install postgresql)")
}

impl Pg {
    pub fn start() -> Pg {
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("proc")) == 0;
        if as_postgres {
            let status = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path())
                .status();
            assert!(status.is_ok_and(|s| s.success()), "chown to postgres");
        }
        let pg = Pg {
            bin: binaries(),
            port: super::process::free_port(),
            dir,
            as_postgres,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A PostgreSQL tool, run as the `postgres` user when we are root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .expect("run PostgreSQL tool");
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    pub fn stop_server(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self) -> String {
        self.url_as("postgres")
    }

    /// The URL for database user `user` (the cluster trusts local connections).
    pub fn url_as(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to test PostgreSQL");
        tokio::spawn(connection);
        client
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

/// The `analytics.exposures` table holds exactly `events`, each once, and GrowthBook's
/// view shows every one of them (all test events have a `ds_user_id`).
pub async fn assert_warehouse_exact(pg: &Pg, events: &[schemas::Exposure]) {
    let client = pg.client().await;
    let ids: Vec<String> = client
        .query("SELECT event_id FROM analytics.exposures", &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: std::collections::HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), expected.len(), "no duplicate rows");
    assert!(
        ids.into_iter().collect::<std::collections::HashSet<_>>() == expected,
        "warehouse rows differ from the events"
    );
    let in_view: i64 = client
        .query_one("SELECT count(*) FROM analytics.exposures_growthbook", &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1);
    assert_eq!(
        in_view,
        events.len() as i64,
        "every exposure (all have a ds_user_id) is in GrowthBook's view"
    );
}
