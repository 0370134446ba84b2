"""The command line on real files: formats in and out, bad inputs in a batch, overwrite safety, reports."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from facerestore import batch, registry
from facerestore.cli import main
from facerestore.image_io import encode_image, load_image
from onnx_factory import write_face_prior

FAST = ["--bg-upsampler", "none"]  # the background network is covered by the acceptance test


@pytest.fixture
def quick_model(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Options selecting a generated face prior: for tests about files and options, not restoration quality
    (real-network restoration is covered in test_pipeline and by the alpha/gray tests here)."""
    entry = registry.get_entry("gpen-bfr-256")
    path = write_face_prior(entry, tmp_path_factory.mktemp("models"))
    return ["--face-model", entry.name, "--model-path", str(path)]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def restore_one(
    capsys: pytest.CaptureFixture[str], source: Path, out: Path, *extra: str
) -> dict[str, object]:
    report = out / "report.json"
    code, _, err = run(capsys, "restore", str(source), "-o", str(out), "--report", str(report), *FAST, *extra)
    assert code == 0, err
    records = json.loads(report.read_text())
    assert len(records) == 1 and records[0]["error"] is None
    return records[0]


def test_a_non_commercial_model_is_named_as_such(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path, quick_model: list[str]
) -> None:
    source = shared_dir / "data/real/misc/00017_gray.png"
    code, _, err = run(capsys, "restore", str(source), "-o", str(tmp_path), *FAST, *quick_model)
    assert code == 0 and "note: gpen-bfr-256 is licensed no licence file upstream" in err
    code, _, err = run(capsys, "restore", str(source), "-o", str(tmp_path / "default"), *FAST)
    assert code == 0 and "licensed" not in err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: no face-prior model is installed, so faces are restored with realesrgan-x4plus (less facial "
        "detail); for GFPGAN run: facerestore models download gfpgan-1.4"
    ]


@pytest.mark.parametrize("extension", ["jpg", "png", "webp", "tiff"])
def test_formats_in_and_out(
    capsys: pytest.CaptureFixture[str],
    shared_dir: Path,
    tmp_path: Path,
    extension: str,
    quick_model: list[str],
) -> None:
    source = tmp_path / f"blake.{extension}"
    Image.open(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg").save(source)
    record = restore_one(capsys, source, tmp_path / "out", "--scale", "1.5", *quick_model)
    output = Path(str(record["output"]))
    assert output.suffix == f".{extension}"
    assert Image.open(output).format == Image.open(source).format
    assert record["size_out"] == [1050, 696] and len(record["faces"]) == 2  # type: ignore[arg-type]


def test_ext_option_converts(capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path) -> None:
    source = shared_dir / "data/real/misc/00017_gray.png"
    record = restore_one(capsys, source, tmp_path, "--ext", "webp", "--suffix", "_restored", "--scale", "1")
    assert Path(str(record["output"])).name == "00017_gray_restored.webp"
    assert Image.open(str(record["output"])).format == "WEBP"


def test_16_bit_alpha_stays_16_bit_with_alpha(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path
) -> None:
    record = restore_one(capsys, shared_dir / "data/real/misc/tree_alpha_16bit.png", tmp_path)
    assert record["faces"] == []
    written = cv2.imread(str(record["output"]), cv2.IMREAD_UNCHANGED)
    source = cv2.imread(str(shared_dir / "data/real/misc/tree_alpha_16bit.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == (source.shape[0] * 2, source.shape[1] * 2, 4)
    assert len(np.unique(written[..., :3])) > 256, "real 16-bit values, not 8-bit ones scaled up"


def test_alpha_is_kept_and_faces_restored(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path
) -> None:
    source = shared_dir / "data/real/misc/children-alpha.png"
    record = restore_one(capsys, source, tmp_path)
    assert len(record["faces"]) == 5  # type: ignore[arg-type]
    before, after = load_image(source), load_image(str(record["output"]))
    assert before.alpha is not None and after.alpha is not None
    enlarged = cv2.resize(before.alpha, (after.width, after.height), interpolation=cv2.INTER_LINEAR)
    assert np.abs(after.alpha.astype(np.int16) - enlarged).mean() < 2


@pytest.mark.parametrize("name", ["misc/00017_gray.png", "codeformer-gray/Hepburn01.png"])
def test_gray_photos_stay_gray(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path, name: str
) -> None:
    extra = ["--aligned"] if "codeformer" in name else []
    record = restore_one(capsys, shared_dir / "data/real" / name, tmp_path, "--scale", "1", *extra)
    assert record["faces"]
    pixels = load_image(str(record["output"])).pixels.astype(np.int16)
    assert (
        np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 1
        and np.abs(pixels[..., 1] - pixels[..., 2]).max() <= 1
    )


def test_exif_rotated_photo_comes_out_upright(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path, quick_model: list[str]
) -> None:
    upright = Image.open(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise
    source = tmp_path / "rotated.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(source, exif=exif, quality=95)
    record = restore_one(capsys, source, tmp_path / "out", "--scale", "1", *quick_model)
    assert record["size_out"] == [upright.width, upright.height]
    assert len(record["faces"]) == 2  # type: ignore[arg-type]
    written = Image.open(str(record["output"]))
    assert written.getexif().get(0x0112, 1) == 1


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pixel_bomb(width: int, height: int) -> bytes:
    """A valid PNG declaring width x height with a tiny compressed body: cheap to write, huge to decode."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def test_bad_inputs_fail_alone_and_clearly(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path, quick_model: list[str]
) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    good = shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg"
    shutil.copy(good, folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:20_000])
    (folder / "notes.jpg").write_text("this is not a picture\n")
    Image.new("RGB", (1, 1), (90, 60, 30)).save(folder / "dot.png")
    Image.new("RGB", (320, 240), (200, 200, 200)).save(folder / "noface.png")
    (folder / "bomb.png").write_bytes(_pixel_bomb(50_000, 50_000))
    report = tmp_path / "report.json"
    code, _, err = run(
        capsys,
        "restore",
        str(folder),
        "-o",
        str(tmp_path / "out"),
        "--report",
        str(report),
        *FAST,
        *quick_model,
    )
    assert code == 1
    assert "Traceback" not in err
    records = {Path(r["input"]).name: r for r in json.loads(report.read_text())}
    assert set(records) == {
        "good.jpg",
        "empty.jpg",
        "truncated.jpg",
        "notes.jpg",
        "dot.png",
        "noface.png",
        "bomb.png",
    }
    failed = {name for name, r in records.items() if r["error"]}
    assert failed == {"empty.jpg", "truncated.jpg", "notes.jpg", "bomb.png"}
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 4
    assert "megapixels" in records["bomb.png"]["error"] and "empty" in records["empty.jpg"]["error"]
    assert len(records["good.jpg"]["faces"]) == 2
    assert records["noface.png"]["faces"] == [] and Path(records["noface.png"]["output"]).is_file()
    assert records["dot.png"]["size_out"] == [2, 2]
    assert "4 failed" in err


def _files_libraries_complain_about(real: Path, folder: Path) -> list[str]:
    """Files that make libpng, libtiff (through OpenCV) or Pillow write to stderr themselves; returns the
    names of those that cannot be restored."""
    png16 = (real / "misc/tree_alpha_16bit.png").read_bytes()
    (folder / "cut16.png").write_bytes(png16[:-12])  # libpng: "PNG input buffer is incomplete"
    flipped = bytearray(png16)
    flipped[png16.index(b"IDAT") + 1000] ^= 0xFF  # libpng: "IDAT: CRC error", or a bad filter value
    (folder / "crc16.png").write_bytes(bytes(flipped))
    iccp = _png_chunk(b"iCCP", b"bad\0\0" + zlib.compress(b"x" * 200))  # libpng: "iCCP: too short"
    (folder / "iccp16.png").write_bytes(png16[:33] + iccp + png16[33:])
    blake = Image.open(real / "gfpgan-whole/Blake_Lively.jpg").convert("RGB")
    lzw = io.BytesIO()
    blake.save(lzw, "TIFF", compression="tiff_lzw")  # its directory comes last: Pillow warns "Corrupt EXIF"
    (folder / "cut.tif").write_bytes(lzw.getvalue()[: len(lzw.getvalue()) // 2])
    deep = io.BytesIO()
    tifffile.imwrite(deep, np.asarray(blake).astype(np.uint16) * 257, photometric="rgb")  # libtiff: errors
    (folder / "cut16.tif").write_bytes(deep.getvalue()[: len(deep.getvalue()) // 2])
    # Restorable, yet libtiff warns about the alpha channel OpenCV itself writes, and Pillow about the EXIF.
    (folder / "alpha16.tif").write_bytes(encode_image(load_image(real / "misc/tree_alpha_16bit.png"), "TIFF"))
    exif = Image.Exif()
    exif[0x010F] = "TestCam" * 10
    raw = exif.tobytes()
    make = raw.index(b"\x01\x0f\x00\x02")
    blake.save(folder / "exif.jpg", exif=raw[: make + 4] + struct.pack(">I", 4096) + raw[make + 8 :])
    return ["crc16.png", "cut.tif", "cut16.png", "cut16.tif"]


def test_each_failure_is_one_line_on_stderr(
    capfd: pytest.CaptureFixture[str],
    recwarn: pytest.WarningsRecorder,
    shared_dir: Path,
    tmp_path: Path,
    quick_model: list[str],
) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    failing = _files_libraries_complain_about(shared_dir / "data/real", folder)
    capfd.readouterr()
    code = main(["-q", "restore", str(folder), "-o", str(tmp_path / "out"), *FAST, *quick_model])
    lines = capfd.readouterr().err.splitlines()
    assert code == 1
    assert [line.split(": ")[1] for line in lines if line.startswith("error:")] == [
        str(folder / name) for name in failing
    ]
    assert len(lines) == 1 + len(failing) + 1, lines  # the licence note, the failures, the summary
    assert lines[0].startswith("note:") and lines[-1].startswith("3 of 7 inputs restored")
    assert [str(w.message) for w in recwarn if "PIL" in w.filename] == []


def test_folders_give_the_formats_decoding_promises(tmp_path: Path) -> None:
    promised = ["a.JPG", "b.jpeg", "c.png", "d.webp", "e.tif", "f.TIFF", "g.bmp", "h.heic", "i.heif"]
    for name in [*promised, "j.gif", "k.ico", "l.ppm", "m.tga", "n.eps", "o.avif", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [file.name for file, _ in batch.expand_inputs([str(tmp_path)])] == promised


def test_outputs_and_inputs_are_never_overwritten(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path, quick_model: list[str]
) -> None:
    fast = [*FAST, *quick_model]
    source = tmp_path / "photo.jpg"
    shutil.copy(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg", source)
    original = source.read_bytes()
    code, _, err = run(capsys, "restore", str(source), "-o", str(tmp_path), "--overwrite", *fast)
    assert code == 1 and "replace the input" in err and source.read_bytes() == original
    out = tmp_path / "out"
    assert run(capsys, "restore", str(source), "-o", str(out), *fast)[0] == 0
    first = (out / "photo.jpg").stat().st_mtime_ns
    code, _, err = run(capsys, "restore", str(source), "-o", str(out), *fast)
    assert (
        code == 1
        and "exists (set --overwrite to replace it)" in err
        and (out / "photo.jpg").stat().st_mtime_ns == first
    )
    assert run(capsys, "restore", str(source), "-o", str(out), "--overwrite", *fast)[0] == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files left behind"


def test_extras_faces_and_comparison(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path, quick_model: list[str]
) -> None:
    restore_one(
        capsys,
        shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg",
        tmp_path,
        "--save-faces",
        "--compare",
        *quick_model,
    )
    crops = sorted(p.name for p in (tmp_path / "faces").iterdir())
    assert crops == [
        "Blake_Lively_face00_after.png",
        "Blake_Lively_face00_before.png",
        "Blake_Lively_face01_after.png",
        "Blake_Lively_face01_before.png",
    ]
    comparison = Image.open(tmp_path / "compare" / "Blake_Lively_compare.jpg")
    assert comparison.height == 928 and comparison.width > 2 * 1400


def test_detect_json(capsys: pytest.CaptureFixture[str], shared_dir: Path) -> None:
    code, out, _ = run(capsys, "detect", str(shared_dir / "data/real/gfpgan-whole/00.jpg"), "--json")
    assert code == 0
    [record] = json.loads(out)
    assert record["size"] == [1297, 1920] and len(record["faces"]) == 2
    assert set(record["faces"][0]["landmarks"]) == {
        "left_eye",
        "right_eye",
        "nose",
        "mouth_left",
        "mouth_right",
    }


def test_models_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and rows["realesrgan-x4plus"]["installed"] and rows["retinaface"]["installed"]
    assert rows["codeformer"]["commercial_use"] is False and rows["gfpgan-1.4"]["verification"]["sha256"]
    code, out, _ = run(capsys, "models", "list")
    assert "non-commercial" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scale", "0"], "scale"),
        (["--scale", "9"], "scale"),
        (["--fidelity", "7"], "fidelity"),
        (["--face-model", "nope"], "unknown face model"),
        (["--face-model", "gfpgan-1.4", "--model-path", "/nonexistent.onnx"], "no such file"),
    ],
)
def test_bad_options_are_one_line(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = run(
        capsys, "restore", str(shared_dir / "data/real/misc/00017_gray.png"), "-o", str(tmp_path), *args
    )
    assert code == 1 and message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 2
