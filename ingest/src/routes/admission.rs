//! Who may send, and how much (module doc of [`super`]): write keys compared in constant
//! time as SHA-256 digests, the limiter of wrong keys per client, the optional per-client
//! rate limit, and who the client is behind `--trusted-proxies`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::header;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::ApiError;
use crate::metrics as m;

/// Whether a route takes write keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyCheck {
    /// `/exposure`, `/v1/exposures`: a write key when `--write-keys` is set.
    WriteKey,
    /// `/track`: GrowthBook's plugin cannot send one; `--client-keys` decides instead.
    ClientKey,
}

impl AppState {
    /// Checks the write key (when keys are configured and `keys` asks for it) and the
    /// client's rate limit.
    pub(super) fn admit(&self, request: &Request, peer: SocketAddr, keys: KeyCheck) -> Result<(), ApiError> {
        let check_write_key = keys == KeyCheck::WriteKey && !self.write_key_digests.is_empty();
        if !check_write_key && self.limiter.is_none() {
            return Ok(()); // nothing to check: no need to know who the client is
        }
        let client = client_key(client_address(peer, request, &self.http.trusted_proxies));
        let key = if check_write_key {
            self.authorize(request, &client)?
        } else {
            None
        };
        if let Some(limiter) = &self.limiter {
            let client = key.map_or(client, |digest| format!("key:{}", hex(&digest[..8])));
            if limiter.check_key(&client).is_err() {
                metrics::counter!(m::EVENTS_REJECTED, "reason" => "rate_limited").increment(1);
                return Err(ApiError::RateLimited);
            }
        }
        Ok(())
    }

    /// The digest of the write key the request presented, if keys are configured and it
    /// is one of them. A client with too many wrong keys gets 429 without a check.
    fn authorize(&self, request: &Request, client: &str) -> Result<Option<[u8; 32]>, ApiError> {
        if self.write_key_digests.is_empty() {
            return Ok(None);
        }
        if self.is_blocked(client) {
            metrics::counter!(m::EVENTS_REJECTED, "reason" => "auth_rate_limited").increment(1);
            return Err(ApiError::RateLimited);
        }
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| k.trim().to_owned());
        let query = request.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| (k == "key").then(|| v.into_owned()))
        });
        let known = [bearer, query]
            .into_iter()
            .flatten()
            .filter(|key| !key.is_empty())
            .map(|key| -> [u8; 32] { Sha256::digest(key.as_bytes()).into() })
            .find(|digest| self.is_write_key(digest));
        match known {
            Some(digest) => Ok(Some(digest)),
            None => {
                if let Err(not_until) = self.auth_failures.check_key(&client.to_owned()) {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    if let Ok(mut blocked) = self.auth_blocked.lock() {
                        blocked.insert(
                            client.to_owned(),
                            Instant::now() + wait.max(Duration::from_secs(1)),
                        );
                    }
                    metrics::counter!(m::EVENTS_REJECTED, "reason" => "auth_rate_limited").increment(1);
                    return Err(ApiError::RateLimited);
                }
                metrics::counter!(m::EVENTS_REJECTED, "reason" => "unauthorized").increment(1);
                Err(ApiError::Unauthorized)
            }
        }
    }

    /// Constant time over the configured keys: every digest is compared, in full.
    fn is_write_key(&self, digest: &[u8; 32]) -> bool {
        let mut found = subtle::Choice::from(0);
        for known in &self.write_key_digests {
            found |= known.ct_eq(digest);
        }
        found.into()
    }

    fn is_blocked(&self, client: &str) -> bool {
        self.auth_blocked
            .lock()
            .ok()
            .and_then(|blocked| blocked.get(client).copied())
            .is_some_and(|until| until > Instant::now())
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy (walking from the
/// right, since a client can prepend anything it likes).
pub(super) fn client_address(peer: SocketAddr, request: &Request, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|item| item.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

/// The limiter key of an address: IPv4 as is, IPv6 by its /64 (one host's allotment).
pub(super) fn client_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
