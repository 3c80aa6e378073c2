"""Backends as loader + runner (Polygraphy's seam): ``load_*(path) -> Runner``, ``runner.infer(batch)``.

Inference libraries are imported inside the loaders, so importing this module is cheap.
"""

import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.bundle import parse_metadata
from runtime.cli import quiet_stderr
from runtime.engines.tflite_metadata import read_metadata
from runtime.errors import BackendUnavailable, ModelError, first_line
from runtime.formats import TFLITE_IMPORTS
from runtime.machine import heap
from runtime.machine.threads import available_cpus

METADATA_KEY = "edge_classifier"
MAX_TENSOR_BYTES = 1 << 30  # one tensor of a file's declared graph at its own batch; an image classifier's
# largest activation is megabytes, and LiteRT would allocate what a mutated 2.5 KB file declares (7 GB seen)


@dataclass
class Answer:
    """Logits of a batch and, per row, whether a cascade's exact file answered it."""

    logits: np.ndarray
    rechecked: np.ndarray


@dataclass
class Runner:
    """A loaded model: ``infer(float32 batch) -> float32 logits``, plus what it runs on."""

    backend: str
    provider: str
    threads: int
    outputs: int
    metadata: dict = field(default_factory=dict)
    input_shape: tuple = ()

    @property
    def _nchw(self) -> bool:
        """Whether the input's channels come before its rows (a dimension of 1 or 3 there, not last)."""
        dims = self.input_shape
        return len(dims) == 4 and dims[1] in (1, 3) and dims[3] not in (1, 3)

    @property
    def input_hw(self) -> tuple[int | None, int | None] | None:
        """The fixed (height, width) of an NHWC or NCHW image input, None where the model does not fix it."""
        dims = [d if isinstance(d, int) and d > 0 else None for d in self.input_shape]
        if len(dims) != 4:
            return None
        return (dims[2], dims[3]) if self._nchw else (dims[1], dims[2])

    @property
    def input_channels(self) -> int | None:
        """The fixed channel count of an image input, None where unknown."""
        dims = self.input_shape
        if len(dims) != 4:
            return None
        c = dims[1] if self._nchw else dims[3]
        return c if isinstance(c, int) and c > 0 else None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def answer(self, batch: np.ndarray) -> Answer:
        """The logits of a batch, no row re-checked (a cascade runner re-checks its near-ties)."""
        return Answer(self.infer(batch), np.zeros(len(batch), bool))

    def infer_batches(self, images: np.ndarray, size=32) -> np.ndarray:
        """Logits of a whole image set, ``size`` images per call."""
        return np.concatenate([self.infer(images[i:i + size]) for i in range(0, len(images), size)])


@dataclass
class OnnxRunner(Runner):
    """ONNX Runtime session with one float32 input."""

    session: object = None
    input_name: str = ""

    def infer(self, batch):
        try:
            return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
        except Exception as e:  # onnxruntime raises its own untyped exceptions
            raise ModelError(f"the model failed when run: {first_line(e)}") from None


@dataclass
class TFLiteRunner(Runner):
    """LiteRT interpreter; resizes for the batch size and (de)quantizes int8 input/output."""

    interpreter: object = None
    batch: int = 0

    def infer(self, batch):
        it = self.interpreter
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        try:
            if batch.shape[0] != self.batch:
                it.resize_tensor_input(inp["index"], list(batch.shape))
                it.allocate_tensors()
                self.batch = batch.shape[0]
            it.set_tensor(inp["index"], quantize(batch, inp))
            it.invoke()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"the model failed when run: {first_line(e)}") from None
        return dequantize(it.get_tensor(out["index"]), out)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input to the tensor's dtype, using its scale and zero point when it is integer."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return np.ascontiguousarray(x, dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """Integer output back to float32 logits; float output is copied as is."""
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def _interpreter_class():
    """LiteRT's Interpreter, else tflite_runtime's, else TensorFlow's."""
    for module in TFLITE_IMPORTS:
        try:
            return __import__(module, fromlist=["Interpreter"]).Interpreter
        except ImportError:
            continue
    raise BackendUnavailable("no TFLite interpreter: pip install ai-edge-litert")


def check_tensor_sizes(interpreter, path):
    """ModelError, before LiteRT allocates anything, when a tensor the file declares is over MAX_TENSOR_BYTES."""
    for t in interpreter.get_tensor_details():
        size = math.prod(int(n) for n in t["shape"]) * np.dtype(t["dtype"]).itemsize
        if size > MAX_TENSOR_BYTES:
            shape = tuple(t["shape"].tolist())
            raise ModelError(f"cannot load {path}: tensor {ascii(t['name'])[:80]} of shape {shape} would take "
                             f"{size / 2 ** 30:.1f} GiB; at most {MAX_TENSOR_BYTES >> 30} GiB per tensor")


def load_tflite(path, threads=None, device="cpu", spinning=True) -> TFLiteRunner:
    """Load a .tflite file; its metadata buffer is parsed from a memory map (LiteRT has no spinning
    switch)."""
    if device != "cpu":
        raise BackendUnavailable("LiteRT runs on the CPU here; use an ONNX artifact for --device gpu")
    Interpreter = _interpreter_class()
    threads = threads or available_cpus()
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            meta = read_metadata(data).get(METADATA_KEY)
        with quiet_stderr(os.environ.get("RUNTIME_VERBOSE") != "1"):  # LiteRT's "INFO: Created ... delegate"
            it = Interpreter(model_path=str(path), num_threads=threads)  # LiteRT maps the file: no copy in memory
            check_tensor_sizes(it, path)
            it.allocate_tensors()
    except (ValueError, RuntimeError, OSError, IndexError, UnicodeDecodeError, struct.error) as e:
        raise ModelError(f"cannot load {path}: {first_line(e)}") from None
    metadata = parse_metadata(meta, str(path))
    try:  # LiteRT decodes the file's tensor names as UTF-8 only when they are read
        inp = it.get_input_details()[0]
        outputs = int(it.get_output_details()[0]["shape"][-1])
    except (UnicodeDecodeError, IndexError, ValueError) as e:
        raise ModelError(f"cannot load {path}: {type(e).__name__}: {first_line(e)}") from None
    return TFLiteRunner("litert", "xnnpack-cpu", threads, outputs, metadata, tuple(inp["shape_signature"].tolist()),
                        interpreter=it, batch=int(inp["shape"][0]))


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def load_onnx(path, threads=None, device="cpu", spinning=True) -> OnnxRunner:
    """Load an .onnx file on the CPU, or on the GPU through TensorRT/CUDA when asked; ``spinning`` False
    lets idle intra-op threads sleep instead of spinning (see runtime/machine/threads.py)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
    threads = threads or available_cpus()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    providers = ["CPUExecutionProvider"]
    if device == "gpu":
        providers = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()] + providers
        if len(providers) == 1:
            have = ", ".join(ort.get_available_providers())
            raise BackendUnavailable(f"no GPU provider in onnxruntime ({have}); pip install onnxruntime-gpu")
    try:
        # From a path (faster than from bytes, and no second copy in memory), through a link
        # in an empty folder: onnxruntime (>= 1.24) looks for external data files only beside the path it
        # is given and refuses absolute ones, so weights outside the file (and its hash) are never read.
        import tempfile  # here: the TFLite path and the CLI's start need not import it

        with tempfile.TemporaryDirectory(prefix="edge-onnx-") as alone:
            link = Path(alone) / "model.onnx"
            link.symlink_to(Path(path).resolve())
            sess = ort.InferenceSession(str(link), opts, providers=providers)
        heap.give_back()  # the graph optimizer's freed copies would stay resident
    except OSError as e:
        raise ModelError(f"cannot read {path}: {first_line(e)}") from None
    except Exception as e:  # onnxruntime raises its own untyped exceptions
        raise ModelError(f"cannot load {path}: {first_line(e)}") from None
    if device == "gpu" and sess.get_providers()[0] not in GPU_PROVIDERS:
        raise BackendUnavailable(f"{Path(path).name}: CUDA was asked for, but onnxruntime ran the session on "
                                 f"{sess.get_providers()[0]} (CUDA or cuDNN libraries missing?)")
    try:  # onnxruntime decodes the file's names and metadata as UTF-8 only when they are read
        if len(sess.get_inputs()) != 1 or len(sess.get_outputs()) != 1:
            names = ", ".join(i.name for i in sess.get_inputs()[1:4])
            raise ModelError(f"{Path(path).name}: {len(sess.get_inputs())} inputs and {len(sess.get_outputs())} "
                             "outputs; an image classifier has one of each" + (f" (also asks for {names})" if names
                                                                               else ""))
        meta = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        outputs = sess.get_outputs()[0].shape[-1]
        inp = sess.get_inputs()[0]
        shape, name = tuple(inp.shape), inp.name
    except UnicodeDecodeError:
        raise ModelError(f"{path}: its names or metadata are not UTF-8") from None
    return OnnxRunner("onnxruntime", sess.get_providers()[0], threads, outputs if isinstance(outputs, int) else 0,
                      parse_metadata(meta, str(path)), shape, session=sess, input_name=name)
