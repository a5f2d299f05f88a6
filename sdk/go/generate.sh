#!/usr/bin/env bash
# Remakes the checked-in Go gRPC stubs under gen/ from the repo's .proto files, so CI needs no
# protoc. Needs protoc (apt-get install protobuf-compiler) and the two plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@latest
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest
# The Workload API itself (workload.proto) is not generated here: go-spiffe already registers
# the standard `workload.proto` in the Go protobuf registry, and a second copy would conflict.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:$(go env GOPATH)/bin"
module=github.com/mandate-dev/mandate/sdk/go
pkg=$module/gen/delegationv1
out=gen/delegationv1
rm -rf "$out"
mkdir -p "$out"
protoc -I ../../proto/proto \
  --go_out=. --go_opt=module=$module \
  --go_opt=Mtaskstatus.proto=$pkg --go_opt=Mdelegation.proto=$pkg \
  --go-grpc_out=. --go-grpc_opt=module=$module \
  --go-grpc_opt=Mtaskstatus.proto=$pkg --go-grpc_opt=Mdelegation.proto=$pkg \
  taskstatus.proto delegation.proto
