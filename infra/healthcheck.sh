#!/bin/bash
# Container health probe for the exposures image (Docker HEALTHCHECK, compose, ECS):
# GET http://127.0.0.1:$HEALTHCHECK_PORT$HEALTHCHECK_PATH, healthy on a 200 answer.
# Defaults suit `exposures ingest` and `up` (8080, /healthz); `sink` and `load` serve only
# /metrics, on their --metrics-listen port (9464 and 9465 by default).
# Plain bash (/dev/tcp), so the runtime image needs no HTTP client.
set -euo pipefail
port="${HEALTHCHECK_PORT:-8080}"
path="${HEALTHCHECK_PATH:-/healthz}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "${path}" >&3
read -r _version status _reason <&3
[ "${status}" = "200" ]
