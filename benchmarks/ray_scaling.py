"""The Ray executor on this machine (issue 14): a two-node loopback cluster of one CPU per
node (``ray start --head`` plus ``ray start --address``), and in one run

- Ray's overhead per task: a no-op through the executor, one item per round trip and in
  batches, against the local executor;
- extraction throughput (default settings) with 1 and 2 Ray workers, and locally with every
  core and with one thread;
- the wall time of reconstructing a folder with ``local`` (every core, and one thread per
  item) and with ``ray`` (the two one-CPU workers), stage by stage: the per-item costs the
  capacity plan of docs/cluster.md is built from.

Numbers are noisy where others share the CPU: the load average is recorded.

    .venv/bin/python benchmarks/ray_scaling.py [--images DIR] [--photos N] [--out STEM]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "dtu" / "scan65" / "images"
os.environ.setdefault("TQDM_DISABLE", "1")


def noop(x):
    return x


def start_cluster(tmp: str) -> tuple[str, list[subprocess.Popen]]:
    """A head and a second node, one CPU each, on a free port; stopped by stopping the processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus", "1", "--temp-dir", tmp, "--disable-usage-stats", "--block"]
    procs = []
    for args, log in (
        (["--head", "--port", str(port), "--include-dashboard", "false"], "head.log"),
        (["--address", f"127.0.0.1:{port}"], "node.log"),
    ):
        with open(Path(tmp) / log, "w") as out:
            procs.append(subprocess.Popen([ray_cli, "start", *args, *common], env=env, stdout=out, stderr=out))
        while True:  # the head must answer before the second node joins
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
    return f"127.0.0.1:{port}", procs


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=Path, default=IMAGES)
    ap.add_argument("--photos", type=int, default=12, help="photos for the extraction throughput")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "2026-11-30-ray"))
    ap.add_argument("--no-reconstruct", action="store_true")
    ap.add_argument(
        "--executors",
        default="local,local-1-thread,ray",
        help="the whole reconstructions to time, of local, local-1-thread, ray (comma-separated)",
    )
    ap.add_argument("--skip-throughput", action="store_true", help="no overhead and extraction throughput runs")
    args = ap.parse_args()

    import ray

    from lightsfm import executor, extract, pipeline
    from lightsfm.images import list_images

    rec: dict = {"images": str(args.images), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    lines: list[str] = []

    def say(text: str) -> None:
        """Prints and records a line; the results so far are saved with each (a killed run keeps them)."""
        print(text, flush=True)
        lines.append(text)
        Path(args.out + ".json").write_text(json.dumps(rec, indent=1) + "\n")
        Path(args.out + ".txt").write_text("\n".join(lines) + "\n")

    tmp = tempfile.mkdtemp(prefix="lsbench", dir="/tmp")
    t = time.perf_counter()
    address, procs = start_cluster(tmp)
    try:
        # connected here, so that each executor below joins (and stops only its own workers):
        # one executor's workers at a time, as they hold the cluster's two CPUs
        ray.init(address=address, logging_level="WARNING")
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            time.sleep(0.5)
        rec["cluster_start_s"] = time.perf_counter() - t
        say(f"cluster of 2 one-CPU nodes up in {rec['cluster_start_s']:.1f} s (load {os.getloadavg()[0]:.1f})")

        if not args.skip_throughput:
            # -- overhead per task ------------------------------------------------------------
            n1, nb = 400, 20000
            with executor.RayExecutor(address) as ex:
                rec["first_map_s"] = timed(lambda: list(ex.map(noop, range(2))))  # workers start
                batched = timed(lambda: list(ex.map(noop, range(nb)))) / nb
                ex.batch_size = 1
                per_call = timed(lambda: list(ex.map(noop, range(n1)))) / n1
            local = timed(lambda: list(executor.LocalExecutor().map(noop, range(nb)))) / nb
            rec["overhead"] = {
                "ray_first_map_s": rec["first_map_s"],
                "ray_per_item_one_per_call_ms": per_call * 1e3,
                "ray_per_item_batched_ms": batched * 1e3,
                "local_per_item_ms": local * 1e3,
            }
            say(
                f"no-op per item: ray {per_call * 1e3:.2f} ms one per call, {batched * 1e3:.3f} ms in batches; "
                f"local {local * 1e3:.4f} ms; starting 2 workers {rec['first_map_s']:.1f} s"
            )

            # -- extraction throughput ---------------------------------------------------------
            names = list_images(args.images)[: args.photos]
            items = [(n, 0) for n in names]
            task = extract.ExtractTask(args.images, extract.full_conf(None))
            thr: dict = {}
            for workers in (1, 2):
                r = executor.RayExecutor(address, workers=workers)
                warm = timed(lambda r=r, w=workers: list(r.map(task, items[:w])))  # worker start + model load
                thr[f"ray_{workers}_workers"] = {"warmup_s": warm, "s": timed(lambda r=r: list(r.map(task, items)))}
                r.close()
            for threads in (0, 1):
                loc = executor.LocalExecutor(threads)
                warm = timed(lambda loc=loc: list(loc.map(task, items[:1])))
                thr[f"local_{threads or os.cpu_count()}_threads"] = {
                    "warmup_s": warm,
                    "s": timed(lambda loc=loc: list(loc.map(task, items))),
                }
            for k, v in thr.items():
                v["photos_per_min"] = 60 * len(items) / v["s"]
                say(f"extract {len(items)} photos, {k}: {v['s']:.1f} s ({v['photos_per_min']:.1f}/min)")
            rec["extraction"] = {"photos": len(items), **thr}
            rec["extraction"]["ray_2_over_1"] = thr["ray_1_workers"]["s"] / thr["ray_2_workers"]["s"]
            say(f"ray 2 workers vs 1: {rec['extraction']['ray_2_over_1']:.2f}x")

        # -- whole reconstructions ---------------------------------------------------------
        if not args.no_reconstruct:
            runs = {}
            chosen = args.executors.split(",")
            for name, make in (
                ("local", lambda: executor.LocalExecutor()),
                ("local-1-thread", lambda: executor.LocalExecutor(1)),  # (no threads fighting over the 2 cores)
                ("ray", lambda: executor.RayExecutor(address)),
            ):
                if name not in chosen:
                    continue
                run = make()
                out = Path(tmp) / f"out-{name}"
                load = os.getloadavg()[0]
                t = time.perf_counter()
                res = pipeline.reconstruct(args.images, out, {}, executor=run)
                s = res.summary()
                runs[name] = {
                    "wall_s": time.perf_counter() - t,
                    "timings_s": s["timings_s"],
                    "pairs": s["pairs"],
                    "verified_pairs": s.get("verified_pairs"),
                    "images": s["images"],
                    "registered": s["models"][0]["registered"] if s["models"] else 0,
                    "load_avg_before": load,
                }
                r = runs[name]
                if name == "ray":
                    run.close()
                say(
                    f"reconstruct {r['images']} photos with {name}: {r['wall_s']:.1f} s, "
                    f"{r['registered']} registered, {r['pairs']} pairs; stages "
                    + ", ".join(f"{k} {v:.1f}" for k, v in r["timings_s"].items())
                )
            rec["reconstruct"] = runs
            for name in [n for n in ("local", "local-1-thread") if n in runs and "ray" in runs]:
                rec["reconstruct"][f"{name}_over_ray"] = ratio = runs[name]["wall_s"] / runs["ray"]["wall_s"]
                say(f"{name} / ray wall time: {ratio:.2f}")
        ray.shutdown()
    finally:
        for p in procs[::-1]:
            p.terminate()
            p.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)
    rec["load_avg_end"] = os.getloadavg()
    say(f"load average: start {rec['load_avg_start'][0]:.1f}, end {rec['load_avg_end'][0]:.1f} (1 min)")


if __name__ == "__main__":
    main()
