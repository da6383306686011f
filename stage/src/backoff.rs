//! Retry delays: exponential from a first delay up to a cap, reset after a success, and
//! a sleep that ends early when shutdown begins. Every retry loop of the pipeline (an
//! upload, an announcement, a warehouse batch, a reconnect, spool replay, polling a
//! Redshift statement) uses this type, in a plain loop, so the loop body keeps whatever
//! `&mut` access it needs.

use std::time::Duration;

use crate::Shutdown;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    factor: f64,
    next: Duration,
}

impl Backoff {
    /// Delays of `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            factor: 2.0,
            next: first,
        }
    }

    /// The pipeline's default for failing dependencies: 100 ms doubling to 10 s.
    pub fn for_outages() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// Grows each delay by `factor` (> 1) instead of doubling.
    pub fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = factor.max(1.0);
        self
    }

    /// The delay to wait now; the next one grows.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.max);
        delay
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next delay. Returns `false`, early, if `shutdown` is cancelled first.
    pub async fn wait(&mut self, shutdown: &Shutdown) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    /// Sleeps the next delay, whatever happens (for work that must finish, such as the
    /// sink's final flush).
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        let mut slow = Backoff::new(Duration::from_millis(50), Duration::from_secs(2)).with_factor(1.5);
        let delays: Vec<u128> = (0..3).map(|_| slow.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 75, 112]);
    }

    #[tokio::test]
    async fn wait_ends_early_on_shutdown() {
        let shutdown = Shutdown::new();
        let mut backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        shutdown.cancel();
        assert!(!backoff.wait(&shutdown).await);
    }
}
