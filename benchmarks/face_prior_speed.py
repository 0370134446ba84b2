"""Speed of the real face-prior architectures (GFPGAN 1.4, CodeFormer, RestoreFormer) per 512x512 face.

    python benchmarks/face_prior_speed.py [--quick] [--out bench-output/face_prior_speed]
                                          [--docs docs/benchmarks.md]

Timing does not depend on weight values, so each network is built by spandrel's own architecture class with
random weights (as tests/test_checkpoints.py does) and exported through facerestore.checkpoint_export. Then,
on the same real face crops and thread count:
- ONNX Runtime with runtime.create_session's settings (fp32) against PyTorch run the way the upstream scripts
  run it (eval mode, inference mode, fp32), median seconds per face after a warm-up; PyTorch under bf16
  autocast and OpenVINO (`--device openvino`, bf16 where the CPU has bf16 units) on the same file, when
  installed, so the bf16 gain is shown for both runtimes;
- fp16, int8 dynamic and int8 static (calibrated on other real faces) versions on ONNX Runtime, each timed the
  same way, with their output's difference from the fp32 output; bf16 where the CPU provider has kernels.

Random weights make the outputs meaningless as pictures, so the differences are relative to the fp32 output's
range: they show how far a precision moves the numbers, not how a real face would look.
Writes face_prior_speed.json and .md to --out and prints the markdown; --docs updates the "Face priors: real
architectures" section of that file. --quick (the smoke test) runs one architecture on one face, few runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime
from face_prior_networks import codeformer, gfpgan_14, random_weights, restoreformer
from face_prior_report import DOCS_HEADING, DOCS_MARKERS, render
from face_prior_variants import VARIANTS, Feeds, Variant, bf16_unsupported_reason
from speed import contention, cpu_model, log
from speed_report import update_docs

from facerestore import registry, runtime
from facerestore.errors import ModelError
from facerestore.image_io import load_image

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # spandrel's import-time torch.jit deprecations
    import spandrel
    import torch

    from facerestore import checkpoint_export

REPO = Path(__file__).resolve().parents[1]
SIDE = 512
FIDELITY = 0.5  # CodeFormer's weight: upstream's default


@dataclass(frozen=True)
class Architecture:
    entry: str  # the registry entry whose ONNX file the export is
    spandrel_id: str
    build: Callable[[], torch.nn.Module]
    upstream: Callable[[Any, torch.Tensor], torch.Tensor]  # how the upstream inference script calls it


ARCHITECTURES = (
    # GFPGANer.enhance: fresh StyleGAN noise at every call (our export uses the stored noise maps instead)
    Architecture("gfpgan-1.4", "GFPGAN", gfpgan_14, lambda net, image: net(image, return_rgb=False)[0]),
    Architecture("codeformer", "CodeFormer", codeformer, lambda net, image: net(image, weight=FIDELITY)[0]),
    Architecture("restoreformer", "RestoreFormer", restoreformer, lambda net, image: net(image)[0]),
)


@dataclass(frozen=True)
class Plan:
    mode: str
    architectures: tuple[str, ...]  # registry entry names
    runs: int  # timed runs per variant (cycling over the faces), after one warm-up
    faces: int  # real face crops the outputs are compared on
    calibration_faces: int  # other real faces for int8 static calibration


QUICK = Plan("quick", ("restoreformer",), 1, 1, 1)
FULL = Plan("full", tuple(arch.entry for arch in ARCHITECTURES), 5, 4, 4)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one architecture, one face, one run (smoke)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-output" / "face_prior_speed")
    parser.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("FACERESTORE_SHARED", REPO.parent / "shared"))
    )
    parser.add_argument("--docs", type=Path, help="markdown file whose face-prior section to update")
    return parser.parse_args(argv)


# --- inputs ------------------------------------------------------------------------------------------------


def face_blob(path: Path) -> np.ndarray:
    """A face crop as FacePriorRestorer feeds it: [1, 3, 512, 512] RGB float in [-1, 1]."""
    pixels = load_image(path).pixels[..., :3]
    if pixels.shape[:2] != (SIDE, SIDE):
        pixels = cv2.resize(pixels, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray((pixels.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None])


def real_faces(shared: Path, plan: Plan) -> tuple[list[Path], list[Path]]:
    """Faces to time and compare on (the aligned GFPGAN crops), and different faces to calibrate int8 on
    (FFHQ, resized from 1024 to 512)."""
    data = shared / "data"
    measured = sorted((data / "real" / "gfpgan-cropped").glob("*.png"))[: plan.faces]
    calibration = sorted((data / "hq" / "ffhq").glob("*.png"))[: plan.calibration_faces]
    if len(measured) < plan.faces or len(calibration) < plan.calibration_faces:
        raise SystemExit(f"real face crops not found under {data} (gfpgan-cropped, hq/ffhq)")
    return measured, calibration


# --- networks ----------------------------------------------------------------------------------------------


def random_network(architecture: Architecture) -> torch.nn.Module:
    network: torch.nn.Module = random_weights(architecture.build)
    return network


def export(network: torch.nn.Module, architecture: Architecture, folder: Path) -> tuple[Path, str | None]:
    """Our own export path (the one `facerestore models import` uses); returns the file and fidelity input."""
    entry = registry.get_entry(architecture.entry)
    path = folder / f"{entry.name}.fp32.onnx"
    checkpoint_export.export_onnx(network, architecture.spandrel_id, path, SIDE, entry.fidelity_input)
    return path, entry.fidelity_input


def feeds_for(face: np.ndarray, fidelity_input: str | None) -> Feeds:
    feeds = {checkpoint_export.IMAGE_INPUT: face}
    if fidelity_input:
        feeds[fidelity_input] = np.array([FIDELITY], np.float64)
    return feeds


# --- timing ------------------------------------------------------------------------------------------------

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Timed:
    seconds: list[float]
    outputs: list[np.ndarray]  # one per face, in order

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_interleaved(runners: dict[str, Runner], faces: list[np.ndarray], runs: int) -> dict[str, Timed]:
    """Each runner in turn on the same face, round after round: load from other work that comes and goes on
    a shared machine falls on every runner alike instead of on whichever happened to run then."""
    for run in runners.values():
        run(faces[0])  # warm-up: the first call pays for memory planning and kernel choice
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    for index in range(max(runs, len(faces))):
        face = faces[index % len(faces)]
        for name, run in runners.items():
            started = time.perf_counter()
            output = run(face)
            seconds[name].append(time.perf_counter() - started)
            if index < len(faces):
                outputs[name].append(output)
    return {name: Timed(seconds[name], outputs[name]) for name in runners}


def pytorch_runner(network: torch.nn.Module, architecture: Architecture, *, bf16: bool = False) -> Runner:
    """As upstream runs it (fp32); ``bf16``: under CPU autocast, PyTorch's own use of bf16 units (AMX)."""

    def run(face: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return architecture.upstream(network, torch.from_numpy(face)).float().numpy()

    return run


def onnxruntime_runner(path: Path, fidelity_input: str | None, device: str = "cpu") -> Runner:
    session = runtime.create_session(path, device, threads=runtime.default_threads(), fixed_size=True)
    return lambda face: session.run(None, feeds_for(face, fidelity_input))[0]


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return runtime.openvino_version(openvino)


def openvino_label() -> str | None:
    """The OpenVINO row's label (its precision on this CPU), or None where openvino is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return f"OpenVINO {runtime.openvino_precision(openvino.Core())}"


def difference(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """How far outputs are from the fp32 ones, over all faces; PSNR takes the fp32 output's range as its peak
    (random weights leave the output far outside the [-1, 1] a trained network returns)."""
    expected, found = np.stack(reference).astype(np.float64), np.stack(outputs).astype(np.float64)
    span = float(expected.max() - expected.min())
    max_abs = float(np.abs(found - expected).max())
    mse = float(np.mean((found - expected) ** 2))
    return {
        "max_abs": max_abs,
        "fp32_output_range": span,
        "max_abs_of_range": max_abs / span,
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(span**2 / mse),
    }


# --- one architecture --------------------------------------------------------------------------------------

PYTORCH, PYTORCH_BF16, ORT_FP32 = "PyTorch fp32", "PyTorch bf16 autocast", "ONNX Runtime fp32"


def measure_architecture(
    architecture: Architecture, plan: Plan, faces: list[np.ndarray], calibration: list[np.ndarray], work: Path
) -> dict[str, Any]:
    network = random_network(architecture)
    started = time.perf_counter()
    fp32, fidelity_input = export(network, architecture, work)
    export_s = time.perf_counter() - started
    log(f"{architecture.entry}: exported in {export_s:.0f} s ({fp32.stat().st_size / 2**20:.0f} MB)")
    runners = {
        PYTORCH: pytorch_runner(network, architecture),
        PYTORCH_BF16: pytorch_runner(network, architecture, bf16=True),
        ORT_FP32: onnxruntime_runner(fp32, fidelity_input),
    }
    made: dict[str, dict[str, Any]] = {ORT_FP32: {"size_mb": fp32.stat().st_size / 2**20}}
    openvino = openvino_label()
    if openvino:  # the same fp32 file, run by OpenVINO (--device openvino)
        runners[openvino] = onnxruntime_runner(fp32, fidelity_input, runtime.OPENVINO)
        made[openvino] = {"size_mb": made[ORT_FP32]["size_mb"]}
    calibration_feeds = [feeds_for(face, fidelity_input) for face in calibration]
    for variant in VARIANTS:
        label = f"ONNX Runtime {variant.name}"
        made[label] = _make_variant(variant, fp32, calibration_feeds)
        path = made[label].pop("path", None)
        try:
            if path:
                runners[label] = onnxruntime_runner(path, fidelity_input)
        except ModelError as error:  # e.g. an operator the CPU provider has no kernel for in that type
            made[label] = {"skipped": _first_line(error)}
        log(f"{architecture.entry}: {label}: {made[label]}")
    timed = time_interleaved(runners, faces, plan.runs)
    for path in work.glob("*.onnx"):
        path.unlink()  # the sessions hold their own copies
    labels = [PYTORCH, PYTORCH_BF16, *made]
    rows = [_row(label, timed.get(label), timed[ORT_FP32], made.get(label, {})) for label in labels]
    for row in rows:
        log(f"{architecture.entry}: {_describe(row)}")
    return {
        "architecture": architecture.entry,
        "spandrel_class": architecture.spandrel_id,
        "export_s": export_s,
        "ort_speedup_over_pytorch": timed[PYTORCH].median / timed[ORT_FP32].median,
        "openvino_speedup_over_pytorch": timed[PYTORCH].median / timed[openvino].median if openvino else None,
        "rows": rows,
    }


def _make_variant(variant: Variant, fp32: Path, calibration: list[Feeds]) -> dict[str, Any]:
    """The variant's file, how long it took to make and its size; or why onnxruntime could not make it."""
    target = fp32.with_name(fp32.name.replace("fp32", variant.name.replace(" ", "-")))
    started = time.perf_counter()
    try:
        variant.make(fp32, target, calibration)
    except Exception as error:  # the converters raise whatever their steps raise
        return {"skipped": _first_line(error)}
    return {"path": target, "make_s": time.perf_counter() - started, "size_mb": target.stat().st_size / 2**20}


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _row(label: str, timed: Timed | None, baseline: Timed, made: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"runtime": label, **made}
    if timed is None:
        return row
    row.update(seconds=timed.seconds, median_s=timed.median, speed_vs_ort_fp32=baseline.median / timed.median)
    if not label.startswith("PyTorch"):  # PyTorch's GFPGAN draws fresh noise at each call: not comparable
        row["difference"] = difference(baseline.outputs, timed.outputs)
    return row


def _describe(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"{row['runtime']} skipped: {row['skipped']}"
    return f"{row['runtime']} {row['median_s']:.2f} s/face"


# --- the run -----------------------------------------------------------------------------------------------


def machine_meta(plan: Plan) -> dict[str, Any]:
    threads = runtime.default_threads()
    torch.set_num_threads(threads)  # PyTorch gets the cores ONNX Runtime gets
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": plan.mode,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version(),
        "torch": torch.__version__,
        "spandrel": spandrel.__version__,
        "exporter": checkpoint_export.EXPORTER,
        "runs": plan.runs,
        "faces": plan.faces,
        "calibration_faces": plan.calibration_faces,
        "contention_start": contention(),
    }


def run(plan: Plan, shared: Path) -> dict[str, Any]:
    started = time.perf_counter()
    meta = machine_meta(plan)
    measured, calibration = real_faces(shared, plan)
    faces = [face_blob(path) for path in measured]
    calibration_faces = [face_blob(path) for path in calibration]
    chosen = [arch for arch in ARCHITECTURES if arch.entry in plan.architectures]
    with tempfile.TemporaryDirectory(prefix="face-prior-speed-") as work:
        results = [measure_architecture(a, plan, faces, calibration_faces, Path(work)) for a in chosen]
    meta.update(
        faces_measured=[path.name for path in measured],
        faces_calibration=[path.name for path in calibration],
        bf16=bf16_unsupported_reason() or "supported",
        contention_end=contention(),
        wall_min=(time.perf_counter() - started) / 60,
    )
    return {"meta": meta, "architectures": results}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results = run(QUICK if args.quick else FULL, args.shared)
    markdown = render(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "face_prior_speed.json").write_text(json.dumps(results, indent=1))
    (args.out / "face_prior_speed.md").write_text(markdown)
    if args.docs:
        update_docs(args.docs, markdown, DOCS_HEADING, DOCS_MARKERS)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
