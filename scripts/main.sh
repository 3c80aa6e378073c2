#!/usr/bin/env bash
# The main job on the clothing dataset: train the course's 150 px model on the ImageNet Xception base
# into artifacts/default, convert it to TFLite and ONNX (the int8 files fine-tuned quantization-aware for
# QAT_MINUTES first; each export checked against Keras), predict one test image with the TF-free runtime,
# benchmark every format. Reports go to runs/ (untracked).
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/datasets/clothing-dataset-small}
BUNDLE=artifacts/default
QAT_MINUTES=${QAT_MINUTES:-5}
if [ ! -d "$DATA/train" ]; then
  DATA=data/clothing-dataset-small
  [ -d "$DATA/train" ] || git clone --depth 1 https://github.com/alexeygrigorev/clothing-dataset-small.git "$DATA" \
    || { echo "error: no dataset at ../shared/datasets or $DATA, and cloning it failed" >&2; exit 1; }
fi
if "$PY" -c "from train.imagenet import resolve; resolve('imagenet')" 2>/dev/null; then
  echo "== 1/5 train the course's 150 px model (ImageNet Xception base, frozen; cached features) on $DATA"
  "$PY" -m train --profile small --epochs 30 --data "$DATA" --out "$BUNDLE"
else
  echo "== 1/5 no ImageNet base here (offline, never fetched): training the quick profile from scratch instead"
  "$PY" -m train --profile quick --data "$DATA" --out "$BUNDLE"
fi
echo "== 2/5 convert to TFLite and ONNX, fp32/fp16/int8 (int8 fine-tuned for $QAT_MINUTES min), each checked against Keras on all validation images; fit the cascades"
rc=0; "$PY" -m convert "$BUNDLE" --calibration "$DATA/train" --parity "$DATA/validation" --qat-minutes "$QAT_MINUTES" || rc=$?
[ "$rc" -le 1 ] || exit "$rc"   # 1: some artifact failed parity and was not published; the rest go on
echo "== 3/5 predict one test image with the runtime (no TensorFlow; the cascade by default)"
IMAGE=$(find "$DATA/test" -name '*.jpg' | sort | head -n 1)
"$PY" -m runtime.predict "$IMAGE" --model "$BUNDLE" --top-k 3
echo "== 4/5 benchmark every format and cascade against Keras on 100 test images"
"$PY" -m benchmarks "$BUNDLE" --images "$DATA/test" --limit 100 --runs 20 --out runs/benchmarks
echo "== 5/5 the cascades on every test image: agreement with fp32, re-check rate, latency against fp32"
"$PY" -m benchmarks.cascade "$BUNDLE" --images "$DATA/test" --out runs/cascade
echo "done: bundle in $BUNDLE, reports in runs/benchmarks/default/report.md and runs/cascade/default/report.md"
