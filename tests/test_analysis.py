"""Per-face analysis on real faces (shared/data/hq) with known synthetic damage: each estimate must move the
right way and land within its stated tolerance."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from degradations import SEVERITIES, Degradation, degrade_lowres, sample_rng
from PIL import Image

from facerestore.analysis import (
    AUTO_SCALE_PIXELS,
    Damage,
    FaceMeasures,
    advise,
    analyse_faces,
    auto_scale,
    jpeg_quality,
    measure_face,
)
from facerestore.cli import main
from facerestore.detection import Face, create_detector, detect_faces
from facerestore.image_io import Picture, decode_image, encode_image, load_image, picture_from_array
from facerestore.pipeline import RestoreOptions, Restorer

FACES = ("ffhq/00002.png", "celeba-hq/female_052599.jpg", "celeba-hq/male_094805.jpg")
MTF50_BLUR = math.pi / math.sqrt(
    2 * math.log(2)
)  # a Gaussian of sigma px halves contrast at 1/(2 x 2.67 sigma)


@pytest.fixture(scope="module")
def sharp_faces(shared_dir: Path) -> list[tuple[np.ndarray, Face]]:
    """Sharp 512 px faces and their detections."""
    detector = create_detector("retinaface")
    found = []
    for name in FACES:
        pixels = cv2.resize(load_image(shared_dir / "data/hq" / name).pixels, (512, 512), cv2.INTER_AREA)
        found.append((pixels, max(detect_faces(detector, pixels), key=lambda face: face.width)))
    return found


def degraded_measures(faces: list[tuple[np.ndarray, Face]], damage: Degradation) -> list[FaceMeasures]:
    """Each face degraded (at its low resolution, as a photo holding a small face) and measured there."""
    measures = []
    for index, (pixels, face) in enumerate(faces):
        lowres = degrade_lowres(pixels, damage, sample_rng(13, index, damage.describe()))
        measures.append(measure_face(lowres, face.scaled(lowres.shape[0] / 512)))
    return measures


def true_effective_width(face: Face, damage: Degradation) -> float:
    """The width of a sharp face with the same detail: the smaller of the downscaled width and the width at
    which the blur's MTF 50 sits at Nyquist."""
    return face.width * min(1 / damage.factor, 1 / (MTF50_BLUR * damage.sigma))


def mean_ratio(faces: list[tuple[np.ndarray, Face]], damage: Degradation) -> float:
    measures = degraded_measures(faces, damage)
    ratios = [
        m.effective_width / true_effective_width(f, damage) for m, (_, f) in zip(measures, faces, strict=True)
    ]
    return float(np.mean(ratios))


def test_effective_width_follows_downscaling(sharp_faces: list[tuple[np.ndarray, Face]]) -> None:
    widths = []
    for factor in (1.0, 2.0, 4.0, 8.0):
        damage = Degradation(sigma=0.1, factor=factor, noise=0.0, quality=95)
        widths.append(np.mean([m.effective_width for m in degraded_measures(sharp_faces, damage)]))
        assert 0.8 <= mean_ratio(sharp_faces, damage) <= 1.1, factor
    assert widths == sorted(widths, reverse=True)


def test_effective_width_follows_blur(sharp_faces: list[tuple[np.ndarray, Face]]) -> None:
    widths = []
    for sigma in (1.0, 2.0, 4.0, 8.0):
        damage = Degradation(sigma=sigma, factor=1.0, noise=0.0, quality=95)
        widths.append(np.mean([m.effective_width for m in degraded_measures(sharp_faces, damage)]))
        assert 0.75 <= mean_ratio(sharp_faces, damage) <= 1.3, sigma
    assert widths == sorted(widths, reverse=True)


def test_noise_estimate_follows_added_noise(sharp_faces: list[tuple[np.ndarray, Face]]) -> None:
    readings = []
    for noise in (0.0, 5.0, 10.0, 20.0):
        damage = Degradation(sigma=0.1, factor=1.0, noise=noise, quality=100)
        readings.append(np.mean([m.noise for m in degraded_measures(sharp_faces, damage)]))
    assert readings == sorted(readings)
    assert readings[0] < 2.0
    for noise, reading in zip((5.0, 10.0, 20.0), readings[1:], strict=True):
        assert abs(reading - noise) <= 0.1 * noise + 0.5, (noise, reading)


@pytest.mark.parametrize("quality", [40, 75, 95])
def test_jpeg_quality_is_read_from_the_quantization_tables(shared_dir: Path, quality: int) -> None:
    pixels = load_image(shared_dir / "data/hq/ffhq/00004.png").pixels
    with_pillow = io.BytesIO()
    Image.fromarray(pixels).save(with_pillow, "JPEG", quality=quality)
    ok, with_opencv = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    for data in (with_pillow.getvalue(), with_opencv.tobytes()):
        assert jpeg_quality(decode_image(data).jpeg_tables) == quality
    as_png = decode_image(encode_image(picture_from_array(pixels), "png"))
    assert as_png.jpeg_tables is None and jpeg_quality(as_png.jpeg_tables) is None


def test_roll_follows_rotation_and_yaw_flips_in_a_mirror(sharp_faces: list[tuple[np.ndarray, Face]]) -> None:
    """Landmarks are the detector's, so the tolerances are its error: roll within 6 degrees of the turn, a
    mirrored face's yaw within 10 degrees of the negated yaw."""
    detector = create_detector("retinaface")
    for pixels, face in sharp_faces:
        upright = measure_face(pixels, face)
        assert abs(upright.roll) < 5
        for angle in (-15.0, 15.0):
            turned = cv2.warpAffine(
                pixels,
                cv2.getRotationMatrix2D((256, 256), angle, 1.0),
                (512, 512),
                borderMode=cv2.BORDER_REFLECT,
            )
            found = max(detect_faces(detector, turned), key=lambda f: f.width)
            assert abs(measure_face(turned, found).roll - (upright.roll - angle)) <= 6
        mirrored = np.ascontiguousarray(pixels[:, ::-1])
        found = max(detect_faces(detector, mirrored), key=lambda f: f.width)
        assert abs(measure_face(mirrored, found).yaw + upright.yaw) <= 10


# -- advice and 'auto' settings ------------------------------------------------------------------------------


def test_analyze_command_reads_each_file_and_goes_on_after_a_bad_one(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path
) -> None:
    pixels = load_image(shared_dir / "data/hq/ffhq/00006.png").pixels
    photo = tmp_path / "face-q70.jpg"
    Image.fromarray(cv2.resize(pixels, (400, 400), interpolation=cv2.INTER_AREA)).save(photo, quality=70)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:300])
    code = main(["-q", "analyze", str(broken), str(photo), "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert [line for line in captured.err.splitlines() if line.startswith("error:")] == [
        line for line in captured.err.splitlines() if "broken.jpg" in line
    ]
    bad, good = json.loads(captured.out)
    assert bad["error"] and good["size"] == [400, 400] and good["scale"] == 2.0
    [face] = good["faces"]
    assert face["analysis"]["jpeg_quality"] == 70
    assert set(face["analysis"]["advice"]) == {
        "damage",
        "scale",
        "face_model",
        "download",
        "strength",
        "outcome",
        "identity_warning",
    }
    assert main(["-q", "analyze", str(photo)]) == 0
    assert "face 1:" in capsys.readouterr().out


def face_picture(shared_dir: Path, damage: Degradation, side: int) -> Picture:
    """A hq face degraded at 512 px, brought to ``side`` px, in the middle of a plain grey photo."""
    pixels = cv2.resize(load_image(shared_dir / "data/hq/ffhq/00008.png").pixels, (512, 512), cv2.INTER_AREA)
    lowres = degrade_lowres(pixels, damage, sample_rng(5, 0, "picture"))
    canvas = np.full((2 * side, 2 * side, 3), 128, np.uint8)
    canvas[side // 2 : side // 2 + side, side // 2 : side // 2 + side] = cv2.resize(
        lowres, (side, side), interpolation=cv2.INTER_CUBIC
    )
    return picture_from_array(canvas)


@pytest.mark.parametrize("blend", ["auto", 1.0])
def test_face_model_auto_keeps_a_sharp_clean_face_and_restores_a_damaged_one(
    shared_dir: Path, blend: float | str
) -> None:
    """'auto' keeps a clean face at any blend (it lost 14 dB through x4plus at 1x); a damaged one is restored
    with the advised restorer under blend 'auto', with the plan's model under a numeric blend."""
    options = RestoreOptions(scale=1, blend=blend, bg_upsampler="none")
    clean = face_picture(shared_dir, SEVERITIES["clean"], 400)
    result = Restorer(options).restore(clean)
    [kept] = result.faces
    assert kept.model == "none" and kept.blend == 0 and kept.analysis is not None
    assert kept.analysis.advice.damage is Damage.NONE and kept.to_dict()["kept"]
    assert np.array_equal(result.picture.pixels, clean.pixels)
    damaged = face_picture(shared_dir, SEVERITIES["moderate"], 400)
    restorer = Restorer(options)
    [restored] = restorer.restore(damaged).faces
    assert restored.analysis is not None and restored.analysis.advice.damage is not Damage.NONE
    expected = restored.analysis.advice.face_model if blend == "auto" else restorer.plan.face_model.name
    assert restored.model == expected and restored.to_dict()["kept"] is None
    assert restored.blend == (restored.analysis.advice.strength if blend == "auto" else blend)


def test_a_named_face_model_restores_every_face(shared_dir: Path) -> None:
    options = RestoreOptions(scale=1, face_model="realesr-compact-x2", bg_upsampler="none")
    clean = face_picture(shared_dir, SEVERITIES["clean"], 400)
    result = Restorer(options).restore(clean)
    [face] = result.faces
    assert face.analysis is not None and face.analysis.advice.damage is Damage.NONE
    assert face.model == "realesr-compact-x2" and face.blend == 1
    assert not np.array_equal(result.picture.pixels, clean.pixels)


def test_a_clips_frames_skip_the_analysis_unless_an_auto_value_needs_it(shared_dir: Path) -> None:
    picture = face_picture(shared_dir, SEVERITIES["moderate"], 400)
    fixed = RestoreOptions(scale=1, bg_upsampler="none", face_model="realesr-compact-x4")
    [face] = Restorer(fixed).restore(picture, analyse=False).faces
    assert face.analysis is None and face.model == "realesr-compact-x4"
    [face] = Restorer(fixed.model_copy(update={"blend": "auto"})).restore(picture, analyse=False).faces
    assert face.analysis is not None, "blend 'auto' is chosen from the analysis"


def test_a_clips_frames_take_the_plans_face_model_for_auto(shared_dir: Path) -> None:
    """Without the analysis, 'auto' restores even a face the analysis would keep, with the plan's model."""
    restorer = Restorer(RestoreOptions(scale=1, bg_upsampler="none"))
    [face] = restorer.restore(face_picture(shared_dir, SEVERITIES["clean"], 400), analyse=False).faces
    assert face.analysis is None and face.model == restorer.plan.face_model.name and face.blend == 1


def test_heavily_damaged_faces_carry_the_benchmarks_identity_warning() -> None:
    installed = ("realesrgan-x4plus", "realesr-compact-x2", "realesr-compact-x4")
    sharp = FaceMeasures(width=200, yaw=0, roll=0, effective_width=190, noise=0.5, jpeg_quality=95)
    smeared = FaceMeasures(width=200, yaw=0, roll=0, effective_width=20, noise=0.5, jpeg_quality=95)
    blurred = FaceMeasures(width=200, yaw=0, roll=0, effective_width=50, noise=0.5, jpeg_quality=95)
    assert advise(sharp, installed).identity_warning is None
    assert advise(blurred, installed).damage is Damage.MODERATE
    assert advise(blurred, installed).identity_warning is None, "1 in 18 moderate faces lost: under the risk"
    warned = advise(smeared, installed)
    assert warned.damage is Damage.SEVERE and "identity uncertain" in (warned.identity_warning or "")


def test_auto_scale_follows_the_smallest_important_face_within_the_budget(shared_dir: Path) -> None:
    restorer = Restorer(RestoreOptions(scale="auto", bg_upsampler="none"))
    small = face_picture(shared_dir, SEVERITIES["clean"], 80)  # a face ~45 px wide
    assert restorer.restore(small).scale == 4.0
    large = face_picture(shared_dir, SEVERITIES["clean"], 400)
    assert restorer.restore(large).scale == 2.0
    analyses = analyse_faces(large, restorer.detect(large))
    assert auto_scale((6000, 4000), analyses) == 1.0
    assert auto_scale((4000, 3000), analyses) == pytest.approx(math.sqrt(AUTO_SCALE_PIXELS / 12e6), abs=0.01)
    assert auto_scale((4000, 3000), ()) == auto_scale((4000, 3000), analyses)
