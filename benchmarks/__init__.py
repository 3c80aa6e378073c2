"""Measure the original Keras model and every file of a bundle side by side, in one run, with a verdict;
measuring helpers live in benchmarks/measure/, stress and attack tools in benchmarks/stress/."""
