"""Metrics that need network weights: LPIPS, identity similarity (ArcFace) and FID (Inception).

None of their weights is reachable offline here, so each plugs in when its ONNX file is present: the path in
its environment variable, else the file name in facerestore's model folder. Every file takes RGB float32
NCHW in [-1, 1]; export (or wrap) yours to that contract:

- LPIPS (``FACERESTORE_LPIPS_ONNX``, lpips.onnx): two image inputs [1, 3, H, W] -> the distance (lower is
  closer);
- identity (``FACERESTORE_ARCFACE_ONNX``, arcface.onnx): one input [1, 3, 112, 112], a face aligned to the
  ArcFace template -> an embedding; the score is the cosine similarity of restored vs ground truth;
- FID (``FACERESTORE_INCEPTION_ONNX``, inception.onnx): one input [1, 3, 299, 299] -> pooled features
  [1, D]; FID compares a method's outputs with the ground truths over a whole set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facerestore import registry, runtime
from facerestore.alignment import similarity_transform, template_points
from facerestore.detection import Face

ARCFACE_SIDE = 112
INCEPTION_SIDE = 299


@dataclass(frozen=True)
class LearnedMetric:
    name: str
    env_var: str
    filename: str

    def locate(self) -> Path | None:
        configured = os.environ.get(self.env_var)
        candidate = Path(configured).expanduser() if configured else registry.model_dir() / self.filename
        return candidate if candidate.is_file() else None

    def skip_reason(self) -> str:
        return f"{self.name}: no weights (set {self.env_var} or put {self.filename} in the model folder)"


LPIPS = LearnedMetric("LPIPS", "FACERESTORE_LPIPS_ONNX", "lpips.onnx")
IDENTITY = LearnedMetric("identity", "FACERESTORE_ARCFACE_ONNX", "arcface.onnx")
FID = LearnedMetric("FID", "FACERESTORE_INCEPTION_ONNX", "inception.onnx")
ALL = (LPIPS, IDENTITY, FID)


def _blob(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None])


class _Network:
    def __init__(self, path: Path) -> None:
        self.session = runtime.create_session(path, "cpu")
        self.inputs = [item.name for item in self.session.get_inputs()]

    def __call__(self, *images: np.ndarray) -> np.ndarray:
        feeds = {name: _blob(image) for name, image in zip(self.inputs, images, strict=True)}
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float64)


class LpipsDistance:
    def __init__(self, path: Path) -> None:
        self.network = _Network(path)

    def __call__(self, result: np.ndarray, truth: np.ndarray) -> float:
        return float(self.network(result, truth).mean())


class IdentitySimilarity:
    def __init__(self, path: Path) -> None:
        self.network = _Network(path)
        self.template = template_points(128, "arcface") - np.array([8.0, 0.0])  # the standard 112 x 112

    def embedding(self, image: np.ndarray, face: Face) -> np.ndarray:
        affine = similarity_transform(face.landmark_array(), self.template)
        crop = cv2.warpAffine(image, affine, (ARCFACE_SIDE, ARCFACE_SIDE), flags=cv2.INTER_AREA)
        vector = self.network(crop).ravel()
        return vector / (np.linalg.norm(vector) + 1e-12)

    def __call__(self, result: np.ndarray, truth: np.ndarray, truth_face: Face) -> float:
        """Both images are aligned with the ground truth's landmarks, so a drifted face costs similarity."""
        return float(self.embedding(result, truth_face) @ self.embedding(truth, truth_face))


class InceptionFeatures:
    def __init__(self, path: Path) -> None:
        self.network = _Network(path)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        resized = cv2.resize(image, (INCEPTION_SIDE, INCEPTION_SIDE), interpolation=cv2.INTER_CUBIC)
        return self.network(resized).ravel()


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """FID between two sets of feature rows: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    mean_gap = first.mean(axis=0) - second.mean(axis=0)
    cov_first, cov_second = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    # tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2, which are real and >= 0.
    eigenvalues = np.linalg.eigvals(np.atleast_2d(cov_first) @ np.atleast_2d(cov_second))
    root_trace = float(np.sqrt(np.clip(eigenvalues.real, 0, None)).sum())
    return float(mean_gap @ mean_gap + np.trace(np.atleast_2d(cov_first + cov_second)) - 2 * root_trace)


@dataclass
class LearnedMetrics:
    """The learned metrics whose weights are present; the others are listed in ``skipped``."""

    lpips: LpipsDistance | None
    identity: IdentitySimilarity | None
    inception: InceptionFeatures | None
    skipped: list[str]

    @classmethod
    def load(cls) -> LearnedMetrics:
        paths = {metric.name: metric.locate() for metric in ALL}
        lpips_path, identity_path, fid_path = (paths[m.name] for m in ALL)
        return cls(
            lpips=LpipsDistance(lpips_path) if lpips_path else None,
            identity=IdentitySimilarity(identity_path) if identity_path else None,
            inception=InceptionFeatures(fid_path) if fid_path else None,
            skipped=[metric.skip_reason() for metric in ALL if paths[metric.name] is None],
        )
