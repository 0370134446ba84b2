"""Batches: expand inputs, plan output paths, restore each picture, and record what happened.

One bad file never stops the rest: each picture's failure is captured in its record.
"""

from __future__ import annotations

import glob
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerestore.errors import FaceRestoreError, ImageError
from facerestore.image_io import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    Picture,
    load_image,
    picture_from_array,
    save_image,
)
from facerestore.pipeline import ProgressCallback, Restorer, RestoreResult
from facerestore.upscaling import resize

WRITABLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
COMPARE_MAX_HEIGHT = 1600


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass(frozen=True)
class OutputOptions:
    directory: Path
    extension: str = "auto"  # "auto" keeps the input's format
    suffix: str = ""
    overwrite: bool = False
    quality: int = 95
    save_faces: bool = False
    compare: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class ImageRecord:
    """What happened to one input: the report's row."""

    input: str
    output: str | None = None
    size_in: list[int] | None = None
    size_out: list[int] | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)
    face_model: str | None = None
    bg_upsampler: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _is_pattern(text: str) -> bool:
    return any(char in text for char in "*?[")


def expand_inputs(inputs: Iterable[str]) -> list[tuple[Path, Path]]:
    """(file, root) pairs: folders are searched recursively for image files; root keeps sub-folder layout."""
    found: list[tuple[Path, Path]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
            )
            found.extend((file, path) for file in files)
        elif _is_pattern(text) and not path.exists():
            found.extend(
                (Path(match), Path(match).parent)
                for match in sorted(glob.glob(text, recursive=True))
                if Path(match).is_file()
            )
        else:
            found.append((path, path.parent))
    return found


def output_extension(source: Path, extension: str) -> str:
    if extension != "auto":
        return "." + extension.lower().lstrip(".")
    suffix = source.suffix.lower()
    return suffix if suffix in WRITABLE_EXTENSIONS else ".png"


def plan_jobs(inputs: Iterable[str], options: OutputOptions) -> list[Job]:
    jobs = []
    for source, root in expand_inputs(inputs):
        relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
        name = f"{relative.stem}{options.suffix}{output_extension(source, options.extension)}"
        jobs.append(Job(source=source, target=options.directory / relative.parent / name))
    return jobs


def check_target(job: Job, overwrite: bool) -> None:
    if job.target.resolve() == job.source.resolve():
        raise ImageError(f"{job.target}: output would replace the input (choose another -o or --suffix)")
    if job.target.exists() and not overwrite:
        raise ImageError(f"{job.target}: exists (use --overwrite)")


def comparison_image(before: Picture, after: Picture) -> np.ndarray:
    """Input (enlarged to the output's size) beside the output, at most COMPARE_MAX_HEIGHT tall."""
    height = min(after.height, COMPARE_MAX_HEIGHT)
    width = round(after.width * height / after.height)
    left = resize(before.pixels, (height, width))
    right = resize(after.pixels, (height, width))
    gap = np.full((height, max(4, width // 100), 3), np.iinfo(left.dtype).max, dtype=left.dtype)
    return np.ascontiguousarray(np.hstack([left, gap, right]))


def _save_extras(result: RestoreResult, picture: Picture, job: Job, options: OutputOptions) -> None:
    stem = job.target.stem
    if options.save_faces:
        for index, (before, after) in enumerate(result.crops):
            for label, crop in (("before", before), ("after", after)):
                path = job.target.parent / "faces" / f"{stem}_face{index:02d}_{label}.png"
                save_image(picture_from_array(crop), path, overwrite=options.overwrite)
    if options.compare:
        path = job.target.parent / "compare" / f"{stem}_compare.jpg"
        save_image(
            picture_from_array(comparison_image(picture, result.picture)),
            path,
            overwrite=options.overwrite,
            quality=90,
        )


def process(
    restorer: Restorer,
    job: Job,
    options: OutputOptions,
    progress: ProgressCallback | None = None,
    debug: bool = False,
) -> ImageRecord:
    record = ImageRecord(input=str(job.source))
    try:
        check_target(job, options.overwrite)
        start = time.perf_counter()
        picture = load_image(job.source, max_pixels=options.max_pixels)
        decode = time.perf_counter() - start
        record.size_in = [picture.width, picture.height]
        result = restorer.restore(picture, progress=progress, keep_crops=options.save_faces)
        start = time.perf_counter()
        save_image(result.picture, job.target, overwrite=options.overwrite, quality=options.quality)
        record.timings = {
            "decode": round(decode, 4),
            **result.timings,
            "encode": round(time.perf_counter() - start, 4),
        }
        _save_extras(result, picture, job, options)
        record.output = str(job.target)
        record.size_out = [result.picture.width, result.picture.height]
        record.faces = [face.to_dict() for face in result.faces]
        record.face_model, record.bg_upsampler = result.face_model, result.bg_upsampler
    except FaceRestoreError as error:
        record.error = str(error)
    except MemoryError:
        record.error = "out of memory (try a smaller --tile or --max-pixels)"
    except Exception as error:  # a bug must not cost the rest of the batch; --debug shows the traceback
        if debug:
            traceback.print_exc()
        record.error = f"internal error: {type(error).__name__}: {error}"
    return record


def run_batch(
    restorer: Restorer,
    jobs: list[Job],
    options: OutputOptions,
    on_record: Callable[[ImageRecord], None] | None = None,
    progress_for: Callable[[Job], ProgressCallback | None] | None = None,
    debug: bool = False,
) -> list[ImageRecord]:
    records = []
    for job in jobs:
        record = process(restorer, job, options, progress_for(job) if progress_for else None, debug)
        records.append(record)
        if on_record:
            on_record(record)
    return records
