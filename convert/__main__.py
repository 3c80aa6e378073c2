"""``python -m convert BUNDLE|MODEL``: export to TFLite and ONNX, verify each against Keras, publish."""

import argparse
import sys
import warnings
from pathlib import Path

from runtime.cli import add_model_positional, command_parser, import_tensorflow_quietly, model_positional, positive_int
from runtime.formats import FORMATS, PRECISIONS
from runtime.preprocessing import MODES

DEFAULT_QAT_MINUTES = 5.0


def csv(choices):
    """An argparse type for a comma-separated subset of ``choices``."""
    def parse(text):
        items = [x for x in text.split(",") if x]
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}")
        return items
    return parse


def margin(text: str) -> float:
    """An argparse type: a cascade gate, a finite top-2 logit margin in [0, 1000]."""
    from runtime.bundle import MAX_MARGIN

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= MAX_MARGIN:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a margin in [0, {MAX_MARGIN:g}]")
    return value


def parser():
    p = command_parser("python -m convert", __doc__)
    add_model_positional(p, "source", "a bundle folder (with model.keras and manifest.json), or a .keras/.h5 "
                                      "model file")
    p.add_argument("--formats", type=csv(tuple(FORMATS)), default=list(FORMATS),
                   help=f"comma-separated (default {','.join(FORMATS)})")
    p.add_argument("--precisions", type=csv(PRECISIONS),
                   help=f"comma-separated (default {','.join(PRECISIONS)}; without --calibration fp32,fp16)")
    p.add_argument("--calibration", type=Path, help="folder of real images for int8 (>= 100 distinct)")
    p.add_argument("--calibration-images", type=positive_int, default=200, help="default 200")
    p.add_argument("--parity", type=Path, help="images to compare on (default: validation/ beside "
                                               "--calibration, else --calibration, else seeded noise)")
    p.add_argument("--parity-images", type=positive_int,
                   help="images compared (default: all of the folder; 200 noise images); a precision passes when "
                        "the 95%% lower bound of its top-1 agreement clears its threshold, so fp32 needs >= 189")
    p.add_argument("--cascade-margin", type=margin, metavar="X",
                   help="set the cascades' gate by hand (a top-2 logit margin, 0-1000) instead of fitting it")
    p.add_argument("--cascades-only", action="store_true",
                   help="export nothing: time the published files again (alternately, batch 1) and fit their "
                        "cascades again (on the parity images, or with --cascade-margin)")
    p.add_argument("--qat", action="store_true",
                   help="fine-tune the int8 graph before export (quantization-aware, TensorFlow on this CPU): its "
                        "weights and activation scales fitted to the float model's logits on --calibration's images, "
                        "the weights with the lowest logit error on the --parity images kept; both int8 files use them")
    p.add_argument("--qat-minutes", type=float, default=None, metavar="M",
                   help=f"the fine-tuning's time budget in minutes, validations included (implies --qat; default "
                        f"{DEFAULT_QAT_MINUTES:g})")
    p.add_argument("--qat-from", type=Path, metavar="DIR",
                   help="use fine-tuned weights made elsewhere (python -m convert.int8.qat_train, e.g. on a GPU) "
                        "instead of fine-tuning here")
    p.add_argument("--int8-reduce-range", choices=("auto", "on", "off"), default="auto",
                   help="ONNX int8 7-bit weights: auto = on when the CPU has no VNNI")
    p.add_argument("--int8-report", type=Path, nargs="?", const=Path("reports/int8"), metavar="DIR",
                   help="instead of converting, write the error each int8 layer adds (ONNX and TFLite) as "
                        "Markdown, JSON and PNG to DIR/<bundle name> (default reports/int8); needs --calibration")
    p.add_argument("--report-images", type=positive_int, default=8,
                   help="calibration images the int8 report compares on (default 8)")
    p.add_argument("--classes", help="class names in output order, for a bare model file")
    p.add_argument("--size", type=positive_int, help="input size of a bare model whose input size is not fixed")
    p.add_argument("--preprocessing", choices=sorted(MODES),
                   help="pixel scaling a bare model was trained with: xception/tf (x/127.5-1, the default), unit "
                        "(x/255), caffe, torch, none (raw 0-255: the model scales its own input)")
    p.add_argument("--out", type=Path, help="bundle folder to create for a bare model file "
                                             "(default artifacts/<file name>)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    return p


def main(argv=None) -> int:
    p = parser()
    args = model_positional(p, p.parse_args(argv), "source")
    from convert.errors import ConvertError
    from convert.int8.qat_tf import check_minutes
    from convert.source import check_declared_size
    from runtime.cli import error

    try:  # a --size the file's own config contradicts, or a bad budget, is refused before TensorFlow is imported
        if args.source.is_file():
            check_declared_size(args.source, args.size)
        if args.qat_minutes is not None:
            check_minutes(args.qat_minutes)
        if args.qat_from and (args.qat or args.qat_minutes is not None):
            raise ConvertError("--qat-from uses weights fine-tuned elsewhere, --qat fine-tunes here: give one")
    except ConvertError as e:
        return error(str(e))
    import_tensorflow_quietly(args.verbose)
    if not args.verbose:  # the exporters' libraries warn about their own internals on every run
        for module in ("onnxconverter_common", "keras", "tf2onnx", "tensorflow"):
            warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
    from convert.report import run
    from runtime.errors import RuntimeToolkitError, one_line_errors

    return one_line_errors(lambda: run(args), (ConvertError, RuntimeToolkitError))


if __name__ == "__main__":
    sys.exit(main())
