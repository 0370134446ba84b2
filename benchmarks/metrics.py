"""Full-reference and geometric quality metrics for face restoration, on RGB uint8 images.

PSNR and SSIM are computed on the luma (Y of ITU-R BT.601 YCbCr, 16-235), the convention of the face
restoration and super-resolution papers, so figures are comparable with theirs.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facerestore.alignment import alignment_affine, rescale_affine
from facerestore.blending import seam_gradients
from facerestore.detection import Face

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # an 11x11 window, as in the SSIM paper


def luma(image: np.ndarray) -> np.ndarray:
    """Y in [16, 235] as float64 from RGB uint8."""
    return 16.0 + image.astype(np.float64) @ _Y_WEIGHTS


def psnr_y(result: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio on Y in dB; inf for identical images."""
    mse = float(np.mean((luma(result) - luma(truth)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_mean(image: np.ndarray) -> np.ndarray:
    side = 2 * _SSIM_RADIUS + 1
    return cv2.GaussianBlur(image, (side, side), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim_y(result: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity on Y with a Gaussian window (sigma 1.5); the border where the window does not
    fit is left out, so the figure does not depend on how the border is padded."""
    x, y = luma(result), luma(truth)
    mean_x, mean_y = _gaussian_mean(x), _gaussian_mean(y)
    var_x = _gaussian_mean(x * x) - mean_x**2
    var_y = _gaussian_mean(y * y) - mean_y**2
    covariance = _gaussian_mean(x * y) - mean_x * mean_y
    numerator = (2 * mean_x * mean_y + _SSIM_C1) * (2 * covariance + _SSIM_C2)
    denominator = (mean_x**2 + mean_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    inner = (slice(_SSIM_RADIUS, -_SSIM_RADIUS), slice(_SSIM_RADIUS, -_SSIM_RADIUS))
    return float(np.mean((numerator / denominator)[inner]))


def lab(image: np.ndarray) -> np.ndarray:
    """CIE Lab (L in 0-100) of RGB uint8, through sRGB with a D65 white point."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def colour_shift(before: np.ndarray, after: np.ndarray, blur_fraction: float = 1 / 32) -> float:
    """Mean CIE76 Delta-E between the low-pass versions of two images of the same size.

    Low-pass first, so restored detail and removed noise do not count: what remains is the shift in colour
    and lighting that users notice as a face looking 'pasted on' (sigma = side * blur_fraction).
    """
    if before.shape != after.shape:
        raise ValueError(f"shapes differ: {before.shape} vs {after.shape}")
    return float(
        np.mean(
            np.linalg.norm(
                _low_pass(lab(before), blur_fraction) - _low_pass(lab(after), blur_fraction), axis=2
            )
        )
    )


def _low_pass(image: np.ndarray, blur_fraction: float) -> np.ndarray:
    """Gaussian low-pass, computed on an area-averaged copy an eighth the size (the same figures, 50x cheaper
    than blurring at full size with a wide kernel)."""
    height, width = image.shape[:2]
    step = 8 if min(height, width) >= 64 else 1
    small = cv2.resize(image, (width // step, height // step), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (0, 0), max(0.5, height * blur_fraction / step))


def registration_shift(result: np.ndarray, truth: np.ndarray) -> float:
    """How far the result is displaced from the ground truth as a whole, in pixels; NaN if the estimate does
    not converge. Restoration should sharpen a face, not move it: a paste-back or resampling convention off
    by a fraction of a pixel shows here first. Estimated by ECC maximisation (Evangelidis and Psarakis) on
    the lumas, which stays accurate to ~0.1 px on blurred, noisy inputs where phase correlation does not."""
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    try:
        _, warp = cv2.findTransformECC(
            luma(truth).astype(np.float32),
            luma(result).astype(np.float32),
            warp,
            cv2.MOTION_TRANSLATION,
            criteria,
            None,
            5,
        )
    except cv2.error:
        return math.nan
    return float(math.hypot(warp[0, 2], warp[1, 2]))


def landmark_distance(found: Face, truth: Face) -> float:
    """Mean Euclidean distance between corresponding landmarks, in pixels."""
    return float(np.mean(np.linalg.norm(found.landmark_array() - truth.landmark_array(), axis=1)))


def matching_face(faces: list[Face], truth: Face) -> Face | None:
    """The detected face whose centre lies inside the true face's box and closest to its centre."""
    x1, y1, x2, y2 = truth.box
    inside = [f for f in faces if x1 <= f.center[0] <= x2 and y1 <= f.center[1] <= y2]
    if not inside:
        return None
    return min(inside, key=lambda f: math.dist(f.center, truth.center))


def seam_ratio(output: np.ndarray, reference: np.ndarray, face: Face, crop_size: int, scale: float) -> float:
    """How much steeper the output is across the paste-back border than around it, relative to the same
    figure in the unrestored picture enlarged alike: 1.0 means pasting added no edge (content edges cancel);
    above 1.0 a seam shows."""
    affine = rescale_affine(alignment_affine(face, crop_size), scale)
    band, around = seam_gradients(output, affine, crop_size)
    ref_band, ref_around = seam_gradients(reference, affine, crop_size)
    if min(around, ref_band, ref_around) <= 0:
        return math.nan
    return (band / around) / (ref_band / ref_around)
