#!/usr/bin/env bash
# The exported files on the GPU machine (issue 32): ONNX Runtime's CUDA provider beside Keras on JAX.
#
# Here (CPU, registry reachable):
#   bash scripts/gpu_bench.sh prepare artifacts/default ../shared/datasets/clothing-dataset-small/test
#     downloads onnxruntime-gpu 1.31.1 (cp312, CUDA 13) and the pure-Python wheels the GPU machine lacks,
#     cuts them, the bundle and the test images into pieces under .gpu/callK/ (each under 64 MiB, each with
#     the record of every piece's sha256), and prints the device calls to make.
# There, one device call per folder, while the machine stays warm (carry [".gpu/callK"]):
#   bash scripts/gpu_bench.sh receive .gpu/callK
# and the last call (carry [".gpu/callN"]):
#   bash scripts/gpu_bench.sh run .gpu/callN
#     receives its pieces, joins every file (hashes checked), installs the wheels into /tmp/gpu-site,
#     checks that a session asked for CUDA really runs on CUDAExecutionProvider, and runs
#     python -m benchmarks BUNDLE --images TEST --device gpu into $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
PIECES="python3 scripts/gpu_pieces.py"
STORE=/tmp/gpu-store FILES=/tmp/gpu-files SITE=/tmp/gpu-site

onnx_only() {  # the bundle with only what the GPU runs: model.keras (Keras on JAX) and the ONNX files
    python3 - "$1" "$2" <<'EOF'
import os, sys
from dataclasses import replace
from pathlib import Path
from runtime.bundle import Manifest
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
m = Manifest.read(src)
keep = tuple(a for a in m.artifacts if a.format == "onnx")
files = {a.file for a in keep}
dest.mkdir(parents=True)
for name in [m.source.file, *files]:
    os.link(src / name, dest / name)
replace(m, artifacts=keep, cascades=tuple(c for c in m.cascades if {c.fast, c.exact} <= files)).write(dest)
EOF
}

prepare() {
    local bundle=$1 test=$2 work=.gpu/whole
    rm -rf .gpu && mkdir -p "$work/wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -c constraints.txt -d "$work/wheels" onnxruntime-gpu==1.31.1 keras==3.15.1 namex optree fastapi starlette uvicorn \
        pydantic pydantic-core annotated-types typing-inspection
    onnx_only "$bundle" "$work/$(basename "$bundle")"
    tar -C "$work" -cf "$work/bundle.tar" "$(basename "$bundle")"
    tar -C "$(dirname "$test")" -cf "$work/test.tar" "$(basename "$test")"
    (cd "$work/wheels" && tar -cf ../wheels.tar ./*.whl)
    $PIECES split "$work/wheels.tar" "$work/bundle.tar" "$work/test.tar" --out .gpu/all --piece-mib 60
    local k
    k=$($PIECES pack .gpu/all --calls .gpu | wc -w)
    rm -rf "$work" .gpu/all
    echo "$k device calls, each carrying one folder:"
    for ((i = 0; i < k - 1; i++)); do echo "  carry [\".gpu/call$i\"]: bash scripts/gpu_bench.sh receive .gpu/call$i"; done
    echo "  carry [\".gpu/call$((k - 1))\"]: bash scripts/gpu_bench.sh run .gpu/call$((k - 1))"
}

run() {
    $PIECES receive "$1" --store "$STORE"
    $PIECES join --store "$STORE" --out "$FILES"
    mkdir -p "$FILES/wheels" && tar -C "$FILES/wheels" -xf "$FILES/wheels.tar"
    tar -C "$FILES" -xf "$FILES/bundle.tar" && tar -C "$FILES" -xf "$FILES/test.tar"
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$FILES"/wheels/*.whl
    export PYTHONPATH="$SITE:$PWD" KERAS_BACKEND=jax
    local bundle test
    bundle=$(find "$FILES" -maxdepth 2 -name manifest.json -printf '%h\n' | head -1)
    test=$(find "$FILES" -mindepth 1 -maxdepth 1 -type d ! -name wheels ! -path "$bundle" | head -1)
    python3 -c "import sys; from runtime.formats import FORMATS; \
r = FORMATS['onnx'].load(sys.argv[1] + '/model.fp32.onnx', None, 'gpu'); print('provider:', r.provider)" "$bundle"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "${OUT:-.}/gpu.csv" || true
    python3 -m benchmarks "$bundle" --images "$test" --device gpu --out "${OUT:-runs/benchmarks}"
}

case "${1:-}" in
    prepare) prepare "$2" "$3" ;;
    receive) $PIECES receive "$2" --store "$STORE" ;;
    run) run "$2" ;;
    *) echo "usage: bash scripts/gpu_bench.sh prepare BUNDLE TESTDIR | receive .gpu/callK | run .gpu/callN" >&2; exit 2 ;;
esac
