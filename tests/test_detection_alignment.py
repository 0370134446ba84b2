"""Detection on real photos, alignment to the FFHQ template, and the warp round trip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from facerestore.alignment import align_face, alignment_affine, crop_footprint, template_points, warp_back
from facerestore.detection import DetectionOptions, Face, RetinaFace, YuNet, detect_faces, pyramid_scales


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
