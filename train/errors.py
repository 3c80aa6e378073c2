"""Typed errors of the training stage."""


class TrainError(Exception):
    """Base class of every error training raises on purpose."""


class WeightsError(TrainError):
    """The requested base weights cannot be had."""


class DataError(TrainError):
    """The dataset folder is missing or malformed."""


class SweepError(TrainError):
    """A sweep was asked to fix the very setting it varies."""


class ModelFileError(TrainError):
    """A model file to evaluate or resize is missing or is not a Keras model."""
