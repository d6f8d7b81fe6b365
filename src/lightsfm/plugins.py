"""Plug-ins found by name: a module of a package that defines one subclass of a base class."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import TypeVar

from .errors import LightsfmError

T = TypeVar("T")


def names(package: ModuleType) -> list[str]:
    """The plug-in modules of ``package`` (all but its ``base`` module)."""
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name != "base")


def load(package: ModuleType, base: type[T], name: str, kind: str) -> type[T]:
    """The one subclass of ``base`` that module ``name`` of ``package`` defines."""
    if name not in names(package):
        raise LightsfmError(f"unknown {kind} {name!r}; one of {', '.join(names(package))}")
    module = importlib.import_module(f"{package.__name__}.{name}")
    found = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, base) and c.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LightsfmError(f"{kind} module {module.__name__} must define exactly one {base.__name__} subclass")
    return found[0]
