//! Load: wrk for the closed-loop peak (`-t1 -c64`, the figure the peers are compared
//! by), and an open-loop generator of our own for fixed rates (wrk has none), which
//! measures latency from each request's scheduled time so a stall is not hidden by
//! the client waiting (coordinated omission).

use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::procs::out_dir;

/// One exposure as the seed's Python SDK callback posts it; `USER` is replaced.
pub const EVENT_TEMPLATE: &str = r#"{"ds_user_id":"USER","experiment_id":"checkout-redesign","variation_id":"1","attributes":{"id":"USER","ds_user_id":"USER","ds_session_id":"session-8c2f1a","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15","geo_country_code":"US","geo_city":"New York","currency_id":"USD","locale":"en-US","utm":{"source":"google","medium":"cpc"},"forwarded_for":"203.0.113.7","is_kf_verified":true,"platform":"web"},"source":"search_core_python"}"#;

pub fn event(user: u64) -> String {
    EVENT_TEMPLATE.replace("USER", &format!("user_{user}"))
}

pub fn batch(first_user: u64, events: u64) -> String {
    let items: Vec<String> = (first_user..first_user + events).map(event).collect();
    format!("[{}]", items.join(","))
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub requests: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers other than 2xx, and connection errors: a run with any is not a result.
    pub errors: u64,
}

/// `wrk -t1 -c{connections} -d{seconds}` POSTing `events_per_request` seed events (one
/// object, or an array) per request, each request's users distinct (4,096 prepared
/// requests in turn).
pub fn wrk(port: u16, path: &str, connections: u32, seconds: u64, events_per_request: u32) -> Latencies {
    let pieces: Vec<String> = EVENT_TEMPLATE
        .split("USER")
        .map(|piece| format!("[==[{piece}]==]"))
        .collect();
    let prepared = if events_per_request == 1 { 4096 } else { 64 };
    let script = format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local pieces = {{ {pieces} }}
local per_request = {events_per_request}
local requests = {{}}
local function event(user) return table.concat(pieces, user) end
init = function(args)
  local u = 0
  for i = 1, {prepared} do
    local body
    if per_request == 1 then
      u = u + 1
      body = event("user_" .. u)
    else
      local events = {{}}
      for j = 1, per_request do u = u + 1; events[j] = event("user_" .. u) end
      body = "[" .. table.concat(events, ",") .. "]"
    end
    requests[i] = wrk.format(nil, "{path}", nil, body)
  end
end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_JSON %d %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, 0))
end
"#,
        pieces = pieces.join(", "),
    );
    let script_path = out_dir().join(format!("wrk-{events_per_request}.lua"));
    std::fs::File::create(&script_path)
        .and_then(|mut f| f.write_all(script.as_bytes()))
        .expect("wrk script");
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(&script_path)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("wrk (apt-get install wrk)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("BENCH_JSON "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no summary:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let n: Vec<f64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let seconds = n[1] / 1e6;
    Latencies {
        requests: n[0] as u64,
        seconds,
        per_second: n[0] / seconds,
        p50_ms: n[3] / 1e3,
        p90_ms: n[4] / 1e3,
        p99_ms: n[5] / 1e3,
        max_ms: n[6] / 1e3,
        errors: n[2] as u64,
    }
}

/// Open loop: `rate` requests per second spread over `connections` keep-alive
/// connections for `duration`, each request one body of `bodies` in turn. `on_second`
/// runs once a second (memory sampling).
pub fn fixed_rate(
    port: u16,
    path: &str,
    connections: usize,
    rate: f64,
    duration: Duration,
    bodies: Arc<Vec<String>>,
    mut on_second: impl FnMut(u64) + Send + 'static,
) -> Latencies {
    let runtime = one_thread_runtime();
    let path = path.to_owned();
    runtime.block_on(async move {
        let started = tokio::time::Instant::now();
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        let next_body = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for connection in 0..connections {
            let (path, bodies, next_body) = (path.clone(), bodies.clone(), next_body.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut stream = connect(port).await;
                // Connections start staggered, evenly over one interval.
                let mut scheduled = started + interval.mul_f64(connection as f64 / connections as f64);
                while scheduled < started + duration {
                    tokio::time::sleep_until(scheduled).await;
                    let body = &bodies[next_body.fetch_add(1, Ordering::Relaxed) % bodies.len()];
                    match exchange(&mut stream, port, &path, body).await {
                        Ok(200) => latencies.push(scheduled.elapsed().as_micros() as u32),
                        _ => {
                            errors += 1;
                            stream = connect(port).await;
                        }
                    }
                    scheduled += interval;
                }
                (latencies, errors)
            }));
        }
        let sampler = tokio::spawn(async move {
            let mut second = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                on_second(second);
                second += 1;
            }
        });
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (latencies, failed) = task.await.expect("load task");
            all.extend(latencies);
            errors += failed;
        }
        sampler.abort();
        summarize(all, errors, started.elapsed().as_secs_f64())
    })
}

/// Closed loop: `connections` connections POST batches of `per_batch` events to `path`
/// until `total` events are accepted; 503s and 429s are retried after 200 ms. Returns the
/// latencies of the batches and how many were retried.
pub fn post_all(port: u16, path: &str, connections: usize, total: u64, per_batch: u64) -> (Latencies, u64) {
    let runtime = one_thread_runtime();
    let path = path.to_owned();
    runtime.block_on(async move {
        let started = Instant::now();
        let batches = total.div_ceil(per_batch);
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (path, next) = (path.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut stream = connect(port).await;
                let (mut latencies, mut retried) = (Vec::new(), 0u64);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if index >= batches {
                        return (latencies, retried);
                    }
                    let first = index * per_batch;
                    let body = batch(first, per_batch.min(total - first));
                    loop {
                        let sent = Instant::now();
                        match exchange(&mut stream, port, &path, &body).await {
                            Ok(200) => {
                                latencies.push(sent.elapsed().as_micros() as u32);
                                break;
                            }
                            Ok(status) if status == 503 || status == 429 => {
                                retried += 1;
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            outcome => panic!("batch {index} answered {outcome:?}"),
                        }
                    }
                }
            }));
        }
        let mut all = Vec::new();
        let mut retried = 0;
        for task in tasks {
            let (latencies, again) = task.await.expect("poster");
            all.extend(latencies);
            retried += again;
        }
        (summarize(all, 0, started.elapsed().as_secs_f64()), retried)
    })
}

/// The generators run on one thread, like `wrk -t1`.
pub fn one_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn summarize(mut micros: Vec<u32>, errors: u64, seconds: f64) -> Latencies {
    micros.sort_unstable();
    let at = |q: f64| -> f64 {
        if micros.is_empty() {
            return f64::NAN;
        }
        let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        f64::from(micros[index]) / 1e3
    };
    Latencies {
        requests: micros.len() as u64,
        seconds,
        per_second: micros.len() as f64 / seconds,
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        errors,
    }
}

async fn connect(port: u16) -> TcpStream {
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await {
            let _ = stream.set_nodelay(true);
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to 127.0.0.1:{port}");
}

/// Sends one POST and reads its whole answer (Content-Length framed); the status code.
async fn exchange(stream: &mut TcpStream, port: u16, path: &str, body: &str) -> std::io::Result<u16> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        return head
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::ErrorKind::InvalidData.into());
    }
}
