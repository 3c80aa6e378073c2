"""The issue's measured goals, each stated with how far it is met or missed."""

from benchmarks.rows import Row


def goals(rows: list[Row], op_ms: dict | None = None) -> list[str]:
    """Speed-ups of the best passing artifact, fp32 and int8 ONNX's shares of their peaks, int8 ONNX's
    latency against fp32's (with the operators that hold it back), int8 accuracy."""
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
    if "onnx int8" in by and "onnx fp32" in by:
        out.append(int8_speed(by["onnx int8"], by["onnx fp32"], op_ms or {}))
    ref = by.get("keras predict")
    for r in by.values():
        if r.precision == "int8" and ref and r.accuracy is not None and ref.accuracy is not None:
            drop = round(100 * (ref.accuracy - r.accuracy), 6)  # 0.81 vs 0.80 is 1 point, not 1.0000000000000009
            out.append(f"{r.name} accuracy {r.accuracy:.3f} vs keras {ref.accuracy:.3f}: {drop:+.1f} points lost "
                       "(goal within 1): " + ("met" if abs(drop) <= 1 else f"missed by {abs(drop) - 1:.1f} points"))
    return out


def int8_speed(int8: Row, fp32: Row, op_ms: dict) -> str:
    """int8 ONNX batch-1 latency against fp32's (goal at most a third), shares of each peak, top operators."""
    ratio = int8.p50_ms / fp32.p50_ms
    text = (f"onnx int8 batch 1 {int8.p50_ms:.1f} ms vs fp32 {fp32.p50_ms:.1f} ms: {ratio:.2f} of it (goal 1/3): "
            + ("met" if ratio <= 1 / 3 else f"missed: the goal is {fp32.p50_ms / 3:.1f} ms"))
    if int8.peak_share is not None and fp32.peak_share is not None:
        text += f"; int8 at {int8.peak_share:.0%} of the int8 peak, fp32 at {fp32.peak_share:.0%} of the fp32 peak"
    if ratio > 1 / 3 and op_ms.get("onnx int8"):
        top = list(op_ms["onnx int8"].items())[:4]
        text += "; int8 time by operator: " + ", ".join(f"{k} {v:.1f} ms" for k, v in top)
        text += " (fp32: " + ", ".join(f"{k} {v:.1f} ms" for k, v in list(op_ms.get("onnx fp32", {}).items())[:3]) + ")"
    return text
