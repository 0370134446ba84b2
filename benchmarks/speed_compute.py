"""Arithmetic: multiply-adds per pixel counted from a network graph, the CPU's measured fp32 peak, and how
close each background network gets to it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from facerestore import registry, runtime
from facerestore.upscaling import NetworkUpscaler, TileOptions, load_network_bytes

GIGA = 1e9


def network_graph(name: str) -> onnx.ModelProto:
    """The fp32 ONNX graph the engine runs for a registry network (converted from the packaged ncnn files)."""
    return onnx.load_from_string(load_network_bytes(registry.get_entry(name)))


def conv_macs_per_pixel(model: onnx.ModelProto, probe_side: int = 64) -> float:
    """Multiply-adds of every Conv per input pixel: output elements x (input channels / groups x kernel area),
    with the output shapes that ONNX shape inference gives for a probe_side x probe_side input."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    batch, _, height, width = fixed.graph.input[0].type.tensor_type.shape.dim
    for dim, value in ((batch, 1), (height, probe_side), (width, probe_side)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    for output in fixed.graph.output:  # the converter's symbolic output names would clash with inferred sizes
        for dim in output.type.tensor_type.shape.dim:
            dim.ClearField("dim_param")
    inferred = shape_inference.infer_shapes(fixed, strict_mode=True)
    shapes = {
        info.name: [dim.dim_value for dim in info.type.tensor_type.shape.dim]
        for info in (*inferred.graph.value_info, *inferred.graph.output)
    }
    weights = {tensor.name: list(tensor.dims) for tensor in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out_shape = shapes[node.output[0]]
            if not out_shape or 0 in out_shape:
                raise ValueError(f"shape inference left {node.name} without a concrete output shape")
            total += math.prod(out_shape) * math.prod(weights[node.input[1]][1:])
    return total / probe_side**2


@dataclass(frozen=True)
class Throughput:
    name: str
    macs: float
    seconds: float

    @property
    def gmacs_per_s(self) -> float:
        return self.macs / self.seconds / GIGA

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gmacs_per_s": round(self.gmacs_per_s, 1)}


def best_time(run: Callable[[], object], repeats: int, warm_up: Callable[[], object] | None = None) -> float:
    (warm_up or run)()  # first calls pay for allocation and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def numpy_matmul_peak(side: int = 4096, repeats: int = 4) -> Throughput:
    rng = np.random.default_rng(0)
    a, b = (rng.random((side, side), dtype=np.float32) for _ in range(2))
    return Throughput(f"numpy matmul {side}x{side} fp32", float(side) ** 3, best_time(lambda: a @ b, repeats))


def _single_conv_model(channels: int) -> bytes:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3), np.float32) * 0.05, "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    dims: list[int | str] = [1, channels, "H", "W"]
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def ort_conv_peak(side: int = 512, channels: int = 64, repeats: int = 4) -> Throughput:
    """A 3x3 conv with x4plus's trunk width through the engine's own session settings."""
    session = runtime.create_session(_single_conv_model(channels))
    feed = {"x": np.random.default_rng(0).random((1, channels, side, side), dtype=np.float32)}
    seconds = best_time(lambda: session.run(None, feed), repeats)
    name = f"onnxruntime conv3x3 {channels}->{channels} on {side}x{side}"
    return Throughput(name, float(side * side * channels * channels * 9), seconds)


def measure_fp32_peak(quick: bool) -> list[Throughput]:
    if quick:
        return [numpy_matmul_peak(2048, 3), ort_conv_peak(256, 64, 3)]
    return [numpy_matmul_peak(), ort_conv_peak()]


def network_throughput(name: str, precision: str, tile: np.ndarray, repeats: int = 1) -> Throughput:
    """One background network on one RGB float tile, through the engine's NetworkUpscaler.run."""
    upscaler = NetworkUpscaler(registry.get_entry(name), "cpu", TileOptions(), precision)
    macs = conv_macs_per_pixel(network_graph(name)) * tile.shape[0] * tile.shape[1]
    seconds = best_time(lambda: upscaler.run(tile), repeats, lambda: upscaler.run(tile[:32, :32]))
    return Throughput(f"{name} {precision}", macs, seconds)
