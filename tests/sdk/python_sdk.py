"""Drives the ingest API with the real GrowthBook Python SDK and the seed's callback.

Usage: python3 python_sdk.py EXPOSURE_URL USERS
Prints one JSON line per exposure: {"user": ..., "status": ..., "event_id": ..., "variation": ...}.
Features are given inline, so no GrowthBook server is needed; the experiment assignment,
the tracking callback and the HTTP POST are the SDK's and the seed's own code.
"""
import json
import sys

import requests
from growthbook import GrowthBook

URL = sys.argv[1]
USERS = int(sys.argv[2])

FEATURES = {
    "new_search_ui": {
        "defaultValue": False,
        "rules": [{"key": "new_search_ui", "variations": [False, True], "weights": [0.5, 0.5],
                   "hashAttribute": "id"}],
    }
}

results = []


def attributes(user):
    return {
        "id": user, "ds_user_id": user, "ds_session_id": f"session-{user}",
        "user_agent": "python-requests", "geo_country_code": "US", "geo_city": "New York",
        "currency_id": "USD", "locale": "en-US", "utm": {"source": "google", "medium": "cpc"},
        "forwarded_for": "192.168.1.1", "is_kf_verified": True, "platform": "web",
    }


def make_callback(user):
    def on_experiment_viewed(experiment, result, **_context):
        # growthbook 4.x also passes user_context=…; the seed's two-argument callback needs **kwargs.
        # The seed's callback, verbatim in substance.
        exposure_data = {
            "ds_user_id": user,
            "experiment_id": experiment.key,
            "variation_id": result.key,
            "attributes": attributes(user),
            "source": "search_core_python",
        }
        response = requests.post(URL, json=exposure_data, headers={"Content-Type": "application/json"}, timeout=5)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        results.append({"user": user, "status": response.status_code, "event_id": body.get("event_id"),
                        "variation": result.key, "experiment": experiment.key})
    return on_experiment_viewed


for i in range(USERS):
    user = f"py_user_{i}"
    gb = GrowthBook(attributes=attributes(user), features=FEATURES, on_experiment_viewed=make_callback(user))
    gb.is_on("new_search_ui")
    gb.destroy()

for r in results:
    print(json.dumps(r))
