"""Alignment: warp each face onto a canonical 5-point template with a similarity transform, and back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facerestore.detection import Face
from facerestore.errors import OptionError

# Landmark positions in a 512x512 crop (FFHQ alignment, as GFPGAN and CodeFormer were trained).
_FFHQ_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)
# ArcFace 112x112 template shifted 8 px right in a 128 canvas (used by GPEN-BFR-256 exports).
_ARCFACE_128 = np.array(
    [[46.2946, 51.6963], [81.5318, 51.5014], [64.0252, 71.7366], [49.5493, 92.3655], [78.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATES = {"ffhq": _FFHQ_512 / 512.0, "arcface": _ARCFACE_128 / 128.0}


@dataclass(frozen=True)
class AlignedFace:
    """A square face crop and the 2x3 affine that maps source-image pixels into it."""

    crop: np.ndarray
    affine: np.ndarray
    face: Face


def template_points(size: int, template: str = "ffhq") -> np.ndarray:
    try:
        return TEMPLATES[template] * size
    except KeyError:
        raise OptionError(
            f"unknown alignment template '{template}' (known: {', '.join(TEMPLATES)})"
        ) from None


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping source points onto target."""
    matrix, _ = cv2.estimateAffinePartial2D(
        source.astype(np.float64), target.astype(np.float64), method=cv2.LMEDS
    )
    if matrix is None:  # degenerate landmarks (all on one point): fall back to a plain scale + shift
        scale = 1.0
        shift = target.mean(axis=0) - source.mean(axis=0)
        matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]])
    return matrix.astype(np.float64)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix.astype(np.float64))


def rescale_affine(matrix: np.ndarray, factor: float) -> np.ndarray:
    """The same crop mapping expressed for the source image resized by ``factor``."""
    rescaled = matrix.astype(np.float64).copy()
    rescaled[:, :2] /= factor
    return rescaled


def face_scale(face: Face, size: int, template: str = "ffhq") -> float:
    """Crop pixels per source pixel when this face is aligned into a size x size crop."""
    matrix = alignment_affine(face, size, template)
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def alignment_affine(face: Face, size: int, template: str = "ffhq") -> np.ndarray:
    """The 2x3 affine mapping image pixels into the face's size x size crop."""
    return similarity_transform(face.landmark_array(), template_points(size, template))


def for_opencv(affine: np.ndarray) -> np.ndarray:
    """The affine for cv2.warpAffine. Our coordinates are continuous, pixel i spanning [i, i+1) as the
    detector reports them, so every resize is a plain product; OpenCV puts pixel centres on integers."""
    converted = affine.astype(np.float64).copy()
    converted[:, 2] += converted[:, :2].sum(axis=1) * 0.5 - 0.5
    return converted


def cut_crop(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """The size x size crop that ``affine`` maps image pixels into. Pixels beyond the photo border are
    mirrored, so a network sees plausible context; only pixels inside the photo are ever pasted back."""
    shrinks = abs(np.linalg.det(affine[:, :2])) < 1
    return cv2.warpAffine(
        image,
        for_opencv(affine),
        (size, size),
        flags=cv2.INTER_AREA if shrinks else cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def align_face(image: np.ndarray, face: Face, size: int, template: str = "ffhq") -> AlignedFace:
    """Warps the face into a size x size crop aligned to the template."""
    matrix = alignment_affine(face, size, template)
    return AlignedFace(crop=cut_crop(image, matrix, size), affine=matrix, face=face)


def warp_back(
    crop: np.ndarray,
    affine: np.ndarray,
    region: tuple[int, int, int, int],
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Samples the crop onto an image region (x, y, width, height); ``affine`` maps image to crop."""
    x, y, width, height = region
    shifted = for_opencv(affine)
    shifted[:, 2] += shifted[:, :2] @ np.array([x, y], dtype=np.float64)
    return cv2.warpAffine(
        crop,
        shifted,
        (width, height),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def crop_footprint(affine: np.ndarray, size: int, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The image region (x, y, width, height) covered by the crop, clipped to the image."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    inverse = invert_affine(affine)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = image_shape
    x0 = int(np.clip(np.floor(points[:, 0].min()) - 1, 0, width))
    y0 = int(np.clip(np.floor(points[:, 1].min()) - 1, 0, height))
    x1 = int(np.clip(np.ceil(points[:, 0].max()) + 1, 0, width))
    y1 = int(np.clip(np.ceil(points[:, 1].max()) + 1, 0, height))
    return x0, y0, x1 - x0, y1 - y0
