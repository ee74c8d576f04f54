"""The package's errors: one class per kind of bad input, each a `ValueError` with a message that names the file."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file, image or folder that cannot be read as the documented layout."""


class ModelError(ValueError):
    """A model file that is missing, unreadable or not a head-pose model."""
