"""Soak test: does a long-running server's memory stay flat?

Starts ``facerestore serve`` on loopback and restores N real photos one after another, each shrunk to a
different size (so that every size-keyed cache would see a new key), deleting each job once its result is
back (retained results are bounded separately), and reading the server's resident memory after each.
Prints the curve and the largest deviation from the level reached after warm-up; writes the curve as a PNG.
Exits non-zero if memory grew past the tolerance or a restore failed.

    python benchmarks/soak.py                     # 200 photos, the server's defaults
    python benchmarks/soak.py --count 30 --fast   # a quick look (compact networks, smaller photos)
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import statistics
import sys
from pathlib import Path

import httpx
import numpy as np
from load_test import PHOTO_FOLDERS, memory_mb, shared_root, started_server
from PIL import Image

TOLERANCE = 0.15  # the bound: RSS within 15% of its level after warm-up
FAST_OPTIONS = {"face_model": "realesr-compact-x4", "bg_upsampler": "none"}


def varied_photos(count: int, smallest: int, largest: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` JPEGs from the real photos, each resized to its own long side in [smallest, largest]."""
    files = sorted(p for folder in PHOTO_FOLDERS for p in (shared_root() / folder).glob("*") if p.is_file())
    if not files:
        sys.exit(f"no photos under {shared_root()} (set FACERESTORE_SHARED)")
    originals = [Image.open(path).convert("RGB") for path in files]
    sides = np.random.default_rng(seed).integers(smallest, largest + 1, count)
    photos = []
    for index, side in enumerate(sides):
        image = originals[index % len(originals)].copy()
        image.thumbnail((int(side), int(side)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        photos.append((f"{files[index % len(files)].stem}@{image.width}x{image.height}", buffer.getvalue()))
    return photos


def sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    low, high = min(values), max(values)
    return "".join(bars[int((v - low) / (high - low + 1e-9) * (len(bars) - 1))] for v in values)


def plot(curve: list[float], warm_up: int, level: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.2), dpi=110)
    axes.plot(range(1, len(curve) + 1), curve, lw=1.2)
    axes.axvline(warm_up, color="gray", ls=":", lw=1)
    axes.axhspan(level * (1 - TOLERANCE), level * (1 + TOLERANCE), color="green", alpha=0.08)
    axes.set_xlabel("photos restored")
    axes.set_ylabel("server RSS (MB)")
    axes.set_title("facerestore serve: resident memory over a soak run")
    figure.tight_layout()
    figure.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--warm-up", type=int, default=20, help="photos before the level is taken")
    parser.add_argument("--fast", action="store_true", help="compact face network, no background network")
    parser.add_argument("--out", type=Path, default=Path("bench-output"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    smallest, largest = (200, 900) if args.fast else (300, 1600)
    photos = varied_photos(args.count, smallest, largest)
    options = FAST_OPTIONS if args.fast else {}
    curve: list[float] = []
    with (
        started_server([], args.out / "soak-server.log") as (url, process),
        httpx.Client(timeout=600) as client,
    ):
        for index, (name, data) in enumerate(photos, 1):
            answer = client.post(f"{url}/v1/restore", files={"image": (name, data)}, data=options)
            if answer.status_code != 200:
                print(f"{name}: {answer.status_code} {answer.text[:200]}", file=sys.stderr)
                return 1
            # The server keeps each result for its retention time; deleting it measures the engine alone.
            client.delete(f"{url}/v1/jobs/{answer.headers['x-job-id']}")
            curve.append(memory_mb(process.pid)["VmRSS"])
            print(f"{index:4d} {name:<40} RSS {curve[-1]:7.0f} MB", file=sys.stderr, flush=True)
    warm_up = min(args.warm_up, len(curve) - 1)
    level = statistics.median(curve[max(0, warm_up - 5) : warm_up])
    after = curve[warm_up:]
    deviation = max(abs(value - level) for value in after) / level
    plot(curve, warm_up, level, args.out / "soak-rss.png")
    print(f"soak: {len(curve)} photos, long side {smallest}-{largest} px, options {options or 'defaults'}")
    machine = f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    print(f"machine: {machine}, {platform.system()}; {datetime.date.today()}")
    print(
        f"RSS after warm-up ({warm_up} photos): {level:.0f} MB; after: min {min(after):.0f}, "
        f"max {max(after):.0f}, last {after[-1]:.0f} MB; largest deviation {deviation:.1%} "
        f"(bound {TOLERANCE:.0%})"
    )
    print(f"curve: {sparkline(curve)}  ({args.out / 'soak-rss.png'})")
    return 0 if deviation <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
