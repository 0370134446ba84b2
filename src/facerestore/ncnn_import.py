"""Convert an ncnn model (.param text graph + .bin weights) into an ONNX model for ONNX Runtime.

Covers the layer types of the Real-ESRGAN ncnn releases (RRDBNet and the compact SRVGG net):
Input, Split, Convolution, Concat, Eltwise, BinaryOp, Interp, PReLU and PixelShuffle.
ncnn blobs are CHW images; in ONNX they become NCHW tensors with a dynamic batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from facerestore.errors import ModelError

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 17
# IR 8 is the oldest that carries opset 17, so older ONNX Runtime builds still load a saved model.
IR_VERSION = 8

_PARAM_MAGIC = 7767517
_ARRAY_KEY_BASE = -23300
_FP16_TAG = 0x01306B47
_FP32_TAG = 0x0002C056
_RGB_CHANNELS = 3

ParamValue = int | float | list[float]
FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class _Params:
    """The key=value pairs of one layer line, with ncnn's typed getters and defaults."""

    values: dict[int, ParamValue]
    layer: str

    def get_int(self, key: int, default: int) -> int:
        value = self.values.get(key, default)
        if not isinstance(value, int):
            raise ModelError(f"layer {self.layer}: param {key} must be an integer, got {value!r}")
        return value

    def get_float(self, key: int, default: float) -> float:
        value = self.values.get(key, default)
        if isinstance(value, list):
            raise ModelError(f"layer {self.layer}: param {key} must be a number, got an array")
        return float(value)

    def get_array(self, key: int) -> list[float]:
        value = self.values.get(key, [])
        if not isinstance(value, list):
            raise ModelError(f"layer {self.layer}: param {key} must be an array, got {value!r}")
        return value


@dataclass(frozen=True)
class _Layer:
    kind: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: _Params


def ncnn_to_onnx(param_path: Path, bin_path: Path) -> onnx.ModelProto:
    """Build an ONNX model equivalent to the ncnn net; weights become float32 initializers.

    The graph takes "input" (float32 NCHW, dynamic N/H/W) and returns "output".
    Raises ModelError for an unreadable or malformed model, or a layer type we cannot map.
    """
    try:
        layers = _parse_param(_read_text(param_path))
        weights = _WeightReader(_read_bytes(bin_path))
        input_blob, output_blob = _graph_ends(layers)
        graph = _GraphBuilder(input_blob, output_blob)
        for layer in layers:
            _converter_for(layer)(graph, layer, weights)
        weights.check_consumed()
    except ModelError as error:
        raise ModelError(f"ncnn model {param_path.name}: {error}") from None
    return graph.to_model(param_path.stem)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read {path.name}: {error}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read {path.name}: {error}") from None


# --- .param parsing -------------------------------------------------------------------------------------


def _parse_param(text: str) -> list[_Layer]:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != [str(_PARAM_MAGIC)]:
        raise ModelError("not an ncnn text .param file (bad magic number)")
    try:
        layer_count = int(lines[1][0])
    except (IndexError, ValueError):
        raise ModelError("malformed layer/blob count line") from None
    layers = [_parse_layer(tokens) for tokens in lines[2:]]
    if len(layers) != layer_count:
        raise ModelError(f"header declares {layer_count} layers, found {len(layers)}")
    return layers


def _parse_layer(tokens: list[str]) -> _Layer:
    try:
        kind, name, bottom_count, top_count = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        blobs_end = 4 + bottom_count + top_count
        if len(tokens) < blobs_end:
            raise ValueError("missing blob names")
        params = dict(_parse_param_entry(token) for token in tokens[blobs_end:])
    except (IndexError, ValueError) as error:
        raise ModelError(f"malformed layer line {' '.join(tokens)!r}: {error}") from None
    bottoms = tuple(tokens[4 : 4 + bottom_count])
    return _Layer(kind, name, bottoms, tuple(tokens[4 + bottom_count : blobs_end]), _Params(params, name))


def _parse_param_entry(token: str) -> tuple[int, ParamValue]:
    key_text, separator, value_text = token.partition("=")
    if not separator:
        raise ValueError(f"param {token!r} has no '='")
    key = int(key_text)
    if key > _ARRAY_KEY_BASE:
        return key, _parse_number(value_text)
    count_text, *items = value_text.split(",")
    if int(count_text) != len(items):
        raise ValueError(f"array param {token!r} has the wrong item count")
    return _ARRAY_KEY_BASE - key, [float(_parse_number(item)) for item in items]


def _parse_number(text: str) -> int | float:
    is_float = any(char in text for char in ".eE")
    return float(text) if is_float else int(text)


def _graph_ends(layers: Sequence[_Layer]) -> tuple[str, str]:
    """The single Input blob and the single blob that no layer consumes."""
    inputs = [top for layer in layers if layer.kind == "Input" for top in layer.tops]
    consumed = {bottom for layer in layers for bottom in layer.bottoms}
    outputs = [top for layer in layers for top in layer.tops if top not in consumed]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"expected one input and one output blob, found inputs {inputs}, outputs {outputs}")
    return inputs[0], outputs[0]


# --- .bin reading ---------------------------------------------------------------------------------------


class _WeightReader:
    """Reads the .bin blobs in layer order, mirroring ncnn's ModelBinFromDataReader::load."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def raw(self, count: int) -> FloatArray:
        """Untagged float32 data (ncnn load type 1)."""
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)

    def tagged(self, count: int) -> FloatArray:
        """Data behind a 4-byte storage tag (ncnn load type 0)."""
        tag = int.from_bytes(self._take(4), "little")
        if tag == _FP16_TAG:
            # fp16 blobs are padded to a 4-byte boundary.
            data = self._take((2 * count + 3) // 4 * 4)[: 2 * count]
            return np.frombuffer(data, dtype="<f2").astype(np.float32)
        if tag in (0, _FP32_TAG):
            return self.raw(count)
        raise ModelError(f"unsupported weight storage tag 0x{tag:08x} (int8 or quantized weights)")

    def check_consumed(self) -> None:
        leftover = len(self._data) - self._offset
        if leftover:
            raise ModelError(f".bin has {leftover} bytes left over after the last layer's weights")

    def _take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise ModelError(f".bin is too short: needs at least {end} bytes, has {len(self._data)}")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk


# --- ONNX graph building --------------------------------------------------------------------------------


class _GraphBuilder:
    """Collects ONNX nodes and initializers; maps ncnn blob names to ONNX tensor names."""

    def __init__(self, input_blob: str, output_blob: str) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._tensors: dict[str, str] = {input_blob: INPUT_NAME}
        self._output_blob = output_blob
        self._counter = 0

    def read(self, blob: str) -> str:
        if blob not in self._tensors:
            raise ModelError(f"blob {blob!r} is used before any layer produces it")
        return self._tensors[blob]

    def write(self, blob: str) -> str:
        # A prefix keeps ncnn blob names from colliding with the graph's input/output names.
        tensor = OUTPUT_NAME if blob == self._output_blob else f"blob:{blob}"
        self._tensors[blob] = tensor
        return tensor

    def alias(self, blob: str, tensor: str) -> None:
        if blob == self._output_blob:
            self.add("Identity", [tensor], [self.write(blob)])
        else:
            self._tensors[blob] = tensor

    def temp(self, hint: str) -> str:
        self._counter += 1
        return f"tmp{self._counter}:{hint}"

    def constant(self, hint: str, value: NDArray[np.generic]) -> str:
        name = self.temp(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def add(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attributes: Any) -> None:
        name = self.temp(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attributes))

    def to_model(self, graph_name: str) -> onnx.ModelProto:
        image_in = helper.make_tensor_value_info(
            INPUT_NAME, TensorProto.FLOAT, ["N", _RGB_CHANNELS, "H", "W"]
        )
        # The output channel count is left symbolic: it is whatever the net's last layer makes.
        image_out = helper.make_tensor_value_info(
            OUTPUT_NAME, TensorProto.FLOAT, ["N", "C_out", "H_out", "W_out"]
        )
        graph = helper.make_graph(self.nodes, graph_name, [image_in], [image_out], self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facerestore.ncnn_import"
        )
        model.ir_version = IR_VERSION
        return model


# --- layer converters -----------------------------------------------------------------------------------

_Converter = Callable[[_GraphBuilder, _Layer, _WeightReader], None]


def _converter_for(layer: _Layer) -> _Converter:
    converter = _CONVERTERS.get(layer.kind)
    if converter is None:
        raise ModelError(f"unsupported ncnn layer type {layer.kind!r} (layer {layer.name})")
    return converter


def _one_to_one(layer: _Layer) -> tuple[str, str]:
    if len(layer.bottoms) != 1 or len(layer.tops) != 1:
        raise ModelError(f"layer {layer.name} ({layer.kind}) must have one input and one output blob")
    return layer.bottoms[0], layer.tops[0]


def _single_top(layer: _Layer) -> str:
    if len(layer.tops) != 1:
        raise ModelError(f"layer {layer.name} ({layer.kind}) must have one output blob")
    return layer.tops[0]


def _float_constant(graph: _GraphBuilder, hint: str, values: Sequence[float]) -> str:
    return graph.constant(hint, np.asarray(values, dtype=np.float32))


def _convert_input(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    """The input blob is registered up front; its fixed w/h/c params are ignored (shape is dynamic)."""


def _convert_split(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    if len(layer.bottoms) != 1:
        raise ModelError(f"layer {layer.name} (Split) must have one input blob")
    source = graph.read(layer.bottoms[0])
    for top in layer.tops:
        graph.alias(top, source)


def _convert_convolution(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    bottom, top = _one_to_one(layer)
    params = layer.params
    _reject_convolution_extras(layer)
    weight = _convolution_weight(layer, weights)
    inputs = [graph.read(bottom), graph.constant(f"{layer.name}.weight", weight)]
    if params.get_int(5, 0):
        inputs.append(graph.constant(f"{layer.name}.bias", weights.raw(weight.shape[0])))
    dilation_w, stride_w = params.get_int(2, 1), params.get_int(3, 1)
    activation = params.get_int(9, 0)
    conv_out = graph.temp(layer.name) if activation else graph.write(top)
    graph.add(
        "Conv",
        inputs,
        [conv_out],
        kernel_shape=list(weight.shape[2:]),
        dilations=[params.get_int(12, dilation_w), dilation_w],
        strides=[params.get_int(13, stride_w), stride_w],
        pads=_convolution_pads(layer),
    )
    if activation:
        _add_activation(graph, layer, conv_out, graph.write(top))


def _convolution_weight(layer: _Layer, weights: _WeightReader) -> FloatArray:
    """The kernel as [out_channels, in_channels, kernel_h, kernel_w], ncnn's storage order."""
    params = layer.params
    out_channels, weight_size = params.get_int(0, 0), params.get_int(6, 0)
    kernel_w = params.get_int(1, 0)
    kernel_h = params.get_int(11, kernel_w)
    per_input_channel = out_channels * kernel_h * kernel_w
    if min(out_channels, kernel_h, kernel_w, weight_size) <= 0 or weight_size % per_input_channel:
        raise ModelError(f"layer {layer.name}: weight size {weight_size} does not fit its kernel shape")
    in_channels = weight_size // per_input_channel
    return weights.tagged(weight_size).reshape(out_channels, in_channels, kernel_h, kernel_w)


def _reject_convolution_extras(layer: _Layer) -> None:
    params = layer.params
    if params.get_int(8, 0) or params.get_int(19, 0) or params.get_float(18, 0.0):
        raise ModelError(f"layer {layer.name}: int8, dynamic-weight or non-zero pad-value convolution")


def _convolution_pads(layer: _Layer) -> list[int]:
    """ONNX pads [top, left, bottom, right] from ncnn's pad_left/right/top/bottom with their defaults."""
    params = layer.params
    left = params.get_int(4, 0)
    right = params.get_int(15, left)
    top = params.get_int(14, left)
    bottom = params.get_int(16, top)
    pads = [top, left, bottom, right]
    if min(pads) < 0:
        raise ModelError(f"layer {layer.name}: SAME-style (negative) convolution padding is not supported")
    return pads


def _add_activation(graph: _GraphBuilder, layer: _Layer, source: str, target: str) -> None:
    """ncnn's fused activation_type (param 9) with activation_params (param 10)."""
    kind, args = layer.params.get_int(9, 0), layer.params.get_array(10)
    if kind == 1:
        graph.add("Relu", [source], [target])
    elif kind == 2 and len(args) == 1:
        graph.add("LeakyRelu", [source], [target], alpha=args[0])
    elif kind == 3 and len(args) == 2:
        bounds = [graph.constant(f"{layer.name}.clip", np.asarray(bound, dtype=np.float32)) for bound in args]
        graph.add("Clip", [source, *bounds], [target])
    elif kind == 4:
        graph.add("Sigmoid", [source], [target])
    else:
        raise ModelError(f"layer {layer.name}: unsupported fused activation type {kind} with params {args}")


def _convert_concat(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    axis = layer.params.get_int(0, 0)
    # Non-negative ncnn axes count from C in CHW; ONNX counts from N in NCHW.
    onnx_axis = axis + 1 if axis >= 0 else axis
    inputs = [graph.read(bottom) for bottom in layer.bottoms]
    graph.add("Concat", inputs, [graph.write(_single_top(layer))], axis=onnx_axis)


def _convert_eltwise(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    op_type, coeffs = layer.params.get_int(0, 0), layer.params.get_array(1)
    inputs = [graph.read(bottom) for bottom in layer.bottoms]
    target = graph.write(_single_top(layer))
    if op_type == 1 and coeffs:
        if len(coeffs) != len(inputs):
            raise ModelError(f"layer {layer.name}: {len(coeffs)} coefficients for {len(inputs)} inputs")
        inputs = [_scaled(graph, layer, tensor, coeff) for tensor, coeff in zip(inputs, coeffs, strict=True)]
    if op_type == 1:
        graph.add("Sum", inputs, [target])
    elif op_type == 2:
        graph.add("Max", inputs, [target])
    elif op_type == 0 and len(inputs) == 2:
        graph.add("Mul", inputs, [target])
    else:
        raise ModelError(f"layer {layer.name}: unsupported Eltwise op {op_type} on {len(inputs)} inputs")


def _scaled(graph: _GraphBuilder, layer: _Layer, tensor: str, coeff: float) -> str:
    if coeff == 1.0:
        return tensor
    scaled = graph.temp(layer.name)
    graph.add("Mul", [tensor, _float_constant(graph, f"{layer.name}.coeff", [coeff])], [scaled])
    return scaled


# ncnn BinaryOp op_type -> (ONNX op, operands swapped); 7 and 8 are ncnn's reversed sub and div.
_BINARY_OPS = {
    0: ("Add", False),
    1: ("Sub", False),
    2: ("Mul", False),
    3: ("Div", False),
    4: ("Max", False),
    5: ("Min", False),
    6: ("Pow", False),
    7: ("Sub", True),
    8: ("Div", True),
}


def _convert_binary_op(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    """Element-wise op on two same-shape blobs, or on one blob and the scalar param 2.

    ncnn broadcasts mismatched shapes by its own rules (e.g. a length-C vector per channel),
    which differ from ONNX's numpy rules; the graphs we convert only combine equal shapes.
    """
    params = layer.params
    op_type = params.get_int(0, 0)
    if op_type not in _BINARY_OPS:
        raise ModelError(f"layer {layer.name}: unsupported BinaryOp op type {op_type}")
    onnx_op, swapped = _BINARY_OPS[op_type]
    operands = [graph.read(bottom) for bottom in layer.bottoms]
    if params.get_int(1, 0):
        operands.append(_float_constant(graph, f"{layer.name}.b", [params.get_float(2, 0.0)]))
    if len(operands) != 2:
        raise ModelError(f"layer {layer.name}: BinaryOp needs two operands, got {len(operands)}")
    if swapped:
        operands.reverse()
    graph.add(onnx_op, operands, [graph.write(_single_top(layer))])


def _convert_interp(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    """ncnn Interp -> ONNX Resize.

    ncnn nearest maps dst x to floor(x / scale) (ONNX asymmetric + floor); bilinear and bicubic use
    half-pixel centres (or align_corner), clamp at the border, and bicubic uses A = -0.75.
    """
    bottom, top = _one_to_one(layer)
    params = layer.params
    if params.get_int(5, 0):
        raise ModelError(f"layer {layer.name}: Interp with a dynamic target size is not supported")
    source = graph.read(bottom)
    out_h, out_w = params.get_int(3, 0), params.get_int(4, 0)
    if out_h and out_w:
        inputs = [source, "", "", _resize_sizes(graph, layer, source, out_h, out_w)]
    else:
        scales = [1.0, 1.0, params.get_float(1, 1.0), params.get_float(2, 1.0)]
        inputs = [source, "", _float_constant(graph, f"{layer.name}.scales", scales)]
    graph.add("Resize", inputs, [graph.write(top)], **_resize_mode(layer))


def _resize_mode(layer: _Layer) -> dict[str, Any]:
    resize_type = layer.params.get_int(0, 0)
    half_pixel = "align_corners" if layer.params.get_int(6, 0) else "half_pixel"
    if resize_type == 1:
        return {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    if resize_type == 2:
        return {"mode": "linear", "coordinate_transformation_mode": half_pixel}
    if resize_type == 3:
        return {"mode": "cubic", "coordinate_transformation_mode": half_pixel, "cubic_coeff_a": -0.75}
    raise ModelError(f"layer {layer.name}: unsupported Interp resize type {resize_type}")


def _resize_sizes(graph: _GraphBuilder, layer: _Layer, source: str, out_h: int, out_w: int) -> str:
    """[N, C, out_h, out_w] with N and C taken from the tensor at run time."""
    batch_channels = graph.temp(f"{layer.name}.nc")
    graph.add("Shape", [source], [batch_channels], start=0, end=2)
    spatial = graph.constant(f"{layer.name}.hw", np.asarray([out_h, out_w], dtype=np.int64))
    sizes = graph.temp(f"{layer.name}.sizes")
    graph.add("Concat", [batch_channels, spatial], [sizes], axis=0)
    return sizes


def _convert_prelu(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    bottom, top = _one_to_one(layer)
    slope_count = layer.params.get_int(0, 0)
    slopes = weights.raw(slope_count)
    # One slope per channel must broadcast over H and W of an NCHW tensor.
    shaped = slopes.reshape(slope_count, 1, 1) if slope_count > 1 else slopes
    graph.add(
        "PRelu", [graph.read(bottom), graph.constant(f"{layer.name}.slope", shaped)], [graph.write(top)]
    )


def _convert_pixel_shuffle(graph: _GraphBuilder, layer: _Layer, weights: _WeightReader) -> None:
    bottom, top = _one_to_one(layer)
    factor, mode = layer.params.get_int(0, 1), layer.params.get_int(1, 0)
    if mode not in (0, 1):
        raise ModelError(f"layer {layer.name}: unsupported PixelShuffle mode {mode}")
    # Mode 0 is PyTorch's pixel_shuffle channel order (CRD); mode 1 is TensorFlow's (DCR).
    onnx_mode = "CRD" if mode == 0 else "DCR"
    graph.add("DepthToSpace", [graph.read(bottom)], [graph.write(top)], blocksize=factor, mode=onnx_mode)


_CONVERTERS: dict[str, _Converter] = {
    "Input": _convert_input,
    "Split": _convert_split,
    "Convolution": _convert_convolution,
    "Concat": _convert_concat,
    "Eltwise": _convert_eltwise,
    "BinaryOp": _convert_binary_op,
    "Interp": _convert_interp,
    "PReLU": _convert_prelu,
    "PixelShuffle": _convert_pixel_shuffle,
}
