"""``python -m runtime.package``: the runtime with one backend, ready to copy to a Lambda or a device.

  install --format F --target DIR [--arch A --python X.Y --glibc 2.N]
      a slim folder (runtime + numpy + Pillow + the backend, pruned) to put on sys.path
  lambda --model BUNDLE --format F [--precision P] --out function.zip [--arch A --python X.Y]
      that folder + the handler + the bundle's cascade over F's files (int8 answers, the smallest float
      file that agreed on every parity image re-checks near-ties) or, with --precision, one verified
      artifact, zipped for an AWS Lambda upload;
      handler ``lambda_function.lambda_handler``, runtime ``pythonX.Y`` (default 3.12: Amazon Linux 2023;
      python3.11 runs on Amazon Linux 2, whose glibc 2.26 the pinned wheels do not support)

  lock [--arch A ...] [--python X.Y ...]
      pin each backend's wheels, at the versions installed here, by sha256 in runtime/package/wheels.lock.json

Wheels for the target platform come from the registry, installed with their locked hashes required (see
runtime/package/wheels.py). Every folder and zip holds FILES.json (each file's sha256), and the same bundle
and lock give the same bytes (sorted entries, one timestamp, hash-based .pyc). A failed build leaves nothing
under the final name. Ends with the sizes against Lambda's limits.
"""

import argparse
import compileall
import json
import os
import py_compile
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from runtime.bundle import FILE as MANIFEST
from runtime.bundle import Cascade, Manifest, artifact_path
from runtime.choice import choose, faithful_choice
from runtime.cli import command_parser
from runtime.errors import BackendUnavailable, ModelError, RuntimeToolkitError, one_line_errors
from runtime.files import replacing, sha256
from runtime.formats import FORMATS, PRECISIONS
from runtime.package.wheels import ARCHES, LOCK, LOCKED, Installed, Target, folder_bytes, install, write_lock

FILES = "FILES.json"  # in every folder and zip this command builds: each file's sha256

LAMBDA_GLIBC = {"3.11": "2.26", "3.12": "2.34", "3.13": "2.34"}  # Amazon Linux 2 / 2023
# Direct upload: 50 MiB (CreateFunction takes 69,905,067 bytes of base64); function + layers: 250 MiB unzipped.
LAMBDA_ZIPPED, LAMBDA_UNZIPPED = 50 * 2 ** 20, 250 * 2 ** 20
HANDLER = '''"""AWS Lambda entry point (handler lambda_function.lambda_handler): the runtime's handler, with the
model bundled in ./model unless RUNTIME_MODEL names another."""

import os
from pathlib import Path

if not os.environ.get("RUNTIME_MODEL"):
    os.environ["RUNTIME_MODEL"] = str(Path(__file__).with_name("model"))

from runtime.package.lambda_function import lambda_handler  # noqa: E402,F401
'''


def versions(packages: dict) -> str:
    """``numpy 2.4.6, pillow 13.0.0`` from a name -> version map."""
    return ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))


@dataclass(frozen=True)
class Package:
    """A built Lambda zip: what it holds and its sizes."""

    path: Path
    artifact: str
    target: Target
    versions: dict
    zipped: int
    unzipped: int

    def summary(self) -> str:
        """Sizes against Lambda's limits, in one paragraph."""
        over = self.zipped > LAMBDA_ZIPPED
        return (f"{self.path}: {self.artifact} for python{self.target.python} on {self.target.arch} "
                f"(glibc <= {self.target.glibc}; {versions(self.versions)})\n"
                f"zipped {self.zipped / 2 ** 20:.1f} MiB (direct upload limit 50 MiB: "
                f"{'over, upload it through S3' if over else 'fits'}), unzipped {self.unzipped / 2 ** 20:.1f} MiB "
                f"(limit 250 MiB); handler lambda_function.lambda_handler")


def slim(fmt: str, dest: Path, target: Target, shown: str | None = None) -> Installed:
    """The runtime and ``fmt``'s pruned wheels in ``dest``, compiled to bytecode when ``target`` runs this
    interpreter's Python (Lambda's code folder is read-only: without .pyc every cold start compiles);
    tracebacks name the files under ``shown``, where the folder will be (default ``dest``)."""
    installed = install(fmt, dest, target)
    src = Path(__file__).resolve().parents[1]
    shutil.copytree(src, dest / "runtime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if target.python == Target.here().python:  # hash-based .pyc: no timestamps, the same bytes every build
        compileall.compile_dir(dest, quiet=2, workers=0, ddir=shown,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    record_files(dest)
    return replace(installed, bytes=folder_bytes(dest))


def record_files(folder: Path):
    """Write FILES (path -> sha256 of every file under ``folder``, sorted) into it: what was packed, checkable."""
    digests = {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
               if p.is_file() and p.name != FILES}
    (folder / FILES).write_text(json.dumps(digests, indent=0, sort_keys=True) + "\n")


def lambda_cascade(manifest: Manifest, fmt: str) -> Cascade | None:
    """The bundle's cascade over ``fmt``'s int8 file, its float half swapped for the smallest ``fmt`` file
    that agreed with the source model on every parity image (where size matters, TFLite's fp16 file); None
    where there is no such pair."""
    fast = next((c for c in manifest.published_cascades() if manifest.entry(c.fast).format == fmt), None)
    exact = [a for a in manifest.verified() if a.format == fmt and a.precision != "int8"
             and a.parity.top1_agreement == 1.0 and (fast is None or a.parity.images >= fast.parity.images)]
    if fast is None or not exact:
        return None
    smallest = min(exact, key=lambda a: a.bytes)
    return replace(fast, exact=smallest.file, latency_ms=None, measured_on=None)


def copy_model(bundle: Path, fmt: str, precision: str | None, dest: Path) -> str:
    """What the runtime would answer with, of ``fmt``, when no precision is given: a faithful int8 file alone,
    else the bundle's cascade (both files); else one verified artifact of ``precision``. Copied hash checked, with
    a manifest listing only what was copied, into ``dest``; returns what was shipped and why, in words."""
    manifest = Manifest.read(bundle)
    faithful = faithful_choice(manifest, fmt) if precision is None else None
    pair = lambda_cascade(manifest, fmt) if precision is None and faithful is None else None
    entries = ([manifest.entry(pair.fast), manifest.entry(pair.exact)] if pair
               else [faithful.entry] if faithful else [choose(manifest, fmt, precision).entry])
    dest.mkdir()
    for entry in entries:
        shutil.copyfile(artifact_path(bundle, entry), dest / entry.file)
    replace(manifest, artifacts=tuple(entries), cascades=(pair,) if pair else ()).write(dest)
    if pair:
        return (f"cascade {pair.name} (gate {pair.margin:.2f}: the {manifest.entry(pair.exact).precision} file "
                f"re-checks {pair.recheck_rate:.0%} of answers; plain int8 agreed on "
                f"{manifest.entry(pair.fast).parity.top1_agreement:.1%})")
    return f"{entries[0].file} ({faithful.reason})" if faithful else entries[0].file


def zip_folder(folder: Path, out: Path):
    """Zip ``folder``'s contents with world-readable modes (Lambda runs as another user), in sorted order and
    with one fixed timestamp, so the same folder gives the same bytes."""
    with zipfile.ZipFile(out, "w") as z:  # each entry's ZipInfo sets its own compression
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(str(path.relative_to(folder)), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(path, "rb") as f:
                    z.writestr(info, f.read(), compresslevel=9)


def build_lambda(bundle: Path, fmt: str, precision: str | None, target: Target, out: Path) -> Package:
    """Assemble and zip a Lambda function for one artifact of ``bundle``; ModelError when it exceeds 250 MiB."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "function"
        root.mkdir()
        artifact = copy_model(Path(bundle), fmt, precision, root / "model")  # a bad bundle fails before pip
        (root / "lambda_function.py").write_text(HANDLER)
        installed = slim(fmt, root, target, "/var/task")  # FILES lists the handler and the model too
        unzipped = folder_bytes(root)
        if unzipped > LAMBDA_UNZIPPED:
            raise ModelError(f"{artifact}: the function would be {unzipped / 2 ** 20:.0f} MiB unzipped, over Lambda's "
                             "250 MiB; choose a smaller precision (--precision int8)")
        with replacing(out) as partial:
            zip_folder(root, partial)
            zipped = partial.stat().st_size
    return Package(out, artifact, target, installed.versions, zipped, unzipped)


def version(text: str) -> str:
    """An argparse type: a version ``X.Y`` (Python 3.12, glibc 2.34)."""
    if not re.fullmatch(r"\d+\.\d+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a version X.Y")
    return text


def parser():
    p = command_parser("python -m runtime.package", __doc__)
    sub = p.add_subparsers(dest="command", required=True,
                           help="install: a slim folder; lambda: a function zip; lock: pin the wheels by sha256")
    lock = sub.add_parser("lock", help="write runtime/package/wheels.lock.json from the versions installed here")
    lock.add_argument("--arch", choices=tuple(ARCHES), action="append", help="CPUs to lock (default both)")
    lock.add_argument("--python", type=version, action="append", help="Pythons to lock (default 3.11 and 3.12)")
    for name in ("install", "lambda"):
        s = sub.add_parser(name, description=__doc__.replace("``", ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("--format", choices=tuple(FORMATS), required=True, help="the backend (and artifact format)")
        s.add_argument("--arch", choices=tuple(ARCHES), help="target CPU (install: this machine's; lambda: x86_64)")
        s.add_argument("--python", type=version, help="target Python X.Y (install: this interpreter's; lambda: 3.12)")
        s.add_argument("--glibc", type=version,
                       help="highest glibc on the target, 2.N (install: this machine's; lambda: the runtime's)")
    sub.choices["install"].add_argument("--target", type=Path, required=True, help="a new folder to fill")
    sub.choices["install"].add_argument("--model", type=Path, help="also copy what the runtime would answer with "
                                        "from this bundle (a faithful int8 file alone, else its cascade) to "
                                        "TARGET/model")
    lam = sub.choices["lambda"]
    lam.add_argument("--model", type=Path, required=True, help="a converted bundle folder")
    lam.add_argument("--precision", choices=PRECISIONS,
                     help="one artifact of this precision (default: the bundle's cascade, else the runtime's choice)")
    lam.add_argument("--out", type=Path, default=Path("function.zip"), help="the zip to write (default function.zip)")
    return p


def target_of(args) -> Target:
    """The target platform from the flags and the subcommand's defaults."""
    here = Target.here()
    if args.command == "install":
        return Target(args.arch or here.arch, args.python or here.python, args.glibc or here.glibc)
    python = args.python or "3.12"
    if not args.glibc and python not in LAMBDA_GLIBC:
        raise ModelError(f"--python {python}: Lambda runs {', '.join(LAMBDA_GLIBC)}; give --glibc for another host")
    return Target(args.arch or "x86_64", python, args.glibc or LAMBDA_GLIBC[python])


def run(args) -> int:
    """Build what the subcommand asks for and print its summary."""
    if args.command == "lock":
        targets = [Target(a, py, LOCKED[py] if py in LOCKED else "2.28") for a in args.arch or ARCHES
                   for py in args.python or LOCKED]
        sets = write_lock(targets)
        for key, pins in sets.items():
            print(f"{key}: {', '.join(pins)}")
        print(f"{LOCK}: {len(sets)} wheel sets locked by sha256")
        return 0
    target = target_of(args)
    if args.command == "install":
        if args.target.exists() and (not args.target.is_dir() or any(args.target.iterdir())):
            raise ModelError(f"--target {args.target}: not an empty folder")
        args.target.parent.mkdir(parents=True, exist_ok=True)
        if args.model and not (args.model / MANIFEST).is_file():
            raise ModelError(f"--model {args.model}: no {MANIFEST} (not a converted bundle)")
        with tempfile.TemporaryDirectory(prefix=f".{args.target.name}.", dir=args.target.parent) as tmp:
            root = Path(tmp) / "slim"
            root.mkdir()  # the model first: a bad bundle fails before pip, and FILES lists it
            model = copy_model(args.model, args.format, None, root / "model") if args.model else None
            done = slim(args.format, root, target, str(args.target.resolve()))  # renamed when whole
            os.replace(done.path, args.target)
        done = replace(done, path=args.target)
        if model:
            print(f"{args.target / 'model'}: {model}")
        print(f"{done.path}: {done.bytes / 1e6:.1f} MB installed ({versions(done.versions)}; python{target.python}, "
              f"{target.arch}, glibc <= {target.glibc}); run with PYTHONPATH={done.path}")
        return 0
    if not (args.model / MANIFEST).is_file():
        raise ModelError(f"--model {args.model}: no {MANIFEST} (not a converted bundle)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        package = build_lambda(args.model, args.format, args.precision, target, args.out)
    except BackendUnavailable as e:
        if target.glibc != LAMBDA_GLIBC["3.11"]:
            raise
        raise BackendUnavailable(f"{e}; Lambda's python3.11 runs Amazon Linux 2 (glibc 2.26): "
                                 "use --python 3.12") from None
    print(package.summary())
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: run(args), (RuntimeToolkitError, OSError))


if __name__ == "__main__":
    sys.exit(main())
