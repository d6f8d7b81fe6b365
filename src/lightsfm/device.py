"""Where and how models run."""

from __future__ import annotations

import os

import torch


def set_threads() -> None:
    """Use every core: torch defaults to the physical count, which can be lower."""
    torch.set_num_threads(max(1, os.cpu_count() or 1))
