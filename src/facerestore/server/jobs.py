"""Jobs: a bounded queue in front of a fixed pool of worker threads, with progress, cancel and retention.

This module knows nothing about faces: a job runs a ``Work`` callable on its payload in a worker thread and
keeps whatever it returns until the retention time has passed, or until newer results need the room.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from facerestore.errors import FaceRestoreError

log = logging.getLogger("facerestore.server")

Payload = TypeVar("Payload")
Outcome = TypeVar("Outcome")
Report = Callable[[str, int, int], None]  # (stage, done, total), as the engine reports progress
DEFAULT_RETRY_AFTER = 10
# Share of the whole job that each reported stage spans, for one progress fraction.
STAGE_SPANS = {
    "queued": (0.0, 0.0),
    "detect": (0.0, 0.05),
    "upscale": (0.05, 0.45),
    "faces": (0.45, 0.95),
    "done": (0.95, 0.95),
    "frames": (0.0, 0.95),  # a clip's frames, each through every stage above
    "encode": (0.95, 1.0),
}


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is busy: every job slot and queue place is taken; retry later")
        self.retry_after = retry_after


class JobCancelled(Exception):
    """Raised from the progress callback to stop a running job at its next step."""


@dataclass(frozen=True)
class Progress:
    stage: str = "queued"
    done: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        start, end = STAGE_SPANS.get(self.stage, (0.0, 0.0))
        share = self.done / self.total if self.total else 0.0
        return round(start + (end - start) * min(share, 1.0), 3)


@dataclass(eq=False)
class Job(Generic[Payload, Outcome]):
    payload: Payload | None
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    created: float = field(default_factory=time.time)
    state: JobState = JobState.QUEUED
    progress: Progress = field(default_factory=Progress)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    outcome: Outcome | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    future: Future[None] | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # set on the event loop when finished


Work = Callable[[Payload, Report], Outcome]


@dataclass(frozen=True)
class Retention(Generic[Outcome]):
    """How long, and how many, finished jobs are kept; ``size_of`` measures an outcome in bytes."""

    seconds: float
    max_jobs: int
    max_bytes: int
    size_of: Callable[[Outcome], int]


class JobManager(Generic[Payload, Outcome]):
    """Runs at most ``workers`` jobs at once, holds at most ``queue_size`` more, refuses the rest."""

    def __init__(
        self,
        work: Work[Payload, Outcome],
        *,
        workers: int,
        queue_size: int,
        retention: Retention[Outcome],
        describe: Callable[[FaceRestoreError], str] = str,
    ) -> None:
        self._work, self._describe = work, describe
        self.workers, self.queue_size, self.retention = workers, queue_size, retention
        self._jobs: dict[str, Job[Payload, Outcome]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="restore")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recent_seconds: list[float] = []

    # -- on the event loop

    def check_room(self) -> None:
        """QueueFull when a job submitted now would be refused: checked before a payload is prepared."""
        with self._lock:
            self._check_room_locked()

    def submit(self, payload: Payload) -> Job[Payload, Outcome]:
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._check_room_locked()
            job: Job[Payload, Outcome] = Job(payload)
            self._jobs[job.id] = job
        job.future = self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job[Payload, Outcome] | None:
        return self._jobs.get(job_id)

    def cancel(self, job: Job[Payload, Outcome]) -> None:
        """A queued job stops now; a running one at its next progress step; a finished one is unchanged."""
        job.cancel_requested.set()
        if job.future is not None and job.future.cancel():
            self._settle(job, JobState.CANCELLED)

    def delete(self, job: Job[Payload, Outcome]) -> None:
        self.cancel(job)
        with self._lock:
            self._jobs.pop(job.id, None)

    def queue_position(self, job: Job[Payload, Outcome]) -> int:
        """How many queued jobs are ahead of this one (0: it starts next)."""
        with self._lock:
            return sum(
                1
                for other in self._jobs.values()
                if other.state is JobState.QUEUED and other.created < job.created
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [job.state for job in self._jobs.values()]
        return {state.value: states.count(state) for state in JobState}

    def is_full(self) -> bool:
        with self._lock:
            return self.active_count_locked() >= self.workers + self.queue_size

    def retry_after(self) -> int:
        with self._lock:
            return self.retry_after_locked()

    def sweep(self, now: float | None = None) -> int:
        """Deletes finished jobs past retention, then the oldest finished beyond the count and byte limits;
        the newest finished job stays whatever its size, so that its client can fetch it."""
        with self._lock:
            return self._sweep_locked(time.time() if now is None else now)

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_requested.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- in a worker thread

    def _run(self, job: Job[Payload, Outcome]) -> None:
        if job.cancel_requested.is_set():
            self._settle(job, JobState.CANCELLED)
            return
        with self._lock:
            job.state, job.started = JobState.RUNNING, time.time()
        try:
            assert job.payload is not None
            outcome = self._work(job.payload, self._reporter(job))
        except JobCancelled:
            self._settle(job, JobState.CANCELLED)
        except FaceRestoreError as error:
            self._settle(job, JobState.FAILED, error=self._describe(error))
        except Exception:  # the job fails; the server and its other jobs go on
            log.exception("job %s failed", job.id)
            self._settle(job, JobState.FAILED, error="internal error (details are in the server's log)")
        else:
            self._settle(job, JobState.SUCCEEDED, outcome=outcome)

    def _reporter(self, job: Job[Payload, Outcome]) -> Report:
        def report(stage: str, done: int, total: int) -> None:
            if job.cancel_requested.is_set():
                raise JobCancelled
            job.progress = Progress(stage, done, total)

        return report

    # -- either side

    def _settle(
        self, job: Job[Payload, Outcome], state: JobState, *, error: str | None = None, outcome: Any = None
    ) -> None:
        with self._lock:
            if job.state.finished:
                return
            job.state, job.error, job.outcome = state, error, outcome
            job.finished = time.time()
            job.payload = None  # the upload is not needed any more: free its memory now
            if state is JobState.SUCCEEDED and job.started is not None:
                self._recent_seconds = [*self._recent_seconds[-19:], job.finished - job.started]
            self._sweep_locked(job.finished)  # now: a burst of large results must not wait for the sweep
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(job.settled.set)

    def active_count_locked(self) -> int:
        return sum(1 for job in self._jobs.values() if not job.state.finished)

    def _sweep_locked(self, now: float) -> int:
        finished = [job for job in self._jobs.values() if job.finished is not None]
        finished.sort(key=lambda job: job.finished or 0)
        expired = sum(1 for job in finished if now - (job.finished or now) >= self.retention.seconds)
        over_count = len(self._jobs) - self.retention.max_jobs
        doomed = finished[: max(expired, over_count, self._over_bytes_locked(finished))]
        for job in doomed:
            del self._jobs[job.id]
        return len(doomed)

    def _check_room_locked(self) -> None:
        if self.active_count_locked() >= self.workers + self.queue_size:
            raise QueueFull(self.retry_after_locked())

    def _over_bytes_locked(self, finished: list[Job[Payload, Outcome]]) -> int:
        """How many of the oldest finished jobs must go for the rest to fit in the byte limit."""
        sizes = [self.retention.size_of(job.outcome) if job.outcome is not None else 0 for job in finished]
        total, dropped = sum(sizes), 0
        while total > self.retention.max_bytes and dropped < len(finished) - 1:
            total -= sizes[dropped]
            dropped += 1
        return dropped

    def retry_after_locked(self) -> int:
        """Seconds until a place is likely free: the recent mean job time per worker slot."""
        if not self._recent_seconds:
            return DEFAULT_RETRY_AFTER
        mean = sum(self._recent_seconds) / len(self._recent_seconds)
        return max(1, min(600, math.ceil(mean / self.workers)))
