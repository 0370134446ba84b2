"""Read and write pictures: every supported format in, upright RGB(A) arrays out, metadata kept.

Decoding trusts the file's content, never its extension. Every failure becomes an ImageError whose
one-line message names the input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from PIL import Image, ImageCms, TiffImagePlugin, UnidentifiedImageError

from facerestore.errors import ImageError, ImageTooLargeError, OptionError, option
from facerestore.files import write_atomically


def _register_heif() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


_HEIF_AVAILABLE = _register_heif()

DEFAULT_MAX_PIXELS = 100_000_000
T = TypeVar("T")

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".heic": "HEIF",
    ".heif": "HEIF",
}

# Decoding promises what folder expansion looks for (README's Inputs line), even where Pillow reads more.
_DECODABLE = tuple(
    fmt for fmt in dict.fromkeys(SUPPORTED_EXTENSIONS.values()) if fmt != "HEIF" or _HEIF_AVAILABLE
)
_DISPLAY_NAMES = {"WEBP": "WebP", "HEIF": "HEIC"}
_ENCODABLE = ("JPEG", "PNG", "WEBP", "TIFF", "BMP") + (("HEIF",) if _HEIF_AVAILABLE else ())
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF"}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "HEIF"}
_GRAY_FORMATS = {"JPEG", "PNG", "TIFF", "BMP", "HEIF"}  # WebP has no gray mode
_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
_METADATA_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "HEIF"}
_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_TIFF_SAMPLE_KINDS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point"}
_EXIF_PREFIX = b"Exif\x00\x00"

# Pillow's bomb check is process-wide; this lock serialises the rare decodes that lift it.
_PILLOW_LIMIT_LOCK = threading.Lock()
# So is OpenCV's log level, which our OpenCV decodes lower for their duration.
_OPENCV_LOG_LOCK = threading.Lock()


# eq=False: field-wise == and hash() would compare numpy arrays, which is ambiguous or unhashable.
@dataclass(frozen=True, eq=False)
class Picture:
    """An upright image: H x W x 3 RGB pixels (uint8 or uint16), optional alpha, and its metadata."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    is_gray: bool = False
    source_format: str = "PNG"
    icc_profile: bytes | None = None
    exif: bytes | None = None
    jpeg_tables: tuple[tuple[int, ...], ...] | None = None  # a JPEG file's quantization tables, natural order

    def __post_init__(self) -> None:
        pixels, alpha = self.pixels, self.alpha
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"pixels must be H x W x 3 uint8 or uint16, got {pixels.shape} {pixels.dtype}")
        if alpha is not None and (alpha.shape != pixels.shape[:2] or alpha.dtype != pixels.dtype):
            raise ValueError(f"alpha must be H x W {pixels.dtype}, got {alpha.shape} {alpha.dtype}")
        # Frozen, yet callers may hand in views (flips, crops): store C-contiguous arrays as promised.
        object.__setattr__(self, "pixels", np.ascontiguousarray(pixels))
        if alpha is not None:
            object.__setattr__(self, "alpha", np.ascontiguousarray(alpha))

    def __repr__(self) -> str:
        kind = ("gray" if self.is_gray else "RGB") + ("+alpha" if self.alpha is not None else "")
        return f"Picture({self.width}x{self.height} {kind} {self.bit_depth}-bit from {self.source_format})"

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    def with_pixels(self, pixels: np.ndarray, alpha: np.ndarray | None) -> Picture:
        """The same picture (format, gray flag, ICC, EXIF) with new pixel arrays."""
        return dataclasses.replace(self, pixels=pixels, alpha=alpha)


# ---------------------------------------------------------------------------------------------- reading


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, max_pixels=max_pixels, name=str(path))


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> Picture:
    return _with_pillow(data, name, lambda: _decode(data, max_pixels, name))


def declared_size(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
) -> tuple[int, int]:
    """Width and height as the file's header declares them (as stored, before EXIF rotation), read without
    decoding any pixels: the errors of ``decode_image`` for an unreadable header or too many pixels."""

    def read_header() -> tuple[int, int]:
        with _open_promised(data, name) as img:
            _check_pixel_count(img.size, max_pixels, name)
            return img.size

    return _with_pillow(data, name, read_header)


def _with_pillow(data: bytes, name: str, read: Callable[[], T]) -> T:
    """``read()`` under our pixel limit instead of Pillow's, its failures as one-line ImageErrors."""
    if not data:
        raise ImageError(f"{name}: empty file")
    with _decoding_errors(name):
        try:
            with warnings.catch_warnings():
                # Pillow warns about damage it works around (corrupt EXIF, odd tags) and about sizes our
                # max_pixels decides on: each file ends in a picture or one ImageError, so a warning would
                # only be a stray line on stderr.
                warnings.simplefilter("ignore")
                return read()
        except Image.DecompressionBombError:
            # Pillow's own cap refused the header; lift it so our check decides and reports the size.
            with _PILLOW_LIMIT_LOCK:
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    return read()
                finally:
                    Image.MAX_IMAGE_PIXELS = saved


def _decode(data: bytes, max_pixels: int, name: str) -> Picture:
    first_page = next(_tiff_pages(data), None) if data.startswith(_TIFF_SIGNATURES) else None
    if first_page is not None:
        _check_tiff_samples(first_page, name)
        if _tag_values(first_page, 339)[0] == 3:  # floats, which Pillow reads in gray only
            return _decode_float_tiff(data, first_page, max_pixels, name)
    with _open_promised(data, name) as img:
        _check_pixel_count(img.size, max_pixels, name)
        _check_still(img, name)
        if _is_16bit_gray_or_rgb(img, data):
            if first_page is None:
                for_opencv = _png_for_opencv(data, name)
            else:
                for_opencv = _tiff_orientation_reset(data, first_page)
            color, alpha = _opencv_planes(for_opencv, _header_says_gray(img, data), name)
        else:
            img.load()
            color, alpha = _pillow_planes(img)
        exif, orientation = _exif_and_orientation(img)
        # An MPO is a JPEG with more pictures after the photo (previews, a stereo partner).
        source_format = "JPEG" if img.format == "MPO" else img.format or "UNKNOWN"
        picture = _upright_picture(
            color, alpha, orientation, source_format, img.info.get("icc_profile"), exif
        )
        return dataclasses.replace(picture, jpeg_tables=_jpeg_tables(img))


def _jpeg_tables(img: Image.Image) -> tuple[tuple[int, ...], ...] | None:
    """The quantization tables (Pillow gives them in natural order) of a JPEG, in table-id order."""
    tables = getattr(img, "quantization", None)
    if img.format not in ("JPEG", "MPO") or not tables:
        return None
    return tuple(tuple(int(value) for value in tables[key]) for key in sorted(tables))


def _decode_float_tiff(
    data: bytes, page: TiffImagePlugin.ImageFileDirectory_v2, max_pixels: int, name: str
) -> Picture:
    """A float TIFF, decoded by OpenCV once its header has passed our checks."""
    _check_pixel_count((page.get(256, 0), page.get(257, 0)), max_pixels, name)
    pages = sum(1 for _ in _tiff_pages(data))
    if pages > 1:
        raise ImageError(_not_still(name, pages, "page"))
    color, alpha = _opencv_planes(_tiff_orientation_reset(data, page), page.get(262) in (0, 1), name)
    orientation = _valid_orientation(page.get(274, 1))
    return _upright_picture(color, alpha, orientation, "TIFF", page.get(34675), None)


def _upright_picture(
    color: np.ndarray,
    alpha: np.ndarray | None,
    orientation: int,
    source_format: str,
    icc_profile: object,
    exif: bytes | None,
) -> Picture:
    return Picture(
        pixels=_as_rgb(_orient(color, orientation)),
        alpha=None if alpha is None else _orient(alpha, orientation),
        is_gray=color.ndim == 2,
        source_format=source_format,
        icc_profile=_usable_icc(icc_profile),
        exif=exif,
    )


def _open_promised(data: bytes, name: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_DECODABLE)
    except UnidentifiedImageError:
        pass
    # Pillow's signature checks, without its parsing: a damaged TIFF is not "some other format".
    looks_like = [fmt for fmt in _DECODABLE if _has_signature(fmt, data)]
    if looks_like:
        what = _DISPLAY_NAMES.get(looks_like[0], looks_like[0])
        raise ImageError(f"{name}: cannot read this {what}: truncated, corrupt or an unsupported variant")
    supported = ", ".join(_DISPLAY_NAMES.get(fmt, fmt) for fmt in _DECODABLE)
    raise ImageError(f"{name}: not a supported image (supported: {supported})")


def _has_signature(fmt: str, data: bytes) -> bool:
    accept = Image.OPEN[fmt][1]
    return accept is not None and bool(accept(data[:16]))


@contextlib.contextmanager
def _decoding_errors(name: str) -> Iterator[None]:
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels to decode safely ({_one_line(exc)})") from None
    except (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error, cv2.error) as exc:
        raise ImageError(f"{name}: truncated or corrupt image ({_one_line(exc)})") from None


def _check_pixel_count(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height / 1e6:g} megapixels exceeds the limit of "
            f"{max_pixels / 1e6:g} megapixels (raise it with {option('max_pixels')})"
        )


def _tiff_pages(data: bytes) -> Iterator[TiffImagePlugin.ImageFileDirectory_v2]:
    """A TIFF's image directories, one a page, read as Pillow reads them (without decoding any pixels)."""
    header = data[:16] if data[2:3] == b"+" else data[:8]  # BigTIFF's header is longer
    stream = io.BytesIO(data)
    offset, seen = TiffImagePlugin.ImageFileDirectory_v2(header).next, set()
    while offset and offset not in seen:  # a damaged chain may loop
        seen.add(offset)
        page = TiffImagePlugin.ImageFileDirectory_v2(header)
        stream.seek(offset)
        page.load(stream)
        yield page
        offset = page.next


def _check_tiff_samples(page: TiffImagePlugin.ImageFileDirectory_v2, name: str) -> None:
    """Refuses the samples that neither Pillow nor OpenCV turns into the right pixels: signed or 32-bit
    integers, 16-bit floats, and samples deeper than 8 bits stored in separate planes."""
    kind, bits = _tag_values(page, 339)[0], max(_tag_values(page, 258))
    if not ((kind == 1 and bits <= 16) or (kind == 3 and bits in (32, 64))):
        raise ImageError(
            f"{name}: {bits}-bit {_TIFF_SAMPLE_KINDS.get(kind, 'undefined')} samples are not supported "
            f"(TIFF samples must be unsigned integers of up to 16 bits, or 32- or 64-bit floats from 0 to 1)"
        )
    if bits > 8 and page.get(277, 1) > 1 and page.get(284, 1) == 2:
        raise ImageError(f"{name}: {bits}-bit colour channels in separate planes are not supported")


def _tiff_orientation_reset(data: bytes, page: TiffImagePlugin.ImageFileDirectory_v2) -> bytes:
    """The TIFF with its first page's Orientation tag set to 1 (as stored). OpenCV's TIFF reader turns the
    pixels by that tag, in some versions even when told not to: we turn them, once, as for every format."""
    if page.get(274, 1) == 1:
        return data
    endian = "<" if page.prefix == b"II" else ">"
    big = data[2:3] == b"+"  # BigTIFF: 8-byte entry count, 20-byte entries
    (count,) = struct.unpack_from(endian + ("Q" if big else "H"), data, page.offset)
    first, size = page.offset + (8 if big else 2), (20 if big else 12)
    for entry in range(first, first + count * size, size):
        if struct.unpack_from(endian + "H", data, entry)[0] == 274:
            patched = bytearray(data)
            struct.pack_into(endian + "H", patched, entry + (12 if big else 8), 1)  # the value, in place
            return bytes(patched)
    return data


def _tag_values(page: TiffImagePlugin.ImageFileDirectory_v2, tag: int) -> tuple[int, ...]:
    """A per-sample tag's values (bits per sample, sample format), which default to 1."""
    values = page.get(tag, 1)
    return values if isinstance(values, tuple) else (values,)


def _check_still(img: Image.Image, name: str) -> None:
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format != "MPO":  # an MPO's first picture is the photo
        raise ImageError(_not_still(name, frames, "page" if img.format == "TIFF" else "frame"))


def _not_still(name: str, count: int, unit: str) -> str:
    return f"{name}: has {count} {unit}s; facerestore restores still images: extract a {unit} first"


def _is_16bit_gray_or_rgb(img: Image.Image, data: bytes) -> bool:
    """16-bit gray or RGB(A) PNG and TIFF, which Pillow would cut to 8 bits (colour) or mishandle (gray +
    alpha). Other 16-bit colour spaces (CMYK) are left to Pillow, which reads them at 8 bits."""
    if img.format == "PNG":
        return data[12:16] == b"IHDR" and data[24] == 16
    if isinstance(img, TiffImagePlugin.TiffImageFile):
        return 16 in _tag_values(img.tag_v2, 258) and img.tag_v2.get(262) in (0, 1, 2)
    return False


def _header_says_gray(img: Image.Image, data: bytes) -> bool:
    if img.format == "PNG":
        return data[25] in (0, 4)  # PNG colour types: gray, gray + alpha
    if isinstance(img, TiffImagePlugin.TiffImageFile):
        return img.tag_v2.get(262) in (0, 1)  # photometric: white-is-zero, black-is-zero
    return False


def _opencv_planes(data: bytes, gray: bool, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (H x W gray or H x W x 3 RGB) and alpha planes, decoded by OpenCV at full bit depth.

    OpenCV picks its decoder by the content: it is handed only PNG and TIFF, which we read ourselves first.
    """
    if not data.startswith((_PNG_SIGNATURE, *_TIFF_SIGNATURES)):
        raise ImageError(f"{name}: only PNG and TIFF are decoded with OpenCV")
    with _opencv_quiet():
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageError(f"{name}: truncated or corrupt image")
    if array.dtype.kind == "f":
        array = _unit_floats_to_16bit(array, name)
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{name}: unsupported sample type {array.dtype}")
    if array.ndim == 2:
        return array, None
    alpha = array[..., 3] if array.shape[2] == 4 else None
    color = array[..., 0] if gray else array[..., 2::-1]  # OpenCV is BGR(A)
    return color, alpha


def _png_for_opencv(data: bytes, name: str) -> bytes:
    """The PNG's pixel chunks, each checked. libpng, inside OpenCV, prints its complaints about truncation,
    bad checksums and odd metadata straight to stderr: it gets nothing to complain about."""
    kept, offset = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        chunk = data[offset : offset + 12 + length]
        kind, body, crc = chunk[4:8], chunk[8:-4], chunk[-4:]
        if len(chunk) < 12 + length or zlib.crc32(kind + body) != int.from_bytes(crc, "big"):
            what = kind.decode() if kind.isalpha() else "unnamed"
            raise ImageError(f"{name}: truncated or corrupt image (a damaged {what} chunk)")
        if kind in (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"):  # the pixels; Pillow reads the metadata
            kept.append(chunk)
        if kind == b"IEND":
            return b"".join(kept)
        offset += len(chunk)
    raise ImageError(f"{name}: truncated or corrupt image (the PNG ends before its IEND chunk)")


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV logs libtiff's warnings and its own decode failures to stderr; the ImageError says it once."""
    with _OPENCV_LOG_LOCK:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            yield
        finally:
            cv2.utils.logging.setLogLevel(level)


def _unit_floats_to_16bit(array: np.ndarray, name: str) -> np.ndarray:
    """Floats from 0 to 1, as most float TIFFs hold them, as 16-bit integers. Other ranges (HDR, signed
    data) have no single right mapping to pixels, so they are refused."""
    low, high = float(array.min()), float(array.max())
    if not 0 <= low <= high <= 1:
        raise ImageError(
            f"{name}: floating-point samples run from {low:g} to {high:g}; only 0 to 1 can be read as pixels"
        )
    return np.rint(array * 65535).astype(np.uint16)


def _pillow_planes(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (H x W gray or H x W x 3 RGB) and alpha planes from a loaded 8-bit Pillow image."""
    if img.mode == "LAB":  # CIELab TIFF: its channels are no R, G, B (and its "A" is no alpha)
        srgb = ImageCms.createProfile("sRGB")
        img = ImageCms.buildTransform(ImageCms.createProfile("LAB"), srgb, "LAB", "RGB").apply(img)
    has_alpha = img.has_transparency_data
    if img.mode in ("1", "L", "LA", "La"):
        if not has_alpha:
            return np.asarray(img.convert("L")), None
        gray_alpha = np.asarray(img.convert("LA"))
        return gray_alpha[..., 0], gray_alpha[..., 1]
    if img.mode.startswith("I"):  # 16-bit or 32-bit integer gray
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16), None
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(img.convert("RGB")), None


def _exif_and_orientation(img: Image.Image) -> tuple[bytes | None, int]:
    """The EXIF to keep (Orientation reset to 1) and the orientation the pixels still need.

    For a PNG whose eXIf chunk may follow the pixel data, Pillow decodes the pixels to reach it.
    """
    try:
        exif = img.getexif()
    except (OSError, SyntaxError, ValueError, struct.error):
        return None, 1
    orientation = _valid_orientation(exif.get(_ORIENTATION_TAG, 1))
    # A TIFF's "EXIF" is its own layout tags (strips, sizes): they do not describe another file.
    if not exif or isinstance(img, TiffImagePlugin.TiffImageFile):
        return None, orientation
    raw = img.info.get("exif")
    if orientation == 1 and isinstance(raw, bytes):
        return (raw if raw.startswith(_EXIF_PREFIX) else _EXIF_PREFIX + raw), 1
    if _ORIENTATION_TAG in exif:
        exif[_ORIENTATION_TAG] = 1
    return exif.tobytes(), orientation


def _valid_orientation(value: object) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(plane: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a plane stored with this EXIF orientation upright."""
    if orientation == 2:
        plane = plane[:, ::-1]
    elif orientation == 3:
        plane = plane[::-1, ::-1]
    elif orientation == 4:
        plane = plane[::-1]
    elif orientation == 5:
        plane = plane.swapaxes(0, 1)
    elif orientation == 6:
        plane = np.rot90(plane, -1)
    elif orientation == 7:
        plane = plane[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        plane = np.rot90(plane, 1)
    return np.ascontiguousarray(plane)


def _as_rgb(color: np.ndarray) -> np.ndarray:
    if color.ndim == 2:
        return np.repeat(color[..., None], 3, axis=2)
    return np.ascontiguousarray(color)


def _usable_icc(profile: object) -> bytes | None:
    """Only RGB and gray profiles still describe the pixels we hand out (CMYK ones do not)."""
    if isinstance(profile, bytes) and profile[16:20] in (b"RGB ", b"GRAY"):
        return profile
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def picture_from_array(array: np.ndarray) -> Picture:
    """A Picture from an H x W (gray), H x W x 2 (gray + alpha), x 3 (RGB) or x 4 (RGBA) uint8/16 array."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"array: dtype must be uint8 or uint16, not {array.dtype}")
    channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else 0
    if channels not in (1, 2, 3, 4) or array.size == 0:
        raise ImageError(f"array: shape must be H x W or H x W x 1-4, not {array.shape}")
    planes = array.reshape(array.shape[0], array.shape[1], channels)
    color = planes[..., 0] if channels <= 2 else planes[..., :3]
    alpha = planes[..., -1].copy() if channels in (2, 4) else None
    return Picture(pixels=_as_rgb(color).copy(), alpha=alpha, is_gray=channels <= 2, source_format="PNG")


# ---------------------------------------------------------------------------------------------- writing


def format_for_path(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in SUPPORTED_EXTENSIONS:
        return SUPPORTED_EXTENSIONS[suffix]
    known = ", ".join(SUPPORTED_EXTENSIONS)
    what = f"unknown image extension '{suffix}'" if suffix else "no file extension"
    raise ImageError(f"{path}: {what} (use one of {known})")


def encode_image(picture: Picture, fmt: str, *, quality: int = 95) -> bytes:
    fmt = _canonical_format(fmt)
    if not 1 <= quality <= 100:
        raise OptionError(f"quality must be between 1 and 100, not {quality}")
    alpha = picture.alpha if fmt in _ALPHA_FORMATS else None
    gray = _writes_gray(picture, fmt, alpha)
    icc = picture.icc_profile if _icc_fits(picture.icc_profile, gray) else None
    exif = picture.exif if fmt in _METADATA_FORMATS else None
    try:
        if picture.bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS and not (gray and alpha is None):
            return _encode_16bit_color(picture.pixels, alpha, fmt, icc, exif)
        image = _pillow_image(picture, alpha, gray, keep_16bit=fmt in _SIXTEEN_BIT_FORMATS)
        return _pillow_encode(image, fmt, quality, icc, exif)
    except (OSError, ValueError, cv2.error) as exc:
        raise ImageError(f"cannot encode the image as {fmt}: {_one_line(exc)}") from None


def save_image(picture: Picture, path: str | Path, *, overwrite: bool = False, quality: int = 95) -> Path:
    """Encode by the path's extension and write atomically; an existing file is kept unless overwrite."""
    path = Path(path)
    fmt = format_for_path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise ImageError(f"{path} exists (set {option('overwrite')} to replace it)")
    data = encode_image(picture, fmt, quality=quality)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({exc.strerror or _one_line(exc)})") from None
    return path


def _canonical_format(fmt: str) -> str:
    name = fmt.upper().lstrip(".")
    name = _FORMAT_ALIASES.get(name, name)
    if name not in _ENCODABLE:
        raise ImageError(f"cannot write {fmt} images (use one of {', '.join(_ENCODABLE)})")
    return name


def _writes_gray(picture: Picture, fmt: str, alpha: np.ndarray | None) -> bool:
    if not picture.is_gray or fmt not in _GRAY_FORMATS:
        return False
    # Neither OpenCV nor Pillow writes 16-bit gray + alpha: such pictures are written as RGBA.
    return not (picture.bit_depth == 16 and alpha is not None and fmt in _SIXTEEN_BIT_FORMATS)


def _icc_fits(profile: bytes | None, gray: bool) -> bool:
    return profile is not None and profile[16:20] == (b"GRAY" if gray else b"RGB ")


def _luma(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))


def _to_8bit(plane: np.ndarray) -> np.ndarray:
    if plane.dtype == np.uint8:
        return plane
    return ((plane.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _pillow_image(picture: Picture, alpha: np.ndarray | None, gray: bool, keep_16bit: bool) -> Image.Image:
    if gray and alpha is None and keep_16bit and picture.bit_depth == 16:
        return Image.fromarray(_luma(picture.pixels))  # mode I;16
    pixels = _to_8bit(picture.pixels)
    color = _luma(pixels) if gray else pixels
    planes = color if alpha is None else np.dstack([color, _to_8bit(alpha)])
    return Image.fromarray(planes)  # mode L, LA, RGB or RGBA from the shape


def _pillow_encode(
    image: Image.Image, fmt: str, quality: int, icc: bytes | None, exif: bytes | None
) -> bytes:
    options: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP", "HEIF"):
        options["quality"] = quality
    if fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encode_16bit_color(
    pixels: np.ndarray, alpha: np.ndarray | None, fmt: str, icc: bytes | None, exif: bytes | None
) -> bytes:
    """16-bit RGB(A) through OpenCV, since Pillow has no 16-bit colour modes."""
    bgr = pixels[..., ::-1] if alpha is None else np.dstack([pixels[..., ::-1], alpha])
    ok, encoded = cv2.imencode(".png" if fmt == "PNG" else ".tiff", np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError("OpenCV could not encode the pixels")
    data = encoded.tobytes()
    # OpenCV's TIFF writer takes no metadata; for PNG we add the chunks ourselves.
    return _png_with_metadata(data, icc, exif) if fmt == "PNG" else data


def _png_with_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        chunks += _png_chunk(b"eXIf", exif.removeprefix(_EXIF_PREFIX))
    after_ihdr = 8 + 4 + 4 + 13 + 4  # signature, IHDR length, type, data, CRC
    return png[:after_ihdr] + chunks + png[after_ihdr:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
