#!/usr/bin/env bash
# Generates Python code and mypy stubs from proto/ into services/common/src with the
# grpcio-tools and mypy-protobuf versions pinned in requirements.lock.
# --check: generate into a scratch directory and fail if the checked-in code differs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=services/common/src
mode=${1:-}
if [[ $mode == --check ]]; then
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi
mapfile -t files < <(cd proto && find signet -name '*.proto' | sort)
include=$($PY -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
$PY -m grpc_tools.protoc -I proto -I "$include" \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy --mypy_out="$OUT" \
  --plugin=protoc-gen-mypy_grpc=.venv/bin/protoc-gen-mypy_grpc --mypy_grpc_out="$OUT" \
  "${files[@]}" 2>&1 | { grep -v "^Writing mypy" || true; }
for f in "${files[@]}"; do
  d=$OUT/$(dirname "$f")
  [[ -f $d/__init__.py ]] || printf '"""Generated from proto/%s; do not edit."""\n' "$(dirname "$f")" > "$d/__init__.py"
done
if [[ $mode == --check ]]; then
  stale=0
  while IFS= read -r gen; do
    rel=${gen#"$OUT"/}
    if ! cmp -s "$gen" "services/common/src/$rel"; then
      echo "stale generated file: services/common/src/$rel" >&2
      stale=1
    fi
  done < <(find "$OUT" -type f)
  # Generated files whose proto was removed are stale too.
  while IFS= read -r have; do
    rel=${have#services/common/src/}
    [[ -f $OUT/$rel ]] || { echo "orphan generated file: $have" >&2; stale=1; }
  done < <(find services/common/src/signet -path '*/v1/*' -not -path '*/__pycache__/*' \( -name '*_pb2*.py*' -o -name '__init__.py' \))
  ((stale == 0)) || { echo "run 'make proto' and commit the result" >&2; exit 1; }
  echo "generated code is up to date"
fi
