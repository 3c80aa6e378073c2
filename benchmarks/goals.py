"""The issue's measured goals, each stated with how far it is met or missed."""

from benchmarks.rows import Row


def goals(rows: list[Row]) -> list[str]:
    """Speed-ups of the best passing artifact, fp32 ONNX's share of peak, int8 accuracy."""
    by = {r.name: r for r in rows if r.status == "ok"}
    arts = [r for r in by.values() if r.format != "keras" and r.p50_ms]
    out = []
    if arts and "keras predict" in by and "keras compiled" in by:
        best = min(arts, key=lambda r: r.e2e_p50_ms)
        for name, goal in (("keras predict", 5.0), ("keras compiled", 2.0)):
            got = by[name].e2e_p50_ms / best.e2e_p50_ms
            out.append(f"{best.name} end to end vs {name}: {got:.1f}x (goal {goal:.0f}x): "
                       + ("met" if got >= goal else f"missed by {goal - got:.1f}x"))
    if "onnx fp32" in by and by["onnx fp32"].peak_share is not None:
        share = by["onnx fp32"].peak_share
        out.append(f"onnx fp32 at {share:.0%} of the matmul peak (goal 80%): "
                   + ("met" if share >= 0.8 else f"missed by {80 - 100 * share:.0f} points"))
    ref = by.get("keras predict")
    for r in by.values():
        if r.precision == "int8" and ref and r.accuracy is not None and ref.accuracy is not None:
            drop = 100 * (ref.accuracy - r.accuracy)
            out.append(f"{r.name} accuracy {r.accuracy:.3f} vs keras {ref.accuracy:.3f}: {drop:+.1f} points lost "
                       "(goal within 1): " + ("met" if abs(drop) <= 1 else f"missed by {abs(drop) - 1:.1f} points"))
    return out
