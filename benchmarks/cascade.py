"""``python -m benchmarks.cascade BUNDLE --images DIR``: is the cascade as faithful as fp32 and faster?

For each published cascade of the bundle: its answers on every image against the fp32 export and
Keras (agreement with a 95% interval, accuracy), its re-check rate, and its batch-1 latency timed
alternately with every fp32 export and the plain int8 file, each call on the next image; each plain int8
file's agreement and accuracy. With --e2e, also ``runtime.predict DIR`` as the user runs it (the default choice:
a faithful int8 file alone or a cascade) against the same command pinned to fp32 ONNX and pinned to the best
plain int8 file, timed alternately, with each process's peak RSS. Writes report.md and report.json; prints the
goals.
"""

import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.cli import command_parser, import_tensorflow_quietly, positive_int

GOAL_AGREEMENT, GOAL_ACCURACY_POINTS, GOAL_SPEEDUP, GOAL_RECHECK = 0.995, 0.3, 2.0, 0.20
GOAL_E2E_SPEEDUP, GOAL_RSS_OVER_INT8 = 2.5, 1.5  # runtime.predict: against fp32 ONNX; against the plain int8 file


@dataclass
class Timed:
    """Batch-1 milliseconds of one runner, each call on the next image, alternated with the others."""

    name: str
    mean_ms: float
    p50_ms: float
    p99_ms: float


@dataclass
class PlainResult:
    """One int8 file alone on the benchmark's images."""

    file: str
    agreement_fp32: float
    agreement_fp32_interval: tuple[float, float]
    changed_vs_fp32: int
    accuracy: float | None
    method: str


@dataclass
class CascadeResult:
    """One cascade on the benchmark's images."""

    name: str
    default: bool
    gate: float
    recheck_rate: float
    agreement_fp32: float
    agreement_fp32_interval: tuple[float, float]
    changed_vs_fp32: int
    agreement_keras: float
    accuracy: float | None
    plain_int8_agreement_fp32: float
    timing: Timed | None = None


@dataclass
class Report:
    """Everything the benchmark measured, and the goals."""

    bundle: str
    images: int
    images_dir: str
    provenance: dict
    fp32_file: str
    keras_accuracy: float | None
    cascades: list[CascadeResult]
    timings: list[Timed]
    plain: list[PlainResult] = field(default_factory=list)
    e2e: dict = field(default_factory=dict)
    goals: list[dict] = field(default_factory=list)


def parser():
    p = command_parser("python -m benchmarks.cascade", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle with cascades")
    p.add_argument("--images", type=Path, required=True, help="labelled images, e.g. the dataset's test/")
    p.add_argument("--limit", type=positive_int, default=10 ** 9, help="at most this many images (default all)")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="passes over the images for the alternated latency (default 1)")
    p.add_argument("--e2e", action="store_true", help="also time runtime.predict (default vs fp32 ONNX), alternated")
    p.add_argument("--out", type=Path, default=Path("runs/cascade"), help="OUT/<bundle>/ (default runs/cascade)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    return p


def alternate(runners: dict, batch: np.ndarray, rounds: int) -> list[Timed]:
    """Each runner called once per image in turn, all runners on one image before the next."""
    for r in runners.values():
        r.infer(batch[:1])
    times = {name: [] for name in runners}
    for i in itertools.chain.from_iterable(itertools.repeat(range(len(batch)), rounds)):
        for name, r in runners.items():
            t = time.perf_counter()
            r.infer(batch[i:i + 1])
            times[name].append(1000 * (time.perf_counter() - t))
    return [Timed(n, float(np.mean(t)), float(np.median(t)), float(np.percentile(t, 99))) for n, t in times.items()]


PREDICT_REPORTING_PEAK = (  # runtime.predict, then its own VmHWM on stderr (wait4's ru_maxrss would include the
    "import atexit, runpy, sys\n"  # forking benchmark's gigabytes: it survives exec, VmHWM does not)
    "atexit.register(lambda: sys.stderr.write(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))))\n"
    "runpy.run_module('runtime.predict', run_name='__main__', alter_sys=True)\n")


def predict_run(bundle: Path, images: Path, *flags) -> tuple[float, float, dict]:
    """Seconds and peak RSS (MB, the process's own VmHWM) of ``runtime.predict IMAGES --json`` in a fresh
    process, and its answer per input."""
    from benchmarks.rows import ROOT, child_env

    argv = [sys.executable, "-c", PREDICT_REPORTING_PEAK, str(images), "--model", str(bundle), "--json", *flags]
    t = time.perf_counter()
    res = subprocess.run(argv, cwd=ROOT, env=child_env(os.environ), capture_output=True, text=True, check=False,
                         timeout=3600)
    seconds = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"runtime.predict {' '.join(flags)} failed: {res.stderr.strip().splitlines()[-1:]}")
    peak = next(line for line in res.stderr.splitlines() if line.startswith("VmHWM:"))
    answers = [json.loads(line) for line in res.stdout.splitlines()]
    return seconds, int(peak.split()[1]) / 1024, {a["input"]: a for a in answers}


def e2e(bundle: Path, images: Path, limit: int, int8_file: str) -> dict:
    """The default ``runtime.predict`` against the same pinned to fp32 ONNX and to ``int8_file`` alone (at most
    ``limit`` images): two alternated runs each, the best time and the highest peak RSS of each."""
    from runtime.parity import wilson

    fmt = int8_file.rsplit(".", 1)[1]
    commands = {"default": (), "fp32 onnx": ("--format", "onnx", "--precision", "fp32"),
                f"plain {int8_file}": ("--format", fmt, "--precision", "int8")}
    runs, rss, answers = {k: [] for k in commands}, {k: [] for k in commands}, {}
    for _ in range(2):
        for name, flags in commands.items():
            seconds, peak, answers[name] = predict_run(bundle, images, "--limit", str(limit), *flags)
            runs[name].append(seconds)
            rss[name].append(peak)
    default, fp32 = answers["default"], answers["fp32 onnx"]
    same = sum(default[k]["label"] == fp32[k]["label"] for k in fp32)
    models = sorted({a["model"] for a in default.values()})
    return {"seconds": {k: min(v) for k, v in runs.items()}, "runs": runs, "peak_rss_mb": {k: max(v) for k, v in
            rss.items()}, "images": len(fp32), "same": same, "agreement": same / len(fp32),
            "interval": wilson(same, len(fp32)), "default_models": models, "plain": f"plain {int8_file}",
            "rechecked": sum(a.get("rechecked", False) for a in default.values()) / len(default)}


def measure(args) -> Report:
    """Logits of Keras, the fp32 exports, the int8 files and each cascade; the alternated timings."""
    from benchmarks.measure.provenance import provenance
    from benchmarks.rows import load_cascade
    from runtime.bundle import Manifest, load_verified
    from runtime.choice import cascade_choice
    from runtime.engines.keras_runner import load_keras
    from runtime.errors import ModelError
    from runtime.formats import FORMATS
    from runtime.images import load_images
    from runtime.parity import compare

    m = Manifest.read(args.bundle)
    pairs = m.published_cascades()
    if not pairs:
        raise ModelError(f"{args.bundle}: no published cascade (run `python -m convert` with --calibration)")
    images = load_images(args.images, m.spec(), m.classes, args.limit)

    def plain(file):
        e = m.entry(file)
        return load_verified(args.bundle, e, lambda f: FORMATS[e.format].load(f, None, "cpu", False))[1]
    fp32 = {a.file: plain(a.file) for a in m.verified() if a.precision == "fp32"}
    if not fp32:
        raise ModelError(f"{args.bundle}: no published fp32 export to compare with")
    keras = load_keras(args.bundle / m.source.file)
    ref = keras.infer_batches(images.batch)
    del keras
    outs = {name: r.infer_batches(images.batch) for name, r in fp32.items()}
    fp32_file = min(outs, key=lambda f: compare(ref, outs[f]).max_abs_logit_diff)
    exact = outs[fp32_file]
    chosen = cascade_choice(m)
    runners, results = dict(fp32), []
    for c in pairs:
        runner = load_cascade(args.bundle, c, "cpu", spinning=False)  # alternated runners must not spin
        answer = [runner.answer(images.batch[i:i + 32]) for i in range(0, len(images.batch), 32)]
        logits, again = np.concatenate([a.logits for a in answer]), np.concatenate([a.rechecked for a in answer])
        p, pk, pi = compare(exact, logits, images.labels), compare(ref, logits, images.labels), compare(
            exact, runner.fast.infer_batches(images.batch))
        name = f"cascade {c.name}"
        results.append(CascadeResult(name, chosen is not None and chosen.cascade == c, c.margin, float(again.mean()),
                                     p.top1_agreement, p.interval, p.images - p.agreeing, pk.top1_agreement,
                                     pk.accuracy, pi.top1_agreement))
        runners[name] = runner
        runners.setdefault(f"plain {c.fast}", runner.fast)
    timings = alternate(runners, images.batch, args.rounds)
    for r in results:
        r.timing = next(t for t in timings if t.name == r.name)
    plain_results = []
    for a in (a for a in m.verified() if a.precision == "int8"):
        logits = plain(a.file).infer_batches(images.batch)
        p = compare(exact, logits, images.labels)
        plain_results.append(PlainResult(a.file, p.top1_agreement, p.interval, p.images - p.agreeing, p.accuracy,
                                         (a.notes or {}).get("quantization", {}).get("method", "?")))
    best = max(plain_results, key=lambda r: r.agreement_fp32)
    return Report(m.name, len(images.files), str(args.images), provenance(), fp32_file,
                  compare(ref, ref, images.labels).accuracy, results, timings, plain_results,
                  e2e(args.bundle, args.images, args.limit, best.file) if args.e2e else {})


def goals(rep: Report) -> list[dict]:
    """The issue's goals, each measured or said not to be."""
    fastest = min((t for t in rep.timings if t.name.startswith("model.fp32")), key=lambda t: t.mean_ms)
    out = []
    for c in rep.cascades:
        out.append({"goal": f"{c.name}: agreement with {rep.fp32_file} >= {GOAL_AGREEMENT:.1%}",
                    "value": f"{c.agreement_fp32:.2%} ({c.changed_vs_fp32} of {rep.images} changed; 95% "
                             f"{c.agreement_fp32_interval[0]:.1%}-{c.agreement_fp32_interval[1]:.1%})",
                    "met": c.agreement_fp32 >= GOAL_AGREEMENT})
        if rep.keras_accuracy is not None and c.accuracy is not None:
            drop = round(100 * (rep.keras_accuracy - c.accuracy), 6)
            out.append({"goal": f"{c.name}: accuracy within {GOAL_ACCURACY_POINTS} points of Keras",
                        "value": f"{c.accuracy:.3f} vs {rep.keras_accuracy:.3f}",
                        "met": abs(drop) <= GOAL_ACCURACY_POINTS})
    if rep.plain:
        best = max(rep.plain, key=lambda r: r.agreement_fp32)
        out.append({"goal": f"best plain int8 file ({best.file}, {best.method}): agreement with {rep.fp32_file} >= "
                            f"{GOAL_AGREEMENT:.1%}",
                    "value": f"{best.agreement_fp32:.2%} ({best.changed_vs_fp32} of {rep.images} changed; 95% "
                             f"{best.agreement_fp32_interval[0]:.1%}-{best.agreement_fp32_interval[1]:.1%})",
                    "met": best.agreement_fp32 >= GOAL_AGREEMENT})
        if rep.keras_accuracy is not None and best.accuracy is not None:
            out.append({"goal": f"best plain int8 file: accuracy within {GOAL_ACCURACY_POINTS} points of Keras",
                        "value": f"{best.accuracy:.3f} vs {rep.keras_accuracy:.3f}",
                        "met": abs(round(100 * (rep.keras_accuracy - best.accuracy), 6)) <= GOAL_ACCURACY_POINTS})
    default = next((c for c in rep.cascades if c.default), None)
    if default is not None:
        speedup = fastest.mean_ms / default.timing.mean_ms
        out.append({"goal": f"default {default.name}: mean batch-1 latency <= 1/{GOAL_SPEEDUP:g} of the fastest "
                            f"fp32 export ({fastest.name})",
                    "value": f"{default.timing.mean_ms:.1f} vs {fastest.mean_ms:.1f} ms ({speedup:.2f}x)",
                    "met": speedup >= GOAL_SPEEDUP})
        out.append({"goal": f"default {default.name}: re-check rate <= {GOAL_RECHECK:.0%}",
                    "value": f"{default.recheck_rate:.1%}", "met": default.recheck_rate <= GOAL_RECHECK})
    if rep.e2e:
        e = rep.e2e
        speedup = e["seconds"]["fp32 onnx"] / e["seconds"]["default"]
        out.append({"goal": f"runtime.predict default ({', '.join(e['default_models'])}) agrees with fp32 ONNX "
                            f">= {GOAL_AGREEMENT:.1%}",
                    "value": f"{e['agreement']:.2%} ({e['images'] - e['same']} of {e['images']} changed)",
                    "met": e["agreement"] >= GOAL_AGREEMENT})
        out.append({"goal": f"runtime.predict default >= {GOAL_E2E_SPEEDUP:g}x faster end to end than pinned to "
                            "fp32 ONNX", "value": f"{e['seconds']['default']:.1f} vs {e['seconds']['fp32 onnx']:.1f} s "
                                                  f"({speedup:.2f}x; best of 2 alternated runs each)",
                    "met": speedup >= GOAL_E2E_SPEEDUP})
        rss, plain = e["peak_rss_mb"], e["plain"]
        out.append({"goal": f"runtime.predict default: peak RSS <= {GOAL_RSS_OVER_INT8:g}x the {plain} file's",
                    "value": f"{rss['default']:.0f} vs {rss[plain]:.0f} MB ({rss['default'] / rss[plain]:.2f}x)",
                    "met": rss["default"] <= GOAL_RSS_OVER_INT8 * rss[plain]})
    return out


def markdown(rep: Report) -> str:
    """The report: provenance, one row per cascade, the alternated timings, the goals."""
    prov = rep.provenance
    flags = ", ".join(k for k, v in prov["flags"].items() if v)
    lines = [f"# Cascade benchmark: {rep.bundle}", "",
             f"- {prov['date']}; CPU {prov['cpu']} ({prov['usable_cpus']} usable cores; flags: {flags})",
             f"- {rep.images} images from {rep.images_dir}; reference: Keras (accuracy "
             f"{rep.keras_accuracy:.3f}) and {rep.fp32_file}", "",
             "| cascade | default | gate | re-checked | agreement with fp32 [95%] | changed | agreement with Keras "
             "| accuracy | plain int8 agreement | mean ms | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|---|---|"
             "---|---|---|"]
    for c in rep.cascades:
        lo, hi = c.agreement_fp32_interval
        lines.append(f"| {c.name} | {'yes' if c.default else ''} | {c.gate:.2f} | {c.recheck_rate:.1%} | "
                     f"{c.agreement_fp32:.1%} [{lo:.1%}-{hi:.1%}] | {c.changed_vs_fp32} | {c.agreement_keras:.1%} | "
                     f"{c.accuracy:.3f} | {c.plain_int8_agreement_fp32:.1%} | {c.timing.mean_ms:.1f} | "
                     f"{c.timing.p50_ms:.1f} | {c.timing.p99_ms:.1f} |")
    lines += ["", "Each int8 file alone:", "", "| file | method | agreement with fp32 [95%] | changed | accuracy |",
              "|---|---|---|---|---|"]
    lines += [f"| {r.file} | {r.method} | {r.agreement_fp32:.1%} [{r.agreement_fp32_interval[0]:.1%}-"
              f"{r.agreement_fp32_interval[1]:.1%}] | {r.changed_vs_fp32} | "
              f"{'-' if r.accuracy is None else f'{r.accuracy:.3f}'} |" for r in rep.plain]
    lines += ["", "Batch-1 latency, every runner called on each image in turn (alternated, one run); a cascade's "
              "p99 is its int8 file plus a whole float run:", "", "| runner | mean ms | p50 ms | p99 ms |",
              "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.mean_ms:.1f} | {t.p50_ms:.1f} | {t.p99_ms:.1f} |" for t in rep.timings]
    if rep.e2e:
        e = rep.e2e
        lines += ["", f"`runtime.predict {rep.images_dir} --json` (best time of {len(e['runs']['default'])} "
                      "alternated runs each, process start included; the highest peak RSS of the runs):", "",
                  "| command | answered by | seconds | peak RSS MB |", "|---|---|---|---|"]
        default_by = f"{', '.join(e['default_models'])} (re-checked {e['rechecked']:.1%})"
        lines += [f"| {name} | {default_by if name == 'default' else name} | {e['seconds'][name]:.1f} | "
                  f"{e['peak_rss_mb'][name]:.0f} |" for name in e["seconds"]]
    lines += ["", "## Goals", ""] + [f"- {g['goal']}: {g['value']}: **{'met' if g['met'] else 'missed'}**"
                                      for g in rep.goals]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import_tensorflow_quietly(args.verbose)
    from runtime.cli import error
    from runtime.errors import RuntimeToolkitError
    from runtime.files import write_json

    if not args.images.is_dir():
        return error(f"--images {args.images}: no such folder")
    try:
        rep = measure(args)
    except (RuntimeToolkitError, RuntimeError) as e:
        return error(str(e))
    rep.goals = goals(rep)
    out = args.out / rep.bundle
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rep)
    (out / "report.md").write_text(text)
    write_json(out / "report.json", asdict(rep))
    print(text)
    print(f"report in {out}/report.md (also report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
