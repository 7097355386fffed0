#!/usr/bin/env bash
# Runs the broker from the project's virtual environment .venv/ (created and filled on first use, see
# scripts/venv.sh; only `python3` is needed). Arguments go to `helseid-broker run` (none: embedded defaults
# with a demo tenant and the dev authority, so the dev-authority extra is installed where one is defined).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv dev-authority
exec helseid-broker run "$@"
