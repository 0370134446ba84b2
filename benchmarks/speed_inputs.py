"""The benchmark's inputs: the real photos in ../shared/data/real, and large synthetic photos made of them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facerestore.image_io import load_image

SYNTHETIC_SIZE = (6000, 4000)  # width, height
# The part of gfpgan-whole/00.jpg below both faces (fence, grass, legs): real texture with no face in it.
_BACKGROUND_SOURCE, _BACKGROUND_ROWS = "gfpgan-whole/00.jpg", (1000, 1920)
_PASTED_FACES = (  # (gfpgan-cropped file, side as a fraction of the photo height, centre x, centre y)
    ("Adele_crop.png", 0.16, 0.2, 0.3),
    ("Julia_Roberts_crop.png", 0.10, 0.55, 0.25),
    ("Justin_Timberlake_crop.png", 0.065, 0.8, 0.6),
    ("Paris_Hilton_crop.png", 0.04, 0.35, 0.75),
)
SYNTHETIC_QUALITY = 92
REAL_FOLDERS = ("gfpgan-whole", "portraits", "misc")
ALIGNED_FACE = "gfpgan-cropped/Adele_crop.png"


@dataclass(frozen=True)
class Case:
    label: str
    image: Path
    scale: float
    aligned: bool = False
    group: str = "photo"  # "face", "photo", "synthetic" or "growth"


def real_photos(real_dir: Path) -> list[Path]:
    return sorted(p for folder in REAL_FOLDERS for p in (real_dir / folder).iterdir() if p.is_file())


def megapixels(path: Path) -> float:
    picture = load_image(path)
    return picture.width * picture.height / 1e6


def _mirror_tiled(block: np.ndarray, width: int, height: int) -> np.ndarray:
    """Covers width x height with the block and its mirror images, so no seam has a jump in it."""
    quad = np.vstack([np.hstack([block, block[:, ::-1]]), np.hstack([block[::-1], block[::-1, ::-1]])])
    reps = (math.ceil(height / quad.shape[0]), math.ceil(width / quad.shape[1]), 1)
    return np.ascontiguousarray(np.tile(quad, reps)[:height, :width])


def synthetic_photo(real_dir: Path, width: int, height: int) -> np.ndarray:
    """A BGR photo of any size: real background texture with four real faces pasted at set sizes."""
    source = cv2.imread(str(real_dir / _BACKGROUND_SOURCE))
    top, bottom = _BACKGROUND_ROWS
    canvas = _mirror_tiled(source[top:bottom], width, height)
    for name, fraction, cx, cy in _PASTED_FACES:
        side = max(16, round(fraction * height))
        face = cv2.resize(cv2.imread(str(real_dir / "gfpgan-cropped" / name)), (side, side), cv2.INTER_AREA)
        x0, y0 = round(cx * width - side / 2), round(cy * height - side / 2)
        canvas[y0 : y0 + side, x0 : x0 + side] = face
    return canvas


def synthetic_file(real_dir: Path, work_dir: Path, megapixels: float | None = None) -> Path:
    """A cached JPEG of the synthetic photo: 6000x4000, or resized to ``megapixels`` at the same 3:2 shape."""
    full_w, full_h = SYNTHETIC_SIZE
    ratio = 1.0 if megapixels is None else math.sqrt(megapixels * 1e6 / (full_w * full_h))
    width, height = round(full_w * ratio), round(full_h * ratio)
    target = work_dir / f"synthetic_{width}x{height}.jpg"
    if not target.is_file():
        work_dir.mkdir(parents=True, exist_ok=True)
        pixels = synthetic_photo(real_dir, full_w, full_h)
        if (width, height) != (full_w, full_h):
            pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
        partial = target.with_suffix(".part.jpg")
        cv2.imwrite(str(partial), pixels, [cv2.IMWRITE_JPEG_QUALITY, SYNTHETIC_QUALITY])
        partial.replace(target)
    return target
