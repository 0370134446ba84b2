"""Batches on a Dask cluster, for work that outgrows one machine.

Dask distributed schedules the tasks and reruns a lost worker's tasks elsewhere. Each task restores one job
with the same code as a local run (``batch.process``) and writes its output the same way, through a
temporary file and a rename, so a task that ran twice still leaves exactly one output. Inputs and outputs
must be on a file system every worker sees. Each worker process loads its networks once, when it joins
(``NetworksOnWorker``), and keeps them for every later task.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from facerestore import batch, runtime, video
from facerestore.errors import FaceRestoreError, OptionError, option, spell_options
from facerestore.image_io import Picture
from facerestore.networks import Networks
from facerestore.options import BatchOptions, RestoreOptions
from facerestore.pipeline import ProgressCallback, Restorer, RestoreResult

EVENT_TOPIC = "facerestore"  # each task's start and end, logged on the scheduler (who ran what, and when)
GPU = "GPU"  # the resource GPU workers declare: dask worker --resources GPU=1
CONNECT_TIMEOUT = "10s"  # a scheduler that has not answered by then is not there

_networks = Networks()  # this worker process's loaded networks, shared by every task and option set
RESTORERS_KEPT = 64  # option sets a worker keeps a restorer for (a server's jobs vary their options)


@contextmanager
def connect(address: str) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a cluster of N local worker processes ('local:N')
    that lives as long as the block; each local worker gets its share of the cores."""
    if not address.startswith("local:"):
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except OSError as error:
            raise OptionError(f"{option('cluster')} {address}: no scheduler answers ({error})") from None
        with client:
            yield client
        return
    workers = int(address.removeprefix("local:"))
    threads = str(max(1, runtime.default_threads() // workers))
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # workers heartbeating while the cluster closes log tracebacks
            env={runtime.THREADS_ENV: threads},
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@functools.lru_cache(maxsize=RESTORERS_KEPT)
def worker_restorer(options: RestoreOptions) -> Restorer:
    """This process's restorer for ``options``, its networks shared with every other one (a restorer holds
    only its options and plan, so one built twice by concurrent first calls costs nothing)."""
    return Restorer(options, _networks)


class NetworksOnWorker(WorkerPlugin):
    """Loads a batch's networks when a worker joins (or when the batch starts), so no task waits for them
    and a missing model fails the batch at once instead of every task."""

    name = "facerestore-networks"

    def __init__(self, options: RestoreOptions) -> None:
        self.options = options

    def setup(self, worker: Any) -> None:
        worker_restorer(self.options).load()
        worker.log_event(EVENT_TOPIC, {"input": None, "state": "networks ready", "pid": os.getpid()})


@contextmanager
def _logged(task: str) -> Iterator[None]:
    """Tells the scheduler when this worker starts and finishes a task (a dashboard's or a test's view)."""
    worker = get_worker()
    worker.log_event(EVENT_TOPIC, {"input": task, "state": "started", "pid": os.getpid()})
    yield
    worker.log_event(EVENT_TOPIC, {"input": task, "state": "finished", "pid": os.getpid()})


def restore_on_worker(
    job: batch.Job, restore_options: RestoreOptions, options: BatchOptions, spell: Callable[[str], str]
) -> batch.ImageRecord:
    with _logged(str(job.source)):
        return batch.process(worker_restorer(restore_options), job, options, spell=spell)


def restore_picture_on_worker(options: RestoreOptions, picture: Picture, name: str) -> RestoreResult:
    with _logged(name):
        return worker_restorer(options).restore(picture, keep_crops=True)


def restore_segment_on_worker(
    job: batch.Job, segment: video.Segment, restore_options: RestoreOptions, options: BatchOptions
) -> video.VideoReport:
    with _logged(f"{job.source} segment {segment.index}"):
        job.target.parent.mkdir(parents=True, exist_ok=True)
        restorer = worker_restorer(restore_options)
        return video.restore_segment(
            job.source, job.target, segment, restorer, options.video, max_pixels=options.max_pixels
        )


def join_on_worker(job: batch.Job, reports: list[video.VideoReport]) -> batch.ImageRecord:
    with _logged(f"{job.source} join"):
        record = batch.ImageRecord(input=str(job.source))
        batch.fill_clip_record(record, job, video.join_segments(job.source, job.target, reports))
        return record


def _task_options(options: BatchOptions) -> BatchOptions:
    """What a task runs with: the client has already settled which outputs exist or may be replaced, so a
    task that runs again after its worker was lost replaces its own earlier output."""
    return options.model_copy(update={"overwrite": True, "resume": False, "report": None})


def _resources(client: Client, restore_options: RestoreOptions) -> dict[str, float] | None:
    """A named accelerator runs only on workers that declare a GPU; 'cpu', 'openvino' (on the CPU) and 'auto'
    run anywhere."""
    if restore_options.device in ("cpu", runtime.OPENVINO, "auto"):
        return None
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if not any(worker.get("resources", {}).get(GPU) for worker in workers):
        raise OptionError(
            f"{option('device')} {restore_options.device}: no worker of the cluster declares a GPU "
            f"(start GPU workers with: dask worker SCHEDULER --resources {GPU}=1)"
        )
    return {GPU: 1}


def run_batch(
    client: Client,
    restore_options: RestoreOptions,
    jobs: Sequence[batch.Job],
    options: BatchOptions,
    on_record: Callable[[batch.ImageRecord], None] | None = None,
    *,
    spell: Callable[[str], str] = str,
) -> list[batch.ImageRecord]:
    """Restores ``jobs`` on the cluster; records in the jobs' order, each reported as its task completes.
    An interruption (Ctrl-C) cancels the tasks that have not finished."""
    report = on_record or (lambda record: None)
    records: list[batch.ImageRecord | None] = [batch.settled_record(job, options, spell) for job in jobs]
    for record in records:
        if record is not None:
            report(record)
    pending = {index: job for index, job in enumerate(jobs) if records[index] is None}
    if pending:
        futures = _submit(client, restore_options, pending, _task_options(options), spell)
        try:
            for future in as_completed(futures):
                record = _outcome(future, jobs[futures[future]], spell)
                records[futures[future]] = record
                report(record)
        finally:
            client.cancel(list(futures))
            batch.remove_leftovers(jobs)
    return [record for record in records if record is not None]


def _submit(
    client: Client,
    restore_options: RestoreOptions,
    jobs: dict[int, batch.Job],
    options: BatchOptions,
    spell: Callable[[str], str],
) -> dict[Any, int]:
    """One task per job, after the workers have loaded the networks; each future's job index."""
    resources = _resources(client, restore_options)
    client.register_plugin(NetworksOnWorker(restore_options))
    return {
        _submit_job(client, job, restore_options, options, spell, resources): index
        for index, job in jobs.items()
    }


def _submit_job(
    client: Client,
    job: batch.Job,
    restore_options: RestoreOptions,
    options: BatchOptions,
    spell: Callable[[str], str],
    resources: dict[str, float] | None,
) -> Any:
    """The future of the job's record: one task, or for a long clip one task per segment and a join."""
    segments = _segments(job, options)
    if len(segments) < 2:
        return client.submit(
            restore_on_worker, job, restore_options, options, spell, pure=False, resources=resources
        )
    parts = [
        client.submit(
            restore_segment_on_worker, job, segment, restore_options, options, pure=False, resources=resources
        )
        for segment in segments
    ]
    return client.submit(join_on_worker, job, parts, pure=False)


def _segments(job: batch.Job, options: BatchOptions) -> list[video.Segment]:
    """A clip's segments; none for a picture, or for a clip that cannot be read (its task says why)."""
    if not video.is_video(job.source):
        return []
    try:
        return video.plan_segments(job.source, options.video.segment_seconds)
    except FaceRestoreError:
        return []


def _outcome(future: Any, job: batch.Job, spell: Callable[[str], str]) -> batch.ImageRecord:
    """The task's record; a task the cluster gave up on (its workers kept dying) becomes an error record."""
    try:
        record: batch.ImageRecord = future.result()
    except FaceRestoreError as error:  # a clip's segment could not be restored
        return batch.ImageRecord(input=str(job.source), error=error.render(spell))
    except Exception as error:
        reason = spell_options(_lost_because(error), spell)
        return batch.ImageRecord(input=str(job.source), error=f"not restored: {reason}")
    return record


def _lost_because(error: Exception) -> str:
    if getattr(error, "reason", None) == "scheduler-connection-lost":
        return f"the cluster's scheduler was lost (run again with {option('resume')} to continue)"
    return "the cluster gave up on it (" + " ".join(str(error).split())[:200] + ")"


class ClusterRestorer:
    """Restores single pictures on the cluster, one task each, for a caller that waits (the server's job
    threads); the task is cancelled when the caller's progress callback raises (its job was cancelled)."""

    POLL_SECONDS = 0.5

    def __init__(self, client: Client) -> None:
        self.client = client

    def preload(self, options: RestoreOptions) -> None:
        self.client.register_plugin(NetworksOnWorker(options))

    def restore(self, restorer: Restorer, picture: Picture, progress: ProgressCallback) -> RestoreResult:
        future = self.client.submit(
            restore_picture_on_worker,
            restorer.options,
            picture,
            f"upload {id(picture):x}",
            pure=False,
            resources=_resources(self.client, restorer.options),
        )
        try:
            while True:
                progress("restore", 0, 1)
                try:
                    result: RestoreResult = future.result(timeout=self.POLL_SECONDS)
                    return result
                except TimeoutError:
                    continue
        finally:
            future.cancel()


def quiet_logs() -> None:
    """Keeps Dask's own logging (a lost connection's tracebacks) off the terminal: each input's record says
    what happened in one line."""
    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL)
