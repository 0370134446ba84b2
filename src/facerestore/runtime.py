"""ONNX Runtime sessions: one place that maps a device name to execution providers and thread settings."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from facerestore.errors import ModelError, OptionError

_PROVIDERS_BY_DEVICE = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "coreml": ["CoreMLExecutionProvider", "CPUExecutionProvider"],
    "directml": ["DmlExecutionProvider", "CPUExecutionProvider"],
    "openvino": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
}
DEVICES = ("auto", *_PROVIDERS_BY_DEVICE)
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None
# onnxruntime's load errors derive from Exception directly, not from one base of their own
_LOAD_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.InvalidArgument,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def providers_for(device: str) -> list[str]:
    """Execution providers for a device name; 'auto' takes the best one this onnxruntime build offers."""
    available = ort.get_available_providers()
    if device == "auto":
        for name in ("cuda", "coreml", "directml"):
            if _PROVIDERS_BY_DEVICE[name][0] in available:
                return _PROVIDERS_BY_DEVICE[name]
        return ["CPUExecutionProvider"]
    if device not in _PROVIDERS_BY_DEVICE:
        raise OptionError(f"unknown device '{device}' (choose from {', '.join(DEVICES)})")
    wanted = _PROVIDERS_BY_DEVICE[device]
    if wanted[0] not in available:
        raise OptionError(
            f"device '{device}' needs {wanted[0]}, which this onnxruntime build lacks "
            f"(available: {', '.join(available)}); install onnxruntime-gpu for CUDA"
        )
    return wanted


def uses_accelerator(device: str) -> bool:
    return providers_for(device)[0] != "CPUExecutionProvider"


def release_freed_memory() -> None:
    """Hands memory freed by the last picture back to the system (glibc keeps freed heap pages otherwise,
    so a long-running process's size follows its largest picture, not its current one)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


THREADS_ENV = "FACERESTORE_THREADS"  # threads per network; several processes on one machine share the cores


def default_threads() -> int:
    configured = os.environ.get(THREADS_ENV)
    return int(configured) if configured else (os.cpu_count() or 1)


def create_session(
    model: bytes | Path, device: str = "cpu", *, threads: int | None = None, name: str = "in-memory model"
) -> ort.InferenceSession:
    """An ONNX Runtime session; ``name`` says which model a load error is about when ``model`` is bytes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The arena keeps the largest tensors any photo size needed, for the life of the process: a server that
    # sees every size would only grow. Without it freed memory goes back (no slower here: see soak.py).
    options.enable_cpu_mem_arena = False
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers_for(device))
    except _LOAD_ERRORS as error:
        name = name if isinstance(model, bytes) else str(model)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{name}: not a loadable ONNX model ({first_line[:200]})") from None
