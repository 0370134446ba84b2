"""Background upscaling: tiles without seams, any factor, 16-bit, and the int8 background network."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facerestore import registry
from facerestore.errors import OptionError
from facerestore.image_io import load_image
from facerestore.quantization import cached_int8_path, calibration_tiles
from facerestore.upscaling import ClassicalUpscaler, NetworkUpscaler, TileOptions


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def photo_crop(shared_dir: Path) -> np.ndarray:
    pixels = load_image(shared_dir / "data/real/gfpgan-whole/00.jpg").pixels
    return np.ascontiguousarray(pixels[700:860, 500:700])


@pytest.fixture(scope="module")
def compact() -> registry.ModelEntry:
    return registry.get_entry("realesr-compact-x4")


def test_tiles_leave_no_seams(photo_crop: np.ndarray, compact: registry.ModelEntry) -> None:
    whole = NetworkUpscaler(compact, tiles=TileOptions(tile=512)).upscale(photo_crop, 4)
    tiled = NetworkUpscaler(compact, tiles=TileOptions(tile=48)).upscale(photo_crop, 4)
    assert tiled.shape == whole.shape == (640, 800, 3)
    assert psnr(tiled, whole) > 40


def test_any_factor_and_dtype(photo_crop: np.ndarray, compact: registry.ModelEntry) -> None:
    network = NetworkUpscaler(compact, tiles=TileOptions(tile=96))
    for factor, shape in ((1.0, (160, 200)), (2.5, (400, 500)), (6.0, (960, 1200))):
        assert network.upscale(photo_crop, factor).shape[:2] == shape
    deep = photo_crop.astype(np.uint16) * 257
    enlarged = network.upscale(deep, 2)
    assert enlarged.dtype == np.uint16
    assert psnr(enlarged / 257, network.upscale(photo_crop, 2)) > 45


def test_network_adds_detail_over_lanczos(shared_dir: Path, compact: registry.ModelEntry) -> None:
    """A sharp face shrunk 4x and enlarged back: the network restores edges a Lanczos resize cannot."""
    sharp = cv2.resize(
        load_image(shared_dir / "data/hq/ffhq/00003.png").pixels, (512, 512), interpolation=cv2.INTER_AREA
    )
    small = cv2.resize(sharp, (128, 128), interpolation=cv2.INTER_AREA)
    detail = [
        cv2.Laplacian(up.upscale(small, 4), cv2.CV_32F).var()
        for up in (ClassicalUpscaler(), NetworkUpscaler(compact))
    ]
    assert detail[1] > 5 * detail[0]


def test_int8_background_matches_fp32_and_is_cached(
    photo_crop: np.ndarray, compact: registry.ModelEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(tmp_path))
    fp32 = NetworkUpscaler(compact).upscale(photo_crop, 2)
    int8 = NetworkUpscaler(compact, precision="int8").upscale(photo_crop, 2)
    assert psnr(int8, fp32) > 38
    cached = cached_int8_path(compact)
    assert cached.is_file() and cached.is_relative_to(tmp_path)
    stamp = cached.stat().st_mtime_ns
    NetworkUpscaler(compact, precision="int8")
    assert cached.stat().st_mtime_ns == stamp, "the cached int8 model is reused, not rebuilt"


def test_calibration_is_reproducible_and_in_range() -> None:
    first, second = calibration_tiles(2), calibration_tiles(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(t.shape == (1, 3, 96, 96) and t.min() >= 0 and t.max() <= 1 for t in first)


def test_unknown_precision_is_refused(compact: registry.ModelEntry) -> None:
    with pytest.raises(OptionError, match="precision"):
        NetworkUpscaler(compact, precision="fp8")
