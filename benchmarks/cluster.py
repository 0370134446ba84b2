"""Cluster benchmark: what running a batch on Dask costs and gains against a local run, same photos, same run.

Figures:
- a local run (one process, the CLI's path) against a cluster of one and of two worker processes on this
  machine (real processes: Dask's LocalCluster with nannies), each over the same real photos: wall time,
  photos a second, and the cluster's overhead per task against the local run;
- the scheduler's own cost per task: empty tasks, round trip from submit to result;
- the time a worker takes to load its networks when it joins (once per worker, not per task).

    python benchmarks/cluster.py [--photos 16] [--side 256]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from distributed import Client
from load_test import shared_root
from PIL import Image

from facerestore import batch, cluster
from facerestore.options import BatchOptions, RestoreOptions
from facerestore.pipeline import Restorer

OPTIONS = RestoreOptions(face_model="realesr-compact-x4", bg_upsampler="none", scale=2)
EMPTY_TASKS = 2000


def make_photos(folder: Path, count: int, side: int) -> list[str]:
    """``count`` real face photos (CodeFormer's test crops, cycled), resized to ``side`` px."""
    sources = sorted((shared_root() / "data/real/codeformer-cropped").glob("*.png"))
    folder.mkdir(parents=True)
    for index in range(count):
        photo = Image.open(sources[index % len(sources)]).convert("RGB")
        photo.resize((side, side), Image.Resampling.LANCZOS).save(folder / f"{index:04d}.png")
    return [str(folder)]


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def local_seconds(inputs: list[str], output: Path) -> float:
    options = BatchOptions(output=output)
    restorer = Restorer(OPTIONS)
    restorer.load()
    jobs = batch.plan_jobs(inputs, options)
    return timed(lambda: batch.run_batch(restorer, jobs, options))


def empty(index: int) -> int:
    return index


def scheduler_seconds_per_task(client: Client) -> float:
    """Submit-to-result time of an empty task, amortised over many (what the scheduler adds per task)."""
    return timed(lambda: client.gather(client.map(empty, range(EMPTY_TASKS), pure=False))) / EMPTY_TASKS


def cluster_figures(workers: int, inputs: list[str], output: Path) -> dict[str, float]:
    options = BatchOptions(output=output)
    jobs = batch.plan_jobs(inputs, options)
    with cluster.connect(f"local:{workers}") as client:
        load = timed(lambda: client.register_plugin(cluster.NetworksOnWorker(OPTIONS)))
        seconds = timed(lambda: cluster.run_batch(client, OPTIONS, jobs, options))
        per_task = scheduler_seconds_per_task(client)
    return {"load": load, "seconds": seconds, "empty_task": per_task}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--side", type=int, default=256, help="photo side in px")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting; medians are shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        inputs = make_photos(root / "in", args.photos, args.side)
        runs: dict[str, list[dict[str, float]]] = {"local": [], "1 worker": [], "2 workers": []}
        for repeat in range(args.repeats):  # interleaved, so drift in the machine's load hits each alike
            runs["local"].append({"seconds": local_seconds(inputs, root / f"local{repeat}")})
            for workers in (1, 2):
                name = f"{workers} worker{'s' * (workers > 1)}"
                runs[name].append(cluster_figures(workers, inputs, root / f"{workers}w{repeat}"))
    report(runs, args)


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(
        f"cluster benchmark: {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} at the end; {args.photos} photos of {args.side} px, faces by "
        f"{OPTIONS.face_model}, background Lanczos, 2x; medians of {args.repeats} interleaved runs"
    )
    local = median(runs["local"], "seconds")
    print("| run | wall s | photos/s | overhead per task vs local, ms | network load per worker, s |")
    print("|---|---:|---:|---:|---:|")
    for name, results in runs.items():
        seconds = median(results, "seconds")
        overhead = f"{(seconds - local) / args.photos * 1e3:.0f}" if name != "local" else "-"
        loading = f"{median(results, 'load'):.2f}" if name != "local" else "-"
        print(f"| {name} | {seconds:.2f} | {args.photos / seconds:.2f} | {overhead} | {loading} |")
    for name in ("1 worker", "2 workers"):
        per_task = median(runs[name], "empty_task") * 1e3
        print(f"scheduler cost per empty task, {name}: {per_task:.2f} ms ({1e3 / per_task:.0f} tasks/s)")


if __name__ == "__main__":
    main()
