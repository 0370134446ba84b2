"""Speed and memory benchmark of facerestore, with references measured in the same run.

    python benchmarks/speed.py [--quick] [--out bench-output/speed] [--docs docs/benchmarks.md]
                               [--set tile=512 --set bg_upsampler=realesr-compact-x4 ...]

- Per-stage time (decode, detect, align, restore, upscale, paste, encode; median of the runs) and peak
  resident memory, each case in a fresh process: a 512x512 aligned face, the real photos in
  ../shared/data/real, and a synthetic 6000x4000 photo at 2x and 4x; peak memory against image size at 2x.
- Real-ESRGAN x4plus through our ONNX Runtime path against a plain PyTorch RRDBNet with the same weights
  (PyTorch is a development extra: pip install torch==2.13.0; the section is skipped without it).
- Multiply-adds per second (counted from the graphs' conv shapes) against the CPU's measured fp32 peak.
- The speed-push target: the default pipeline on gfpgan-whole/00.jpg at 2x against x4plus at fp32 over the
  whole frame (measured in full mode, estimated from one tile per network in --quick mode).

Writes speed.md and speed.json to --out and prints the markdown; --docs updates the "Speed and memory" section
of that file. --quick (CI smoke, about 2-3 minutes on 2 cores) keeps to small inputs and few runs.
--set overrides a RestoreOptions field for every pipeline run: an alternative measured with the same harness.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from speed_case import STAGES
from speed_compute import conv_macs_per_pixel, measure_fp32_peak, network_graph
from speed_inputs import ALIGNED_FACE, Case, megapixels, real_photos, synthetic_file
from speed_memory import run_with_peak_rss
from speed_push import estimate, measure
from speed_reference import TORCH_INSTALL, background_networks, compare_with_pytorch, torch_available
from speed_report import render, update_docs

from facerestore.image_io import load_image
from facerestore.pipeline import RestoreOptions, resolve_bg_precision, resolve_bg_upsampler
from facerestore.pixels import to_float
from facerestore.restoration import installed_face_priors

REPO = Path(__file__).resolve().parents[1]
PUSH_PHOTO = "gfpgan-whole/00.jpg"


@dataclass(frozen=True)
class Plan:
    mode: str
    max_repeats: int
    case_budget_s: float  # no further repeat once a case has run this long
    photo_max_mp: float  # real photos larger than this are left out
    growth_mp: tuple[float, ...]  # synthetic photo sizes for the memory-growth table (2x)
    synthetic_full: bool  # the 6000x4000 photo at 2x and 4x
    reference_side: int  # input side for x4plus ORT vs PyTorch and the network throughput table
    push_measured: bool
    push_default_runs: int


QUICK = Plan("quick", 2, 15.0, 0.4, (0.1, 0.4, 1.0), False, 96, False, 1)
FULL = Plan("full", 3, 100.0, 100.0, (1.5, 6.0), True, 256, True, 2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, few runs (CI smoke, ~2-3 min)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-output" / "speed")
    parser.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("FACERESTORE_SHARED", REPO.parent / "shared"))
    )
    parser.add_argument("--docs", type=Path, help="markdown file whose 'Speed and memory' section to update")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="before each measurement wait up to S seconds for other work to leave the CPUs (shared hosts)",
    )
    return parser.parse_args(argv)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """FIELD=VALUE pairs for RestoreOptions; values are read as JSON where they parse (numbers, booleans)."""
    known = set(RestoreOptions.model_fields)
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in known:
            raise SystemExit(f"--set {pair}: RestoreOptions has no field '{name}'")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    RestoreOptions(**overrides)
    return overrides


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- machine -----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def cpu_pressure() -> float | None:
    """Share of the last minute in which some task waited for a CPU (Linux PSI): other work on the cores."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(some.split("avg60=")[1].split()[0])


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_busy(sample_s: float = 2.0) -> float:
    """Share of all CPUs busy over sample_s; the benchmark itself is idle while it samples."""
    busy_start, total_start = _cpu_ticks()
    time.sleep(sample_s)
    busy_end, total_end = _cpu_ticks()
    return (busy_end - busy_start) / max(total_end - total_start, 1)


class QuietWait:
    """Waits (up to max_wait_s each time) until other work leaves the CPUs mostly idle: on a shared
    machine this keeps other people's jobs out of the timings. Off (0) by default and in CI."""

    def __init__(self, max_wait_s: float, busy_limit: float = 0.15) -> None:
        self.max_wait_s, self.busy_limit, self.waited_s = max_wait_s, busy_limit, 0.0

    def __call__(self, before: str) -> None:
        if self.max_wait_s <= 0 or not Path("/proc/stat").is_file():
            return
        start = time.perf_counter()
        while (busy := cpu_busy()) > self.busy_limit:
            if time.perf_counter() - start > self.max_wait_s:
                log(f"CPUs still {busy:.0%} busy; measuring {before} anyway")
                break
            log(f"CPUs {busy:.0%} busy with other work; waiting before {before}")
            time.sleep(10)
        self.waited_s += time.perf_counter() - start


def contention() -> dict[str, float | None]:
    return {"load": os.getloadavg()[0], "cpu_pressure_pct": cpu_pressure()}


def _git(*args: str) -> str:
    completed = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    return completed.stdout.strip()


def _face_model(options: RestoreOptions) -> str:
    if options.face_model != "auto":
        return options.face_model
    priors = installed_face_priors()
    return priors[0].name if priors else "realesrgan-x4plus"


def machine_meta(plan: Plan, options: RestoreOptions) -> dict[str, Any]:
    import onnxruntime

    from facerestore import runtime

    torch_version = None
    if torch_available():
        import torch

        torch_version = torch.__version__
    background = resolve_bg_upsampler(options.bg_upsampler, options.device)
    precision = resolve_bg_precision(options.bg_precision, background, options.device)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("log", "-1", "--format=%h") or "unknown",
        "engine_dirty": bool(_git("status", "--porcelain", "--", "src")),
        "mode": plan.mode,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": platform.platform(terse=True),
        "onnxruntime": onnxruntime.__version__,
        "threads": runtime.default_threads(),
        "numpy": np.__version__,
        "torch": torch_version,
        "python": platform.python_version(),
        "contention_start": contention(),
        "defaults": (
            f"scale {options.scale:g}, background {background} {precision}, "
            f"faces {_face_model(options)}, tile {options.tile}"
        ),
        "options": options.model_dump(mode="json", exclude={"detection"}),
    }


# --- per-stage cases ---------------------------------------------------------------------------------------


def build_cases(plan: Plan, shared: Path, work: Path) -> list[Case]:
    real = shared / "data" / "real"
    cases = [
        Case("aligned face 512 (" + Path(ALIGNED_FACE).stem + ")", real / ALIGNED_FACE, 2.0, True, "face")
    ]
    for photo in real_photos(real):
        if megapixels(photo) <= plan.photo_max_mp:
            cases.append(Case(f"{photo.parent.name}/{photo.name}", photo, 2.0))
    for size in plan.growth_mp:
        image = synthetic_file(real, work, size)
        cases.append(Case(f"synthetic {image.stem.split('_')[1]}", image, 2.0, group="growth"))
    if plan.synthetic_full:
        image = synthetic_file(real, work)
        cases += [
            Case(f"synthetic 6000x4000 {scale:g}x", image, scale, group="synthetic") for scale in (2.0, 4.0)
        ]
    return cases


def run_case(case: Case, plan: Plan, overrides: dict[str, Any]) -> dict[str, Any]:
    spec = {
        "image": str(case.image),
        "scale": case.scale,
        "aligned": case.aligned,
        "max_repeats": plan.max_repeats,
        "budget_s": plan.case_budget_s,
        "options": overrides,
    }
    script = Path(__file__).with_name("speed_case.py")
    child = run_with_peak_rss([sys.executable, str(script), json.dumps(spec)])
    if child.returncode != 0:
        raise RuntimeError(f"case {case.label} failed (exit {child.returncode})")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    median = {
        key: statistics.median(run["timings"][key] for run in result["runs"]) for key in (*STAGES, "total")
    }
    median["cores_used"] = statistics.median(run["cores_used"] for run in result["runs"])
    return {
        "label": case.label,
        "group": case.group,
        "image": str(case.image),
        "scale": case.scale,
        **result,
        "median": median,
        "peak_rss_mb": child.peak_rss_mb,
        "process_wall_s": child.wall_s,
    }


def run_cases(
    cases: list[Case], plan: Plan, overrides: dict[str, Any], quiet: QuietWait
) -> list[dict[str, Any]]:
    results = []
    for index, case in enumerate(cases, 1):
        quiet(case.label)
        result = run_case(case, plan, overrides)
        log(
            f"[{index}/{len(cases)}] {case.label} {case.scale:g}x: {len(result['runs'])} run(s), "
            f"median {result['median']['total']:.2f} s, peak {result['peak_rss_mb']:.0f} MB"
        )
        results.append(result)
    return results


def memory_growth(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Peak RSS against input size for the synthetic photo at 2x, with a straight-line fit."""
    rows = [
        {
            "label": case["label"],
            "megapixels": case["size_in"][0] * case["size_in"][1] / 1e6,
            "size_in": case["size_in"],
            "size_out": case["size_out"],
            "peak_rss_mb": case["peak_rss_mb"],
            "total_s": case["median"]["total"],
        }
        for case in cases
        if case["group"] in ("growth", "synthetic") and case["scale"] == 2.0
    ]
    rows.sort(key=lambda row: row["megapixels"])
    growth: dict[str, Any] = {"rows": rows}
    if len(rows) >= 2:
        slope, base = np.polyfit([r["megapixels"] for r in rows], [r["peak_rss_mb"] for r in rows], 1)
        growth["fit"] = {"base_mb": float(base), "mb_per_input_mp": float(slope)}
    full = [row for row in rows if row["size_in"] == [6000, 4000]]
    if full:
        growth["target_6000x4000"] = full[0]
    return growth


# --- in-process sections -----------------------------------------------------------------------------------


def reference_tile(shared: Path, side: int) -> np.ndarray:
    """A side x side RGB float crop of 00.jpg around the older child's face (real content)."""
    pixels = load_image(shared / "data" / "real" / PUSH_PHOTO).pixels
    top, left = 360, 760
    return to_float(pixels[top : top + side, left : left + side])


def network_rows(reference: dict[str, Any], others: list[Any], tile: np.ndarray) -> list[dict[str, Any]]:
    megapixels_in = tile.shape[0] * tile.shape[1] / 1e6
    side = f"{tile.shape[1]}x{tile.shape[0]}"
    x4plus = conv_macs_per_pixel(network_graph("realesrgan-x4plus"))
    compact = conv_macs_per_pixel(network_graph("realesr-compact-x4"))
    rows = [{**reference["onnxruntime"], "name": "realesrgan-x4plus fp32", "macs_per_pixel": x4plus}]
    rows += [{**entry.to_dict(), "macs_per_pixel": compact} for entry in others]
    return [{**row, "input": side, "megapixels": megapixels_in} for row in rows]


def run_reference(plan: Plan, shared: Path, use_torch: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tile = reference_tile(shared, plan.reference_side)
    if not use_torch or not torch_available():
        log(f"PyTorch reference skipped. To run it: {TORCH_INSTALL}")
    reference = compare_with_pytorch(tile, use_torch)
    log(f"x4plus reference: {json.dumps({k: v for k, v in reference.items() if k != 'macs'})}")
    return reference, network_rows(reference, background_networks(tile), tile)


def run_push(plan: Plan, shared: Path, options: RestoreOptions) -> list[dict[str, Any]]:
    picture = load_image(shared / "data" / "real" / PUSH_PHOTO)
    results = [estimate(picture, options)]
    log(f"speed push (estimated): {results[0]['speedup']:.2f}x")
    if plan.push_measured:
        results.insert(0, measure(picture, options, plan.push_default_runs))
        log(f"speed push (measured): {results[0]['speedup']:.2f}x")
    return results


def run(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    overrides = parse_overrides(args.overrides)
    options = RestoreOptions(**overrides)
    started = time.perf_counter()
    meta = machine_meta(plan, options)
    quiet = QuietWait(args.quiet_wait)
    cases = run_cases(build_cases(plan, args.shared, args.out / "inputs"), plan, overrides, quiet)
    quiet("the fp32 peak")
    peak = measure_fp32_peak(plan.mode == "quick")
    peak_gmacs = max(entry.gmacs_per_s for entry in peak)
    log(f"fp32 peak: {peak_gmacs:.0f} G MAC/s")
    quiet("the x4plus reference")
    reference, networks = run_reference(plan, args.shared, not args.no_torch)
    quiet("the speed-push comparison")
    push = run_push(plan, args.shared, options)
    meta.update(
        contention_end=contention(),
        wall_min=(time.perf_counter() - started) / 60,
        quiet_wait_min=quiet.waited_s / 60,
    )
    return {
        "meta": meta,
        "cases": cases,
        "memory_growth": memory_growth(cases),
        "peak": [entry.to_dict() for entry in peak],
        "peak_gmacs_per_s": peak_gmacs,
        "reference": reference,
        "networks": networks,
        "speed_push": push,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.shared / "data" / "real").is_dir():
        raise SystemExit(
            f"real test photos not found under {args.shared} (use --shared or FACERESTORE_SHARED)"
        )
    results = run(QUICK if args.quick else FULL, args)
    markdown = render(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "speed.md").write_text(markdown)
    if args.docs:
        update_docs(args.docs, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
