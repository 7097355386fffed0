#!/usr/bin/env bash
# Regenerates the Python code in broker/v1/ from protos/. One command, reproducible: the output depends only
# on the .proto files and the pinned grpcio-tools version.
set -euo pipefail
cd "$(dirname "$0")/.."
common=$(python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0])))')
rm -f broker/v1/*_pb2*.py broker/v1/*_pb2*.pyi
python -m grpc_tools.protoc -I protos -I "$common" \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  protos/broker/v1/*.proto
# protoc writes relative to the include root: protos/broker/v1 -> ./broker/v1
touch broker/v1/__init__.py
