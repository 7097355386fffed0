#!/usr/bin/env bash
# Regenerates the Go and TypeScript client stubs from protos/. One command, reproducible: the output depends
# only on the .proto files and on pinned tools.
#
#   scripts/generate-clients.sh                  regenerate clients/go/brokerv1 and clients/typescript/src/gen
#   scripts/generate-clients.sh --out DIR        write the same files under DIR/clients/... instead (the
#                                                contract tests compare that with the committed code)
#   scripts/generate-clients.sh --install-tools  only install the pinned tools
#
# Tools and where their versions are pinned:
#   protoc              the grpcio-tools Python package (pyproject.toml, dev extras): python -m grpc_tools.protoc
#   protoc-gen-go       GO_PROTOBUF_VERSION below; go install into build/tools/ (from the Go module proxy)
#   protoc-gen-go-grpc  GO_GRPC_PLUGIN_VERSION below; likewise
#   protoc-gen-ts_proto clients/typescript/package-lock.json (ts-proto); npm ci into clients/typescript/node_modules
# googleapis protos (google/api/field_behavior.proto, google/rpc/*.proto) come from the installed
# googleapis-common-protos Python package, as in scripts/generate.sh.
set -euo pipefail

# protoc-gen-go matches the google.golang.org/protobuf runtime required in clients/go/go.mod.
GO_PROTOBUF_VERSION=v1.36.12
GO_GRPC_PLUGIN_VERSION=v1.6.2
GO_MODULE=github.com/helseid-broker/helseid-broker/clients/go
TS_DIR=clients/typescript

out=
install_only=false
while (($#)); do
  case $1 in
    --out) out=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    --install-tools) install_only=true; shift ;;
    *) echo "usage: $0 [--out DIR | --install-tools]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
root=$PWD
out=${out:-$root}

# go install NAME PACKAGE VERSION: installs a Go binary once per version into build/tools/NAME@VERSION/.
go_tool() {
  local dir=$root/build/tools/$1@$3
  if [[ ! -x $dir/$1 ]]; then
    GOBIN=$dir go install "$2@$3"
  fi
  echo "$dir/$1"
}

# npm ci, skipped while node_modules was installed from the current package-lock.json.
npm_tools() {
  local stamp=$TS_DIR/node_modules/.installed-lock.json
  if ! cmp -s "$TS_DIR/package-lock.json" "$stamp"; then
    (cd "$TS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$TS_DIR/package-lock.json" "$stamp"
  fi
}

protoc_gen_go=$(go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$GO_PROTOBUF_VERSION")
protoc_gen_go_grpc=$(go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc \
  "$GO_GRPC_PLUGIN_VERSION")
npm_tools
if $install_only; then
  exit 0
fi

common=$(python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0])))')
protoc=(python -m grpc_tools.protoc -I protos -I "$common")
protos=(protos/broker/v1/*.proto)

# Go: the go_package option "github.com/helseid-broker/helseid-broker/clients/go/brokerv1;brokerv1" puts the files in clients/go/brokerv1.
go_out=$out/clients/go
mkdir -p "$go_out/brokerv1"
rm -f "$go_out"/brokerv1/*.pb.go
"${protoc[@]}" \
  --plugin=protoc-gen-go="$protoc_gen_go" --plugin=protoc-gen-go-grpc="$protoc_gen_go_grpc" \
  --go_out="$go_out" --go_opt=module=$GO_MODULE \
  --go-grpc_out="$go_out" --go-grpc_opt=module=$GO_MODULE \
  "${protos[@]}"

# TypeScript: our service, the well-known types it uses, and google.rpc.Status with ErrorInfo & co. to read
# error details. emitImportedFiles=false leaves out what no message needs (google.api.field_behavior and
# the 7,000 lines of descriptor.proto behind it); a new import of a well-known type is added here.
ts_out=$out/$TS_DIR/src/gen
rm -rf "$ts_out"
mkdir -p "$ts_out"
"${protoc[@]}" \
  --plugin=protoc-gen-ts_proto="$root/$TS_DIR/node_modules/.bin/protoc-gen-ts_proto" \
  --ts_proto_out="$ts_out" \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,emitImportedFiles=false,importSuffix=.js \
  "${protos[@]}" google/protobuf/{any,duration,timestamp}.proto google/rpc/{status,error_details}.proto
