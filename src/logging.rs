//! Logging to stderr, for a person or (`--log-format json`) a log pipeline: our own lines
//! at info, the libraries' at warn, and a library's repeats limited to one a minute.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::LogFormat;

/// Logs to stderr: `RUST_LOG` if set; otherwise info, with the libraries (librdkafka,
/// tansu) at warn, or silent for a command that prints an answer (`quiet_libraries`).
pub fn init(format: LogFormat, quiet_libraries: bool) {
    let default = if quiet_libraries {
        "warn,librdkafka=off,rdkafka=off,tansu=off,tansu_broker=off,tansu_storage=off,libsql=off,aws_config=off,aws_smithy_runtime=off"
    } else {
        // librdkafka and tansu are chatty at info; their warnings still show.
        "info,tansu=warn,tansu_broker=warn,tansu_storage=warn,libsql=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(RepeatLimiter::default());
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        // Colour codes only for a person at a terminal, never in files or pipes.
        LogFormat::Text => registry
            .with(lines.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => registry.with(lines.json()).init(),
    }
}

/// How long a library's message is not repeated.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Drops a librdkafka message that says what one said less than [`REPEAT_WINDOW`] ago.
/// While a broker is down, librdkafka reports every reconnect of every client
/// (`Connect to … failed`, `AllBrokersDown`, each through two loggers): ~460 lines in
/// 10 s from one sink, which bury the stage's own lines. Messages are compared without
/// their digits and parenthesised details (ports, times, "3 identical error(s)
/// suppressed"), so one failure gives one line a minute.
#[derive(Default)]
struct RepeatLimiter {
    last_shown: Mutex<HashMap<String, Instant>>,
}

/// Libraries whose messages repeat.
fn repeats(target: &str) -> bool {
    target.starts_with("librdkafka") || target.starts_with("rdkafka")
}

/// What a message says, without what changes between repeats.
fn shape(message: &str) -> String {
    let said = message.split('(').next().unwrap_or(message);
    said.chars().filter(|c| !c.is_ascii_digit()).take(200).collect()
}

impl RepeatLimiter {
    fn first_in_window(&self, shape: String, now: Instant) -> bool {
        let Ok(mut last_shown) = self.last_shown.lock() else {
            return true;
        };
        match last_shown.get(&shape) {
            Some(shown) if now.duration_since(*shown) < REPEAT_WINDOW => false,
            _ => {
                if last_shown.len() >= 1024 {
                    last_shown.retain(|_, shown| now.duration_since(*shown) < REPEAT_WINDOW);
                }
                last_shown.insert(shape, now);
                true
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for RepeatLimiter {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let mut said = Said::default();
        event.record(&mut said);
        // librdkafka logs through the `log` crate: its events arrive with the target
        // "log" and the real one in the field `log.target`.
        let target = said.log_target.as_deref().unwrap_or(event.metadata().target());
        !repeats(target) || self.first_in_window(shape(&said.message), Instant::now())
    }
}

/// An event's message, and the target of a `log` record.
#[derive(Default)]
struct Said {
    message: String,
    log_target: Option<String>,
}

impl Visit for Said {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.message),
            "log.target" => self.log_target = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_shown_once_a_window() {
        let limiter = RepeatLimiter::default();
        let start = Instant::now();
        let refused = |after: u32, suppressed: u32| {
            shape(&format!(
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused \
                 (after {after}ms in state CONNECT, {suppressed} identical error(s) suppressed)"
            ))
        };
        assert!(limiter.first_in_window(refused(0, 0), start));
        assert!(!limiter.first_in_window(refused(3, 30), start + Duration::from_secs(5)));
        assert!(limiter.first_in_window(shape("AllBrokersDown: 1/1 brokers are down"), start));
        assert!(limiter.first_in_window(refused(1, 2), start + REPEAT_WINDOW));
    }
}

#[cfg(test)]
mod wiring_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    struct Count(Arc<AtomicUsize>);
    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_limiter_drops_repeats_before_they_are_written() {
        let shown = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(RepeatLimiter::default())
            .with(Count(shown.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for port in 0..5 {
                tracing::error!(target: "librdkafka", "Global error: AllBrokersDown (Local: down): {port}/1 brokers are down");
                tracing::warn!(target: "loader::sink", "our own line {port}");
            }
        });
        assert_eq!(shown.load(Ordering::SeqCst), 1 + 5);
    }
}
