"""Temporal blending: each face's restored crop mixed with the previous frame's, carried along by motion.

A restorer invents detail (skin, lashes, hair) afresh in every frame, so even a perfectly steady alignment
leaves the face shimmering. Here the previous frame's restored crop is warped onto the current one by
optical flow (OpenCV DIS) computed on the *input* aligned crops, and mixed in where the flow is trustworthy:
forward and backward flow must agree, so a region that moved unpredictably or came into view (a hand, an
opening mouth) takes the new frame alone. The mixed crop is remembered, so the blend is a running average
along the face's motion. A new track (and so a scene cut) starts from its own frame.

Carrying goes further: between two runs of the restorer, a face's last restored crop (its key) is carried
to the current frame by the same flow, and the input's own change since the key (light, colour, anything the
flow missed) is added at low frequency. The network then runs once every few frames instead of every frame,
and the detail it invents cannot shimmer between those runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

FLOW_SIDE = 128  # px: the input crops are compared at this side (the face is rarely sharper than this)
OCCLUSION_TOLERANCE = 1.0  # px at FLOW_SIDE: forward and backward flow must cancel to within this
CARRY_MIN_TRUSTED = 0.85  # a key is carried only while the flow is trusted on at least this share of the crop
CHANGE_SIGMA = 1.5  # input px: the input's change since the key is added blurred this much, without its noise


@dataclass(frozen=True)
class FaceMemory:
    """What one face track left behind in the previous frame."""

    source: np.ndarray  # the input aligned crop, gray uint8, FLOW_SIDE square
    restored: np.ndarray  # the crop as it was pasted, float32 RGB [0, 1], any square size


@dataclass(frozen=True)
class Motion:
    """Where each pixel of the current crop was in the previous one, and whether that can be trusted."""

    flow: np.ndarray  # (height, width, 2) float32 offsets, current -> previous, in the flow's pixels
    visible: np.ndarray  # (height, width) bool: forward-backward consistent and inside the picture


def flow_source(crop: np.ndarray) -> np.ndarray:
    """The input aligned crop (float RGB [0, 1] or uint8, any square size) as the flow sees it."""
    pixels = crop if crop.dtype == np.uint8 else (np.clip(crop, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    interpolation = cv2.INTER_AREA if gray.shape[0] > FLOW_SIDE else cv2.INTER_LINEAR
    return cv2.resize(gray, (FLOW_SIDE, FLOW_SIDE), interpolation=interpolation)


def _pixel_grid(width: int, height: int) -> np.ndarray:
    """Each pixel's own (x, y), float32, as cv2.remap takes sampling positions."""
    return np.dstack(np.meshgrid(np.arange(width), np.arange(height))).astype(np.float32)


def occlusion_mask(
    forward: np.ndarray, backward: np.ndarray, tolerance: float = OCCLUSION_TOLERANCE
) -> np.ndarray:
    """True where following ``forward`` (a -> b) and then ``backward`` (b -> a) comes back to the start
    within ``tolerance`` pixels and lands inside the picture: the pixel is seen in both (not occluded)."""
    height, width = forward.shape[:2]
    landing = _pixel_grid(width, height) + forward
    back_there = cv2.remap(backward, landing, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (
        (landing[..., 0] >= 0)
        & (landing[..., 0] <= width - 1)
        & (landing[..., 1] >= 0)
        & (landing[..., 1] <= height - 1)
    )
    return inside & (np.linalg.norm(forward + back_there, axis=2) < tolerance)


def motion(previous: np.ndarray, current: np.ndarray, tolerance: float = OCCLUSION_TOLERANCE) -> Motion:
    """The motion from the current input crop back to the previous one (both from ``flow_source``; any two
    gray uint8 pictures of one size will do, as the flicker figures use it)."""
    to_previous, to_current = _flow(current, previous), _flow(previous, current)
    return Motion(to_previous, occlusion_mask(to_previous, to_current, tolerance))


def _flow(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """DIS optical flow from ``start`` to ``end`` (gray uint8): for each start pixel, its offset in end."""
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return np.asarray(dis.calc(start, end, np.zeros((*start.shape, 2), np.float32)))


def warp_previous(restored: np.ndarray, moved: Motion, side: int) -> np.ndarray:
    """The previous restored crop resampled onto the current crop's ``side`` x ``side`` pixels."""
    to_flow = FLOW_SIDE / side
    centres = (_pixel_grid(side, side) + 0.5) * to_flow - 0.5  # current pixels in FLOW_SIDE units
    flow = cv2.resize(moved.flow, (side, side), interpolation=cv2.INTER_LINEAR)
    previous_side = restored.shape[0]
    sample_at = (centres + flow + 0.5) * (previous_side / FLOW_SIDE) - 0.5
    return cv2.remap(restored, sample_at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def trust_mask(moved: Motion, side: int) -> np.ndarray:
    """Where ``moved`` is trusted, as a (side, side, 1) weight softened so that occlusions leave no edge."""
    trusted = cv2.resize(moved.visible.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(trusted, (0, 0), side / FLOW_SIDE)[..., None]


def blend(
    memory: FaceMemory | None, source: np.ndarray, restored: np.ndarray, weight: float
) -> tuple[np.ndarray, FaceMemory]:
    """The crop to paste (``restored`` mixed with the previous one, ``weight`` of it, where the motion is
    trusted) and what to remember for the next frame. ``source`` comes from ``flow_source``; ``restored`` is
    float32 RGB. The weight is VideoOptions.temporal_blend (0.7 by default, chosen by measurement:
    docs/benchmarks.md)."""
    if memory is None or weight <= 0:
        return restored, FaceMemory(source, restored)
    moved = motion(memory.source, source)
    side = restored.shape[0]
    trusted = trust_mask(moved, side)
    previous = warp_previous(memory.restored, moved, side)
    mixed = restored + weight * trusted * (previous - restored)
    return mixed, FaceMemory(source, mixed)


@dataclass(frozen=True)
class KeyCrop:
    """A face's last crop from the restorer, with what carrying it needs, and how many frames ago it ran."""

    source: np.ndarray  # the input crop it was restored from, as ``flow_source`` makes it
    smooth_input: np.ndarray  # that input crop at the restored crop's side, blurred by ``smoothed``
    restored: np.ndarray  # float32 RGB [0, 1]
    age: int = 0


def key_crop(source: np.ndarray, before: np.ndarray, restored: np.ndarray) -> KeyCrop:
    """The key left by a run of the restorer on ``before`` (float32 RGB input crop) giving ``restored``."""
    return KeyCrop(source, smoothed(before, restored.shape[0]), restored)


def smoothed(crop: np.ndarray, side: int) -> np.ndarray:
    """``crop`` at ``side`` x ``side``, blurred by CHANGE_SIGMA of its own pixels."""
    sigma = CHANGE_SIGMA * side / crop.shape[0]
    return cv2.GaussianBlur(cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR), (0, 0), sigma)


def carry(
    key: KeyCrop | None, source: np.ndarray, before: np.ndarray, every: int
) -> tuple[np.ndarray, KeyCrop] | None:
    """The key's restored crop moved onto the current frame, plus the input's low-frequency change since the
    key (where the flow is not trusted: the current input crop enlarged), and the key one frame older. None
    when the restorer must run on this frame instead: no key yet, the key has been carried for ``every``
    frames, or the face changed too much for the flow to follow (an occlusion, a turn of the head).
    ``source`` and ``before`` are the current input crop as ``flow_source`` makes it and as float32 RGB."""
    if key is None or key.age + 1 >= every:
        return None
    return carry_along(key, source, before)


def carry_along(key: KeyCrop, source: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, KeyCrop] | None:
    """``carry`` however old the key: None only when the flow cannot follow the face."""
    moved = motion(key.source, source)
    if moved.visible.mean() < CARRY_MIN_TRUSTED:
        return None
    side = key.restored.shape[0]
    trusted = trust_mask(moved, side)
    plain = enlarged(before, side)
    change = smoothed(before, side) - warp_previous(key.smooth_input, moved, side)
    carried = warp_previous(key.restored, moved, side) + change
    crop = np.clip(plain + trusted * (carried - plain), 0.0, 1.0)
    return crop, dataclasses.replace(key, age=key.age + 1)


def enlarged(before: np.ndarray, side: int) -> np.ndarray:
    """The input crop enlarged to the restored crops' side, unrestored."""
    return cv2.resize(before, (side, side), interpolation=cv2.INTER_CUBIC)
