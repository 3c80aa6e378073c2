"""The original Keras model behind the runtime's runner interface: ``predict`` and compiled call."""

from dataclasses import dataclass

import numpy as np

from runtime.backends import Runner
from runtime.errors import BackendUnavailable
from runtime.threads import available_cpus


@dataclass
class KerasRunner(Runner):
    """``model.predict`` (what the course used) or a compiled ``tf.function`` call."""

    fn: object = None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(batch))


def load_keras(path, compiled=False, device="cpu") -> KerasRunner:
    """Load ``model.keras``; ``compiled`` wraps ``model(x, training=False)`` in ``tf.function``."""
    try:
        import keras
        import tensorflow as tf
    except ImportError as e:
        raise BackendUnavailable(f"Keras rows need TensorFlow here: {e}") from None

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise BackendUnavailable("no GPU visible to TensorFlow")
    model = keras.models.load_model(path, compile=False)
    name = "keras compiled" if compiled else "keras predict"
    if compiled:
        call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        fn = lambda x: call(tf.constant(x)).numpy()  # noqa: E731
    else:
        fn = lambda x: model.predict(x, verbose=0, batch_size=len(x))  # noqa: E731
    provider = "GPU" if gpus and device == "gpu" else "CPU"
    return KerasRunner(name, provider, available_cpus(), model.output_shape[-1], fn=fn)
