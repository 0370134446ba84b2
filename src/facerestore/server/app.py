"""The Starlette application: the /v1 HTTP API and the web page, over one shared engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from facerestore import __version__, registry
from facerestore.errors import FaceRestoreError, ImageError
from facerestore.image_io import Picture, decode_image
from facerestore.pipeline import RestoreOptions
from facerestore.server import openapi
from facerestore.server.config import ServerConfig
from facerestore.server.engine import SR_FACE_MODEL, NetworkCache, auto_face_model
from facerestore.server.http import (
    ApiError,
    ApiKeyCheck,
    BodySizeLimit,
    SecurityHeaders,
    error_response,
    handle_api_error,
    handle_http_exception,
    handle_unexpected,
)
from facerestore.server.jobs import Job, JobManager, JobState, QueueFull
from facerestore.server.options import check_output_size, detect_options, restore_options
from facerestore.server.restore import EncodedImage, RestoreOutcome, RestoreRequest, restore_work
from facerestore.upscaling import BG_UPSAMPLERS

log = logging.getLogger("facerestore.server")
RestoreJob = Job[RestoreRequest, RestoreOutcome]
T = TypeVar("T")
MAX_FIELDS = 32
MAX_FIELD_BYTES = 4096
DISCONNECT_POLL_SECONDS = 1.0
NOT_READY_RETRY_AFTER = 5


class _InMemoryParser(MultiPartParser):
    """Keeps the uploaded file in memory: the size limit already bounds it, and nothing is written to disk."""

    spool_max_size = 1 << 40


@dataclass(frozen=True)
class Upload:
    data: bytes
    fields: dict[str, str]


@dataclass
class ServerState:
    """Everything the handlers share; one per application."""

    config: ServerConfig
    networks: NetworkCache
    jobs: JobManager[RestoreRequest, RestoreOutcome]
    light_work: anyio.CapacityLimiter  # decoding and detection: short, but CPU-bound, so bounded too
    preload_error: str | None = None
    preloaded: bool = False

    async def run_light(self, function: Callable[..., T], *args: Any) -> T:
        if self.light_work.statistics().tasks_waiting >= self.config.queue_size + self.config.max_jobs:
            raise ApiError(429, "the server is busy; retry later", {"Retry-After": "2"})
        return await anyio.to_thread.run_sync(function, *args, limiter=self.light_work)


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.facerestore
    return state


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


# -- uploads


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


def _decode(data: bytes, max_pixels: int) -> Picture:
    return decode_image(data, max_pixels=max_pixels, name="upload")


async def decode_upload(state: ServerState, upload: Upload) -> Picture:
    try:
        return await state.run_light(_decode, upload.data, state.config.max_pixels)
    except ImageError as error:
        raise ApiError(422, str(error)) from None


async def restore_request(state: ServerState, request: Request) -> RestoreRequest:
    upload = await read_upload(request)
    options, output = _checked(lambda: restore_options(upload.fields, state.config))
    picture = await decode_upload(state, upload)
    _checked(lambda: check_output_size(picture, options.scale, state.config))
    return RestoreRequest(picture, options, output)


def _checked(make: Callable[[], T]) -> T:
    try:
        return make()
    except FaceRestoreError as error:
        raise ApiError(400, str(error)) from None


def submit(state: ServerState, request: RestoreRequest) -> RestoreJob:
    try:
        return state.jobs.submit(request)
    except QueueFull as busy:
        raise ApiError(429, str(busy), {"Retry-After": str(busy.retry_after)}) from None


# -- job views


def job_links(job: RestoreJob) -> dict[str, Any]:
    base = f"/v1/jobs/{job.id}"
    links: dict[str, Any] = {"self": base, "cancel": f"{base}/cancel"}
    if job.state is JobState.SUCCEEDED and job.outcome is not None:
        links["result"] = f"{base}/result"
        links["input"] = f"{base}/input"
        links["faces"] = [
            {"before": f"{base}/faces/{index}/before", "after": f"{base}/faces/{index}/after"}
            for index in range(len(job.outcome.face_thumbnails))
        ]
    return links


def job_view(state: ServerState, job: RestoreJob) -> dict[str, Any]:
    progress = job.progress
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.state.value,
        "progress": {
            "stage": progress.stage,
            "done": progress.done,
            "total": progress.total,
            "fraction": 1.0 if job.state is JobState.SUCCEEDED else progress.fraction,
        },
        "created": _iso(job.created),
        "started": _iso(job.started),
        "finished": _iso(job.finished),
        "error": job.error,
        "links": job_links(job),
    }
    if job.state is JobState.QUEUED:
        view["queue_position"] = state.jobs.queue_position(job)
    if job.cancel_requested.is_set() and not job.state.finished:
        view["cancel_requested"] = True
    if job.finished is not None:
        view["expires"] = _iso(job.finished + state.config.retention_seconds)
    if job.outcome is not None:
        view["result"] = job.outcome.metadata
    return view


def find_job(request: Request) -> RestoreJob:
    state = _state(request)
    job = state.jobs.get(request.path_params["job_id"])
    if job is None:
        retention = f"{state.config.retention_seconds:g}"
        raise ApiError(404, f"no such job (finished jobs are deleted {retention} s after they finish)")
    return job


def finished_outcome(job: RestoreJob) -> RestoreOutcome:
    if job.state is JobState.SUCCEEDED and job.outcome is not None:
        return job.outcome
    if job.state is JobState.FAILED:
        raise ApiError(409, f"the job failed: {job.error}")
    if job.state is JobState.CANCELLED:
        raise ApiError(409, "the job was cancelled")
    raise ApiError(409, f"the job is {job.state.value}: poll GET /v1/jobs/{job.id} until it has succeeded")


def image_response(image: EncodedImage, filename: str, *, download: bool = False) -> Response:
    disposition = "attachment" if download else "inline"
    headers = {"Content-Disposition": f'{disposition}; filename="{filename}.{image.extension}"'}
    return Response(image.data, media_type=image.media_type, headers=headers)


# -- endpoints


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


async def ready(request: Request) -> Response:
    state = _state(request)
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


async def describe_api(request: Request) -> Response:
    return JSONResponse(openapi.SPEC)


def _model_row(entry: registry.ModelEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "title": entry.title,
        "purpose": entry.purpose.value,
        "installed": registry.is_installed(entry),
        "licence": entry.licence,
        "commercial_use": entry.commercial_use,
        "supports_fidelity": entry.fidelity_input is not None,
        "notes": entry.notes,
    }


async def models(request: Request) -> Response:
    face_models = [entry.name for entry in registry.entries(registry.Purpose.FACE_RESTORER)]
    return JSONResponse(
        {
            "models": [_model_row(entry) for entry in registry.MODELS],
            "choices": {
                "face_model": ["auto", *face_models, SR_FACE_MODEL],
                "bg_upsampler": ["auto", *BG_UPSAMPLERS],
                "detector": [entry.name for entry in registry.entries(registry.Purpose.DETECTOR)],
            },
            "auto_face_model": auto_face_model(),
            "defaults": {"scale": 2.0, "face_model": "auto", "bg_upsampler": "auto", "fidelity": 0.5},
            "limits": {"max_scale": 8, "max_upload_bytes": _state(request).config.max_upload_bytes},
        }
    )


def _detect(state: ServerState, data: bytes, options: RestoreOptions) -> dict[str, Any]:
    picture = _decode(data, state.config.max_pixels)
    faces = state.networks.restorer(options).detect(picture)
    return {"width": picture.width, "height": picture.height, "faces": [face.to_dict() for face in faces]}


async def detect(request: Request) -> Response:
    state = _state(request)
    upload = await read_upload(request)
    options = _checked(lambda: detect_options(upload.fields, state.config))
    try:
        return JSONResponse(await state.run_light(_detect, state, upload.data, options))
    except ImageError as error:
        raise ApiError(422, str(error)) from None


async def _wait_while_connected(request: Request, job: RestoreJob) -> None:
    """Waits for the job; a client that hangs up cancels it, so nobody's CPU goes to a lost answer."""
    while not job.settled.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(job.settled.wait(), DISCONNECT_POLL_SECONDS)
        if not job.settled.is_set() and await request.is_disconnected():
            _state(request).jobs.delete(job)
            return


async def restore_now(request: Request) -> Response:
    state = _state(request)
    restore = await restore_request(state, request)
    pixels = restore.picture.width * restore.picture.height
    if pixels > state.config.sync_max_pixels:
        raise ApiError(
            413,
            f"the picture has {pixels / 1e6:.1f} megapixels; POST /v1/restore answers pictures of up to "
            f"{state.config.sync_max_pixels / 1e6:g} megapixels: create a job with POST /v1/jobs instead",
        )
    job = submit(state, restore)
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


async def create_job(request: Request) -> Response:
    state = _state(request)
    job = submit(state, await restore_request(state, request))
    return JSONResponse(job_view(state, job), 202, headers={"Location": f"/v1/jobs/{job.id}"})


async def job_status(request: Request) -> Response:
    return JSONResponse(job_view(_state(request), find_job(request)))


async def cancel_job(request: Request) -> Response:
    state, job = _state(request), find_job(request)
    state.jobs.cancel(job)
    return JSONResponse(job_view(state, job))


async def delete_job(request: Request) -> Response:
    _state(request).jobs.delete(find_job(request))
    return Response(status_code=204)


async def job_result(request: Request) -> Response:
    job = find_job(request)
    download = request.query_params.get("download", "") in ("1", "true", "yes")
    return image_response(finished_outcome(job).image, f"restored-{job.id[:8]}", download=download)


async def job_input(request: Request) -> Response:
    job = find_job(request)
    return image_response(finished_outcome(job).input_preview, f"input-{job.id[:8]}")


async def job_face(request: Request) -> Response:
    job = find_job(request)
    thumbnails = finished_outcome(job).face_thumbnails
    index, side = request.path_params["index"], request.path_params["side"]
    if side not in ("before", "after") or not 0 <= index < len(thumbnails):
        raise ApiError(404, f"no such face image: use an index below {len(thumbnails)} and before or after")
    before, after = thumbnails[index]
    return image_response(before if side == "before" else after, f"face-{index}-{side}")


# -- the page


def web_directory() -> Path:
    return Path(str(resources.files("facerestore") / "web"))


async def index(request: Request) -> Response:
    return FileResponse(web_directory() / "index.html", media_type="text/html")


async def not_found(request: Request, error: Exception) -> Response:
    return error_response(404, f"nothing at {request.url.path} (the API is under /v1; see /v1/openapi.json)")


# -- assembly


async def _sweep_forever(state: ServerState) -> None:
    interval = min(30.0, max(0.5, state.config.retention_seconds / 10))
    while True:
        await asyncio.sleep(interval)
        state.jobs.sweep()


async def _preload(state: ServerState) -> None:
    options = RestoreOptions(device=state.config.device, tile=state.config.tile)
    try:
        await anyio.to_thread.run_sync(state.networks.preload, options)
    except FaceRestoreError as error:
        state.preload_error = str(error)
        log.error("default models failed to load: %s", error)
    else:
        state.preloaded = True


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state: ServerState = app.state.facerestore
    tasks = [asyncio.create_task(_sweep_forever(state))]
    if state.config.preload:
        tasks.append(asyncio.create_task(_preload(state)))
    else:
        state.preloaded = True
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        state.jobs.shutdown()


ROUTES = [
    Route("/", index),
    Mount("/static", StaticFiles(directory=web_directory()), name="static"),
    Route("/v1/health", health),
    Route("/v1/ready", ready),
    Route("/v1/openapi.json", describe_api),
    Route("/v1/models", models),
    Route("/v1/detect", detect, methods=["POST"]),
    Route("/v1/restore", restore_now, methods=["POST"]),
    Route("/v1/jobs", create_job, methods=["POST"]),
    Route("/v1/jobs/{job_id}", job_status, methods=["GET"]),
    Route("/v1/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/v1/jobs/{job_id}/result", job_result),
    Route("/v1/jobs/{job_id}/input", job_input),
    Route("/v1/jobs/{job_id}/faces/{index:int}/{side}", job_face),
]


def _middleware(config: ServerConfig) -> list[Middleware]:
    stack = [Middleware(SecurityHeaders)]
    if config.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization"],
                expose_headers=["X-Job-Id", "X-Face-Count", "Link", "Location", "Retry-After"],
            )
        )
    stack += [
        Middleware(ApiKeyCheck, keys=config.api_keys),
        Middleware(BodySizeLimit, max_bytes=config.max_upload_bytes),
    ]
    return stack


def create_app(config: ServerConfig | None = None) -> Starlette:
    config = config or ServerConfig()
    networks = NetworkCache(config.restorer_cache_size)
    jobs = JobManager(
        restore_work(networks),
        workers=config.max_jobs,
        queue_size=config.queue_size,
        retention_seconds=config.retention_seconds,
        max_stored=config.max_stored_jobs,
    )
    app = Starlette(
        routes=ROUTES,
        middleware=_middleware(config),
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: handle_http_exception,
            404: not_found,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.facerestore = ServerState(config, networks, jobs, anyio.CapacityLimiter(config.max_jobs + 1))
    return app
