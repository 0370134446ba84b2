"""The HTTP API against a real server process on loopback: restore, jobs, detect, models, bad input,
limits."""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import select
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from test_video import SIDE, audio_packets, frame_stamps, pan_frames, write_clip

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = {"bg_upsampler": "none"}  # the background network costs seconds per picture on a CPU
# The strict server's codeformer.onnx is broken; named, it restores every face (face model 'auto' would
# leave a sharp, clean face as it is and never load it).
BROKEN = FAST | {"face_model": "codeformer"}
START_TIMEOUT = 120.0


# -- a server in its own process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=180, headers=headers)

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", int(self.url.rpartition(":")[2])

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def _wait_until(url: str, process: subprocess.Popen[bytes], log: Path, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + path, timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {path} in {START_TIMEOUT:g} s:\n{log.read_text()}")


def _limit_open_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


@contextlib.contextmanager
def running_server(
    log_dir: Path,
    *arguments: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    open_files: int | None = None,
) -> Iterator[RunningServer]:
    """``facerestore serve`` in a subprocess on a free loopback port (with at most ``open_files`` files open,
    when given), stopped afterwards."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    command = [sys.executable, "-m", "facerestore.cli", "serve", "--port", str(port), *arguments]
    limit = None if open_files is None else lambda: _limit_open_files(open_files)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=limit,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(url, process, log, "/v1/ready" if wait_ready else "/v1/health")
        yield RunningServer(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


# -- test pictures


@dataclass(frozen=True)
class Photos:
    whole_00: bytes  # 1297x1920, two children
    pair: bytes  # Blake_Lively.jpg, 700x464, two faces
    small_pair: bytes  # the same at 350x232
    one_face: bytes  # a 260x330 crop around one face
    tiny_face: bytes  # the same at 130x165: the cheapest real restore


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photos(shared_dir: Path) -> Photos:
    whole = shared_dir / "data/real/gfpgan-whole"
    pair = Image.open(whole / "Blake_Lively.jpg").convert("RGB")
    return Photos(
        whole_00=(whole / "00.jpg").read_bytes(),
        pair=(whole / "Blake_Lively.jpg").read_bytes(),
        small_pair=_jpeg(pair.resize((350, 232), Image.Resampling.LANCZOS)),
        one_face=_jpeg(pair.crop((380, 30, 640, 360))),
        tiny_face=_jpeg(pair.crop((380, 30, 640, 360)).resize((130, 165), Image.Resampling.LANCZOS)),
    )


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression ('pixel') bomb in miniature."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def upload(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> dict[str, Any]:
    return {"image": (name, data, content_type)}


# -- servers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The defaults: one job at a time, eight more queued."""
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Tight limits, an API key, CORS for one origin, one more host name, and a model folder with only a
    corrupt CodeFormer file, which 'auto' then picks, so that its restores fail like a broken model's."""
    models = tmp_path_factory.mktemp("models")
    (models / "codeformer.onnx").write_bytes(b"not an ONNX model")
    arguments = [
        "--max-upload-mb", "1", "--max-jobs", "1", "--queue-size", "1", "--retention", "3",
        "--sync-max-pixels", "200000", "--api-key", "sesame", "--cors-origin", "http://app.example",
        "--allowed-host", "photos.example",
    ]  # fmt: skip
    env = {"FACERESTORE_MODEL_DIR": str(models)}
    with running_server(tmp_path_factory.mktemp("strict"), *arguments, env=env, wait_ready=False) as running:
        yield running


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def strict_api(strict_server: RunningServer) -> Iterator[httpx.Client]:
    with strict_server.client(Authorization="Bearer sesame") as client:
        yield client


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120) -> tuple[dict[str, Any], list[Any]]:
    """Polls until the job finishes; returns its last status and every status seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.append(job)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {seen[-1]}")


def assert_json_error(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message: str = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message and "/work" not in message
    for word in words:
        assert word in message, message
    return message


# -- the main path


def test_serve_prints_its_url_and_listens_on_loopback(server: RunningServer) -> None:
    assert f"web page and API at {server.url}/" in server.output()
    assert server.url.startswith("http://127.0.0.1:")


def test_health_readiness_and_the_page(api: httpx.Client) -> None:
    assert api.get("/v1/health").json()["status"] == "ok"
    ready = api.get("/v1/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    page = api.get("/")
    assert page.status_code == 200 and "facerestore" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert api.get(asset).status_code == 200


def test_openapi_describes_every_endpoint(api: httpx.Client) -> None:
    spec = api.get("/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    expected = {
        "/v1/health", "/v1/ready", "/v1/models", "/v1/detect", "/v1/analyze", "/v1/restore", "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/result", "/v1/jobs/{job_id}/input",
        "/v1/jobs/{job_id}/faces/{index}/{side}", "/v1/jobs/{job_id}/frame",
    }  # fmt: skip
    assert set(spec["paths"]) == expected
    assert "scale" in spec["components"]["schemas"]["RestoreForm"]["properties"]


def test_models_say_what_is_installed_and_licensed(api: httpx.Client) -> None:
    info = api.get("/v1/models").json()
    rows = {row["name"]: row for row in info["models"]}
    assert rows["realesrgan-x4plus"]["installed"] is True
    assert rows["codeformer"]["commercial_use"] is False and rows["codeformer"]["supports_fidelity"] is True
    assert rows["gfpgan-1.4"]["supports_fidelity"] is False
    assert "none" in info["choices"]["bg_upsampler"] and "auto" in info["choices"]["face_model"]
    assert info["auto_face_model"] in rows
    assert all("path" not in row for row in info["models"])  # no file-system details leave the server


@pytest.mark.slow
def test_restore_whole_photo_2x_with_two_faces(api: httpx.Client, photos: Photos) -> None:
    response = api.post("/v1/restore", files=upload(photos.whole_00, "00.jpg"), data=FAST)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert image_of(response.content).size == (2594, 3840)
    assert response.headers["x-face-count"] == "2"
    metadata = api.get(f"/v1/jobs/{response.headers['x-job-id']}").json()["result"]
    assert (metadata["width"], metadata["height"], metadata["scale"]) == (2594, 3840, 2.0)
    assert len(metadata["faces"]) == 2
    assert all(face["score"] > 0.9 and len(face["landmarks"]) == 5 for face in metadata["faces"])


def test_restore_with_default_options(api: httpx.Client, photos: Photos) -> None:
    response = api.post("/v1/restore", files=upload(photos.tiny_face, "face.jpg"))
    assert response.status_code == 200, response.text
    assert image_of(response.content).size == (260, 330)  # scale 2 by default
    metadata = api.get(f"/v1/jobs/{response.headers['x-job-id']}").json()["result"]
    assert metadata["bg_upsampler"] == "realesr-compact-x4" and len(metadata["faces"]) == 1


def test_job_flow_with_progress(api: httpx.Client, photos: Photos) -> None:
    options = {**FAST, "scale": "1.5", "format": "png"}
    created = api.post("/v1/jobs", files=upload(photos.small_pair), data=options)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert created.headers["location"] == f"/v1/jobs/{job_id}" and len(job_id) >= 20
    job, seen = wait_for_job(api, job_id)
    assert job["status"] == "succeeded", job
    fractions = [status["progress"]["fraction"] for status in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {status["status"] for status in seen} >= {"running", "succeeded"}
    result = api.get(job["links"]["result"], params={"download": 1})
    assert result.headers["content-type"] == "image/png"
    assert result.headers["content-disposition"].startswith("attachment")
    assert image_of(result.content).size == (525, 348)
    assert image_of(api.get(job["links"]["input"]).content).size == (350, 232)
    assert len(job["links"]["faces"]) == len(job["result"]["faces"]) == 2
    for pair in job["links"]["faces"]:
        assert image_of(api.get(pair["before"]).content).format == "JPEG"
        assert image_of(api.get(pair["after"]).content).format == "JPEG"
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert_json_error(api.get(f"/v1/jobs/{job_id}"), 404, "no such job")


def test_cancel_a_queued_and_a_running_job(api: httpx.Client, photos: Photos) -> None:
    tiled = {"scale": "4", "bg_upsampler": "realesr-compact-x4"}  # progress (and so cancel) at every tile
    jobs = [api.post("/v1/jobs", files=upload(photos.pair), data=tiled).json()["id"] for _ in range(2)]
    queued = api.post(f"/v1/jobs/{jobs[1]}/cancel").json()  # one slot: the second job waits
    assert queued["status"] == "cancelled"
    running = api.post(f"/v1/jobs/{jobs[0]}/cancel").json()
    assert running["status"] == "cancelled" or running["cancel_requested"] is True
    assert [wait_for_job(api, job_id)[0]["status"] for job_id in jobs] == ["cancelled"] * 2
    assert_json_error(api.get(f"/v1/jobs/{jobs[0]}/result"), 409, "cancelled")
    assert api.get("/v1/ready").json()["jobs"]["running"] == 0


def test_detect_faces(api: httpx.Client, photos: Photos) -> None:
    response = api.post("/v1/detect", files=upload(photos.pair))
    assert response.status_code == 200, response.text
    found = response.json()
    assert (found["width"], found["height"]) == (700, 464)
    assert len(found["faces"]) == 2
    face = found["faces"][0]
    assert len(face["box"]) == 4 and 0 < face["score"] <= 1
    assert set(face["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    largest = api.post("/v1/detect", files=upload(photos.pair), data={"only_largest_face": "true"}).json()
    assert len(largest["faces"]) == 1


def test_analyze_faces(api: httpx.Client, photos: Photos) -> None:
    response = api.post("/v1/analyze", files=upload(photos.pair), data={"only_largest_face": "true"})
    assert response.status_code == 200, response.text
    found = response.json()
    assert (found["width"], found["height"]) == (700, 464) and 1 <= found["scale"] <= 4
    [face] = found["faces"]
    analysis = face["analysis"]
    assert 0 < analysis["effective_width"] <= analysis["width"] and analysis["jpeg_quality"] is not None
    assert analysis["advice"]["outcome"]
    assert_json_error(api.post("/v1/analyze", files=upload(b"not an image")), 422, "not a supported image")


def test_content_is_sniffed_not_the_name_or_type(api: httpx.Client, photos: Photos) -> None:
    png = io.BytesIO()
    image_of(photos.one_face).save(png, "PNG")
    response = api.post("/v1/detect", files=upload(png.getvalue(), "notes.txt", "text/plain"))
    assert response.status_code == 200 and len(response.json()["faces"]) == 1


# -- bad input


BAD_FILES = {
    "text": (b"hello, I am not a picture\n" * 20, 422, "not a supported image"),
    "truncated": (None, 422, "truncated"),
    "pixel bomb": (png_claiming(60_000, 60_000), 422, "megapixels"),
    "empty": (b"", 422, "empty"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_get_422(api: httpx.Client, photos: Photos, kind: str) -> None:
    data, status, words = BAD_FILES[kind]
    data = photos.pair[: len(photos.pair) // 3] if data is None else data
    for path in ("/v1/restore", "/v1/jobs"):
        assert_json_error(api.post(path, files=upload(data), data=FAST), status, words)
    assert_json_error(api.post("/v1/detect", files=upload(data)), status, words)


BAD_FIELDS = {
    "scale 0": ({"scale": "0"}, "scale"),
    "scale 9": ({"scale": "9"}, "scale"),
    "scale not a number": ({"scale": "big"}, "scale"),
    "fidelity 7": ({"fidelity": "7"}, "fidelity"),
    "blend nan": ({"blend": "nan"}, "blend"),
    "unknown model": ({"face_model": "gfpgan-9"}, "unknown face model"),
    "detector as face model": ({"face_model": "retinaface"}, "detector"),
    "unknown background": ({"bg_upsampler": "magic"}, "background"),
    "unknown detector": ({"detector": "eyeball"}, "detector"),
    "unknown field": ({"sharpness": "11"}, "unknown field 'sharpness'"),
    "bad flag": ({"color_fix": "maybe"}, "color_fix"),
    "bad format": ({"format": "gif"}, "format"),
    "quality 0": ({"quality": "0"}, "quality"),
}


@pytest.mark.parametrize("case", BAD_FIELDS)
def test_wrong_options_get_400_saying_what_to_fix(api: httpx.Client, photos: Photos, case: str) -> None:
    fields, words = BAD_FIELDS[case]
    for path in ("/v1/restore", "/v1/jobs"):
        assert_json_error(api.post(path, files=upload(photos.one_face), data=fields), 400, words)


def test_a_model_that_is_not_installed_gets_400(api: httpx.Client, photos: Photos) -> None:
    rows = api.get("/v1/models").json()["models"]
    missing = [row["name"] for row in rows if row["purpose"] == "face-restorer" and not row["installed"]]
    if not missing:
        pytest.skip("every face model is installed here")
    response = api.post("/v1/jobs", files=upload(photos.one_face), data={"face_model": missing[0]})
    assert_json_error(response, 400, "missing")


def test_malformed_requests(api: httpx.Client, photos: Photos) -> None:
    assert_json_error(api.post("/v1/jobs", data={"scale": "2"}, files={"x": ("a", b"")}), 400)
    assert_json_error(api.post("/v1/jobs", data={"scale": "2"}), 415, "multipart")
    assert_json_error(api.post("/v1/jobs", content=photos.one_face), 415, "multipart")
    two_files = [("image", ("a.jpg", photos.one_face)), ("image", ("b.jpg", photos.one_face))]
    assert_json_error(api.post("/v1/jobs", files=two_files), 400)
    broken = {"content-type": "multipart/form-data; boundary=xyz"}
    assert_json_error(api.post("/v1/jobs", content=b"--xyz\r\nnonsense", headers=broken), 400)


def test_result_too_large_for_the_server(api: httpx.Client, photos: Photos) -> None:
    response = api.post("/v1/jobs", files=upload(photos.whole_00), data={"scale": "8", **FAST})
    assert_json_error(response, 400, "megapixels", "scale of at most")


def test_unknown_paths_and_jobs_get_json_404(api: httpx.Client) -> None:
    assert_json_error(api.get("/v1/jobs/not-a-job"), 404, "no such job")
    assert_json_error(api.get("/v1/jobs/..%2F..%2Fetc%2Fpasswd/result"), 404)
    assert_json_error(api.get("/v1/nothing"), 404)
    assert_json_error(api.get("/static/../pyproject.toml"), 404)
    assert_json_error(api.put("/v1/jobs"), 405)


def test_cors_is_off_by_default(api: httpx.Client) -> None:
    preflight = {"origin": "http://app.example", "access-control-request-method": "POST"}
    response = api.options("/v1/jobs", headers=preflight)
    assert "access-control-allow-origin" not in response.headers


# -- limits, keys, failures


def test_oversized_upload_gets_413(strict_server: RunningServer, strict_api: httpx.Client) -> None:
    big = os.urandom(1536 * 1024)
    assert_json_error(strict_api.post("/v1/jobs", files=upload(big)), 413, "limit")

    def stream() -> Iterator[bytes]:  # no Content-Length: the limit applies while the body streams in
        yield b"--b\r\nContent-Disposition: form-data; name=image; filename=a.jpg\r\n\r\n"
        for _ in range(12):
            yield big[: 128 * 1024]

    chunked = strict_api.post(
        "/v1/jobs", content=stream(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert_json_error(chunked, 413, "limit")
    assert strict_api.get("/v1/health").status_code == 200


def test_sync_restore_of_a_large_picture_asks_for_a_job(strict_api: httpx.Client, photos: Photos) -> None:
    response = strict_api.post("/v1/restore", files=upload(photos.pair), data=FAST)
    assert_json_error(response, 413, "POST /v1/jobs")


def test_more_jobs_than_slots_are_queued_then_refused(
    strict_server: RunningServer, strict_api: httpx.Client, photos: Photos
) -> None:
    options = {"face_model": "realesrgan-x4plus", "scale": "1", **FAST}
    answers = [strict_api.post("/v1/jobs", files=upload(photos.tiny_face), data=options) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [202, 202, 429, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert_json_error(answers[2], 429, "busy")
    started = time.monotonic()
    assert strict_api.get("/v1/health").status_code == 200
    assert time.monotonic() - started < 1.0  # the event loop is free while a job runs
    for answer in answers[:2]:
        job, _ = wait_for_job(strict_api, answer.json()["id"])
        assert job["status"] == "succeeded" and len(job["result"]["faces"]) == 1
    assert strict_server.process.poll() is None


def test_a_failing_model_fails_the_job_not_the_server(strict_api: httpx.Client, photos: Photos) -> None:
    created = strict_api.post("/v1/jobs", files=upload(photos.tiny_face), data=BROKEN)
    job, _ = wait_for_job(strict_api, created.json()["id"])
    assert job["status"] == "failed" and "codeformer" in job["error"]
    assert_json_error(strict_api.get(f"/v1/jobs/{job['id']}/result"), 409, "failed")
    sync = strict_api.post("/v1/restore", files=upload(photos.tiny_face), data=BROKEN)
    assert_json_error(sync, 500, "restore failed")
    ready = strict_api.get("/v1/ready")
    assert ready.status_code == 503 and "failed to load" in ready.json()["reason"]
    assert strict_api.get("/v1/health").status_code == 200


def test_api_keys_guard_the_api_but_not_health(strict_server: RunningServer) -> None:
    with strict_server.client() as anonymous:
        assert_json_error(anonymous.get("/v1/models"), 401, "API key")
        assert anonymous.get("/v1/models").headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/v1/health").status_code == 200
        assert anonymous.get("/v1/openapi.json").status_code == 200
    with strict_server.client(Authorization="Bearer wrong") as wrong:
        assert_json_error(wrong.get("/v1/models"), 401)


def test_cors_for_a_configured_origin(strict_api: httpx.Client) -> None:
    allowed = strict_api.get("/v1/health", headers={"origin": "http://app.example"})
    assert allowed.headers["access-control-allow-origin"] == "http://app.example"
    other = strict_api.get("/v1/health", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_finished_jobs_are_deleted_after_retention(strict_api: httpx.Client, photos: Photos) -> None:
    created = strict_api.post("/v1/jobs", files=upload(photos.tiny_face), data=BROKEN)  # fails fast
    job, _ = wait_for_job(strict_api, created.json()["id"])
    assert job["status"] == "failed" and job["expires"]
    time.sleep(3.8)  # retention is 3 s; the sweep runs every 0.5 s
    assert_json_error(strict_api.get(f"/v1/jobs/{job['id']}"), 404, "deleted")


# -- hostile connections


def seconds_until_closed(connection: socket.socket, trickle: bytes, limit: float) -> float:
    """Sends ``trickle`` every 0.2 s until the server closes the connection; how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            connection.sendall(trickle)
            readable, _, _ = select.select([connection], [], [], 0.2)
            if readable and not connection.recv(1 << 16):
                break
        except OSError:  # reset or broken pipe: closed as well
            break
    return time.monotonic() - started


def test_request_headers_have_a_deadline(tmp_path: Path) -> None:
    arguments = ("--no-preload", "--header-timeout", "1")
    with running_server(tmp_path, *arguments, wait_ready=False) as server:
        slow = socket.create_connection(server.address)
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert seconds_until_closed(slow, b"X-Still-Typing: 1\r\n", limit=10) < 4
        slow.close()


def test_idle_connections_cannot_starve_the_server(tmp_path: Path) -> None:
    """More sockets that never send a request than the process may open files: the longest idle ones are
    closed to make room, health answers, and the log does not fill with accept errors."""
    with running_server(tmp_path, "--no-preload", wait_ready=False, open_files=256) as server:
        idle = [socket.create_connection(server.address) for _ in range(300)]
        try:
            time.sleep(1)
            for _ in range(3):
                assert httpx.get(server.url + "/v1/health", timeout=5).status_code == 200
        finally:
            for connection in idle:
                connection.close()
        time.sleep(1)
        assert "Too many open files" not in server.output()
        assert len(server.output()) < 20_000


MULTIPART_POST = (
    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    "Transfer-Encoding: chunked\r\n"
)
IMAGE_PART = b"--b\r\nContent-Disposition: form-data; name=image; filename=a.jpg\r\n\r\n"


def upload_until_closed(server: RunningServer, head: str, start: bytes, limit: int) -> tuple[int, bytes]:
    """Streams a chunked body, ``start`` then up to ``limit`` bytes more; how much went in before the
    server closed the connection, and the start of its answer."""
    chunk = b"x" * (1 << 16)
    sent = 0
    with socket.create_connection(server.address) as connection:
        connection.sendall(f"{head}\r\n".encode() + b"%x\r\n%s\r\n" % (len(start), start))
        with contextlib.suppress(OSError):
            while sent < limit:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        connection.settimeout(5)
        try:
            answer = connection.recv(1 << 16)
        except OSError:
            answer = b""
    return sent, answer


def test_an_early_answer_stops_the_upload(server: RunningServer, strict_server: RunningServer) -> None:
    """A 413 (over the limit) or 400 (malformed) sent before the body has all arrived closes the
    connection, rather than reading and throwing away the rest of the upload."""
    with_key = MULTIPART_POST + "Authorization: Bearer sesame\r\n"
    for running, head, start, status in (
        (strict_server, with_key, IMAGE_PART, b"413"),
        (server, MULTIPART_POST, b"not multipart", b"400"),
    ):
        sent, answer = upload_until_closed(running, head, start, limit=256 << 20)
        assert sent < 32 << 20  # the limit is 1 MB; the rest is what the sockets' buffers held
        assert answer.startswith(b"HTTP/1.1 " + status) and b"connection: close" in answer, answer
    assert strict_server.process.poll() is None and server.process.poll() is None


def test_a_client_hanging_up_mid_upload_is_not_an_error(server: RunningServer) -> None:
    before = len(server.output())
    with socket.create_connection(server.address) as leaving:
        leaving.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            b"Content-Disposition: form-data; name=image; filename=a.jpg\r\n\r\n" + b"x" * 50_000
        )
        time.sleep(0.3)
    time.sleep(1)
    said = server.output()[before:]
    assert "Traceback" not in said and "error" not in said.lower()
    assert len(said.splitlines()) <= 1


# -- whose requests are answered


def test_only_the_servers_own_host_names_are_answered(server: RunningServer, api: httpx.Client) -> None:
    port = server.address[1]
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example"):
        assert_json_error(api.get("/v1/health", headers={"host": host}), 400, "unknown host")
    for host in (f"localhost:{port}", "127.0.0.1", f"[::1]:{port}", f"192.168.1.20:{port}"):
        assert api.get("/v1/health", headers={"host": host}).status_code == 200, host


def test_more_host_names_can_be_allowed(strict_api: httpx.Client) -> None:
    assert strict_api.get("/v1/health", headers={"host": "photos.example:8000"}).status_code == 200
    assert_json_error(strict_api.get("/v1/health", headers={"host": "other.example"}), 400, "unknown host")


def test_cross_site_posts_are_refused(api: httpx.Client, photos: Photos) -> None:
    evil = {"origin": "http://evil.example"}
    for headers in ({**evil, "sec-fetch-site": "cross-site"}, evil, {"sec-fetch-site": "same-site"}):
        refused = api.post("/v1/jobs", files=upload(photos.one_face), headers=headers)
        assert_json_error(refused, 403, "cross-site")
    own = {"sec-fetch-site": "same-origin", "origin": str(api.base_url).rstrip("/")}
    assert api.post("/v1/detect", files=upload(photos.one_face), headers=own).status_code == 200
    assert api.get("/v1/health", headers={**evil, "sec-fetch-site": "cross-site"}).status_code == 200


def test_cors_origins_may_post_and_refusals_are_json(strict_api: httpx.Client, photos: Photos) -> None:
    allowed = {"origin": "http://app.example", "sec-fetch-site": "cross-site"}
    response = strict_api.post("/v1/detect", files=upload(photos.one_face), headers=allowed)
    assert (
        response.status_code == 200
        and response.headers["access-control-allow-origin"] == "http://app.example"
    )
    preflight = {"origin": "http://evil.example", "access-control-request-method": "POST"}
    assert_json_error(strict_api.options("/v1/jobs", headers=preflight), 400, "CORS", "origin")


# -- work refused before it is done


def test_the_header_decides_before_decoding(strict_api: httpx.Client) -> None:
    """A 49-megapixel PNG whose pixel data is cut short: answering from its header is the only way not to
    get 'truncated', which decoding it (150 MB, most of a second) would say."""
    claimed = png_claiming(7000, 7000)
    inline = strict_api.post("/v1/restore", files=upload(claimed), data={"scale": "1", **FAST})
    assert_json_error(inline, 413, "POST /v1/jobs")
    too_large = strict_api.post("/v1/jobs", files=upload(claimed), data={"scale": "8", **FAST})
    assert_json_error(too_large, 400, "scale of at most")


def test_a_full_queue_refuses_before_decoding(strict_api: httpx.Client, photos: Photos) -> None:
    options = {"face_model": "realesrgan-x4plus", "scale": "1", **FAST}
    answers = [strict_api.post("/v1/jobs", files=upload(photos.tiny_face), data=options) for _ in range(2)]
    try:
        assert [answer.status_code for answer in answers] == [202, 202]
        assert_json_error(strict_api.post("/v1/jobs", files=upload(png_claiming(7000, 7000))), 429, "busy")
    finally:  # the next tests need the queue empty
        for answer in answers:
            if answer.status_code == 202:
                wait_for_job(strict_api, answer.json()["id"])


# -- what errors tell


def _names_no_server_path(message: str) -> None:
    assert not re.search(r"(^|[\s(:'])/\w", message), message


def test_errors_name_no_server_paths(strict_api: httpx.Client, photos: Photos) -> None:
    created = strict_api.post("/v1/jobs", files=upload(photos.tiny_face), data=BROKEN)
    job, _ = wait_for_job(strict_api, created.json()["id"])
    assert job["status"] == "failed" and "codeformer.onnx" in job["error"]
    _names_no_server_path(job["error"])
    _names_no_server_path(strict_api.get("/v1/ready").json()["reason"])
    missing = strict_api.post("/v1/jobs", files=upload(photos.tiny_face), data={"face_model": "gfpgan-1.4"})
    message = assert_json_error(missing, 400, "gfpgan-1.4", "missing", "not installed on this server")
    _names_no_server_path(message)
    assert "FACERESTORE_MODEL_DIR" not in message and "facerestore models" not in message


def test_errors_name_server_settings_not_flags(api: httpx.Client) -> None:
    bomb = api.post("/v1/jobs", files=upload(png_claiming(60_000, 60_000)))
    message = assert_json_error(bomb, 422, "megapixels", "the server's max_pixels setting")
    assert "--" not in message


# -- the command line


@pytest.mark.parametrize(
    "arguments",
    [
        ["--retention", "inf"],
        ["--retention", "nan"],
        ["--port", "99999"],
        ["--max-stored-mb", "0"],
        ["--header-timeout", "-1"],
        ["--max-connections", "0"],
    ],
)
def test_serve_refuses_impossible_settings_in_one_line(arguments: list[str]) -> None:
    command = [sys.executable, "-m", "facerestore.cli", "serve", *arguments]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120)
    lines = ran.stderr.strip().splitlines()
    assert ran.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
    assert arguments[0] in lines[0] and not ran.stdout


def test_a_video_is_restored_as_a_job_with_frame_progress_and_frames_to_compare(
    api: httpx.Client, shared_dir: Path, tmp_path: Path, photos: Photos
) -> None:
    clip = tmp_path / "pan.mp4"
    write_clip(clip, pan_frames(shared_dir, 6), [i * 1000 for i in range(6)], Fraction(1, 8000))
    sent = upload(clip.read_bytes(), "pan.mp4", "video/mp4")
    form = {**FAST, "face_model": "realesr-compact-x4", "crf": "20"}
    assert_json_error(api.post("/v1/restore", files=sent, data=form), 413, "POST /v1/jobs")
    created = api.post("/v1/jobs", files=sent, data=form)
    assert created.status_code == 202, created.text
    job, seen = wait_for_job(api, created.json()["id"])
    assert job["status"] == "succeeded", job
    assert any(view["progress"]["stage"] == "frames" and view["progress"]["total"] == 6 for view in seen)
    assert job["result"]["video"]["frames_out"] == 6 and job["result"]["format"] == "mp4"
    assert job["result"]["video"]["flicker"]["frame_pairs"] == 5  # the report's flicker figures, as the CLI's
    result = api.get(job["links"]["result"])
    assert result.headers["content-type"] == "video/mp4"
    restored = tmp_path / "restored.mp4"
    restored.write_bytes(result.content)
    assert frame_stamps(restored) == frame_stamps(clip) and audio_packets(restored) == audio_packets(clip)
    for side, size in (("before", SIDE), ("after", (SIDE[0] * 2, SIDE[1] * 2))):
        frame = api.get(job["links"]["frame"], params={"at": 0.3, "side": side})
        assert frame.headers["content-type"] == "image/jpeg" and image_of(frame.content).size == size
    picture, _ = wait_for_job(
        api, api.post("/v1/jobs", files=upload(photos.tiny_face), data=FAST).json()["id"]
    )
    assert "frame" not in picture["links"]
    assert_json_error(api.get(f"/v1/jobs/{picture['id']}/frame"), 404, "not a video")
