"""``python -m train``: train, ``sweep``, ``evaluate`` or ``cache-bench``; errors end in one line."""

import argparse
import sys

from runtime.cli import command_parser, import_tensorflow_quietly, positive_int
from train.cli import add_config_args, input_size
from train.errors import TrainError

COMMANDS = ("sweep", "evaluate", "cache-bench", "resize")


def parser(command: str | None) -> argparse.ArgumentParser:
    """The parser of one command; ``None`` is plain training."""
    p = command_parser(f"python -m train {command or ''}".strip(), __doc__ if command is None else None)
    if command is None:
        p.epilog = f"other commands: {', '.join(COMMANDS)} (python -m train COMMAND --help)"
    if command == "evaluate":
        p.add_argument("model", help="a .keras model file")
        p.add_argument("--data", required=True, help="labelled folder of class subfolders, e.g. .../test")
        p.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default 32)")
        p.add_argument("--out", help="folder for evaluation.md/.json and confusion.png "
                                     "(default runs/evaluate/<the model's folder name>)")
        p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
        return p
    if command == "resize":
        p.add_argument("bundle", help="bundle folder holding model.keras and manifest.json")
        p.add_argument("--size", type=input_size, required=True, help="new input size in pixels, >= 71")
        p.add_argument("--out", required=True, help="new bundle folder")
        p.add_argument("--recalibrate-on", help="re-estimate BatchNorm statistics on this image folder")
        p.add_argument("--limit", type=positive_int, default=30, help="images per class used to re-estimate")
        p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
        return p
    if command == "sweep":
        from train.config import SWEEPS

        p.add_argument("name", choices=sorted(SWEEPS), help="which of the course's experiments (8.6-8.10)")
    add_config_args(p)
    p.add_argument("--out", help="output folder (bundle for training; for sweeps the report folder, "
                        "default runs/sweeps/NAME-SIZE, not tracked by git)")
    return p


def main(argv=None) -> int:
    """Dispatch the command and turn the project's errors into one line and a non-zero exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else None
    args = parser(command).parse_args(argv)
    import_tensorflow_quietly(args.verbose)
    from runtime.errors import RuntimeToolkitError, one_line_errors
    from train import commands

    run = getattr(commands, (command or "train").replace("-", "_"))
    return one_line_errors(lambda: run(args), (TrainError, RuntimeToolkitError))


if __name__ == "__main__":
    sys.exit(main())
