"""Faces followed across frames: identity by overlap, landmark jitter smoothed without lagging real motion,
and a scene cut starting every track afresh."""

from __future__ import annotations

import numpy as np

from facerestore import tracking
from facerestore.detection import Face

FPS = 30.0
EYES_AND_MOUTH = np.array([[35, 40], [65, 40], [50, 55], [38, 72], [62, 72]], dtype=np.float64)


def face_at(x: float, y: float, jitter: np.ndarray | None = None) -> Face:
    points = EYES_AND_MOUTH + (x, y) + (0 if jitter is None else jitter)
    return Face((x, y, x + 100, y + 100), 0.99, tuple((float(px), float(py)) for px, py in points))


def second_difference(series: list[np.ndarray]) -> float:
    stacked = np.stack(series)
    return float(np.abs(stacked[2:] - 2 * stacked[1:-1] + stacked[:-2]).mean())


def test_a_still_face_keeps_one_id_and_its_jitter_is_smoothed() -> None:
    rng = np.random.default_rng(0)
    state, raw, smoothed, ids = tracking.Tracks(), [], [], set()
    for index in range(60):
        jittered = face_at(200, 100, rng.normal(0, 1.5, (5, 2)))
        state, [tracked] = tracking.step(state, [jittered], index / FPS)
        raw.append(jittered.landmark_array())
        smoothed.append(tracked.face.landmark_array())
        ids.add(tracked.track_id)
    assert ids == {0}
    assert second_difference(smoothed) < 0.35 * second_difference(raw)


def test_a_moving_face_is_followed_without_lag() -> None:
    state = tracking.Tracks()
    for index in range(45):  # a third of a face width per second
        state, [tracked] = tracking.step(state, [face_at(100 + index, 100)], index / FPS)
    lag = np.abs(tracked.face.landmark_array() - face_at(144, 100).landmark_array()).max()
    assert lag < 3.0  # pixels, on a 100 px face


def test_two_faces_keep_their_ids_and_a_new_one_gets_its_own() -> None:
    state, _ = tracking.step(tracking.Tracks(), [face_at(0, 0), face_at(300, 0)], 0.0)
    state, tracked = tracking.step(state, [face_at(302, 1), face_at(2, 1), face_at(600, 0)], 1 / FPS)
    assert [item.track_id for item in tracked] == [1, 0, 2]


def test_a_scene_cut_starts_afresh() -> None:
    state, _ = tracking.step(tracking.Tracks(), [face_at(0, 0)], 0.0)
    state, [tracked] = tracking.step(state, [face_at(5, 0)], 1 / FPS, scene_cut=True)
    assert tracked.track_id == 1
    assert np.allclose(tracked.face.landmark_array(), face_at(5, 0).landmark_array())
    dark, bright = np.zeros((90, 160, 3), np.uint8), np.full((90, 160, 3), 200, np.uint8)
    assert tracking.is_scene_cut(tracking.thumbnail(dark), tracking.thumbnail(bright))
    assert not tracking.is_scene_cut(tracking.thumbnail(dark), tracking.thumbnail(dark + 3))


def test_a_face_the_detector_misses_briefly_goes_on_where_its_track_was_heading() -> None:
    """Predicted for FILL_GAP_FRAMES frames where the smoothed track would have been, had the detector seen
    it: the paste goes on without a jump; then no more, and never across a scene cut."""
    state = tracking.Tracks()
    for index in range(20):  # half a face width per second
        state, _ = tracking.step(state, [face_at(100 + 5 * index / 3, 100)], index / FPS)
    seen, missed = state, state
    for index in range(20, 21 + tracking.FILL_GAP_FRAMES):
        seen, [tracked] = tracking.step(seen, [face_at(100 + 5 * index / 3, 100)], index / FPS)
        missed, _ = tracking.step(missed, [], index / FPS)
        filled = tracking.predicted(missed, index / FPS)
        if index - 20 == tracking.FILL_GAP_FRAMES:
            assert filled == []
            break
        [item] = filled
        assert item.track_id == tracked.track_id == 0
        assert np.abs(item.face.landmark_array() - tracked.face.landmark_array()).max() < 0.5  # px
        assert np.abs(np.subtract(item.face.box, tracked.face.box)).max() < 3.0  # px; boxes are not smoothed
    assert tracking.predicted(tracking.step(state, [face_at(0, 0)], 1.0, scene_cut=True)[0], 1.0) == []
