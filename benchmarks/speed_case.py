"""One benchmark case in its own process: decode, restore, encode, repeated; prints one JSON object.

    python benchmarks/speed_case.py '{"image": "...", "scale": 2, "aligned": false, "max_repeats": 3,
                                     "budget_s": 100, "options": {}}'

Run by speed.py through speed_memory.run_with_peak_rss, so the peak RSS it records belongs to this case alone.
Networks are loaded and warmed up before the clock starts (that time is reported apart as load_s); repeats
stop at max_repeats, or earlier when another run would take the case past budget_s (always at least one run).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facerestore.image_io import Picture, format_for_path, load_image, save_image
from facerestore.pipeline import RestoreOptions, Restorer

STAGES = ("decode", "detect", "align", "restore", "upscale", "paste", "encode")


WARM_UP_SIDE = 64


def load_networks(restorer: Restorer) -> float:
    """Loads every network and runs each once on a small input, so that timed runs do not pay ONNX Runtime's
    first-call set-up (several seconds for the int8 background network); returns the seconds spent."""
    start = time.perf_counter()
    restorer.restore(Picture(pixels=np.full((WARM_UP_SIDE, WARM_UP_SIDE, 3), 128, np.uint8)))
    faces = restorer.face_restorer()
    side = faces.crop_size(WARM_UP_SIDE)
    faces.restore(np.full((side, side, 3), 0.5, np.float32), restorer.options.fidelity)
    return time.perf_counter() - start


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(restorer: Restorer, image: Path, target: Path) -> dict[str, Any]:
    cpu_start, start = _cpu_seconds(), time.perf_counter()
    picture = load_image(image)
    decoded = time.perf_counter()
    result = restorer.restore(picture)
    restored = time.perf_counter()
    save_image(result.picture, target, overwrite=True)
    done = time.perf_counter()
    timings = {stage: result.timings.get(stage, 0.0) for stage in STAGES}
    timings.update(decode=decoded - start, encode=done - restored, total=done - start)
    return {
        "timings": timings,
        # CPU seconds per wall second: near the thread count when the run had the cores to itself
        "cores_used": (_cpu_seconds() - cpu_start) / (done - start),
        "faces": len(result.faces),
        "size_in": [picture.width, picture.height],
        "size_out": [result.picture.width, result.picture.height],
        "face_model": result.face_model,
        "bg_upsampler": result.bg_upsampler if not restorer.options.aligned else "-",
    }


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    image = Path(spec["image"])
    options = RestoreOptions(scale=spec["scale"], aligned=spec["aligned"], **spec.get("options", {}))
    restorer = Restorer(options)
    load_s = load_networks(restorer)
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        target = Path(work) / f"out{image.suffix}"
        format_for_path(target)  # fail before the first run, not after it
        while len(runs) < spec["max_repeats"]:
            runs.append(run_once(restorer, image, target))
            elapsed = time.perf_counter() - started
            if elapsed + runs[-1]["timings"]["total"] > spec["budget_s"]:
                break
    return {**{k: v for k, v in runs[0].items() if k != "timings"}, "load_s": load_s, "runs": runs}


def main(argv: list[str]) -> int:
    print(json.dumps(run_case(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
