#!/usr/bin/env bash
# Installs the external load generators of `python -m bench.cores` on a Debian machine:
# - h2load, from Debian's nghttp2-client package (apt-get);
# - ghz, built from its Go module (`go install`, which needs Go) into .bench-tools/bin/, which git ignores
#   (the folder holds its own .gitignore). bench/ghz.py looks there when ghz is not on PATH.
# The bench is not run by CI, so neither is this. GHZ_VERSION picks another ghz release.
set -euo pipefail
cd "$(dirname "$0")/.."

GHZ_VERSION="${GHZ_VERSION:-v0.93.0}"
TOOLS=.bench-tools

if ! command -v h2load >/dev/null 2>&1; then
  echo "installing nghttp2-client (h2load) from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nghttp2-client >/dev/null
fi

if command -v go >/dev/null 2>&1; then
  mkdir -p "$TOOLS/bin"
  printf '# built tools of scripts/bench-tools.sh, never committed\n*\n' >"$TOOLS/.gitignore"
  echo "building ghz $GHZ_VERSION into $TOOLS/bin" >&2
  GOBIN="$PWD/$TOOLS/bin" go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
else
  echo "go is not installed: no ghz (python -m bench.cores leaves its rows out)" >&2
fi

h2load --version | head -n 1
if [ -x "$TOOLS/bin/ghz" ]; then
  # A ghz built by `go install` reports its version as "dev": the module's version is in the binary.
  echo "ghz $(go version -m "$TOOLS/bin/ghz" | awk '$1 == "mod" { print $3 }') in $TOOLS/bin"
fi
