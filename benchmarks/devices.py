"""ONNX Runtime (`--device cpu`) against OpenVINO (`--device openvino`) on this machine, same run.

    python benchmarks/devices.py [--quick] [--runs 3]

Each network on real content, then the whole default pipeline (2x) on real photos, each timed in turn
(ONNX Runtime, OpenVINO, round after round, so other work on the machine falls on both alike), median
seconds after a warm-up; and how far OpenVINO's output is from ONNX Runtime's (PSNR, 8-bit scale). OpenVINO
computes in bf16 where the CPU has bf16 units, fp32 elsewhere; the run says which. Needs the openvino extra.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from load_test import shared_root
from speed import contention, cpu_model

from facerestore import RestoreOptions, Restorer, registry, runtime
from facerestore.detection import RetinaFace, detect_faces
from facerestore.image_io import load_image
from facerestore.pixels import to_float
from facerestore.upscaling import NetworkUpscaler

DEVICES = ("cpu", runtime.OPENVINO)
PHOTOS = ("gfpgan-whole/00.jpg", "gfpgan-whole/10045.png")  # 2 and 4 faces
FACE_PHOTO = "gfpgan-cropped/Adele_crop.png"
Runs = dict[str, Callable[[], np.ndarray]]  # device -> one run of a case


def timed_in_turn(runs: Runs, rounds: int) -> dict[str, tuple[float, np.ndarray]]:
    """Median seconds and the last output of each runner, run in turn round after round after a warm-up."""
    outputs = {name: run() for name, run in runs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            outputs[name] = run()
            seconds[name].append(time.perf_counter() - started)
    return {name: (statistics.median(seconds[name]), outputs[name]) for name in runs}


def agreement(found: np.ndarray, reference: np.ndarray) -> str:
    """How close OpenVINO's output is to ONNX Runtime's: PSNR on the 8-bit scale for pictures (float ones
    taken as 0-1), the largest landmark shift for detections."""
    if found.shape != reference.shape:
        return f"shapes differ: {found.shape} against {reference.shape}"
    if found.ndim == 3 and found.shape[1:] == (5, 2):
        return f"landmarks within {np.abs(found - reference).max():.2f} px"
    scale = 255.0 if found.dtype != np.uint8 else 1.0
    mse = float(np.mean((found.astype(np.float64) * scale - reference.astype(np.float64) * scale) ** 2))
    return f"{math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse):.1f} dB PSNR"


def network_cases(shared: Path) -> dict[str, Runs]:
    """Per network, one runner per device, on real content: the face restorer on a 112 px face crop (what a
    120 px face at 2x gets), the background network on a 256 px tile, the detector on a 640 px photo."""
    face = to_float(load_image(shared / "data/real" / FACE_PHOTO).pixels)[::4, ::4][:112, :112]
    photo = load_image(shared / "data/real" / PHOTOS[0]).pixels
    tile = to_float(photo[360:616, 760:1016])
    small = np.ascontiguousarray(photo[::3, ::3][:640, :640])
    cases: dict[str, Runs] = {}
    for label, name, crop in (
        ("realesrgan-x4plus, 112 px face crop", "realesrgan-x4plus", face),
        ("realesr-compact-x4, 256 px tile", "realesr-compact-x4", tile),
    ):
        networks = {device: NetworkUpscaler(registry.get_entry(name), device) for device in DEVICES}
        cases[label] = {device: _runner(network, crop) for device, network in networks.items()}
    detectors = {device: RetinaFace(device=device) for device in DEVICES}
    cases["retinaface, 640 px photo"] = {
        device: _detect(detector, small) for device, detector in detectors.items()
    }
    return cases


def _runner(network: NetworkUpscaler, crop: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: network.run(crop)


def _detect(detector: RetinaFace, pixels: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: np.array([face.landmarks for face in detect_faces(detector, pixels)])


def pipeline_cases(shared: Path) -> dict[str, Runs]:
    restorers = {device: Restorer(RestoreOptions(scale=2, device=device)) for device in DEVICES}
    cases = {}
    for photo in PHOTOS:
        picture = load_image(shared / "data/real" / photo)
        label = f"{photo} ({picture.width}x{picture.height}) at 2x, defaults"
        cases[label] = {device: _restore(restorer, picture) for device, restorer in restorers.items()}
    return cases


def _restore(restorer: Restorer, picture: object) -> Callable[[], np.ndarray]:
    return lambda: restorer.restore(picture).picture.pixels  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the networks only, one round")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds per case")
    args = parser.parse_args()
    try:
        import openvino
    except ImportError:
        sys.exit("needs the openvino extra: pip install 'facerestore[openvino]'")
    shared = shared_root()
    print(
        f"devices: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
        f"{len(os.sched_getaffinity(0))} cores, {runtime.default_threads()} threads per network; onnxruntime "
        f"{runtime.ort.__version__}, OpenVINO {runtime.openvino_version(openvino)} in "
        f"{runtime.openvino_precision(openvino.Core())}; load average {contention()['load']:.2f}"
    )
    print("\n| case | ONNX Runtime s | OpenVINO s | speed-up | OpenVINO's output against ONNX Runtime's |")
    print("|---|---:|---:|---:|---:|")
    cases = network_cases(shared) | ({} if args.quick else pipeline_cases(shared))
    for label, runs in cases.items():
        results = timed_in_turn(runs, 1 if args.quick else args.runs)
        (cpu_s, reference), (openvino_s, found) = results["cpu"], results[runtime.OPENVINO]
        print(
            f"| {label} | {cpu_s:.2f} | {openvino_s:.2f} | {cpu_s / openvino_s:.2f}x | "
            f"{agreement(found, reference)} |",
            flush=True,
        )
    print(f"\nload average {contention()['load']:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
