"""The detection audit's inputs: every real photo in ../shared/data with its faces marked, and harder cases
built from the same real pixels (old-print degradations, group-photo collages, hand close-ups).

Ground truth is a list of face centres per image, read off contact sheets of the detections
(bench-output/detection-audit/*.png): a detection is a face when its box holds a centre not yet claimed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from degradations import jpeg

from facerestore.image_io import load_image

Face = tuple[float, float, float]  # centre x, centre y, width

# Whole photos: each face's centre and width, in the photo's own pixels. Paths under ../shared/data, or "pkg:"
# for photos that ship inside installed packages (scikit-image, matplotlib). Photos with no face are bait.
WHOLE_PHOTOS: dict[str, tuple[Face, ...]] = {
    "real/gfpgan-whole/00.jpg": ((850, 466, 154), (578, 864, 135)),
    "real/gfpgan-whole/10045.png": (
        (211, 157, 75),
        (418, 174, 70),
        (403, 473, 65),
    ),  # and a newel post's ball
    "real/gfpgan-whole/Blake_Lively.jpg": ((181, 211, 151), (508, 204, 177)),
    "real/misc/00017_gray.png": ((141, 134, 111), (354, 148, 99)),
    "real/misc/children-alpha.png": (
        (168, 64, 53),
        (277, 97, 55),
        (444, 51, 60),
        (158, 181, 57),
        (369, 155, 53),
    ),
    "real/misc/tree_alpha_16bit.png": (),
    "real/portraits/angelina_jolie.jpg": ((858, 689, 634),),
    "real/portraits/kate_siegel.jpg": ((653, 261, 230),),
    "real/portraits/paul_rudd.jpg": ((828, 1087, 1046),),
    "real/portraits/shea_whigham.jpg": ((1060, 632, 441),),
    "pkg:skimage/astronaut.png": ((224, 118, 93),),
    "pkg:skimage/camera.png": ((227, 156, 62),),  # a profile behind a camera, gloved hands
    "pkg:skimage/coffee.png": (),
    "pkg:skimage/chelsea.png": (),  # a cat
    "pkg:skimage/rocket.jpg": (),
    "pkg:skimage/motorcycle_left.png": (),
    "pkg:matplotlib/grace_hopper.jpg": ((266, 217, 176),),  # with a cap badge that draws detections
}
# Aligned crops: one face each, filling the image around its centre.
ALIGNED_FOLDERS = (
    "real/gfpgan-cropped",
    "real/codeformer-cropped",
    "real/codeformer-gray",
    "hq/ffhq",
    "hq/celeba-hq",
)
# Real hands (centre x, centre y, side in the photo's pixels), seen on a contact sheet; none holds a face.
HANDS: tuple[tuple[str, float, float, float], ...] = (
    ("real/gfpgan-whole/00.jpg", 724, 1371, 220),  # a small child's hand below a striped sleeve
    ("real/misc/children-alpha.png", 103, 145, 70),  # thumbs up
    ("real/misc/children-alpha.png", 17, 180, 70),  # fist, thumb out
    ("real/misc/children-alpha.png", 244, 210, 70),
    ("real/misc/children-alpha.png", 415, 193, 70),
    ("real/misc/children-alpha.png", 551, 176, 70),
    ("real/gfpgan-whole/Blake_Lively.jpg", 145, 403, 120),  # a child's fingers
    ("real/gfpgan-whole/10045.png", 515, 503, 90),  # a hand with a ring
    ("real/gfpgan-whole/10045.png", 274, 560, 90),  # clasped hands
    ("real/gfpgan-whole/10045.png", 503, 598, 90),
    ("real/portraits/kate_siegel.jpg", 700, 1470, 220),  # a hand at a pocket
    ("real/portraits/kate_siegel.jpg", 270, 1360, 200),
    ("pkg:skimage/camera.png", 200, 225, 90),  # gloved hands
    ("pkg:skimage/camera.png", 300, 190, 90),
)
OLD_PRINT_SIDES = (900, 600, 400, 250, 160)  # whole photos again at these long sides, as old prints
HAND_SIDES = (32, 48, 64, 96, 128, 160)  # hand close-ups: the hand window's side in pixels
HAND_CONTEXTS = (2.0, 4.0)  # the close-up's side over the hand window's
COLLAGES = 24
COLLAGE_SIZE = (1080, 720)  # width, height, about a scanned group print at screen size
LFW_TINY_PAD = 12  # pixels of replicated border around the 25x25 LFW patches


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    image: np.ndarray  # H x W x 3 RGB uint8
    faces: tuple[Face, ...]  # in the image's pixels
    partial: tuple[Face, ...] = ()  # cut by the image's border: a detection there counts neither way


def package_photo(name: str) -> np.ndarray:
    if name.startswith("skimage/"):
        import skimage.data

        path = Path(skimage.data.__file__).parent / name.removeprefix("skimage/")
    else:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / name.removeprefix("matplotlib/")
    return read_rgb(path)


def read_rgb(path: Path) -> np.ndarray:
    pixels = load_image(path).pixels
    return pixels if pixels.dtype == np.uint8 else (pixels // 257).astype(np.uint8)


def read_photo(data_dir: Path, key: str) -> np.ndarray:
    return package_photo(key.removeprefix("pkg:")) if key.startswith("pkg:") else read_rgb(data_dir / key)


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)


def old_print(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A faded, grainy, blurred scan: sepia, gray or washed-out colour, then JPEG."""
    blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.6, 1.6))
    luma = blurred.mean(axis=2, keepdims=True)
    tone = rng.choice(["sepia", "gray", "colour"])
    if tone == "sepia":
        toned = luma * np.array([1.07, 0.95, 0.75], np.float32) + 14
    elif tone == "gray":
        toned = np.repeat(luma, 3, axis=2)
    else:
        toned = 0.6 * blurred + 0.4 * luma
    contrast = rng.uniform(0.6, 1.0)
    faded = (toned - 128) * contrast + 128 + rng.uniform(0, 25)
    grain = rng.normal(0, rng.uniform(4, 12), image.shape[:2])[..., None]
    noisy = np.clip(faded + grain, 0, 255).astype(np.uint8)
    return jpeg(noisy, int(rng.integers(35, 76)))


def window(image: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, int, int]:
    """The square of ``side`` around (cx, cy), clipped to the image, with its top-left corner."""
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(image.shape[1], round(cx + side / 2)), min(image.shape[0], round(cy + side / 2))
    return image[y0:y1, x0:x1], x0, y0


def cropped(
    faces: tuple[Face, ...], x0: float, y0: float, factor: float, size: tuple[int, int]
) -> tuple[tuple[Face, ...], tuple[Face, ...]]:
    """The faces after cropping at (x0, y0) and scaling: those whose centre is inside, and those cut by the
    border (centre outside, yet part of the face inside)."""
    width, height = size
    inside, partial = [], []
    for x, y, w in faces:
        face = ((x - x0) * factor, (y - y0) * factor, w * factor)
        if 0 <= face[0] < width and 0 <= face[1] < height:
            inside.append(face)
        elif -face[2] / 2 < face[0] < width + face[2] / 2 and -face[2] / 2 < face[1] < height + face[2] / 2:
            partial.append(face)
    return tuple(inside), tuple(partial)


def aligned_paths(data_dir: Path) -> list[Path]:
    return sorted(p for folder in ALIGNED_FOLDERS for p in (data_dir / folder).iterdir() if p.is_file())


def whole_photo_cases(data_dir: Path) -> Iterator[Case]:
    for key, faces in WHOLE_PHOTOS.items():
        yield Case("whole photos", key, read_photo(data_dir, key), faces)


def aligned_cases(data_dir: Path) -> Iterator[Case]:
    for path in aligned_paths(data_dir):
        image = read_rgb(path)
        if max(image.shape[:2]) > 512:
            image = resized(image, 512 / max(image.shape[:2]))
        height, width = image.shape[:2]
        yield Case(
            "aligned crops", f"{path.parent.name}/{path.name}", image, ((width / 2, height / 2, width / 2),)
        )


def old_print_cases(data_dir: Path, seed: int) -> Iterator[Case]:
    for index, (key, faces) in enumerate(WHOLE_PHOTOS.items()):
        photo = read_photo(data_dir, key)
        for side in OLD_PRINT_SIDES:
            factor = side / max(photo.shape[:2])
            image = old_print(resized(photo, factor), np.random.default_rng([seed, index, side]))
            inside, _ = cropped(faces, 0, 0, factor, (image.shape[1], image.shape[0]))
            yield Case("old prints", f"{key}@{side}", image, inside)


def hand_cases(data_dir: Path, seed: int) -> Iterator[Case]:
    """Each hand with some arm and clothes around it, at a few sizes, clean and as an old print."""
    for index, (key, cx, cy, side) in enumerate(HANDS):
        photo = read_photo(data_dir, key)
        for hand_pixels, context in itertools.product(HAND_SIDES, HAND_CONTEXTS):
            crop, x0, y0 = window(photo, cx, cy, side * context)
            factor = hand_pixels / side
            clean = resized(crop, factor)
            faces, partial = cropped(WHOLE_PHOTOS[key], x0, y0, factor, (clean.shape[1], clean.shape[0]))
            name = f"{key} hand {index} at {hand_pixels} px in {context:g}x"
            yield Case("hand close-ups", name, clean, faces, partial)
            aged = old_print(clean, np.random.default_rng([seed, index, hand_pixels, round(context)]))
            yield Case("hand close-ups", name + " old", aged, faces, partial)


def lfw_cases() -> Iterator[Case]:
    """scikit-image's LFW subset: 100 tiny gray faces (25x25, cropped tight), then 100 patches of no face."""
    import skimage.data

    patches = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")
    for index, patch in enumerate(patches):
        gray = cv2.copyMakeBorder(
            np.round(patch * 255).astype(np.uint8), *(LFW_TINY_PAD,) * 4, cv2.BORDER_REPLICATE
        )
        side = gray.shape[0]
        faces = ((side / 2, side / 2, 25.0),) if index < 100 else ()
        yield Case("tiny LFW patches", f"lfw_subset[{index}]", np.repeat(gray[..., None], 3, axis=2), faces)


def collage_cases(data_dir: Path, seed: int) -> Iterator[Case]:
    """Group-photo-like prints: rows of real faces (aligned crops) at 25-110 px and real hands at the same
    sizes, on the fence-and-grass backdrop of 00.jpg (no face in it), blurred down and aged as a whole."""
    faces_pool = aligned_paths(data_dir)
    photos = {key: read_photo(data_dir, key) for key in {hand[0] for hand in HANDS}}
    backdrop = read_rgb(data_dir / "real/gfpgan-whole/00.jpg")[1000:]
    width, height = COLLAGE_SIZE
    for index in range(COLLAGES):
        rng = np.random.default_rng([seed, index])
        canvas = cv2.resize(backdrop, COLLAGE_SIZE, interpolation=cv2.INTER_AREA)
        rows, cols = int(rng.integers(3, 6)), int(rng.integers(5, 9))
        cell_w, cell_h = width // cols, height // rows
        faces: list[Face] = []
        for row in range(rows):
            for col in range(cols):
                side = round(rng.uniform(0.45, 0.95) * min(cell_w, cell_h))
                x0 = col * cell_w + int(rng.integers(0, cell_w - side + 1))
                y0 = row * cell_h + int(rng.integers(0, cell_h - side + 1))
                if rng.random() < 0.7:
                    tile = read_rgb(faces_pool[int(rng.integers(len(faces_pool)))])
                    faces.append((x0 + side / 2, y0 + side / 2, side / 2))
                else:
                    key, cx, cy, hand_side = HANDS[int(rng.integers(len(HANDS)))]
                    tile, _, _ = window(photos[key], cx, cy, hand_side)
                canvas[y0 : y0 + side, x0 : x0 + side] = cv2.resize(
                    tile, (side, side), interpolation=cv2.INTER_AREA
                )
        blur = rng.uniform(1.2, 3.0)
        soft = resized(resized(canvas, 1 / blur), blur)[:height, :width]
        yield Case("collages", f"collage {seed}-{index}", old_print(soft, rng), tuple(faces))


GROUPS = ("whole photos", "aligned crops", "old prints", "hand close-ups", "collages", "tiny LFW patches")


def all_cases(data_dir: Path, seed: int, groups: tuple[str, ...] = GROUPS) -> Iterator[Case]:
    makers = {
        "whole photos": lambda: whole_photo_cases(data_dir),
        "aligned crops": lambda: aligned_cases(data_dir),
        "old prints": lambda: old_print_cases(data_dir, seed),
        "hand close-ups": lambda: hand_cases(data_dir, seed),
        "collages": lambda: collage_cases(data_dir, seed),
        "tiny LFW patches": lfw_cases,
    }
    for group in groups:
        yield from makers[group]()
