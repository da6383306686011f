// Drives POST /track with the real GrowthBook JavaScript SDK's own tracking plugin, in Node.
//
// Usage: node node_tracking.mjs INGESTOR_HOST CLIENT_KEY USERS
//
// For each user a `new GrowthBook({clientKey, plugins: [growthbookTrackingPlugin({ingestorHost})]})`
// evaluates the two features of tracking_features.json once and logs one custom "Purchase"
// event; the plugin queues them and POSTs them to INGESTOR_HOST/track?client_key=CLIENT_KEY.
// Even users wait for the plugin's own queue timer (100 ms), odd users destroy() at once
// (the destroy flush).
//
// Prints one JSON line per event the plugin was handed (what the SDK computed):
//   {"table":"exposures","user","experiment_id","variation_key","variation_index","hash_attribute","hash_value"}
//   {"table":"feature_usage","user","feature_key","value","source"}
//   {"table":"events","user","event_name","properties"}
// Exits 0 only when every POST has been answered with HTTP 200; diagnostics go to stderr.
// The plugin swallows send failures (console.error), so the global fetch it calls is
// observed (not altered) to see each /track response.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GrowthBook } from "@growthbook/growthbook";
import { growthbookTrackingPlugin } from "@growthbook/growthbook/plugins";

const [host, clientKey, usersArg] = process.argv.slice(2);
const users = Number(usersArg);
if (!host || !clientKey || !Number.isInteger(users)) {
  console.error("usage: node node_tracking.mjs INGESTOR_HOST CLIENT_KEY USERS");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const features = JSON.parse(readFileSync(join(here, "tracking_features.json"), "utf8"));

// Keep the plugin's logs (console.log/error) off stdout.
console.log = (...args) => console.error(...args);

const trackUrl = `${host.replace(/\/+$/, "")}/track?client_key=`;
const sends = [];
const failures = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const promise = realFetch(input, init);
  if (String(input).startsWith(trackUrl)) {
    sends.push(
      promise.then(
        async (res) => {
          const text = await res.clone().text();
          if (res.status !== 200) failures.push(`${res.status} ${text}`);
        },
        (err) => failures.push(String(err)),
      ),
    );
  }
  return promise;
};

function userId(i) {
  // Odd-but-legal ids: non-ASCII (incl. a non-BMP emoji), and a quote + backslash.
  if (i % 10 === 3) return `js_user_${i}_üß🚀`;
  if (i % 10 === 7) return `js_user_${i}_"q\\b`;
  return `js_user_${i}`;
}

const lines = [];
for (let i = 0; i < users; i++) {
  const user = userId(i);
  const attributes = {
    id: `js-device-${i}`,
    user_id: user,
    session_id: `js-session-${i}`,
    country: i % 2 === 0 ? "US" : "DE",
    plan: i % 3 === 0 ? "pro" : "free",
    account: { age_days: 30 + i, tags: ["beta", "größe"], verified: i % 2 === 0 },
  };
  const exposures = [];
  const gb = new GrowthBook({
    clientKey,
    attributes,
    features,
    // Fires from the same code path as the plugin's "Experiment Viewed" (same dedupe).
    trackingCallback: (experiment, result) => exposures.push({ experiment, result }),
    plugins: [growthbookTrackingPlugin({ ingestorHost: host })],
  });
  for (const key of ["checkout_button", "free_shipping"]) {
    const res = gb.evalFeature(key); // one "Feature Evaluated" per feature (deduped per instance)
    lines.push({ table: "feature_usage", user, feature_key: key, value: res.value, source: res.source });
  }
  for (const { experiment, result } of exposures) {
    lines.push({
      table: "exposures", user, experiment_id: experiment.key, variation_key: result.key,
      variation_index: result.variationId, hash_attribute: result.hashAttribute,
      hash_value: result.hashValue,
    });
  }
  const properties = {
    order_id: `js-order-${i}`,
    amount: 19.99 + i,
    currency: "EUR",
    item: 'Bücher 📚 "quoted" \\ back',
    quantity: 3,
    gift: i % 2 === 1,
    items: [{ sku: "A-1", qty: 2, price: 4.5 }, { sku: "ß-2", qty: 1, price: 10.99 }],
    shipping: { method: "express", address: { city: "München", zip: "80331" } },
  };
  // Resolves once the flush carrying this event has been answered.
  const logged = gb.logEvent("Purchase", properties);
  lines.push({ table: "events", user, event_name: "Purchase", properties: JSON.parse(JSON.stringify(properties)) });
  if (i % 2 === 0) {
    await logged; // the plugin's queue timer flushes
    gb.destroy();
  } else {
    gb.destroy(); // destroy flushes the queue at once
    await logged;
  }
}

await Promise.all(sends);
for (const line of lines) process.stdout.write(JSON.stringify(line) + "\n");
if (failures.length) {
  console.error(`${failures.length} /track POST(s) failed:`, failures.slice(0, 5));
  process.exitCode = 1;
}
