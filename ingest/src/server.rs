//! The HTTP server around the router: the limits a reverse proxy would enforce, with
//! hyper's own facilities rather than timers of ours.
//!
//! - At most `--max-connections` connections are open; further ones wait in the
//!   kernel's accept queue until one closes (a permit per connection).
//! - hyper's `header_read_timeout` closes a connection whose request headers do not
//!   arrive in time — a half-sent header, and an idle keep-alive connection waiting for
//!   its next request alike (hyper starts the timer whenever it waits for a head).
//! - The body-read timeout (408) bounds a request's whole body (`payload::read_body`):
//!   a client trickling a byte at a time is cut off all the same.
//! - A refused request's body is read to its end before the connection closes, within
//!   bounds of bytes and time, so the client reads the answer rather than a reset; the
//!   connection (and its permit) stays open meanwhile (`routes::drain_refused_body`).
//! - Shutdown stops accepting, lets in-flight requests finish (hyper's graceful
//!   shutdown closes idle connections at once), and gives up on the rest after
//!   `--shutdown-timeout`, so a trickling client cannot hold the process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use stage::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::add_extension::AddExtension;

use crate::config::ConnectionLimits;

/// Most bytes hyper buffers per connection while reading (headers must fit).
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Pause after a failed `accept` (out of file descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown`, then drains as the module doc says.
pub async fn serve(listener: TcpListener, app: Router, limits: &ConnectionLimits, shutdown: Shutdown) {
    let open_connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's default read buffer grows to ~400 KiB per connection, outside the
        // request budget; bodies stream through a smaller one just as well.
        .max_buf_size(READ_BUFFER_BYTES)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = open_connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; stop serving if it were
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(AddExtension::new(app.clone(), ConnectInfo(peer)));
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's (reset, timed out headers): nothing to do.
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Say what shutdown waits for: a slow client can hold it up to --shutdown-timeout.
    let open = limits.max_connections.max(1) - open_connections.available_permits();
    if open > 0 {
        tracing::info!(
            connections = open,
            timeout = ?limits.shutdown_timeout,
            "stopped accepting; waiting for the requests of open connections to finish (idle ones close now)"
        );
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(
                timeout = ?limits.shutdown_timeout,
                "requests still in flight at the shutdown timeout; closing their connections"
            );
        }
    }
}
