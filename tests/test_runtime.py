"""Devices: OpenVINO runs the same ONNX networks as ONNX Runtime, through the same session interface."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from facerestore import registry, runtime
from facerestore.cli import main
from facerestore.errors import ModelError, OptionError
from facerestore.image_io import load_image
from facerestore.options import RestoreOptions
from facerestore.pipeline import Plan
from facerestore.restoration import FacePriorRestorer
from facerestore.upscaling import NetworkUpscaler
from onnx_factory import expected_output, write_face_prior

pytest.importorskip("openvino")  # a dev extra: CI installs it


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def face_crop(shared_dir: Path) -> np.ndarray:
    """A real face, 64x64, as the face restorer receives it."""
    image = load_image(shared_dir / "data/real/gfpgan-cropped/Adele_crop.png").pixels
    step = image.shape[0] // 64
    return (image[::step, ::step][:64, :64] / 255.0).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["realesrgan-x4plus", "realesr-compact-x4"])
def test_openvino_runs_the_packaged_networks_like_onnx_runtime(name: str, face_crop: np.ndarray) -> None:
    entry = registry.get_entry(name)
    reference = NetworkUpscaler(entry, "cpu").run(face_crop)
    result = NetworkUpscaler(entry, runtime.OPENVINO).run(face_crop)
    assert result.shape == reference.shape == (256, 256, 3)
    assert _psnr(result, reference) > 40  # bf16 on CPUs with bf16 units: ~50 dB from fp32; fp32 elsewhere


def test_a_face_prior_contract_reads_the_same_through_openvino(tmp_path: Path, face_crop: np.ndarray) -> None:
    """CodeFormer's contract (a double fidelity input) through OpenVINO's session: names, shapes and types
    are read as ONNX Runtime reads them, and the fidelity reaches the network."""
    entry = registry.get_entry("codeformer")
    path = write_face_prior(entry, tmp_path, input_size=64)
    restorer = FacePriorRestorer(dataclasses.replace(entry, input_size=64), runtime.OPENVINO, path)
    assert restorer.fidelity_input == ("weight", np.float64)
    for fidelity in (0.0, 1.0):
        expected = expected_output(entry, face_crop, fidelity)
        assert np.abs(restorer.restore(face_crop, fidelity) - expected).max() < 0.02


def test_openvino_inputs_describe_dynamic_axes(tmp_path: Path) -> None:
    network = NetworkUpscaler(registry.get_entry("realesr-compact-x4"), runtime.OPENVINO)
    (image_input,) = network.session.get_inputs()
    assert image_input.type == "tensor(float)"
    assert image_input.shape[1] == 3 and isinstance(image_input.shape[2], str)


def test_a_broken_model_is_one_line_on_openvino(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"broken\.onnx: not a loadable ONNX model \(.+\)$") as raised:
        runtime.create_session(broken, runtime.OPENVINO)
    assert "\n" not in str(raised.value)


def test_openvino_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an install without the extra gives
    with pytest.raises(OptionError, match=r"pip install 'facerestore\[openvino\]'"):
        runtime.create_session(b"", runtime.OPENVINO)
    assert runtime.resolve_device("auto") == "cpu"


def test_auto_takes_openvino_when_no_gpu_provider_is_here() -> None:
    if runtime.uses_accelerator("auto"):
        pytest.skip("a GPU provider is installed: 'auto' takes it")
    assert runtime.resolve_device("auto") == runtime.OPENVINO


def test_openvino_runs_the_compact_background_in_fp32() -> None:
    """OpenVINO runs fp32 networks in bf16, faster than their int8 form; ONNX Runtime's CPU wants int8."""
    on_openvino = Plan.resolve(RestoreOptions(device=runtime.OPENVINO))
    on_cpu = Plan.resolve(RestoreOptions(device="cpu"))
    assert (on_cpu.bg_upsampler, on_cpu.bg_precision) == ("realesr-compact-x4", "int8")
    assert (on_openvino.bg_upsampler, on_openvino.bg_precision) == ("realesr-compact-x4", "fp32")


@pytest.mark.slow
def test_a_photo_restored_on_openvino_matches_the_cpu_run(shared_dir: Path, tmp_path: Path) -> None:
    photo = shared_dir / "data/real/misc/00017_gray.png"
    outputs = {}
    for device in ("cpu", runtime.OPENVINO):
        report = tmp_path / f"{device}.json"
        args = ["-q", "restore", str(photo), "-o", str(tmp_path / device), "--device", device]
        args += ["--face-model", "realesr-compact-x4"]  # every stage on the device, at a test's cost
        assert main([*args, "--report", str(report)]) == 0
        (record,) = json.loads(report.read_text())
        assert record["faces"], "the face is found on either runtime"
        outputs[device] = load_image(Path(record["output"])).pixels / 255.0
    assert _psnr(outputs[runtime.OPENVINO], outputs["cpu"]) > 35
