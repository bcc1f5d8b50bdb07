"""The two ways a run ends early on purpose, so the CLI can answer each with one line instead of a traceback."""

from __future__ import annotations


class InputError(Exception):
    """Arguments or data the run cannot use: unknown dataset or column, unusable labels, no images, ..."""


class TrainingDiverged(Exception):
    """The loss or the weights became NaN or infinite; nothing of the run is saved as its result."""
