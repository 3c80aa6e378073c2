"""Which artifact of a bundle answers: verified, runnable here, on the device asked for, and fast here.

Latencies in the manifest were measured on the machine that converted the bundle; they decide
only where this machine has the same CPU (recorded as ``measured_on``). Elsewhere a documented
order decides, from the benchmarks in the README: int8 where it passed parity, then the float
exports in the order they ran on CPUs measured so far (LiteRT fp16 runs XNNPACK in fp32 with half
the weights; ONNX fp16 pays for casts on CPUs); on a GPU fp16 first. ``--format``/``--precision``
fix the choice. On the CPU, unless ``--format``/``--precision`` are given, the evidence decides: an int8 file
whose own agreement with the source model clears the cascade's threshold (the 95% lower bound over every parity
image) answers alone, as faithful as a cascade from one file; otherwise a bundle's cascade (an int8 file that
answers, a float file that re-checks its near-ties) comes first.
"""

from dataclasses import dataclass

from runtime.bundle import Artifact, Cascade, Manifest
from runtime.errors import BackendUnavailable, ModelError
from runtime.formats import FORMATS
from runtime.machine.cpuinfo import cpu_info

ORDER = {"cpu": [("onnx", "int8"), ("tflite", "int8"), ("tflite", "fp16"), ("onnx", "fp32"), ("tflite", "fp32"),
                 ("onnx", "fp16")],
         "gpu": [("onnx", "fp16"), ("onnx", "fp32"), ("onnx", "int8")]}


@dataclass(frozen=True)
class Choice:
    """The chosen artifact's manifest entry and why it was chosen, in words."""

    entry: Artifact
    reason: str
    cascade: Cascade | None = None
    exact: Artifact | None = None


def this_machine() -> str:
    """What a latency is tied to: the CPU model (the cores come from the process's own limits)."""
    return cpu_info().model


def faithful_choice(manifest: Manifest, fmt: str | None = None) -> Choice | None:
    """The fastest int8 file (of ``fmt`` when given) that runs here and agrees with the source model alone as a
    cascade must (its parity judged by the cascade's thresholds), with why; None if no int8 file does."""
    from dataclasses import replace

    from runtime.parity import judge

    faithful = [a for a in manifest.verified() if a.precision == "int8" and fmt in (None, a.format)
                and FORMATS[a.format].installed()
                and judge(replace(a.parity, failures=[]), "cascade").passed]
    if not faithful:
        return None
    here = this_machine()
    timed = all(a.measured_on == here and a.latency_ms for a in faithful)
    best = min(faithful, key=lambda a: a.latency_ms) if timed else faithful[0]
    why = (f"one faithful int8 file: agreement with the source model {best.parity.agreement_text()} parity images "
           "clears the cascade's threshold alone, so no float file re-checks it")
    if timed:
        why += f"; {best.latency_ms:.1f} ms at batch 1 on this CPU when converted"
    return Choice(best, why)


def cascade_choice(manifest: Manifest) -> Choice | None:
    """The bundle's fastest published cascade whose two files run here, with why; None if it has none."""
    usable = [c for c in manifest.published_cascades()
              if all(FORMATS[manifest.entry(f).format].installed() for f in (c.fast, c.exact))]
    if not usable:
        return None
    here = this_machine()
    timed = all(c.measured_on == here and c.latency_ms for c in usable)
    best = min(usable, key=lambda c: c.latency_ms) if timed else usable[0]
    fast = manifest.entry(best.fast)
    why = (f"cascade: {best.fast} answers, {best.exact} re-checks answers whose top-2 logit margin is under "
           f"{best.margin:.2f} ({best.recheck_rate:.0%} of the parity images); agreement with the source model "
           f"{best.parity.agreement_text()} held-out images, where plain {fast.precision} agrees on "
           f"{fast.parity.top1_agreement:.1%}")
    if timed:
        why += f"; {best.latency_ms:.1f} ms expected at batch 1 on this CPU"
    return Choice(fast, why, best, manifest.entry(best.exact))


def choose(manifest: Manifest, fmt=None, precision=None, device="cpu") -> Choice:
    """The artifact (or cascade) to load: verified, matching ``fmt``/``precision``, runnable on ``device``
    here; on the CPU with neither given, a faithful int8 file alone, else the bundle's cascade where it has one."""
    if device == "cpu" and fmt is None and precision is None and (
            pick := faithful_choice(manifest) or cascade_choice(manifest)):
        return pick
    wanted = "/".join(x for x in (fmt, precision) if x) or "any"
    verified = [a for a in manifest.verified()
                if (fmt is None or a.format == fmt) and (precision is None or a.precision == precision)]
    on_device = [a for a in verified if device in FORMATS[a.format].devices]
    runnable = [a for a in on_device if FORMATS[a.format].installed()]
    if not runnable:
        if on_device:
            hints = sorted({FORMATS[a.format].install_hint() for a in on_device})
            raise BackendUnavailable(f"bundle {manifest.name}: verified {wanted} artifacts need a runtime that "
                                     f"is not installed: {'; or '.join(hints)}")
        if verified:
            raise BackendUnavailable(f"bundle {manifest.name}: no verified {wanted} artifact runs on {device} "
                                     f"({', '.join(sorted({a.format for a in verified}))} runs on the CPU only)")
        refused = [a.file for a in manifest.refused()]
        raise ModelError(f"bundle {manifest.name}: no verified {wanted} artifact"
                         + (f" ({', '.join(refused)} failed parity)" if refused else "")
                         + "; run `python -m convert BUNDLE --calibration DIR`"
                         + (" or drop --format/--precision" if fmt or precision else ""))
    if len(runnable) == 1:
        return Choice(runnable[0], "the only verified artifact that matches and runs here")
    here = this_machine()
    if device == "cpu" and all(a.measured_on == here and a.latency_ms for a in runnable):
        best = min(runnable, key=lambda a: a.latency_ms)
        return Choice(best, f"fastest at batch 1 on this CPU when converted ({best.latency_ms:.1f} ms)")
    rank = {key: i for i, key in enumerate(ORDER[device])}
    best = min(runnable, key=lambda a: rank.get((a.format, a.precision), len(rank)))
    return Choice(best, f"first verified in the {device} order ({', '.join(f'{p} {f}' for f, p in ORDER[device])}); "
                        "latencies in the manifest were measured on another CPU")
