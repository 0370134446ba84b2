"""Uploads: the multipart body read in memory within limits, its options checked, its picture decoded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from facerestore.errors import FaceRestoreError, ImageError
from facerestore.image_io import Picture, declared_size, decode_image
from facerestore.pipeline import Restorer
from facerestore.server.forms import check_output_size, restore_options
from facerestore.server.http import ApiError
from facerestore.server.jobs import QueueFull
from facerestore.server.messages import public_message
from facerestore.server.restore import ClipRequest, RestoreRequest
from facerestore.server.state import RestoreJob, ServerState
from facerestore.video import VideoError, clip_size, container_extension

T = TypeVar("T")
MAX_FIELDS = 32
MAX_FIELD_BYTES = 4096


class _InMemoryParser(MultiPartParser):
    """Keeps the uploaded file in memory: the size limit already bounds it, and nothing is written to disk."""

    spool_max_size = 1 << 40


@dataclass(frozen=True)
class Upload:
    data: bytes
    fields: dict[str, str]


async def read_upload(request: Request) -> Upload:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "send a multipart/form-data body with the picture in a file field named 'image'")
    parser = _InMemoryParser(
        request.headers, request.stream(), max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ApiError(400, f"malformed multipart body: {error.message}") from None
    try:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise ApiError(400, "missing the picture: send it in a file field named 'image'")
        others = [(name, value) for name, value in form.multi_items() if name != "image"]
        if any(not isinstance(value, str) for _, value in others):
            raise ApiError(400, "only one file may be sent, in the field named 'image'")
        return Upload(await image.read(), {name: str(value) for name, value in others})
    finally:
        await form.close()


def decode(data: bytes, max_pixels: int) -> Picture:
    return decode_image(data, max_pixels=max_pixels, name="upload")


def unreadable(error: ImageError) -> ApiError:
    return ApiError(422, public_message(error))


async def decode_upload(state: ServerState, upload: Upload) -> Picture:
    try:
        return await state.run_light(decode, upload.data, state.config.max_pixels)
    except ImageError as error:
        raise unreadable(error) from None


def checked(make: Callable[[], T]) -> T:
    """A wrong option answers 400 with what to fix."""
    try:
        return make()
    except FaceRestoreError as error:
        raise ApiError(400, public_message(error)) from None


def busy(error: QueueFull) -> ApiError:
    return ApiError(429, str(error), {"Retry-After": str(error.retry_after)})


def check_inline_size(size: tuple[int, int], max_pixels: int) -> None:
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise ApiError(
            413,
            f"the picture has {pixels / 1e6:.1f} megapixels; POST /v1/restore answers pictures of up to "
            f"{max_pixels / 1e6:g} megapixels: create a job with POST /v1/jobs instead",
        )


async def restore_request(
    state: ServerState, request: Request, *, inline: bool = False
) -> RestoreRequest | ClipRequest:
    """The upload's restore, refused before its picture is decoded when the queue is full or the header
    declares too many pixels: decoding a large picture costs a second and hundreds of MB."""
    upload = await read_upload(request)
    options, encoding, video = checked(lambda: restore_options(upload.fields, state.config))
    restorer = checked(lambda: Restorer(options, state.networks))  # 'auto' resolved, models checked, now
    extension = container_extension(upload.data)
    try:
        state.jobs.check_room()
        size = _declared_size(upload.data, extension, state.config.max_pixels)
    except QueueFull as error:
        raise busy(error) from None
    except ImageError as error:
        raise unreadable(error) from None
    checked(lambda: check_output_size(size, options.scale, state.config))
    if extension is not None:
        if inline:
            raise ApiError(413, "a video is restored as a job: create one with POST /v1/jobs")
        return ClipRequest(upload.data, extension, restorer, video, state.config.max_pixels)
    if inline:
        check_inline_size(size, state.config.sync_max_pixels)
    return RestoreRequest(await decode_upload(state, upload), restorer, encoding)


def _declared_size(data: bytes, extension: str | None, max_pixels: int) -> tuple[int, int]:
    """A picture's or a clip's frame size from its header, refused over ``max_pixels``."""
    if extension is None:
        return declared_size(data, max_pixels=max_pixels, name="upload")
    width, height = clip_size(data)
    if width * height > max_pixels:
        raise VideoError(
            f"upload: {width}x{height} frames exceed this server's limit of {max_pixels / 1e6:g} megapixels"
        )
    return width, height


def submit(state: ServerState, request: RestoreRequest | ClipRequest) -> RestoreJob:
    try:
        return state.jobs.submit(request)
    except QueueFull as error:
        raise busy(error) from None
