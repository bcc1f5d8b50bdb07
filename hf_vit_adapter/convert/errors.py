"""What a converter raises or warns, so the CLI can answer with one line instead of a traceback."""

from __future__ import annotations


class ConversionError(ValueError):
    """A checkpoint, base model or output folder the converter cannot use exactly; the message names the problem."""


class ConversionWarning(UserWarning):
    """Something the user should know about a conversion that still gives the source library's outputs."""
