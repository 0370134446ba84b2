"""Batches on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1, one of them killed
mid-batch; the outputs must equal a single-process run's, each exactly once, with nothing left behind."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from load_test import started_server
from PIL import Image

from facerestore import RestoreOptions, Restorer, load_image
from facerestore.cli import main

distributed = pytest.importorskip("distributed", reason="the cluster tests need Dask distributed")

from facerestore.cluster import EVENT_TOPIC  # noqa: E402 (needs distributed)

# Real networks, cheap enough for a test: the compact Real-ESRGAN on the faces, Lanczos behind them.
OPTIONS = ["--face-model", "realesr-compact-x4", "--bg-upsampler", "none", "--scale", "2"]
DASK = Path(sys.executable).parent / "dask"
CLI = [sys.executable, "-m", "facerestore.cli", "-q"]
PHOTOS = 8


@dataclass(frozen=True)
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: tuple[subprocess.Popen[bytes], ...]


def _wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A real `dask scheduler` and two `dask worker` processes (one thread each, no nanny to revive one)."""
    scheduler_file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    local = ["--host", "127.0.0.1", "--no-dashboard"]
    scheduler = subprocess.Popen(
        [str(DASK), "scheduler", *local, "--port", "0", "--scheduler-file", str(scheduler_file)], **quiet
    )
    env = {**os.environ, "FACERESTORE_THREADS": "1"}
    worker_command = [str(DASK), "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1"]
    workers = tuple(
        subprocess.Popen([*worker_command, *local, "--no-nanny", "--name", f"w{i}"], env=env, **quiet)
        for i in range(2)
    )
    try:
        address = _wait_for(lambda: _written_address(scheduler_file), 30, "the scheduler")
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield Cluster(address, scheduler, workers)
    finally:
        for process in (*workers, scheduler):
            process.kill()
            process.wait()


def _written_address(scheduler_file: Path) -> str | None:
    """The scheduler's address once it has written all of its file."""
    try:
        return str(json.loads(scheduler_file.read_text())["address"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def photos(shared_dir: Path, tmp_path: Path) -> Path:
    """Small real face photos (the CodeFormer test crops, reduced to 256 px)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for source in sorted((shared_dir / "data/real/codeformer-cropped").glob("*.png"))[:PHOTOS]:
        Image.open(source).convert("RGB").resize((256, 256), Image.Resampling.LANCZOS).save(
            folder / source.name
        )
    return folder


def _run_killing_a_busy_worker(
    cluster: Cluster, command: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs the command, SIGKILLs a worker that has finished a task and is mid-way through another, and
    returns that task's start event and every event, once the command has succeeded."""
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    with distributed.Client(cluster.address, timeout="30s") as client:
        victim = _wait_for(lambda: _busy_worker_that_finished_one(client), 90, "a worker mid-task")
        os.kill(victim["pid"], signal.SIGKILL)
        _, errors = run.communicate(timeout=180)
        events = _events(client)
    assert run.returncode == 0, errors
    return victim, events


def _events(client: Any) -> list[dict[str, Any]]:
    return [message for _, message in client.get_events(EVENT_TOPIC)]


def _busy_worker_that_finished_one(client: Any) -> dict[str, Any] | None:
    """A task-start event of a worker that already finished a task and is now mid-way through another."""
    events = _events(client)
    finished = {(event["worker"], event["input"]) for event in events if event["state"] == "finished"}
    for event in reversed(events):
        done_before = any(worker == event["worker"] for worker, _ in finished)
        if event["state"] == "started" and done_before and (event["worker"], event["input"]) not in finished:
            return event
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(cluster: Cluster, photos: Path, tmp_path: Path) -> None:
    assert main(["-q", "restore", str(photos), "-o", str(tmp_path / "local"), *OPTIONS]) == 0
    out, report = tmp_path / "out", tmp_path / "report.json"
    command = [*CLI, "restore", str(photos), "-o", str(out), *OPTIONS, "--cluster", cluster.address]
    victim, events = _run_killing_a_busy_worker(cluster, [*command, "--report", str(report)])
    finished = [event for event in events if event["state"] == "finished"]
    assert {event["pid"] for event in finished} == {worker.pid for worker in cluster.workers}, "both worked"
    loaded = sorted(event["pid"] for event in events if event["state"] == "networks ready")
    assert loaded == sorted(worker.pid for worker in cluster.workers), "networks loaded once per worker"
    rerun = [event for event in finished if event["input"] == victim["input"]]
    assert [event["pid"] for event in rerun] != [victim["pid"]] and rerun, "the lost task ran elsewhere"
    local = sorted(path.name for path in (tmp_path / "local").iterdir())
    assert sorted(path.name for path in out.iterdir()) == local, "each output once, no temporary files"
    for name in local:
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    records = json.loads(report.read_text())
    assert [Path(record["input"]).name for record in records] == local
    assert all(record["error"] is None and len(record["faces"]) == 1 for record in records)
    resumed = subprocess.run([*command, "--resume"], check=False)
    assert resumed.returncode == 0 and len(_events_now(cluster.address)) == len(events), "nothing redone"


def _events_now(address: str) -> list[dict[str, Any]]:
    with distributed.Client(address, timeout="30s") as client:
        return _events(client)


@pytest.mark.slow
def test_ctrl_c_cancels_the_outstanding_tasks(cluster: Cluster, photos: Path, tmp_path: Path) -> None:
    command = [*CLI, "restore", str(photos), "-o", str(tmp_path)]
    run = subprocess.Popen(
        [*command, *OPTIONS, "--cluster", cluster.address], stderr=subprocess.PIPE, text=True
    )
    with distributed.Client(cluster.address, timeout="30s") as client:
        _wait_for(lambda: any(event["state"] == "started" for event in _events(client)), 90, "a first task")
        run.send_signal(signal.SIGINT)
        _, errors = run.communicate(timeout=60)
        _wait_for(lambda: not any(client.processing().values()), 30, "the cluster to be idle")
        started = [event for event in _events(client) if event["state"] == "started"]
    assert run.returncode == 130 and errors.strip().splitlines()[-1] == "interrupted"
    assert len(started) < PHOTOS, "the tasks not yet started were cancelled"


@pytest.mark.slow
def test_a_lost_scheduler_ends_the_run_with_one_line_per_input(
    cluster: Cluster, photos: Path, tmp_path: Path
) -> None:
    command = [*CLI, "restore", str(photos), "-o", str(tmp_path), *OPTIONS, "--cluster", cluster.address]
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}  # give up reconnecting soon
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    with distributed.Client(cluster.address, timeout="30s") as client:
        _wait_for(lambda: any(event["state"] == "started" for event in _events(client)), 90, "a first task")
    cluster.scheduler.kill()
    _, errors = run.communicate(timeout=120)
    lines = errors.strip().splitlines()
    assert run.returncode == 1 and "Traceback" not in errors, errors
    lost = [
        line
        for line in lines
        if line.endswith("the cluster's scheduler was lost (run again with --resume to continue)")
    ]
    assert (
        lost
        and len(lost) + 1 == len(lines)
        and lines[-1].startswith(f"{PHOTOS - len(lost)} of {PHOTOS} inputs")
    )


@pytest.mark.slow
def test_local_cluster_refuses_a_gpu_no_worker_has(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "-q",
            "restore",
            str(photos),
            "-o",
            str(tmp_path),
            *OPTIONS,
            "--cluster",
            "local:1",
            "--device",
            "cuda",
        ]
    )
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and error_lines[-1].startswith(
        "error: --device cuda: no worker of the cluster declares a GPU"
    )


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("scheduler:8786", "--cluster: give a Dask scheduler's address"),
        ("local:0", "--cluster: give a Dask scheduler's address"),
        ("tcp://127.0.0.1:9", "--cluster tcp://127.0.0.1:9: no scheduler answers"),
    ],
)
def test_a_bad_cluster_address_is_one_line(
    address: str,
    message: str,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("facerestore.cluster.CONNECT_TIMEOUT", "2s")
    code = main(["-q", "restore", str(photos), "-o", str(tmp_path), *OPTIONS, "--cluster", address])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith(f"error: {message}"), err


@pytest.mark.slow
def test_server_jobs_run_on_the_cluster(cluster: Cluster, photos: Path, tmp_path: Path) -> None:
    photo = sorted(photos.iterdir())[0]
    form = {"face_model": "realesr-compact-x4", "bg_upsampler": "none", "scale": "2"}
    with started_server(["--cluster", cluster.address, "--max-jobs", "2"], tmp_path / "server.log") as (
        url,
        _,
    ):
        response = httpx.post(
            f"{url}/v1/restore", files={"image": (photo.name, photo.read_bytes())}, data=form, timeout=120
        )
    assert response.status_code == 200, response.text
    events = _events_now(cluster.address)
    assert {event["pid"] for event in events if event["state"] == "finished"} <= {
        w.pid for w in cluster.workers
    }
    tasks = [event["state"] for event in events if event["input"] is not None]
    assert tasks == ["started", "finished"], "one task, on a worker"
    options = RestoreOptions(face_model="realesr-compact-x4", bg_upsampler="none", scale=2)
    here = Restorer(options).restore(load_image(photo)).picture.pixels
    served = np.asarray(Image.open(io.BytesIO(response.content)))
    assert np.array_equal(served, here), "the cluster's result is this process's"


def _pan_clip(shared_dir: Path, path: Path, frames: int) -> None:
    """A 24 frames/s H.264 pan over a real photo of two people, a keyframe every 12 frames, with sound."""
    photo = np.asarray(Image.open(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg").convert("RGB"))
    with av.open(str(path), "w") as output:
        picture = output.add_stream("libx264", rate=24)
        picture.width, picture.height, picture.pix_fmt = 192, 144, "yuv420p"
        picture.options = {"g": "12", "keyint_min": "12", "sc_threshold": "0"}
        sound = output.add_stream("aac", rate=16000)
        for index in range(frames):
            crop = np.ascontiguousarray(
                photo[80 : 80 + 288, 120 + 3 * index : 120 + 3 * index + 384][::2, ::2]
            )
            output.mux(picture.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")))
        output.mux(picture.encode(None))
        tone = np.sin(np.arange(16000 * frames // 24) * 0.17).astype(np.float32)[None] * 0.2
        for start in range(0, tone.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            output.mux(sound.encode(chunk))
        output.mux(sound.encode(None))


def _stamps_and_sound(path: Path) -> tuple[list[int], list[bytes]]:
    with av.open(str(path)) as container:
        stamps = [frame.pts for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        return stamps, [bytes(packet) for packet in container.demux(audio=0) if packet.size]


@pytest.mark.slow
def test_a_clip_split_across_workers_one_killed(cluster: Cluster, shared_dir: Path, tmp_path: Path) -> None:
    clip = tmp_path / "in" / "pan.mp4"
    clip.parent.mkdir()
    _pan_clip(shared_dir, clip, 72)
    out, report = tmp_path / "out", tmp_path / "report.json"
    command = [*CLI, "restore", str(clip), "-o", str(out), *OPTIONS, "--cluster", cluster.address]
    _, events = _run_killing_a_busy_worker(
        cluster, [*command, "--segment-seconds", "0.5", "--report", str(report)]
    )
    segments = {
        event["pid"] for event in events if event["state"] == "finished" and "segment" in event["input"]
    }
    assert segments == {worker.pid for worker in cluster.workers}, "both workers restored segments"
    assert sorted(path.name for path in out.iterdir()) == ["pan.mp4"], "no segment or temporary files left"
    stamps, sound = _stamps_and_sound(clip)
    assert _stamps_and_sound(out / "pan.mp4") == (stamps, sound), "every frame's time and the sound kept"
    with av.open(str(out / "pan.mp4")) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (384, 288)
    (record,) = json.loads(report.read_text())
    assert record["error"] is None and record["video"]["frames_out"] == len(stamps) == 72
    assert record["video"]["tracks"] and record["video"]["copied_streams"] == ["audio"]
