"""What the server's handlers share: its config, the network pool, the job queue and the light-work limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

from facerestore.networks import Networks
from facerestore.server.config import ServerConfig
from facerestore.server.http import ApiError
from facerestore.server.jobs import Job, JobManager
from facerestore.server.restore import ClipRequest, Engine, RestoreOutcome, RestoreRequest

RestoreJob = Job[RestoreRequest | ClipRequest, RestoreOutcome]
T = TypeVar("T")


@dataclass
class ServerState:
    """Everything the handlers share; one per application."""

    config: ServerConfig
    networks: Networks
    engine: Engine  # where the jobs' pictures are restored
    jobs: JobManager[RestoreRequest | ClipRequest, RestoreOutcome]
    light_work: anyio.CapacityLimiter  # decoding and detection: short, but CPU-bound, so bounded too
    preload_error: str | None = None
    preloaded: bool = False

    async def run_light(self, function: Callable[..., T], *args: Any) -> T:
        if self.light_work.statistics().tasks_waiting >= self.config.queue_size + self.config.max_jobs:
            raise ApiError(429, "the server is busy; retry later", {"Retry-After": "2"})
        return await anyio.to_thread.run_sync(function, *args, limiter=self.light_work)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.facerestore
    return state


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
