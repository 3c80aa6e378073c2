"""How things are measured: multiply-adds of a model, per-operator times, the machine's
provenance, matrix-multiply peaks and timing loops."""
