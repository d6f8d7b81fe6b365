"""Matchers, one module each, found by name (``matching.name``)."""

from __future__ import annotations

import sys

from .. import plugins
from .base import Matcher


def available() -> list[str]:
    return plugins.names(sys.modules[__name__])


def get(name: str) -> type[Matcher]:
    """The matcher called ``name`` (its module's name)."""
    return plugins.load(sys.modules[__name__], Matcher, name, "matcher")
