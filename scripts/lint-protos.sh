#!/usr/bin/env bash
# Lints protos/ with buf at STANDARD, with no ignores (config: protos/buf.yaml); exits non-zero on any
# finding. The pinned buf comes from scripts/buf.sh (installed on first use). The googleapis protos
# (google/api/field_behavior.proto and the others that the installed googleapis-common-protos Python
# package ships) are copied into protos/.deps/googleapis for the run: buf compiles against them as a second
# module of the workspace but does not lint them.
set -euo pipefail
cd "$(dirname "$0")/.."

buf=$PWD/scripts/buf.sh

# One run at a time per machine, where flock(1) exists: runs in one checkout share protos/.deps.
if command -v flock >/dev/null; then
  exec 9>"${TMPDIR:-/tmp}/helseid-broker-lint-protos.lock"
  flock 9
fi

deps=$PWD/protos/.deps
trap 'rm -rf "$deps"' EXIT
rm -rf "$deps"
python - "$deps/googleapis" <<'PY'
"""Copies every .proto file that the googleapis-common-protos distribution ships into argv[1]."""
import importlib.metadata
import shutil
import sys
from pathlib import Path

out = Path(sys.argv[1])
dist = importlib.metadata.distribution("googleapis-common-protos")
protos = [f for f in dist.files or [] if f.suffix == ".proto"]
if not protos:
    sys.exit("googleapis-common-protos ships no .proto files; is it installed?")
for f in protos:
    target = out / f
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(f.locate(), target)
PY

cd protos
"$buf" --version >/dev/null
"$buf" lint --error-format=text --exclude-path .deps/googleapis/google
echo "buf lint: protos/ passes STANDARD"
