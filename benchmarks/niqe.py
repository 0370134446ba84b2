"""A NIQE-style no-reference naturalness score (after Mittal, Soundararajan and Bovik, 2013).

Natural-scene statistics of an image are measured on patches: the mean-subtracted contrast-normalised (MSCN)
luminance is fitted with a generalised Gaussian, and the products of neighbouring MSCN coefficients in four
directions with asymmetric generalised Gaussians, at two scales (36 features a patch). A multivariate
Gaussian of those features is fitted on sharp faces; an image's score is the distance between that model and
the Gaussian of its own patches. Lower is more natural. The model here is fitted on faces, not on the
general photos of the original NIQE, so scores are comparable only with each other, not with papers' NIQE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facerestore.blending import to_gray

_MSCN_SIGMA = 7 / 6  # 7x7 Gaussian window, as in the paper
_SHARPNESS_KEEP = 0.75  # model patches must be at least this sharp relative to the image's sharpest
_REFERENCE_PATCH = 96  # the paper's patch side, for a 512-px face; scaled with the working size
_ALPHAS = np.arange(0.2, 10.0, 0.001)


def _log_gamma(values: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(v) for v in values])


_LG1, _LG2, _LG3 = (_log_gamma(k / _ALPHAS) for k in (1, 2, 3))
# E[x]^2 / E[x^2] of a generalised Gaussian with shape alpha: monotonic in alpha, so it can be inverted.
_GGD_RATIO = np.exp(2 * _LG2 - _LG1 - _LG3)


def _shape_from_ratio(ratio: np.ndarray) -> np.ndarray:
    index = np.abs(ratio[:, None] - _GGD_RATIO[None, :]).argmin(axis=1)
    return _ALPHAS[index]


def ggd_features(samples: np.ndarray) -> np.ndarray:
    """(shape, variance) of a zero-mean generalised Gaussian fitted to each row, by moment matching."""
    mean_abs = np.abs(samples).mean(axis=1)
    mean_square = (samples**2).mean(axis=1) + 1e-12
    shape = _shape_from_ratio(mean_abs**2 / mean_square)
    return np.stack([shape, mean_square], axis=1)


def aggd_features(samples: np.ndarray) -> np.ndarray:
    """(shape, mean, left variance, right variance) of an asymmetric generalised Gaussian for each row."""
    left, right = samples < 0, samples > 0
    left_var = (np.where(left, samples**2, 0).sum(axis=1) + 1e-12) / (left.sum(axis=1) + 1)
    right_var = (np.where(right, samples**2, 0).sum(axis=1) + 1e-12) / (right.sum(axis=1) + 1)
    gamma = np.sqrt(left_var / right_var)
    mean_abs = np.abs(samples).mean(axis=1)
    mean_square = (samples**2).mean(axis=1) + 1e-12
    ratio = mean_abs**2 / mean_square * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    shape = _shape_from_ratio(ratio)
    lg1, lg2, lg3 = (_log_gamma(k / shape) for k in (1, 2, 3))
    spread = np.exp(0.5 * (lg1 - lg3))
    mean = (np.sqrt(right_var) - np.sqrt(left_var)) * spread * np.exp(lg2 - lg1)
    return np.stack([shape, mean, left_var, right_var], axis=1)


def mscn(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MSCN coefficients and the local standard deviation (float64 gray in 0-255)."""
    mean = cv2.GaussianBlur(gray, (7, 7), _MSCN_SIGMA, borderType=cv2.BORDER_REPLICATE)
    variance = cv2.GaussianBlur(gray * gray, (7, 7), _MSCN_SIGMA, borderType=cv2.BORDER_REPLICATE) - mean**2
    deviation = np.sqrt(np.abs(variance))
    return (gray - mean) / (deviation + 1.0), deviation


def _patches(plane: np.ndarray, side: int) -> np.ndarray:
    """Non-overlapping side x side patches as rows (the remainder at the right and bottom is dropped)."""
    rows, cols = plane.shape[0] // side, plane.shape[1] // side
    trimmed = plane[: rows * side, : cols * side]
    return trimmed.reshape(rows, side, cols, side).transpose(0, 2, 1, 3).reshape(rows * cols, side * side)


def _scale_features(gray: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """18 features per patch at one scale, and each patch's sharpness (mean local deviation)."""
    coefficients, deviation = mscn(gray)
    centre = coefficients[:-1, :-1]
    products = (
        centre * coefficients[:-1, 1:],  # horizontal
        centre * coefficients[1:, :-1],  # vertical
        centre * coefficients[1:, 1:],  # main diagonal
        coefficients[:-1, 1:] * coefficients[1:, :-1],  # anti-diagonal
    )
    blocks = [ggd_features(_patches(centre, side))]
    blocks += [aggd_features(_patches(product, side)) for product in products]
    sharpness = _patches(deviation[:-1, :-1], side).mean(axis=1)
    return np.hstack(blocks), sharpness


def patch_side(image_side: int) -> int:
    return max(16, round(_REFERENCE_PATCH * image_side / 512))


def patch_features(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """36 features per patch (two scales) and each patch's sharpness, for an RGB uint8 image."""
    gray = to_gray(image)[..., 0].astype(np.float64)
    side = patch_side(min(gray.shape))
    fine, sharpness = _scale_features(gray, side)
    half = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
    coarse, _ = _scale_features(half, side // 2)
    count = min(len(fine), len(coarse))
    return np.hstack([fine[:count], coarse[:count]]), sharpness[:count]


@dataclass(frozen=True)
class NaturalnessModel:
    mean: np.ndarray
    covariance: np.ndarray
    patch_count: int

    @classmethod
    def fit(cls, images: list[np.ndarray]) -> NaturalnessModel:
        """The model of sharp images: features of each image's sharpest patches only."""
        chosen = []
        for image in images:
            features, sharpness = patch_features(image)
            chosen.append(features[sharpness >= _SHARPNESS_KEEP * sharpness.max()])
        rows = np.vstack(chosen)
        return cls(rows.mean(axis=0), np.cov(rows, rowvar=False), len(rows))

    def score(self, image: np.ndarray) -> float:
        """Distance of the image's patch statistics from the model: lower is more natural."""
        features, _ = patch_features(image)
        mean = features.mean(axis=0)
        covariance = np.cov(features, rowvar=False) if len(features) > 1 else np.zeros_like(self.covariance)
        difference = self.mean - mean
        pooled = np.linalg.pinv((self.covariance + covariance) / 2)
        return float(np.sqrt(max(0.0, difference @ pooled @ difference)))
