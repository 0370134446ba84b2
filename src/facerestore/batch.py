"""Batches: expand inputs, plan output paths, restore each picture, and record what happened.

One bad file never stops the rest: each picture's failure is captured in its record.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerestore.errors import FaceRestoreError, ImageError, OptionError, option, spell_options
from facerestore.files import leftover_temporaries, write_atomically
from facerestore.image_io import (
    SUPPORTED_EXTENSIONS,
    Picture,
    load_image,
    picture_from_array,
    save_image,
)
from facerestore.options import BatchOptions
from facerestore.pipeline import ProgressCallback, Restorer, RestoreResult
from facerestore.pixels import resize
from facerestore.video import VIDEO_EXTENSIONS, VideoReport, is_video, restore_video

WRITABLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
COMPARE_MAX_HEIGHT = 1600
INPUT_EXTENSIONS = (*SUPPORTED_EXTENSIONS, *VIDEO_EXTENSIONS)  # what a folder is searched for


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass
class ImageRecord:
    """What happened to one input: the report's row."""

    input: str
    output: str | None = None
    size_in: list[int] | None = None
    size_out: list[int] | None = None
    scale: float | None = None  # the scale applied ('auto' resolved)
    faces: list[dict[str, Any]] = field(default_factory=list)  # each with its analysis
    face_model: str | None = None
    bg_upsampler: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    video: dict[str, Any] | None = None  # for a clip: frames, rate, duration, streams copied, faces restored
    error: str | None = None
    resumed: bool = False  # the output existed and --resume kept it


def _is_pattern(text: str) -> bool:
    return any(char in text for char in "*?[")


def expand_inputs(inputs: Iterable[str]) -> list[tuple[Path, Path]]:
    """(file, root) pairs: folders are searched recursively for image files; root keeps sub-folder layout."""
    found: list[tuple[Path, Path]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in (*SUPPORTED_EXTENSIONS, *VIDEO_EXTENSIONS)
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


def real_path(path: Path) -> Path:
    """The path with links followed; unlike Path.resolve, a link loop is no error here (reading the file
    reports it, as for any unreadable input)."""
    return Path(os.path.realpath(path))


def output_extension(source: Path, extension: str) -> str:
    """A clip keeps its container; a picture takes the chosen format, else its own where it can be written."""
    if is_video(source):
        return source.suffix.lower()
    if extension != "auto":
        return "." + extension
    suffix = source.suffix.lower()
    return suffix if suffix in WRITABLE_EXTENSIONS else ".png"


def plan_jobs(inputs: Iterable[str], options: BatchOptions) -> list[Job]:
    jobs = []
    for source, root in expand_inputs(inputs):
        relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
        name = f"{relative.stem}{options.suffix}{output_extension(source, options.encoding.format)}"
        jobs.append(Job(source=source, target=options.output / relative.parent / name))
    return jobs


def check_outputs(options: BatchOptions, jobs: Sequence[Job]) -> None:
    """Refuses before the first image what would fail for every image or lose a result: an output folder
    that is a file, two inputs writing one output, a report that would replace an input or another file."""
    _check_writable_folder(options.output)
    targets: dict[Path, Job] = {}
    for job in jobs:
        earlier = targets.setdefault(real_path(job.target), job)
        if earlier is not job:
            raise OptionError(
                f"{earlier.source} and {job.source} would both be written to {job.target}: "
                f"give them different names or restore them separately"
            )
    if options.report is not None:
        _check_report_path(options.report, options.overwrite, {real_path(job.source) for job in jobs})


def _check_writable_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"{option('output')} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise OptionError(
            f"{option('output')} {folder}: cannot write there ({error.strerror or error})"
        ) from None


def _check_report_path(report: Path, overwrite: bool, sources: set[Path]) -> None:
    if real_path(report) in sources:
        raise OptionError(f"{option('report')} {report} is one of the inputs")
    if report.exists() and not overwrite:
        raise OptionError(f"{option('report')} {report} exists (set {option('overwrite')} to replace it)")


def write_report(records: Sequence[ImageRecord], options: BatchOptions) -> None:
    assert options.report is not None
    options.report.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(options.report, json.dumps([vars(record) for record in records], indent=2).encode())


def check_target(job: Job, overwrite: bool) -> None:
    if real_path(job.target) == real_path(job.source):
        raise ImageError(
            f"{job.target}: output would replace the input "
            f"(choose another {option('output')} or {option('suffix')})"
        )
    if job.target.exists() and not overwrite:
        raise ImageError(f"{job.target}: exists (set {option('overwrite')} to replace it)")


def settled_record(job: Job, options: BatchOptions, spell: Callable[[str], str] = str) -> ImageRecord | None:
    """The record of a job with nothing to restore: its output exists and is kept (``resume``; outputs are
    written whole or not at all, so one that exists is complete), or it may not be written."""
    if options.resume and job.target.exists():
        return ImageRecord(input=str(job.source), output=str(job.target), resumed=True)
    try:
        check_target(job, options.overwrite)
    except ImageError as error:
        return ImageRecord(input=str(job.source), error=error.render(spell))
    return None


def remove_leftovers(jobs: Iterable[Job]) -> None:
    """Removes temporary files that killed writers left beside the jobs' outputs."""
    for job in jobs:
        for temp in leftover_temporaries(job.target):
            temp.unlink(missing_ok=True)


def comparison_image(before: Picture, after: Picture) -> np.ndarray:
    """Input (enlarged to the output's size) beside the output, at most COMPARE_MAX_HEIGHT tall."""
    height = min(after.height, COMPARE_MAX_HEIGHT)
    width = round(after.width * height / after.height)
    left = resize(before.pixels, (height, width))
    right = resize(after.pixels, (height, width))
    gap = np.full((height, max(4, width // 100), 3), np.iinfo(left.dtype).max, dtype=left.dtype)
    return np.ascontiguousarray(np.hstack([left, gap, right]))


def _save_extras(result: RestoreResult, picture: Picture, job: Job, options: BatchOptions) -> None:
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


def _restore_picture(
    restorer: Restorer,
    job: Job,
    options: BatchOptions,
    record: ImageRecord,
    progress: ProgressCallback | None,
) -> None:
    start = time.perf_counter()
    picture = load_image(job.source, max_pixels=options.max_pixels)
    decode = time.perf_counter() - start
    record.size_in = [picture.width, picture.height]
    result = restorer.restore(picture, progress=progress, keep_crops=options.save_faces)
    start = time.perf_counter()
    save_image(result.picture, job.target, overwrite=options.overwrite, quality=options.encoding.quality)
    record.timings = {
        "decode": round(decode, 4),
        **result.timings,
        "encode": round(time.perf_counter() - start, 4),
    }
    _save_extras(result, picture, job, options)
    record.output = str(job.target)
    record.size_out = [result.picture.width, result.picture.height]
    record.scale = result.scale
    record.faces = [face.to_dict() for face in result.faces]
    record.face_model, record.bg_upsampler = result.face_model, result.bg_upsampler


def _restore_clip(
    restorer: Restorer,
    job: Job,
    options: BatchOptions,
    record: ImageRecord,
    progress: ProgressCallback | None,
) -> None:
    report = progress or (lambda stage, done, total: None)
    clip = restore_video(
        job.source,
        job.target,
        restorer,
        options.video,
        progress=lambda done, total: report("frames", done, total or 0),
        max_pixels=options.max_pixels,
    )
    fill_clip_record(record, job, clip)


def fill_clip_record(record: ImageRecord, job: Job, clip: VideoReport) -> None:
    record.output = str(job.target)
    record.size_in, record.size_out = clip.size_in, clip.size_out
    record.face_model, record.bg_upsampler = clip.face_model, clip.bg_upsampler
    record.timings = clip.timings
    record.video = {
        key: value
        for key, value in clip.to_dict().items()
        if key not in ("size_in", "size_out", "face_model", "bg_upsampler", "timings")
    }


def process(
    restorer: Restorer,
    job: Job,
    options: BatchOptions,
    progress: ProgressCallback | None = None,
    *,
    debug: bool = False,
    spell: Callable[[str], str] = str,
) -> ImageRecord:
    """Restores one job into its record; ``spell`` writes the option names that error messages mention."""
    record = settled_record(job, options, spell)
    if record is not None:
        return record
    record = ImageRecord(input=str(job.source))
    try:
        if is_video(job.source):
            _restore_clip(restorer, job, options, record, progress)
        else:
            _restore_picture(restorer, job, options, record, progress)
    except FaceRestoreError as error:
        record.error = error.render(spell)
    except MemoryError:
        hint = f"out of memory (try a smaller {option('tile')} or {option('max_pixels')})"
        record.error = spell_options(hint, spell)
    except Exception as error:  # a bug must not cost the rest of the batch; --debug shows the traceback
        if debug:
            traceback.print_exc()
        record.error = f"internal error: {type(error).__name__}: {error}"
    return record


def run_batch(
    restorer: Restorer,
    jobs: list[Job],
    options: BatchOptions,
    on_record: Callable[[ImageRecord], None] | None = None,
    progress_for: Callable[[Job], ProgressCallback | None] | None = None,
    *,
    debug: bool = False,
    spell: Callable[[str], str] = str,
) -> list[ImageRecord]:
    records = []
    for job in jobs:
        progress = progress_for(job) if progress_for else None
        record = process(restorer, job, options, progress, debug=debug, spell=spell)
        records.append(record)
        if on_record:
            on_record(record)
    remove_leftovers(jobs)
    return records
