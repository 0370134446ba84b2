"""Per-face analysis: how large, how turned and how damaged each face is, measured from its own pixels.

Every measure is taken on the face aligned at its native resolution (the FFHQ framing the restorers use, one
crop pixel per photo pixel), so nothing is added or removed by resampling before it is measured:

- effective width: the width of a sharp face holding the same detail. The crop's radial power spectrum,
  less the noise floor, is compared with a sharp face's (a power law fitted on the face's coarse band); the
  frequency where the ratio falls to half amplitude (MTF 50) is the face's resolution limit.
- noise: Immerkaer's Laplacian-difference estimate on the flattest third of the face, the largest of its
  readings at the photo's size and shrunk 1.5x and 2x: a photo enlarged after the noise came has its noise
  spread over several pixels, which reads low at its own size.
- JPEG quality: the file's luminance quantization table matched against the IJG standard table scaled
  for each quality (a camera's own tables land on the nearest IJG quality).
- yaw and roll: from the five landmarks (the nose tip's offset from the face's midline, the eyes' tilt).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from facerestore import registry
from facerestore.alignment import alignment_affine, face_scale, invert_affine
from facerestore.detection import Face
from facerestore.image_io import Picture
from facerestore.options import AUTO
from facerestore.restoration import RECOMMENDED_FACE_PRIOR

CROP_SIDE = 512  # the FFHQ framing the alignment template is given at
MAX_CROP_SIDE = 1024  # larger faces are measured at this side: detail beyond it is not needed
MIN_CROP_SIDE = 32
# A face this wide holds all the detail restorers make (FFHQ's and the face priors' 512 px); larger faces are
# measured up to about this effective width (their crop is MAX_CROP_SIDE, twice the face).
DETAILED_WIDTH = 512
# A sharp face's radial power spectrum falls as k^-3 (fitted slopes 2.6-3.3 on shared/data/hq, 8-128 cycles).
SPECTRUM_SLOPE = 3.0
COARSE_BAND = (3, 8)  # cycles per crop: face-scale structure that blur and downscaling leave intact
HALF_AMPLITUDE = 0.25  # power ratio at MTF 50
# Noise is reported per RGB channel; luma (BT.601) of independent channel noise has 0.668 of its sigma.
LUMA_NOISE_GAIN = math.sqrt(0.299**2 + 0.587**2 + 0.114**2)
NOISE_SHRINKS = (1.5, 2.0)  # white noise reads lower shrunk, noise enlarged by about these factors does not
FLAT_SHARE = 30  # percent of the face's pixels, the flattest, that the noise is read on
# Nose tip's depth in front of the eye centres, over the distance between them (adult faces: 0.4-0.5).
NOSE_DEPTH = 0.45
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_LAPLACIAN_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# IJG (JPEG standard, Annex K) luminance quantization table, natural order: the table of quality 50.
IJG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
).ravel()


@dataclass(frozen=True)
class FaceMeasures:
    """What one face is like: size (px), pose (degrees), effective resolution (px), noise (sigma on 0-255)
    and the file's JPEG quality (None when it is not a JPEG)."""

    width: float
    yaw: float  # positive: the face turns towards the image's right
    roll: float  # positive: the face tilts clockwise in the image
    effective_width: float
    noise: float
    jpeg_quality: int | None

    @property
    def sharpness(self) -> float:
        """Effective over actual width (up to DETAILED_WIDTH): 1 for a sharp face, 0.25 for one holding the
        detail of a face a quarter of its size."""
        return min(1.0, self.effective_width / max(min(self.width, DETAILED_WIDTH), 1.0))

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "width": round(self.width, 1),
            "yaw": round(self.yaw, 1),
            "roll": round(self.roll, 1),
            "effective_width": round(self.effective_width, 1),
            "noise": round(self.noise, 2),
            "jpeg_quality": self.jpeg_quality,
        }


def measure_faces(picture: Picture, faces: Sequence[Face]) -> tuple[FaceMeasures, ...]:
    quality = jpeg_quality(picture.jpeg_tables)
    return tuple(measure_face(picture.pixels, face, quality) for face in faces)


def measure_face(pixels: np.ndarray, face: Face, quality: int | None = None) -> FaceMeasures:
    """The measures of one face in RGB uint8/uint16 ``pixels``; a face without landmarks (a whole aligned
    crop) is taken as the whole picture."""
    native_side = _native_side(pixels, face)
    side = int(np.clip(round(native_side), MIN_CROP_SIDE, MAX_CROP_SIDE))
    luma = _resized(_native_square(pixels, face, round(native_side)), side)
    native_noise = noise_sigma(luma)
    limit = resolution_limit(radial_spectrum(luma), native_noise * LUMA_NOISE_GAIN)
    # An enlarged photo's noise spans several pixels and reads low at its size: it is read again shrunk.
    noise = max(native_noise, *(noise_sigma(_resized(luma, round(side / k))) for k in NOISE_SHRINKS))
    sharpness = min(1.0, limit * side / native_side)
    yaw, roll = head_pose(face) if face.landmarks else (0.0, 0.0)
    return FaceMeasures(
        width=face.width,
        yaw=yaw,
        roll=roll,
        effective_width=face.width * sharpness,
        noise=noise,
        jpeg_quality=quality,
    )


def _native_side(pixels: np.ndarray, face: Face) -> float:
    """Side in photo pixels of the face's square in the FFHQ framing (the whole picture for a crop)."""
    if not face.landmarks:
        return float(max(pixels.shape[:2]))
    return CROP_SIDE / face_scale(face, CROP_SIDE)


def _native_square(pixels: np.ndarray, face: Face, side: int) -> np.ndarray:
    """The face's luma on 0-255 in an upright square of the photo's own pixels (no resampling, which would
    soften detail and noise), framed as the aligned crop and mirrored beyond the photo's border."""
    if not face.landmarks:
        square = pixels
    else:
        inverse = invert_affine(alignment_affine(face, CROP_SIDE))
        centre_x, centre_y = inverse @ np.array([CROP_SIDE / 2, CROP_SIDE / 2, 1.0])
        left, top = round(centre_x - side / 2), round(centre_y - side / 2)
        height, width = pixels.shape[:2]
        pad = (
            (max(0, -top), max(0, top + side - height)),
            (max(0, -left), max(0, left + side - width)),
            (0, 0),
        )
        region = pixels[max(0, top) : top + side, max(0, left) : left + side]
        square = np.pad(region, pad, mode="symmetric")
    peak = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return (square.astype(np.float32) @ _LUMA) * (255.0 / peak)


def _resized(luma: np.ndarray, side: int) -> np.ndarray:
    if side == luma.shape[0] == luma.shape[1]:
        return luma
    shrinking = side < max(luma.shape[:2])
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(luma, (side, side), interpolation=interpolation)


def radial_spectrum(luma: np.ndarray) -> np.ndarray:
    """Median power at each integer radius (cycles per crop) of the Hann-windowed square crop, up to Nyquist;
    white noise of variance v reads v ln 2 at every radius. The median, unlike the mean, ignores the few
    strong peaks of a periodic pattern (JPEG's 8x8 block grid), which are not detail."""
    side = luma.shape[0]
    window = np.outer(np.hanning(side), np.hanning(side))
    centred = (luma - np.sum(luma * window) / np.sum(window)) * window
    power = (np.abs(np.fft.fft2(centred)) ** 2 / np.sum(window**2)).ravel()
    frequencies = np.fft.fftfreq(side) * side
    radius = np.hypot(frequencies[:, None], frequencies[None, :]).round().astype(int).ravel()
    order = np.lexsort((power, radius))
    counts = np.bincount(radius)
    middles = np.cumsum(counts) - (counts + 1) // 2
    return power[order][middles][: side // 2 + 1]


def resolution_limit(power: np.ndarray, noise: float) -> float:
    """The face's resolution limit as a share of the crop's Nyquist frequency (1: as sharp as its pixels),
    from its radial spectrum. ``noise`` is the sigma of white luma noise, whose flat power is taken off."""
    radius = np.arange(len(power), dtype=np.float64)
    coarse = (radius >= COARSE_BAND[0]) & (radius <= COARSE_BAND[1])
    level = np.mean(np.log(power[coarse] + 1e-12) + SPECTRUM_SLOPE * np.log(radius[coarse]))
    sharp = np.exp(level) * np.maximum(radius, 1) ** -SPECTRUM_SLOPE
    ratio = np.convolve((power - math.log(2) * noise**2) / sharp, np.ones(5) / 5, mode="same")
    falling = np.nonzero((ratio < HALF_AMPLITUDE) & (radius > COARSE_BAND[1]))[0]
    nyquist = len(power) - 1
    limit = falling[0] if len(falling) else nyquist
    return float(min(1.0, limit / nyquist))


def noise_sigma(luma: np.ndarray) -> float:
    """Immerkaer's estimate (sigma on 0-255 per RGB channel) over the flattest FLAT_SHARE percent of the crop:
    the mean absolute Laplacian difference, which cancels smooth shading, read where edges are fewest."""
    inner = (slice(1, -1), slice(1, -1))
    response = np.abs(cv2.filter2D(luma, -1, _LAPLACIAN_DIFFERENCE)[inner])
    gradient = np.hypot(cv2.Sobel(luma, -1, 1, 0), cv2.Sobel(luma, -1, 0, 1))[inner]
    flat = response[gradient <= np.percentile(gradient, FLAT_SHARE)]
    return float(math.sqrt(math.pi / 2) * np.mean(flat) / 6 / LUMA_NOISE_GAIN)


def ijg_table(quality: int) -> np.ndarray:
    """The IJG luminance table libjpeg writes for ``quality`` (1-100)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((IJG_LUMINANCE * scale + 50) / 100), 1, 255)


def jpeg_quality(tables: Sequence[Sequence[int]] | None) -> int | None:
    """The IJG quality whose luminance table is nearest the file's (log ratio, all 64 steps)."""
    if not tables or len(tables[0]) != 64:
        return None
    steps = np.log(np.maximum(np.asarray(tables[0], dtype=np.float64), 1))
    errors = [np.mean(np.abs(steps - np.log(ijg_table(q)))) for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def head_pose(face: Face) -> tuple[float, float]:
    """(yaw, roll) in degrees from the five landmarks: roll is the eyes' tilt; yaw comes from the nose tip's
    offset from the midline of eyes and mouth, over the eye distance, as a nose NOSE_DEPTH in front would
    show it (offset = depth x sin(yaw), eye distance = width x cos(yaw))."""
    points = face.landmark_array().astype(np.float64)
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    dx, dy = right_eye - left_eye
    roll = math.degrees(math.atan2(dy, dx))
    upright = _rotation(-roll)
    eyes_mid = upright @ ((left_eye + right_eye) / 2)
    mouth_mid = upright @ ((mouth_left + mouth_right) / 2)
    offset = (upright @ nose)[0] - (eyes_mid[0] + mouth_mid[0]) / 2
    eye_distance = max(math.hypot(dx, dy), 1e-6)
    yaw = math.degrees(math.atan2(offset / eye_distance, NOSE_DEPTH))
    return yaw, roll


def _rotation(degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


# -- advice: what restoring each face needs ------------------------------------------------------------------

SMALL_FACE, LARGE_FACE = 100, 300  # px wide: the guides' limits for 4x, 2x, and 2x or 1x
AUTO_SCALE_PIXELS = 24_000_000  # 'auto' never makes a result larger than this, nor shrinks one
IMPORTANT_SHARE = 0.5  # faces at least this share of the largest one's width decide the scale
TURNED_AWAY = 45.0  # degrees of yaw beyond which restorers, trained on near-frontal faces, are unreliable
# Damage classes, fitted (with WITHOUT_PRIOR) for the best mean PSNR at 1x on 88 hq faces degraded with
# another seed than the quality benchmark's (benchmarks/auto_calibration.py policy). That draw scores the
# sharp limits 0.6 and 0.7 and the noise limits 3 and 4 alike. Between them the sharp limit sits at 0.65,
# in the gap between the benchmark's mild damage (at most 0.64 on all 56 hq faces, both seeds) and the
# sharpness most clean faces read: restoring a clean face costs ~5 dB, leaving a mild one ~0.3 (a clean
# q95 CelebA-HQ face reading 0.68 was restored under 0.7). 4 stays above the noise a clean hq face reads
# (at most 3.8, skin texture in the shrunk readings). Sharpness is effective over actual width. The JPEG
# limits are not fitted (the benchmark's inputs carry no quantization tables).
MILD_SHARPNESS, MODERATE_SHARPNESS, SEVERE_SHARPNESS = 0.65, 0.35, 0.15
MILD_NOISE, MODERATE_NOISE = 4.0, 8.0
MILD_QUALITY, MODERATE_QUALITY = 80, 60


class Damage(StrEnum):
    NONE = "none"
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


@dataclass(frozen=True)
class Advice:
    """What restoring one face needs: output scale (for this face alone), the restorer to run among those
    installed (None: nothing worth restoring), a better one that could be downloaded, and how strongly to
    blend the restored face in."""

    damage: Damage
    scale: float
    face_model: str | None
    download: str | None
    strength: float
    outcome: str
    identity_warning: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "damage": self.damage.value,
            "scale": self.scale,
            "face_model": self.face_model,
            "download": self.download,
            "strength": self.strength,
            "outcome": self.outcome,
            "identity_warning": self.identity_warning,
        }


@dataclass(frozen=True)
class FaceAnalysis:
    measures: FaceMeasures
    advice: Advice

    def to_dict(self) -> dict[str, object]:
        return {**self.measures.to_dict(), "advice": self.advice.to_dict()}


# Without a face prior: the network and strength that scored best for each damage class. Half strength
# wins throughout: the restored and the original face err differently, and their mean errs least.
WITHOUT_PRIOR: dict[Damage, tuple[str | None, float]] = {
    Damage.MILD: ("realesr-compact-x2", 0.5),
    Damage.MODERATE: ("realesrgan-x4plus", 0.5),
    Damage.SEVERE: ("realesrgan-x4plus", 0.5),
}


@dataclass(frozen=True)
class PictureAnalysis:
    """A picture's faces, each with its analysis, and the scale 'auto' would choose for the picture."""

    faces: tuple[tuple[Face, FaceAnalysis], ...]
    scale: float

    def to_dict(self) -> dict[str, object]:
        faces = [{**face.to_dict(), "analysis": analysis.to_dict()} for face, analysis in self.faces]
        return {"scale": self.scale, "faces": faces}


def analyse_picture(picture: Picture, faces: Sequence[Face]) -> PictureAnalysis:
    analyses = analyse_faces(picture, faces)
    scale = auto_scale((picture.width, picture.height), analyses)
    return PictureAnalysis(tuple(zip(faces, analyses, strict=True)), scale)


@dataclass(frozen=True)
class IdentityFigures:
    """How far the automatic choice's outputs of one damage class came from the real person on the quality
    benchmark: mean dlib descriptor distance from the ground truth, and how many read as another person."""

    distance: float
    lost: int
    faces: int


# The quality benchmark's identity run (2026-12-02, 10 faces per set, 50 images; docs/benchmarks.md, the
# table by damage class). The distance comes from the damage, not the restorer: the degraded inputs sat as
# far. A class where at least IDENTITY_RISK of the outputs read as another person gets a warning: a mean
# distance says little, since a few faces cross dlib's limit while the rest stay close.
IDENTITY_RUN = {
    Damage.MILD: IdentityFigures(0.065, 0, 5),
    Damage.MODERATE: IdentityFigures(0.235, 1, 18),
    Damage.SEVERE: IdentityFigures(0.446, 2, 16),
}
SAME_PERSON_DISTANCE = 0.6  # dlib's limit: 99.38% right on LFW
IDENTITY_RISK = 0.1
WITHOUT_PRIOR_MODELS = {model for model, _ in WITHOUT_PRIOR.values()}


def analyse_faces(picture: Picture, faces: Sequence[Face]) -> tuple[FaceAnalysis, ...]:
    """Measures each face and advises on it, among the face models installed now."""
    installed = tuple(entry.name for entry in registry.entries() if registry.is_installed(entry))
    return tuple(FaceAnalysis(m, advise(m, installed)) for m in measure_faces(picture, faces))


def face_scale_for(width: float) -> float:
    """The guides' table: under 100 px wide 4x, up to 300 px 2x, larger 2x (or less, within the budget)."""
    return 4.0 if width < SMALL_FACE else 2.0


def damage_of(measures: FaceMeasures) -> Damage:
    """How much a face lost, from its sharpness, noise and compression."""
    quality = measures.jpeg_quality or 100
    if measures.sharpness < SEVERE_SHARPNESS:
        return Damage.SEVERE
    if (
        measures.sharpness < MODERATE_SHARPNESS
        or measures.noise > MODERATE_NOISE
        or quality < MODERATE_QUALITY
    ):
        return Damage.MODERATE
    if measures.sharpness < MILD_SHARPNESS or measures.noise > MILD_NOISE or quality < MILD_QUALITY:
        return Damage.MILD
    return Damage.NONE


def advise(measures: FaceMeasures, installed: Sequence[str]) -> Advice:
    damage = damage_of(measures)
    model, strength = restorer_for(damage, installed)
    better = (
        RECOMMENDED_FACE_PRIOR
        if damage is not Damage.NONE and RECOMMENDED_FACE_PRIOR not in installed
        else None
    )
    return Advice(
        damage=damage,
        scale=face_scale_for(measures.width),
        face_model=model,
        download=better,
        strength=strength,
        outcome=expected_outcome(measures, damage, model),
        identity_warning=identity_warning(damage, model),
    )


def identity_warning(damage: Damage, model: str | None) -> str | None:
    """A warning where faces this damaged came out of the advised restorer as another person often enough
    on the quality benchmark (a face prior is not measured: no weights there)."""
    figures = IDENTITY_RUN.get(damage)
    if model not in WITHOUT_PRIOR_MODELS or figures is None or figures.lost < IDENTITY_RISK * figures.faces:
        return None
    return (
        f"identity uncertain: on the benchmark {figures.lost} of {figures.faces} faces this damaged came out "
        f"as another person (dlib descriptor distance {SAME_PERSON_DISTANCE} or more from the real one; "
        f"mean {figures.distance:.2f})"
    )


def restorer_for(damage: Damage, installed: Sequence[str]) -> tuple[str | None, float]:
    """The restorer and blend strength for a face's damage. A face prior, where installed, restores any
    damaged face fully; without one, the super-resolution network and strength that scored best for that
    damage on the quality benchmark's calibration draw (benchmarks/analysis_calibration.py)."""
    if damage is Damage.NONE:
        return None, 0.0
    priors = [
        entry.name for entry in registry.entries(registry.Purpose.FACE_RESTORER) if entry.name in installed
    ]
    if priors:
        return priors[0], 1.0
    return WITHOUT_PRIOR[damage]


def expected_outcome(measures: FaceMeasures, damage: Damage, model: str | None) -> str:
    """The expected result in plain words, as the guides put it."""
    if abs(measures.yaw) > TURNED_AWAY:
        turned = f"turned away ({measures.yaw:+.0f} degrees)"
        return f"{turned}: restorers are trained on near-frontal faces, results vary"
    if damage is Damage.NONE:
        return "sharp and clean: nothing to restore, kept as it is"
    detail = f"detail of a {measures.effective_width:.0f} px face"
    if measures.width < SMALL_FACE:
        return f"small face ({measures.width:.0f} px, {detail}): fair, much new detail is invented"
    if damage is Damage.SEVERE:
        return f"heavily damaged ({detail}): much detail is invented, identity may drift"
    if measures.jpeg_quality is not None and measures.jpeg_quality < MODERATE_QUALITY:
        return f"compressed (JPEG quality {measures.jpeg_quality}): artefacts removed, good"
    return f"{damage.value} blur or noise ({detail}): good to excellent"


def largest_scale(scale: float | str, size: tuple[int, int]) -> float:
    """The largest scale an option's value may come to on a picture of ``size`` (width, height)."""
    return within_budget(face_scale_for(0), size) if scale == AUTO else float(scale)


def auto_scale(size: tuple[int, int], analyses: Sequence[FaceAnalysis]) -> float:
    """The picture's scale: the smallest important face's (faces at least IMPORTANT_SHARE of the largest
    one's width; 2x without faces), within budget. ``size`` is (width, height)."""
    widths = [analysis.measures.width for analysis in analyses]
    important = [width for width in widths if width >= IMPORTANT_SHARE * max(widths, default=0)]
    return within_budget(max((face_scale_for(width) for width in important), default=2.0), size)


def within_budget(scale: float, size: tuple[int, int]) -> float:
    """``scale`` lowered to keep the result within AUTO_SCALE_PIXELS, but never below 1."""
    budget = math.sqrt(AUTO_SCALE_PIXELS / max(size[0] * size[1], 1))
    return round(max(1.0, min(scale, budget)), 2)
