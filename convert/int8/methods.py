"""The int8 recipes, one table for both formats: ``convert`` uses each format's default, the
``benchmarks.int8_methods`` command measures them all. Options are recorded in the manifest entry and
in the file's metadata."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Method:
    """One way to make a format's int8 file; ``diagnostic`` ones isolate an error source and are not
    deployable int8 files (they compute in float)."""

    name: str
    format: str
    about: str
    options: dict = field(default_factory=dict, hash=False)
    diagnostic: bool = False


FLOAT_GROUPS = (  # activation groups (convert/int8/mixed.py KINDS) that a diagnostic method leaves in float
    ("depthwise", "the depthwise convolutions' outputs (the pointwise convolutions' inputs)", ("depthwise",)),
    ("conv", "the other convolutions' outputs", ("conv",)),
    ("convs", "every convolution's output (the Adds', MaxPools', input's and head's still rounded)",
     ("depthwise", "conv")),
    ("add", "the residual Adds' outputs", ("add",)),
    ("other", "the input, the Relus after Adds, the MaxPools and the head", ("other",)),
)

METHODS = (
    Method("minmax", "onnx", "static QDQ, per-channel int8 weights, uint8 activations, MinMax; int8 logits",
           {"calibration": "minmax", "float_logits": False}),
    Method("minmax-float-logits", "onnx", "as minmax, with the last layer in float: float logits, no ties",
           {"calibration": "minmax"}),
    Method("percentile", "onnx", "as minmax-float-logits, activation ranges at the 99.999th percentile",
           {"calibration": "percentile"}),
    Method("equalized", "onnx", "as minmax-float-logits after equalizing depthwise output channels "
           "(exact in float: depthwise filter / s, pointwise input * s)", {"calibration": "minmax", "equalize": 0.5}),
    Method("gptq", "onnx", "as percentile, after equalizing the channels of each Relu that feeds a depthwise "
           "convolution (exact in float, free for per-channel weights) and rounding every convolution's weights by "
           "GPTQ on 128 calibration images", {"calibration": "percentile", "equalize_relu": True, "gptq": True}),
    Method("gptq-unpadded", "onnx", "as gptq without the zero channels that give each depthwise convolution a "
           "multiple of 16 channels (convert/int8/channel_pad.py): the same numbers on onnxruntime's slower generic "
           "depthwise kernel where a count is not (Xception's 728)",
           {"calibration": "percentile", "equalize_relu": True, "gptq": True, "pad_channels": False}),
    Method("gptq-sequential", "onnx", "as gptq, each convolution in graph order fitted (weights GPTQ-rounded, "
           "float bias refitted) to reproduce its float output from the inputs the partly quantized graph, 8-bit "
           "activations included, gives it",
           {"calibration": "percentile", "equalize_relu": True, "gptq": "sequential"}),
    Method("gptq-equalized", "onnx", "as gptq, after also equalizing the depthwise output channels "
           "(the equalized method's alpha 0.5)",
           {"calibration": "percentile", "equalize_relu": True, "equalize": 0.5, "gptq": True}),
    Method("gptq-mixed", "onnx", "as gptq, with the 4 activation tensors that 8-bit rounding hurts most (lowest "
           "SQNR on 16 calibration images) at 16 bits: onnxruntime runs the operators around them in float",
           {"calibration": "percentile", "equalize_relu": True, "gptq": True, "act16_worst": 4}),
    Method("qat", "onnx", "as percentile, with the gptq method's graph fine-tuned by quantization-aware training "
           "(python -m convert.int8.qat_train: weights and activation scales fitted to the float model's logits "
           "through straight-through rounding) and its learned grid, read from BUNDLE/qat/",
           {"calibration": "percentile", "qat": True}),
    Method("act16", "onnx", "as minmax-float-logits with uint16 activations (runs as float between Q/DQ)",
           {"calibration": "minmax", "activations": "uint16"}),
    Method("dynamic", "onnx", "dynamic quantization: uint8 weights, activations scaled per call",
           {"dynamic": True}),
    Method("weights-only", "onnx", "int8-rounded weights, float activations and compute (diagnostic)",
           {"weights_only": True}, diagnostic=True),
    Method("gptq-weights-only", "onnx", "the gptq method's equalized, GPTQ-rounded weights with float activations "
           "and compute (diagnostic: what 8-bit activations add)",
           {"weights_only": True, "equalize_relu": True, "gptq": True}, diagnostic=True),
    *(Method(f"gptq-float-{name}", "onnx", f"as gptq, {what} left in float (diagnostic: what their 8 bits cost; "
             "onnxruntime computes the operators around them in float)",
             {"calibration": "percentile", "equalize_relu": True, "gptq": True, "float_activations": kinds},
             diagnostic=True)
      for name, what, kinds in FLOAT_GROUPS),
    Method("full-int8", "tflite", "TFLite full integer: per-channel int8 weights, int8 activations, "
           "float32 I/O", {"mode": "int8"}),
    Method("float-head", "tflite", "as full-int8 with the fully connected head in float (float logits)",
           {"mode": "int8", "float_ops": ["FULLY_CONNECTED"]}),
    Method("gptq", "tflite", "as float-head, with convolution weights GPTQ-rounded on 128 calibration images in "
           "the ONNX graph and carried back into the Keras model (batch normalization folded in) before conversion",
           {"mode": "int8", "float_ops": ["FULLY_CONNECTED"], "gptq": True}),
    Method("onnx-grid", "tflite", "the onnx gptq method's graph (Relu-equalized, GPTQ-rounded weights) run as "
           "TensorFlow ops with fake quantization on onnxruntime's percentile activation grid, converted by TFLite "
           "with the fully connected head in float: the ONNX file's ranges and weights in TFLite",
           {"mode": "int8", "float_ops": ["FULLY_CONNECTED"], "onnx_grid": "gptq"}),
    Method("onnx-grid-int8-relu", "tflite", "as onnx-grid with each RELU left as TFLite's int8 operator, which XNNPACK "
           "does not run (every static TFLite method computes them in float: convert/int8/tflite_relu.py)",
           {"mode": "int8", "float_ops": ["FULLY_CONNECTED"], "onnx_grid": "gptq", "float_relu": False}),
    Method("qat", "tflite", "as onnx-grid, with the graph and grid of the onnx qat method (BUNDLE/qat/)",
           {"mode": "int8", "float_ops": ["FULLY_CONNECTED"], "onnx_grid": "qat"}),
    Method("dynamic-range", "tflite", "dynamic range: int8 weights, activations quantized per call",
           {"mode": "dynamic"}),
)

DEFAULT = {"onnx": "gptq", "tflite": "onnx-grid"}


def method(fmt: str, name: str | None = None) -> Method:
    """The method ``name`` of ``fmt`` (its default when None); KeyError names the known ones."""
    name = name or DEFAULT[fmt]
    for m in METHODS:
        if m.format == fmt and m.name == name:
            return m
    raise KeyError(f"no {fmt} int8 method {name!r}; known: {', '.join(m.name for m in METHODS if m.format == fmt)}")
