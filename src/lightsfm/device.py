"""Where and how models run."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

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


def flush_denormals() -> None:
    """Denormal floats read and compute as zero in this thread from now on, and in the
    threads it starts (they inherit the flag). For threads and processes lightsfm owns; its
    work in the caller's thread runs inside ``denormals_flushed``.

    LightGlue's softmax leaves many attention weights below 1e-38, where x86 arithmetic is
    slow (doubling 16 M of them: 61 ms, flushed 16 ms): a 512-keypoint pair took 0.20 s on
    2 threads, 0.14 s flushed (the same matches). ALIKED's time did not change.
    """
    torch.set_flush_denormal(True)


@contextmanager
def denormals_flushed() -> Iterator[None]:
    """``flush_denormals`` in this thread meanwhile; IEEE arithmetic again afterwards."""
    flush_denormals()
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


# torch starts its thread pool at its first parallel operation, and the pool's threads keep
# the flag they were started with: started here, flushed, they flush too (unless the process
# ran torch before importing lightsfm). The caller's own thread is left as it was.
with denormals_flushed():
    torch.ones(1 << 17).sum()


def _glibc() -> ctypes.CDLL | None:
    """The C library's malloc controls where they are glibc's (Linux), else None."""
    try:
        libc = ctypes.CDLL(None)  # (the process's own symbols: glibc's on Linux)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both there, or not glibc)
    except (OSError, AttributeError):
        return None
    return libc


_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # (glibc's malloc.h)


def keep_freed_heap() -> None:
    """Large blocks come from the heap and stay there once freed, ready for the next photo.

    glibc gives each block over 32 MB its own pages (mmap) and hands them back when it is
    freed; ALIKED's full-resolution maps of a 576 × 1024 photo are 38-75 MB each, so every
    layer of every photo paid the kernel for fresh zeroed pages: a ReLU over one such map
    took 30 ms, 3.7 ms on reused heap, and one photo 402 ms instead of 299 ms (one thread).
    Same arithmetic, same output. Freed memory is handed back at the points that call
    ``release_freed_memory``. ``LIGHTSFM_MALLOC=system`` leaves glibc's defaults.

    One heap for all threads, too: glibc gives each thread that allocates at once its own
    heap, and each kept its own high-water mark of the photos it described. Extraction of
    mold_gold_cape's 119 photos, two side by side, took 41.6-43.8 s and peaked at 1362-1488 MB
    with one heap against 49.9-53.2 s and 1463-1685 MB (three alternating runs each).
    """
    libc = _glibc()
    if libc is None or os.environ.get("LIGHTSFM_MALLOC") == "system":
        return
    libc.mallopt(_M_ARENA_MAX, 1)  # threads from now on get no new heap (torch's import may have made one)
    libc.mallopt(_M_MMAP_MAX, 0)  # no block gets pages of its own
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # nor is the heap's free top handed back on its own


keep_freed_heap()


def rss_mb() -> float:
    """This process's resident memory (MB; 0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


_trim_lock = threading.Lock()
_rss_after_trim = 0.0


def release_freed_memory() -> None:
    """Hands memory freed by finished work back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Turn detection frees its cheap features of every photo before extraction
    starts, but glibc keeps most of the freed heap: trimmed, extraction of mold_gold_cape's
    119 photos peaks at 1356 MB instead of 1525 MB."""
    global _rss_after_trim
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
        _rss_after_trim = rss_mb()


# Freed memory is handed back once the process has grown this much since the last time:
# turn detection's photos are small (512 px), extraction's working set of two photos side
# by side is 0.5-0.6 GB, so its bar sits above that.
TRIM_GROWTH_MB = 256
EXTRACTION_TRIM_GROWTH_MB = 768


def release_freed_memory_if_grown(growth_mb: float = TRIM_GROWTH_MB) -> None:
    """``release_freed_memory`` once the process has grown by ``growth_mb`` since the last trim.

    Photos described side by side leave freed heap that glibc keeps, and blocks of one photo
    size rarely fit the holes another size left, so the heap keeps growing. Turn detection
    calls it after each photo: the 309-photo mix peaked at 1375 MB without this, 769 MB with
    it (70.3 s and 73.3 s, one run each). Extraction, at EXTRACTION_TRIM_GROWTH_MB, after
    turn detection of the same mix: 1452 MB (21 trims) against 2121 MB, in 83.2 s against
    80.5 s (one run each, alternating; a throwaway script sampling RSS every 20 ms). Each
    trim hands back pages the next photos fault in again: at 256 MB extraction took 100 s.
    """
    rss = rss_mb()
    if not rss or rss < _rss_after_trim + growth_mb:
        return
    with _trim_lock:
        if rss_mb() >= _rss_after_trim + growth_mb:  # (not just trimmed by another thread)
            release_freed_memory()


ONEDNN_MIN_PRODUCT = 1 << 26  # multiply-adds: 1024 × 512 descriptors of 128 dimensions


def _onednn(*tensors: torch.Tensor) -> bool:
    """float32 on a CPU, outside autocast (which torch's own functions follow)?"""
    return (
        torch.backends.mkldnn.is_available()
        and not torch.is_autocast_enabled("cpu")
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (``F.linear``); large float32 products on a CPU through oneDNN.

    MKL, torch's default for these, runs its slower code paths on AMD CPUs: on one AMD EPYC
    core 2048 × 128 descriptors a side took 7.8 ms instead of 11.9 ms, 1024 a side 1.3
    instead of 2.8 ms, with bit-identical results (products over up to 144 dimensions;
    longer ones differ in the last bits). tensorf_object80's matching took 5.4-6.5 s
    instead of 6.8-8.0 s (three runs each). oneDNN builds a kernel for each new shape (about
    1 ms), so small products, and LightGlue's layers, whose shapes change with every pair it
    prunes (the dino's matching took 4.1 s instead of 3.9 s), stay with torch's default;
    so does ALIKED, whose two photos side by side gained nothing from it.
    """
    rows = x.numel() // max(x.shape[-1], 1)
    if not _onednn(x, weight) or rows * weight.shape[0] * weight.shape[1] < ONEDNN_MIN_PRODUCT:
        return F.linear(x, weight, bias)
    b = bias.to_mkldnn() if bias is not None else None
    return torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), weight.contiguous().to_mkldnn(), b).to_dense()
