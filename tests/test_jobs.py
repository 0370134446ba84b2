"""The job queue alone (no server, no faces): what it keeps of finished jobs."""

from __future__ import annotations

import asyncio

from facerestore.server.jobs import Job, JobManager, Report, Retention

Finished = tuple[JobManager[bytes, bytes], list[Job[bytes, bytes]]]


def echo(payload: bytes, report: Report) -> bytes:
    return payload


def finish_in_turn(retention: Retention[bytes], sizes: list[int]) -> Finished:
    """Runs one job per size, each to its end before the next, returning an outcome of that many bytes."""

    async def run() -> Finished:
        jobs = JobManager(echo, workers=1, queue_size=len(sizes), retention=retention)
        finished: list[Job[bytes, bytes]] = []
        for size in sizes:
            job = jobs.submit(b"x" * size)
            await job.settled.wait()
            finished.append(job)
        jobs.shutdown()
        return jobs, finished

    return asyncio.run(run())


def test_results_are_capped_by_bytes_oldest_first() -> None:
    retention = Retention[bytes](seconds=600, max_jobs=100, max_bytes=250, size_of=len)
    jobs, finished = finish_in_turn(retention, [100, 100, 100])
    assert [jobs.get(job.id) is not None for job in finished] == [False, True, True]


def test_the_newest_result_stays_whatever_its_size() -> None:
    retention = Retention[bytes](seconds=600, max_jobs=100, max_bytes=250, size_of=len)
    jobs, finished = finish_in_turn(retention, [100, 400])
    assert [jobs.get(job.id) is not None for job in finished] == [False, True]


def test_results_are_capped_by_count_and_expire() -> None:
    retention = Retention[bytes](seconds=600, max_jobs=2, max_bytes=1 << 30, size_of=len)
    jobs, finished = finish_in_turn(retention, [1, 1, 1])
    assert [jobs.get(job.id) is not None for job in finished] == [False, True, True]
    assert jobs.sweep(now=(finished[-1].finished or 0) + 600) == 2
