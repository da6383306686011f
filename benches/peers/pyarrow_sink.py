"""The sink's Python peer: Kafka values (JSON, one per line of the input file) -> Arrow
columns -> one Parquet file in memory, with the same columns as the lake's files.

Prints one JSON line: rows, the best of three timings, Parquet bytes. Reading the file
is not timed; the JSON decode, the columns and the Parquet encode are.

    python pyarrow_sink.py VALUES.jsonl CODEC
"""

import io
import json
import sys
import time
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

PROMOTED = ["ds_session_id", "geo_country_code", "geo_city", "currency_id", "locale", "platform", "user_agent"]


def micros(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


def to_parquet(values, codec):
    cols = {name: [] for name in ["event_id", "ds_user_id", "anonymous_id", "experiment_id", "variation_id",
                                  "exposed_at", "received_at", "source", "attributes", *PROMOTED,
                                  "is_kf_verified", "extra", "kafka_partition", "kafka_offset"]}
    for offset, value in enumerate(values):
        e = json.loads(value)
        attributes = e.get("attributes") or {}
        cols["event_id"].append(e["event_id"])
        cols["ds_user_id"].append(e.get("ds_user_id"))
        cols["anonymous_id"].append(e.get("anonymous_id"))
        cols["experiment_id"].append(e["experiment_id"])
        cols["variation_id"].append(e["variation_id"])
        cols["exposed_at"].append(micros(e["exposed_at"]))
        cols["received_at"].append(micros(e["received_at"]))
        cols["source"].append(e.get("source"))
        cols["attributes"].append(json.dumps(attributes, separators=(",", ":")))
        for name in PROMOTED:
            v = attributes.get(name)
            cols[name].append(v if isinstance(v, str) else None)
        v = attributes.get("is_kf_verified")
        cols["is_kf_verified"].append(v if isinstance(v, bool) else None)
        extra = e.get("extra")
        cols["extra"].append(json.dumps(extra, separators=(",", ":")) if extra else None)
        cols["kafka_partition"].append(0)
        cols["kafka_offset"].append(offset)
    ts = pa.timestamp("us", tz="UTC")
    types = {"exposed_at": ts, "received_at": ts, "is_kf_verified": pa.bool_(),
             "kafka_partition": pa.int32(), "kafka_offset": pa.int64()}
    table = pa.table({name: pa.array(v, type=types.get(name, pa.string())) for name, v in cols.items()})
    out = io.BytesIO()
    pq.write_table(table, out, compression=codec)
    return out.getbuffer().nbytes


def main():
    path, codec = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        values = f.read().splitlines()
    best, size = float("inf"), 0
    for _ in range(3):
        started = time.perf_counter()
        size = to_parquet(values, codec)
        best = min(best, time.perf_counter() - started)
    print(json.dumps({"rows": len(values), "seconds": best, "bytes": size}))


if __name__ == "__main__":
    main()
