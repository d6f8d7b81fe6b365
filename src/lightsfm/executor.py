"""Where per-item work runs: the seam between a stage's loop and the machines it uses.

A stage hands ``map`` a task (a picklable callable that builds its model on first use,
so a worker loads it once, not once per item) and its work items; results come back in
the order of the items, whoever computed them. ``local`` runs them here with a progress
bar: one after the other on every core, except the tasks marked ``side_by_side`` (a photo
to describe, a pair for mutual nearest neighbours or retrieval's check), which run one per
core at once; ``ray`` runs the same tasks on a Ray cluster: one worker
process (a Ray actor) per CPU, each keeping the tasks it was given (and so their models)
across calls, the items sent in batches. Stages write the results on the driver, so the
files are the same whichever executor computed them, and a run stopped under one executor
resumes under the other.

Results do not depend on the executor as long as each item runs with the same number of
torch threads (``run.threads``; Ray workers and local side-by-side work use one each by
default): the same item at another thread count can differ in the last bits.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from .errors import LightsfmError

logger = logging.getLogger(__name__)

# The settings section ``run``: where the per-item work runs. Never part of a file tag or a
# fingerprint: results must not depend on it, and resuming under another executor must work.
default_conf: dict[str, Any] = {
    "executor": "local",  # local | ray
    "ray_address": None,  # None: start Ray on this machine; "auto"; "HOST:PORT" of a running cluster
    "threads": 0,  # torch threads per work item; 0: every core for local, 1 per Ray worker
    # Side-by-side items (photos, cheap pairs) run at once in this process (0: one per core,
    # each on one torch thread): small convolutions split poorly over threads. Two side by
    # side against one after the other on both cores: extraction 12-20 % faster, the six
    # scenes of benchmarks/results/2026-12-01-workers-ab.txt 117.3 s vs 124.5 s at the same
    # mAA (±0.004); it costs a second image's activations (12 mold_gold_cape photos, 1024 px:
    # peak RSS 1.37 GB vs 0.89 GB; the 309-photo folder's turn detection and extraction 1.83 GB).
    "workers": 0,
}
flags: dict[str, str | tuple[str, str]] = {
    "executor": "Where per-photo and per-pair work runs: local (this process) or ray (a Ray cluster).",
    "ray_address": "Ray cluster to use: auto, HOST:PORT, or unset to start Ray on this machine.",
    "threads": "Torch threads per work item (0: every core locally, one per Ray worker); same count, same bits.",
    "workers": "Photos or cheap pairs done at once locally (0: one per core; 1: one at a time on every core).",
}


class Executor(Protocol):
    def map(self, task: Callable[[Any], Any], items: Iterable[Any], desc: str = "", unit: str = "item") -> Iterator:
        """``task(item)`` for every item, yielded in the order of ``items``."""
        ...


class LocalExecutor:
    """In this process, with a progress bar when ``desc`` names the work.

    Items run one after the other, torch using every core within an item (or ``threads``),
    except for tasks marked ``side_by_side`` (short items sharing no state: a photo to
    describe, a pair for mutual nearest neighbours or retrieval's check): ``workers`` of
    those items run at once (0: one per core), each in a thread with its own copy of the
    task (and so of its model), on ``threads`` torch threads (0: the cores shared out, one
    each on this machine). An item's
    result then does not depend on how many items are left to do, so a resumed run computes
    what an uninterrupted one would, and it equals a Ray worker's (one thread).
    """

    def __init__(self, threads: int = 0, workers: int = 0) -> None:
        self.threads, self.workers = threads, workers

    def map(self, task: Callable[[Any], Any], items: Iterable[Any], desc: str = "", unit: str = "item") -> Iterator:
        from . import device

        items = list(items)
        cores = os.cpu_count() or 1
        workers = self.workers or max(1, cores // max(1, self.threads))
        side_by_side = getattr(task, "side_by_side", False) and workers > 1
        threads = self.threads or (max(1, cores // workers) if side_by_side else 0)
        previous = device.use_threads(threads) if threads else None
        try:
            results = _side_by_side(task, items, workers) if side_by_side else _here(task, items)
            # (a disable= of our own would override the user's TQDM_DISABLE)
            yield from tqdm(results, total=len(items), desc=desc, unit=unit) if items and desc else results
        finally:
            if previous is not None:
                device.use_threads(previous)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _here(task: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
    """``task(item)`` for every item, in this thread, denormals flushed while it runs (lightsfm.device)."""
    from .device import denormals_flushed

    for item in items:
        with denormals_flushed():
            result = task(item)
        yield result


def _side_by_side(task: Callable[[Any], Any], items: list[Any], workers: int) -> Iterator[Any]:
    """``task(item)`` for every item, in item order, ``workers`` at a time in threads (torch
    releases the GIL in its kernels); each thread calls its own copy of ``task`` (copied as
    it would be pickled: without the model it builds on first use), so each thread builds
    its own model. At most two items per worker are in flight: results are not piled up
    ahead of the one awaited."""
    local = threading.local()

    def call(item: Any) -> Any:
        if not hasattr(local, "task"):
            from .device import flush_denormals

            flush_denormals()  # (a thread of ours)
            local.task = copy.copy(task)
        return local.task(item)

    pool = ThreadPoolExecutor(workers, thread_name_prefix="lightsfm")
    pending: deque[Future] = deque()
    todo = iter(items)
    try:
        for item in todo:
            pending.append(pool.submit(call, item))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            for item in todo:
                pending.append(pool.submit(call, item))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _task_key(task: Callable[[Any], Any]) -> str:
    """What a worker keeps a task (and its model) under: its pickled state, and the identity
    of the files it names, so a task whose input file was rewritten is a new task (a kept
    one would read the old file through the handle it holds open)."""
    from ray import cloudpickle  # (plain functions too, as Ray sends them)

    state = cloudpickle.dumps(task)
    files = []
    for value in getattr(task, "__dict__", {}).values():
        if isinstance(value, Path) and value.is_file():
            s = value.stat()
            files.append((str(value), s.st_ino, s.st_mtime_ns, s.st_size))
    return hashlib.sha1(state + repr(files).encode()).hexdigest()


class _Worker:
    """A Ray actor: runs batches of items, keeping the last few tasks it was given (each
    builds its model on first use), so a model is loaded once per worker, not per batch.
    A restarted worker (its process was killed) starts with none and rebuilds them."""

    KEEP = 4  # tasks (and their models) kept per worker: the hybrid's two matchers and more

    def __init__(self, threads: int) -> None:
        from . import device

        device.use_threads(threads)
        device.flush_denormals()  # (a process of ours)
        self.tasks: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()

    def pid(self) -> int:
        return os.getpid()

    def run(self, key: str, task: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if key in self.tasks:
            self.tasks.move_to_end(key)
            task = self.tasks[key]
        else:
            self.tasks[key] = task
            while len(self.tasks) > self.KEEP:
                self.tasks.popitem(last=False)
        return [task(item) for item in items]


def _resolve(address: str) -> str:
    """``auto`` or ``HOST:PORT`` → the cluster's ``HOST:PORT``, checked to answer: Ray itself
    retries a dead address for minutes, printing warnings, before it gives up."""
    try:  # Ray's own reading of "auto" (RAY_ADDRESS, then the cluster last started here)
        from ray._private.services import canonicalize_bootstrap_address

        resolved = canonicalize_bootstrap_address(address)
    except ConnectionError:
        raise LightsfmError(
            f"Ray cluster {address!r}: none is running here (start one with `ray start --head`)"
        ) from None
    except (ImportError, ValueError):
        resolved = address
    host, sep, port = (resolved or "").rpartition(":")
    if not sep or not port.isdigit():
        raise LightsfmError(f"Ray cluster {address!r}: expected auto or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise LightsfmError(f"Ray cluster {address!r} ({resolved}): cannot be reached ({e.strerror or e})") from None
    return resolved


class RayExecutor:
    """On a Ray cluster: one worker per ``threads`` CPUs of the cluster (at the first map),
    items sent in batches, results in item order.

    ``address``: ``auto``, ``HOST:PORT`` of a running cluster, or None to start Ray on this
    machine with its CPUs (stopped again by ``close``). A worker whose process dies is
    restarted by Ray and its unfinished batches run again (up to ``retries`` times); the
    work items are pure, so the result is the same.
    """

    IN_FLIGHT = 2  # batches queued per worker: the next one is there when one finishes

    def __init__(
        self, address: str | None = None, threads: int = 0, batch_size: int = 0, workers: int = 0, retries: int = 4
    ) -> None:
        import ray

        self.address, self.threads, self.batch_size, self.retries = address, threads or 1, batch_size, retries
        self.workers: list[Any] = []
        self._wanted = workers
        self._owns = False
        resolved = _resolve(address) if address else None
        if ray.is_initialized():  # this process already talks to a cluster: use it when it is the one asked for
            current = ray.get_runtime_context().gcs_address
            if resolved and resolved != current:
                raise LightsfmError(f"Ray cluster {address!r}: this process is already connected to {current}")
            return
        # (Ray reports usage statistics by default; these machines may be offline)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        options: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
        if resolved is None:
            options["num_cpus"] = os.cpu_count() or 1
        try:
            # (the address as given: Ray reads a token-authenticated cluster's token for "auto" itself)
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError) as e:
            where = f"Ray cluster {address!r}" if address else "a local Ray"
            raise LightsfmError(f"{where}: cannot be started or joined ({' '.join(str(e).split())[:200]})") from None
        self._owns = True

    def _start(self) -> None:
        """The workers: one per ``threads`` CPUs of the cluster, spread over its nodes."""
        import ray

        if self.workers:
            return
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = self._wanted or max(1, cpus // self.threads)
        actor = ray.remote(_Worker).options(
            num_cpus=self.threads,
            max_restarts=self.retries,
            max_task_retries=self.retries,
            scheduling_strategy="SPREAD",
        )
        self.workers = [actor.remote(self.threads) for _ in range(count)]

    def pids(self) -> list[int]:
        """The process id of each worker (for tests that kill one)."""
        import ray

        self._start()
        return ray.get([w.pid.remote() for w in self.workers])

    def _batches(self, items: list[Any]) -> list[list[Any]]:
        # about four batches per worker, for balance, of at most 32 items: a batch costs a
        # round trip (about a millisecond; benchmarks/ray_scaling.py), an item 5 ms to seconds
        size = self.batch_size or max(1, min(32, math.ceil(len(items) / (4 * len(self.workers)))))
        return [items[i : i + size] for i in range(0, len(items), size)]

    def map(self, task: Callable[[Any], Any], items: Iterable[Any], desc: str = "", unit: str = "item") -> Iterator:
        import ray

        items = list(items)
        if not items:
            return
        self._start()
        key, ref = _task_key(task), ray.put(task)
        batches = self._batches(items)
        pending: dict[Any, tuple[int, int]] = {}  # result → (batch, worker)
        done: dict[int, list[Any]] = {}
        queued = 0

        def submit(worker: int) -> None:
            nonlocal queued
            pending[self.workers[worker].run.remote(key, ref, batches[queued])] = (queued, worker)
            queued += 1

        for _ in range(self.IN_FLIGHT):
            for w in range(len(self.workers)):
                if queued < len(batches):
                    submit(w)
        bar = tqdm(total=len(items), desc=desc, unit=unit) if desc else None
        try:
            for b in range(len(batches)):
                while b not in done:
                    (ready,), _ = ray.wait(list(pending), num_returns=1)
                    finished, worker = pending.pop(ready)
                    done[finished] = self._get(ready)
                    if bar is not None:
                        bar.update(len(batches[finished]))
                    if queued < len(batches):
                        submit(worker)
                yield from done.pop(b)
        finally:
            if bar is not None:
                bar.close()
            for r in pending:  # stopped early (interrupted, or an error): drop the queued work
                ray.cancel(r)

    def _get(self, ref: Any) -> list[Any]:
        import ray
        from ray.exceptions import RayActorError, RayError, RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as e:  # the task raised: the same error here, the remote traceback chained
            cause = e.cause if isinstance(e.cause, Exception) else None
            if cause is None:
                raise
            raise cause from e
        except RayActorError as e:
            raise LightsfmError(
                f"a Ray worker died more than {self.retries} times ({self.where()}): {' '.join(str(e).split())[:200]}"
            ) from None
        except RayError as e:
            raise LightsfmError(
                f"Ray cluster {self.where()}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            ) from None

    def where(self) -> str:
        return repr(self.address) if self.address else "started here"

    def stop_workers(self) -> None:
        """Stops the workers (freeing their CPUs for other work); the next map starts new ones."""
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []

    def close(self) -> None:
        """Stops the workers, and Ray itself when this executor started or joined it."""
        import ray

        self.stop_workers()
        if self._owns:
            ray.shutdown()
            self._owns = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


NAMES = ("local", "ray")


def get(name: str = "local", **options: Any) -> LocalExecutor | RayExecutor:
    """The executor called ``name``: ``local`` (``threads``, ``workers``) or ``ray`` (``address``,
    ``threads``, ``batch_size``, ``workers``, ``retries``). Ray is imported only for ``ray``."""
    if name == "local":
        return LocalExecutor(options.get("threads", 0), options.get("workers", 0))
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise LightsfmError("executor 'ray' needs Ray: pip install 'ray>=2.60,<3'") from None
        return RayExecutor(**options)
    raise LightsfmError(f"unknown executor {name!r}; one of {', '.join(NAMES)}")


def from_conf(conf: dict[str, Any] | None) -> LocalExecutor | RayExecutor:
    """The executor the ``run`` settings name."""
    c = {**default_conf, **(conf or {})}
    if c["executor"] == "ray":
        return get("ray", address=c["ray_address"], threads=c["threads"])
    return get(c["executor"], threads=c["threads"], workers=c["workers"])
