"""TF-free inference runtime: preprocessing and (later) model backends."""
