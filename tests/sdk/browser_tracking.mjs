// Drives POST /track with the real GrowthBook script-tag bundle (dist/bundles/auto.min.js) in
// headless Chromium, configured for tracking only by the script tag's data attributes:
//   <script async src=".../auto.min.js" data-client-key=KEY data-api-host=PAGE_ORIGIN
//           data-tracking="growthbook" data-event-ingestor-host=INGESTOR_HOST data-no-streaming="1">
// The page is served by a local node server on another host than INGESTOR_HOST (localhost
// vs 127.0.0.1), which also answers the features fetch (GET /api/features/KEY), so every
// /track POST is a cross-origin request from a real page.
//
// Usage: node browser_tracking.mjs INGESTOR_HOST CLIENT_KEY USERS     (INGESTOR_HOST: http://…)
//
// One fresh browser context per user (its own gbuuid cookie). The page sets the user's
// attributes through window.growthbook_config.attributes, evaluates the two features of
// tracking_features.json once (growthbook_queue, after the features arrived) and fires
// window.gbEvents.push({eventName: "Purchase", properties}). Then, by user index i:
//   i % 2 == 0 ("stay"):     the page stays open; the plugin's 100 ms queue timer sends
//                            fetch(keepalive).
//   i % 4 == 1 ("close"):    the page is closed at once (page.close()); pagehide /
//                            visibilitychange make the plugin send its queue with
//                            navigator.sendBeacon. The page is a tab opened (window.open) from
//                            another tab of the same site that stays open, see below.
//   i % 4 == 3 ("navigate"): the page navigates away itself (location.href = "/bye"):
//                            pagehide beacon.
// Whether the unload or the plugin's 100 ms timer comes first is a race the script does not
// control; either way every event is sent once (beacon or keepalive fetch). The stderr summary
// counts both transports.
//
// Completion: a beacon cannot be awaited from its page, Playwright does not report its
// completion (often not even its start) once the page is gone, and closing the browser right
// after a beacon was seen to drop it. So Chromium reaches the ingestor through a transparent
// forwarding HTTP proxy in this script (--proxy-server; the page server bypasses it): request
// method/path/headers/body and the ingestor's response are relayed unchanged (only hop-by-hop
// headers differ: the ingestor sees "Connection: close", one connection per request), and the
// script waits until the ingestor has answered requests carrying
// every expected event of a user before closing that user's context. Deadline:
// TRACK_TIMEOUT_MS (default 30000).
//
// Two Chromium behaviours shape this (observed with Chromium 156 / playwright-core 1.65):
// - A sendBeacon(Blob) fired while its tab closes occasionally never uploads (net-log: stuck
//   in UPLOAD_DATA_STREAM_INIT until the context is closed; 3 in ~880 such beacons) when the
//   closing tab was its renderer process's last page. With the tab opened from a same-site
//   tab that stays open (same renderer process) none stalled (0 in ~600).
// - Closing a page or context whose keepalive fetch was cut by a navigation (Playwright:
//   requestfailed net::ERR_ABORTED; the request still reaches the server) can hang for
//   ~200 s, so "navigate" contexts are left to browser.close() at the end.
//
// Prints one JSON line per event the SDK was handed (what the SDK computed):
//   {"table":"exposures","user","experiment_id","variation_key","variation_index","hash_attribute","hash_value"}
//   {"table":"feature_usage","user","feature_key","value","source"}
//   {"table":"events","user","event_name","properties"}
// Exits 0 only when every /track request was answered with HTTP 200 and the events
// received match the expected ones per user; diagnostics go to stderr.
import http from "node:http";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [host, clientKey, usersArg] = process.argv.slice(2);
const users = Number(usersArg);
if (!host || !clientKey || !Number.isInteger(users)) {
  console.error("usage: node browser_tracking.mjs INGESTOR_HOST CLIENT_KEY USERS");
  process.exit(2);
}
const hostUrl = new URL(host);
if (hostUrl.protocol !== "http:") {
  console.error("INGESTOR_HOST must be http:// (the observing proxy does not tunnel TLS)");
  process.exit(2);
}
const timeoutMs = Number(process.env.TRACK_TIMEOUT_MS ?? 30000);
const concurrency = Number(process.env.BROWSER_CONCURRENCY ?? 3);
const here = dirname(fileURLToPath(import.meta.url));
const bundle = readFileSync(join(here, "node_modules/@growthbook/growthbook/dist/bundles/auto.min.js"));
const features = JSON.parse(readFileSync(join(here, "tracking_features.json"), "utf8"));
const log = (...args) => console.error("[browser_tracking]", ...args);

function userId(i) {
  // Odd-but-legal ids: non-ASCII (incl. a non-BMP emoji), and a quote + backslash.
  if (i % 10 === 3) return `br_user_${i}_üß🚀`;
  if (i % 10 === 7) return `br_user_${i}_"q\\b`;
  return `br_user_${i}`;
}
const exitMode = (i) => (i % 2 === 0 ? "stay" : i % 4 === 1 ? "close" : "navigate");

function userConfig(i) {
  return {
    attributes: {
      user_id: userId(i),
      session_id: `br-session-${i}`,
      country: i % 2 === 0 ? "US" : "DE",
      plan: i % 3 === 0 ? "pro" : "free",
      account: { age_days: 30 + i, tags: ["beta", "größe"], verified: i % 2 === 0 },
    },
    properties: {
      order_id: `br-order-${i}`,
      amount: 19.99 + i,
      currency: "EUR",
      item: 'Bücher 📚 "quoted" \\ back',
      quantity: 3,
      gift: i % 2 === 1,
      items: [{ sku: "A-1", qty: 2, price: 4.5 }, { sku: "ß-2", qty: 1, price: 10.99 }],
      shipping: { method: "express", address: { city: "München", zip: "80331" } },
    },
    navigateAway: exitMode(i) === "navigate",
  };
}

// ---- page server (another host than the ingestor) -------------------------------------
const pageHost = ["127.0.0.1", "[::1]"].includes(hostUrl.hostname) ? "localhost" : "127.0.0.1";
let origin;
const attr = (s) => String(s).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
function page(i) {
  const config = JSON.stringify(userConfig(i)).replace(/</g, "\\u003c");
  return `<!doctype html><html><head><meta charset="utf-8"><title>Checkout</title>
<script>
const CONFIG = ${config};
const exposures = [];
window.growthbook_config = {
  attributes: CONFIG.attributes,
  // Called by the SDK with the exposure it tracks (alongside the plugin's Experiment Viewed).
  additionalTrackingCallback: (experiment, result) => exposures.push({
    experiment_id: experiment.key, variation_key: result.key, variation_index: result.variationId,
    hash_attribute: result.hashAttribute, hash_value: result.hashValue }),
};
window.growthbook_queue = window.growthbook_queue || [];
window.growthbook_queue.push((gb) => {
  const run = () => {
    const evaluated = ["checkout_button", "free_shipping"].map((key) => {
      const res = gb.evalFeature(key);
      return { feature_key: key, value: res.value, source: res.source };
    });
    window.gbEvents = window.gbEvents || [];
    window.gbEvents.push({ eventName: "Purchase", properties: CONFIG.properties });
    window.__report({ evaluated, exposures });
    if (CONFIG.navigateAway) location.href = "/bye";
  };
  if (gb.ready) run(); else document.addEventListener("growthbookdata", run, { once: true });
});
</script>
<script async src="/gb/auto.min.js" data-client-key="${attr(clientKey)}" data-api-host="${attr(origin)}"
  data-tracking="growthbook" data-event-ingestor-host="${attr(host)}" data-no-streaming="1"></script>
</head><body><button>Checkout</button></body></html>`;
}
const pageServer = http.createServer((req, res) => {
  const url = new URL(req.url, origin);
  if (url.pathname === "/gb/auto.min.js") {
    res.writeHead(200, { "content-type": "application/javascript" });
    res.end(bundle);
  } else if (url.pathname === `/api/features/${clientKey}`) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ features }));
  } else if (url.pathname.startsWith("/u/")) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(page(Number(url.pathname.slice(3))));
  } else {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>Shop</title>shop");
  }
});
await new Promise((resolve) => pageServer.listen(0, "127.0.0.1", resolve));
origin = `http://${pageHost}:${pageServer.address().port}`;

// ---- observing forward proxy to the ingestor ------------------------------------------
const received = new Map(); // user_id -> events the ingestor answered 200 for
const rejected = new Set(); // user_ids with events in a request that was not answered 200
const failures = [];
const transports = { fetch: 0, beacon: 0 };
const waiters = new Set();
const hopByHop = new Set(["proxy-connection", "connection", "keep-alive", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade"]);
const pairs = (raw) => {
  const out = [];
  for (let k = 0; k < raw.length; k += 2) {
    if (!hopByHop.has(raw[k].toLowerCase())) out.push(raw[k], raw[k + 1]);
  }
  return out;
};
const proxy = http.createServer((req, res) => {
  let target;
  try {
    target = new URL(req.url);
  } catch {
    target = null;
  }
  if (!target || target.host !== hostUrl.host) {
    // Chromium's own background traffic (e.g. update.googleapis.com): not forwarded.
    res.writeHead(502);
    res.end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const up = http.request({
      host: target.hostname.replace(/^\[|\]$/g, ""), port: target.port || 80, method: req.method,
      path: target.pathname + target.search, headers: pairs(req.rawHeaders),
      agent: false, // a fresh connection per request: no reuse race with the ingestor's keep-alive timeout
    }, (upRes) => {
      const out = [];
      upRes.on("data", (c) => out.push(c));
      upRes.on("end", () => {
        const answer = Buffer.concat(out);
        if (req.method === "POST") {
          transports[(req.headers.accept || "").includes("application/json") ? "fetch" : "beacon"]++;
          let events = [];
          try {
            events = JSON.parse(body.toString("utf8"));
          } catch (e) {
            failures.push(`unparsable /track body: ${e}`);
          }
          if (upRes.statusCode !== 200) {
            failures.push(`${req.method} ${req.url} -> ${upRes.statusCode} ${answer.toString().slice(0, 200)}`);
            for (const event of events) rejected.add(event.user_id);
          } else {
            for (const event of events) received.set(event.user_id, (received.get(event.user_id) || 0) + 1);
          }
          for (const check of waiters) check();
        }
        res.writeHead(upRes.statusCode, pairs(upRes.rawHeaders));
        res.end(answer);
      });
    });
    up.on("error", (e) => {
      failures.push(`${req.method} ${req.url}: ${e.message}`);
      try {
        for (const event of JSON.parse(body.toString("utf8"))) rejected.add(event.user_id);
      } catch {}
      for (const check of waiters) check();
      res.writeHead(502);
      res.end();
    });
    up.end(body);
  });
});
proxy.keepAliveTimeout = 600000; // never close a connection Chromium might reuse
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));

function waitForEvents(user, expected) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if ((received.get(user) || 0) >= expected) {
        waiters.delete(check);
        clearTimeout(timer);
        resolve();
      } else if (rejected.has(user)) {
        waiters.delete(check);
        clearTimeout(timer);
        reject(new Error(`${JSON.stringify(user)}: the ingestor did not accept its events`));
      }
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`${JSON.stringify(user)}: ${received.get(user) || 0}/${expected} events reached the ingestor`));
    }, timeoutMs);
    waiters.add(check);
    check();
  });
}

// ---- browser ---------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--proxy-server=http://127.0.0.1:${proxy.address().port}`,
    // "<-loopback>" lifts Chromium's implicit loopback bypass; the page server stays direct.
    `--proxy-bypass-list=<-loopback>;${pageHost}:${pageServer.address().port}`],
});

const lines = new Array(users);
async function runUser(i) {
  const user = userId(i);
  const mode = exitMode(i);
  const context = await browser.newContext();
  try {
    let reported;
    const report = new Promise((resolve) => { reported = resolve; });
    await context.exposeBinding("__report", (source, result) => {
      if (mode === "close") source.page.close().catch((e) => log(`user ${i} close: ${e}`));
      reported(result);
    });
    let tab;
    if (mode === "close") {
      const opener = await context.newPage();
      await opener.goto(`${origin}/shop`);
      [tab] = await Promise.all([
        opener.waitForEvent("popup"),
        opener.evaluate((url) => { window.open(url); }, `${origin}/u/${i}`),
      ]);
    } else {
      tab = await context.newPage();
    }
    tab.on("pageerror", (e) => log(`user ${i} page error: ${e}`));
    tab.on("console", (m) => m.type() === "error" && log(`user ${i} console: ${m.text()}`));
    if (mode !== "close") await tab.goto(`${origin}/u/${i}`);
    const { evaluated, exposures } = await report;
    const out = [];
    for (const f of evaluated) out.push({ table: "feature_usage", user, ...f });
    for (const x of exposures) out.push({ table: "exposures", user, experiment_id: x.experiment_id,
      variation_key: x.variation_key, variation_index: x.variation_index,
      hash_attribute: x.hash_attribute, hash_value: x.hash_value });
    out.push({ table: "events", user, event_name: "Purchase", properties: userConfig(i).properties });
    lines[i] = out;
    await waitForEvents(user, out.length);
  } finally {
    if (mode !== "navigate") await context.close();
  }
}

let ok = true;
try {
  let next = 0;
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, users)) }, async () => {
    while (next < users) {
      const i = next++;
      try {
        await runUser(i);
      } catch (e) {
        ok = false;
        log(`user ${i}: ${e.message ?? e}`);
      }
    }
  }));
} finally {
  await browser.close();
  pageServer.close();
  pageServer.closeAllConnections();
  proxy.close();
  proxy.closeAllConnections();
}

const expected = new Map();
for (const out of lines) for (const l of out ?? []) expected.set(l.user, (expected.get(l.user) || 0) + 1);
for (const [user, n] of received) {
  if (expected.get(user) !== n) {
    ok = false;
    log(`${JSON.stringify(user)}: ingestor answered for ${n} events, expected ${expected.get(user) ?? 0}`);
  }
}
if (failures.length) {
  ok = false;
  log(`${failures.length} failed /track request(s):`, failures.slice(0, 5));
}
log(`POSTs relayed: ${transports.fetch} fetch, ${transports.beacon} sendBeacon`);
if (users >= 2 && transports.beacon === 0) log("warning: no request went out via sendBeacon");

for (const out of lines) for (const l of out ?? []) process.stdout.write(JSON.stringify(l) + "\n");
process.exitCode = ok ? 0 : 1;
