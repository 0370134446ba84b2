"""Flicker figures: how much a clip's faces shake and shimmer from frame to frame (lower is steadier).

The same math serves every clip's report (measured as the clip streams, at a small flow size) and
benchmarks/flicker.py (offline, at full resolution), so the two measure the same thing:

- warping error (Lai et al., ECCV 2018): each frame against the next one warped back onto it by optical flow
  computed on the *input* frames (OpenCV DIS), counted where forward and backward flow agree and land inside
  the picture, and inside the faces' regions; the input's own error (Lanczos-sampled at the output's size,
  as the background is upscaled) is the reference an upscale that adds no flicker scores;
- landmark jitter: the second difference of a face's 5 landmarks over three consecutive frames, divided by
  its inter-eye distance in the middle one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from facerestore import temporal
from facerestore.detection import Face

OCCLUSION_TOLERANCE = 0.5  # px at the flow's size: forward and backward flow must cancel to within this
FACE_REGION = 1.6  # a face's region: its box enlarged this much about its centre (where it is pasted)
REPORT_FLOW_SIDE = 160  # px: a clip's report computes flow on its input frames shrunk to this longest side
REPORT_POINTS = 64 * 64  # a clip's report measures about this many pixels of each face's region, at most
SIGNIFICANT_DIGITS = 3


@dataclass(frozen=True)
class Mean:
    """A running mean: the total and how many values it holds."""

    total: float = 0.0
    count: int = 0

    def plus(self, value: float | None) -> Mean:
        return self if value is None else Mean(self.total + value, self.count + 1)

    def __add__(self, other: Mean) -> Mean:
        return Mean(self.total + other.total, self.count + other.count)

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


def frame_motion(now: np.ndarray, later: np.ndarray) -> temporal.Motion:
    """The flow from one gray uint8 frame to the next, and where it can be trusted."""
    return temporal.motion(later, now, OCCLUSION_TOLERANCE)


def face_region(boxes: Iterable[tuple[float, ...]], shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """A (height, width) bool mask holding each box (x1, y1, x2, y2 in the frame's pixels; ``scale`` mask
    pixels to one of the frame's) enlarged FACE_REGION times about its centre."""
    region = np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in (tuple(value * scale for value in box[:4]) for box in boxes):
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half_w, half_h = FACE_REGION / 2 * (x1 - x0), FACE_REGION / 2 * (y1 - y0)
        rows = slice(max(0, int(cy - half_h)), int(cy + half_h))
        region[rows, max(0, int(cx - half_w)) : int(cx + half_w)] = True
    return region


def warping_error(
    now: np.ndarray,
    later: np.ndarray,
    moved: temporal.Motion,
    region: np.ndarray | None = None,
    size: tuple[int, int] | None = None,
    points: int | None = None,
) -> Mean:
    """The squared differences (0-1 scale, every channel) between ``now`` and ``later`` warped back onto it
    by ``moved`` (flow ``now`` -> ``later`` at any size), where the flow is trusted and inside ``region`` (a
    mask at the flow's size). Measured on a canvas of ``size`` (width, height; default the frames' own):
    smaller frames are Lanczos-sampled onto it, as an upscale would. Only the region's bounding box is
    touched, and with ``points`` only a regular grid of about that many of its pixels: an estimate of the
    mean that keeps each pixel's own detail, at a cost that does not grow with the face."""
    canvas = size or (now.shape[1], now.shape[0])
    counted = moved.visible if region is None else moved.visible & region
    sampled = _sampled_pixels(counted, canvas, points)
    if sampled is None:
        return Mean()
    grid, inside = sampled
    to_flow = np.array([counted.shape[1] / canvas[0], counted.shape[0] / canvas[1]], np.float32)
    flow_at = (grid + 0.5) * to_flow - 0.5
    flow = cv2.remap(moved.flow, flow_at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) / to_flow
    difference = ((_sample(now, grid, canvas) - _sample(later, grid + flow, canvas)) / 255.0) ** 2
    return Mean(float(difference[inside].sum()), int(difference[inside].size))


def _sampled_pixels(
    counted: np.ndarray, canvas: tuple[int, int], points: int | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The canvas pixels to measure, as (x, y) float32 positions, and which of them count: a regular grid
    of about ``points`` (all when None) over the bounding box of ``counted`` (a mask at the flow's size),
    each pixel counted as its nearest flow pixel is. None when nothing counts."""
    width, height = canvas
    rows = (np.arange(height) * (counted.shape[0] / height)).astype(int)
    columns = (np.arange(width) * (counted.shape[1] / width)).astype(int)
    held_rows = np.flatnonzero(np.asarray(counted.any(axis=1))[rows])
    held_columns = np.flatnonzero(np.asarray(counted.any(axis=0))[columns])
    if not held_rows.size:
        return None
    (y0, y1), (x0, x1) = (held_rows[0], held_rows[-1] + 1), (held_columns[0], held_columns[-1] + 1)
    step = max(1, math.ceil(math.sqrt((y1 - y0) * (x1 - x0) / points))) if points else 1
    grid = np.dstack(np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))).astype(np.float32)
    return grid, counted[np.ix_(rows[y0:y1:step], columns[x0:x1:step])]


def _sample(frame: np.ndarray, at: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    """``frame`` at canvas positions ``at``, float32: bilinear at the canvas's size, else Lanczos-upscaled."""
    if (frame.shape[1], frame.shape[0]) == canvas:
        positions, interpolation = at, cv2.INTER_LINEAR
    else:
        to_frame = np.array([frame.shape[1] / canvas[0], frame.shape[0] / canvas[1]], np.float32)
        positions, interpolation = (at + 0.5) * to_frame - 0.5, cv2.INTER_LANCZOS4
    sampled = cv2.remap(frame, positions, None, interpolation, borderMode=cv2.BORDER_REPLICATE)
    return sampled.astype(np.float32)


def landmark_accelerations(series: np.ndarray) -> np.ndarray:
    """One face's landmarks over consecutive frames, (frames, 5, 2) pixels: each landmark's second
    difference, over the inter-eye distance in the middle frame, (frames - 2) * 5 values."""
    middle = series[1:-1]
    eyes = np.maximum(np.linalg.norm(middle[:, 1] - middle[:, 0], axis=1), 1.0)
    second = np.linalg.norm(series[2:] - 2 * middle + series[:-2], axis=2)
    return (second / eyes[:, None]).ravel()


# -- a clip's figures, measured frame by frame as it streams


@dataclass(frozen=True)
class Figures:
    """One face track's flicker figures, or a whole clip's, as running means: segments of a clip add up."""

    jitter: Mean = Mean()  # landmark jitter of the landmarks the paste used (smoothed when stabilizing)
    jitter_detected: Mean = Mean()  # ... of the landmarks as detected
    warping: Mean = Mean()  # warping error of the output on the faces' regions, a mean over frame pairs
    warping_input: Mean = Mean()  # ... of the input, sampled at the output's size

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.jitter + other.jitter,
            self.jitter_detected + other.jitter_detected,
            self.warping + other.warping,
            self.warping_input + other.warping_input,
        )

    def to_dict(self) -> dict[str, float | None]:
        output, reference = self.warping.value, self.warping_input.value
        return {
            "landmark_jitter": _rounded(self.jitter.value),
            "landmark_jitter_detected": _rounded(self.jitter_detected.value),
            "warping_error": _rounded(output),
            "warping_error_input": _rounded(reference),
            "warping_error_x_input": round(output / reference, 2) if output and reference else None,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.{SIGNIFICANT_DIGITS}g}")


@dataclass(frozen=True)
class SeenFace:
    """A face in one frame: its track, and its landmarks as detected (None where the detector missed it and
    the tracker predicted it) and as the paste used them."""

    track_id: int
    detected: Face | None
    used: Face


@dataclass(frozen=True)
class Frame:
    """One frame as the figures need it, upright."""

    index: int
    scene_cut: bool  # since the frame before
    input: np.ndarray  # RGB uint8
    output: np.ndarray  # RGB uint8, restored
    faces: tuple[SeenFace, ...]


@dataclass(frozen=True)
class _Landmarks:
    """One track's landmarks in its last two consecutive frames (fewer at its start)."""

    frame: int
    detected: tuple[np.ndarray, ...]
    used: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class _Measured:
    """A frame kept for the next pair's warping error, with its input shrunk for the flow."""

    frame: Frame
    small: np.ndarray  # gray uint8, REPORT_FLOW_SIDE on its longest side


@dataclass(frozen=True)
class Meter:
    """What the figures remember from frame to frame: the state ``measure`` passes on."""

    previous: _Measured | None = None  # the frame before, when it had faces
    landmarks: Mapping[int, _Landmarks] = field(default_factory=dict)


def measure(meter: Meter, frame: Frame) -> tuple[Meter, Figures, dict[int, Figures]]:
    """The next meter, and what this frame adds to the clip's figures and to each of its tracks'. A pair
    of frames across a scene cut is not measured: a cut is not flicker."""
    landmarks, jitter = _jitter_step(meter.landmarks, frame)
    previous = meter.previous
    if previous is None or previous.frame.index != frame.index - 1 or frame.scene_cut:
        previous = None
    small = _flow_picture(frame.input) if frame.faces or previous else None
    errors = _pair_errors(previous, frame, small) if previous and small is not None else {}
    tracks = {
        track_id: jitter.get(track_id, Figures()) + _pair_figures(*errors.get(track_id, (Mean(), Mean())))
        for track_id in jitter | errors
    }
    outputs = sum((output for output, _ in errors.values()), Mean())
    inputs = sum((reference for _, reference in errors.values()), Mean())
    whole = sum(jitter.values(), Figures()) + _pair_figures(outputs, inputs)
    kept = _Measured(frame, small) if frame.faces and small is not None else None
    return Meter(kept, landmarks), whole, tracks


def _jitter_step(
    recent: Mapping[int, _Landmarks], frame: Frame
) -> tuple[dict[int, _Landmarks], dict[int, Figures]]:
    """Each face's last landmarks, and its jitter once a track has three frames without a break."""
    kept, figures = {}, {}
    for face in frame.faces:
        before = recent.get(face.track_id)
        if before is None or before.frame != frame.index - 1:
            before = _Landmarks(frame.index, (), ())
        detected = () if face.detected is None else (*before.detected, face.detected.landmark_array())
        used = (*before.used, face.used.landmark_array())
        kept[face.track_id] = _Landmarks(frame.index, detected[-2:], used[-2:])
        if len(used) == 3:
            figures[face.track_id] = Figures(
                jitter=_mean_of(landmark_accelerations(np.stack(used))),
                jitter_detected=_mean_of(landmark_accelerations(np.stack(detected)))
                if len(detected) == 3
                else Mean(),
            )
    return kept, figures


def _mean_of(values: np.ndarray) -> Mean:
    return Mean(float(values.sum()), int(values.size))


def _pair_errors(previous: _Measured, frame: Frame, small: np.ndarray) -> dict[int, tuple[Mean, Mean]]:
    """Each of the earlier frame's faces: the output's and the input's warping error on its region (the
    regions made disjoint, so that they add up to the clip's)."""
    moved = frame_motion(previous.small, small)
    scale = small.shape[1] / frame.input.shape[1]
    size = (frame.output.shape[1], frame.output.shape[0])
    claimed = np.zeros(small.shape, bool)
    errors = {}
    for face in previous.frame.faces:
        region = face_region([face.used.box], small.shape, scale) & ~claimed  # the detected box, or predicted
        claimed |= region
        errors[face.track_id] = (
            warping_error(previous.frame.output, frame.output, moved, region, size, REPORT_POINTS),
            warping_error(previous.frame.input, frame.input, moved, region, size, REPORT_POINTS),
        )
    return errors


def _pair_figures(output: Mean, reference: Mean) -> Figures:
    """One pair of frames' warping errors as figures: each pair counts once, however large its faces."""
    return Figures(warping=Mean().plus(output.value), warping_input=Mean().plus(reference.value))


def _flow_picture(rgb: np.ndarray) -> np.ndarray:
    """The frame in gray, shrunk to REPORT_FLOW_SIDE on its longest side: the flow costs little there."""
    height, width = rgb.shape[:2]
    shrink = min(1.0, REPORT_FLOW_SIDE / max(height, width))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
