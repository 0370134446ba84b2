"""image_io on real photos: formats, bit depths, gray, orientation, metadata, bad input, atomic saves."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from facerestore.errors import ImageError
from facerestore.image_io import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    Picture,
    decode_image,
    encode_image,
    format_for_path,
    load_image,
    picture_from_array,
    save_image,
)

ORIENTATION = 0x0112
# How to store an upright image so that a viewer applying EXIF orientation N shows it upright.
STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
HEIF_WRITABLE = "HEIF" in Image.SAVE or "HEIF" in Image.registered_extensions().values()


@pytest.fixture(scope="module")
def real(shared_dir: Path) -> Path:
    return shared_dir / "data" / "real"


@pytest.fixture(scope="module")
def blake_path(real: Path) -> Path:
    return real / "gfpgan-whole" / "Blake_Lively.jpg"


@pytest.fixture(scope="module")
def blake(blake_path: Path) -> Image.Image:
    with Image.open(blake_path) as img:
        return img.convert("RGB")


@pytest.fixture(scope="module")
def children(real: Path) -> Image.Image:
    with Image.open(real / "misc" / "children-alpha.png") as img:
        return img.convert("RGBA")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def pillow_bytes(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(width: int, height: int, bit_depth: int, color_type: int, rows: list[bytes]) -> bytes:
    """A PNG written byte by byte, for layouts Pillow cannot write (16-bit gray + alpha, huge sizes)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def with_exif_chunk(png: bytes, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    after_ihdr = 33
    return png[:after_ihdr] + png_chunk(b"eXIf", exif.tobytes()[6:]) + png[after_ihdr:]


def imdecode(data: bytes) -> np.ndarray:
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert array is not None
    return array


def imread(path: Path) -> np.ndarray:
    return imdecode(path.read_bytes())


def exif_orientation(exif: bytes | None) -> int | None:
    assert exif is not None
    parsed = Image.Exif()
    parsed.load(exif)
    return parsed.get(ORIENTATION)


def assert_one_line_error(excinfo: pytest.ExceptionInfo[ImageError], *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# ------------------------------------------------------------------------------------------- decoding


def test_jpeg_decodes_to_the_same_pixels_as_pillow(blake_path: Path, blake: Image.Image) -> None:
    picture = load_image(blake_path)
    assert picture.source_format == "JPEG"
    assert (picture.height, picture.width, picture.bit_depth) == (464, 700, 8)
    assert picture.pixels.shape == (464, 700, 3) and picture.pixels.flags.c_contiguous
    assert picture.alpha is None and not picture.is_gray
    assert np.array_equal(picture.pixels, np.asarray(blake))
    assert repr(picture) == "Picture(700x464 RGB 8-bit from JPEG)"


def test_content_is_sniffed_not_taken_from_the_extension(real: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "photo.jpg"
    disguised.write_bytes((real / "gfpgan-whole" / "10045.png").read_bytes())
    assert load_image(disguised).source_format == "PNG"


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_lossless_round_trip_is_exact(real: Path, fmt: str) -> None:
    picture = load_image(real / "gfpgan-whole" / "10045.png")
    again = decode_image(encode_image(picture, fmt))
    assert again.source_format == fmt
    assert np.array_equal(again.pixels, picture.pixels)


@pytest.mark.parametrize(
    "fmt",
    [
        "JPEG",
        "WEBP",
        pytest.param(
            "HEIF", marks=pytest.mark.skipif(not HEIF_WRITABLE, reason="pillow_heif cannot write HEIF here")
        ),
    ],
)
def test_lossy_round_trip_is_close(blake_path: Path, fmt: str) -> None:
    picture = load_image(blake_path)
    again = decode_image(encode_image(picture, fmt, quality=95))
    assert again.source_format == fmt
    assert psnr(again.pixels, picture.pixels) > 30


def test_lower_quality_gives_smaller_jpeg(blake_path: Path) -> None:
    picture = load_image(blake_path)
    assert len(encode_image(picture, "JPEG", quality=30)) < len(encode_image(picture, "JPEG", quality=95))


def test_16bit_rgba_png_keeps_16_bits_in_and_out(real: Path) -> None:
    path = real / "misc" / "tree_alpha_16bit.png"
    reference = imread(path)
    picture = load_image(path)
    assert picture.bit_depth == 16 and picture.pixels.dtype == np.uint16
    assert picture.alpha is not None and picture.alpha.dtype == np.uint16
    assert np.array_equal(picture.pixels, reference[..., 2::-1])  # BGR(A) -> RGB
    assert np.array_equal(picture.alpha, reference[..., 3])
    assert np.any(picture.pixels % 257 != 0), "the low byte carries information, so 8 bits would lose it"

    written = imdecode(encode_image(picture, "PNG"))
    assert written.dtype == np.uint16 and written.shape == (*picture.pixels.shape[:2], 4)
    assert np.array_equal(written, reference)


def test_16bit_png_keeps_its_icc_profile(real: Path) -> None:
    picture = load_image(real / "misc" / "tree_alpha_16bit.png")
    assert picture.icc_profile is not None
    with Image.open(io.BytesIO(encode_image(picture, "PNG"))) as written:
        assert written.info.get("icc_profile") == picture.icc_profile


def test_16bit_png_decodes_the_same_despite_metadata_libpng_rejects(real: Path) -> None:
    path = real / "misc" / "tree_alpha_16bit.png"
    png = path.read_bytes()
    broken_profile = png_chunk(b"iCCP", b"bad\0\0" + zlib.compress(b"x" * 200))
    picture, reference = decode_image(png[:33] + broken_profile + png[33:]), load_image(path)
    assert picture.alpha is not None and reference.alpha is not None
    assert np.array_equal(picture.pixels, reference.pixels) and np.array_equal(picture.alpha, reference.alpha)


def test_16bit_tiff_round_trip_is_exact(real: Path) -> None:
    picture = load_image(real / "misc" / "tree_alpha_16bit.png")
    again = decode_image(encode_image(picture, "TIFF"))
    assert again.pixels.dtype == np.uint16
    assert np.array_equal(again.pixels, picture.pixels)
    assert again.alpha is not None and picture.alpha is not None
    assert np.array_equal(again.alpha, picture.alpha)


@pytest.mark.parametrize(("fmt", "min_psnr"), [("BMP", float("inf")), ("JPEG", 25), ("WEBP", 25)])
def test_16bit_goes_down_to_8_bits_where_the_format_has_no_more(
    real: Path, fmt: str, min_psnr: float
) -> None:
    picture = load_image(real / "misc" / "tree_alpha_16bit.png")
    assert picture.alpha is not None
    again = decode_image(encode_image(picture, fmt))
    assert again.pixels.dtype == np.uint8
    expected = np.rint(picture.pixels / 257.0).astype(np.uint8)
    # Only the leaves: the rest is transparent, where lossy WebP may change the colour.
    visible = picture.alpha > 0
    assert psnr(again.pixels[visible], expected[visible]) >= min_psnr


def test_16_to_8_bit_rounds_to_nearest() -> None:
    values = np.array([0, 128, 129, 257, 385, 386, 65406, 65535], dtype=np.uint16)
    array = np.repeat(values[None, :, None], 3, axis=2)
    again = decode_image(encode_image(picture_from_array(array), "BMP"))
    assert again.pixels[0, :, 0].tolist() == [0, 0, 1, 1, 1, 2, 254, 255]


def test_rgba_png_keeps_alpha(real: Path, children: Image.Image) -> None:
    picture = load_image(real / "misc" / "children-alpha.png")
    expected = np.asarray(children)
    assert picture.alpha is not None and picture.alpha.min() < 255
    assert np.array_equal(picture.pixels, expected[..., :3])
    assert np.array_equal(picture.alpha, expected[..., 3])
    for fmt in ("PNG", "TIFF"):
        again = decode_image(encode_image(picture, fmt))
        assert again.alpha is not None and np.array_equal(again.alpha, picture.alpha), fmt
    webp = decode_image(encode_image(picture, "WEBP"))
    assert webp.alpha is not None and np.abs(webp.alpha.astype(int) - picture.alpha).max() <= 2


@pytest.mark.parametrize("fmt", ["JPEG", "BMP"])
def test_formats_without_alpha_drop_it(real: Path, fmt: str) -> None:
    picture = load_image(real / "misc" / "children-alpha.png")
    again = decode_image(encode_image(picture, fmt))
    assert again.alpha is None
    assert psnr(again.pixels, picture.pixels) > 30  # the colour is kept, not composited


def test_gray_png_decodes_as_gray_and_is_written_gray(real: Path) -> None:
    path = real / "misc" / "00017_gray.png"
    with Image.open(path) as img:
        assert img.mode == "L"
        expected = np.asarray(img)
    picture = load_image(path)
    assert picture.is_gray and picture.alpha is None
    assert all(np.array_equal(picture.pixels[..., c], expected) for c in range(3))
    for fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        data = encode_image(picture, fmt)
        with Image.open(io.BytesIO(data)) as written:
            assert written.mode == "L", fmt
        again = decode_image(data)
        assert again.is_gray, fmt
        assert psnr(again.pixels, picture.pixels) > 35, fmt


def test_codeformer_gray_faces_are_rgb_files(real: Path) -> None:
    """The "gray" CodeFormer inputs are RGB(A) files; some have equal channels, others a slight tint."""
    pictures = [load_image(path) for path in sorted((real / "codeformer-gray").glob("*.png"))]
    assert len(pictures) == 13
    assert not any(picture.is_gray for picture in pictures)
    equal = [np.ptp(p.pixels.astype(int), axis=2).max() == 0 for p in pictures]
    assert any(equal) and not all(equal)
    assert sum(picture.alpha is not None for picture in pictures) == 1  # Einstein02.png is RGBA


def test_gray_with_alpha_png(real: Path) -> None:
    with Image.open(real / "misc" / "00017_gray.png") as img:
        gray = np.asarray(img)
    alpha = np.tile(np.linspace(0, 255, gray.shape[1]).astype(np.uint8), (gray.shape[0], 1))
    data = pillow_bytes(Image.fromarray(np.dstack([gray, alpha])), "PNG")
    picture = decode_image(data)
    assert picture.is_gray
    assert picture.alpha is not None and np.array_equal(picture.alpha, alpha)
    with Image.open(io.BytesIO(encode_image(picture, "PNG"))) as written:
        assert written.mode == "LA"
        assert np.array_equal(np.asarray(written)[..., 1], alpha)


def test_16bit_gray_png_stays_16bit_gray(real: Path) -> None:
    with Image.open(real / "misc" / "00017_gray.png") as img:
        gray = np.asarray(img).astype(np.uint16) * 257 + 100
    picture = decode_image(pillow_bytes(Image.fromarray(gray), "PNG"))
    assert picture.is_gray and picture.pixels.dtype == np.uint16
    assert np.array_equal(picture.pixels[..., 1], gray)
    for fmt in ("PNG", "TIFF"):
        written = imdecode(encode_image(picture, fmt))
        assert written.dtype == np.uint16 and written.ndim == 2, fmt
        assert np.array_equal(written, gray), fmt


def test_16bit_gray_with_alpha_png_from_its_bytes() -> None:
    rng = np.random.default_rng(1)
    samples = rng.integers(0, 65536, size=(6, 9, 2), dtype=np.uint16)
    data = handmade_png(9, 6, 16, 4, [row.astype(">u2").tobytes() for row in samples])
    picture = decode_image(data)
    assert picture.is_gray and picture.pixels.dtype == np.uint16
    assert np.array_equal(picture.pixels[..., 0], samples[..., 0])
    assert picture.alpha is not None and np.array_equal(picture.alpha, samples[..., 1])
    written = imdecode(encode_image(picture, "PNG"))
    assert written.dtype == np.uint16 and np.array_equal(written[..., 3], samples[..., 1])


def test_one_bit_png_decodes_as_gray(real: Path) -> None:
    with Image.open(real / "misc" / "00017_gray.png") as img:
        bilevel = img.convert("1")
    picture = decode_image(pillow_bytes(bilevel, "PNG"))
    assert picture.is_gray and picture.pixels.dtype == np.uint8
    assert set(np.unique(picture.pixels).tolist()) == {0, 255}
    assert np.array_equal(picture.pixels[..., 0], np.asarray(bilevel.convert("L")))


def test_palette_png_with_transparency_gets_alpha(blake: Image.Image) -> None:
    palette = blake.quantize(64)
    palette.info["transparency"] = 0
    picture = decode_image(pillow_bytes(palette, "PNG", transparency=0))
    expected = np.asarray(palette.convert("RGBA"))
    assert picture.alpha is not None and not picture.is_gray
    assert np.array_equal(picture.alpha, expected[..., 3])
    assert (picture.alpha == 0).any() and (picture.alpha == 255).any()
    assert np.array_equal(picture.pixels, expected[..., :3])


def test_palette_png_without_transparency_is_rgb(blake: Image.Image) -> None:
    palette = blake.quantize(64)
    picture = decode_image(pillow_bytes(palette, "PNG"))
    assert picture.alpha is None
    assert np.array_equal(picture.pixels, np.asarray(palette.convert("RGB")))


def test_cmyk_jpeg_decodes_to_rgb(blake: Image.Image) -> None:
    data = pillow_bytes(blake.convert("CMYK"), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "CMYK"
    picture = decode_image(data)
    assert picture.pixels.shape == (blake.height, blake.width, 3)
    assert psnr(picture.pixels, np.asarray(blake)) > 30


# ---------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_comes_out_upright(blake: Image.Image, orientation: int) -> None:
    stored = blake.transpose(STORE_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "TestCam"  # Make: must survive the orientation reset
    picture = decode_image(pillow_bytes(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert picture.pixels.shape == (blake.height, blake.width, 3)
    assert psnr(picture.pixels, np.asarray(blake)) > 30
    assert exif_orientation(picture.exif) == 1

    with Image.open(io.BytesIO(encode_image(picture, "JPEG"))) as written:
        assert written.getexif().get(ORIENTATION) == 1
        assert written.getexif().get(0x010F) == "TestCam"
        assert written.size == blake.size


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_turns_pixels_and_alpha_upright(children: Image.Image, orientation: int) -> None:
    stored = children if orientation == 1 else children.transpose(STORE_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    picture = decode_image(pillow_bytes(stored, "PNG", exif=exif.tobytes()))
    expected = np.asarray(children)
    assert np.array_equal(picture.pixels, expected[..., :3])
    assert picture.alpha is not None and np.array_equal(picture.alpha, expected[..., 3])
    assert exif_orientation(picture.exif) == 1


def test_orientation_applies_to_16bit_pixels(real: Path) -> None:
    reference = imread(real / "misc" / "tree_alpha_16bit.png")
    stored = np.ascontiguousarray(np.rot90(reference, 1))  # what orientation 6 turns clockwise
    png = cv2.imencode(".png", stored)[1].tobytes()
    picture = decode_image(with_exif_chunk(png, 6))
    assert picture.pixels.dtype == np.uint16
    assert np.array_equal(picture.pixels, reference[..., 2::-1])
    assert picture.alpha is not None and np.array_equal(picture.alpha, reference[..., 3])
    with Image.open(io.BytesIO(encode_image(picture, "PNG"))) as written:
        assert written.getexif().get(ORIENTATION) == 1


@pytest.mark.skipif(not HEIF_WRITABLE, reason="pillow_heif cannot write HEIF here")
def test_heif_decodes_upright(blake: Image.Image) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    data = pillow_bytes(blake.transpose(Image.Transpose.ROTATE_90), "HEIF", quality=95, exif=exif.tobytes())
    picture = decode_image(data)
    assert picture.source_format == "HEIF"
    assert psnr(picture.pixels, np.asarray(blake)) > 30


# ------------------------------------------------------------------------------------------- metadata


@pytest.fixture(scope="module")
def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_icc_profile_and_exif_are_carried_through(blake: Image.Image, srgb_profile: bytes, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    picture = decode_image(pillow_bytes(blake, "PNG", icc_profile=srgb_profile, exif=exif.tobytes()))
    assert picture.icc_profile == srgb_profile
    with Image.open(io.BytesIO(encode_image(picture, fmt))) as written:
        assert written.info.get("icc_profile") == srgb_profile
        assert written.getexif().get(0x010F) == "TestCam"


def test_rgb_profile_is_not_attached_to_gray_output(real: Path, srgb_profile: bytes) -> None:
    picture = load_image(real / "misc" / "00017_gray.png")
    picture = Picture(picture.pixels, None, True, "PNG", srgb_profile, None)
    with Image.open(io.BytesIO(encode_image(picture, "PNG"))) as written:
        assert written.mode == "L" and "icc_profile" not in written.info


def test_real_jpeg_exif_is_kept(real: Path) -> None:
    picture = load_image(real / "portraits" / "paul_rudd.jpg")
    assert picture.exif is not None and picture.icc_profile is not None
    with Image.open(real / "portraits" / "paul_rudd.jpg") as img:
        assert picture.exif == img.info["exif"]


# ------------------------------------------------------------------------------------------ bad input


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as excinfo:
        load_image(empty)
    assert_one_line_error(excinfo, str(empty), "empty file")


@pytest.mark.parametrize(
    "source", ["gfpgan-whole/Blake_Lively.jpg", "gfpgan-whole/10045.png", "misc/tree_alpha_16bit.png"]
)
def test_truncated_file(real: Path, tmp_path: Path, source: str) -> None:
    data = (real / source).read_bytes()
    cut = tmp_path / ("cut" + Path(source).suffix)
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as excinfo:
        load_image(cut)
    assert_one_line_error(excinfo, str(cut), "truncated")


def test_damaged_header_is_called_truncated_not_unsupported(blake: Image.Image) -> None:
    tiff = pillow_bytes(blake, "TIFF", compression="tiff_lzw")  # libtiff writes the directory last
    with pytest.raises(ImageError) as excinfo:
        decode_image(tiff[: len(tiff) // 2], name="cut.tif")
    assert_one_line_error(
        excinfo, "cut.tif: cannot read this TIFF: truncated, corrupt or an unsupported variant"
    )


def test_text_file_named_jpg(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n")
    with pytest.raises(ImageError) as excinfo:
        load_image(text)
    assert_one_line_error(excinfo, str(text), "not a supported image")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    with pytest.raises(ImageError) as excinfo:
        load_image(folder)
    assert_one_line_error(excinfo, str(folder), "directory")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as excinfo:
        load_image(tmp_path / "nowhere.png")
    assert_one_line_error(excinfo, "nowhere.png", "no such file")


def test_pixel_limit_is_checked_per_call(real: Path) -> None:
    path = real / "gfpgan-whole" / "10045.png"
    with pytest.raises(ImageError) as excinfo:
        load_image(path, max_pixels=100)
    assert_one_line_error(excinfo, str(path), "783x1146", "exceeds the limit", "raise it with max_pixels")
    assert load_image(path, max_pixels=783 * 1146).width == 783


@pytest.fixture(scope="module")
def declared_huge_png() -> bytes:
    """A valid 20000 x 20000 1-bit PNG (50 kB), as a decompression bomb would be."""
    row = bytes(20000 // 8)
    return handmade_png(20000, 20000, 1, 0, [row] * 20000)


def test_pixel_bomb_is_refused_from_the_header(declared_huge_png: bytes) -> None:
    assert struct.unpack(">II", declared_huge_png[16:24]) == (20000, 20000)
    with pytest.raises(Image.DecompressionBombError):  # Pillow itself recognises it as a valid PNG
        Image.open(io.BytesIO(declared_huge_png))
    with pytest.raises(ImageError) as excinfo:
        decode_image(declared_huge_png, name="bomb.png")
    assert_one_line_error(excinfo, "bomb.png: 20000x20000 = 400 megapixels", "limit of 100 megapixels")
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_our_limit_overrides_pillows_process_wide_one(real: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    picture = load_image(real / "gfpgan-whole" / "Blake_Lively.jpg")
    assert picture.width == 700
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(ImageError) as excinfo:
        load_image(real / "gfpgan-whole" / "Blake_Lively.jpg", max_pixels=1000)
    assert_one_line_error(excinfo, "700x464", "exceeds the limit")


# ----------------------------------------------------------------------------------- promised formats

SUPPORTED_LIST = "(supported: JPEG, PNG, WebP, TIFF, BMP, HEIC)"


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "GIF", "PCX", "JPEG2000", "QOI", "AVIF", "EPS"])
def test_formats_pillow_reads_but_we_do_not_promise_are_refused(blake: Image.Image, fmt: str) -> None:
    data = pillow_bytes(blake.resize((128, 85)), fmt)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == fmt  # Pillow would decode it
    with pytest.raises(ImageError) as excinfo:
        decode_image(data, name="upload")
    assert str(excinfo.value) == f"upload: not a supported image {SUPPORTED_LIST}"


def test_opencv_only_ever_sees_png_or_tiff(
    real: Path, blake: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV picks its decoder by content too: it must never be the one that reads an unpromised format."""
    seen: list[bytes] = []
    imdecode = cv2.imdecode

    def spy(buffer: np.ndarray, flags: int) -> np.ndarray | None:
        seen.append(buffer.tobytes()[:8])
        return imdecode(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", spy)
    sixteen_bit = np.asarray(blake).astype(np.uint16) * 257
    ppm = b"P6 700 464 65535\n" + sixteen_bit.astype(">u2").tobytes()
    with pytest.raises(ImageError):
        decode_image(ppm)
    load_image(real / "misc" / "tree_alpha_16bit.png")
    decode_image(encode_image(load_image(real / "misc" / "tree_alpha_16bit.png"), "TIFF"))
    assert seen and all(head.startswith((b"\x89PNG", b"II*\x00", b"MM\x00*")) for head in seen)


# ------------------------------------------------------------------- sample types, colour spaces, frames


def tiff_bytes(samples: np.ndarray, **options: object) -> bytes:
    """A TIFF as tifffile writes it: float, planar, CMYK and other layouts that Pillow cannot write."""
    colour = samples.ndim >= 3 and samples.shape[-1] in (3, 4)
    options.setdefault("photometric", "rgb" if colour else "minisblack")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, samples, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def blake_unit(blake: Image.Image) -> np.ndarray:
    """Blake's pixels as float32 from 0 to 1, the way float TIFFs hold them."""
    return np.asarray(blake).astype(np.float32) / 255


def test_float_gray_tiff_becomes_16_bit_gray(blake: Image.Image) -> None:
    gray = np.asarray(blake.convert("L"))
    picture = decode_image(pillow_bytes(Image.fromarray(gray.astype(np.float32) / 255), "TIFF"))
    assert picture.is_gray and picture.pixels.dtype == np.uint16
    assert np.array_equal(picture.pixels[..., 0], gray.astype(np.uint16) * 257)


def test_float_rgba_tiff_becomes_16_bit_rgba(blake: Image.Image, blake_unit: np.ndarray) -> None:
    alpha = np.tile(np.linspace(0, 1, blake.width, dtype=np.float32), (blake.height, 1))
    picture = decode_image(tiff_bytes(np.dstack([blake_unit, alpha])))
    assert not picture.is_gray and picture.pixels.dtype == np.uint16
    assert np.array_equal(picture.pixels, np.asarray(blake).astype(np.uint16) * 257)
    assert picture.alpha is not None and np.array_equal(picture.alpha, np.rint(alpha * 65535))


def test_float_tiff_is_turned_upright_and_keeps_its_profile(
    blake: Image.Image, blake_unit: np.ndarray, srgb_profile: bytes
) -> None:
    stored = np.ascontiguousarray(np.rot90(blake_unit, 1))  # what orientation 6 turns clockwise
    picture = decode_image(tiff_bytes(stored, iccprofile=srgb_profile, extratags=[(274, "H", 1, 6, True)]))
    assert np.array_equal(picture.pixels, np.asarray(blake).astype(np.uint16) * 257)
    assert picture.icc_profile == srgb_profile


@pytest.mark.parametrize("orientation", [3, 6, 7])
def test_16_bit_tiff_is_turned_upright_once(blake: Image.Image, orientation: int) -> None:
    upright = np.asarray(blake).astype(np.uint16) * 257 + 100  # the low byte carries information
    stored = np.asarray(
        Image.fromarray(upright[..., 0]).transpose(STORE_FOR_ORIENTATION[orientation])
    )  # one channel shows the turn as well as three
    tags = [(274, "H", 1, orientation, True)]
    for big in (False, True):
        picture = decode_image(tiff_bytes(stored, extratags=tags, bigtiff=big))
        assert np.array_equal(picture.pixels[..., 0], upright[..., 0]), (orientation, big)


@pytest.mark.parametrize(("offset", "scale", "shown"), [(0, 4, "from 0 to 4"), (-0.5, 1, "from -0.5 to 0.5")])
def test_float_tiff_outside_0_to_1_is_refused(
    blake_unit: np.ndarray, offset: float, scale: float, shown: str
) -> None:
    with pytest.raises(ImageError) as excinfo:
        decode_image(tiff_bytes((blake_unit + offset) * scale), name="hdr.tif")
    assert_one_line_error(excinfo, f"hdr.tif: floating-point samples run {shown}", "only 0 to 1")


@pytest.mark.parametrize(
    ("samples", "fragment"),
    [
        (np.uint32, "32-bit unsigned integer samples are not supported"),
        (np.int32, "32-bit signed integer samples are not supported"),
        (np.int16, "16-bit signed integer samples are not supported"),
        (np.float16, "16-bit floating-point samples are not supported"),
    ],
)
def test_tiff_sample_types_without_a_faithful_reading_are_refused(
    blake: Image.Image, samples: type, fragment: str
) -> None:
    gray = np.asarray(blake.convert("L")).astype(samples)
    with pytest.raises(ImageError) as excinfo:
        decode_image(tiff_bytes(gray), name="odd.tif")
    assert_one_line_error(excinfo, f"odd.tif: {fragment}")


@pytest.mark.parametrize("samples", [np.uint16, np.float32])
def test_deep_tiff_in_separate_planes_is_refused(blake: Image.Image, samples: type) -> None:
    """Pillow and OpenCV both shuffle such samples: refuse rather than return the wrong picture."""
    planes = np.moveaxis(np.asarray(blake), 2, 0).astype(samples) / (255 if samples == np.float32 else 1)
    with pytest.raises(ImageError) as excinfo:
        decode_image(tiff_bytes(planes, photometric="rgb", planarconfig="separate"), name="planes.tif")
    assert_one_line_error(excinfo, "planes.tif: ", "separate planes")


def test_8_bit_tiff_in_separate_planes_is_read(blake: Image.Image) -> None:
    planes = np.moveaxis(np.asarray(blake), 2, 0)
    picture = decode_image(tiff_bytes(planes, photometric="rgb", planarconfig="separate"))
    assert np.array_equal(picture.pixels, np.asarray(blake))


def test_cielab_tiff_is_converted_to_rgb(blake: Image.Image) -> None:
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = to_lab.apply(blake)
    data = pillow_bytes(lab, "TIFF")
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "LAB"
    picture = decode_image(data)
    assert picture.alpha is None and not picture.is_gray
    assert psnr(picture.pixels, np.asarray(blake)) > 35


def test_16_bit_cmyk_tiff_is_converted_to_rgb(blake: Image.Image) -> None:
    cmyk = blake.convert("CMYK")
    picture = decode_image(tiff_bytes(np.asarray(cmyk).astype(np.uint16) * 257, photometric="separated"))
    assert picture.alpha is None and picture.pixels.dtype == np.uint8
    assert np.array_equal(picture.pixels, np.asarray(cmyk.convert("RGB")))


@pytest.mark.parametrize(
    ("fmt", "unit"),
    [
        ("WEBP", "frame"),
        ("PNG", "frame"),
        ("TIFF", "page"),
        pytest.param(
            "HEIF",
            "frame",
            marks=pytest.mark.skipif(not HEIF_WRITABLE, reason="pillow_heif cannot write HEIF"),
        ),
    ],
)
def test_animations_and_multi_page_files_are_refused(blake: Image.Image, fmt: str, unit: str) -> None:
    frames = [blake.rotate(angle) for angle in (0, 10, 20)]
    data = pillow_bytes(frames[0], fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError) as excinfo:
        decode_image(data, name="clip")
    expected = f"clip: has 3 {unit}s; facerestore restores still images: extract a {unit} first"
    assert str(excinfo.value) == expected


def test_multi_page_float_tiff_is_refused(blake_unit: np.ndarray) -> None:
    with pytest.raises(ImageError) as excinfo:
        decode_image(tiff_bytes(np.stack([blake_unit, blake_unit])), name="pages.tif")
    assert_one_line_error(excinfo, "pages.tif: has 2 pages; facerestore restores still images")


def test_mpo_is_a_jpeg_whose_first_picture_is_the_photo(blake: Image.Image) -> None:
    """Cameras store previews (or a stereo partner) after the photo: such a JPEG is no animation."""
    data = pillow_bytes(blake, "MPO", save_all=True, append_images=[blake.resize((160, 106))])
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "MPO" and getattr(img, "n_frames", 1) == 2
    picture = decode_image(data)
    assert picture.source_format == "JPEG" and (picture.width, picture.height) == (700, 464)


# --------------------------------------------------------------------------------------------- saving


def test_save_writes_by_extension_and_refuses_to_overwrite(real: Path, tmp_path: Path) -> None:
    source = real / "gfpgan-whole" / "10045.png"
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    picture = load_image(source)
    target = tmp_path / "new" / "deeper" / "out.png"
    assert save_image(picture, target) == target
    assert np.array_equal(load_image(target).pixels, picture.pixels)

    first = target.read_bytes()
    with pytest.raises(ImageError) as excinfo:
        save_image(picture.with_pixels(picture.pixels[::-1], None), target)
    assert_one_line_error(excinfo, "out.png exists (set overwrite to replace it)")
    assert target.read_bytes() == first

    save_image(picture.with_pixels(picture.pixels[::-1], None), target, overwrite=True)
    assert np.array_equal(load_image(target).pixels, picture.pixels[::-1])
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


def test_saved_file_has_ordinary_permissions(blake_path: Path, tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    target = save_image(load_image(blake_path), tmp_path / "out.jpg")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert load_image(target).source_format == "JPEG"


def test_failed_write_leaves_nothing_behind(
    blake_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ImageError) as excinfo:
        save_image(load_image(blake_path), tmp_path / "out.webp")
    assert_one_line_error(excinfo, "out.webp", "No space left")
    assert list(tmp_path.iterdir()) == []


def test_unknown_extension(blake_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError) as excinfo:
        save_image(load_image(blake_path), tmp_path / "out.gif")
    assert_one_line_error(excinfo, "out.gif", ".gif")
    assert list(tmp_path.iterdir()) == []


def test_format_for_path() -> None:
    assert format_for_path("a/B.JPG") == "JPEG"
    assert format_for_path(Path("x.tif")) == "TIFF"
    assert format_for_path("x.heic") == "HEIF"
    assert set(SUPPORTED_EXTENSIONS.values()) == {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "HEIF"}
    with pytest.raises(ImageError):
        format_for_path("noextension")


def test_encode_rejects_unknown_format(blake_path: Path) -> None:
    with pytest.raises(ImageError):
        encode_image(load_image(blake_path), "GIF")


# ------------------------------------------------------------------------------------------ arrays


def test_picture_from_array_shapes() -> None:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    picture = picture_from_array(rgba)
    assert not picture.is_gray and picture.source_format == "PNG"
    assert np.array_equal(picture.pixels, rgba[..., :3])
    assert picture.alpha is not None and np.array_equal(picture.alpha, rgba[..., 3])
    gray = picture_from_array(rng.integers(0, 65536, size=(5, 7), dtype=np.uint16))
    assert gray.is_gray and gray.bit_depth == 16 and gray.alpha is None
    assert gray.pixels.shape == (5, 7, 3)


def test_picture_from_array_copies_its_input() -> None:
    array = np.zeros((4, 4, 3), dtype=np.uint8)
    picture = picture_from_array(array)
    array[:] = 9
    assert picture.pixels.max() == 0


@pytest.mark.parametrize(
    "array", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 5), np.uint8), np.zeros(4, np.uint8)]
)
def test_picture_from_array_rejects_other_arrays(array: np.ndarray) -> None:
    with pytest.raises(ImageError):
        picture_from_array(array)


def test_with_pixels_keeps_metadata(real: Path) -> None:
    picture = load_image(real / "portraits" / "paul_rudd.jpg")
    bigger = np.ascontiguousarray(np.repeat(picture.pixels, 2, axis=0)[::-1])
    changed = picture.with_pixels(bigger, None)
    assert (changed.height, changed.width) == (2 * picture.height, picture.width)
    assert changed.exif == picture.exif and changed.icc_profile == picture.icc_profile
    assert changed.source_format == "JPEG" and not changed.is_gray
    with pytest.raises(ValueError):
        picture.with_pixels(picture.pixels[..., 0], None)
    with pytest.raises(ValueError):
        picture.with_pixels(picture.pixels, np.zeros((2, 2), np.uint8))
