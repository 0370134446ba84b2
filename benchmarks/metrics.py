"""Full-reference and geometric quality metrics for face restoration, on RGB uint8 images.

PSNR and SSIM are computed on the luma (Y of ITU-R BT.601 YCbCr, 16-235), the convention of the face
restoration and super-resolution papers, so figures are comparable with theirs.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facerestore.alignment import alignment_affine, crop_footprint, rescale_affine, warp_back
from facerestore.blending import feather_mask
from facerestore.detection import Face
from facerestore.pixels import to_float

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
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


def seam_gradients(image: np.ndarray, affine: np.ndarray, size: int) -> tuple[float, float]:
    """Mean luma gradient across the paste-back border, and the same just inside and outside that border.

    ``affine`` maps image pixels into the pasted crop of side ``size``. Gradients are measured along the
    border's normal, where a seam would show: a visible seam makes the first figure exceed the second.
    """
    region = crop_footprint(affine, size, image.shape[:2])
    x, y, width, height = region
    mask = warp_back(feather_mask(size), affine, region, cv2.INTER_LINEAR)
    pixels_per_crop = 1 / np.sqrt(abs(np.linalg.det(affine[:, :2])))
    reach = max(3, round(0.08 * size * pixels_per_crop))
    field = cv2.GaussianBlur(mask, (0, 0), reach)  # its gradient gives the border normal near the band too
    normal_x, normal_y = cv2.Sobel(field, cv2.CV_32F, 1, 0), cv2.Sobel(field, cv2.CV_32F, 0, 1)
    length = np.hypot(normal_x, normal_y) + 1e-12
    luma = to_float(image[y : y + height, x : x + width]) @ _LUMA
    across = np.abs(
        cv2.Sobel(luma, cv2.CV_32F, 1, 0) * normal_x + cv2.Sobel(luma, cv2.CV_32F, 0, 1) * normal_y
    )
    across /= length
    inside_photo = warp_back(np.ones((size, size), np.float32), affine, region, cv2.INTER_NEAREST) > 0
    band = (mask > 0.02) & (mask < 0.98)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    surroundings = (cv2.dilate(band.astype(np.uint8), kernel) > 0) & ~band
    band &= inside_photo
    surroundings &= inside_photo
    if not band.any() or not surroundings.any():
        return 0.0, 0.0
    return float(across[band].mean()), float(across[surroundings].mean())
