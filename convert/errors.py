"""Typed errors of conversion; the CLI turns them into one line and a non-zero exit."""


class ConvertError(Exception):
    """Base class of every error conversion raises on purpose."""


class SourceError(ConvertError):
    """The source model or its bundle cannot be used."""


class CalibrationError(ConvertError):
    """Not enough distinct real images to calibrate int8."""


class ExportError(ConvertError):
    """An exporter failed to produce a model file."""


class ParityError(ConvertError):
    """An export answers differently from the Keras model beyond its precision's thresholds."""
