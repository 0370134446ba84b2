"""Background upscaling by any factor: a super-resolution network in overlapping tiles, or a classical resize.

Tiles keep memory bounded by the tile size, not the photo size: each tile's network output is resized to the
requested factor and written straight into the output buffer, in the photo's own dtype.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import numpy as np

from facerestore import registry, runtime
from facerestore.errors import ModelError, OptionError
from facerestore.ncnn_import import ncnn_to_onnx
from facerestore.pixels import from_float, output_size, resize, to_float
from facerestore.quantization import cached_int8_path, int8_model_bytes

Progress = Callable[[int, int], None]  # (done, total)
Precision = Literal["fp32", "int8"]


@dataclass(frozen=True)
class TileOptions:
    tile: int = 256  # input pixels per tile side
    overlap: int = 12  # context pixels added on each side, then cropped away (hides tile seams)


class BackgroundUpscaler(Protocol):
    name: str

    def upscale(self, image: np.ndarray, factor: float, progress: Progress | None = None) -> np.ndarray: ...


class ClassicalUpscaler:
    """Lanczos resize: instant, no detail added."""

    name = "none"

    def upscale(self, image: np.ndarray, factor: float, progress: Progress | None = None) -> np.ndarray:
        result = resize(image, output_size(image.shape[0], image.shape[1], factor))
        if progress:
            progress(1, 1)
        return result


def load_network_bytes(entry: registry.ModelEntry) -> bytes:
    """ONNX bytes of a packaged ncnn network, converted in memory (as fast as caching a file)."""
    stem = registry.require(entry)
    return ncnn_to_onnx(stem.with_suffix(".param"), stem.with_suffix(".bin")).SerializeToString()


def _int8_session(entry: registry.ModelEntry, fp32_model: bytes, device: str) -> runtime.Session:
    """The cached int8 network; a cache file that does not load (a disk error, another build's bytes) is
    rebuilt once, and named if even that fails."""
    cached = cached_int8_path(entry)
    try:
        return runtime.create_session(int8_model_bytes(entry, fp32_model), device, name=str(cached))
    except ModelError:
        return runtime.create_session(
            int8_model_bytes(entry, fp32_model, rebuild=True), device, name=str(cached)
        )


def _tile_starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile))


class NetworkUpscaler:
    """A super-resolution network (native scale s) applied in tiles, resized to any requested factor."""

    def __init__(
        self,
        entry: registry.ModelEntry,
        device: str = "cpu",
        tiles: TileOptions | None = None,
        precision: Precision = "fp32",
    ) -> None:
        if entry.purpose is not registry.Purpose.UPSCALER:
            raise ModelError(f"model '{entry.name}' is not an upscaler")
        if precision not in get_args(Precision):
            raise OptionError(
                f"unknown precision '{precision}' (choose from {', '.join(get_args(Precision))})"
            )
        self.name = entry.name
        self.native_scale = entry.scale
        self.tiles = tiles or TileOptions()
        self.precision = precision
        model = load_network_bytes(entry)
        if precision == "int8":
            self.session = _int8_session(entry, model, device)
        else:
            self.session = runtime.create_session(model, device)
        self.input_name = self.session.get_inputs()[0].name

    def with_tiles(self, tiles: TileOptions) -> NetworkUpscaler:
        """The same loaded network with other tile settings."""
        other = copy.copy(self)
        other.tiles = tiles
        return other

    def run(self, rgb: np.ndarray) -> np.ndarray:
        """One float32 RGB [0, 1] array (H, W, 3) through the network -> (sH, sW, 3)."""
        blob = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        result = self.session.run(None, {self.input_name: blob})[0][0]
        return np.clip(result.transpose(1, 2, 0), 0.0, 1.0)

    def tile_count(self, height: int, width: int) -> int:
        tile = self.tiles.tile
        return math.ceil(height / tile) * math.ceil(width / tile)

    def upscale(self, image: np.ndarray, factor: float, progress: Progress | None = None) -> np.ndarray:
        """Upscales an RGB uint8/uint16 image by ``factor``; the result has the input's dtype."""
        height, width = image.shape[:2]
        out_h, out_w = output_size(height, width, factor)
        result = np.empty((out_h, out_w, 3), dtype=image.dtype)
        tile, pad, scale = self.tiles.tile, self.tiles.overlap, self.native_scale
        total, done = self.tile_count(height, width), 0
        for y0 in _tile_starts(height, tile):
            for x0 in _tile_starts(width, tile):
                y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
                py0, px0, py1, px1 = (
                    max(y0 - pad, 0),
                    max(x0 - pad, 0),
                    min(y1 + pad, height),
                    min(x1 + pad, width),
                )
                enlarged = self.run(to_float(image[py0:py1, px0:px1]))
                core = enlarged[
                    (y0 - py0) * scale : (y1 - py0) * scale, (x0 - px0) * scale : (x1 - px0) * scale
                ]
                oy0, oy1 = round(y0 * factor), round(y1 * factor)
                ox0, ox1 = round(x0 * factor), round(x1 * factor)
                result[oy0:oy1, ox0:ox1] = from_float(resize(core, (oy1 - oy0, ox1 - ox0)), image.dtype)
                done += 1
                if progress:
                    progress(done, total)
        return result
