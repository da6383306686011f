"""Drives POST /track with the real GrowthBook Python SDK's own tracking plugin.

Usage: python3 python_tracking.py INGESTOR_HOST CLIENT_KEY USERS

For each user a `GrowthBook(client_key=..., plugins=[growthbook_tracking_plugin(ingestor_host=...)])`
evaluates the two features of tracking_features.json once and logs one custom "Purchase"
event; the plugin batches them and POSTs them to INGESTOR_HOST/track?client_key=CLIENT_KEY.

Prints one JSON line per event the plugin was handed (what the SDK computed):
  {"table": "exposures", "user", "experiment_id", "variation_key", "variation_index",
   "hash_attribute", "hash_value"}
  {"table": "feature_usage", "user", "feature_key", "value", "source"}
  {"table": "events", "user", "event_name", "properties"}
Exits 0 only when every batch has been sent and answered with HTTP 200; diagnostics go
to stderr.

A client key makes the sync GrowthBook fetch features from api_host on evaluation (the
default host is GrowthBook's CDN), so the same definitions are also served from a local
server here, as a real app would get them from its GrowthBook API.
"""
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from growthbook import GrowthBook
from growthbook.plugins.growthbook_tracking import growthbook_tracking_plugin

HOST, CLIENT_KEY, USERS = sys.argv[1], sys.argv[2], int(sys.argv[3])
FEATURES = json.loads((Path(__file__).parent / "tracking_features.json").read_text())


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Problems(logging.Handler):
    """The plugin swallows send errors and only logs them; collect them to fail the run."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(self.format(record))


problems = Problems()
logging.getLogger("growthbook.plugins").addHandler(problems)
logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

# Local stand-in for the GrowthBook API: GET /api/features/CLIENT_KEY.
features_body = json.dumps({"features": FEATURES}).encode()


class FeaturesHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == f"/api/features/{CLIENT_KEY}":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(features_body)))
            self.end_headers()
            self.wfile.write(features_body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


api = ThreadingHTTPServer(("127.0.0.1", 0), FeaturesHandler)
api_thread = threading.Thread(target=api.serve_forever, daemon=True)
api_thread.start()
API_HOST = f"http://127.0.0.1:{api.server_address[1]}"


def user_id(i):
    # Odd-but-legal ids: non-ASCII (incl. a non-BMP emoji), and a quote + backslash.
    if i % 10 == 3:
        return f"py_user_{i}_üß🚀"
    if i % 10 == 7:
        return f'py_user_{i}_"q\\b'
    return f"py_user_{i}"


lines = []

for i in range(USERS):
    user = user_id(i)
    attributes = {
        "id": f"py-device-{i}",
        "user_id": user,
        "session_id": f"py-session-{i}",
        "country": "US" if i % 2 == 0 else "DE",
        "plan": "pro" if i % 3 == 0 else "free",
        "account": {"age_days": 30 + i, "tags": ["beta", "größe"], "verified": i % 2 == 0},
    }
    exposures = []

    def on_experiment_viewed(experiment, result, user_context=None, _exposures=exposures):
        # The plugin's additional_callback: called with exactly what it tracks.
        _exposures.append((experiment, result))

    gb = GrowthBook(
        client_key=CLIENT_KEY,
        api_host=API_HOST,
        attributes=dict(attributes),  # destroy() clears the dict it was given
        features=FEATURES,
        plugins=[growthbook_tracking_plugin(
            ingestor_host=HOST, batch_size=3, batch_timeout=5.0,
            additional_callback=on_experiment_viewed)],
    )
    for key in ("checkout_button", "free_shipping"):
        res = gb.eval_feature(key)  # the plugin wraps eval_feature: one $$feature_evaluated per call
        lines.append({"table": "feature_usage", "user": user, "feature_key": key,
                      "value": res.value, "source": res.source})
    for experiment, result in exposures:
        lines.append({"table": "exposures", "user": user, "experiment_id": experiment.key,
                      "variation_key": result.key, "variation_index": result.variationId,
                      "hash_attribute": result.hashAttribute, "hash_value": result.hashValue})
    properties = {
        "order_id": f"py-order-{i}",
        "amount": 19.99 + i,
        "currency": "EUR",
        "item": "Bücher 📚 \"quoted\" \\ back",
        "quantity": 3,
        "gift": i % 2 == 1,
        "items": [{"sku": "A-1", "qty": 2, "price": 4.5}, {"sku": "ß-2", "qty": 1, "price": 10.99}],
        "shipping": {"method": "express", "address": {"city": "München", "zip": "80331"}},
    }
    gb.log_event("Purchase", properties)
    lines.append({"table": "events", "user": user, "event_name": "Purchase",
                  "properties": json.loads(json.dumps(properties))})
    gb.destroy()  # plugin cleanup: flushes the partial batch on a new daemon thread

# Every batch is POSTed from its own daemon thread; wait for all of them.
api.shutdown()
api.server_close()
for thread in threading.enumerate():
    if thread is not threading.main_thread():
        thread.join(timeout=60)
alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
if alive:
    log(f"threads still running after 60s: {alive}")
    sys.exit(1)

for line in lines:
    print(json.dumps(line, ensure_ascii=False))
sys.stdout.flush()

if problems.records:
    for record in problems.records:
        log(record)
    sys.exit(1)
