"""The whole pipeline on real photos: restoration by a real network, paste-back geometry, seams, options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from metrics import seam_gradients

from facerestore import registry
from facerestore.alignment import alignment_affine, crop_footprint, rescale_affine, warp_back
from facerestore.blending import feather_mask, keep_native_detail
from facerestore.detection import Face
from facerestore.image_io import load_image, picture_from_array
from facerestore.pipeline import RestoreOptions, Restorer
from onnx_factory import write_face_prior

SEAM_TOLERANCE = 1.1


def seam_ratio(output: np.ndarray, reference: np.ndarray, face: Face, crop_size: int, scale: float) -> float:
    """How much steeper the output is across the paste border than around it, relative to the same figure in
    the unrestored photo enlarged alike (1.0: pasting added no edge; content edges cancel out)."""
    affine = rescale_affine(alignment_affine(face, crop_size), scale)
    band, around = seam_gradients(output, affine, crop_size)
    ref_band, ref_around = seam_gradients(reference, affine, crop_size)
    return (band / around) / (ref_band / ref_around)


def face_from_record(record: dict[str, object]) -> Face:
    box = record["box"]
    marks = record["landmarks"]
    assert isinstance(box, list) and isinstance(marks, dict)
    return Face(
        box=tuple(box),
        score=float(record["score"]),  # type: ignore[arg-type]
        landmarks=tuple(tuple(point) for point in marks.values()),
    )


@pytest.fixture(scope="module")
def old_print(shared_dir: Path) -> Path:
    return shared_dir / "data/real/gfpgan-whole/00.jpg"


@pytest.mark.slow
def test_acceptance_old_print_restored_at_2x_without_seams(old_print: Path, tmp_path: Path) -> None:
    """The README's main command on the scanned print: 2x, both children restored by a real network."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facerestore.cli",
            "-q",
            "restore",
            str(old_print),
            "-o",
            str(tmp_path / "out"),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(report.read_text())[0]
    assert record["size_in"] == [1297, 1920] and record["size_out"] == [2594, 3840]
    assert len(record["faces"]) == 2
    assert {face["model"] for face in record["faces"]} == {"realesrgan-x4plus"}
    output = load_image(tmp_path / "out" / "00.jpg").pixels
    original = load_image(old_print).pixels
    reference = cv2.resize(original, (2594, 3840), interpolation=cv2.INTER_LANCZOS4)
    for face_record in record["faces"]:
        face = face_from_record(face_record)
        ratio = seam_ratio(output, reference, face, face_record["crop_size"], 2.0)
        assert ratio <= SEAM_TOLERANCE, f"visible seam around {face.box}: {ratio:.3f}"
        x1, y1, x2, y2 = (int(v * 2) for v in face.box)
        restored, enlarged = output[y1:y2, x1:x2], reference[y1:y2, x1:x2]
        assert cv2.Laplacian(restored, cv2.CV_32F).var() > 1.2 * cv2.Laplacian(enlarged, cv2.CV_32F).var(), (
            "the face should gain detail over a plain enlargement"
        )
        colour_shift = np.abs(
            restored.astype(np.float32).mean((0, 1)) - enlarged.astype(np.float32).mean((0, 1))
        )
        assert colour_shift.max() < 6, colour_shift


def test_seam_check_catches_a_hard_edge(old_print: Path) -> None:
    """The seam measure above must be able to fail: a face pasted with a hard-edged mask and a +20 step."""
    original = load_image(old_print).pixels
    restorer = Restorer(RestoreOptions(bg_upsampler="none"))
    face = restorer.detect(load_image(old_print))[0]
    reference = cv2.resize(original, (2594, 3840), interpolation=cv2.INTER_LANCZOS4)
    affine = rescale_affine(alignment_affine(face, 144), 2.0)
    x, y, w, h = crop_footprint(affine, 144, reference.shape[:2])
    hard = warp_back(feather_mask(144), affine, (x, y, w, h)) > 0.5
    pasted = reference.copy()
    patch = pasted[y : y + h, x : x + w].astype(np.int16)
    pasted[y : y + h, x : x + w] = np.where(hard[..., None], np.clip(patch + 20, 0, 255), patch).astype(
        np.uint8
    )
    assert seam_ratio(pasted, reference, face, 144, 2.0) > SEAM_TOLERANCE


@pytest.fixture
def negative_prior(tmp_path: Path) -> tuple[str, Path]:
    """A generated GPEN-256-shaped model that returns the colour negative of its input."""
    entry = registry.get_entry("gpen-bfr-256")
    return entry.name, write_face_prior(entry, tmp_path)


def test_faces_are_pasted_exactly_where_they_were(shared_dir: Path, negative_prior: tuple[str, Path]) -> None:
    name, path = negative_prior
    picture = load_image(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg")
    options = RestoreOptions(
        scale=1, face_model=name, model_path=str(path), bg_upsampler="none", color_fix=False
    )
    result = Restorer(options).restore(picture)
    assert len(result.faces) == 2 and result.face_model == name
    before, after = picture.pixels.astype(np.int16), result.picture.pixels.astype(np.int16)
    for restored in result.faces:
        cx, cy = (round(v) for v in restored.face.center)
        centre = (slice(cy - 10, cy + 10), slice(cx - 10, cx + 10))
        assert np.abs(after[centre] - (255 - before[centre])).mean() < 12, "face centre should be inverted"
    corner = (slice(0, 40), slice(0, 40))
    assert np.array_equal(after[corner], before[corner]), "pixels away from faces are untouched"


def test_faces_land_on_the_enlarged_background_to_a_tenth_of_a_pixel(
    old_print: Path, negative_prior: tuple[str, Path]
) -> None:
    """At 2x the pasted face must sit exactly where the enlarged background has it: any sub-pixel offset
    between the two would show as a double edge in the feathered band."""
    name, path = negative_prior
    picture = load_image(old_print)
    options = RestoreOptions(face_model=name, model_path=str(path), bg_upsampler="none", color_fix=False)
    result = Restorer(options).restore(picture)
    output = result.picture.pixels
    expected = 255 - cv2.resize(
        picture.pixels, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_LINEAR
    )
    for restored in result.faces:
        x1, y1, x2, y2 = (int(v * 2) for v in restored.face.box)
        pasted, wanted = (
            cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY).astype(np.float64)
            for image in (output, expected)
        )
        (dx, dy), _ = cv2.phaseCorrelate(wanted, pasted)
        assert np.hypot(dx, dy) < 0.1, (dx, dy)


def test_blend_zero_keeps_the_original_face(shared_dir: Path, negative_prior: tuple[str, Path]) -> None:
    name, path = negative_prior
    picture = load_image(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg")
    options = RestoreOptions(scale=1, face_model=name, model_path=str(path), bg_upsampler="none", blend=0.0)
    result = Restorer(options).restore(picture)
    assert np.abs(result.picture.pixels.astype(np.int16) - picture.pixels).max() <= 1


def test_codeformer_fidelity_reaches_the_model(shared_dir: Path, tmp_path: Path) -> None:
    path = write_face_prior(registry.get_entry("codeformer"), tmp_path)
    picture = load_image(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg")
    means = []
    for fidelity in (0.0, 1.0):
        options = RestoreOptions(
            scale=1,
            face_model="codeformer",
            model_path=str(path),
            bg_upsampler="none",
            fidelity=fidelity,
            color_fix=False,
        )
        result = Restorer(options).restore(picture)
        x1, y1, x2, y2 = (int(v) for v in result.faces[0].face.box)
        means.append(result.picture.pixels[y1:y2, x1:x2].astype(np.float32).mean())
    assert means[1] - means[0] > 20


def test_tiny_faces_are_super_resolved_before_a_face_prior(
    shared_dir: Path, negative_prior: tuple[str, Path]
) -> None:
    name, path = negative_prior
    photo = load_image(shared_dir / "data/real/misc/children-alpha.png")
    small = picture_from_array(cv2.resize(photo.pixels, (283, 175), interpolation=cv2.INTER_AREA))
    options = RestoreOptions(scale=2, face_model=name, model_path=str(path), bg_upsampler="none")
    result = Restorer(options).restore(small)
    assert result.faces and all(face.upscaled_first for face in result.faces)
    large = Restorer(options).restore(load_image(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg"))
    assert large.faces and not any(face.upscaled_first for face in large.faces)


def test_aligned_crop_is_restored_whole(shared_dir: Path) -> None:
    picture = load_image(shared_dir / "data/real/gfpgan-cropped/Julia_Roberts_crop.png")
    result = Restorer(RestoreOptions(aligned=True, scale=1)).restore(picture, keep_crops=True)
    assert result.picture.pixels.shape == picture.pixels.shape
    assert len(result.faces) == 1 and result.faces[0].model == "realesrgan-x4plus"
    assert len(result.crops) == 1
    change = np.abs(result.picture.pixels.astype(np.int16) - picture.pixels).mean()
    assert 1 < change < 30, change


def test_any_scale_factor(shared_dir: Path, negative_prior: tuple[str, Path]) -> None:
    name, path = negative_prior
    picture = load_image(shared_dir / "data/real/misc/00017_gray.png")
    for scale in (1.0, 1.5, 3.0, 6.0):
        options = RestoreOptions(scale=scale, bg_upsampler="none", face_model=name, model_path=str(path))
        result = Restorer(options).restore(picture)
        assert len(result.faces) == 2
        assert result.picture.pixels.shape[:2] == (
            round(picture.height * scale),
            round(picture.width * scale),
        )


BAND_SIGMA = 0.375 * 256 / 64  # the band a restorer that saw 64 px of a 256 px crop knows nothing above


def _detail(image: np.ndarray, sigma: float = BAND_SIGMA) -> np.ndarray:
    return image - cv2.GaussianBlur(image, (0, 0), sigma)


def _smooth_face(rng: np.random.Generator) -> np.ndarray:
    """Broad shading with no fine detail: what a restorer that saw too few pixels returns."""
    return cv2.GaussianBlur(rng.random((256, 256, 3), dtype=np.float32), (0, 0), 12) * 0.5 + 0.25


def test_native_detail_is_kept_where_it_is_sharper_and_only_there() -> None:
    """Above the band the restorer saw the sharper image's detail wins; below it, the restorer's."""
    rng = np.random.default_rng(7)
    smooth = _smooth_face(rng)
    textured = np.zeros((256, 256, 1), np.float32)
    textured[80:120, 60:120] = textured[80:120, 136:196] = textured[150:180, 90:166] = 1  # eyes, mouth
    sharp = np.clip(smooth + textured * (rng.random((256, 256, 3), dtype=np.float32) - 0.5) * 0.2, 0, 1)
    eye = (slice(84, 116), slice(64, 116))
    merged = keep_native_detail(smooth.copy(), sharp, seen_side=64)  # a smooth restoration of a sharp face
    detail, wanted = _detail(merged)[eye], _detail(sharp)[eye]
    assert np.corrcoef(detail.ravel(), wanted.ravel())[0, 1] > 0.9
    lows = [cv2.GaussianBlur(image, (0, 0), 2 * BAND_SIGMA) for image in (merged, smooth)]
    assert np.abs(lows[0] - lows[1]).max() < 0.02, "the restorer's low band must stay"
    kept = keep_native_detail(sharp.copy(), smooth, seen_side=64)  # a sharp restoration of a blurry face
    assert np.corrcoef(_detail(kept).ravel(), _detail(sharp).ravel())[0, 1] > 0.95


def test_noise_is_not_taken_for_detail() -> None:
    rng = np.random.default_rng(8)
    smooth = _smooth_face(rng)
    noisy = np.clip(smooth + rng.normal(0, 0.04, smooth.shape).astype(np.float32), 0, 1)
    merged = keep_native_detail(smooth.copy(), noisy, seen_side=64)
    assert _detail(merged).std() < 0.2 * _detail(noisy).std()


@pytest.mark.slow
def test_a_sharp_face_keeps_its_own_detail(shared_dir: Path) -> None:
    """A sharp 512 px face at 1x: the x4plus restorer sees it at 128 px and re-invents the rest; merging the
    photo's own detail back must bring the result close to the real face (31.2 dB without the merge)."""
    face = cv2.cvtColor(cv2.imread(str(shared_dir / "data/hq/ffhq/00003.png")), cv2.COLOR_BGR2RGB)
    face = cv2.resize(face, (512, 512), interpolation=cv2.INTER_AREA)
    canvas, inner = np.full((1024, 1024, 3), 128, np.uint8), slice(256, 768)
    canvas[inner, inner] = face
    options = RestoreOptions(scale=1, face_model="realesrgan-x4plus", bg_upsampler="none")  # 'auto' keeps it
    result = Restorer(options).restore(picture_from_array(canvas))
    assert len(result.faces) == 1 and result.faces[0].crop_size < 256
    error = result.picture.pixels[inner, inner].astype(np.float64) - face
    assert error.any()  # restored, not kept as it was
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 32.5
