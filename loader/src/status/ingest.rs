//! The ingest section: events accepted and refused per second, from two reads of an
//! ingest's `/metrics` a sample apart.

use std::time::Duration;

/// An ingest's traffic between two reads of its counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IngestTraffic {
    pub url: String,
    pub sample_seconds: f64,
    /// Events answered 200 per second over the sample.
    pub accepted_per_second: f64,
    /// Of the events in the sample: refused as invalid (4xx), refused because they could
    /// not be made durable (503).
    pub invalid_share: f64,
    pub unavailable_share: f64,
    /// Since the process started.
    pub accepted_total: f64,
    pub invalid_total: f64,
    pub unavailable_total: f64,
}

impl IngestTraffic {
    /// Events are being lost at the SDKs (503).
    pub fn needs_attention(&self) -> bool {
        self.unavailable_share > 0.0
    }
}

/// How long `--ingest-url` is sampled.
const INGEST_SAMPLE: Duration = Duration::from_secs(2);

/// The ingest's event counters (`ingest::metrics`; the tests hold the two equal).
pub const INGEST_EVENTS_ACCEPTED: &str = "exposures_ingest_events_accepted_total";
pub const INGEST_EVENTS_REJECTED: &str = "exposures_ingest_events_rejected_total";

/// (accepted, invalid, unavailable) events so far, from a Prometheus text exposition.
fn ingest_counters(text: &str) -> (f64, f64, f64) {
    let (mut accepted, mut invalid, mut unavailable) = (0.0, 0.0, 0.0);
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or_default();
        if name == INGEST_EVENTS_ACCEPTED {
            accepted += value;
        } else if name == INGEST_EVENTS_REJECTED {
            if series.contains("reason=\"unavailable\"") {
                unavailable += value;
            } else {
                invalid += value;
            }
        }
    }
    (accepted, invalid, unavailable)
}

pub(super) async fn ingest_traffic(url: &str) -> Result<IngestTraffic, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let metrics_url = format!("{}/metrics", url.trim_end_matches('/'));
    let read = || async {
        let response = client
            .get(&metrics_url)
            .send()
            .await
            .map_err(|e| format!("{metrics_url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{metrics_url} answered {}", response.status()));
        }
        let text = response.text().await.map_err(|e| format!("{metrics_url}: {e}"))?;
        Ok::<_, String>(ingest_counters(&text))
    };
    let started = std::time::Instant::now();
    let before = read().await?;
    tokio::time::sleep(INGEST_SAMPLE).await; // the sampling interval of a rate
    let after = read().await?;
    let seconds = started.elapsed().as_secs_f64();
    let delta = |a: f64, b: f64| (b - a).max(0.0);
    let (accepted, invalid, unavailable) = (
        delta(before.0, after.0),
        delta(before.1, after.1),
        delta(before.2, after.2),
    );
    let events = (accepted + invalid + unavailable).max(1.0);
    Ok(IngestTraffic {
        url: url.to_owned(),
        sample_seconds: seconds,
        accepted_per_second: accepted / seconds,
        invalid_share: invalid / events,
        unavailable_share: unavailable / events,
        accepted_total: after.0,
        invalid_total: after.1,
        unavailable_total: after.2,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ingest_counters_add_up_series_and_tell_503_from_4xx() {
        let text = "# TYPE exposures_ingest_events_accepted_total counter\n\
            exposures_ingest_events_accepted_total{path=\"kafka\"} 90\n\
            exposures_ingest_events_accepted_total{path=\"spool\"} 10\n\
            exposures_ingest_events_rejected_total{reason=\"unavailable\"} 3\n\
            exposures_ingest_events_rejected_total{reason=\"missing_field\"} 2\n\
            exposures_ingest_events_rejected_total{reason=\"nul_character\"} 1\n\
            exposures_ingest_requests_total{route=\"/exposure\",status=\"200\"} 100\n";
        assert_eq!(super::ingest_counters(text), (100.0, 3.0, 3.0));
    }
}
