"""Inference sessions: one place that maps a device name to a runtime (ONNX Runtime's execution providers, or
OpenVINO on the CPU) and its thread settings. Every stage sees the same small session interface."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from facerestore import registry
from facerestore.errors import ModelError, OptionError

_PROVIDERS_BY_DEVICE = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "coreml": ["CoreMLExecutionProvider", "CPUExecutionProvider"],
    "directml": ["DmlExecutionProvider", "CPUExecutionProvider"],
}
OPENVINO = "openvino"  # OpenVINO's own runtime on the CPU (pip install 'facerestore[openvino]')
DEVICES = ("auto", *_PROVIDERS_BY_DEVICE, OPENVINO)
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


class Session(Protocol):
    """What the stages use of an inference session (ONNX Runtime's interface; OpenVinoSession follows it)."""

    def get_inputs(self) -> Sequence[Any]: ...

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...


def resolve_device(device: str) -> str:
    """'auto' becomes the best device here: a GPU provider this onnxruntime build offers, else OpenVINO when
    installed (3-4x ONNX Runtime's speed on CPUs with bf16 units: docs/benchmarks.md), else the CPU."""
    if device != "auto":
        return device
    available = ort.get_available_providers()
    for name in ("cuda", "coreml", "directml"):
        if _PROVIDERS_BY_DEVICE[name][0] in available:
            return name
    return OPENVINO if _openvino_installed() else "cpu"


def _openvino_installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for a device name (OpenVINO runs on the CPU provider's terms)."""
    device = resolve_device(device)
    if device == OPENVINO:
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
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
    """Whether a GPU or other accelerator runs the networks (OpenVINO here runs on the CPU)."""
    return providers_for(device)[0] != "CPUExecutionProvider"


def int8_pays(device: str) -> bool:
    """Only ONNX Runtime's CPU provider runs the int8 networks faster than fp32."""
    return resolve_device(device) != OPENVINO and not uses_accelerator(device)


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
    model: bytes | Path,
    device: str = "cpu",
    *,
    threads: int | None = None,
    name: str = "in-memory model",
    fixed_size: bool = False,
) -> Session:
    """A session for ``device``; ``name`` says which model a load error is about when ``model`` is bytes;
    ``fixed_size``: the model only ever sees one input size (a face prior's 512 px)."""
    name = name if isinstance(model, bytes) else str(model)
    if resolve_device(device) == OPENVINO:
        return OpenVinoSession(model, threads or default_threads(), name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The arena keeps the largest tensors any photo size needed, for the life of the process: a server that
    # sees every size would only grow. Without it freed memory goes back (no slower here: see soak.py). A
    # model of one input size cannot grow it, and reusing its blocks runs a face prior ~3-6% faster.
    options.enable_cpu_mem_arena = fixed_size
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers_for(device))
    except _LOAD_ERRORS as error:
        raise _load_error(name, error, first=True) from None


def _load_error(name: str, error: BaseException, *, first: bool) -> ModelError:
    """One line: ONNX Runtime puts the reason first, OpenVINO last (after the source locations)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    reason = lines[0] if first else lines[-1]
    return ModelError(f"{name}: not a loadable ONNX model ({reason[:200]})")


@dataclass(frozen=True)
class SessionInput:
    """An input as ONNX Runtime describes it: name, shape (str for a dynamic axis), 'tensor(float)' type."""

    name: str
    shape: list[int | str]
    type: str


_ONNX_TYPE_NAMES = {"float32": "float", "float64": "double"}


class OpenVinoSession:
    """An ONNX model run by OpenVINO on the CPU. Where the CPU has bf16 units (AMX, AVX-512 BF16) OpenVINO
    computes in bf16: about 3x ONNX Runtime's fp32 speed on x4plus here, outputs within ~1/255 of fp32.
    Each run takes its own infer request, so one session serves several threads, like ONNX Runtime's."""

    def __init__(self, model: bytes | Path, threads: int, name: str) -> None:
        try:
            import openvino
        except ImportError:
            raise OptionError(
                "device 'openvino' needs the openvino package: pip install 'facerestore[openvino]'"
            ) from None
        core = openvino.Core()
        self.precision = openvino_precision(core)
        settings: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            # several processes on one host (cluster workers) must not pin their threads to the same cores
            "ENABLE_CPU_PINNING": False,
        }
        cache = _openvino_cache(openvino_version(openvino))
        if cache is not None:  # compiled networks load ~4x faster from it (x4plus: 0.5 s against 2.1 s)
            settings["CACHE_DIR"] = str(cache)
        try:
            self._compiled = core.compile_model(core.read_model(model), "CPU", settings)
        except RuntimeError as error:
            raise _load_error(name, error, first=False) from None

    def get_inputs(self) -> list[SessionInput]:
        return [_session_input(port) for port in self._compiled.inputs]

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]:
        results = self._compiled.create_infer_request().infer(input_feed)
        wanted = output_names or [port.get_any_name() for port in self._compiled.outputs]
        return [results[name] for name in wanted]


def openvino_precision(core: Any) -> str:
    """What OpenVINO computes in on this CPU (``core``: an openvino.Core): bf16 where it has bf16 units."""
    return "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "fp32"


def openvino_version(openvino: Any) -> str:
    """The release of the imported openvino module, without its build suffix."""
    return str(openvino.__version__).split("-")[0]


def _openvino_cache(version: str) -> Path | None:
    """A folder for OpenVINO's compiled networks beside the models; None where it cannot be made."""
    folder = registry.model_dir() / "derived" / f"openvino-{version}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def _session_input(port: Any) -> SessionInput:
    dtype = np.dtype(port.get_element_type().to_dtype()).name
    shape: list[int | str] = [dim.get_length() if dim.is_static else "?" for dim in port.get_partial_shape()]
    return SessionInput(port.get_any_name(), shape, f"tensor({_ONNX_TYPE_NAMES.get(dtype, dtype)})")
