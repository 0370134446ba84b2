"""Load test: N concurrent clients restore real photos through the job API for a fixed time.

Starts ``facerestore serve`` on a free loopback port (or uses --url, which must be a loopback address),
keeps N clients busy creating jobs, polling them and fetching results, then waits for every accepted job.
Reports throughput, latency percentiles, answers by status, the health endpoint's worst latency while
loaded, and the server's peak memory. Exits non-zero if the server died or an accepted job was lost.

    python benchmarks/load_test.py --clients 4 --duration 60
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTO_FOLDERS = ("data/real/gfpgan-whole", "data/real/portraits")
FINISHED = ("succeeded", "failed", "cancelled")
POLL_SECONDS = 0.25
DRAIN_TIMEOUT = 600.0


def shared_root() -> Path:
    configured = os.environ.get("FACERESTORE_SHARED")
    return Path(configured) if configured else REPO_ROOT.parent / "shared"


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    size: tuple[int, int]


def load_photos(max_side: int) -> list[Photo]:
    """The real photos, each shrunk so that its long side is at most ``max_side`` (0: as they are)."""
    root = shared_root()
    files = sorted(path for folder in PHOTO_FOLDERS for path in (root / folder).glob("*") if path.is_file())
    if not files:
        sys.exit(f"no photos under {root} (set FACERESTORE_SHARED)")
    photos = []
    for path in files:
        image = Image.open(path).convert("RGB")
        if max_side and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        photos.append(Photo(path.name, buffer.getvalue(), image.size))
    return photos


# -- the server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def started_server(arguments: list[str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [sys.executable, "-m", "facerestore.cli", "serve", "--port", str(port), *arguments]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v1/ready", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            sys.exit(f"the server did not become ready; its log:\n{log.read_text()}")
        yield url, process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"{url}: this load test only runs against a loopback address")


def memory_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, from Linux /proc."""
    values = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) / 1024
    return values


# -- the clients


@dataclass
class Tally:
    """What the clients saw; every method is safe to call from any client thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter[str] = field(default_factory=Counter)  # create-job answers by status code
    outcomes: Counter[str] = field(default_factory=Counter)  # accepted jobs by final state
    latencies: list[float] = field(default_factory=list)  # submit -> result downloaded, seconds
    output_megapixels: float = 0.0
    wrong_results: list[str] = field(default_factory=list)
    accepted: int = 0

    def answer(self, status: int | str) -> None:
        with self.lock:
            self.answers[str(status)] += 1
            self.accepted += status == 202

    def finished(self, state: str) -> None:
        with self.lock:
            self.outcomes[state] += 1

    def delivered(self, seconds: float, megapixels: float) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.output_megapixels += megapixels

    def wrong(self, text: str) -> None:
        with self.lock:
            self.wrong_results.append(text)


def run_job(client: httpx.Client, photo: Photo, options: dict[str, str], scale: float, tally: Tally) -> None:
    started = time.monotonic()
    created = client.post("/v1/jobs", files={"image": (photo.name, photo.data)}, data=options)
    tally.answer(created.status_code)
    if created.status_code != 202:
        time.sleep(min(int(created.headers.get("retry-after", "1")), 5))
        return
    job = created.json()
    drain_deadline = time.monotonic() + DRAIN_TIMEOUT
    while job["status"] not in FINISHED and time.monotonic() < drain_deadline:
        time.sleep(POLL_SECONDS)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    tally.finished(job["status"])
    if job["status"] != "succeeded":
        return
    result = client.get(job["links"]["result"])
    image = Image.open(io.BytesIO(result.content))
    expected = (round(photo.size[0] * scale), round(photo.size[1] * scale))
    if image.size != expected:
        tally.wrong(f"{photo.name}: {image.size} instead of {expected}")
    tally.delivered(time.monotonic() - started, image.size[0] * image.size[1] / 1e6)


def client_loop(
    url: str, photos: list[Photo], offset: int, deadline: float, options: dict[str, str], tally: Tally
) -> None:
    scale = float(options.get("scale", 2))
    with httpx.Client(base_url=url, timeout=120) as client:
        turn = offset
        while time.monotonic() < deadline:
            try:
                run_job(client, photos[turn % len(photos)], options, scale, tally)
            except httpx.HTTPError as error:
                tally.answer(f"transport error: {type(error).__name__}")
            turn += 1


def watch_health(url: str, pid: int | None, stop: threading.Event, worst: dict[str, float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.wait(0.5):
            started = time.monotonic()
            try:
                client.get("/v1/health")
            except httpx.HTTPError:
                worst["health_failures"] = worst.get("health_failures", 0) + 1
            worst["health_seconds"] = max(worst.get("health_seconds", 0.0), time.monotonic() - started)
            if pid is not None:
                rss = memory_mb(pid).get("VmRSS", 0.0)
                worst["rss_mb"] = max(worst.get("rss_mb", 0.0), rss)


# -- the report


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


def report(
    tally: Tally, seconds: float, worst: dict[str, float], peak_mb: float, alive: bool
) -> dict[str, object]:
    latencies = tally.latencies
    return {
        "wall_seconds": round(seconds, 1),
        "jobs_accepted": tally.accepted,
        "jobs_by_outcome": dict(tally.outcomes),
        "create_answers_by_status": dict(tally.answers),
        "throughput_jobs_per_minute": round(len(latencies) / seconds * 60, 2),
        "throughput_output_megapixels_per_second": round(tally.output_megapixels / seconds, 3),
        "latency_seconds": {
            "p50": round(percentile(latencies, 0.5), 2),
            "p90": round(percentile(latencies, 0.9), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "max": round(max(latencies, default=float("nan")), 2),
            "mean": round(statistics.fmean(latencies), 2) if latencies else None,
        },
        "health_worst_seconds": round(worst.get("health_seconds", float("nan")), 3),
        "health_failures": int(worst.get("health_failures", 0)),
        "server_peak_rss_mb": round(peak_mb, 1),
        "server_alive_after": alive,
        "wrong_results": tally.wrong_results,
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds during which clients submit")
    parser.add_argument("--max-side", type=int, default=640, help="shrink photos to this long side (0: keep)")
    parser.add_argument("--scale", default="2")
    parser.add_argument("--bg-upsampler", default="auto")
    parser.add_argument("--url", help="a running server on loopback (default: start one)")
    parser.add_argument("--server-args", default="", help="extra 'facerestore serve' arguments, one string")
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser.parse_args()


def run(url: str, pid: int | None, args: argparse.Namespace) -> tuple[Tally, float, dict[str, float]]:
    photos = load_photos(args.max_side)
    options = {"scale": args.scale, "bg_upsampler": args.bg_upsampler}
    tally, stop = Tally(), threading.Event()
    worst: dict[str, float] = {}
    watcher = threading.Thread(target=watch_health, args=(url, pid, stop, worst), daemon=True)
    watcher.start()
    started = time.monotonic()
    deadline = started + args.duration
    clients = [
        threading.Thread(target=client_loop, args=(url, photos, index, deadline, options, tally))
        for index in range(args.clients)
    ]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()  # each client finishes its accepted job before it stops
    stop.set()
    watcher.join()
    return tally, time.monotonic() - started, worst


def main() -> int:
    args = parse_arguments()
    print(
        f"{args.clients} clients for {args.duration:g} s, scale {args.scale}, background {args.bg_upsampler}"
    )
    if args.url:
        require_loopback(args.url)
        tally, seconds, worst = run(args.url, None, args)
        peak, alive = worst.get("rss_mb", float("nan")), httpx.get(f"{args.url}/v1/health").status_code == 200
    else:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"facerestore-load-{os.getpid()}.log"
        with started_server(args.server_args.split(), log) as (url, process):
            tally, seconds, worst = run(url, process.pid, args)
            peak = memory_mb(process.pid).get("VmHWM", float("nan"))
            alive = process.poll() is None and httpx.get(f"{url}/v1/health").status_code == 200
    summary = report(tally, seconds, worst, peak, alive)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    lost = tally.accepted - sum(tally.outcomes.values())
    return 0 if alive and lost == 0 and not tally.wrong_results else 1


if __name__ == "__main__":
    sys.exit(main())
