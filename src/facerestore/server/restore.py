"""The job work: restore one uploaded picture and encode everything the API and the page serve."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from facerestore.image_io import Picture, encode_image
from facerestore.options import Encoding
from facerestore.pipeline import Restorer, RestoreResult
from facerestore.runtime import release_freed_memory
from facerestore.server.forms import response_format
from facerestore.server.jobs import Report

MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
}
THUMBNAIL_SIDE = 192
PREVIEW_QUALITY = 90


@dataclass(frozen=True)
class RestoreRequest:
    picture: Picture
    restorer: Restorer  # built when the request came in: its options and their resolved 'auto' choices
    encoding: Encoding


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

    @property
    def nbytes(self) -> int:
        """What keeping it costs: its images' bytes (the metadata is small)."""
        thumbnails = [image for pair in self.face_thumbnails for image in pair]
        return sum(len(image.data) for image in (self.image, self.input_preview, *thumbnails))


def encode(picture: Picture, fmt: str, quality: int) -> EncodedImage:
    return EncodedImage(encode_image(picture, fmt, quality=quality), MEDIA_TYPES[fmt], fmt)


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
        "format": fmt,
        "scale": result.scale,
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


def restore_job(request: RestoreRequest, report: Report) -> RestoreOutcome:
    """The job queue's work: restore, then encode the result, the input preview and the face thumbnails."""
    result = request.restorer.restore(request.picture, progress=report, keep_crops=True)
    report("encode", 0, 1)
    fmt = response_format(request.encoding, request.picture.source_format)
    preview_format = "png" if request.picture.alpha is not None else "jpg"
    outcome = RestoreOutcome(
        image=encode(result.picture, fmt, request.encoding.quality),
        input_preview=encode(request.picture, preview_format, PREVIEW_QUALITY),
        face_thumbnails=tuple((_thumbnail(before), _thumbnail(after)) for before, after in result.crops),
        metadata=_metadata(request, result, fmt),
    )
    del result
    release_freed_memory()
    return outcome
