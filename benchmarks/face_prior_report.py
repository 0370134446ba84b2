"""Markdown for the face-prior speed benchmark (benchmarks/face_prior_speed.py)."""

from __future__ import annotations

from typing import Any

from speed_report import table

DOCS_HEADING = "## Face priors: real architectures"
DOCS_MARKERS = (
    "<!-- face-prior-speed:begin (written by benchmarks/face_prior_speed.py) -->",
    "<!-- face-prior-speed:end -->",
)
SPEEDUP_TARGET = 1.5  # issue 10: ONNX Runtime at least 1.5x PyTorch's speed per face
COLUMNS = (
    "network",
    "runs on",
    "s/face (median)",
    "speed vs ORT fp32",
    "max abs diff",
    "max diff / range",
    "PSNR dB (peak = range)",
    "file MB",
)


def _contention(point: dict[str, Any]) -> str:
    pressure = point["cpu_pressure_pct"]
    waiting = f", tasks waiting for a CPU {pressure:.0f}% of the last minute" if pressure is not None else ""
    return f"load average {point['load']:.2f}{waiting}"


def header(meta: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Measured {meta['date']} ({meta['mode']} mode, {meta['wall_min']:.1f} min) by "
            "`python benchmarks/face_prior_speed.py`.",
            f"Machine: {meta['cpu']}, {meta['cores']} cores; onnxruntime {meta['onnxruntime']} and PyTorch "
            f"{meta['torch']}, both on {meta['threads']} threads; spandrel {meta['spandrel']}; export: "
            f"{meta['exporter']}; OpenVINO {meta.get('openvino') or 'not installed'}.",
            f"Contention: {_contention(meta['contention_start'])} at the start, "
            f"{_contention(meta['contention_end'])} at the end (other work on these cores inflates timings).",
            f"Faces: {', '.join(meta['faces_measured'])} (`gfpgan-cropped`, timed over {meta['runs']} runs "
            "after a warm-up, outputs compared on each); int8 static calibrated on other faces: "
            f"{', '.join(meta['faces_calibration'])} (`hq/ffhq`, resized to 512).",
        ]
    )


def _row_cells(architecture: str, row: dict[str, Any]) -> list[Any]:
    if "skipped" in row:
        return [architecture, row["runtime"], "skipped: " + row["skipped"], "–", "–", "–", "–", "–"]
    difference = row.get("difference")
    if difference is None:  # PyTorch: a reference for speed only
        compared = ["–", "–", "–"]
    elif row["runtime"] == "ONNX Runtime fp32":
        compared = ["(reference)", "–", "–"]
    else:
        compared = [
            f"{difference['max_abs']:.3g}",
            f"{difference['max_abs_of_range']:.2%}",
            f"{difference['psnr_db']:.1f}",
        ]
    size = f"{row['size_mb']:.0f}" if "size_mb" in row else "–"
    return [
        architecture,
        row["runtime"],
        f"{row['median_s']:.2f}",
        f"{row['speed_vs_ort_fp32']:.2f}x",
        *compared,
        size,
    ]


def speedup_lines(architectures: list[dict[str, Any]]) -> list[str]:
    lines = []
    for result in architectures:
        speedup = result["ort_speedup_over_pytorch"]
        verdict = "met" if speedup >= SPEEDUP_TARGET else "not met"
        openvino = result.get("openvino_speedup_over_pytorch")
        also = f"; OpenVINO (`--device openvino`) at {openvino:.2f}x" if openvino else ""
        lines.append(
            f"- {result['architecture']}: ONNX Runtime fp32 runs at {speedup:.2f}x PyTorch's speed per face "
            f"(target ≥ {SPEEDUP_TARGET}x: {verdict}){also}; exported in {result['export_s']:.0f} s."
        )
    return lines


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    rows = [
        _row_cells(result["architecture"], row)
        for result in results["architectures"]
        for row in result["rows"]
    ]
    notes = [
        *speedup_lines(results["architectures"]),
        f"- bf16: {meta['bf16']}.",
        "- The weights are random (timing does not depend on them), so outputs are not faces: differences "
        "are given relative to the fp32 output's range, and say how far a precision moves the numbers, not "
        "how a trained network's face would look. PyTorch runs GFPGAN with fresh noise at each call, as "
        "upstream does; the export uses stored noise maps, so PyTorch's outputs are not compared.",
    ]
    return "\n\n".join([header(meta), table(COLUMNS, rows), "\n".join(notes)]) + "\n"
