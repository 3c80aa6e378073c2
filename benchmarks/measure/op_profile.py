"""Where an ONNX file spends its batch-1 time, by operator type, from ONNX Runtime's own profiler."""

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def op_times(path: Path, x: np.ndarray, runs=10) -> dict[str, float]:
    """Milliseconds per run spent in each operator type (ORT's kernel events over ``runs`` runs after one
    warm-up run), largest first."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling, opts.profile_file_prefix = True, os.path.join(tmp, "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(runs + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    totals, seen = defaultdict(float), defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            seen[e["name"]] += 1
            if seen[e["name"]] > 1:  # the first run of each node is the warm-up
                totals[e["args"]["op_name"]] += e["dur"] / 1000
    return dict(sorted(((k, v / runs) for k, v in totals.items()), key=lambda kv: -kv[1]))
