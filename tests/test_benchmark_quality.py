"""The quality benchmark: its metrics, degradations, naturalness score and plug-ins, and a --quick run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from facerestore import registry
from facerestore.analysis import SAME_PERSON_DISTANCE
from facerestore.detection import Face, create_detector, detect_faces
from onnx_factory import write_face_prior

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import degradations  # noqa: E402
import dlib_identity  # noqa: E402
import learned_metrics  # noqa: E402
import metrics  # noqa: E402
import niqe  # noqa: E402
import quality  # noqa: E402
import quality_methods  # noqa: E402
import quality_report  # noqa: E402


@pytest.fixture(scope="module")
def textured() -> np.ndarray:
    """A smooth random RGB picture kept away from 0 and 255, so added noise is never clipped."""
    rng = np.random.default_rng(7)
    field = cv2.GaussianBlur(rng.uniform(0, 255, (128, 128, 3)).astype(np.float32), (0, 0), 3)
    field = (field - field.min()) / (field.max() - field.min())
    return (40 + 160 * field).round().astype(np.uint8)


def load_faces(shared_dir: Path, side: int) -> list[np.ndarray]:
    return [quality.read_rgb(path, side) for path in quality.sharp_faces(shared_dir)]


# -- PSNR, SSIM, colour shift, landmarks ------------------------------------------------------------------


def test_psnr_of_identical_images_is_infinite(textured: np.ndarray) -> None:
    assert metrics.psnr_y(textured, textured.copy()) == math.inf


def test_psnr_of_known_gray_noise(textured: np.ndarray) -> None:
    """Noise of ±d added equally to R, G and B moves Y by exactly d * 219/255 everywhere."""
    step = 4
    signs = np.random.default_rng(1).choice([-1, 1], size=textured.shape[:2])
    noisy = (textured.astype(int) + step * signs[..., None]).astype(np.uint8)
    expected = 20 * math.log10(255 / (step * 219 / 255))
    assert metrics.psnr_y(noisy, textured) == pytest.approx(expected, abs=1e-6)


def test_ssim_is_one_for_identical_and_falls_with_noise(textured: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    figures = []
    for sigma in (2, 8, 20):
        noise = rng.normal(0, sigma, textured.shape)
        figures.append(metrics.ssim_y(np.clip(textured + noise, 0, 255).astype(np.uint8), textured))
    assert metrics.ssim_y(textured, textured) == pytest.approx(1.0)
    assert 1.0 > figures[0] > figures[1] > figures[2] > 0.0


def test_ssim_agrees_with_scikit_image(textured: np.ndarray) -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    blurred = cv2.GaussianBlur(textured, (0, 0), 1.5)
    theirs = skimage_metrics.structural_similarity(
        metrics.luma(blurred),
        metrics.luma(textured),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert metrics.ssim_y(blurred, textured) == pytest.approx(theirs, abs=1e-4)


def test_colour_shift_is_zero_for_identical_and_large_for_a_cast(textured: np.ndarray) -> None:
    cast = textured.copy()
    cast[..., 0] = np.clip(cast[..., 0].astype(int) + 25, 0, 255)
    noise = np.random.default_rng(3).normal(0, 8, textured.shape)
    noisy = np.clip(textured + noise, 0, 255).astype(np.uint8)
    assert metrics.colour_shift(textured, textured) == 0.0
    assert metrics.colour_shift(textured, cast) > 5.0
    assert metrics.colour_shift(textured, noisy) < 1.0  # the low-pass ignores zero-mean noise


def _face(points: np.ndarray) -> Face:
    x1, y1 = points.min(axis=0) - 20
    x2, y2 = points.max(axis=0) + 20
    return Face((x1, y1, x2, y2), 0.99, tuple((float(x), float(y)) for x, y in points))


def test_registration_shift_measures_a_displacement() -> None:
    noise = np.random.default_rng(9).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    texture = np.clip(cv2.GaussianBlur(noise, (0, 0), 1.5) * 3 - 255, 0, 255).astype(np.uint8)
    move = np.float32([[1, 0, 2], [0, 1, 1]])
    moved = cv2.warpAffine(texture, move, (256, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    assert metrics.registration_shift(texture, texture) < 0.05
    assert metrics.registration_shift(moved, texture) == pytest.approx(math.hypot(2, 1), abs=0.2)


def test_landmark_distance_and_matching() -> None:
    points = np.array([[100, 100], [150, 100], [125, 130], [105, 160], [145, 160]], dtype=float)
    truth = _face(points)
    shifted = _face(points + np.array([3.0, 4.0]))
    elsewhere = _face(points + np.array([300.0, 0.0]))
    assert metrics.landmark_distance(shifted, truth) == pytest.approx(5.0)
    assert metrics.matching_face([elsewhere, shifted], truth) == shifted
    assert metrics.matching_face([elsewhere], truth) is None


# -- degradations -------------------------------------------------------------------------------------------


def test_degradation_is_reproducible_with_the_seed() -> None:
    face = np.random.default_rng(4).integers(0, 256, (512, 512, 3), dtype=np.uint8)

    def draw(seed: int, index: int) -> tuple[degradations.Degradation, np.ndarray]:
        rng = degradations.sample_rng(seed, index, "random")
        params = degradations.random_degradation(rng)
        return params, degradations.degrade_lowres(face, params, rng)

    first, again, other_face, other_seed = draw(1, 0), draw(1, 0), draw(1, 1), draw(2, 0)
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    assert first[0] != other_face[0] and first[0] != other_seed[0]


def test_random_degradations_stay_in_the_protocol_ranges() -> None:
    rng = np.random.default_rng(5)
    draws = [degradations.random_degradation(rng) for _ in range(500)]
    assert all(0.1 <= d.sigma <= 10 and 0.8 <= d.factor <= 8 for d in draws)
    assert all(0 <= d.noise <= 20 and 60 <= d.quality <= 100 for d in draws)
    assert max(d.quality for d in draws) == 100 and min(d.quality for d in draws) == 60


def test_severities_get_progressively_worse(shared_dir: Path) -> None:
    truth = load_faces(shared_dir, 512)[0]
    figures = []
    for name, params in degradations.SEVERITIES.items():
        lowres = degradations.degrade_lowres(truth, params, degradations.sample_rng(0, 0, name))
        figures.append(metrics.psnr_y(degradations.upsample(lowres, 512), truth))
    assert figures[0] > figures[1] > figures[2] > 15


# -- NIQE-style naturalness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "sampler"), [(2.0, "normal"), (1.0, "laplace")])
def test_generalised_gaussian_shape_is_recovered(shape: float, sampler: str) -> None:
    samples = getattr(np.random.default_rng(6), sampler)(0, 1, (1, 200_000))
    assert niqe.ggd_features(samples)[0, 0] == pytest.approx(shape, rel=0.05)
    asymmetric = niqe.aggd_features(samples)[0]
    assert asymmetric[0] == pytest.approx(shape, rel=0.05) and abs(asymmetric[1]) < 0.02


def test_naturalness_score_is_worse_for_blurred_and_noisy_faces(shared_dir: Path) -> None:
    faces = load_faces(shared_dir, 256)
    model = niqe.NaturalnessModel.fit(faces[::2])  # scored faces are held out of the model
    rng = np.random.default_rng(8)
    for face in faces[1::2][:8]:
        sharp = model.score(face)
        blurred = model.score(cv2.GaussianBlur(face, (0, 0), 1.5))
        noisy = model.score(np.clip(face + rng.normal(0, 15, face.shape), 0, 255).astype(np.uint8))
        assert sharp < blurred and sharp < noisy, (sharp, blurred, noisy)


# -- plug-in metrics and models ---------------------------------------------------------------------------


def _onnx_file(path: Path, nodes: list[onnx.NodeProto], inputs: list[str], shape: list[int | str]) -> Path:
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in inputs],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_learned_metrics_are_skipped_without_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(tmp_path))
    for metric in learned_metrics.ALL:
        monkeypatch.delenv(metric.env_var, raising=False)
    loaded = learned_metrics.LearnedMetrics.load()
    assert loaded.lpips is None and loaded.identity is None and loaded.inception is None
    assert [reason.split(":")[0] for reason in loaded.skipped] == ["LPIPS", "identity", "FID"]


def test_learned_metrics_plug_in_when_weights_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, textured: np.ndarray
) -> None:
    """Stand-in networks with the documented contracts: mean |a - b| for LPIPS, channel means as features."""
    lpips = _onnx_file(
        tmp_path / "lpips.onnx",
        [
            helper.make_node("Sub", ["a", "b"], ["d"]),
            helper.make_node("Abs", ["d"], ["e"]),
            helper.make_node("ReduceMean", ["e"], ["out"], keepdims=0),
        ],
        ["a", "b"],
        [1, 3, "h", "w"],
    )
    pooled = [helper.make_node("GlobalAveragePool", ["x"], ["out"])]
    monkeypatch.setenv("FACERESTORE_LPIPS_ONNX", str(lpips))
    monkeypatch.setenv(
        "FACERESTORE_ARCFACE_ONNX", str(_onnx_file(tmp_path / "a.onnx", pooled, ["x"], [1, 3, 112, 112]))
    )
    monkeypatch.setenv(
        "FACERESTORE_INCEPTION_ONNX", str(_onnx_file(tmp_path / "i.onnx", pooled, ["x"], [1, 3, 299, 299]))
    )
    loaded = learned_metrics.LearnedMetrics.load()
    assert loaded.skipped == [] and loaded.lpips and loaded.identity and loaded.inception
    face = _face(np.array([[40, 50], [85, 50], [62, 70], [45, 95], [80, 95]], dtype=float))
    assert loaded.lpips(textured, textured) == 0.0
    assert loaded.lpips(textured, 255 - textured) > 0.1
    assert loaded.identity(textured, textured, face) == pytest.approx(1.0)
    features = np.array([loaded.inception(np.roll(textured, k, axis=0)) for k in range(0, 80, 10)])
    assert features.shape == (8, 3)
    assert learned_metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)


def test_every_installed_face_prior_becomes_a_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(tmp_path))
    write_face_prior(registry.get_entry("codeformer"), tmp_path)
    runnable, skipped = quality_methods.restorer_models()
    assert "codeformer" in runnable and "realesrgan-x4plus" in runnable
    assert any(reason.startswith("gfpgan-1.4: weights not installed") for reason in skipped)


def test_docs_update_replaces_only_the_quality_section(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Quality\n\nold\n\n## Speed\n\nfast\n")
    quality.update_docs(docs, "## Quality\n\nnew\n")
    assert docs.read_text() == "# Benchmarks\n\n## Quality\n\nnew\n\n## Speed\n\nfast\n"


def test_identity_table_groups_the_automatic_choice_by_damage_class() -> None:
    def record(damage: str, ours: float, input_distance: float) -> dict[str, object]:
        auto = {"damage": damage, "id_distance": ours}
        return {"methods": {"auto": auto, "input": {"id_distance": input_distance}}}

    records = [record("severe", 0.7, 0.6), record("severe", 0.5, 0.6), record("mild", 0.1, 0.05)]
    table = quality_report.identity_table(records, "auto", "input").splitlines()
    assert table[2:] == [
        "| mild | 1 | 0.050 | 0.100 | +0.050 | 0/1 |",
        "| severe | 2 | 0.600 | 0.600 | +0.000 | 1/2 |",
    ]
    assert quality_report.identity_table([{"methods": {"auto": {"damage": "mild"}}}], "auto", "input") == ""


def test_face_canvas_holds_one_detectable_face(shared_dir: Path) -> None:
    face = load_faces(shared_dir, 256)[0]
    canvas, inner = quality_methods.face_canvas(face)
    assert canvas.shape == (512, 512, 3) and np.array_equal(canvas[inner, inner], face)
    assert len(detect_faces(create_detector("retinaface"), canvas)) == 1


# -- the benchmark itself ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_benchmark_runs_and_writes_sane_outputs(shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "quality"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "quality.py"),
            "--quick",
            "--out",
            str(out),
            "--shared",
            str(shared_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((out / "results.json").read_text())
    assert document["machine"]["cpu"] and document["machine"]["date"]
    assert {row["subset"] for row in document["summary"]} == {"random", "clean", "mild", "moderate", "severe"}
    methods = {row["method"] for row in document["summary"]}
    assert {
        "bicubic",
        "lanczos+unsharp",
        "realesrgan-x4plus (aligned)",
        document["pipeline_method"],
    } <= methods
    for image in document["images"]:
        for figures in image["methods"].values():
            assert 10 < figures["psnr"] < 60 and 0 < figures["ssim"] <= 1 and figures["niqe"] > 0
    assert {record["set"] for record in document["real"]} == set(quality.REAL_SETS)
    skipped = " ".join(document["skipped_metrics"])
    for name, key in (("LPIPS", "lpips"), ("identity", "identity"), ("FID", "fid")):
        assert name in skipped or document["summary"][0].get(key) is not None, name
    report = (out / "results.md").read_text()
    assert (
        "## Quality" in report
        and "| set | method | n | PSNR" in report
        and document["machine"]["cpu"] in report
    )
    tile = quality.QUICK.sheet_side
    # One tile per summary row's method: the input (= bicubic), each other method, the ground truth.
    expected = {"contact-synthetic.png": (5, len(methods)), "contact-real.png": (len(quality.REAL_SETS), 2)}
    for name, (rows, columns) in expected.items():
        sheet = cv2.imread(str(out / name))
        assert sheet is not None and sheet.std() > 10
        assert sheet.shape[0] >= rows * tile and sheet.shape[1] >= columns * tile, (name, sheet.shape)


def test_dlib_identity_distance_tells_people_apart(shared_dir: Path) -> None:
    """With the identity extra: the same face is at 0, a blurred copy stays under dlib's same-person limit,
    another person is beyond it."""
    metric, why = dlib_identity.load()
    if metric is None:
        pytest.skip(why)
    detector = create_detector("retinaface")
    first, other = (
        quality.read_rgb(shared_dir / "data/hq/ffhq" / name, 512) for name in ("00002.png", "00004.png")
    )
    face = max(detect_faces(detector, first), key=lambda found: found.width)
    assert metric(first, first, face) == pytest.approx(0.0, abs=1e-6)
    assert metric(cv2.GaussianBlur(first, (0, 0), 2), first, face) < SAME_PERSON_DISTANCE
    assert metric(other, first, face) > SAME_PERSON_DISTANCE
