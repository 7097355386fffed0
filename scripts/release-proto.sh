#!/usr/bin/env bash
# Records the proto contract of a client release: a binary image (FileDescriptorSet, imports included) of
# protos/ at this commit, protos/released/broker-v1-VERSION.binpb. CI compares the protos with the newest
# recorded image (`buf breaking`, tests/contract/test_proto_compatibility.py), so a change that would break
# an installed client fails the build. Run it when releasing the clients; commit the image.
#
#   scripts/release-proto.sh 1.1.0
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: $0 VERSION, the version of the clients, such as 1.1.0}
python=${VIRTUAL_ENV:-.venv}/bin/python
common=$("$python" -c 'import google.api, os; print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0])))')
mkdir -p protos/released
"$python" -m grpc_tools.protoc -I protos -I "$common" --include_imports \
  --descriptor_set_out="protos/released/broker-v1-$version.binpb" protos/broker/v1/*.proto
echo "protos/released/broker-v1-$version.binpb"
