#!/usr/bin/env bash
# Runs the pinned buf CLI (scripts/buf/package-lock.json: the npm package ships the prebuilt binary),
# installing it on first use (npm ci; cached in scripts/buf/node_modules).
#
#   scripts/buf.sh ARGS...     as `buf ARGS...`
set -euo pipefail
tools=$(cd "$(dirname "$0")/buf" && pwd)
stamp=$tools/node_modules/.installed-lock.json
if ! cmp -s "$tools/package-lock.json" "$stamp"; then
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2)
  cp "$tools/package-lock.json" "$stamp"
fi
exec "$tools/node_modules/.bin/buf" "$@"
