#!/usr/bin/env bash
# The main job on the clothing dataset: train the quick profile into artifacts/default,
# convert it to the six verified artifacts, predict one image, benchmark every format.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/datasets/clothing-dataset-small}
BUNDLE=artifacts/default
if [ ! -d "$DATA/train" ]; then
  DATA=data/clothing-dataset-small
  [ -d "$DATA/train" ] || git clone --depth 1 https://github.com/alexeygrigorev/clothing-dataset-small.git "$DATA" \
    || { echo "error: no dataset at ../shared/datasets or $DATA, and cloning it failed" >&2; exit 1; }
fi
echo "== 1/4 train (quick profile: whole network from scratch, 96 px, 60 images per class, 3 epochs) on $DATA"
"$PY" -m train --profile quick --data "$DATA" --out "$BUNDLE"
echo "== 2/4 convert to TFLite and ONNX, fp32/fp16/int8, each checked against Keras"
rc=0; "$PY" -m convert "$BUNDLE" --calibration "$DATA/train" --parity "$DATA/validation" || rc=$?
[ "$rc" -le 1 ] || exit "$rc"   # 1: some artifact failed parity and was not published; the rest go on
echo "== 3/4 predict one test image with the runtime (no TensorFlow)"
IMAGE=$(find "$DATA/test" -name '*.jpg' | sort | head -n 1)
"$PY" -m runtime.predict "$IMAGE" --top-k 3
echo "== 4/4 benchmark every format against Keras on the test images"
"$PY" -m benchmarks "$BUNDLE" --images "$DATA/test" --limit 100 --runs 20 --out reports
echo "done: bundle in $BUNDLE, report in reports/default/report.md"
