"""No result lost, no input touched, and options that would fail for every image refused before the first
one (issue 9: data loss and up-front checks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from facerestore import quantization, registry
from facerestore.blending import feather_mask
from facerestore.cli import main
from facerestore.detection import YuNet
from facerestore.errors import ModelError
from facerestore.upscaling import NetworkUpscaler

FAST = ["--bg-upsampler", "none", "--face-model", "realesr-compact-x4"]


def run(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", *args])
    captured = capfd.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def photo(shared_dir: Path, tmp_path: Path) -> Path:
    source = tmp_path / "photo.png"
    shutil.copy(shared_dir / "data/real/misc/00017_gray.png", source)
    return source


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_report_never_replaces_an_input_or_another_file(
    capfd: pytest.CaptureFixture[str], photo: Path, tmp_path: Path
) -> None:
    original = photo.read_bytes()
    code, _, err = run(
        capfd, "restore", str(photo), "-o", str(tmp_path / "out"), "--report", str(photo), *FAST
    )
    assert code == 1 and "--report" in err and "one of the inputs" in err and photo.read_bytes() == original
    notes = tmp_path / "notes.json"
    notes.write_text("my notes")
    code, _, err = run(
        capfd, "restore", str(photo), "-o", str(tmp_path / "out"), "--report", str(notes), *FAST
    )
    assert code == 1 and "exists" in err and notes.read_text() == "my notes"
    assert not (tmp_path / "out" / "photo.png").exists(), "refused before any work"
    code, _, _ = run(
        capfd,
        "restore",
        str(photo),
        "-o",
        str(tmp_path / "out"),
        "--report",
        str(notes),
        "--overwrite",
        *FAST,
    )
    assert code == 0 and json.loads(notes.read_text())[0]["error"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "the report is written atomically"


def test_two_inputs_for_one_output_are_refused_up_front(
    capfd: pytest.CaptureFixture[str], photo: Path, tmp_path: Path
) -> None:
    other = tmp_path / "b" / "photo.png"
    other.parent.mkdir()
    shutil.copy(photo, other)
    out = tmp_path / "out"
    code, _, err = run(capfd, "restore", str(photo), str(other), "-o", str(out), "--overwrite", *FAST)
    assert code == 1 and "would both be written to" in err and len(error_lines(err)) == 1
    assert not out.exists() or not any(out.iterdir())
    jpeg = tmp_path / "photo.jpg"
    shutil.copy(photo, jpeg)  # same stem, and --format png makes both photo.png
    code, _, err = run(capfd, "restore", str(photo), str(jpeg), "-o", str(out), "--format", "png", *FAST)
    assert code == 1 and "would both be written to" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--suffix", "/../../x"], "--suffix"),
        (["--quality", "0"], "--quality"),
        (["--quality", "101", "--format", "png"], "--quality"),
        (["--scale", "nan"], "--scale"),
        (["--face-model", "realesrgan-x4plus", "--model-path", "x.onnx"], "--model-path"),
        (["--detector-model-path", "x.onnx"], "--detector-model-path"),
        (["--face-model", "gfpgan-1.4", "--model-path", "/nonexistent.onnx"], "no such file"),
    ],
)
def test_bad_options_are_refused_before_the_first_image(
    capfd: pytest.CaptureFixture[str], photo: Path, tmp_path: Path, args: list[str], words: str
) -> None:
    out = tmp_path / "out"
    code, _, err = run(capfd, "restore", str(photo), "-o", str(out), *FAST[:2], *args)
    assert code == 1 and words in err and len(error_lines(err)) == 1, err
    assert not out.exists() or not any(out.iterdir())
    assert "Traceback" not in err


def test_an_output_folder_that_cannot_be_written_is_refused_up_front(
    capfd: pytest.CaptureFixture[str], photo: Path, tmp_path: Path
) -> None:
    code, _, err = run(capfd, "restore", str(photo), "-o", str(photo), *FAST)
    assert code == 1 and "is a file, not a folder" in err
    code, _, err = run(capfd, "restore", str(photo), "-o", "/proc/facerestore-out", *FAST)
    assert code == 1 and "cannot write there" in err and len(error_lines(err)) == 1


def test_a_symlink_loop_is_one_clear_line(
    capfd: pytest.CaptureFixture[str], photo: Path, tmp_path: Path
) -> None:
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    code, _, err = run(capfd, "restore", str(loop), str(photo), "-o", str(tmp_path / "out"), *FAST)
    lines = error_lines(err)
    assert code == 1 and "internal error" not in err
    assert [line for line in lines if line.startswith("error:")] == [
        line for line in lines if "loop.jpg" in line and "error:" in line
    ]
    assert (tmp_path / "out" / "photo.png").is_file(), "the rest of the batch goes on"


def test_detect_survives_a_file_name_that_is_not_utf8(photo: Path, tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"))
    shutil.copy(photo, odd)
    completed = subprocess.run(
        [sys.executable, "-m", "facerestore.cli", "detect", str(tmp_path)],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    assert completed.stdout.count(b"face(s)") == 2


def test_a_broken_yunet_file_is_a_model_error(tmp_path: Path) -> None:
    broken = tmp_path / "yunet.onnx"
    broken.write_bytes(b"not an onnx file at all")
    with pytest.raises(ModelError, match="not a loadable YuNet model"):
        YuNet(broken)


def test_a_corrupt_int8_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(tmp_path))
    entry = registry.get_entry("realesr-compact-x2")
    cached = quantization.cached_int8_path(entry)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x08\x07 a truncated or foreign file")
    network = NetworkUpscaler(entry, precision="int8")
    assert network.run(np.full((16, 16, 3), 0.5, np.float32)).shape == (32, 32, 3)
    onnx.checker.check_model(onnx.load_from_string(cached.read_bytes()))
    assert not [p for p in cached.parent.iterdir() if p.name.endswith(".part")]


def test_caches_keyed_by_size_are_bounded() -> None:
    feather_mask.cache_clear()
    for side in range(600, 700):
        feather_mask(side)
    assert feather_mask.cache_info().currsize <= 4


def test_resume_keeps_finished_outputs_restores_the_rest_and_clears_killed_writes(
    capfd: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path
) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("0143.png", "0240.png", "0342.png"):
        shutil.copy(shared_dir / "data/real/codeformer-cropped" / name, inputs / name)
    assert run(capfd, "restore", str(inputs / "0143.png"), "-o", str(out), *FAST)[0] == 0
    finished = out / "0143.png"
    before = (finished.read_bytes(), finished.stat().st_mtime_ns)
    killed_write = out / ".0240.png.k1ll3d.part.png"  # what a writer killed mid-write leaves
    killed_write.write_bytes(b"half a png")
    report = tmp_path / "report.json"
    code, _, err = run(
        capfd, "restore", str(inputs), "-o", str(out), "--resume", "--report", str(report), *FAST
    )
    assert code == 0 and "2 of 3 inputs restored (1 kept from before)" in err, err
    assert (finished.read_bytes(), finished.stat().st_mtime_ns) == before
    assert sorted(path.name for path in out.iterdir()) == ["0143.png", "0240.png", "0342.png"]
    records = json.loads(report.read_text())
    assert [record["resumed"] for record in records] == [True, False, False]
    assert all(record["error"] is None for record in records)


def test_resume_and_overwrite_contradict(
    capfd: pytest.CaptureFixture[str], photo: Path, tmp_path: Path
) -> None:
    code, _, err = run(capfd, "restore", str(photo), "-o", str(tmp_path), "--resume", "--overwrite", *FAST)
    assert code == 1 and error_lines(err) == [
        "error: --resume keeps existing outputs; --overwrite replaces them"
    ]
