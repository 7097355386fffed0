#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing (the project with its dev extras
# into the virtual environment .venv/, see scripts/venv.sh; a Redis server; the Node packages of the
# independent OpenID provider and of the TypeScript client), then runs pytest from .venv/.
# Only `python3` is needed; nothing goes into the system's Python. Arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
ensure_venv dev dev-authority
# Debian packages the tests use: a Redis server, and openssl (the README's example-configuration steps).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d tests/oidc_provider/node_modules ]; then
  npm ci --prefix tests/oidc_provider --no-audit --no-fund --loglevel=error
fi
exec "$VIRTUAL_ENV/bin/python" -m pytest "$@"
