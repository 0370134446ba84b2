"""The /v1 HTTP API: thin endpoints over the engine; FastAPI derives the OpenAPI description from them and
from the option declarations (the form schemas)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from facerestore import __version__
from facerestore.analysis import analyse_picture
from facerestore.detection import Face
from facerestore.errors import ImageError
from facerestore.image_io import Picture
from facerestore.options import RestoreOptions
from facerestore.pipeline import Restorer
from facerestore.server.forms import detect_options, multipart_body
from facerestore.server.http import ApiError
from facerestore.server.jobs import JobState
from facerestore.server.restore import PREVIEW_QUALITY, encode
from facerestore.server.state import RestoreJob, ServerState, state_of
from facerestore.server.uploads import checked, decode, read_upload, restore_request, submit, unreadable
from facerestore.server.views import find_job, finished_outcome, image_response, job_view, models_view
from facerestore.video import frame_at

DISCONNECT_POLL_SECONDS = 1.0
NOT_READY_RETRY_AFTER = 5
IMAGE: dict[str, Any] = {
    "description": "an image",
    "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
}
_ERROR = {
    "content": {
        "application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}
    }
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a wrong option or a malformed form: the message says what to fix", **_ERROR},
    413: {"description": "the upload is larger than the server's limit", **_ERROR},
    415: {"description": "the body is not multipart/form-data", **_ERROR},
    422: {
        "description": "not a readable image: unsupported format, animated, truncated, or too many pixels",
        **_ERROR,
    },
    429: {
        "description": "every job slot and queue place is taken; retry after Retry-After seconds",
        **_ERROR,
    },
}
JOB_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such job (or deleted after the retention time)", **_ERROR},
    409: {"description": "the job has no result (yet)", **_ERROR},
}
router = APIRouter(prefix="/v1")


@router.get("/health", summary="liveness: the process answers")
async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


@router.get(
    "/ready",
    summary="readiness: models loaded and a job slot or queue place free",
    responses={503: {"description": "not ready; the reason says why"}},
)
async def ready(request: Request) -> Response:
    state = state_of(request)
    body: dict[str, Any] = {
        "ready": False,
        "jobs": state.jobs.counts(),
        "max_jobs": state.config.max_jobs,
        "queue_size": state.config.queue_size,
    }
    if state.preload_error is not None:
        return JSONResponse(
            {**body, "reason": f"the default models failed to load: {state.preload_error}"}, 503
        )
    if not state.preloaded:
        headers = {"Retry-After": str(NOT_READY_RETRY_AFTER)}
        return JSONResponse({**body, "reason": "loading the default models"}, 503, headers)
    if state.jobs.is_full():
        headers = {"Retry-After": str(state.jobs.retry_after())}
        return JSONResponse({**body, "reason": "every job slot and queue place is taken"}, 503, headers)
    return JSONResponse({**body, "ready": True})


@router.get("/models", summary="the models, what is installed and licensed, and the option choices")
async def models(request: Request) -> Response:
    return JSONResponse(models_view(state_of(request)))


def _detected(picture: Picture, faces: list[Face]) -> dict[str, Any]:
    return {"faces": [face.to_dict() for face in faces]}


@router.post(
    "/detect",
    summary="the faces in a picture: boxes, scores, 5 landmarks",
    openapi_extra=multipart_body("DetectForm"),
    responses=UPLOAD_ERRORS,
)
async def detect(request: Request) -> Response:
    return await _look_at_upload(request, _detected)


Look = Callable[[Picture, list[Face]], dict[str, Any]]  # what a quick look says of a picture and its faces


async def _look_at_upload(request: Request, look: Look) -> Response:
    """Decodes the uploaded picture, finds its faces with the form's detection options, and answers with its
    size and what ``look`` says of them (the faces, their analysis)."""
    state = state_of(request)
    upload = await read_upload(request)
    options = checked(lambda: detect_options(upload.fields, state.config))
    try:
        return JSONResponse(await state.run_light(_look, state, upload.data, options, look))
    except ImageError as error:
        raise unreadable(error) from None


def _look(state: ServerState, data: bytes, options: RestoreOptions, look: Look) -> dict[str, Any]:
    picture = decode(data, state.config.max_pixels)
    faces = Restorer(options, state.networks).detect(picture)
    return {"width": picture.width, "height": picture.height, **look(picture, faces)}


def _analysed(picture: Picture, faces: list[Face]) -> dict[str, Any]:
    return analyse_picture(picture, faces).to_dict()


@router.post(
    "/analyze",
    summary="each face measured (size, pose, blur, noise, JPEG quality) with advice on restoring it",
    openapi_extra=multipart_body("DetectForm"),
    responses=UPLOAD_ERRORS,
)
async def analyze(request: Request) -> Response:
    return await _look_at_upload(request, _analysed)


async def _wait_while_connected(request: Request, job: RestoreJob) -> None:
    """Waits for the job; a client that hangs up cancels it, so nobody's CPU goes to a lost answer."""
    while not job.settled.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(job.settled.wait(), DISCONNECT_POLL_SECONDS)
        if not job.settled.is_set() and await request.is_disconnected():
            state_of(request).jobs.delete(job)
            return


@router.post(
    "/restore",
    summary="restore a picture and answer with the result image",
    response_class=Response,
    openapi_extra=multipart_body("RestoreForm"),
    responses={200: IMAGE, **UPLOAD_ERRORS},
)
async def restore_now(request: Request) -> Response:
    state = state_of(request)
    job = submit(state, await restore_request(state, request, inline=True))
    await _wait_while_connected(request, job)
    if job.state is JobState.FAILED:
        raise ApiError(500, f"the restore failed: {job.error}")
    outcome = finished_outcome(job)
    response = image_response(outcome.image, "restored")
    response.headers.update(
        {
            "X-Job-Id": job.id,
            "X-Face-Count": str(len(outcome.metadata["faces"])),
            "Link": f'</v1/jobs/{job.id}>; rel="describedby"',
        }
    )
    return response


@router.post(
    "/jobs",
    status_code=202,
    summary="queue a restore; poll the job, then fetch its result",
    openapi_extra=multipart_body("RestoreForm"),
    responses=UPLOAD_ERRORS,
)
async def create_job(request: Request) -> Response:
    state = state_of(request)
    job = submit(state, await restore_request(state, request))
    return JSONResponse(job_view(state, job), 202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get(
    "/jobs/{job_id}", summary="a job's status, progress and, once done, result metadata", responses=JOB_ERRORS
)
async def job_status(request: Request, job_id: str) -> Response:
    return JSONResponse(job_view(state_of(request), find_job(state_of(request), job_id)))


@router.post("/jobs/{job_id}/cancel", summary="cancel a queued or running job", responses=JOB_ERRORS)
async def cancel_job(request: Request, job_id: str) -> Response:
    state = state_of(request)
    job = find_job(state, job_id)
    state.jobs.cancel(job)
    return JSONResponse(job_view(state, job))


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    summary="delete a job and its result",
    response_class=Response,
    responses=JOB_ERRORS,
)
async def delete_job(request: Request, job_id: str) -> Response:
    state_of(request).jobs.delete(find_job(state_of(request), job_id))
    return Response(status_code=204)


@router.get(
    "/jobs/{job_id}/result",
    summary="the restored image (?download=1 to save it)",
    response_class=Response,
    responses={200: IMAGE, **JOB_ERRORS},
)
async def job_result(request: Request, job_id: str, download: bool = False) -> Response:
    job = find_job(state_of(request), job_id)
    return image_response(finished_outcome(job).image, f"restored-{job.id[:8]}", download=download)


@router.get(
    "/jobs/{job_id}/input",
    summary="the upload as the engine saw it (upright)",
    response_class=Response,
    responses={200: IMAGE, **JOB_ERRORS},
)
async def job_input(request: Request, job_id: str) -> Response:
    job = find_job(state_of(request), job_id)
    return image_response(finished_outcome(job).input_preview, f"input-{job.id[:8]}")


@router.get(
    "/jobs/{job_id}/faces/{index}/{side}",
    summary="one face's thumbnail, before or after",
    response_class=Response,
    responses={200: IMAGE, **JOB_ERRORS},
)
async def job_face(request: Request, job_id: str, index: int, side: Literal["before", "after"]) -> Response:
    job = find_job(state_of(request), job_id)
    thumbnails = finished_outcome(job).face_thumbnails
    if not 0 <= index < len(thumbnails):
        raise ApiError(404, f"no such face image: use an index below {len(thumbnails)} and before or after")
    before, after = thumbnails[index]
    return image_response(before if side == "before" else after, f"face-{index}-{side}")


@router.get(
    "/jobs/{job_id}/frame",
    summary="a video job's frame at a time, before or after (JPEG), to compare them",
    response_class=Response,
    responses={200: IMAGE, **JOB_ERRORS},
)
async def job_frame(
    request: Request, job_id: str, at: float = 0.0, side: Literal["before", "after"] = "after"
) -> Response:
    state = state_of(request)
    outcome = finished_outcome(find_job(state, job_id))
    if outcome.source_clip is None:
        raise ApiError(404, "this job restored a picture, not a video: its result is the picture")
    clip = outcome.source_clip if side == "before" else outcome.image.data
    pixels = await state.run_light(frame_at, clip, max(0.0, at))
    image = await state.run_light(encode, Picture(pixels=pixels), "jpg", PREVIEW_QUALITY)
    return image_response(image, f"frame-{side}")
