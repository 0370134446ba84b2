"""The server's limits and switches, declared once (the ``serve`` flags derive from them): one frozen value
built by the CLI (or a test) and read everywhere."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field

from facerestore.options import CLI_ONLY, INTERNAL, Choices, ClusterAddress, Expose, Options
from facerestore.runtime import DEVICES

API_KEYS_ENV = "FACERESTORE_API_KEYS"  # comma-separated; keeps keys off the command line (and out of ps)
MB = 1 << 20
WEEK = 7 * 24 * 3600.0


class ServerConfig(Options):
    host: Annotated[str, Field(min_length=1), CLI_ONLY] = "127.0.0.1"
    """address to listen on (another than loopback makes the server reachable from other machines)"""
    port: Annotated[int, Field(ge=1, le=65535), CLI_ONLY] = 8000
    """port to listen on"""
    max_upload_mb: Annotated[float, Field(gt=0, le=4096), CLI_ONLY] = 50.0
    """largest upload in MB (413 above)"""
    max_pixels: Annotated[int, Field(ge=1), CLI_ONLY] = 50_000_000
    """largest input in pixels; larger uploads are refused before they are decoded (422)"""
    max_output_pixels: Annotated[int, Field(ge=1), CLI_ONLY] = 100_000_000
    """largest result in pixels; a scale that would exceed it is refused"""
    sync_max_pixels: Annotated[int, Field(ge=1), CLI_ONLY] = 4_000_000
    """POST /v1/restore answers inline only up to this many input pixels; larger need a job"""
    max_jobs: Annotated[int, Field(ge=1, le=64), CLI_ONLY] = 1
    """restores running at once (each already uses every CPU core)"""
    queue_size: Annotated[int, Field(ge=0, le=10_000), CLI_ONLY] = 8
    """jobs that may wait; beyond that the server answers 429"""
    retention_seconds: Annotated[float, Field(gt=0, le=WEEK), Expose(http=False, flags=("--retention",))] = (
        600.0
    )
    """seconds a finished job's result is kept"""
    max_stored_jobs: Annotated[int, Field(ge=1), CLI_ONLY] = 100
    """finished jobs kept at most; the oldest go first"""
    max_stored_mb: Annotated[float, Field(gt=0, le=1 << 20), CLI_ONLY] = 2048.0
    """finished jobs' images kept at most, in MB; the oldest go first (the newest stays, whatever its size)"""
    max_connections: Annotated[int, Field(ge=1, le=100_000), CLI_ONLY] = 128
    """connections held at once (fewer when the open-file limit is low); beyond it the longest idle one is
    closed"""
    header_timeout: Annotated[float, Field(gt=0, le=600), CLI_ONLY] = 10.0
    """seconds a client has to send a request's headers before its connection is closed"""
    api_keys: Annotated[tuple[str, ...], Expose(http=False, flags=("--api-key",))] = ()
    """require this bearer token on /v1 (repeatable; or the FACERESTORE_API_KEYS variable, comma-separated)"""
    cors_origins: Annotated[tuple[str, ...], Expose(http=False, flags=("--cors-origin",))] = ()
    """allow this browser origin to call the API (repeatable; default: CORS off)"""
    allowed_hosts: Annotated[tuple[str, ...], Expose(http=False, flags=("--allowed-host",))] = ()
    """also answer requests addressed to this host name (repeatable); loopback names, IP addresses and
    --host are always answered"""
    device: Annotated[str, Choices("device", DEVICES), CLI_ONLY] = "cpu"
    """inference device: cpu (ONNX Runtime), openvino (OpenVINO on the CPU: bf16 where the CPU has bf16 units,
    3-5x faster; pip install 'facerestore[openvino]'), a GPU execution provider, or auto (a GPU provider,
    else openvino when installed, else cpu)"""
    tile: Annotated[int, Field(ge=32, le=2048), CLI_ONLY] = 256
    """background tile side in input pixels"""
    preload: Annotated[bool, CLI_ONLY] = True
    """load the default networks at start-up (readiness waits for them)"""
    cluster: ClusterAddress = None
    """restore the jobs on a Dask cluster: a scheduler's address (tcp://host:8786) or local:N worker
    processes (set --max-jobs to the number of workers)"""
    network_cache_size: Annotated[int, Field(ge=1), INTERNAL] = 4
    """networks kept loaded (least recently used dropped first)"""

    @property
    def max_upload_bytes(self) -> int:
        return round(self.max_upload_mb * MB)

    @property
    def max_stored_bytes(self) -> int:
        return round(self.max_stored_mb * MB)


def api_keys_from_env() -> tuple[str, ...]:
    return tuple(key.strip() for key in os.environ.get(API_KEYS_ENV, "").split(",") if key.strip())
