"""Helpers of fitting: best-only checkpoints and epoch timing, cached features of the frozen base, and
re-estimated BatchNorm statistics ("precise BN")."""
