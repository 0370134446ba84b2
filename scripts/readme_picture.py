"""Makes docs/before-after.jpg for the README from two public-domain portraits shipped in PyPI packages
(scikit-image's astronaut, matplotlib's Grace Hopper): each is degraded (half size, blurred, JPEG q40),
restored by facerestore at 2x with its default settings, and shown beside the input and the original.

    python scripts/readme_picture.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
from PIL import Image, ImageDraw
from skimage import data

from facerestore import RestoreOptions, Restorer, decode_image, encode_image, picture_from_array, save_image

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "before-after.jpg"
PANEL = 384


def public_domain_portraits() -> list[np.ndarray]:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as stream:
        hopper = np.asarray(Image.open(stream).convert("RGB"))
    return [data.astronaut(), hopper[:512, :512]]


def degrade(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    small = cv2.resize(
        cv2.GaussianBlur(image, (0, 0), 1.2), (width // 2, height // 2), interpolation=cv2.INTER_AREA
    )
    return decode_image(encode_image(picture_from_array(small), "JPEG", quality=40)).pixels


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    panel = Image.fromarray(cv2.resize(image, (PANEL, PANEL), interpolation=cv2.INTER_CUBIC))
    draw = ImageDraw.Draw(panel)
    draw.rectangle((0, 0, PANEL, 24), fill=(0, 0, 0))
    draw.text((8, 6), text, fill=(255, 255, 255))
    return np.asarray(panel)


def main() -> None:
    restorer = Restorer(RestoreOptions(scale=2))
    rows = []
    for original in public_domain_portraits():
        degraded = degrade(original)
        restored = restorer.restore(picture_from_array(degraded)).picture.pixels
        rows.append(
            np.hstack(
                [
                    labelled(degraded, "input (256 px, blurred, JPEG q40)"),
                    labelled(restored, "facerestore 2x (defaults, offline)"),
                    labelled(original, "original"),
                ]
            )
        )
    save_image(picture_from_array(np.vstack(rows)), OUTPUT, overwrite=True, quality=90)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
