"""The server's limits and switches: one frozen value built by the CLI (or a test) and read everywhere."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from facerestore.errors import OptionError
from facerestore.runtime import DEVICES

API_KEYS_ENV = "FACERESTORE_API_KEYS"  # comma-separated; keeps keys off the command line (and out of ps)
MB = 1 << 20


@dataclass(frozen=True)
class ServerConfig:
    max_upload_bytes: int = 50 * MB
    max_pixels: int = 50_000_000  # input pixels; larger uploads are refused before they are decoded
    max_output_pixels: int = 100_000_000  # scale is refused when the result would be larger
    sync_max_pixels: int = 4_000_000  # POST /v1/restore answers inline only up to this; larger need a job
    max_jobs: int = 1  # restores that run at once; each already uses every CPU core
    queue_size: int = 8  # jobs that may wait; beyond that the server answers 429
    retention_seconds: float = 600.0  # finished jobs (input preview, result) are deleted after this
    max_stored_jobs: int = 100  # the oldest finished jobs go first when more are kept, to bound memory
    api_keys: tuple[str, ...] = ()  # bearer tokens for /v1; empty: no authentication
    cors_origins: tuple[str, ...] = ()  # origins allowed to call the API from a browser; empty: CORS off
    device: str = "cpu"
    tile: int = 256
    preload: bool = True  # load the default networks at start-up (readiness waits for them)
    restorer_cache_size: int = 4  # distinct network sets (face model, background, detector) kept loaded

    def __post_init__(self) -> None:
        positive = ("max_upload_bytes", "max_pixels", "max_output_pixels", "sync_max_pixels", "max_jobs")
        for name in positive:
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1")
        if self.queue_size < 0 or self.retention_seconds <= 0 or self.restorer_cache_size < 1:
            raise OptionError("queue_size must be >= 0, retention_seconds > 0, restorer_cache_size >= 1")


def api_keys_from_env() -> tuple[str, ...]:
    return tuple(key.strip() for key in os.environ.get(API_KEYS_ENV, "").split(",") if key.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facerestore serve`` options beyond host and port."""
    defaults = ServerConfig()
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-upload-mb", type=float, default=defaults.max_upload_bytes / MB, help="413 above"
    )
    limits.add_argument(
        "--max-pixels", type=int, default=defaults.max_pixels, help="input pixels (422 above)"
    )
    limits.add_argument("--max-output-pixels", type=int, default=defaults.max_output_pixels)
    limits.add_argument(
        "--sync-max-pixels", type=int, default=defaults.sync_max_pixels, help="larger inputs need a job"
    )
    limits.add_argument("--max-jobs", type=int, default=defaults.max_jobs, help="restores running at once")
    limits.add_argument(
        "--queue-size", type=int, default=defaults.queue_size, help="waiting jobs (429 beyond)"
    )
    limits.add_argument(
        "--retention", type=float, default=defaults.retention_seconds, metavar="SECONDS", help="keep results"
    )
    access = parser.add_argument_group("access")
    access.add_argument(
        "--api-key",
        action="append",
        default=[],
        help=f"require this bearer token (repeatable; or {API_KEYS_ENV})",
    )
    access.add_argument(
        "--cors-origin", action="append", default=[], help="allow this browser origin (repeatable)"
    )
    parser.add_argument(
        "--device", choices=DEVICES, default=defaults.device, help="inference device (default cpu)"
    )
    parser.add_argument("--no-preload", dest="preload", action="store_false", help="load models on first use")


def from_arguments(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        max_upload_bytes=round(args.max_upload_mb * MB),
        max_pixels=args.max_pixels,
        max_output_pixels=args.max_output_pixels,
        sync_max_pixels=args.sync_max_pixels,
        max_jobs=args.max_jobs,
        queue_size=args.queue_size,
        retention_seconds=args.retention,
        api_keys=(*args.api_key, *api_keys_from_env()),
        cors_origins=tuple(args.cors_origin),
        device=args.device,
        preload=args.preload,
    )
