"""Model registry: entries, model folder, checksums, downloads, and the ONNX contract of every face prior."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facerestore import registry
from facerestore.detection import YuNet
from facerestore.errors import ModelError
from facerestore.restoration import FacePriorRestorer, create_face_restorer
from onnx_factory import expected_output, face_prior_model, write_face_prior

FACE_PRIORS = list(registry.entries(registry.Purpose.FACE_RESTORER))


@pytest.fixture
def model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a folder: (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def test_every_entry_is_complete() -> None:
    names = [entry.name for entry in registry.MODELS]
    assert len(names) == len(set(names))
    for entry in registry.MODELS:
        assert entry.licence and entry.filename
        assert entry.python_package or entry.url, f"{entry.name} has no source"
        if entry.sha256:
            assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
    assert not registry.get_entry("codeformer").commercial_use
    assert registry.get_entry("codeformer").fidelity_input == "weight"


def test_packaged_models_are_installed_offline() -> None:
    for name in ("retinaface", "realesrgan-x4plus", "realesr-compact-x4", "realesr-compact-x2"):
        assert registry.is_installed(registry.get_entry(name)), name


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"gfpgan-1\.4"):
        registry.get_entry("gfpgan-9")


def test_missing_model_message_says_where_to_get_and_put_it(model_folder: Path) -> None:
    entry = registry.get_entry("gfpgan-1.4")
    with pytest.raises(ModelError) as caught:
        registry.require(entry)
    message = str(caught.value)
    assert str(model_folder / entry.filename) in message
    assert entry.url in message and "download" in message and "\n" not in message


def test_model_folder_from_environment_is_used(model_folder: Path, shared_dir: Path) -> None:
    shutil.copy(shared_dir / "models" / "face_detection_yunet_2023mar.onnx", model_folder)
    entry = registry.get_entry("yunet")
    assert registry.locate(entry) == model_folder / entry.filename
    assert registry.require(entry) == model_folder / entry.filename
    assert YuNet()(np.zeros((64, 64, 3), np.uint8), 0.75).shape == (0, 15)


def test_corrupt_file_in_model_folder_is_refused(model_folder: Path) -> None:
    entry = registry.get_entry("yunet")
    (model_folder / entry.filename).write_bytes(b"not the model")
    with pytest.raises(ModelError, match="does not match"):
        registry.require(entry)


def test_download_verifies_checksum(model_folder: Path, file_server: tuple[str, Path]) -> None:
    base, served = file_server
    payload = face_prior_model(registry.get_entry("gfpgan-1.4"), input_size=32).SerializeToString()
    (served / "model.onnx").write_bytes(payload)
    good = replace(
        registry.get_entry("gfpgan-1.4"), url=f"{base}/model.onnx", sha256=hashlib.sha256(payload).hexdigest()
    )
    path = registry.download(good, progress=False)
    assert path == model_folder / good.filename and path.read_bytes() == payload

    bad = replace(good, filename="other.onnx", sha256="0" * 64)
    with pytest.raises(ModelError, match="checksum"):
        registry.download(bad, progress=False)
    assert not (model_folder / "other.onnx").exists()
    assert not list(model_folder.glob(".*part")), "a partial download was left behind"


def test_download_failure_is_one_clear_line(model_folder: Path, file_server: tuple[str, Path]) -> None:
    base, _ = file_server
    entry = replace(registry.get_entry("gfpgan-1.4"), url=f"{base}/missing.onnx")
    with pytest.raises(ModelError, match="failed") as caught:
        registry.download(entry, progress=False)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("entry", FACE_PRIORS, ids=[e.name for e in FACE_PRIORS])
def test_face_prior_contract(entry: registry.ModelEntry, model_folder: Path) -> None:
    """The real loader finds the file in the model folder, checks its signature, normalises the crop into the
    model's range and back, and feeds the fidelity input where the model has one."""
    write_face_prior(entry, model_folder)
    unverified = replace(entry, sha256=None)  # the generated file cannot carry the published checksum
    restorer = FacePriorRestorer(unverified)
    crop = np.random.default_rng(0).random((entry.input_size, entry.input_size, 3), dtype=np.float32)
    for fidelity in (0.0, 1.0):
        result = restorer.restore(crop, fidelity)
        assert result.shape == crop.shape and result.dtype == np.float32
        np.testing.assert_allclose(result, expected_output(entry, crop, fidelity), atol=1e-5)
    assert restorer.supports_fidelity == (entry.fidelity_input is not None)


def test_codeformer_fidelity_changes_the_result(model_folder: Path) -> None:
    entry = registry.get_entry("codeformer")
    path = write_face_prior(entry, model_folder)
    restorer = create_face_restorer("codeformer", model_path=path)
    crop = np.full((512, 512, 3), 0.5, np.float32)
    difference = restorer.restore(crop, 1.0).mean() - restorer.restore(crop, 0.0).mean()
    assert difference == pytest.approx(0.2, abs=1e-4)


def test_wrong_signature_is_refused(model_folder: Path) -> None:
    entry = registry.get_entry("gfpgan-1.4")
    path = write_face_prior(entry, model_folder, input_size=256)
    with pytest.raises(ModelError, match=r"\[1, 3, 512, 512\]"):
        create_face_restorer("gfpgan-1.4", model_path=path)


def test_codeformer_without_fidelity_input_is_refused(model_folder: Path) -> None:
    path = write_face_prior(registry.get_entry("gfpgan-1.4"), model_folder)
    with pytest.raises(ModelError, match="'weight' input"):
        create_face_restorer("codeformer", model_path=path)


def test_non_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gfpgan.onnx"
    path.write_bytes(b"\x80\x04pickle data, never loaded")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        create_face_restorer("gfpgan-1.4", model_path=path)


def test_auto_prefers_an_installed_face_prior(model_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert create_face_restorer("auto").name == "realesrgan-x4plus"
    entry = registry.get_entry("gpen-bfr-512")
    write_face_prior(entry, model_folder)
    monkeypatch.setattr(registry, "MODELS", tuple(replace(e, sha256=None) for e in registry.MODELS))
    monkeypatch.setattr(registry, "_BY_NAME", {e.name: e for e in registry.MODELS})
    assert create_face_restorer("auto").name == "gpen-bfr-512"
