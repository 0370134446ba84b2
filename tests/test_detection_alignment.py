"""Detection on real photos, alignment to the FFHQ template, and the warp round trip."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from facerestore import detection
from facerestore.alignment import align_face, alignment_affine, crop_footprint, template_points, warp_back
from facerestore.detection import (
    SECOND_LOOK_MIN_WIDTH,
    SECOND_LOOK_SCORE,
    SURE_FACE_SCORE,
    DetectionOptions,
    Face,
    RetinaFace,
    YuNet,
    confirm_doubtful_faces,
    detect_faces,
    pyramid_scales,
    second_look_score,
)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.ascontiguousarray(image[..., ::-1])


@pytest.fixture(scope="module")
def retinaface() -> RetinaFace:
    return RetinaFace()


def test_each_portrait_has_exactly_one_face(retinaface: RetinaFace, shared_dir: Path) -> None:
    portraits = sorted((shared_dir / "data/real/portraits").glob("*.jpg"))
    assert len(portraits) == 4
    for path in portraits:
        faces = detect_faces(retinaface, read_rgb(path))
        assert len(faces) == 1, f"{path.name}: {[f.to_dict() for f in faces]}"


def test_old_print_has_both_children(retinaface: RetinaFace, shared_dir: Path) -> None:
    faces = detect_faces(retinaface, read_rgb(shared_dir / "data/real/gfpgan-whole/00.jpg"))
    assert len(faces) == 2
    for face in faces:
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
        x1, y1, x2, y2 = face.box
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face.landmarks)


def test_yunet_through_the_registry_agrees(retinaface: RetinaFace, shared_dir: Path) -> None:
    image = read_rgb(shared_dir / "data/real/gfpgan-whole/00.jpg")
    yunet = YuNet(shared_dir / "models/face_detection_yunet_2023mar.onnx")
    ours = detect_faces(retinaface, image)
    theirs = detect_faces(yunet, image)
    assert len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        assert np.linalg.norm(a.landmark_array() - b.landmark_array(), axis=1).mean() < 0.1 * a.width


def test_group_photo_finds_every_face(retinaface: RetinaFace, shared_dir: Path) -> None:
    faces = detect_faces(retinaface, read_rgb(shared_dir / "data/real/misc/children-alpha.png"))
    assert len(faces) == 5


def test_small_faces_in_a_large_photo_are_found_once(retinaface: RetinaFace, shared_dir: Path) -> None:
    """Six copies of a two-person photo shrunk to ~55 px faces on a 4000 px canvas (13 px at the whole-photo
    level, too small there): the pyramid's tiled level finds each face exactly once, tile borders included."""
    face_photo = read_rgb(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg")
    small = cv2.resize(face_photo, (240, 159), interpolation=cv2.INTER_AREA)
    canvas = np.full((2600, 4000, 3), 120, np.uint8)
    spots = [(300, 400), (300, 1900), (300, 3500), (2000, 600), (2000, 2100), (1000 - 80, 1960 - 120)]
    for y, x in spots:
        canvas[y : y + 159, x : x + 240] = small
    faces = detect_faces(retinaface, canvas)
    assert len(faces) == 2 * len(spots), [f.to_dict() for f in faces]  # two people in each copy
    assert len(pyramid_scales(2600, 4000, DetectionOptions())) == 2


def test_no_face_and_tiny_images(retinaface: RetinaFace) -> None:
    assert detect_faces(retinaface, np.full((300, 400, 3), 200, np.uint8)) == []
    assert detect_faces(retinaface, np.zeros((1, 1, 3), np.uint8)) == []


def test_selection_options(retinaface: RetinaFace, shared_dir: Path) -> None:
    image = read_rgb(shared_dir / "data/real/misc/children-alpha.png")
    everyone = detect_faces(retinaface, image)
    largest = detect_faces(retinaface, image, DetectionOptions(only_largest_face=True))
    centre = detect_faces(retinaface, image, DetectionOptions(only_center_face=True))
    assert len(largest) == len(centre) == 1
    assert largest[0].width == max(f.width for f in everyone)
    assert detect_faces(retinaface, image, DetectionOptions(min_face_size=1000)) == []
    with pytest.raises(ValidationError, match="threshold"):
        DetectionOptions(threshold=1.5)


def test_aligned_hq_faces_land_on_the_template(retinaface: RetinaFace, shared_dir: Path) -> None:
    """The HQ faces were aligned FFHQ-style (from 68 dlib points), so after our 5-point similarity fit the
    eyes and mouth corners land within a few pixels of the template at 512 (the nose moves with head pose)."""
    paths = sorted((shared_dir / "data/hq").glob("*/*"))
    assert len(paths) == 56
    template = template_points(512)
    residuals = []
    for path in paths:
        image = cv2.resize(read_rgb(path), (512, 512), interpolation=cv2.INTER_AREA)
        faces = detect_faces(retinaface, image)
        assert len(faces) == 1, path.name
        affine = alignment_affine(faces[0], 512)
        mapped = faces[0].landmark_array() @ affine[:, :2].T + affine[:, 2]
        residuals.append(np.linalg.norm(mapped - template, axis=1))
    errors = np.array(residuals)
    assert errors[:, :2].mean() < 6.0, errors[:, :2].mean(axis=0)  # eyes
    assert errors[:, 3:].mean() < 11.0, errors[:, 3:].mean(axis=0)  # mouth corners
    assert np.median(errors) < 8.0


def test_warp_round_trip_is_under_a_pixel(retinaface: RetinaFace, shared_dir: Path) -> None:
    image = read_rgb(shared_dir / "data/real/gfpgan-whole/00.jpg")
    face = detect_faces(retinaface, image)[0]
    aligned = align_face(image, face, 512)
    x, y, w, h = crop_footprint(aligned.affine, 512, image.shape[:2])
    back = warp_back(aligned.crop.astype(np.float32), aligned.affine, (x, y, w, h), cv2.INTER_CUBIC)
    original = image[y : y + h, x : x + w].astype(np.float32)
    inner = (slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4))
    gray_back = cv2.cvtColor(back[inner], cv2.COLOR_RGB2GRAY)
    gray_original = cv2.cvtColor(original[inner], cv2.COLOR_RGB2GRAY)
    (dx, dy), _ = cv2.phaseCorrelate(gray_original.astype(np.float64), gray_back.astype(np.float64))
    assert np.hypot(dx, dy) < 1.0
    assert np.abs(back[inner] - original[inner]).mean() < 3.0
    points = face.landmark_array()
    crop_points = points @ aligned.affine[:, :2].T + aligned.affine[:, 2]
    inverse = cv2.invertAffineTransform(aligned.affine)
    assert np.abs(crop_points @ inverse[:, :2].T + inverse[:, 2] - points).max() < 1e-3


def test_face_at_the_border_aligns_without_smearing(retinaface: RetinaFace, shared_dir: Path) -> None:
    image = read_rgb(shared_dir / "data/real/gfpgan-whole/00.jpg")
    face = detect_faces(retinaface, image)[0]
    x1, _, x2, _ = (int(v) for v in face.box)
    cut = np.ascontiguousarray(image[:, x1 + (x2 - x1) // 3 :])  # a third of the face is off the left edge
    faces = detect_faces(retinaface, cut)
    assert faces, "a face cut by the border should still be found"
    aligned = align_face(cut, faces[0], 512)
    column_spread = aligned.crop[:, :64].std(axis=0).mean()
    assert column_spread > 5, "mirrored context, not a smear of repeated edge pixels"


def test_face_scaled_keeps_geometry() -> None:
    face = Face(box=(10, 20, 50, 80), score=0.9, landmarks=((20, 40), (40, 40), (30, 55), (22, 65), (38, 65)))
    doubled = face.scaled(2)
    assert doubled.box == (20, 40, 100, 160) and doubled.landmarks[2] == (60, 110)
    assert doubled.to_dict()["landmarks"]["nose"] == [60, 110]


# -- the second look at doubtful detections ------------------------------------------------------------------

REAL_PHOTOS = (
    "gfpgan-whole/00.jpg",
    "gfpgan-whole/10045.png",
    "gfpgan-whole/Blake_Lively.jpg",
    "misc/00017_gray.png",
    "misc/children-alpha.png",
    "portraits/angelina_jolie.jpg",
    "portraits/kate_siegel.jpg",
    "portraits/paul_rudd.jpg",
    "portraits/shea_whigham.jpg",
)


def all_trusted(
    retinaface: RetinaFace, image: np.ndarray, options: DetectionOptions | None = None
) -> list[Face]:
    """The detections as they were before the second look existed."""
    with mock.patch.object(detection, "SURE_FACE_SCORE", 0.0):
        return detect_faces(retinaface, image, options)


def old_print_at(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """Shrunk, blurred, gray and grainy, as an old print; and the factor it was shrunk by."""
    factor = long_side / max(image.shape[:2])
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(cv2.GaussianBlur(small, (0, 0), 1.2), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grain = np.random.default_rng(0).normal(0, 8, gray.shape)
    return np.repeat(np.clip(gray + grain, 0, 255).astype(np.uint8)[..., None], 3, axis=2), factor


def test_every_real_face_survives_the_second_look(retinaface: RetinaFace, shared_dir: Path) -> None:
    """Every face of the real photos, sharp and as old prints down to faces of ~12 px, is kept; and each wide
    enough for a second look passes it with a margin, even where its first score is sure (forced look)."""
    looked = []
    for name in REAL_PHOTOS:
        photo = read_rgb(shared_dir / "data/real" / name)
        centres = [f.center for f in detect_faces(retinaface, photo) if f.score >= SURE_FACE_SCORE]
        for image, factor in ((photo, 1.0), *(old_print_at(photo, side) for side in (400, 250, 160))):
            kept = detect_faces(retinaface, image)
            scales = pyramid_scales(*image.shape[:2], DetectionOptions())
            for face in all_trusted(retinaface, image):
                if not any(in_box(face, x * factor, y * factor) for x, y in centres):
                    continue
                assert face in kept, f"{name} at {image.shape}: {face.to_dict()}"
                if face.width >= SECOND_LOOK_MIN_WIDTH:
                    score = second_look_score(retinaface, image, face, scales)
                    assert score >= SECOND_LOOK_SCORE + 0.1, (
                        f"{name} at {image.shape}: {face.to_dict()} -> {score}"
                    )
                looked.append(face)
    assert len(looked) >= 65
    assert min(f.width for f in looked) < 15 and min(f.score for f in looked) < 0.7  # faint faces among them


def in_box(face: Face, x: float, y: float) -> bool:
    x1, y1, x2, y2 = face.box
    return x1 <= x <= x2 and y1 <= y <= y2


def test_a_real_hand_is_dropped(retinaface: RetinaFace, shared_dir: Path) -> None:
    """A child's fingers in Blake_Lively.jpg, at the size of a face in a group photo: RetinaFace takes them
    for a face at 0.61 (as it did the hands in the issue), and the second look drops them."""
    photo = read_rgb(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg")
    close_up = cv2.resize(photo[283:, 25:265], None, fx=64 / 120, fy=64 / 120, interpolation=cv2.INTER_AREA)
    lenient = DetectionOptions(threshold=0.5)  # the test holds if the hand's score drifts a little
    (hand,) = all_trusted(retinaface, close_up, lenient)
    assert 0.55 < hand.score < 0.7 and hand.width > 50
    assert detect_faces(retinaface, close_up, lenient) == []


def test_hair_beside_an_aligned_face_is_dropped(retinaface: RetinaFace, shared_dir: Path) -> None:
    """Hair curls in the top left corner of a real aligned crop score 0.79 as a face; the second look drops
    them and keeps the face itself. (Two other false boxes there, at 0.79 and 0.62, pass the second look.)"""
    image = read_rgb(shared_dir / "data/real/codeformer-cropped/0500.png")
    before, after = all_trusted(retinaface, image), detect_faces(retinaface, image)
    (curls,) = [f for f in before if f.center[0] < 100 and f.center[1] < 100]
    assert curls not in after and len(after) == len(before) - 1
    assert max(after, key=lambda f: f.width).score > 0.99


def test_confident_faces_cost_no_second_look(retinaface: RetinaFace) -> None:
    sure = Face(
        box=(10, 10, 60, 70),
        score=SURE_FACE_SCORE,
        landmarks=((25, 35), (45, 35), (35, 45), (28, 55), (42, 55)),
    )
    with mock.patch.object(retinaface, "session") as session:
        assert confirm_doubtful_faces(retinaface, np.zeros((100, 100, 3), np.uint8), [sure], [1.0]) == [sure]
    session.run.assert_not_called()


def test_yunet_detections_are_not_second_guessed(shared_dir: Path) -> None:
    """The thresholds are calibrated on RetinaFace's scores; YuNet's run lower and are left as they are."""
    yunet = YuNet(shared_dir / "models/face_detection_yunet_2023mar.onnx")
    doubtful = Face(box=(0, 0, 40, 50), score=0.5, landmarks=((10, 20),) * 5)
    assert confirm_doubtful_faces(yunet, np.zeros((60, 60, 3), np.uint8), [doubtful], [1.0]) == [doubtful]
