// Drives the ingest API from a real browser on another origin with the real GrowthBook
// JavaScript SDK and the seed's Next.js callback (fetch with Content-Type
// application/json, so Chromium sends a CORS preflight).
//
// Usage: node browser_sdk.mjs EXPOSURE_URL USERS
// Prints one JSON line per exposure: {"user", "ok", "status", "event_id", "variation"}.
// (sendBeacon's text/plain path is covered by ingest_api.rs: a beacon's delivery cannot
// be awaited from the page, so it would make this test racy.)
import http from "node:http";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [exposureUrl, usersArg] = process.argv.slice(2);
const users = Number(usersArg);
// The SDK's browser bundle (a global `growthbook`), not in the package's "exports" map.
const here = dirname(fileURLToPath(import.meta.url));
const sdkBundle = readFileSync(join(here, "node_modules/@growthbook/growthbook/dist/bundles/index.min.js"));

const page = `<!doctype html><html><head><script src="/growthbook.js"></script></head><body><script>
const EXPOSURE_API = ${JSON.stringify(exposureUrl)};
const FEATURES = { new_search_ui: { defaultValue: false, rules: [
  { key: "new_search_ui", variations: [false, true], weights: [0.5, 0.5], hashAttribute: "id" } ] } };
window.results = [];
async function run(users) {
  for (let i = 0; i < users; i++) {
    const userId = "js_user_" + i;
    const attributes = { id: userId, ds_user_id: userId, ds_session_id: "s-" + userId,
      user_agent: navigator.userAgent, geo_country_code: "DE", currency_id: "EUR",
      locale: navigator.language, utm: { source: "newsletter" }, is_kf_verified: false, platform: "web" };
    let done;
    const tracked = new Promise((resolve) => { done = resolve; });
    // The seed's onExperimentViewed, as trackingCallback.
    const gb = new growthbook.GrowthBook({ attributes, features: FEATURES,
      trackingCallback: async (experiment, result) => {
        const exposureData = { ds_user_id: userId, experiment_id: experiment.key,
          variation_id: result.key, attributes, source: "nextjs_web" };
        try {
          const response = await fetch(EXPOSURE_API, { method: "POST",
            headers: { "Content-Type": "application/json" }, body: JSON.stringify(exposureData) });
          const body = await response.json();
          window.results.push({ user: userId, ok: response.ok, status: response.status,
            event_id: body.event_id, variation: result.key });
        } catch (error) {
          window.results.push({ user: userId, ok: false, error: String(error) });
        }
        done();
      } });
    gb.isOn("new_search_ui");
    await tracked;
    gb.destroy();
  }
}
</script></body></html>`;

const server = http.createServer((req, res) => {
  if (req.url === "/growthbook.js") {
    res.writeHead(200, { "content-type": "application/javascript" });
    res.end(sdkBundle);
  } else {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(page);
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const tab = await browser.newPage();
  await tab.goto(origin + "/");
  await tab.evaluate((n) => run(n), users);
  for (const result of await tab.evaluate(() => window.results)) {
    console.log(JSON.stringify(result));
  }
} finally {
  await browser.close();
  server.close();
}
