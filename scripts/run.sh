#!/usr/bin/env bash
# Runs the broker; installs the Python package first on a machine that does not have it.
# Arguments go to `python -m broker run` (none: embedded defaults with a demo tenant).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c 'import broker.v1, grpc, joserfc, httpx, redis, aiohttp, opentelemetry.exporter.prometheus' 2>/dev/null; then
  python -m pip install --quiet --disable-pip-version-check -e .
fi
exec python -m broker run "$@"
