"""The job work: restore one uploaded picture and encode everything the API and the page serve."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from facerestore.image_io import Picture, encode_image
from facerestore.pipeline import RestoreOptions, RestoreResult
from facerestore.server.engine import NetworkCache
from facerestore.server.jobs import Report, Work
from facerestore.server.options import OutputFormat

MEDIA_TYPES = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "TIFF": ("image/tiff", "tif"),
}
THUMBNAIL_SIDE = 192
PREVIEW_QUALITY = 90


@dataclass(frozen=True)
class RestoreRequest:
    picture: Picture
    options: RestoreOptions
    output: OutputFormat


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    media_type: str
    extension: str


@dataclass(frozen=True)
class RestoreOutcome:
    image: EncodedImage
    input_preview: EncodedImage  # the upload as the engine saw it (upright, any format), for the page
    face_thumbnails: tuple[tuple[EncodedImage, EncodedImage], ...]  # (before, after) per face
    metadata: dict[str, Any]


def encode(picture: Picture, fmt: str, quality: int) -> EncodedImage:
    media_type, extension = MEDIA_TYPES[fmt]
    return EncodedImage(encode_image(picture, fmt, quality=quality), media_type, extension)


def _thumbnail(crop: np.ndarray) -> EncodedImage:
    image = Image.fromarray(crop)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=PREVIEW_QUALITY)
    return EncodedImage(buffer.getvalue(), "image/jpeg", "jpg")


def _metadata(request: RestoreRequest, result: RestoreResult, fmt: str) -> dict[str, Any]:
    return {
        "width": result.picture.width,
        "height": result.picture.height,
        "format": fmt.lower(),
        "scale": request.options.scale,
        "face_model": result.face_model,
        "bg_upsampler": result.bg_upsampler,
        "faces": [face.to_dict() for face in result.faces],
        "timings": result.timings,
        "input": {
            "width": request.picture.width,
            "height": request.picture.height,
            "format": request.picture.source_format.lower(),
        },
    }


def restore_work(networks: NetworkCache) -> Work[RestoreRequest, RestoreOutcome]:
    def work(request: RestoreRequest, report: Report) -> RestoreOutcome:
        restorer = networks.restorer(request.options)
        result = restorer.restore(request.picture, progress=report, keep_crops=True)
        report("encode", 0, 1)
        fmt = request.output.resolve(request.picture.source_format)
        preview_format = "PNG" if request.picture.alpha is not None else "JPEG"
        return RestoreOutcome(
            image=encode(result.picture, fmt, request.output.quality),
            input_preview=encode(request.picture, preview_format, PREVIEW_QUALITY),
            face_thumbnails=tuple((_thumbnail(before), _thumbnail(after)) for before, after in result.crops),
            metadata=_metadata(request, result, fmt),
        )

    return work
