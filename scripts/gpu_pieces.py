"""Carry files larger than one device call allows (the onnxruntime-gpu wheel, an fp32 model) to the GPU
machine in pieces, and join them there with every hash checked.

Here:   python scripts/gpu_pieces.py split WHEEL MODEL --out .gpu/all --piece-mib 60
        (writes .gpu/all/NAME.partK pieces and pieces.json: each file's size and sha256, each piece's)
        python scripts/gpu_pieces.py pack .gpu/all --calls .gpu
        (moves them into as few folders .gpu/callK of at most 62 MiB as hold them, each with the record)
There, one call per piece batch while the machine stays warm, each carrying some of .gpu/:
        python scripts/gpu_pieces.py receive .gpu --store /tmp/gpu-store
and in the last call:
        python scripts/gpu_pieces.py join --store /tmp/gpu-store --out /tmp/gpu-files
which refuses, in one line, a missing or altered piece and a joined file whose hash differs.
"""

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

MIB = 1 << 20
RECORD = "pieces.json"


def digest(path: Path) -> str:
    """The sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


def split(files: list[Path], out: Path, piece: int) -> dict:
    """Cut each file into pieces of at most ``piece`` bytes in ``out``; the record of what was cut."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"files": {}}
    for path in files:
        pieces = []
        with open(path, "rb") as f:
            while block := f.read(piece):
                name = f"{path.name}.part{len(pieces)}"
                (out / name).write_bytes(block)
                pieces.append({"name": name, "sha256": hashlib.sha256(block).hexdigest(), "bytes": len(block)})
        record["files"][path.name] = {"sha256": digest(path), "bytes": path.stat().st_size, "pieces": pieces}
    (out / RECORD).write_text(json.dumps(record, indent=1))
    return record


def pack(folder: Path, calls: Path, capacity: int) -> list[Path]:
    """Move the pieces in ``folder`` into as few call folders (``calls``/callK, each with the record) as fit
    ``capacity`` bytes each, largest first; the call folders."""
    record = folder / RECORD
    loads: list[tuple[int, Path]] = []
    for piece in sorted(folder.glob("*.part*"), key=lambda p: -p.stat().st_size):
        size = piece.stat().st_size
        k = next((i for i, (used, _) in enumerate(loads) if used + size <= capacity), None)
        if k is None:
            loads.append((0, calls / f"call{len(loads)}"))
            k = len(loads) - 1
            loads[k][1].mkdir(parents=True, exist_ok=True)
            shutil.copyfile(record, loads[k][1] / RECORD)
        used, dest = loads[k]
        piece.replace(dest / piece.name)
        loads[k] = (used + size, dest)
    return [dest for _, dest in loads]


def receive(carried: Path, store: Path) -> list[str]:
    """Copy the pieces carried in this call into ``store`` (checked against the record); their names."""
    record = json.loads((carried / RECORD).read_text())
    store.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(carried / RECORD, store / RECORD)
    want = {p["name"]: p["sha256"] for f in record["files"].values() for p in f["pieces"]}
    got = []
    for path in sorted(carried.iterdir()):
        if path.name in want:
            if digest(path) != want[path.name]:
                raise ValueError(f"{path.name}: sha256 differs from the record (altered in transit?)")
            shutil.copyfile(path, store / path.name)
            got.append(path.name)
    return got


def join(store: Path, out: Path) -> dict[str, Path]:
    """Join every file of the record from the pieces in ``store`` into ``out``, checking each hash."""
    record = json.loads((store / RECORD).read_text())
    missing = [p["name"] for f in record["files"].values() for p in f["pieces"] if not (store / p["name"]).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} pieces not received yet: {', '.join(missing[:4])}")
    out.mkdir(parents=True, exist_ok=True)
    joined = {}
    for name, f in record["files"].items():
        partial = out / f".{name}.partial"
        with open(partial, "wb") as dest:
            for p in f["pieces"]:
                with open(store / p["name"], "rb") as src:
                    shutil.copyfileobj(src, dest)
        if digest(partial) != f["sha256"]:
            partial.unlink()
            raise ValueError(f"{name}: the joined file's sha256 differs from the record")
        joined[name] = partial.replace(out / name)
    return joined


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/gpu_pieces.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="cut files into pieces and write their record")
    s.add_argument("files", type=Path, nargs="+")
    s.add_argument("--out", type=Path, default=Path(".gpu"))
    s.add_argument("--piece-mib", type=int, default=60, help="largest piece in MiB (default 60: under 64 per call)")
    r = sub.add_parser("receive", help="keep the pieces carried in this call")
    r.add_argument("carried", type=Path)
    r.add_argument("--store", type=Path, default=Path("/tmp/gpu-store"))
    k = sub.add_parser("pack", help="gather the pieces into call folders of at most --capacity-mib each")
    k.add_argument("folder", type=Path)
    k.add_argument("--calls", type=Path, default=Path(".gpu"))
    k.add_argument("--capacity-mib", type=int, default=62)
    j = sub.add_parser("join", help="join the received pieces into whole files, every hash checked")
    j.add_argument("--store", type=Path, default=Path("/tmp/gpu-store"))
    j.add_argument("--out", type=Path, default=Path("/tmp/gpu-files"))
    args = p.parse_args(argv)
    try:
        if args.command == "split":
            if not 1 <= args.piece_mib <= 63:
                raise ValueError(f"--piece-mib {args.piece_mib}: 1 to 63 (a call carries at most 64 MiB)")
            record = split(args.files, args.out, args.piece_mib * MIB)
            for name, f in record["files"].items():
                print(f"{name}: {f['bytes'] / MIB:.1f} MiB in {len(f['pieces'])} pieces")
        elif args.command == "pack":
            calls = pack(args.folder, args.calls, args.capacity_mib * MIB)
            print(" ".join(str(c) for c in calls))
        elif args.command == "receive":
            print(f"received {len(receive(args.carried, args.store))} pieces into {args.store}")
        else:
            for name, path in join(args.store, args.out).items():
                print(f"{name}: joined, sha256 checked: {path}")
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
