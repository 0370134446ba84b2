"""Importing official PyTorch checkpoints: spandrel's own architectures with random weights, saved the way
upstream saves them, go through facerestore's import; the ONNX file must give PyTorch's output on a real face
crop and run in the pipeline. Needs the torch extra (pip install -e .[torch]); without it those tests are
skipped and the one-line refusal is checked instead."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from face_prior_networks import codeformer, random_weights, restoreformer
from face_prior_networks import gfpgan_14 as gfpgan

import facerestore
from assertions import assert_one_clear_line
from facerestore import checkpoints, registry
from facerestore.cli import main
from facerestore.errors import ModelError, SkippedCheckpointError
from facerestore.image_io import load_image
from facerestore.options import RestoreOptions
from facerestore.pipeline import Restorer
from facerestore.restoration import FacePriorRestorer

TORCH_EXTRA = ("torch", "spandrel", "spandrel_extra_arches", "safetensors")
MISSING = [name for name in TORCH_EXTRA if importlib.util.find_spec(name) is None]
needs_torch = pytest.mark.skipif(
    bool(MISSING), reason=f"torch extra not installed ({', '.join(MISSING)}): pip install -e .[torch]"
)
FACE_CROP = "data/real/gfpgan-cropped/Adele_crop.png"  # read in place, never copied
# Largest |ONNX - PyTorch| allowed, per unit of output scale: real networks return [-1, 1], where this is the
# absolute difference; random weights reach 4-5, and PyTorch differs from itself by up to 1.2e-4 on CodeFormer
# between thread counts or memory layouts, so the bound scales with the output.
TOLERANCE = 1e-4


def tiny_restoreformer() -> Any:
    """A RestoreFormer with few, narrow layers: spandrel reads its sizes from the weights, and it exports in
    seconds, for tests about files rather than the network."""
    from spandrel.architectures.RestoreFormer import RestoreFormer

    return RestoreFormer(n_embed=32, embed_dim=32, ch=32, ch_mult=(1,) * 6, num_res_blocks=1, z_channels=32)


def save_pth(network: Any, path: Path) -> Path:
    import torch

    torch.save({"params_ema": network.state_dict()}, path)  # nested the way GFPGAN and CodeFormer ship
    return path


def save_safetensors(network: Any, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in network.state_dict().items()}, path)
    return path


def reference(network: Any, architecture: str, image: Any, fidelity: float) -> np.ndarray:
    """Upstream's own forward pass (GFPGAN with its stored noise maps, as exported)."""
    import torch

    with torch.no_grad():
        if architecture == "GFPGAN":
            output = network(image, return_rgb=False, randomize_noise=False)[0]
        elif architecture == "CodeFormer":
            output = network(image, weight=fidelity)[0]
        else:
            output = network(image)[0]
    return np.asarray(output.numpy())


@dataclass(frozen=True)
class Case:
    entry: str
    build: Callable[[], Any]
    source: str  # the file imported; the other format must hold the same weights
    fidelities: tuple[float, ...] = (0.5,)


CASES = [
    Case("gfpgan-1.4", gfpgan, "GFPGANv1.4.pth"),
    Case("codeformer", codeformer, "codeformer.safetensors", (0.0, 0.7)),
    Case("restoreformer", restoreformer, "RestoreFormer.pth"),
]


@dataclass(frozen=True)
class ImportedCase:
    case: Case
    network: Any
    folder: Path  # holds both checkpoint files
    models: Path  # the model folder the import wrote to
    written: list[str]  # what the import left in it
    imported: checkpoints.Imported


@pytest.fixture(scope="module", params=CASES, ids=[case.entry for case in CASES])
def imported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ImportedCase:
    """Each architecture is exported once per session."""
    if MISSING:
        pytest.skip(f"torch extra not installed ({', '.join(MISSING)})")
    case: Case = request.param
    folder = tmp_path_factory.mktemp(case.entry)
    network = random_weights(case.build)
    stem = Path(case.source).stem
    save_pth(network, folder / f"{stem}.pth")
    save_safetensors(network, folder / f"{stem}.safetensors")
    models = folder / "models"
    result = checkpoints.import_checkpoint(folder / case.source, folder=models)
    print(f"\n{case.entry}: imported from {case.source} in {result.seconds:.1f} s")
    written = sorted(path.name for path in models.iterdir())
    return ImportedCase(case, network, folder, models, written, result)


@pytest.fixture
def model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(folder))
    return folder


def face_blob(shared_dir: Path) -> np.ndarray:
    """The real aligned face crop as the restorer feeds it: [1, 3, 512, 512] RGB in [-1, 1]."""
    pixels = load_image(shared_dir / FACE_CROP).pixels
    return (pixels.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None].copy()


@needs_torch
@pytest.mark.slow
def test_export_gives_pytorchs_output_on_a_real_face(
    imported: ImportedCase, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(imported.models))
    entry = imported.imported.entry
    restorer = FacePriorRestorer(entry)  # from the model folder: checked against its import record
    blob = face_blob(shared_dir)
    for fidelity in imported.case.fidelities:
        feeds = {restorer.image_input: blob}
        if restorer.fidelity_input:
            feeds[restorer.fidelity_input[0]] = np.array([fidelity], np.float64)
        started = time.perf_counter()
        exported = restorer.session.run(None, feeds)[0]
        onnx_seconds = time.perf_counter() - started
        started = time.perf_counter()
        expected = reference(
            imported.network, imported.imported.record.architecture, torch.from_numpy(blob), fidelity
        )
        torch_seconds = time.perf_counter() - started
        difference = float(np.abs(exported - expected).max())
        scale = max(1.0, float(np.abs(expected).max()))
        print(
            f"{entry.name} fidelity {fidelity}: max |ONNX - PyTorch| = {difference:.2e}, output scale "
            f"{scale:.2f} (ONNX Runtime {onnx_seconds:.1f} s, PyTorch {torch_seconds:.1f} s)"
        )
        assert exported.shape == (1, 3, 512, 512)
        assert difference < TOLERANCE * scale


@needs_torch
@pytest.mark.slow
def test_imported_model_runs_in_the_pipeline(
    imported: ImportedCase, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(imported.models))
    name = imported.imported.entry.name
    result = Restorer(RestoreOptions(face_model=name, bg_upsampler="none")).restore(
        load_image(shared_dir / FACE_CROP)
    )
    assert result.face_model == name and len(result.faces) == 1
    assert result.picture.pixels.shape == (1024, 1024, 3)


@needs_torch
@pytest.mark.slow
def test_import_writes_the_entrys_file_and_record(imported: ImportedCase) -> None:
    result, entry = imported.imported, imported.imported.entry
    assert result.model_file == imported.models / entry.filename and not result.already
    assert imported.written == [entry.filename, entry.filename + registry.IMPORT_RECORD_SUFFIX], (
        "staging files were left behind"
    )
    record = registry.read_import_record(result.model_file)
    assert record == result.record and record is not None
    source = imported.folder / imported.case.source
    assert record.source == source.name and record.source_size == source.stat().st_size
    assert record.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record.onnx_sha256 == hashlib.sha256(result.model_file.read_bytes()).hexdigest()
    assert not record.official, "random weights are not the release file"
    assert "opset 17" in record.exporter
    restorer = FacePriorRestorer(entry, model_path=result.model_file)
    inputs = {i.name: (i.shape, i.type) for i in restorer.session.get_inputs()}
    expected = {"input": ([1, 3, 512, 512], "tensor(float)")}
    if entry.fidelity_input:
        expected[entry.fidelity_input] = ([1], "tensor(double)")
    assert inputs == expected
    assert [(o.name, o.shape) for o in restorer.session.get_outputs()] == [("output", [1, 3, 512, 512])]


@needs_torch
@pytest.mark.slow
def test_both_formats_hold_the_same_weights(imported: ImportedCase) -> None:
    import torch

    tools = checkpoints.torch_tools()
    stem = Path(imported.case.source).stem
    state = imported.network.state_dict()
    for suffix in (".pth", ".safetensors"):
        read = tools.read_state_dict(imported.folder / f"{stem}{suffix}")
        assert read.keys() == state.keys()
        assert all(torch.equal(read[key], state[key]) for key in state)


@needs_torch
@pytest.mark.slow
def test_importing_the_same_file_again_does_nothing(imported: ImportedCase) -> None:
    again = checkpoints.import_checkpoint(imported.folder / imported.case.source, folder=imported.models)
    assert again.already and again.record == imported.imported.record
    assert again.describe().startswith(f"already imported as {imported.imported.entry.name}")


@needs_torch
def test_imported_file_is_verified_by_its_record(model_folder: Path, tmp_path: Path) -> None:
    """The registry's download pins describe another export: an imported file is checked against its own
    digest, and a changed one is refused."""
    source = save_pth(random_weights(tiny_restoreformer), tmp_path / "RestoreFormer.pth")
    result = checkpoints.import_checkpoint(source)
    entry = registry.get_entry("restoreformer")
    assert registry.require(entry) == result.model_file == model_folder / entry.filename
    info = registry.model_info(entry)
    assert info["installed"] and info["verification"]["checks"] == ["sha256", "size"]
    assert "import of RestoreFormer.pth" in info["verification"]["summary"]
    with result.model_file.open("r+b") as model:
        model.seek(-4, 2)
        model.write(b"\0\0\0\0")
    with pytest.raises(ModelError, match="sha256"):
        registry.require(entry)


def test_entry_follows_the_official_digest_then_the_file_name() -> None:
    official_13 = registry.get_entry("gfpgan-1.3").checkpoint
    assert official_13 is not None and official_13.sha256
    unknown = "0" * 64
    assert checkpoints.choose_entry("GFPGAN", "GFPGANv1.4.pth", unknown).name == "gfpgan-1.4"
    assert checkpoints.choose_entry("GFPGAN", "GFPGANCleanv1-NoCE-C2.pth", unknown).name == "gfpgan-1.2"
    assert checkpoints.choose_entry("GFPGAN", "renamed.pth", official_13.sha256).name == "gfpgan-1.3"
    assert checkpoints.choose_entry("CodeFormer", "anything.pth", unknown).name == "codeformer"
    assert checkpoints.choose_entry("RestoreFormer", "model.pth", unknown).name == "restoreformer"
    assert checkpoints.choose_entry("GFPGAN", "face.pth", unknown, "gfpgan-1.3").name == "gfpgan-1.3"
    with pytest.raises(ModelError) as caught:
        checkpoints.choose_entry("GFPGAN", "face.pth", unknown)
    assert_one_clear_line(caught.value, "face.pth", "gfpgan-1.4, gfpgan-1.3, gfpgan-1.2")
    assert "--as" in caught.value.render(lambda name: "--as"), "the CLI names its flag"
    with pytest.raises(ModelError, match="not a 'codeformer' one"):
        checkpoints.choose_entry("GFPGAN", "GFPGANv1.4.pth", unknown, "codeformer")


def test_every_checkpoint_maps_to_a_face_prior_with_a_source() -> None:
    for entry in registry.entries(registry.Purpose.FACE_RESTORER):
        if entry.checkpoint:
            assert (
                entry.checkpoint.url.startswith("https://github.com/")
                and "/latest/" not in entry.checkpoint.url
            )
            assert entry.checkpoint.pinned_by
            assert (entry.checkpoint.sha256 is None) == (entry.checkpoint.size_bytes is None)
    restoreformer = registry.get_entry("restoreformer")
    assert restoreformer.licence == "Apache-2.0" and restoreformer.commercial_use
    assert (restoreformer.input_size, restoreformer.template, restoreformer.value_range) == (
        512,
        "ffhq",
        (-1, 1),
    )
    with pytest.raises(ModelError) as caught:
        registry.download(restoreformer)
    assert_one_clear_line(caught.value, "no ONNX download", "RestoreFormer.pth", "facerestore models import")


@needs_torch
def test_another_architecture_is_one_clear_line(tmp_path: Path) -> None:
    from spandrel.architectures.Compact import Compact

    source = save_pth(random_weights(lambda: Compact(num_feat=8, num_conv=2)), tmp_path / "x4.pth")
    with pytest.raises(SkippedCheckpointError) as caught:
        checkpoints.import_checkpoint(source, folder=tmp_path / "models")
    assert_one_clear_line(caught.value, "not a face restorer", "Compact", "GFPGAN, RestoreFormer, CodeFormer")
    assert not (tmp_path / "models").exists()


@needs_torch
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_is_one_clear_line(tmp_path: Path, suffix: str) -> None:
    network = random_weights(tiny_restoreformer)
    whole = (save_pth if suffix == ".pth" else save_safetensors)(network, tmp_path / f"whole{suffix}")
    cut = tmp_path / f"RestoreFormer{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelError) as caught:
        checkpoints.import_checkpoint(cut, folder=tmp_path / "models")
    assert_one_clear_line(caught.value, str(cut), "not a readable checkpoint")


class _TouchesMarker:
    """Pickles as a call to open(marker, "w"): a full unpickle would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def write_code_pickle(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"params_ema": {"conv.weight": torch.zeros(1)}, "payload": _TouchesMarker(marker)}, path)
    return path


@needs_torch
def test_pickled_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    source = write_code_pickle(tmp_path / "GFPGANv1.4.pth", marker)
    with pytest.raises(ModelError) as caught:
        checkpoints.import_checkpoint(source, folder=tmp_path / "models")
    assert_one_clear_line(caught.value, "refused", "would run pickled code (io.open)")
    assert not marker.exists()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_without_the_torch_extra_import_says_what_to_install(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes "import torch" fail, as when not installed
    monkeypatch.delitem(sys.modules, "facerestore.checkpoint_export", raising=False)
    monkeypatch.delattr(facerestore, "checkpoint_export", raising=False)
    source = tmp_path / "GFPGANv1.4.pth"
    source.write_bytes(b"never read")
    code, out, err = run(capsys, "models", "import", str(source))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "pip install 'facerestore[torch]'" in err and "is missing" in err


@needs_torch
def test_folder_import_gives_one_line_per_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_folder: Path
) -> None:
    from spandrel.architectures.Compact import Compact

    folder = tmp_path / "webui" / "models"
    (folder / "Codeformer").mkdir(parents=True)
    save_pth(random_weights(tiny_restoreformer), folder / "Codeformer" / "RestoreFormer.pth")
    save_safetensors(random_weights(tiny_restoreformer), folder / "restoreformer_v2.safetensors")
    save_pth(random_weights(lambda: Compact(num_feat=8, num_conv=2)), folder / "4x_compact.pth")
    marker = tmp_path / "code-ran"
    write_code_pickle(folder / "GFPGANv1.4.pth", marker)
    (folder / "README.txt").write_text("not a checkpoint")
    code, out, err = run(capsys, "models", "import", str(folder))
    assert code == 1, "the refused file fails the run"
    lines = out.splitlines()
    assert len(lines) == 3 and len(err.splitlines()) == 1
    assert lines[0].startswith(f"{folder / '4x_compact.pth'}: skipped: not a face restorer")
    assert lines[1].startswith(f"{folder / 'Codeformer' / 'RestoreFormer.pth'}: imported as restoreformer")
    assert lines[2].startswith(f"{folder / 'restoreformer_v2.safetensors'}: skipped: restoreformer was")
    assert err.startswith(f"error: {folder / 'GFPGANv1.4.pth'}: refused") and not marker.exists()
    assert (model_folder / "restoreformer.onnx").is_file()
    code, out, _ = run(capsys, "models", "import", str(folder / "Codeformer"))
    assert code == 0 and "already imported as restoreformer" in out
    code, _, err = run(capsys, "models", "import", str(folder), "--as", "restoreformer")
    assert code == 1 and err.startswith("error: --as names the model in one file")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a folder: (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@needs_torch
def test_official_download_is_checked_then_imported(
    capsys: pytest.CaptureFixture[str],
    served: tuple[str, Path],
    model_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, folder = served
    payload = save_pth(random_weights(tiny_restoreformer), folder / "RestoreFormer.pth").read_bytes()
    entry = registry.get_entry("restoreformer")
    assert entry.checkpoint is not None
    official = replace(
        entry.checkpoint,
        url=f"{url}/RestoreFormer.pth",
        sha256=hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
    )
    monkeypatch.setattr(registry, "DOWNLOAD_RETRIES", 0)
    wrong = replace(official, sha256="0" * 64)
    monkeypatch.setitem(registry._BY_NAME, "restoreformer", replace(entry, checkpoint=wrong))
    code, _, err = run(capsys, "models", "download", "restoreformer", "--official")
    assert code == 1 and "sha256" in err and "nothing was saved" in err
    assert list(model_folder.iterdir()) == []

    monkeypatch.setitem(registry._BY_NAME, "restoreformer", replace(entry, checkpoint=official))
    code, out, err = run(capsys, "models", "download", "restoreformer", "--official")
    assert code == 0, err
    assert out.startswith(
        "restoreformer: imported as restoreformer (RestoreFormer, the official release file)"
    )
    assert sorted(path.name for path in model_folder.iterdir()) == [
        "restoreformer.onnx",
        "restoreformer.onnx.import.json",
    ], "the downloaded checkpoint or staging files were left behind"
    record = registry.read_import_record(model_folder / "restoreformer.onnx")
    assert record is not None and record.official and record.source_sha256 == official.sha256
