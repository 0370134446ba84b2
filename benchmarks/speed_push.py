"""The speed-push target: the default pipeline at 2x against the naive reference, x4plus at fp32 over the
whole frame (then resized to 2x) with the same face restoration. Both timings cover Restorer.restore only
(decode and encode are the same for both).

Measured: both run on the whole photo. Estimated (quick mode, and in full mode as a check of the estimate):
the stages outside the background network (detect, align, restore, paste) come from one run with the
classical background; each background network's cost per input pixel comes from a one-tile window around
the largest face, and is multiplied by the pixels the engine's tiling feeds the network for the whole frame.
PSNR is then taken over that window only.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from speed_case import load_networks

from facerestore.image_io import Picture
from facerestore.pipeline import RestoreOptions, Restorer, RestoreResult
from facerestore.upscaling import TileOptions

NON_BACKGROUND_STAGES = ("detect", "align", "restore", "paste")


def naive_options(default: RestoreOptions) -> RestoreOptions:
    return default.model_copy(update={"bg_upsampler": "realesrgan-x4plus", "bg_precision": "fp32"})


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    squared = diff**2 if mask is None else (diff**2)[mask]
    mse = float(squared.mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def face_mask(result: RestoreResult, scale: float) -> np.ndarray:
    """The restored faces' detection boxes, in output pixels."""
    height, width = result.picture.pixels.shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    for record in result.faces:
        x0, y0, x1, y1 = (round(v * scale) for v in record.face.box)
        mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def fed_pixels(height: int, width: int, tiles: TileOptions) -> int:
    """Input pixels the tiled upscaler feeds its network, overlap included (the rows and columns of tiles
    are independent, so the sum of tile areas is the product of the sums of tile sides)."""

    def sides(length: int) -> int:
        return sum(
            min(start + tiles.tile + tiles.overlap, length) - max(start - tiles.overlap, 0)
            for start in range(0, length, tiles.tile)
        )

    return sides(height) * sides(width)


def timed_restore(restorer: Restorer, picture: Picture) -> tuple[RestoreResult, float]:
    start = time.perf_counter()
    result = restorer.restore(picture)
    return result, time.perf_counter() - start


def loaded(options: RestoreOptions) -> Restorer:
    restorer = Restorer(options)
    load_networks(restorer)
    return restorer


def _window(picture: Picture, result: RestoreResult, side: int) -> Picture:
    """A side x side window centred on the largest face (the naive network's cost does not depend on
    content, but the PSNR should see a face)."""
    if result.faces:
        x0, y0, x1, y1 = max(result.faces, key=lambda record: record.face.width).face.box
    else:
        x0, y0, x1, y1 = 0, 0, picture.width, picture.height
    left = int(min(max((x0 + x1 - side) / 2, 0), max(picture.width - side, 0)))
    top = int(min(max((y0 + y1 - side) / 2, 0), max(picture.height - side, 0)))
    crop = picture.pixels[top : top + side, left : left + side]
    return Picture(pixels=crop, source_format=picture.source_format)


def _psnr_pair(default: RestoreResult, naive: RestoreResult, scale: float) -> dict[str, float]:
    mask = face_mask(default, scale)
    pixels_d, pixels_n = default.picture.pixels, naive.picture.pixels
    faces = psnr(pixels_d, pixels_n, mask) if mask.any() else math.nan
    return {"psnr_db": psnr(pixels_d, pixels_n), "psnr_faces_db": faces}


def measure(picture: Picture, default: RestoreOptions, repeats: int) -> dict[str, Any]:
    """Both pipelines on the whole photo; the default's time is the median of ``repeats`` runs."""
    restorer = loaded(default)
    runs = [timed_restore(restorer, picture) for _ in range(repeats)]
    default_result, default_s = runs[0][0], float(np.median([seconds for _, seconds in runs]))
    del restorer
    naive_result, naive_s = timed_restore(loaded(naive_options(default)), picture)
    return {
        "method": "measured",
        "default_s": default_s,
        "default_runs": len(runs),
        "naive_s": naive_s,
        "speedup": naive_s / default_s,
        **_psnr_pair(default_result, naive_result, default.scale),
        "default_timings": default_result.timings,
        "naive_timings": naive_result.timings,
        "bg_upsampler": default_result.bg_upsampler,
        "face_model": default_result.face_model,
    }


def estimate(picture: Picture, default: RestoreOptions) -> dict[str, Any]:
    """Whole-frame times from the classical-background run plus one-tile windows (see the module doc)."""
    faces_only, _ = timed_restore(loaded(default.model_copy(update={"bg_upsampler": "none"})), picture)
    other_s = sum(faces_only.timings.get(stage, 0.0) for stage in NON_BACKGROUND_STAGES)
    window = _window(picture, faces_only, default.tile)
    tiles = TileOptions(default.tile)
    frame_pixels = fed_pixels(picture.height, picture.width, tiles)
    window_pixels = fed_pixels(window.height, window.width, tiles)
    results, background_s = {}, {}
    for kind, options in (("default", default), ("naive", naive_options(default))):
        results[kind], _ = timed_restore(loaded(options), window)
        background_s[kind] = results[kind].timings["upscale"] / window_pixels * frame_pixels
    default_s, naive_s = other_s + background_s["default"], other_s + background_s["naive"]
    return {
        "method": "estimated",
        "default_s": default_s,
        "naive_s": naive_s,
        "speedup": naive_s / default_s,
        **_psnr_pair(results["default"], results["naive"], default.scale),
        "psnr_region": f"{window.width}x{window.height} window around the largest face",
        "non_background_s": other_s,
        "background_s": background_s,
        "tiles_measured": math.ceil(window.height / tiles.tile) * math.ceil(window.width / tiles.tile),
        "fed_megapixels": frame_pixels / 1e6,
        "bg_upsampler": results["default"].bg_upsampler,
        "face_model": results["default"].face_model,
    }
