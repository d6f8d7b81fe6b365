"""Where and how models run."""

from __future__ import annotations

import ctypes
import os

import torch

# Torch threads per work item when an executor fixes them (0: every core). Results of the
# same item differ in the last bits between thread counts (oneDNN splits small convolutions
# differently), so executors that must agree run each item with the same count.
_threads = 0


def use_threads(n: int) -> int:
    """Runs work items here with ``n`` torch threads (0: every core); returns the previous count."""
    global _threads
    previous, _threads = _threads, int(n)
    set_threads()
    return previous


def set_threads() -> None:
    """Use every core, or the count an executor chose: torch defaults to the physical count,
    which can be lower."""
    torch.set_num_threads(_threads or max(1, os.cpu_count() or 1))


def release_freed_memory() -> None:
    """Hands memory freed by finished work back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Turn detection frees its cheap features of every photo before extraction
    starts, but glibc keeps most of the freed heap: trimmed, extraction of mold_gold_cape's
    119 photos peaks at 1356 MB instead of 1525 MB."""
    try:
        ctypes.CDLL(None).malloc_trim(0)  # (the process's own symbols: glibc's on Linux)
    except (OSError, AttributeError):  # not glibc
        pass
