"""Faces followed across a video's frames, their landmarks smoothed so the restored face does not flicker.

Detections are matched to tracks by box overlap; each track's five landmarks go through a One Euro filter
(Casiez et al., CHI 2012: strong smoothing while a face is still, little lag when it moves), which is causal,
so frames stream through. A scene cut starts every track afresh. The state is an immutable value passed from
frame to frame: ``step(tracks, faces, time) -> (tracks, tracked faces)``; ``predicted(tracks, time)`` fills
a short gap in a track (a frame or two the detector missed) by moving its smoothed face on as it moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from facerestore.detection import Face

MATCH_IOU = 0.3  # boxes overlapping at least this much are the same face in consecutive frames
MAX_GAP_FRAMES = 5  # a track missing for longer has left the picture
FILL_GAP_FRAMES = 2  # a track missing for at most this long is still restored where it is predicted to be
SCENE_CUT_DIFFERENCE = 0.2  # mean change of a small gray thumbnail (0-1) above which the scene has cut
_THUMBNAIL = (64, 36)


@dataclass(frozen=True)
class OneEuro:
    """One Euro filter settings: ``min_cutoff`` (Hz) sets the smoothing at rest, in units of the face's
    size per second via the caller's normalisation; ``beta`` how fast it opens up with speed."""

    min_cutoff: float = 1.0
    beta: float = 2.0
    derivative_cutoff: float = 1.0


@dataclass(frozen=True)
class Track:
    id: int
    face: Face  # the smoothed face
    velocity: np.ndarray  # filtered landmark velocity, in face widths per second (the One Euro filter's)
    drift: np.ndarray  # the smoothed landmarks' own velocity, in face widths per second
    seen_at: float  # seconds
    first_frame: int
    last_frame: int
    frames: int


@dataclass(frozen=True)
class Tracks:
    tracks: tuple[Track, ...] = ()
    next_id: int = 0
    frame: int = -1
    settings: OneEuro = OneEuro()


@dataclass(frozen=True)
class TrackedFace:
    track_id: int
    face: Face


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    return overlap / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A small gray copy of a frame for scene-cut detection, values 0-1."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, _THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def is_scene_cut(previous: np.ndarray | None, current: np.ndarray) -> bool:
    return previous is not None and float(np.abs(current - previous).mean()) > SCENE_CUT_DIFFERENCE


def step(
    state: Tracks, faces: list[Face], seconds: float, scene_cut: bool = False
) -> tuple[Tracks, list[TrackedFace]]:
    """The next frame's tracks and its faces with smoothed landmarks, in the order of ``faces``."""
    frame = state.frame + 1
    alive = () if scene_cut else tuple(t for t in state.tracks if frame - t.last_frame <= MAX_GAP_FRAMES)
    matches = _match(alive, faces)
    next_id, updated, out = state.next_id, dict[int, Track](), []
    for index, face in enumerate(faces):
        track = matches.get(index)
        if track is None:
            track = Track(next_id, face, np.zeros(10), np.zeros(10), seconds, frame, frame, 1)
            next_id += 1
        else:
            track = _smoothed(track, face, seconds, frame, state.settings)
        updated[track.id] = track
        out.append(TrackedFace(track.id, track.face))
    kept = {track.id: track for track in alive} | updated
    return Tracks(tuple(kept.values()), next_id, frame, state.settings), out


def predicted(state: Tracks, seconds: float) -> list[TrackedFace]:
    """Faces of the tracks the detector missed in the current frame but saw within FILL_GAP_FRAMES, moved
    on as their smoothed landmarks last moved, so the paste goes on without a jump: a face lost for a frame
    or two (motion blur, a hand passing, a low score) stays restored instead of flashing back to its
    unrestored self. Causal, so that frames stream: a prediction, not an interpolation."""
    return [
        TrackedFace(track.id, _moved(track.face, track.drift * (seconds - track.seen_at)))
        for track in state.tracks
        if 1 <= state.frame - track.last_frame <= FILL_GAP_FRAMES
    ]


def _moved(face: Face, shift: np.ndarray) -> Face:
    """The face with each landmark moved by ``shift`` (10 values, in face widths), its box by their mean."""
    offsets = shift.reshape(-1, 2) * max(face.width, 1.0)
    points = tuple((float(x), float(y)) for x, y in face.landmark_array() + offsets)
    dx, dy = (float(value) for value in offsets.mean(axis=0))
    x1, y1, x2, y2 = face.box
    return replace(face, box=(x1 + dx, y1 + dy, x2 + dx, y2 + dy), landmarks=points)


def _match(tracks: tuple[Track, ...], faces: list[Face]) -> dict[int, Track]:
    """Greedy matching by box overlap, best pairs first."""
    pairs = sorted(
        (
            (iou(track.face.box, face.box), index, track)
            for index, face in enumerate(faces)
            for track in tracks
        ),
        key=lambda pair: -pair[0],
    )
    matched: dict[int, Track] = {}
    used: set[int] = set()
    for overlap, index, track in pairs:
        if overlap < MATCH_IOU or index in matched or track.id in used:
            continue
        matched[index] = track
        used.add(track.id)
    return matched


def _alpha(cutoff: float, elapsed: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / max(elapsed, 1e-6))


def _smoothed(track: Track, face: Face, seconds: float, frame: int, settings: OneEuro) -> Track:
    """The One Euro filter on the landmarks, measured in face widths so settings hold at any face size."""
    elapsed = max(seconds - track.seen_at, 1e-3)
    scale = max(face.width, 1.0)
    previous = track.face.landmark_array().ravel() / scale
    raw = face.landmark_array().ravel() / scale
    velocity_now = (raw - previous) / elapsed
    velocity = track.velocity + _alpha(settings.derivative_cutoff, elapsed) * (velocity_now - track.velocity)
    cutoff = settings.min_cutoff + settings.beta * float(np.abs(velocity).max())
    smooth = previous + _alpha(cutoff, elapsed) * (raw - previous)
    points = tuple((float(x), float(y)) for x, y in (smooth * scale).reshape(-1, 2))
    return replace(
        track,
        face=replace(face, landmarks=points),
        velocity=velocity,
        drift=(smooth - previous) / elapsed,
        seen_at=seconds,
        last_frame=frame,
        frames=track.frames + 1,
    )
