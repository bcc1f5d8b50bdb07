"""One exception for bad user input, so the CLI can answer it with one line instead of a traceback."""

from __future__ import annotations


class InputError(Exception):
    """Arguments or data the run cannot use: unknown dataset or column, unusable labels, no images, ..."""
