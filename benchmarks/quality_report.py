"""Turns the quality benchmark's per-image records into its outputs: summary table (markdown), JSON, and
labelled contact sheets."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime
from PIL import Image, ImageDraw, ImageFont

from facerestore.analysis import SAME_PERSON_DISTANCE, Damage

Record = dict[str, Any]
SUBSETS = ("random", "clean", "mild", "moderate", "severe")
ZOOM = (0.19, 0.81)  # the part of an aligned face the sheets show: forehead to chin, cheek to cheek


# -- machine and run description ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['date']} on {info['cpu']}, {info['cores']} cores, {info['system']}, "
        f"Python {info['python']}, ONNX Runtime {info['onnxruntime']}"
    )


# -- summary -------------------------------------------------------------------------------------------------


def finite_mean(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(numbers) / len(numbers) if numbers else None


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    digits: int
    percent: bool = False


COLUMNS = (
    Column("psnr", "PSNR ↑", 2),
    Column("ssim", "SSIM ↑", 3),
    Column("shift", "shift ↓", 2),
    Column("lmd", "LMD ↓", 2),
    Column("face_found", "face found ↑", 0, percent=True),
    Column("delta_e", "ΔE ↓", 2),
    Column("niqe", "NIQE ↓", 2),
    Column("seam", "seam ↓", 3),
    Column("lpips", "LPIPS ↓", 3),
    Column("identity", "identity ↑", 3),
    Column("id_distance", "id dist ↓", 3),
    Column("fid", "FID ↓", 1),
    Column("seconds", "s/img", 2),
)


def summarise(records: Sequence[Record], methods: Sequence[str]) -> list[Record]:
    """One row per (subset, method) that ran: image count and the mean of each metric."""
    rows = []
    for subset in SUBSETS:
        chosen = [r for r in records if r["subset"] == subset]
        for method in methods:
            results = [r["methods"][method] for r in chosen if method in r["methods"]]
            if not results:
                continue
            row: Record = {"subset": subset, "method": method, "n": len(results)}
            for column in COLUMNS:
                row[column.key] = finite_mean(result.get(column.key) for result in results)
            rows.append(row)
        truth = [r["truth_niqe"] for r in chosen]
        if truth:
            rows.append(
                {"subset": subset, "method": "ground truth", "n": len(truth), "niqe": finite_mean(truth)}
            )
    return rows


def _cell(value: Any, column: Column) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.0f}%" if column.percent else f"{value:.{column.digits}f}"


def markdown_table(rows: Sequence[Record]) -> str:
    shown = [c for c in COLUMNS if any(row.get(c.key) is not None for row in rows)]
    lines = [
        "| set | method | n | " + " | ".join(c.title for c in shown) + " |",
        "|---|---|---:|" + "---:|" * len(shown),
    ]
    for row in rows:
        cells = " | ".join(_cell(row.get(c.key), c) for c in shown)
        lines.append(f"| {row['subset']} | {row['method']} | {row['n']} | {cells} |")
    return "\n".join(lines)


def winners(rows: Sequence[Record]) -> str:
    """For each set, which method is best on each full-reference and naturalness metric."""
    higher_is_better = {"psnr": True, "ssim": True, "lmd": False, "niqe": False}
    lines = ["| set | best PSNR | best SSIM | best LMD | best NIQE |", "|---|---|---|---|---|"]
    for subset in SUBSETS:
        scored = [r for r in rows if r["subset"] == subset and r["method"] != "ground truth"]
        if scored:
            cells = [_best(scored, key, higher) for key, higher in higher_is_better.items()]
            lines.append(f"| {subset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best(rows: Sequence[Record], key: str, higher: bool) -> str:
    valid = [r for r in rows if r.get(key) is not None]
    if not valid:
        return "–"
    sign = 1.0 if higher else -1.0
    return str(max(valid, key=lambda r: sign * r[key])["method"])


AUTO_MARGIN_DB = 0.3  # the automatic choice must come within this of the best single method (issue 13)


def auto_table(records: Sequence[Record], auto: str, baseline: str) -> str:
    """Per set: the automatic choice against the best single method on the same images (the pipeline runs on
    fewer), and against the input (``baseline``). PSNR in dB."""
    lines = [
        "| set | n | auto PSNR | best single method (n) | its PSNR | auto − best | auto − input | met |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for subset in SUBSETS:
        chosen = [r for r in records if r["subset"] == subset and auto in r["methods"]]
        if not chosen:
            continue
        others = {m for r in chosen for m in r["methods"]} - {auto}
        gaps = {method: _psnr_gap(chosen, auto, method) for method in sorted(others)}
        best = min(gaps, key=lambda method: gaps[method][0])
        gap, shared, best_psnr = gaps[best]
        to_input = _psnr_gap(chosen, auto, baseline)[0]
        met = gap >= -AUTO_MARGIN_DB and (subset != "clean" or to_input >= 0)
        auto_psnr = finite_mean(r["methods"][auto]["psnr"] for r in chosen) or 0.0
        lines.append(
            f"| {subset} | {len(chosen)} | {auto_psnr:.2f} | {best} ({shared}) | {best_psnr:.2f} | "
            f"{gap:+.2f} | {to_input:+.2f} | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


def _psnr_gap(records: Sequence[Record], auto: str, method: str) -> tuple[float, int, float]:
    """Mean PSNR of ``auto`` minus ``method``'s over the images both ran on, their count, and the method's."""
    shared = [r["methods"] for r in records if method in r["methods"]]
    theirs = finite_mean(m[method]["psnr"] for m in shared) or 0.0
    ours = finite_mean(m[auto]["psnr"] for m in shared) or 0.0
    return ours - theirs, len(shared), theirs


def identity_table(records: Sequence[Record], auto: str, baseline: str) -> str:
    """Per damage class the analysis gave each face (the automatic choice's records): the mean dlib distance
    from the ground truth of the input (``baseline``) and of the automatic choice's output, and how many of
    those outputs read as another person. ``analysis.IDENTITY_RUN`` holds this table."""
    lines = [
        f"| damage (analysis) | n | input | auto | auto − input | auto ≥ {SAME_PERSON_DISTANCE} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for damage in Damage:
        chosen = [
            r["methods"]
            for r in records
            if r["methods"].get(auto, {}).get("damage") == damage.value
            and r["methods"][auto].get("id_distance") is not None
        ]
        if not chosen:
            continue
        theirs = finite_mean(m[baseline]["id_distance"] for m in chosen) or 0.0
        ours = finite_mean(m[auto]["id_distance"] for m in chosen) or 0.0
        far = sum(m[auto]["id_distance"] >= SAME_PERSON_DISTANCE for m in chosen)
        lines.append(
            f"| {damage.value} | {len(chosen)} | {theirs:.3f} | {ours:.3f} | {ours - theirs:+.3f} | "
            f"{far}/{len(chosen)} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def detection_line(records: Sequence[Record], pipeline: str | None) -> str:
    parts = []
    for subset in SUBSETS:
        chosen = [r for r in records if r["subset"] == subset]
        if not chosen:
            continue
        found = sum(r["input_face_detected"] for r in chosen)
        text = f"{subset} {found}/{len(chosen)}"
        ran = [r["methods"][pipeline] for r in chosen if pipeline and pipeline in r["methods"]]
        if ran:
            restored = sum(bool(m["pipeline_detected"]) for m in ran)
            extra = sum(m["faces_in_canvas"] - bool(m["pipeline_detected"]) for m in ran)
            text += f" (pipeline: face restored in {restored}/{len(ran)}, false detections {extra})"
        parts.append(text)
    return (
        "Detection rate on the degraded inputs (our RetinaFace, default settings): " + "; ".join(parts) + "."
    )


def real_table(real: Sequence[Record]) -> str:
    lines = [
        "| set | n | NIQE before ↓ | NIQE after ↓ | ΔE ↓ | face found before | face found after | s/img |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["set"] for r in real):
        chosen = [r for r in real if r["set"] == name]
        figures = [
            finite_mean(r[key] for r in chosen) for key in ("niqe_before", "niqe_after", "delta_e", "seconds")
        ]
        before = sum(r["face_found_before"] for r in chosen)
        after = sum(r["face_found_after"] for r in chosen)
        niqe_b, niqe_a, delta_e, seconds = (f"{v:.2f}" if v is not None else "–" for v in figures)
        lines.append(
            f"| {name} | {len(chosen)} | {niqe_b} | {niqe_a} | {delta_e} | "
            f"{before}/{len(chosen)} | {after}/{len(chosen)} | {seconds} |"
        )
    return "\n".join(lines)


# -- JSON ----------------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON has no inf or NaN: they become null; numpy scalars become plain numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 5) if math.isfinite(value) else None
    return value


def write_json(path: Path, document: Record) -> None:
    path.write_text(json.dumps(_clean(document), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# -- contact sheets ------------------------------------------------------------------------------------------


def zoom(image: np.ndarray) -> np.ndarray:
    side = image.shape[0]
    start, stop = round(ZOOM[0] * side), round(ZOOM[1] * side)
    return image[start:stop, start:stop]


def labelled_tile(image: np.ndarray, side: int, label: str, caption: str = "") -> np.ndarray:
    """The face's central region at side x side, its label on a dark bar on top, the caption at the bottom."""
    tile = Image.fromarray(cv2.resize(zoom(image), (side, side), interpolation=cv2.INTER_AREA))
    draw = ImageDraw.Draw(tile)
    size = max(10, side // 14)
    font = ImageFont.load_default(size=size)
    bar = size + 6
    draw.rectangle((0, 0, side, bar), fill=(0, 0, 0))
    draw.text((4, 2), label, fill=(255, 255, 255), font=font)
    if caption:
        draw.rectangle((0, side - bar, side, side), fill=(0, 0, 0))
        draw.text((4, side - bar + 2), caption, fill=(255, 220, 120), font=font)
    return np.asarray(tile)


def contact_sheet(
    rows: Sequence[Sequence[tuple[str, np.ndarray]]], captions: Sequence[str], side: int
) -> np.ndarray:
    """A grid: one row per face, one labelled tile per (label, image); a 2 px gap between tiles."""
    gap = 2
    width = max(len(row) for row in rows) * (side + gap) - gap
    sheet = np.full((len(rows) * (side + gap) - gap, width, 3), 255, np.uint8)
    for r, (row, caption) in enumerate(zip(rows, captions, strict=True)):
        for c, (label, image) in enumerate(row):
            tile = labelled_tile(image, side, label, caption if c == 0 else "")
            y, x = r * (side + gap), c * (side + gap)
            sheet[y : y + side, x : x + side] = tile
    return sheet


def save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, optimize=True)


def short_label(method: str) -> str:
    return method.replace(" (aligned)", "").replace("realesrgan-", "").replace("realesr-", "")
