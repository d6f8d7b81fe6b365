"""Local-feature extractors, one module each, found by name (``features.name``)."""

from __future__ import annotations

import sys

from .. import plugins
from .base import Extractor


def available() -> list[str]:
    return plugins.names(sys.modules[__name__])


def get(name: str) -> type[Extractor]:
    """The extractor called ``name`` (its module's name)."""
    return plugins.load(sys.modules[__name__], Extractor, name, "extractor")
