#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing (Python packages, a Redis server,
# the Node packages of the independent OpenID provider and of the TypeScript client), then runs pytest.
# Arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c 'import broker, grpc_tools, pytest_asyncio, importlinter, hypothesis, opentelemetry.exporter.prometheus, opentelemetry.exporter.otlp.proto.http, opentelemetry.instrumentation.grpc' 2>/dev/null; then
  python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
if [ ! -d tests/oidc_provider/node_modules ]; then
  npm ci --prefix tests/oidc_provider --no-audit --no-fund --loglevel=error
fi
exec python -m pytest "$@"
