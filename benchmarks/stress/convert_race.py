"""Two conversions of one bundle at once, again and again: is anything published ever missing from the manifest?

``python -m benchmarks.stress.convert_race BUNDLE --parity DIR [--times 10] [--out DIR]``: each round copies
BUNDLE's source model and manifest (no exports) and starts ``convert COPY --formats tflite --precisions fp16``
and ``convert COPY --formats onnx --precisions fp16`` together. A round passes when one run published, every
model file on disk is in the manifest with its hash, every run that exited 0 has its file there, and a run that
did not exited 2 with one ``error:`` line. Writes convert_race.md and convert_race.json; exit 1 when a round failed.
"""

import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from benchmarks.measure.provenance import provenance
from benchmarks.rows import ROOT
from benchmarks.stress.report_files import write_report
from runtime.bundle import Manifest, ManifestError
from runtime.cli import command_parser, positive_int
from runtime.errors import ModelError, RuntimeToolkitError, one_line_errors
from runtime.files import sha256

RIVALS = {"tflite": "model.fp16.tflite", "onnx": "model.fp16.onnx"}


@dataclass
class Round:
    """One race: each run's exit status and last line, and what the bundle holds afterwards."""

    seconds: float
    exits: dict
    last_lines: dict
    published: list
    on_disk: list
    problems: list = field(default_factory=list)


def fresh_copy(bundle: Path, dest: Path) -> Path:
    """``dest`` holding ``bundle``'s source model (a hard link) and its manifest without exports."""
    m = Manifest.read(bundle)
    dest.mkdir()
    (dest / m.source.file).hardlink_to(bundle / m.source.file)
    replace(m, artifacts=(), cascades=()).write(dest)
    return dest


def race(copy: Path, parity: Path, images: int) -> Round:
    """Both conversions started together on ``copy``; the round's record."""
    start = time.perf_counter()
    procs = {fmt: subprocess.Popen([sys.executable, "-m", "convert", str(copy), "--formats", fmt, "--precisions",
                                    "fp16", "--parity", str(parity), "--parity-images", str(images)],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for fmt in RIVALS}
    errs = {fmt: p.communicate(timeout=1800)[1] for fmt, p in procs.items()}
    seconds = round(time.perf_counter() - start, 1)
    exits = {fmt: p.returncode for fmt, p in procs.items()}
    last = {fmt: (e.strip().splitlines() or [""])[-1][:200] for fmt, e in errs.items()}
    try:
        m = Manifest.read(copy)
    except ManifestError as e:
        return Round(seconds, exits, last, [], [], [f"manifest unreadable: {e}"])
    listed = {a.file: a.sha256 for a in m.verified()}
    on_disk = sorted(p.name for p in copy.glob("model.*") if p.name != m.source.file)
    problems = [f"{f} on disk but not in the manifest with its hash" for f in on_disk
                if listed.get(f) != sha256(copy / f)]
    for fmt, rc in exits.items():
        if rc == 0 and RIVALS[fmt] not in listed:
            problems.append(f"{fmt} run exited 0 but {RIVALS[fmt]} is not published")
        elif rc != 0 and (rc != 2 or not last[fmt].startswith("error: ") or len(errs[fmt].strip().splitlines()) != 1):
            problems.append(f"{fmt} run exited {rc} without one error line")
    if 0 not in exits.values():
        problems.append(f"neither run published ({'; '.join(last.values())[:200]})")
    return Round(seconds, exits, last, sorted(listed), on_disk, problems)


def markdown(bundle: Path, rounds: list[Round], machine: dict) -> str:
    """The report as a Markdown table."""
    failed = sum(bool(r.problems) for r in rounds)
    lines = [f"# Two conversions at once on a copy of `{bundle}`", "",
             f"{machine['cpu']}, {machine['usable_cpus']} usable CPUs, {machine['date']}: {len(rounds)} rounds, "
             f"{failed} with a problem", "",
             "| round | s | exits (tflite, onnx) | published | the run that did not publish said | problems |",
             "|---|---|---|---|---|---|"]
    for i, r in enumerate(rounds, 1):
        said = "; ".join(line for fmt, line in r.last_lines.items() if r.exits[fmt] != 0) or "-"
        lines.append(f"| {i} | {r.seconds:.0f} | {r.exits['tflite']}, {r.exits['onnx']} | {', '.join(r.published)} "
                     f"| {said.replace('|', '/')} | {'; '.join(r.problems) or 'none'} |")
    return "\n".join(lines) + "\n"


def parser():
    p = command_parser("python -m benchmarks.stress.convert_race", __doc__)
    p.add_argument("bundle", type=Path, help="a bundle whose source model is converted")
    p.add_argument("--parity", type=Path, required=True, help="images for each conversion's parity check")
    p.add_argument("--parity-images", type=positive_int, default=200, help="parity images per run (default 200)")
    p.add_argument("--times", type=positive_int, default=10, help="rounds (default 10)")
    p.add_argument("--out", type=Path, default=Path("runs/convert_race"), help="report folder")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: report(args), RuntimeToolkitError)


def report(args) -> int:
    """Run the rounds and write the report."""
    if not (args.bundle / "manifest.json").is_file():
        raise ModelError(f"no bundle at {args.bundle}")
    if not args.parity.is_dir():
        raise ModelError(f"no parity folder at {args.parity}")
    rounds = []
    with tempfile.TemporaryDirectory(dir=args.bundle.parent) as work:  # beside it: hard links need one disk
        for i in range(args.times):
            rounds.append(race(fresh_copy(args.bundle, Path(work) / f"round{i}"), args.parity, args.parity_images))
            print(f"... round {i + 1}/{args.times}: exits {rounds[-1].exits}, "
                  f"{'; '.join(rounds[-1].problems) or 'no problem'}", file=sys.stderr, flush=True)
    machine = provenance()
    write_report(args.out, "convert_race", {"bundle": str(args.bundle), "provenance": machine,
                                            "rounds": [asdict(r) for r in rounds]},
                 markdown(args.bundle, rounds, machine))
    return 1 if any(r.problems for r in rounds) else 0


if __name__ == "__main__":
    sys.exit(main())
