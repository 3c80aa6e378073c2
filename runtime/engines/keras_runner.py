"""The original Keras model behind the runtime's runner interface: ``predict`` and compiled call.

Keras is imported only when a ``.keras`` file is run (benchmarks, ``runtime.compare``, a user's own
model); exported artifacts never need it, and a deployment does not install it.

TensorFlow backend: the compiled call is ``tf.function``. JAX backend (``KERAS_BACKEND=jax``, as on
a GPU machine without TensorFlow): it is ``jax.jit`` of ``model.stateless_call``.
"""

from dataclasses import dataclass

import numpy as np

from runtime.backends import Runner
from runtime.errors import BackendUnavailable, ModelError, first_line
from runtime.machine.threads import available_cpus


@dataclass
class KerasRunner(Runner):
    """``model.predict`` (what the course used) or a compiled inference call."""

    fn: object = None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(batch))


def _tensorflow_call(model, device):
    """(compiled call, GPU in use) with TensorFlow."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise BackendUnavailable("no GPU visible to TensorFlow")
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return (lambda x: call(tf.constant(x)).numpy()), bool(gpus)


def _jax_call(model, device):
    """(compiled call, GPU in use) with JAX."""
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if device == "gpu" and not gpus:
        raise BackendUnavailable("no GPU visible to JAX")
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    call = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
    return (lambda x: call(*state, x)), bool(gpus)


def load_source(path, threads=None, device="cpu", spinning=True) -> KerasRunner:
    """The source model as the format table loads it: compiled (``spinning`` means nothing to Keras)."""
    return load_keras(path, threads, device)


def load_keras(path, threads=None, device="cpu", compiled=True) -> KerasRunner:
    """Load ``model.keras`` with the configured Keras backend (TensorFlow or JAX)."""
    try:
        import keras
    except ImportError as e:
        raise BackendUnavailable(f"Keras is not installed: {e}") from None
    calls = {"tensorflow": _tensorflow_call, "jax": _jax_call}
    if keras.backend.backend() not in calls:
        raise BackendUnavailable(f"no compiled call for the Keras backend {keras.backend.backend()}")
    try:
        model = keras.models.load_model(path, compile=False)
        call, on_gpu = calls[keras.backend.backend()](model, device)
    except ImportError as e:
        raise BackendUnavailable(f"Keras rows need their backend installed: {e}") from None
    except BackendUnavailable:
        raise
    except Exception as e:  # Keras raises many kinds for a file that is not a model
        raise ModelError(f"cannot load Keras model {path}: {first_line(e)}") from None
    name = "keras compiled" if compiled else "keras predict"
    fn = call if compiled else (lambda x: model.predict(x, verbose=0, batch_size=len(x)))
    provider = f"{keras.backend.backend()} {'GPU' if on_gpu and device == 'gpu' else 'CPU'}"
    return KerasRunner(name, provider, threads or available_cpus(), model.output_shape[-1],
                       input_shape=tuple(model.input_shape), fn=fn)
