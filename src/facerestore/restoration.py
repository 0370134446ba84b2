"""Face restorers: a network that takes an aligned face crop and returns it restored.

Two kinds, both driven by registry entries:
- face-prior models (GFPGAN, CodeFormer, GPEN, RestoreFormer++) as ONNX files: fixed square input, values in
  the entry's range, CodeFormer's fidelity as an extra input;
- the offline default: a super-resolution network (Real-ESRGAN x4plus) run on a smaller crop, so the face
  comes out at 4x its crop size with real network detail, at the resolution the output needs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np

from facerestore import registry, runtime
from facerestore.errors import ModelError, OptionError
from facerestore.upscaling import NetworkUpscaler, TileOptions

_ONNX_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class FaceRestorer(Protocol):
    name: str
    template: str
    is_face_prior: bool  # a face prior sees a fixed-size crop, so tiny faces are super-resolved for it first

    def crop_size(self, needed_side: float) -> int:
        """Side of the aligned input crop to cut, given the side the face should have in the output."""

    def restore(self, crop: np.ndarray, fidelity: float) -> np.ndarray:
        """RGB float32 [0, 1] crop (S, S, 3) -> restored RGB float32 [0, 1] crop (kS, kS, 3)."""


class FacePriorRestorer:
    """Any ONNX face-prior model described by a registry entry: one image input, optional fidelity input."""

    def __init__(
        self, entry: registry.ModelEntry, device: str = "cpu", model_path: str | Path | None = None
    ) -> None:
        if entry.purpose is not registry.Purpose.FACE_RESTORER:
            raise ModelError(f"model '{entry.name}' is not a face restorer")
        self.name = entry.name
        self.template = entry.template
        self.entry = entry
        self.is_face_prior = True
        path = registry.require(entry, model_path)
        self.session = runtime.create_session(path, device, fixed_size=True)
        self.image_input, self.fidelity_input = self._check_contract(path)

    def _check_contract(self, path: Path) -> tuple[str, tuple[str, type] | None]:
        """Finds the image and fidelity inputs, refusing a file whose signature does not fit the entry."""
        size = self.entry.input_size
        images = [i for i in self.session.get_inputs() if len(i.shape) == 4]
        if len(images) != 1 or images[0].type not in _ONNX_FLOAT_TYPES:
            raise ModelError(
                f"{path}: expected one float image input [1, 3, {size}, {size}], "
                f"found {[(i.name, i.shape, i.type) for i in self.session.get_inputs()]}"
            )
        _, channels, height, width = images[0].shape
        if channels != 3 or any(isinstance(d, int) and d != size for d in (height, width)):
            raise ModelError(
                f"{path}: image input is {images[0].shape}, model '{self.name}' needs [1, 3, {size}, {size}]"
            )
        fidelity = None
        if self.entry.fidelity_input:
            match = [i for i in self.session.get_inputs() if i.name == self.entry.fidelity_input]
            if not match:
                raise ModelError(f"{path}: model '{self.name}' needs a '{self.entry.fidelity_input}' input")
            fidelity = (match[0].name, _ONNX_FLOAT_TYPES.get(match[0].type, np.float32))
        return images[0].name, fidelity

    def crop_size(self, needed_side: float) -> int:
        return self.entry.input_size

    def restore(self, crop: np.ndarray, fidelity: float) -> np.ndarray:
        low, high = self.entry.value_range
        blob = (crop.transpose(2, 0, 1)[None] * (high - low) + low).astype(np.float32)
        feeds: dict[str, np.ndarray] = {self.image_input: blob}
        if self.fidelity_input:
            name, dtype = self.fidelity_input
            feeds[name] = np.array([fidelity], dtype=dtype)
        output = self.session.run(None, feeds)[0]
        if output.ndim != 4 or output.shape[1] != 3:
            raise ModelError(f"model '{self.name}' returned shape {output.shape}, expected [1, 3, H, W]")
        restored = (output[0].transpose(1, 2, 0).astype(np.float32) - low) / (high - low)
        return np.clip(restored, 0.0, 1.0)


class SuperResolutionFaceRestorer:
    """Restores a face with a general super-resolution network: the default without a face prior."""

    template = "ffhq"
    is_face_prior = False
    min_crop, max_crop = 64, 256

    def __init__(self, upscaler: NetworkUpscaler) -> None:
        self.upscaler = upscaler
        self.name = upscaler.name

    def crop_size(self, needed_side: float) -> int:
        side = math.ceil(needed_side / self.upscaler.native_scale / 16) * 16
        return int(min(max(side, self.min_crop), self.max_crop))

    def restore(self, crop: np.ndarray, fidelity: float) -> np.ndarray:
        return self.upscaler.run(crop)


RECOMMENDED_FACE_PRIOR = "gfpgan-1.4"  # permissive licence, natural detail


def installed_face_priors() -> list[registry.ModelEntry]:
    return [e for e in registry.entries(registry.Purpose.FACE_RESTORER) if registry.is_installed(e)]


def auto_fallback_note(entry: registry.ModelEntry) -> str | None:
    """What to tell a user whose 'auto' found no face prior installed: once, with the command to fix it."""
    if entry.purpose is not registry.Purpose.UPSCALER:
        return None
    return (
        f"no face-prior model is installed, so faces are restored with {entry.name} (less facial detail); "
        f"for GFPGAN run: facerestore models download {RECOMMENDED_FACE_PRIOR}"
    )


def resolve_face_model(name: str = "auto") -> registry.ModelEntry:
    """'auto' takes the first installed face prior in registry order (GFPGAN 1.4 first), else Real-ESRGAN."""
    if name == "auto":
        priors = installed_face_priors()
        return priors[0] if priors else registry.get_entry("realesrgan-x4plus")
    entry = registry.get_entry(name)
    if entry.purpose is registry.Purpose.DETECTOR:
        raise OptionError(f"'{name}' is a face detector, not a face restorer")
    return entry


def create_face_restorer(
    name: str = "auto",
    device: str = "cpu",
    model_path: str | Path | None = None,
    network: NetworkUpscaler | None = None,
) -> FaceRestorer:
    """A face restorer; ``network``, when given, is the already loaded super-resolution network to use."""
    entry = resolve_face_model(name)
    if entry.purpose is registry.Purpose.UPSCALER:
        return SuperResolutionFaceRestorer(network or NetworkUpscaler(entry, device, TileOptions()))
    return FacePriorRestorer(entry, device, model_path)
