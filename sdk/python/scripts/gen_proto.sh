#!/usr/bin/env bash
# Remakes src/mandate_verify/_proto/ from the workspace's proto/proto/{taskstatus,delegation}.proto
# with grpcio-tools, whose wheel bundles protoc (no system protoc needed):
#   .venv/bin/pip install grpcio-tools && PYTHON=.venv/bin/python sdk/python/scripts/gen_proto.sh
# The Workload API stubs are not generated here: py-spiffe already registers workload.proto's
# messages (no package, so names like `X509SVIDRequest`) in protobuf's default pool, and a second
# copy would clash; the SDK uses py-spiffe's `spiffe._proto` for FetchX509SVID instead.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
out=$here/src/mandate_verify/_proto
rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py
"$python" -m grpc_tools.protoc -I "$root/proto/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  taskstatus.proto delegation.proto
# protoc writes `import x_pb2`; inside a package it must be relative.
sed -i -E 's/^import (\w+_pb2) as /from . import \1 as /' "$out"/*_pb2_grpc.py
"$python" -m grpc_tools.protoc --version
