"""The HTTP form fields, derived from the option declarations: parsing, validation and their OpenAPI schemas.

A form field is an option exposed to HTTP (``facerestore.options``); what only the server decides (device,
tile, model files) comes from its ``ServerConfig``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import create_model

from facerestore.errors import OptionError
from facerestore.options import Encoding, OptionField, RestoreOptions, VideoOptions, build, http_fields
from facerestore.server.config import ServerConfig

DETECT_OPTIONS = ("detector", "threshold", "min_face_size", "only_center_face", "only_largest_face")
RESTORE_FIELDS = http_fields(RestoreOptions)
ENCODING_FIELDS = http_fields(Encoding)
VIDEO_FIELDS = http_fields(VideoOptions)  # used when the upload is a clip
DETECT_FIELDS = [field for field in RESTORE_FIELDS if field.name in DETECT_OPTIONS]
IMAGE_FIELD = {
    "type": "string",
    "format": "binary",
    "description": "the picture or video clip; its content decides the format",
}
_BROWSER_FORMATS = ("jpg", "png", "webp")  # 'auto' keeps these; anything else comes back as PNG


def _schema(title: str, fields: list[OptionField]) -> dict[str, Any]:
    """The multipart form's JSON schema: the image, then each option as declared."""
    model = create_model(title, **{field.name: (field.info.annotation, field.info) for field in fields})  # type: ignore[call-overload]
    schema = model.model_json_schema()
    schema["properties"] = {"image": IMAGE_FIELD, **schema["properties"]}
    schema["required"] = ["image"]
    return schema


FORM_SCHEMAS = {
    "RestoreForm": _schema("RestoreForm", [*RESTORE_FIELDS, *ENCODING_FIELDS, *VIDEO_FIELDS]),
    "DetectForm": _schema("DetectForm", DETECT_FIELDS),
}


def multipart_body(schema: str) -> dict[str, Any]:
    """An operation's request body, for FastAPI's ``openapi_extra``."""
    content = {"multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": content}}


def _split(fields: Mapping[str, str], *groups: list[OptionField]) -> list[dict[str, str]]:
    known = [{field.name for field in group} for group in groups]
    unknown = sorted(set(fields) - set().union(*known))
    if unknown:
        names = ", ".join(["image", *sorted(set().union(*known))])
        raise OptionError(f"unknown field '{unknown[0]}' (known: {names})")
    return [{name: value for name, value in fields.items() if name in names} for names in known]


def _server_side(config: ServerConfig) -> dict[str, Any]:
    return {"device": config.device, "tile": config.tile}


def detect_options(fields: Mapping[str, str], config: ServerConfig) -> RestoreOptions:
    [values] = _split(fields, DETECT_FIELDS)
    return build(RestoreOptions, {**values, **_server_side(config)})


def restore_options(
    fields: Mapping[str, str], config: ServerConfig
) -> tuple[RestoreOptions, Encoding, VideoOptions]:
    restore, encoding, video = _split(fields, RESTORE_FIELDS, ENCODING_FIELDS, VIDEO_FIELDS)
    return (
        build(RestoreOptions, {**restore, **_server_side(config)}),
        build(Encoding, encoding),
        build(VideoOptions, video),
    )


def response_format(encoding: Encoding, source_format: str) -> str:
    """The result's format: the one asked for, else the input's where a browser shows it, else PNG."""
    if encoding.format != "auto":
        return encoding.format
    source = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}.get(source_format, "")
    return source if source in _BROWSER_FORMATS else "png"


def check_output_size(size: tuple[int, int], scale: float, config: ServerConfig) -> None:
    width, height = round(size[0] * scale), round(size[1] * scale)
    if width * height > config.max_output_pixels:
        largest = math.sqrt(config.max_output_pixels / (size[0] * size[1]))
        raise OptionError(
            f"the result would be {width}x{height} ({width * height / 1e6:.0f} megapixels), "
            f"over this server's limit of {config.max_output_pixels / 1e6:g} megapixels: "
            f"choose a scale of at most {largest:.2f}"
        )
