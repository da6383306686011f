"""The hand-written Python endpoint users would otherwise deploy: FastAPI + confluent-kafka.

POST /exposure takes one exposure, checks the fields the pipeline requires, produces it
(key = ds_user_id, acks=all, idempotent, the same linger as `exposures ingest`) and answers
200 only after the broker's delivery report, which is the promise `exposures ingest` makes.
Run by `cargo bench --bench pipeline` under uvicorn[standard] with 2 workers.

Environment: BENCH_BROKERS, BENCH_TOPIC, BENCH_LINGER_MS.
"""

import asyncio
import json
import os
import threading
import uuid
from contextlib import asynccontextmanager

from confluent_kafka import Producer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

REQUIRED = ("ds_user_id", "experiment_id", "variation_id")
producer = None
topic = os.environ.get("BENCH_TOPIC", "exposures")


def poll_forever(stop):
    # Delivery reports are only served by poll(); a thread keeps them flowing.
    while not stop.is_set():
        producer.poll(0.05)


@asynccontextmanager
async def lifespan(app):
    global producer
    producer = Producer({
        "bootstrap.servers": os.environ["BENCH_BROKERS"],
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": float(os.environ.get("BENCH_LINGER_MS", "5")),
        "message.timeout.ms": 2000,
    })
    stop = threading.Event()
    poller = threading.Thread(target=poll_forever, args=(stop,), daemon=True)
    poller.start()
    yield
    stop.set()
    producer.flush(5)


app = FastAPI(lifespan=lifespan)


@app.post("/exposure")
async def exposure(request: Request):
    try:
        event = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"error": "invalid JSON"}, status_code=400)
    if not isinstance(event, dict) or any(not isinstance(event.get(f), str) or not event.get(f) for f in REQUIRED):
        return JSONResponse({"error": "ds_user_id, experiment_id and variation_id are required"}, status_code=400)
    event.setdefault("event_id", str(uuid.uuid4()))
    loop = asyncio.get_running_loop()
    acked = loop.create_future()

    def on_delivery(error, _message):
        if error is None:
            loop.call_soon_threadsafe(acked.set_result, None)
        else:
            loop.call_soon_threadsafe(acked.set_exception, RuntimeError(str(error)))

    producer.produce(topic, key=event["ds_user_id"].encode(), value=json.dumps(event).encode(), on_delivery=on_delivery)
    try:
        await acked
    except RuntimeError as error:
        return JSONResponse({"error": str(error)}, status_code=503)
    return {"status": "ok", "event_id": event["event_id"]}
