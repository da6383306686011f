//! The loader's health, for `GET /healthz` beside its `/metrics`: unhealthy while the
//! Redshift circuit breaker is open (files in a row refused with the same error), so an
//! orchestrator's health check and the ExposuresLoadCircuitOpen alert say so loudly.
//! Process-wide, like the metrics: one loader per process.

use std::sync::Mutex;

use crate::metrics as m;

static OPEN_CIRCUIT: Mutex<Option<String>> = Mutex::new(None);

fn set(reason: Option<String>) {
    metrics::gauge!(m::LOAD_CIRCUIT_OPEN).set(if reason.is_some() { 1.0 } else { 0.0 });
    match OPEN_CIRCUIT.lock() {
        Ok(mut open) => *open = reason,
        Err(poisoned) => *poisoned.into_inner() = reason,
    }
}

/// The breaker tripped: `reason` says which error every file met.
pub(crate) fn circuit_open(reason: &str) {
    set(Some(reason.to_owned()));
}

/// A batch loaded: the breaker is closed again.
pub(crate) fn circuit_closed() {
    set(None);
}

/// `Err(reason)` while the loader cannot make progress by itself.
pub fn check() -> Result<(), String> {
    let open = match OPEN_CIRCUIT.lock() {
        Ok(open) => open.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    match open {
        Some(reason) => Err(format!("circuit breaker open: {reason}")),
        None => Ok(()),
    }
}
