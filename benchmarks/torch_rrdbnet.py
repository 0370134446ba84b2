"""A plain PyTorch RRDBNet (Real-ESRGAN x4plus), the reference our ONNX Runtime path is timed against.

Architecture, as the packaged ncnn graph REALESRGAN_X4PLUS_UP4X.param spells it out: a 3->64 conv; 23 RRDB
blocks, each three residual dense blocks of five 3x3 convs (64 + 32k -> 32 for k = 0..3 with LeakyReLU 0.2,
then 192 -> 64 without), dense block out = 0.2 * conv5 + x and RRDB out = 0.2 * block3 + x; a 64->64 trunk
conv added to the first conv's features; two (nearest x2, conv 64->64, LeakyReLU) stages; a 64->64 conv with
LeakyReLU; a 64->3 conv. ``conv_specs`` lists that layout without torch so it can be checked against the
.param file anywhere; the weights are taken from our converted ONNX graph, in graph order, by shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

if TYPE_CHECKING:
    import torch

NUM_BLOCKS, FEATURES, GROWTH, SLOPE, RESIDUAL_SCALE = 23, 64, 32, 0.2, 0.2
_NCNN_LEAKY_RELU = 2  # ncnn Convolution param 9 (activation type): 2 = LeakyReLU, slope in param -23310


@dataclass(frozen=True)
class ConvSpec:
    in_channels: int
    out_channels: int
    leaky: bool


def _dense_block_specs(features: int, growth: int) -> list[ConvSpec]:
    inner = [ConvSpec(features + k * growth, growth, True) for k in range(4)]
    return [*inner, ConvSpec(features + 4 * growth, features, False)]


def conv_specs(blocks: int = NUM_BLOCKS, features: int = FEATURES, growth: int = GROWTH) -> list[ConvSpec]:
    """Every 3x3 conv of RRDBNet x4 in execution order."""
    body = _dense_block_specs(features, growth) * (3 * blocks)
    trunk = ConvSpec(features, features, False)
    upsampling = [ConvSpec(features, features, True)] * 3  # up1, up2, hr
    return [ConvSpec(3, features, False), *body, trunk, *upsampling, ConvSpec(features, 3, False)]


def ncnn_conv_specs(param_path: Path) -> list[ConvSpec]:
    """The Convolution layers of an ncnn .param file (3x3 assumed where the weight count says so)."""
    specs = []
    for line in param_path.read_text().splitlines()[2:]:
        tokens = line.split()
        if not tokens or tokens[0] != "Convolution":
            continue
        blob_count = int(tokens[2]) + int(tokens[3])
        params = dict(token.split("=", 1) for token in tokens[4 + blob_count :])
        out_channels, kernel = int(params["0"]), int(params.get("1", "1"))
        in_channels = int(params["6"]) // (out_channels * kernel * kernel)
        leaky = int(params.get("9", "0")) == _NCNN_LEAKY_RELU
        if kernel != 3 or (leaky and float(params["-23310"].split(",")[1]) != SLOPE):
            raise ValueError(f"unexpected conv in {param_path.name}: {line.strip()}")
        specs.append(ConvSpec(in_channels, out_channels, leaky))
    return specs


def onnx_conv_weights(model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of every Conv node, in graph order."""
    tensors = {tensor.name: tensor for tensor in model.graph.initializer}
    pairs = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight, bias = (numpy_helper.to_array(tensors[name]) for name in node.input[1:3])
            pairs.append((weight, bias))
    return pairs


def build_rrdbnet() -> torch.nn.Module:
    """The RRDBNet module (imports torch here, so this file loads without it)."""
    import torch
    from torch import nn
    from torch.nn import functional

    def conv(spec: ConvSpec) -> nn.Conv2d:
        return nn.Conv2d(spec.in_channels, spec.out_channels, 3, padding=1)

    class DenseBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList(conv(spec) for spec in _dense_block_specs(FEATURES, GROWTH))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = [x]
            for layer in self.convs[:-1]:
                features.append(functional.leaky_relu(layer(torch.cat(features, 1)), SLOPE))
            return self.convs[-1](torch.cat(features, 1)) * RESIDUAL_SCALE + x

    class RRDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.Sequential(DenseBlock(), DenseBlock(), DenseBlock())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks(x) * RESIDUAL_SCALE + x

    class RRDBNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            square = ConvSpec(FEATURES, FEATURES, False)
            self.conv_first = conv(ConvSpec(3, FEATURES, False))
            self.body = nn.Sequential(*(RRDB() for _ in range(NUM_BLOCKS)))
            self.conv_body, self.conv_up1, self.conv_up2, self.conv_hr = (conv(square) for _ in range(4))
            self.conv_last = conv(ConvSpec(FEATURES, 3, False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.conv_first(x)
            features = features + self.conv_body(self.body(features))
            for layer in (self.conv_up1, self.conv_up2):
                enlarged = functional.interpolate(features, scale_factor=2, mode="nearest")
                features = functional.leaky_relu(layer(enlarged), SLOPE)
            return self.conv_last(functional.leaky_relu(self.conv_hr(features), SLOPE))

    return RRDBNet()


def torch_convs(module: torch.nn.Module) -> list[torch.nn.Conv2d]:
    from torch import nn

    return [layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]


def load_onnx_weights(module: torch.nn.Module, model: onnx.ModelProto) -> None:
    """Copies the ONNX graph's conv weights into the module, pairing convs by order and checking shapes."""
    import torch

    layers, pairs = torch_convs(module), onnx_conv_weights(model)
    if len(layers) != len(pairs):
        raise ValueError(f"PyTorch RRDBNet has {len(layers)} convs, the ONNX graph {len(pairs)}")
    with torch.no_grad():
        for index, (layer, (weight, bias)) in enumerate(zip(layers, pairs, strict=True)):
            if tuple(layer.weight.shape) != weight.shape or tuple(layer.bias.shape) != bias.shape:
                raise ValueError(f"conv {index}: PyTorch {tuple(layer.weight.shape)} vs ONNX {weight.shape}")
            layer.weight.copy_(torch.from_numpy(np.array(weight)))  # to_array views read-only bytes
            layer.bias.copy_(torch.from_numpy(np.array(bias)))
