"""Form fields -> engine options: every value parsed and checked before a job is queued."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from facerestore.detection import DetectionOptions
from facerestore.errors import OptionError
from facerestore.image_io import Picture
from facerestore.pipeline import RestoreOptions
from facerestore.server.config import ServerConfig
from facerestore.server.engine import check_models

OUTPUT_FORMATS = {"auto": "auto", "png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
_BROWSER_FORMATS = ("JPEG", "PNG", "WEBP")  # 'auto' keeps these; anything else comes back as PNG
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_MAX_NAME = 64


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"{name}: '{text[:40]}' is not a number") from None
    if not math.isfinite(value):
        raise OptionError(f"{name}: must be a finite number, not '{text[:40]}'")
    return value


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OptionError(f"{name}: '{text[:40]}' is not a whole number") from None


def _flag(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise OptionError(f"{name}: '{text[:40]}' is not a yes/no value (use true or false)")


def _word(name: str, text: str) -> str:
    value = text.strip()
    if not value or len(value) > _MAX_NAME:
        raise OptionError(f"{name}: give a name of 1 to {_MAX_NAME} characters")
    return value


DETECT_FIELDS: dict[str, Callable[[str, str], Any]] = {
    "detector": _word,
    "threshold": _number,
    "min_face_size": _number,
    "only_center_face": _flag,
    "only_largest_face": _flag,
}
RESTORE_FIELDS: dict[str, Callable[[str, str], Any]] = {
    "scale": _number,
    "face_model": _word,
    "fidelity": _number,
    "blend": _number,
    "color_fix": _flag,
    "bg_upsampler": _word,
    "bg_precision": _word,
    "aligned": _flag,
    "format": _word,
    "quality": _integer,
    **DETECT_FIELDS,
}


@dataclass(frozen=True)
class OutputFormat:
    name: str = "auto"
    quality: int = 95

    def resolve(self, source_format: str) -> str:
        if self.name != "auto":
            return self.name
        return source_format if source_format in _BROWSER_FORMATS else "PNG"


def parse_fields(
    fields: Mapping[str, str], parsers: Mapping[str, Callable[[str, str], Any]]
) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(parsers))
    if unknown:
        raise OptionError(f"unknown field '{unknown[0]}' (known: image, {', '.join(parsers)})")
    return {name: parsers[name](name, text) for name, text in fields.items()}


def _detection(values: Mapping[str, Any]) -> DetectionOptions:
    return DetectionOptions(
        score_threshold=values.get("threshold"),
        min_face_size=values.get("min_face_size", 10.0),
        only_center_face=values.get("only_center_face", False),
        only_largest_face=values.get("only_largest_face", False),
    )


def detect_options(fields: Mapping[str, str], config: ServerConfig) -> RestoreOptions:
    values = parse_fields(fields, DETECT_FIELDS)
    options = RestoreOptions(
        detector=values.get("detector", "retinaface"),
        detection=_detection(values),
        device=config.device,
        tile=config.tile,
    )
    options.validate()
    check_models(options)
    return options


def restore_options(fields: Mapping[str, str], config: ServerConfig) -> tuple[RestoreOptions, OutputFormat]:
    values = parse_fields(fields, RESTORE_FIELDS)
    options = RestoreOptions(
        scale=values.get("scale", 2.0),
        face_model=values.get("face_model", "auto"),
        bg_upsampler=values.get("bg_upsampler", "auto"),
        bg_precision=values.get("bg_precision", "auto"),
        fidelity=values.get("fidelity", 0.5),
        blend=values.get("blend", 1.0),
        color_fix=values.get("color_fix", True),
        aligned=values.get("aligned", False),
        detector=values.get("detector", "retinaface"),
        detection=_detection(values),
        device=config.device,
        tile=config.tile,
    )
    options.validate()
    check_models(options)
    return options, _output_format(values)


def _output_format(values: Mapping[str, Any]) -> OutputFormat:
    name = str(values.get("format", "auto")).lower()
    if name not in OUTPUT_FORMATS:
        raise OptionError(f"format: '{name}' is not one of {', '.join(OUTPUT_FORMATS)}")
    quality = values.get("quality", 95)
    if not 1 <= quality <= 100:
        raise OptionError(f"quality: {quality} is out of range (1 to 100)")
    return OutputFormat(OUTPUT_FORMATS[name], quality)


def check_output_size(picture: Picture, scale: float, config: ServerConfig) -> None:
    width, height = round(picture.width * scale), round(picture.height * scale)
    if width * height > config.max_output_pixels:
        largest = math.sqrt(config.max_output_pixels / (picture.width * picture.height))
        raise OptionError(
            f"the result would be {width}x{height} ({width * height / 1e6:.0f} megapixels), "
            f"over this server's limit of {config.max_output_pixels / 1e6:g} megapixels: "
            f"choose a scale of at most {largest:.2f}"
        )
