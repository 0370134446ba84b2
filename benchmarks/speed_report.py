"""Markdown for the speed benchmark's results, and the docs section it keeps up to date."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speed_case import STAGES

SECTION_HEADING = "## Speed and memory"
BEGIN, END = "<!-- speed:begin (written by benchmarks/speed.py) -->", "<!-- speed:end -->"
MEMORY_TARGET_MB = 3 * 1024


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}" if abs(value) >= 1000 else f"{value:.1f}"
    return str(value)


def _size(pair: Sequence[int]) -> str:
    return f"{pair[0]}x{pair[1]}"


def meta_block(meta: dict[str, Any]) -> str:
    engine = "with uncommitted engine changes" if meta["engine_dirty"] else "engine as committed"
    torch = f", PyTorch {meta['torch']}" if meta["torch"] else ", PyTorch not installed"
    waited = meta.get("quiet_wait_min", 0.0)
    waiting = f" ({waited:.1f} of them waiting for other work to finish)" if waited else ""
    return (
        f"Measured {meta['date']} at commit `{meta['commit']}` ({engine}), {meta['mode']} mode, "
        f"in {meta['wall_min']:.1f} min{waiting}.\n"
        f"Machine: {meta['cpu']}, {meta['cores']} cores, {meta['ram_gib']:.0f} GiB RAM, {meta['os']}; "
        f"onnxruntime {meta['onnxruntime']} ({meta['threads']} threads), numpy {meta['numpy']}{torch}, "
        f"Python {meta['python']}.\n"
        f"Contention: {_contention(meta['contention_start'])} at the start, "
        f"{_contention(meta['contention_end'])} at the end; other work on these cores inflates the timings "
        f"(the 'cores used' column: CPU seconds per wall second of the case, near {meta['threads']} when "
        f"it had the cores to itself).\n"
        f"Pipeline defaults: {meta['defaults']}."
    )


def _contention(sample: dict[str, float | None]) -> str:
    pressure = sample["cpu_pressure_pct"]
    waiting = "" if pressure is None else f", tasks waiting for a CPU {pressure:.0f}% of the last minute"
    return f"load average {sample['load']:.2f}{waiting}"


def cases_table(cases: list[dict[str, Any]]) -> str:
    headers = ["case", "input", "output", "faces", "runs", *STAGES, "total s", "cores used", "peak RSS MB"]
    rows = [
        [
            case["label"],
            _size(case["size_in"]),
            _size(case["size_out"]),
            case["faces"],
            len(case["runs"]),
            *(case["median"][stage] for stage in STAGES),
            case["median"]["total"],
            case["median"]["cores_used"],
            round(case["peak_rss_mb"]),
        ]
        for case in cases
    ]
    return table(headers, rows)


def growth_block(growth: dict[str, Any]) -> str:
    rows = [
        [
            f"{row['megapixels']:.2f}",
            _size(row["size_in"]),
            _size(row["size_out"]),
            round(row["peak_rss_mb"]),
            row["total_s"],
        ]
        for row in growth["rows"]
    ]
    lines = [table(["input MP", "input", "output (2x)", "peak RSS MB", "total s"], rows)]
    fit = growth.get("fit")
    if fit:
        lines.append(
            f"\nPeak RSS ≈ {fit['base_mb']:.0f} MB + {fit['mb_per_input_mp']:.0f} MB per input megapixel "
            f"(least squares over these sizes; the 2x output alone is 12 MB per input MP as RGB uint8)."
        )
    target = growth.get("target_6000x4000")
    if target:
        verdict = "met" if target["peak_rss_mb"] < MEMORY_TARGET_MB else "NOT met"
        lines.append(
            f"6000x4000 at 2x: {target['peak_rss_mb']:.0f} MB peak RSS "
            f"(target under {MEMORY_TARGET_MB} MB: {verdict})."
        )
    return "\n".join(lines)


def reference_block(reference: dict[str, Any], peak_gmacs: float) -> str:
    rows = []
    for key in ("onnxruntime", "pytorch"):
        entry = reference.get(key)
        if entry:
            gmacs = entry["gmacs_per_s"]
            rows.append(
                [entry["name"], reference["input"], entry["seconds"], gmacs, 100 * gmacs / peak_gmacs]
            )
    lines = [table(["x4plus through", "input", "time s", "G MAC/s", "% of fp32 peak"], rows)]
    if reference.get("pytorch"):
        lines.append(
            f"\nPyTorch / ONNX Runtime time: {reference['time_ratio_pytorch_over_ort']:.2f}x; "
            f"max |output difference|: {reference['max_abs_diff']:.2e} (outputs in [0, 1])."
        )
    else:
        lines.append(f"\n{reference['skipped']}")
    return "\n".join(lines)


def networks_block(networks: list[dict[str, Any]], peak: list[dict[str, Any]], peak_gmacs: float) -> str:
    peak_rows = [[entry["name"], entry["gmacs_per_s"]] for entry in peak]
    network_rows = [
        [
            entry["name"],
            f"{entry['macs_per_pixel'] / 1e6:.2f} M",
            entry["input"],
            entry["seconds"] / entry["megapixels"],
            entry["gmacs_per_s"],
            100 * entry["gmacs_per_s"] / peak_gmacs,
        ]
        for entry in networks
    ]
    return "\n".join(
        [
            table(["fp32 peak microbenchmark", "G MAC/s"], peak_rows),
            f"\nMeasured fp32 peak: {peak_gmacs:.0f} G multiply-adds/s (the best of the above). "
            "Multiply-adds per pixel are counted from each graph's convs; int8 rows count the same ones,"
            " so they can pass the fp32 peak.\n",
            table(
                [
                    "network (ONNX Runtime)",
                    "MACs per input pixel",
                    "tile",
                    "s per input MP",
                    "G MAC/s",
                    "% of peak",
                ],
                network_rows,
            ),
        ]
    )


def push_block(push: list[dict[str, Any]]) -> str:
    headers = ["", *(f"{entry['method']}" for entry in push)]
    fields = [
        ("default pipeline at 2x, s", "default_s"),
        ("naive: x4plus fp32 whole frame, s", "naive_s"),
        ("speed-up (target ≥ 5x, aim 10x)", "speedup"),
        ("PSNR default vs naive, dB", "psnr_db"),
        ("PSNR on the faces, dB", "psnr_faces_db"),
    ]
    rows = [[label, *(entry[key] for entry in push)] for label, key in fields]
    notes = [
        f"- {entry['method']}: background {entry['bg_upsampler']}, faces {entry['face_model']}"
        + (
            f"; PSNR over a {entry['psnr_region']}"
            if "psnr_region" in entry
            else "; PSNR over the whole frame"
        )
        + (
            f"; {entry['tiles_measured']} tile(s) measured per network, scaled to the "
            f"{entry['fed_megapixels']:.2f} MP the tiling feeds the network"
            if entry["method"] == "estimated"
            else ""
        )
        for entry in push
    ]
    return table(headers, rows) + "\n\n" + "\n".join(notes)


def render(results: dict[str, Any]) -> str:
    peak_gmacs = results["peak_gmacs_per_s"]
    parts = [
        meta_block(results["meta"]),
        "### Per-stage time (s, median of the runs) and peak resident memory (fresh process per case)",
        cases_table(results["cases"]),
        "### Peak memory against image size (2x, default settings)",
        growth_block(results["memory_growth"]),
        "### Real-ESRGAN x4plus: our ONNX Runtime path against plain PyTorch (same weights, same input)",
        reference_block(results["reference"], peak_gmacs),
        "### Multiply-adds per second against the CPU's fp32 peak",
        networks_block(results["networks"], results["peak"], peak_gmacs),
        "### Speed-push target: default pipeline against the naive x4plus reference (00.jpg at 2x)",
        push_block(results["speed_push"]),
    ]
    return "\n\n".join(parts) + "\n"


def update_docs(
    path: Path, generated: str, heading: str = SECTION_HEADING, markers: tuple[str, str] = (BEGIN, END)
) -> None:
    """Replaces the generated part of one section (by default Speed and memory), leaving the rest of the file
    (the other sections, and any notes written by hand around the markers) as it is."""
    begin, end = markers
    block = f"{begin}\n{generated.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    elif heading in text:
        head, rest = text.split(heading, 1)
        body, separator, tail = rest.partition("\n## ")
        text = f"{head}{heading}{body.rstrip()}\n\n{block}\n" + (f"\n## {tail}" if separator else "")
    else:
        text = f"{text.rstrip()}\n\n{heading}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
