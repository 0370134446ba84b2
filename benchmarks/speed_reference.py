"""Real-ESRGAN x4plus through our ONNX Runtime path against a plain PyTorch RRDBNet with the same weights, and
the throughput every background network reaches, both in multiply-adds per second."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
from speed_compute import Throughput, conv_macs_per_pixel, network_graph, network_throughput

from facerestore import registry, runtime
from facerestore.upscaling import NetworkUpscaler

TORCH_INSTALL = "pip install torch==2.13.0  (the CPU build here; no CUDA packages)"
X4PLUS = "realesrgan-x4plus"


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _timed(run: Any, blob: np.ndarray) -> tuple[np.ndarray, float]:
    """The second run on the blob: the first at a new size pays for start-up and memory planning (ONNX
    Runtime's more than PyTorch's), which tiles of one size pay once per photo."""
    run(blob)
    start = time.perf_counter()
    output = run(blob)
    return output, time.perf_counter() - start


def _ort_runner() -> Any:
    upscaler = NetworkUpscaler(registry.get_entry(X4PLUS))
    return lambda blob: upscaler.session.run(None, {upscaler.input_name: np.ascontiguousarray(blob)})[0]


def _torch_runner() -> tuple[Any, str]:
    import torch
    from torch_rrdbnet import build_rrdbnet, conv_specs, load_onnx_weights, ncnn_conv_specs

    param = registry.require(registry.get_entry(X4PLUS)).with_suffix(".param")
    if ncnn_conv_specs(param) != conv_specs():
        raise RuntimeError(f"{param.name} does not have the RRDBNet layout torch_rrdbnet.py builds")
    module = build_rrdbnet().eval()
    load_onnx_weights(module, network_graph(X4PLUS))
    torch.set_num_threads(runtime.default_threads())

    def run(blob: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(blob))).numpy()

    return run, torch.__version__


def compare_with_pytorch(tile: np.ndarray, use_torch: bool = True) -> dict[str, Any]:
    """One timed run of each on the same RGB float tile (H, W, 3), after a warm-up run of each on it."""
    blob = np.ascontiguousarray(tile.transpose(2, 0, 1)[None], dtype=np.float32)
    macs = conv_macs_per_pixel(network_graph(X4PLUS)) * tile.shape[0] * tile.shape[1]
    ort_output, ort_s = _timed(_ort_runner(), blob)
    result: dict[str, Any] = {"input": f"{tile.shape[1]}x{tile.shape[0]}", "macs": macs}
    result["onnxruntime"] = Throughput("onnxruntime", macs, ort_s).to_dict()
    if not use_torch or not torch_available():
        why = "left out (--no-torch)" if use_torch is False and torch_available() else "not installed"
        return {
            **result,
            "pytorch": None,
            "skipped": f"PyTorch reference skipped: PyTorch {why}; {TORCH_INSTALL}",
        }
    run_torch, version = _torch_runner()
    torch_output, torch_s = _timed(run_torch, blob)
    return {
        **result,
        "pytorch": {**Throughput(f"pytorch {version}", macs, torch_s).to_dict(), "version": version},
        "time_ratio_pytorch_over_ort": torch_s / ort_s,
        "max_abs_diff": float(np.abs(ort_output - torch_output).max()),
    }


def background_networks(tile: np.ndarray) -> list[Throughput]:
    """The compact network (the CPU default background) in fp32 and int8 on the same tile."""
    return [
        network_throughput("realesr-compact-x4", precision, tile, repeats=2) for precision in ("fp32", "int8")
    ]
