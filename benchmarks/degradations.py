"""Synthetic face degradation in the style of the CelebA-Test protocol (GFPGAN paper):

    y = JPEG_q( downsample_r( x * gaussian_blur_sigma ) + gaussian_noise_delta ), upsampled back

Parameters always refer to a 512x512 face (the protocol's size); the sharp face is brought to 512 first, so a
draw means the same damage whatever size the benchmark works at afterwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

REFERENCE_SIZE = 512
SIGMA_RANGE = (0.1, 10.0)
SCALE_RANGE = (0.8, 8.0)
NOISE_RANGE = (0.0, 20.0)
QUALITY_RANGE = (60, 100)


@dataclass(frozen=True)
class Degradation:
    sigma: float  # Gaussian blur, pixels of the 512 face
    factor: float  # downsampling factor r
    noise: float  # Gaussian noise standard deviation delta, in 0-255 units
    quality: int  # JPEG quality q

    def describe(self) -> str:
        return f"s={self.sigma:.1f} r={self.factor:.1f} n={self.noise:.0f} q={self.quality}"

    def to_dict(self) -> dict[str, float]:
        return {key: round(float(value), 3) for key, value in asdict(self).items()}


SEVERITIES: dict[str, Degradation] = {
    # A good photo (a phone JPEG): does restoring it lose the real detail it already had?
    "clean": Degradation(sigma=0.1, factor=1.0, noise=0.0, quality=95),
    "mild": Degradation(sigma=1.0, factor=2.0, noise=5.0, quality=90),
    "moderate": Degradation(sigma=2.5, factor=4.0, noise=10.0, quality=75),
    "severe": Degradation(sigma=5.0, factor=8.0, noise=20.0, quality=60),
}


def random_degradation(rng: np.random.Generator) -> Degradation:
    return Degradation(
        sigma=float(rng.uniform(*SIGMA_RANGE)),
        factor=float(rng.uniform(*SCALE_RANGE)),
        noise=float(rng.uniform(*NOISE_RANGE)),
        quality=int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1)),
    )


def sample_rng(seed: int, face_index: int, subset: str) -> np.random.Generator:
    """One generator per (face, subset): a draw does not depend on which other faces a run includes."""
    subset_code = int.from_bytes(subset.encode(), "little") % (2**32)
    return np.random.default_rng([seed, face_index, subset_code])


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return decoded[..., ::-1].copy()


def degrade_lowres(face: np.ndarray, params: Degradation, rng: np.random.Generator) -> np.ndarray:
    """The degraded low-resolution image (uint8 RGB) of a 512x512 uint8 RGB face."""
    if face.shape[:2] != (REFERENCE_SIZE, REFERENCE_SIZE):
        raise ValueError(f"expected a {REFERENCE_SIZE}x{REFERENCE_SIZE} face, got {face.shape[:2]}")
    blurred = cv2.GaussianBlur(face.astype(np.float32), (0, 0), params.sigma, borderType=cv2.BORDER_REFLECT)
    side = max(8, round(REFERENCE_SIZE / params.factor))
    # Bilinear without anti-aliasing, as in the protocol: aliasing at large r is part of the damage.
    small = cv2.resize(blurred, (side, side), interpolation=cv2.INTER_LINEAR)
    noisy = small + np.asarray(rng.normal(0.0, params.noise, small.shape), dtype=np.float32)
    return jpeg(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), params.quality)


def upsample(image: np.ndarray, size: int, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=interpolation)


def to_reference_size(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (REFERENCE_SIZE, REFERENCE_SIZE), interpolation=cv2.INTER_AREA)
