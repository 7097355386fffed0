#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing (the project with its dev extras
# into the virtual environment .venv/, see scripts/venv.sh; a Redis server; the Node packages of the
# independent OpenID provider and of the TypeScript client), then runs pytest from .venv/: the whole suite
# as two processes side by side (below), or, given test paths, just those.
# Only `python3` is needed; nothing goes into the system's Python. Arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
ensure_venv dev dev-authority
# Debian packages the tests use: a Redis server, openssl (the README's example-configuration steps), and
# SoftHSM2 (the PKCS#11 token the HSM-key tests sign with).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d tests/oidc_provider/node_modules ]; then
  npm ci --prefix tests/oidc_provider --no-audit --no-fund --loglevel=error
fi
# Named tests (an argument that is not an option): one pytest run, as asked.
for arg in "$@"; do
  case $arg in -*) ;; *) exec "$VIRTUAL_ENV/bin/python" -m pytest "$@" ;; esac
done
# The whole suite in two processes side by side: the tests that drive other toolchains (the Go, Java,
# TypeScript and Python clients, the Helm chart) mostly wait on compilers and package downloads, so they
# run beside the rest instead of after it. Their output follows the main run's.
beside=(tests/clients tests/deploy)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$VIRTUAL_ENV/bin/python" -m pytest "$@" "${beside[@]}" >"$log" 2>&1 &
beside_pid=$!
main_status=0
"$VIRTUAL_ENV/bin/python" -m pytest "$@" "${beside[@]/#/--ignore=}" || main_status=$?
beside_status=0
wait "$beside_pid" || beside_status=$?
echo "--- ${beside[*]} (run beside the rest)"
cat "$log"
if [ "$main_status" -ne 0 ] || [ "$beside_status" -ne 0 ]; then
  echo "failed: the main run exited $main_status, ${beside[*]} exited $beside_status" >&2
  exit 1
fi
