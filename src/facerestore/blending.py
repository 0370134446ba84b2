"""Paste-back: put a restored face crop into the output photo with no box, seam or colour shift."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from facerestore.alignment import crop_footprint, warp_back
from facerestore.pixels import from_float, resize, to_float

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@lru_cache(maxsize=4)  # few: crop sizes vary continuously over a server's life, and a 2048 mask is 16 MB
def feather_mask(size: int) -> np.ndarray:
    """A soft squircle covering the crop: 1 in the middle, easing to 0 well before the crop's edge, so the
    crop's corners (most often background) never show as a box."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    xs, ys = np.meshgrid(coords, coords)
    radius = (np.abs(xs) ** 4 + np.abs(ys) ** 4) ** 0.25
    inner, outer = 0.70, 0.96
    t = np.clip((outer - radius) / (outer - inner), 0.0, 1.0)
    mask = t * t * (3 - 2 * t)  # smoothstep: no kink where the ramp starts or ends
    mask.setflags(write=False)
    return mask


def match_colour(restored: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Keeps the restored detail but the reference's colour and lighting: the low frequencies of the result
    are taken from the reference crop (float32 RGB, any size; resized to match)."""
    size = restored.shape[0]
    reference = resize(reference, restored.shape[:2]).astype(np.float32)
    sigma = size / 24
    low_restored = cv2.GaussianBlur(restored, (0, 0), sigma)
    low_reference = cv2.GaussianBlur(reference, (0, 0), sigma)
    return np.clip(restored - low_restored + low_reference, 0.0, 1.0)


def keep_native_detail(restored: np.ndarray, native: np.ndarray, seen_side: int) -> np.ndarray:
    """The restored face with the native face's fine detail wherever the native face has more of it.

    A restorer that saw the face ``seen_side`` pixels across knows nothing finer than that, so a sharp face
    larger than its input comes back smoother than it went in. Below that band the result is the
    restorer's; above it, each place takes the detail of whichever image has more there: a sharp photo keeps
    its real lashes and skin, a blurry one keeps the restorer's. Noise is not detail: the native detail's
    energy is counted above a floor read from the face's smoothest places, so a noisy face stays denoised.
    Both are float32 RGB crops of the same aligned frame; ``restored`` is resized to the native crop's side.
    """
    restored = resize(restored, native.shape[:2]).astype(np.float32)
    sigma = 0.375 * native.shape[0] / seen_side  # Gaussian response 1/2 at the Nyquist frequency seen
    restored_low = cv2.GaussianBlur(restored, (0, 0), sigma)
    restored_detail = restored - restored_low
    native_detail = native - cv2.GaussianBlur(native, (0, 0), sigma)
    restored_energy = _local_energy(restored_detail, 2 * sigma)
    native_energy = _local_energy(native_detail, 2 * sigma)
    quarter = native.shape[0] // 4  # the floor comes from the face itself, not a smooth backdrop
    noise_floor = 3 * np.percentile(native_energy[quarter:-quarter, quarter:-quarter], 10)
    clean_energy = np.maximum(native_energy - noise_floor, 0)
    native_detail *= np.sqrt(clean_energy / (native_energy + 1e-12))[..., None]
    weight = (clean_energy**2 / (clean_energy**2 + restored_energy**2 + 1e-12))[..., None]
    return np.clip(restored_low + weight * native_detail + (1 - weight) * restored_detail, 0.0, 1.0)


def _local_energy(detail: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur((detail @ _LUMA) ** 2, (0, 0), sigma)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Luma replicated in three channels, in the input's dtype."""
    luma = image.astype(np.float32) @ _LUMA
    if np.issubdtype(image.dtype, np.integer):
        luma = np.clip(luma + 0.5, 0, np.iinfo(image.dtype).max)
    return np.repeat(luma[..., None], 3, axis=2).astype(image.dtype)


def looks_gray(image: np.ndarray, tolerance: float = 2.0) -> bool:
    """True when the three channels agree (a black-and-white photo stored as RGB)."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 250_000)))
    sample = image[::step, ::step].astype(np.float32) / (257.0 if image.dtype == np.uint16 else 1.0)
    spread = sample.max(axis=2) - sample.min(axis=2)
    return float(spread.mean()) <= tolerance


def paste_face(canvas: np.ndarray, restored: np.ndarray, affine: np.ndarray, strength: float = 1.0) -> None:
    """Blends a restored crop (float32 RGB [0, 1]) into ``canvas`` in place.

    ``affine`` maps canvas pixels into the restored crop; only the crop's footprint is touched.
    """
    size = restored.shape[0]
    x, y, width, height = crop_footprint(affine, size, canvas.shape[:2])
    if width == 0 or height == 0:
        return
    region = (x, y, width, height)
    face = warp_back(restored, affine, region, cv2.INTER_CUBIC)
    weight = warp_back(feather_mask(size), affine, region, cv2.INTER_LINEAR)[..., None] * strength
    target = canvas[y : y + height, x : x + width]
    mixed = to_float(target) * (1 - weight) + np.clip(face, 0, 1) * weight
    canvas[y : y + height, x : x + width] = from_float(mixed, canvas.dtype)
