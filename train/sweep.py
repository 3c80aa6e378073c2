"""The course's experiments (8.6-8.10): one knob varied, a table and a plot per sweep."""

import time
from dataclasses import dataclass, replace
from pathlib import Path

from runtime.files import write_json
from train.config import SWEEPS, TrainConfig
from train.errors import SweepError
from train.fit import FitResult, Splits, fit


@dataclass
class SweepRow:
    """One setting's outcome."""

    setting: str
    best_val_accuracy: float
    best_epoch: int
    final_gap: float
    seconds: float
    history: dict


@dataclass
class SweepResult:
    """All rows of a sweep and its wall-clock time (feature caching included)."""

    name: str
    rows: list[SweepRow]
    seconds: float
    cached: bool


def label(value) -> str:
    """A setting as the table shows it."""
    if isinstance(value, tuple):
        return "+".join(value) if value else "off"
    return str(value)


def run_sweep(name: str, base: TrainConfig, splits: Splits, epochs=None, keep=frozenset()) -> SweepResult:
    """Train one model per value; settings that can share cached base features do. The sweep's fixed
    settings apply except for the fields in ``keep`` (given on the command line)."""
    sweep = SWEEPS[name]
    if sweep.field in keep:
        raise SweepError(f"the {name} sweep varies {sweep.field} itself: drop that flag")
    fixed = {k: v for k, v in sweep.fixed.items() if k not in keep}
    t0, cache, rows = time.perf_counter(), None, []
    for i, value in enumerate(sweep.values, 1):
        cfg = replace(base, epochs=epochs or sweep.epochs, **fixed, **{sweep.field: value})
        print(f"[{name} {i}/{len(sweep.values)}] {sweep.field}={label(value)}")
        res: FitResult = fit(cfg, splits, cache=cache if cfg.cacheable else None)
        if cfg.cacheable:
            cache = res.cache
        rows.append(SweepRow(label(value), res.best.val_accuracy, res.best.epoch, res.gap,
                             res.seconds, res.history))
    return SweepResult(name, rows, time.perf_counter() - t0, base.cache)


def table(result: SweepResult) -> str:
    """Markdown table: setting, best val accuracy, its epoch, train-val gap at the end."""
    lines = [f"| {SWEEPS[result.name].field} | best val acc | epoch | final train-val gap | seconds |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.setting} | {r.best_val_accuracy:.3f} | {r.best_epoch} | {r.final_gap:+.3f} | "
              f"{r.seconds:.1f} |" for r in result.rows]
    return "\n".join(lines)


def plot(result: SweepResult, path):
    """Train (dashed) and validation (solid) accuracy per epoch, one colour per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in result.rows:
        line, = ax.plot(range(1, len(r.history["val_accuracy"]) + 1), r.history["val_accuracy"],
                        label=f"val {r.setting}")
        ax.plot(range(1, len(r.history["accuracy"]) + 1), r.history["accuracy"], "--",
                color=line.get_color(), label=f"train {r.setting}")
    ax.set(xlabel="epoch", ylabel="accuracy", title=f"sweep: {SWEEPS[result.name].field}")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save(result: SweepResult, out) -> Path:
    """Write ``table.md``, ``results.json`` and ``accuracy.png`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table(result) + "\n")
    write_json(out / "results.json", {"sweep": result.name, "field": SWEEPS[result.name].field,
                                      "seconds": result.seconds, "cached": result.cached,
                                      "rows": [r.__dict__ for r in result.rows]})
    plot(result, out / "accuracy.png")
    return out
