"""Small ONNX models with the exact input/output signature of the registry's face-prior entries.

The real face-prior weights are not reachable offline, so tests run the real registry, loader and pipeline
with these. Their arithmetic is chosen so a test can tell whether normalisation and inputs are wired right:
- every model returns the colour negative of its input in the model's value range (x -> low + high - x);
- a model with a fidelity input adds (w - 0.5) * 0.4 to that, so the fidelity visibly changes the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from facerestore.registry import ModelEntry


def face_prior_model(entry: ModelEntry, *, input_size: int | None = None) -> onnx.ModelProto:
    size = input_size or entry.input_size
    low, high = entry.value_range
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, size, size])
    offset = helper.make_tensor("offset", TensorProto.FLOAT, [], [low + high])
    nodes = [helper.make_node("Sub", ["offset", "input"], ["negative"])]
    inputs = [image]
    if entry.fidelity_input:
        inputs.append(helper.make_tensor_value_info(entry.fidelity_input, TensorProto.DOUBLE, [1]))
        half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
        gain = helper.make_tensor("gain", TensorProto.FLOAT, [], [0.4])
        nodes += [
            helper.make_node("Cast", [entry.fidelity_input], ["weight_f"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["weight_f", "half"], ["centred"]),
            helper.make_node("Mul", ["centred", "gain"], ["shift"]),
            helper.make_node("Add", ["negative", "shift"], ["output"]),
        ]
        initializers = [offset, half, gain]
    else:
        nodes[0].output[0] = "output"
        initializers = [offset]
    graph = helper.make_graph(nodes, f"{entry.name}-contract", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_face_prior(entry: ModelEntry, folder: Path, **kwargs: int) -> Path:
    path = folder / entry.filename
    path.write_bytes(face_prior_model(entry, **kwargs).SerializeToString())
    return path


def expected_output(entry: ModelEntry, crop: np.ndarray, fidelity: float) -> np.ndarray:
    """What the generated model should return for a crop in [0, 1], mapped back to [0, 1]."""
    low, high = entry.value_range
    shift = (fidelity - 0.5) * 0.4 if entry.fidelity_input else 0.0
    normalised = crop * (high - low) + low
    return np.clip((low + high - normalised + shift - low) / (high - low), 0, 1)
