"""Helpers of the inference engines: running the Keras source model, and reading a TFLite file's
metadata without TensorFlow."""
