"""The application: the /v1 API and the web page over one shared engine, with its middleware, error handlers
and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from facerestore import __version__
from facerestore.errors import FaceRestoreError
from facerestore.networks import Networks
from facerestore.options import RestoreOptions
from facerestore.server import api, page
from facerestore.server.config import ServerConfig
from facerestore.server.forms import FORM_SCHEMAS
from facerestore.server.http import (
    ApiError,
    ApiKeyCheck,
    BodySizeLimit,
    CloseUnreadBody,
    HostCheck,
    JsonCORSMiddleware,
    SecurityHeaders,
    error_response,
    handle_api_error,
    handle_client_gone,
    handle_http_exception,
    handle_unexpected,
)
from facerestore.server.jobs import JobManager, Retention
from facerestore.server.messages import public_message
from facerestore.server.restore import Engine, LocalEngine, RestoreOutcome, restore_job
from facerestore.server.state import ServerState

log = logging.getLogger("facerestore.server")
OPENAPI_PATH = "/v1/openapi.json"


async def _sweep_forever(state: ServerState) -> None:
    interval = min(30.0, max(0.5, state.config.retention_seconds / 10))
    while True:
        await asyncio.sleep(interval)
        state.jobs.sweep()


def _load_defaults(state: ServerState) -> None:
    state.engine.preload(RestoreOptions(device=state.config.device, tile=state.config.tile))


async def _preload(state: ServerState) -> None:
    try:
        await anyio.to_thread.run_sync(_load_defaults, state)
    except FaceRestoreError as error:
        state.preload_error = public_message(error)
        log.error("default models failed to load: %s", error)
    else:
        state.preloaded = True


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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


async def not_found(request: Request, error: Exception) -> Response:
    return error_response(404, f"nothing at {request.url.path} (the API is under /v1; see {OPENAPI_PATH})")


async def handle_invalid_request(request: Request, error: Exception) -> Response:
    """A path or query parameter of the wrong type: one line, like every other error."""
    assert isinstance(error, RequestValidationError)
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"][1:])
    return error_response(400, f"{where}: {problem['msg']}")


def _middleware(config: ServerConfig) -> list[Middleware]:
    """Outermost first: any early answer, whichever layer sends it, closes a connection with a body unread."""
    stack = [
        Middleware(CloseUnreadBody),
        Middleware(SecurityHeaders),
        Middleware(HostCheck, names=(config.host, *config.allowed_hosts), cors_origins=config.cors_origins),
    ]
    if config.cors_origins:
        stack.append(
            Middleware(
                JsonCORSMiddleware,
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


def _describe(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description of the endpoints, plus the form schemas derived from the option declarations."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title="facerestore",
            version=__version__,
            summary="Restore faces in photos on this server.",
            routes=app.routes,
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(FORM_SCHEMAS)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(config: ServerConfig | None = None, engine: Engine | None = None) -> FastAPI:
    """The application; ``engine`` restores the jobs' pictures (default: in this process)."""
    config = config or ServerConfig()
    networks = Networks(capacity=config.network_cache_size)
    engine = engine or LocalEngine(networks)
    retention = Retention[RestoreOutcome](
        config.retention_seconds, config.max_stored_jobs, config.max_stored_bytes, lambda kept: kept.nbytes
    )
    jobs = JobManager(
        functools.partial(restore_job, engine),
        workers=config.max_jobs,
        queue_size=config.queue_size,
        retention=retention,
        describe=public_message,
    )
    app = FastAPI(
        openapi_url=OPENAPI_PATH,
        docs_url=None,  # the interactive docs load their scripts from a CDN: not offline
        redoc_url=None,
        middleware=_middleware(config),
        exception_handlers={
            ApiError: handle_api_error,
            ClientDisconnect: handle_client_gone,
            RequestValidationError: handle_invalid_request,
            HTTPException: handle_http_exception,
            404: not_found,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.openapi = lambda: _describe(app)  # type: ignore[method-assign]
    app.include_router(api.router)
    app.include_router(page.router)
    app.mount("/static", page.static_files(), name="static")
    light_work = anyio.CapacityLimiter(config.max_jobs + 1)
    app.state.facerestore = ServerState(config, networks, engine, jobs, light_work)
    return app
