"""The methods the quality benchmark compares, each turning a degraded face into a restored one of the same
size: two classical baselines, every face restorer the engine can run here, and the full pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

import cv2
import numpy as np
from degradations import upsample
from metrics import seam_ratio

from facerestore import registry
from facerestore.image_io import picture_from_array
from facerestore.pipeline import RestoredFace, RestoreOptions, Restorer
from facerestore.restoration import resolve_face_model

UNSHARP_SIGMA = 1.5  # pixels of a 512 face
UNSHARP_AMOUNT = 0.8


@dataclass(frozen=True)
class Degraded:
    lowres: np.ndarray  # the degraded image at its own (low) resolution
    image: np.ndarray  # the same upsampled to the face size (bicubic): every network's input


@dataclass
class MethodOutput:
    image: np.ndarray
    extras: dict[str, float | bool | int | str] = field(default_factory=dict)


class Method(Protocol):
    name: str

    def run(self, degraded: Degraded) -> MethodOutput: ...


class Bicubic:
    """The degraded input itself: the low-resolution image enlarged bicubically."""

    name = "bicubic"

    def run(self, degraded: Degraded) -> MethodOutput:
        return MethodOutput(degraded.image)


class LanczosUnsharp:
    name = "lanczos+unsharp"

    def run(self, degraded: Degraded) -> MethodOutput:
        side = degraded.image.shape[0]
        enlarged = upsample(degraded.lowres, side, cv2.INTER_LANCZOS4).astype(np.float32)
        blurred = cv2.GaussianBlur(enlarged, (0, 0), UNSHARP_SIGMA * side / 512)
        sharpened = enlarged + UNSHARP_AMOUNT * (enlarged - blurred)
        return MethodOutput(np.clip(sharpened + 0.5, 0, 255).astype(np.uint8))


class AlignedRestorer:
    """One face restorer through the engine's aligned-crop path (``--aligned``), at 1x."""

    def __init__(self, face_model: str) -> None:
        options = RestoreOptions(scale=1, face_model=face_model, bg_upsampler="none", aligned=True)
        self.restorer = Restorer(options)
        self.face_model = face_model
        self.name = f"{face_model} (aligned)"

    def run(self, degraded: Degraded) -> MethodOutput:
        result = self.restorer.restore(picture_from_array(degraded.image))
        return MethodOutput(result.picture.pixels, {"crop_size": result.faces[0].crop_size})


class AutomaticRestorer:
    """The engine's automatic choice (``--face-model auto --blend auto``) through the aligned-crop path at 1x:
    each face's analysis picks the restorer and how strongly it is blended in."""

    name = "auto (aligned)"

    def __init__(self) -> None:
        options = RestoreOptions(scale=1, blend="auto", bg_upsampler="none", aligned=True)
        self.restorer = Restorer(options)

    def run(self, degraded: Degraded) -> MethodOutput:
        result = self.restorer.restore(picture_from_array(degraded.image))
        [face] = result.faces
        damage = face.analysis.advice.damage.value if face.analysis else "unknown"
        extras: dict[str, float | bool | int | str] = {
            "chosen": face.model,
            "blend": face.blend,
            "damage": damage,
        }
        return MethodOutput(result.picture.pixels, extras)


@cache
def _backdrop() -> np.ndarray:
    """A real photo with no face in it (scikit-image's coffee cup, public domain), centre square."""
    from skimage import data  # a development dependency, like the benchmark itself

    photo = data.coffee()
    height, width = photo.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return np.ascontiguousarray(photo[top : top + side, left : left + side])


def face_canvas(face: np.ndarray) -> tuple[np.ndarray, slice]:
    """The face in the middle of a real photo twice its side: what the pipeline gets is a picture with a face
    in it, which it must find, align, restore and paste back."""
    side = face.shape[0]
    canvas = cv2.resize(_backdrop(), (2 * side, 2 * side), interpolation=cv2.INTER_AREA)
    inner = slice(side // 2, side // 2 + side)
    canvas[inner, inner] = face
    return canvas, inner


def _face_in(faces: tuple[RestoredFace, ...], inner: slice) -> RestoredFace | None:
    inside = [
        record
        for record in faces
        if inner.start <= record.face.center[0] < inner.stop
        and inner.start <= record.face.center[1] < inner.stop
    ]
    return max(inside, key=lambda record: record.face.score, default=None)


class FullPipeline:
    """The whole engine on a picture with the face in it: detect, align, restore, paste back (at 1x, with
    no background network, so the face pixels are directly comparable with the other methods'). 'auto' is
    resolved to the plan's model and named, so every face goes through it: the row measures that restorer
    in the pipeline, not the per-face choice (the automatic row measures that)."""

    def __init__(self, face_model: str = "auto") -> None:
        self.face_model = resolve_face_model(face_model).name
        options = RestoreOptions(scale=1, face_model=self.face_model, bg_upsampler="none")
        self.restorer = Restorer(options)
        self.name = f"pipeline ({self.face_model})"

    def run(self, degraded: Degraded) -> MethodOutput:
        canvas, inner = face_canvas(degraded.image)
        result = self.restorer.restore(picture_from_array(canvas))
        output = result.picture.pixels
        record = _face_in(result.faces, inner)
        extras: dict[str, float | bool | int | str] = {
            "pipeline_detected": record is not None,
            "faces_in_canvas": len(result.faces),
        }
        if record is not None:
            extras["seam"] = seam_ratio(output, canvas, record.face, record.crop_size, 1.0)
        return MethodOutput(np.ascontiguousarray(output[inner, inner]), extras)


def _why_missing(entry: registry.ModelEntry) -> str:
    if entry.python_package:
        return f"not installed (pip package {entry.python_package} missing)"
    return (
        f"weights not installed (no {registry.model_dir() / entry.filename}; downloading them needs internet)"
    )


def restorer_models() -> tuple[list[str], list[str]]:
    """Registry models the engine can run as face restorers here, and why each other one is skipped."""
    runnable, skipped = [], []
    for entry in registry.entries():
        if entry.purpose is registry.Purpose.DETECTOR:
            continue
        if registry.is_installed(entry):
            runnable.append(entry.name)
        else:
            skipped.append(f"{entry.name}: {_why_missing(entry)}")
    return runnable, skipped
