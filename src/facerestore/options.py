"""Every user-facing option, declared once: type, closed set or range, default and help text.

The shells derive their surface from these declarations: the CLI its flags and help, the HTTP API its form
fields, their validation and the OpenAPI description, and the web page its choices (through the API). An
``Expose`` marker in a field's ``Annotated`` metadata says where beyond the Python API an option appears.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

from facerestore import registry, runtime
from facerestore.errors import OptionError, option
from facerestore.image_io import DEFAULT_MAX_PIXELS
from facerestore.upscaling import Precision

MAX_SCALE = 8.0


@dataclass(frozen=True)
class Expose:
    """Where an option appears beyond the Python API; ``flags`` are its CLI spellings (the first one is shown
    in messages; default ``--name-with-dashes``)."""

    cli: bool = True
    http: bool = True
    flags: tuple[str, ...] = ()


CLI_ONLY = Expose(http=False)  # a choice about this machine's files or hardware, not a remote client's
INTERNAL = Expose(cli=False, http=False)  # a tuning knob for the Python API and benchmarks


@dataclass(frozen=True)
class Choices:
    """A closed set of names known only at run time (registry entries), validated like a ``Literal``."""

    what: str  # how messages name the option's values ("face model")
    values: tuple[str, ...]
    hint: Callable[[str], str | None] = lambda value: None  # explains a near miss

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, core_schema.str_schema())

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}

    def _check(self, value: str) -> str:
        if value in self.values:
            return value
        reason = self.hint(value) or f"unknown {self.what} '{value}' (choose from {', '.join(self.values)})"
        raise PydanticCustomError("choice", reason)


AUTO = "auto"


@dataclass(frozen=True)
class NumberOrAuto:
    """A number from ``minimum`` to ``maximum``, or 'auto': chosen per picture from its faces' analysis.
    The JSON schema keeps the range at its top level (it constrains numbers only), as a plain number's."""

    minimum: float
    maximum: float

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self._check, json_schema_input_schema=core_schema.float_schema()
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        number, auto = {"type": "number"}, {"type": "string", "enum": [AUTO]}
        return {"anyOf": [number, auto], "minimum": self.minimum, "maximum": self.maximum}

    def _check(self, value: object) -> float | str:
        if value == AUTO:
            return AUTO
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if not self.minimum <= number <= self.maximum:  # also refuses nan and inf
            raise PydanticCustomError(
                "number_or_auto", f"must be {AUTO} or a number from {self.minimum:g} to {self.maximum:g}"
            )
        return number


def _names(purpose: registry.Purpose) -> tuple[str, ...]:
    return tuple(entry.name for entry in registry.entries(purpose))


def _not_a_face_model(value: str) -> str | None:
    if value in _names(registry.Purpose.DETECTOR):
        return f"'{value}' is a face detector, not a face model"
    return None


DETECTORS = _names(registry.Purpose.DETECTOR)
BG_UPSAMPLERS = (*_names(registry.Purpose.UPSCALER), "none")
FACE_MODELS = ("auto", *_names(registry.Purpose.FACE_RESTORER), *_names(registry.Purpose.UPSCALER))
BgPrecision = Literal["auto", Precision]
OutputFormat = Literal["auto", "jpg", "png", "webp", "tiff", "bmp"]


def _cluster_address(value: str | None) -> str | None:
    if value is None or re.fullmatch(r"local:[1-9][0-9]*|(tcp|tls)://\S+", value):
        return value
    raise ValueError("give a Dask scheduler's address (tcp://host:8786) or local:N for N worker processes")


ClusterAddress = Annotated[str | None, AfterValidator(_cluster_address), CLI_ONLY]


class Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


Model = TypeVar("Model", bound=Options)


class DetectionOptions(Options):
    threshold: Annotated[float | None, Field(gt=0, lt=1)] = None
    """face score threshold, 0 to 1 (default: the detector's own)"""
    min_face_size: Annotated[float, Field(ge=0)] = 10.0
    """ignore faces narrower than this many pixels"""
    only_center_face: bool = False
    """restore only the face nearest the centre"""
    only_largest_face: bool = False
    """restore only the largest face"""
    base_side: Annotated[int, Field(ge=64), INTERNAL] = 1024
    """the whole photo is first searched at this long side"""
    max_side: Annotated[int, Field(ge=64), INTERNAL] = 2048
    """finer pyramid levels go up to this long side (in overlapping tiles)"""
    nms_threshold: Annotated[float, Field(gt=0, lt=1), INTERNAL] = 0.4
    """overlap above which two detections are one face"""


class RestoreOptions(Options):
    scale: Annotated[float | Literal["auto"], NumberOrAuto(1, MAX_SCALE), Expose(flags=("-s", "--scale"))] = (
        2.0
    )
    """output scale, any factor from 1 to 8, or auto: from the smallest important face (under 100 px wide:
    4x, up to 300 px: 2x, larger: 2x or less, keeping the result within 24 megapixels)"""
    face_model: Annotated[str, Choices("face model", FACE_MODELS, _not_a_face_model)] = "auto"
    """face restorer: auto (the best installed face prior, else realesrgan-x4plus, and none for a face its
    analysis finds sharp and clean; with blend auto, per face the restorer its analysis advises; a clip's
    frames are not analysed) or a model name for every face; codeformer and gpen-* are licensed for
    non-commercial use only"""
    model_path: Annotated[Path | None, CLI_ONLY] = None
    """a face model file to use instead of the model folder (face_model names the model it holds)"""
    fidelity: Annotated[float, Field(ge=0, le=1)] = 0.5
    """CodeFormer only: 0 = strongest restoration, 1 = closest to the input"""
    blend: Annotated[float | Literal["auto"], NumberOrAuto(0, 1)] = 1.0
    """mix of restored (1) and original (0) face, or auto: from each face's measured damage (a sharp, clean
    face is kept as it is, whatever the face model)"""
    color_fix: bool = True
    """keep the photo's colours in restored faces (off: the model's own colours)"""
    bg_upsampler: Annotated[str, Choices("background upsampler", ("auto", *BG_UPSAMPLERS))] = "auto"
    """background: auto (x4plus on an accelerator, compact on a CPU), a network, or none (Lanczos)"""
    bg_precision: BgPrecision = "auto"
    """background network arithmetic: auto (int8 for the compact network on a CPU), fp32, int8"""
    aligned: bool = False
    """the input is one aligned face crop: restore it whole, no detection"""
    detector: Annotated[str, Choices("detector", DETECTORS)] = "retinaface"
    """face detector"""
    detector_model_path: Annotated[Path | None, CLI_ONLY] = None
    """a detector model file (YuNet ONNX) instead of the model folder"""
    detection: DetectionOptions = DetectionOptions()
    device: Annotated[str, Choices("device", runtime.DEVICES), CLI_ONLY] = "cpu"
    """inference device: cpu (ONNX Runtime), openvino (OpenVINO on the CPU: bf16 where the CPU has bf16 units,
    3-5x faster; pip install 'facerestore[openvino]'), a GPU execution provider, or auto (a GPU provider,
    else openvino when installed, else cpu)"""
    tile: Annotated[int, Field(ge=32, le=2048), CLI_ONLY] = 256
    """background tile side in input pixels (smaller: less memory)"""
    upscale_first_below: Annotated[float, Field(ge=0), INTERNAL] = 100.0
    """faces narrower than this (px) get their crop from a super-resolved region before a face prior"""

    @model_validator(mode="after")
    def _model_files_fit(self) -> RestoreOptions:
        if self.model_path is not None and self.face_model == "auto":
            raise ValueError(
                f"{option('model_path')} needs {option('face_model')} naming the model it holds "
                "(e.g. gfpgan-1.4)"
            )
        if self.model_path is not None and self.face_model in _names(registry.Purpose.UPSCALER):
            raise ValueError(
                f"{option('model_path')} is for face-prior models; {self.face_model} ships installed"
            )
        if self.detector_model_path is not None and self.detector == "retinaface":
            raise ValueError(f"{option('detector_model_path')} is for yunet; retinaface ships installed")
        return self


class Encoding(Options):
    format: Annotated[OutputFormat, Expose(flags=("--format", "--ext"))] = "auto"
    """output format: auto keeps the input's (PNG for formats that cannot be written)"""
    quality: Annotated[int, Field(ge=1, le=100)] = 95
    """JPEG and WebP quality, 1 to 100"""


class VideoOptions(Options):
    """How restored video is encoded (sound and subtitles are copied as they are)."""

    codec: Literal["libx264", "libx265", "libvpx-vp9"] = "libx264"
    """video encoder (libx264 and libx265 are GPL, bundled with PyAV's FFmpeg)"""
    crf: Annotated[int, Field(ge=0, le=51)] = 18
    """constant-quality level: lower is better and larger (18: visually lossless for x264)"""
    preset: Literal["ultrafast", "veryfast", "fast", "medium", "slow", "veryslow"] = "medium"
    """encoder speed against file size"""
    stabilize: bool = True
    """follow each face across frames and smooth its landmarks, so restored faces do not flicker"""
    segment_seconds: Annotated[float, Field(gt=0), CLI_ONLY] = 60.0
    """on a cluster, clips are cut at keyframes into parts at least this long, restored by several workers"""
    temporal_blend: Annotated[float, Field(ge=0, le=0.95)] = 0.7
    """with stabilize: share of the previous frame's restored face, carried along by optical flow, mixed
    into each frame's where the motion is trusted (0: off)"""
    restore_every: Annotated[int, Field(ge=1, le=120)] = 6
    """with stabilize: run the face restorer on each face at least every N frames; in between, its last
    restored crop is carried along by optical flow (sooner when the flow loses the face; 1: every frame)"""


class BatchOptions(Options):
    """What a batch of files writes where (the CLI's restore command)."""

    output: Annotated[Path, Expose(http=False, flags=("-o", "--output"))]
    """output folder"""
    suffix: Annotated[str, Field(max_length=64, pattern=r"^[^/\\\x00]*$"), CLI_ONLY] = ""
    """added to each output file's name (no folder separators)"""
    overwrite: Annotated[bool, CLI_ONLY] = False
    """replace existing outputs (never an input)"""
    save_faces: Annotated[bool, CLI_ONLY] = False
    """also save each face's aligned crop before and after"""
    compare: Annotated[bool, CLI_ONLY] = False
    """also save a side-by-side before/after image"""
    report: Annotated[Path | None, CLI_ONLY] = None
    """write a JSON report: each image's faces, timings and error"""
    max_pixels: Annotated[int, Field(ge=1), CLI_ONLY] = DEFAULT_MAX_PIXELS
    """refuse images with more pixels than this (decompression bombs)"""
    resume: Annotated[bool, CLI_ONLY] = False
    """skip inputs whose output exists (outputs are written whole or not at all), to continue a batch"""
    cluster: ClusterAddress = None
    """run on a Dask cluster: a scheduler's address (tcp://host:8786) or local:N worker processes"""
    encoding: Encoding = Encoding()
    video: VideoOptions = VideoOptions()

    @model_validator(mode="after")
    def _resume_or_overwrite(self) -> BatchOptions:
        if self.resume and self.overwrite:
            raise ValueError(
                f"{option('resume')} keeps existing outputs; {option('overwrite')} replaces them"
            )
        return self


# -- deriving surfaces


@dataclass(frozen=True)
class OptionField:
    """One option as the shells see it: flat name, where it sits in the nested options, its declaration."""

    name: str
    path: tuple[str, ...]
    info: FieldInfo
    expose: Expose

    @property
    def flags(self) -> tuple[str, ...]:
        return self.expose.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def flag(self) -> str:
        """The spelling messages use: the long flag."""
        return next(flag for flag in self.flags if flag.startswith("--"))

    @property
    def help(self) -> str:
        return " ".join((self.info.description or "").split())

    @property
    def choices(self) -> tuple[str, ...] | None:
        if get_origin(self.info.annotation) is Literal:
            return tuple(get_args(self.info.annotation))
        declared = next((item for item in self.info.metadata if isinstance(item, Choices)), None)
        return declared.values if declared else None


def _expose(info: FieldInfo) -> Expose:
    return next((item for item in info.metadata if isinstance(item, Expose)), Expose())


def _nested_model(info: FieldInfo) -> type[Options] | None:
    kind = info.annotation
    return kind if isinstance(kind, type) and issubclass(kind, Options) else None


def option_fields(model: type[Options], path: tuple[str, ...] = ()) -> Iterator[OptionField]:
    """The model's options, nested models flattened (their field names are unique across the nesting)."""
    for name, info in model.model_fields.items():
        nested = _nested_model(info)
        if nested is not None:
            yield from option_fields(nested, (*path, name))
        else:
            yield OptionField(name, (*path, name), info, _expose(info))


def cli_fields(model: type[Options]) -> list[OptionField]:
    return [field for field in option_fields(model) if field.expose.cli]


def http_fields(model: type[Options]) -> list[OptionField]:
    return [field for field in option_fields(model) if field.expose.http]


def build(
    model: type[Model], values: Mapping[str, Any], fields: Iterable[OptionField] | None = None
) -> Model:
    """The options from flat values (absent ones take their defaults), accepting only ``fields`` (default:
    all); a one-line OptionError naming the option when a value does not fit."""
    nested: dict[str, Any] = {}
    paths = {field.name: field.path for field in (fields or option_fields(model))}
    for name, value in values.items():
        if name not in paths:
            raise OptionError(f"unknown option '{name}' (known: {', '.join(paths)})")
        *parents, leaf = paths[name]
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    try:
        return model.model_validate(nested)
    except ValidationError as error:
        raise OptionError(describe_error(error)) from None


def describe_error(error: ValidationError) -> str:
    """The first problem of a validation error in one line."""
    problem = error.errors(include_url=False)[0]
    message = problem["msg"].removeprefix("Value error, ")
    location = [part for part in problem["loc"] if isinstance(part, str)]
    if not location:
        return message
    given = problem.get("input")
    shown = (
        f" (got {given!r})" if isinstance(given, str | int | float) and problem["type"] != "choice" else ""
    )
    return f"{option(location[-1])}: {message}{shown}"
