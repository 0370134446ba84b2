"""The whole job on one picture: detect, align, restore, upscale the background, paste back.

``Restorer`` is the one Python API that the CLI, the HTTP API and the web page call. It holds only its
options, what their 'auto' choices resolved to, and a pool of loaded networks (shared safely between
threads); each call's data flows through the stage functions as values and comes back as a
``RestoreResult``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from facerestore import registry, runtime
from facerestore.alignment import (
    AlignedFace,
    align_face,
    alignment_affine,
    crop_footprint,
    cut_crop,
    face_scale,
    rescale_affine,
)
from facerestore.analysis import FaceAnalysis, analyse_faces, auto_scale
from facerestore.blending import keep_native_detail, looks_gray, match_colour, paste_face, to_gray
from facerestore.detection import Face, SingleScaleDetector, detect_faces
from facerestore.image_io import Picture
from facerestore.networks import Networks
from facerestore.options import AUTO, RestoreOptions
from facerestore.pixels import from_float, output_size, resize, to_float
from facerestore.restoration import FaceRestorer, resolve_face_model
from facerestore.upscaling import BackgroundUpscaler, Precision

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)
# (face index, input aligned crop, restored crop to paste) -> the crop to paste instead; both float32 RGB
FaceRefiner = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
CropRestorer = Callable[[np.ndarray], np.ndarray]  # an input aligned crop -> its restored crop
# (face index, input aligned crop, the face's restorer) -> the restored crop: a video may hand back an earlier
# frame's restored crop carried along by motion instead of running the restorer
FaceReuse = Callable[[int, np.ndarray, CropRestorer], np.ndarray]
NATIVE_DETAIL_MAX_SIDE = 2048  # px: the largest crop at which a big face's own fine detail is merged back
SAW_ENOUGH = 0.8  # a restorer that saw at least this share of a face's own pixels across lost no detail
# A face record's note when an 'auto' value left the face alone.
KEPT = "kept: its analysis found it sharp and clean (a named face model and a numeric blend restore it)"


@dataclass(frozen=True)
class RestoredFace:
    face: Face
    model: str  # 'none': the face was left as it was
    crop_size: int
    upscaled_first: bool
    blend: float = 1.0
    analysis: FaceAnalysis | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.face.to_dict(),
            "model": self.model,
            "crop_size": self.crop_size,
            "upscaled_first": self.upscaled_first,
            "blend": round(self.blend, 3),
            "analysis": self.analysis.to_dict() if self.analysis else None,
            "kept": KEPT if self.model == "none" else None,
        }


@dataclass(frozen=True)
class RestoreResult:
    picture: Picture
    faces: tuple[RestoredFace, ...]
    face_model: str
    bg_upsampler: str
    timings: dict[str, float]
    crops: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (before, after) RGB uint8, when asked for
    scale: float = 1.0  # the scale applied ('auto' resolved)


def resolve_bg_upsampler(name: str, device: str) -> str:
    """'auto': Real-ESRGAN x4plus where an accelerator runs it; on a CPU the compact network, which costs
    ~1/30 of x4plus per pixel (x4plus: ~1.5 s per 128x128 tile on 2 cores)."""
    if name != "auto":
        return name
    return "realesrgan-x4plus" if runtime.uses_accelerator(device) else "realesr-compact-x4"


def resolve_bg_precision(precision: str, upsampler: str, device: str) -> Precision:
    """'auto': int8 for the compact network on ONNX Runtime's CPU provider (~1.5x faster, 43 dB from fp32);
    fp32 otherwise, since x4plus loses 7 dB in int8, accelerators gain little, and OpenVINO runs fp32 models
    in bf16, faster than their int8 form (docs/benchmarks.md)."""
    if precision != "auto":
        return cast(Precision, precision)
    return "int8" if upsampler.startswith("realesr-compact") and runtime.int8_pays(device) else "fp32"


def resolve_face_precision(face_model: str, device: str) -> Precision:
    """int8 for the compact network where int8 pays (43 dB from fp32, ~1.4x faster); fp32 for every other
    face restorer, since x4plus loses 7 dB in int8 and the face priors move visibly (docs/benchmarks.md)."""
    return "int8" if face_model.startswith("realesr-compact") and runtime.int8_pays(device) else "fp32"


@dataclass(frozen=True)
class Plan:
    """What the options' 'auto' choices resolved to on this machine, fixed when a ``Restorer`` is built, so
    a model installed mid-batch cannot make the report disagree with what ran."""

    face_model: registry.ModelEntry
    face_precision: Precision
    bg_upsampler: str
    bg_precision: Precision

    @classmethod
    def resolve(cls, options: RestoreOptions) -> Plan:
        face_model = resolve_face_model(options.face_model)
        registry.check_available(face_model, options.model_path)
        registry.check_available(registry.get_entry(options.detector), options.detector_model_path)
        upsampler = resolve_bg_upsampler(options.bg_upsampler, options.device)
        precision = resolve_bg_precision(options.bg_precision, upsampler, options.device)
        face_precision = resolve_face_precision(face_model.name, options.device)
        return cls(face_model, face_precision, upsampler, precision)

    def for_picture(
        self, options: RestoreOptions, size: tuple[int, int], analyses: Sequence[FaceAnalysis | None]
    ) -> PictureSettings:
        """The options' per-picture 'auto' values resolved from its faces' analyses (None: not analysed,
        which only options without 'auto' values allow); ``size`` is (width, height)."""
        if options.scale == AUTO:
            scale = auto_scale(size, [analysis for analysis in analyses if analysis is not None])
        else:
            scale = float(options.scale)
        return PictureSettings(scale, tuple(self._face_settings(options, a) for a in analyses))

    def _face_settings(self, options: RestoreOptions, analysis: FaceAnalysis | None) -> FaceSettings:
        """One face's restorer and strength. A named face model restores every face. 'auto' keeps a face its
        analysis finds sharp and clean (every network took 10-14 dB from such faces on the quality
        benchmark) and restores the others with the plan's model; with blend 'auto' too, each face gets the
        restorer and strength its analysis advises. Without a face prior that advice may name a compact
        network, best by PSNR on mild damage, but trained on animation it paints real faces flatter than
        x4plus (docs/video-faces.jpg), so it is not what a plain 'auto' does. A face not analysed (a clip's
        frame, for speed) takes the plan's model."""
        if analysis is None:
            assert options.blend != AUTO, "blend 'auto' needs each face's analysis"
            return FaceSettings(self.face_model, float(options.blend))
        advised = analysis.advice.face_model
        if advised is None and AUTO in (options.face_model, options.blend):
            return FaceSettings(None, 0.0)
        if options.blend != AUTO:
            return FaceSettings(self.face_model, float(options.blend))
        chosen = registry.get_entry(advised) if options.face_model == AUTO and advised else self.face_model
        return FaceSettings(chosen, analysis.advice.strength)


@dataclass(frozen=True)
class FaceSettings:
    """How one face is restored: the restorer (None: left as it is) and how strongly it is blended in."""

    face_model: registry.ModelEntry | None
    blend: float


@dataclass(frozen=True)
class PictureSettings:
    scale: float
    faces: tuple[FaceSettings, ...]


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start


def _rgb8(image: np.ndarray) -> np.ndarray:
    """The uint8 view the detector needs (16-bit photos are scaled down)."""
    return image if image.dtype == np.uint8 else (image // 257).astype(np.uint8)


class Restorer:
    """Restores faces in pictures with fixed options. Networks come from a ``Networks`` pool: ``load`` loads
    them up front, else the first restore does; restorers built with ``with_options`` share them.
    ``restore`` and ``detect`` are thread-safe."""

    def __init__(self, options: RestoreOptions | None = None, networks: Networks | None = None) -> None:
        self.options = options or RestoreOptions()
        self.plan = Plan.resolve(self.options)
        self.networks = networks or Networks()

    def with_options(self, options: RestoreOptions) -> Restorer:
        """Another restorer (say, another scale or fidelity) sharing this one's loaded networks."""
        return Restorer(options, self.networks)

    def load(self) -> None:
        """Loads every network these options use (a missing or broken model fails here, not mid-batch)."""
        if not self.options.aligned:
            self.detector()
            self.background()
        self.face_restorer()

    def detector(self) -> SingleScaleDetector:
        options = self.options
        return self.networks.detector(options.detector, options.device, options.detector_model_path)

    def background(self) -> BackgroundUpscaler:
        plan, options = self.plan, self.options
        return self.networks.background(plan.bg_upsampler, options.device, plan.bg_precision, options.tile)

    def face_restorer(self, entry: registry.ModelEntry | None = None) -> FaceRestorer:
        """The plan's face restorer, or the one ``entry`` names (an 'auto' choice for one face)."""
        chosen = entry or self.plan.face_model
        model_path = self.options.model_path if chosen == self.plan.face_model else None
        precision = resolve_face_precision(chosen.name, self.options.device)
        return self.networks.face_restorer(chosen, self.options.device, model_path, precision)

    def detect(self, picture: Picture) -> list[Face]:
        return detect_faces(self.detector(), _rgb8(picture.pixels), self.options.detection)

    def restore(
        self,
        picture: Picture,
        *,
        progress: ProgressCallback | None = None,
        keep_crops: bool = False,
        faces: Sequence[Face] | None = None,
        refine: FaceRefiner | None = None,
        reuse: FaceReuse | None = None,
        analyse: bool = True,
    ) -> RestoreResult:
        """Restores the picture's faces: those detected, or ``faces`` when given (a video's tracked and
        smoothed faces, say); ``reuse`` decides whether each face's restorer runs (a video's carried
        keys) and ``refine`` may change each restored crop before it is pasted (a video's temporal
        blending). Each face is analysed first (its record carries the analysis), and the options'
        'auto' values are resolved from those analyses, once for this picture; ``analyse=False`` skips the
        analysis where no 'auto' value but the face model's needs it (a clip's frames: ~0.1 s a face), and
        face model 'auto' then takes the plan's model for every face."""
        timer = _Timer()
        report = progress or (lambda stage, done, total: None)
        with timer.stage("detect"):
            report("detect", 0, 1)
            found = self._faces(picture, faces)
        with timer.stage("analyse"):
            wanted = analyse or AUTO in (self.options.scale, self.options.blend)
            analyses = analyse_faces(picture, found) if wanted else (None,) * len(found)
        settings = self.plan.for_picture(self.options, (picture.width, picture.height), analyses)
        if self.options.aligned:
            pixels, restored, crops = self._restore_aligned(
                picture.pixels, found[0], analyses[0], settings, timer
            )
        else:
            pixels, restored, crops = self._restore_photo(
                picture.pixels, found, analyses, settings, timer, report, (reuse, refine)
            )
        with timer.stage("upscale"):
            alpha = None if picture.alpha is None else resize(picture.alpha, pixels.shape[:2])
        with timer.stage("paste"):
            if picture.is_gray or looks_gray(picture.pixels):
                pixels = to_gray(pixels)
        report("done", 1, 1)
        return RestoreResult(
            picture=picture.with_pixels(pixels, alpha),
            faces=tuple(restored),
            face_model=self.plan.face_model.name,
            bg_upsampler=self.plan.bg_upsampler,
            timings={k: round(v, 4) for k, v in timer.totals.items()},
            crops=tuple(crops) if keep_crops else (),
            scale=settings.scale,
        )

    def _faces(self, picture: Picture, given: Sequence[Face] | None) -> list[Face]:
        """The faces to restore: an aligned crop is one face filling the picture."""
        if self.options.aligned:
            box = (0.0, 0.0, float(picture.width), float(picture.height))
            return [Face(box=box, score=1.0, landmarks=())]
        if given is not None:
            return list(given)
        return self.detect(picture)

    def _restore_photo(
        self,
        pixels: np.ndarray,
        faces: Sequence[Face],
        analyses: Sequence[FaceAnalysis | None],
        settings: PictureSettings,
        timer: _Timer,
        report: ProgressCallback,
        hooks: tuple[FaceReuse | None, FaceRefiner | None],
    ) -> tuple[np.ndarray, list[RestoredFace], list[tuple[np.ndarray, np.ndarray]]]:
        scale = settings.scale
        reuse, refine = hooks
        with timer.stage("upscale"):
            canvas = self.background().upscale(pixels, scale, lambda d, t: report("upscale", d, t))
            if not canvas.flags.writeable or np.shares_memory(canvas, pixels):
                canvas = canvas.copy()  # faces are pasted in place; the input picture stays untouched
        restored: list[RestoredFace] = []
        crops = []
        for index, (face, analysis, chosen) in enumerate(zip(faces, analyses, settings.faces, strict=True)):
            report("faces", index, len(faces))
            if chosen.face_model is None:
                with timer.stage("align"):
                    kept = to_float(align_face(pixels, face, 512).crop)
                restored.append(RestoredFace(face, "none", 0, False, 0.0, analysis))
                crops.append((from_float(kept, np.dtype(np.uint8)),) * 2)
                continue
            reuse_crop = functools.partial(reuse, index) if reuse else None
            record, before, after, affine = self._restore_face(pixels, face, chosen, scale, timer, reuse_crop)
            with timer.stage("paste"):
                after, affine = with_native_detail(pixels, after, affine, scale, record.crop_size)
            if refine is not None:
                with timer.stage("temporal"):
                    after = refine(index, before, after)
            with timer.stage("paste"):
                paste_face(canvas, after, rescale_affine(affine, scale), chosen.blend)
            restored.append(dataclasses.replace(record, analysis=analysis))
            crops.append((from_float(before, np.dtype(np.uint8)), from_float(after, np.dtype(np.uint8))))
        report("faces", len(faces), len(faces))
        return canvas, restored, crops

    def _restore_face(
        self,
        pixels: np.ndarray,
        face: Face,
        chosen: FaceSettings,
        scale: float,
        timer: _Timer,
        reuse: Callable[[np.ndarray, CropRestorer], np.ndarray] | None = None,
    ) -> tuple[RestoredFace, np.ndarray, np.ndarray, np.ndarray]:
        """Aligns, restores and colour-matches one face (or has ``reuse`` hand back an earlier restored crop);
        returns the affine from ``pixels`` to the result."""
        restorer = self.face_restorer(chosen.face_model)
        with timer.stage("align"):
            needed = 512 / face_scale(face, 512, restorer.template) * scale
            size = restorer.crop_size(needed)
            upscale_first = restorer.is_face_prior and face.width < self.options.upscale_first_below
        if upscale_first:
            with timer.stage("upscale"):
                aligned = self._align_from_enlarged_region(pixels, face, size, restorer.template)
        else:
            with timer.stage("align"):
                aligned = align_face(pixels, face, size, restorer.template)
        before = to_float(aligned.crop)

        def run(crop: np.ndarray) -> np.ndarray:
            restored = restorer.restore(crop, self.options.fidelity)
            return match_colour(restored, crop) if self.options.color_fix else restored

        with timer.stage("restore"):
            after = reuse(before, run) if reuse else run(before)
        affine = aligned.affine * (after.shape[0] / size)
        record = RestoredFace(face, restorer.name, size, upscale_first, chosen.blend)
        return record, before, after, affine

    def _align_from_enlarged_region(
        self, pixels: np.ndarray, face: Face, size: int, template: str
    ) -> AlignedFace:
        """Super-resolves just the face's neighbourhood, then aligns from it: a tiny face gets real detail
        instead of a blurry interpolation before the face prior sees it."""
        x, y, width, height = crop_footprint(alignment_affine(face, size, template), size, pixels.shape[:2])
        network = self.networks.region_upscaler(self.options.device)
        region = network.upscale(pixels[y : y + height, x : x + width], network.native_scale)
        local = Face(
            box=face.box, score=face.score, landmarks=tuple((px - x, py - y) for px, py in face.landmarks)
        ).scaled(network.native_scale)
        aligned = align_face(region, local, size, template)
        shift = np.array([[1, 0, -x], [0, 1, -y], [0, 0, 1]], dtype=np.float64)
        to_region = np.diag([network.native_scale, network.native_scale, 1.0]) @ shift
        return AlignedFace(crop=aligned.crop, affine=aligned.affine @ to_region, face=face)

    def _restore_aligned(
        self,
        pixels: np.ndarray,
        face: Face,
        analysis: FaceAnalysis | None,
        settings: PictureSettings,
        timer: _Timer,
    ) -> tuple[np.ndarray, list[RestoredFace], list[tuple[np.ndarray, np.ndarray]]]:
        """The whole input is one aligned face crop (``face``): restore it whole at the picture's scale."""
        height, width = pixels.shape[:2]
        target = output_size(height, width, settings.scale)
        chosen = settings.faces[0]
        original = to_float(pixels)
        if chosen.face_model is None:
            kept = from_float(resize(original, target), np.dtype(np.uint8))
            record = RestoredFace(face, "none", 0, False, 0.0, analysis)
            return from_float(resize(original, target), pixels.dtype), [record], [(kept, kept)]
        restorer = self.face_restorer(chosen.face_model)
        size = restorer.crop_size(max(target))
        with timer.stage("align"):
            before = resize(original, (size, size))
        with timer.stage("restore"):
            after = restorer.restore(before, self.options.fidelity)
            if self.options.color_fix:
                after = match_colour(after, before)
        with timer.stage("paste"):
            native = resize(original, after.shape[:2])
            if size < SAW_ENOUGH * max(height, width):
                after = keep_native_detail(after, native, size)
            mixed = after * chosen.blend + native * (1 - chosen.blend)  # the original at full detail
            result = from_float(resize(mixed, target), pixels.dtype)
        record = RestoredFace(face, restorer.name, size, False, chosen.blend, analysis)
        return (
            result,
            [record],
            [(from_float(before, np.dtype(np.uint8)), from_float(after, np.dtype(np.uint8)))],
        )


def with_native_detail(
    pixels: np.ndarray, restored: np.ndarray, affine: np.ndarray, scale: float, seen_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """A restorer that saw the face below its native resolution (a big face, or a fast crop) lost the
    photo's own fine detail: merges it back at the face's output resolution (at most
    NATIVE_DETAIL_MAX_SIDE). ``affine`` maps ``pixels`` into ``restored``; returns the crop to paste and the
    affine mapping ``pixels`` into it."""
    native_side = restored.shape[0] / math.sqrt(abs(np.linalg.det(affine[:, :2])))
    if seen_side >= SAW_ENOUGH * native_side:
        return restored, affine
    side = int(np.clip(round(native_side * scale), restored.shape[0], NATIVE_DETAIL_MAX_SIDE))
    affine = affine * (side / restored.shape[0])
    native = to_float(cut_crop(pixels, affine, side))
    return keep_native_detail(restored, native, seen_side), affine
