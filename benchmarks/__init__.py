"""Measure the original Keras model and every artifact of a bundle side by side, in one run."""
