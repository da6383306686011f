//! The ingest API in-process on an ephemeral port, an HTTP client to call it, and the
//! seed's SDK callback bodies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// The seed's Python callback body.
pub fn python_body(user: &str) -> Value {
    json!({
        "ds_user_id": user, "experiment_id": "new_search_ui", "variation_id": "1",
        "attributes": {"id": user, "ds_user_id": user, "ds_session_id": "session_abc123",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "geo_country_code": "US", "geo_city": "New York",
            "currency_id": "USD", "locale": "en-US", "utm": {"source": "google", "medium": "cpc"},
            "forwarded_for": "192.168.1.1", "is_kf_verified": true, "platform": "web"},
        "source": "search_core_python"
    })
}

/// The seed's Next.js callback body (numeric variation key, as `result.key` may be).
pub fn nextjs_body(user: &str) -> Value {
    json!({
        "ds_user_id": user, "experiment_id": "checkout_button", "variation_id": 2,
        "attributes": {"id": user, "ds_user_id": user, "ds_session_id": "s-web-1",
            "user_agent": "Mozilla/5.0 (Macintosh)", "geo_country_code": "DE", "geo_city": "Berlin",
            "currency_id": "EUR", "locale": "de-DE", "utm": {"source": "newsletter"},
            "is_kf_verified": false, "platform": "mobile"},
        "source": "nextjs_web"
    })
}

/// An in-process ingest server on an ephemeral port.
pub struct Server {
    pub url: String,
    pub spool_dir: PathBuf,
    shutdown: stage::Shutdown,
    task: JoinHandle<Result<(), ingest::IngestError>>,
    _dirs: tempfile::TempDir,
}

/// Test configuration: a short delivery deadline so outages are quick to test.
pub fn config(brokers: &str, topic: &str) -> ingest::IngestConfig {
    super::flags(&[
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--delivery-timeout",
        "1500ms",
    ])
}

impl Server {
    pub async fn start(mut config: ingest::IngestConfig) -> Server {
        let dirs = tempfile::tempdir().expect("tempdir");
        let spool_dir = config
            .delivery
            .spool_dir
            .clone()
            .unwrap_or_else(|| dirs.path().join("spool"));
        config.delivery.spool_dir = Some(spool_dir.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let shutdown = stage::Shutdown::new();
        let task = tokio::spawn(ingest::serve(
            listener,
            config,
            super::render_metrics(),
            shutdown.clone(),
        ));
        Server {
            url: format!("http://{address}"),
            spool_dir,
            shutdown,
            task,
            _dirs: dirs,
        }
    }

    /// Graceful shutdown; returns once in-flight requests are answered and the producer
    /// is flushed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        (&mut self.task)
            .await
            .expect("server task")
            .expect("server result");
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl Server {
    /// What the server's `GET /metrics` answers.
    pub async fn metrics_text(&self, client: &reqwest::Client) -> String {
        client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// POSTs JSON to `path`, returning status and parsed body.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}
