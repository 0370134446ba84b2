"""Pixel helpers every stage uses: uint8/uint16 <-> float [0, 1], and resizing by size or factor."""

from __future__ import annotations

import cv2
import numpy as np


def pixel_max(dtype: np.dtype) -> float:
    return 65535.0 if dtype == np.uint16 else 255.0


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / pixel_max(image.dtype)


def from_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    peak = pixel_max(dtype)
    return np.clip(image * peak + 0.5, 0, peak).astype(dtype)


def output_size(height: int, width: int, factor: float) -> tuple[int, int]:
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width): area averaging when shrinking, Lanczos when enlarging."""
    height, width = size
    if (height, width) == image.shape[:2]:
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    )
