"""Lower-precision versions of an fp32 face-prior ONNX file, made with the tools onnxruntime ships: fp16
(onnxruntime.transformers' float16 converter, inputs and outputs kept fp32), int8 dynamic and int8 static
(onnxruntime.quantization; static calibrated on real face crops), and a probe for bf16 on the CPU provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.transformers.float16 import convert_float_to_float16

from facerestore.quantization import INT8_SETTINGS, quiet_quantizer

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Variant:
    name: str
    make: Callable[[Path, Path, list[Feeds]], None]  # (fp32 file, file to write, calibration feeds)


def make_fp16(source: Path, target: Path, _calibration: list[Feeds]) -> None:
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def make_int8_dynamic(source: Path, target: Path, _calibration: list[Feeds]) -> None:
    # ConvInteger, which dynamic quantization writes for convolutions, takes only uint8 weights on the CPU
    with quiet_quantizer():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8)


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds: list[Feeds]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self.feeds, None)


def make_int8_static(source: Path, target: Path, calibration: list[Feeds]) -> None:
    """The engine's int8 settings (those of its background network), with activation ranges (min and max of
    each tensor, the quantizer's default) calibrated on real faces."""
    with quiet_quantizer():
        quantize_static(str(source), str(target), _Feeds(calibration), **INT8_SETTINGS)


VARIANTS = (
    Variant("fp16", make_fp16),
    Variant("int8 dynamic", make_int8_dynamic),
    Variant("int8 static", make_int8_static),
)


def bf16_unsupported_reason() -> str | None:
    """None when the CPU provider runs a bfloat16 convolution (what these networks are made of); else why not.
    The graph casts in and out, since numpy has no bfloat16 to feed."""
    weight = helper.make_tensor("weight", TensorProto.BFLOAT16, [4, 4, 3, 3], [0.1] * 144)
    nodes = [
        helper.make_node("Cast", ["image"], ["image_bf16"], to=TensorProto.BFLOAT16),
        helper.make_node("Conv", ["image_bf16", "weight"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["conv"], ["output"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "bf16_probe",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 22)]
    )  # Conv takes bfloat16 from 22
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, {"image": np.zeros((1, 4, 8, 8), np.float32)})
    except Exception as error:  # onnxruntime's errors share no base class of their own
        first_line = str(error).strip().splitlines()[0]
        return (
            f"onnxruntime {onnxruntime.__version__}'s CPU provider has no bfloat16 Conv ({first_line[:160]})"
        )
    return None
