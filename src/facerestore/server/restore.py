"""The job work: restore one uploaded picture and encode everything the API and the page serve."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from facerestore.image_io import Picture, encode_image
from facerestore.networks import Networks
from facerestore.options import Encoding, RestoreOptions, VideoOptions
from facerestore.pipeline import Restorer, RestoreResult
from facerestore.runtime import release_freed_memory
from facerestore.server.forms import response_format
from facerestore.server.jobs import Report
from facerestore.video import VideoReport, frame_at, restore_video

CLIP_MEDIA_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
}
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
class ClipRequest:
    """A video upload: restored from a temporary file, since the encoder writes to a file."""

    data: bytes
    extension: str  # the container, from the upload's first bytes
    restorer: Restorer
    options: VideoOptions
    max_pixels: int


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
    source_clip: bytes | None = None  # a video job's upload, for its before/after frames

    @property
    def is_video(self) -> bool:
        return self.source_clip is not None

    @property
    def nbytes(self) -> int:
        """What keeping it costs: its images' bytes (the metadata is small)."""
        thumbnails = [image for pair in self.face_thumbnails for image in pair]
        images = sum(len(image.data) for image in (self.image, self.input_preview, *thumbnails))
        return images + len(self.source_clip or b"")


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


class Engine(Protocol):
    """Where pictures are restored: in this process, or on a cluster (``cluster.ClusterRestorer``)."""

    def preload(self, options: RestoreOptions) -> None: ...

    def restore(self, restorer: Restorer, picture: Picture, progress: Report) -> RestoreResult: ...


class LocalEngine:
    def __init__(self, networks: Networks) -> None:
        self.networks = networks

    def preload(self, options: RestoreOptions) -> None:
        Restorer(options, self.networks).load()

    def restore(self, restorer: Restorer, picture: Picture, progress: Report) -> RestoreResult:
        return restorer.restore(picture, progress=progress, keep_crops=True)


def restore_job(engine: Engine, request: RestoreRequest | ClipRequest, report: Report) -> RestoreOutcome:
    """The job queue's work: restore, then encode the result, the input preview and the face thumbnails."""
    if isinstance(request, ClipRequest):
        return restore_clip(request, report)
    result = engine.restore(request.restorer, request.picture, report)
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


def restore_clip(request: ClipRequest, report: Report) -> RestoreOutcome:
    """A video job, in this process: the clip restored frame by frame, kept in memory with its source."""
    with tempfile.TemporaryDirectory(prefix="facerestore-clip-") as folder:
        source, target = Path(folder) / f"in{request.extension}", Path(folder) / f"out{request.extension}"
        source.write_bytes(request.data)
        clip = restore_video(
            source,
            target,
            request.restorer,
            request.options,
            progress=lambda done, total: report("frames", done, total or 0),
            max_pixels=request.max_pixels,
        )
        restored = target.read_bytes()
    report("encode", 0, 1)
    first = Picture(pixels=frame_at(request.data, 0.0))
    extension = request.extension.lstrip(".")
    return RestoreOutcome(
        image=EncodedImage(restored, CLIP_MEDIA_TYPES[extension], extension),
        input_preview=encode(first, "jpg", PREVIEW_QUALITY),
        face_thumbnails=(),
        metadata=_clip_metadata(request, clip, extension),
        source_clip=request.data,
    )


def _clip_metadata(request: ClipRequest, clip: VideoReport, extension: str) -> dict[str, Any]:
    width_in, height_in = clip.size_in or (0, 0)
    width, height = clip.size_out or (0, 0)
    details = (
        "frames_in",
        "frames_out",
        "fps",
        "duration_s",
        "tracks",
        "copied_streams",
        "corrupt_frames",
        "flicker",
    )
    return {
        "width": width,
        "height": height,
        "format": extension,
        "scale": request.restorer.options.scale,
        "face_model": clip.face_model,
        "bg_upsampler": clip.bg_upsampler,
        "faces": [],
        "timings": clip.timings,
        "input": {"width": width_in, "height": height_in, "format": extension},
        "video": {key: value for key, value in clip.to_dict().items() if key in details}
        | {"faces_restored": clip.faces},
    }
