"""Identity distance with dlib's face descriptor: the development extra ``identity``.

``face-recognition-models`` (PyPI; its LICENSE file is CC0 1.0, its metadata says MIT, and Davis King
released the networks into the public domain) ships dlib's ResNet face descriptor and 5-point shape
predictor; ``dlib-bin`` (Boost Software License) runs them. The package's own ``__init__`` needs
``pkg_resources``, which recent setuptools no longer ships, so its files are found without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from facerestore.detection import Face

CHIP_SIDE, CHIP_PADDING = 150, 0.25  # the aligned chip dlib's descriptor was trained on
INSTALL_HINT = "pip install dlib-bin face-recognition-models"


def models_folder() -> Path | None:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


class DlibIdentity:
    """Distance between the descriptors of a restored face and its ground truth, both aligned with the
    ground truth's landmarks (so a face that drifted costs distance); 0 is the same picture."""

    def __init__(self, folder: Path) -> None:
        import dlib  # the development extra

        self.dlib = dlib
        self.shapes = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.network = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def _descriptor(self, image: np.ndarray, shape: object) -> np.ndarray:
        chip = self.dlib.get_face_chip(
            np.ascontiguousarray(image), shape, size=CHIP_SIDE, padding=CHIP_PADDING
        )
        return np.asarray(self.network.compute_face_descriptor(chip))

    def __call__(self, result: np.ndarray, truth: np.ndarray, truth_face: Face) -> float:
        left, top, right, bottom = (round(value) for value in truth_face.box)
        shape = self.shapes(np.ascontiguousarray(truth), self.dlib.rectangle(left, top, right, bottom))
        return float(np.linalg.norm(self._descriptor(result, shape) - self._descriptor(truth, shape)))


def load() -> tuple[DlibIdentity | None, str | None]:
    """The metric, or why it is skipped."""
    folder = models_folder()
    if folder is None or importlib.util.find_spec("dlib") is None:
        return None, f"identity distance (dlib): not installed ({INSTALL_HINT})"
    return DlibIdentity(folder), None
