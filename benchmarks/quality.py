"""Quality benchmark: how well facerestore restores faces, against classical baselines, in one run.

    python benchmarks/quality.py [--quick] [--out bench-output/quality] [--docs docs/benchmarks.md]
    python benchmarks/quality.py --subsets clean,severe --faces 2    # a quick look while iterating
    python benchmarks/quality.py --faces 10 --real 1 --pipeline 3     # every set, fewer slow runs

A synthetic set in the style of the CelebA-Test protocol is built (fixed seed) from the sharp faces in
../shared/data/hq: a random draw per face plus fixed clean, mild, moderate and severe subsets. Every method
restores every degraded face; PSNR/SSIM (Y), landmark distance, detection, colour shift, seam visibility and
a NIQE-style naturalness score are measured, and the real degraded sets in ../shared/data/real are scored
before and after restoration. The automatic choice (each face's analysis picks restorer and strength) is
compared with the best single method of each set. Writes results.md, results.json and contact sheets to
--out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import dlib_identity
import numpy as np
from degradations import SEVERITIES, Degradation, degrade_lowres, random_degradation, sample_rng, upsample
from learned_metrics import LearnedMetrics, frechet_distance
from metrics import colour_shift, landmark_distance, matching_face, psnr_y, registration_shift, ssim_y
from niqe import NaturalnessModel
from quality_methods import (
    AlignedRestorer,
    AutomaticRestorer,
    Bicubic,
    Degraded,
    FullPipeline,
    LanczosUnsharp,
    Method,
    restorer_models,
)
from quality_report import (
    Record,
    auto_table,
    contact_sheet,
    detection_line,
    identity_table,
    machine,
    machine_line,
    markdown_table,
    real_table,
    save_png,
    short_label,
    summarise,
    winners,
    write_json,
)
from tqdm import tqdm

from facerestore.detection import DetectionOptions, Face, create_detector, detect_faces
from facerestore.image_io import load_image

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_SETS = ("gfpgan-cropped", "codeformer-cropped", "codeformer-gray")
LMD_REFERENCE = 512  # landmark distances are given in pixels of a 512-px face, whatever the working size


@dataclass(frozen=True)
class Settings:
    size: int  # working face side
    random_faces: int | None  # how many faces get a random draw (None: all)
    severity_faces: int  # faces per fixed-severity subset
    pipeline_per_subset: int | None  # the full pipeline runs on the first N images of each subset (None: all)
    real_per_set: int | None
    sheet_per_subset: int
    sheet_side: int
    seed: int = 2024
    quick: bool = False
    subsets: tuple[str, ...] = ("random", *SEVERITIES)


FULL = Settings(
    size=512,
    random_faces=None,
    severity_faces=8,
    pipeline_per_subset=16,
    real_per_set=8,
    sheet_per_subset=2,
    sheet_side=256,
)
QUICK = Settings(
    size=256,
    random_faces=1,
    severity_faces=1,
    pipeline_per_subset=1,
    real_per_set=1,
    sheet_per_subset=1,
    sheet_side=192,
    quick=True,
)
DOCS_SHEET_SIDE = 176
DOCS_REAL_SIDE = 128


@dataclass
class Sample:
    face_index: int
    path: Path
    subset: str
    params: Degradation
    truth: np.ndarray
    degraded: Degraded

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


@dataclass
class Context:
    settings: Settings
    methods: list[Method]
    detector: Any
    naturalness: NaturalnessModel
    learned: LearnedMetrics
    dlib_identity: dlib_identity.DlibIdentity | None
    truth_faces: dict[int, Face | None] = field(default_factory=dict)
    sheet_rows: list[tuple[str, str, list[tuple[str, np.ndarray]]]] = field(default_factory=list)
    inception: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)


# -- data ----------------------------------------------------------------------------------------------------


def shared_root(configured: str | None) -> Path:
    root = configured or os.environ.get("FACERESTORE_SHARED")
    return Path(root) if root else REPO_ROOT.parent / "shared"


def sharp_faces(shared: Path) -> list[Path]:
    paths = sorted(p for p in (shared / "data" / "hq").glob("*/*") if p.suffix.lower() in {".png", ".jpg"})
    if not paths:
        sys.exit(f"no sharp faces found in {shared / 'data' / 'hq'} (set FACERESTORE_SHARED or --shared)")
    return paths


def read_rgb(path: Path, side: int) -> np.ndarray:
    pixels = load_image(path).pixels
    if pixels.dtype != np.uint8:
        pixels = (pixels // 257).astype(np.uint8)
    return cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class PlanItem:
    face_index: int
    subset: str
    with_pipeline: bool


def spread(count: int, chosen: int | None) -> list[int]:
    """``chosen`` indices spread evenly over range(count) (all of them for None)."""
    if chosen is None or chosen >= count:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, chosen).round()})


def plan(settings: Settings, face_count: int) -> list[PlanItem]:
    """Quick mode gives each subset its own face; the full run draws a random degradation for every face and
    applies each fixed severity to the same evenly spread faces. The pipeline runs on an even spread too."""
    if settings.quick:
        return [PlanItem(i % face_count, s, True) for i, s in enumerate(settings.subsets)]
    items = []
    for subset in settings.subsets:
        faces = spread(face_count, settings.random_faces if subset == "random" else settings.severity_faces)
        with_pipeline = {faces[i] for i in spread(len(faces), settings.pipeline_per_subset)}
        items += [PlanItem(face, subset, face in with_pipeline) for face in faces]
    return items


def make_sample(path: Path, face_index: int, subset: str, settings: Settings) -> Sample:
    rng = sample_rng(settings.seed, face_index, subset)
    params = random_degradation(rng) if subset == "random" else SEVERITIES[subset]
    lowres = degrade_lowres(read_rgb(path, 512), params, rng)
    degraded = Degraded(lowres, upsample(lowres, settings.size))
    return Sample(face_index, path, subset, params, read_rgb(path, settings.size), degraded)


# -- measuring ----------------------------------------------------------------------------------------------


def find_face(
    context: Context, image: np.ndarray, truth: Face | None, single_scale: bool = True
) -> Face | None:
    """The detected face matching the ground truth's. The faces here fill the image, so outputs are searched
    at their own size only (the default pyramid also searches at 2x, for small faces: 5x the time)."""
    if truth is None:
        return None
    side = max(image.shape[:2])
    options = DetectionOptions(base_side=side, max_side=side) if single_scale else DetectionOptions()
    return matching_face(detect_faces(context.detector, image, options), truth)


def truth_face(context: Context, sample: Sample) -> Face | None:
    if sample.face_index not in context.truth_faces:
        faces = detect_faces(context.detector, sample.truth)
        context.truth_faces[sample.face_index] = max(faces, key=lambda f: f.width * f.height, default=None)
    return context.truth_faces[sample.face_index]


def measure(context: Context, sample: Sample, output: np.ndarray, truth: Face | None) -> dict[str, Any]:
    found = find_face(context, output, truth)
    figures: dict[str, Any] = {
        "psnr": psnr_y(output, sample.truth),
        "ssim": ssim_y(output, sample.truth),
        "shift": registration_shift(output, sample.truth) * LMD_REFERENCE / context.settings.size,
        "delta_e": colour_shift(sample.degraded.image, output),
        "niqe": context.naturalness.score(output),
        "face_found": found is not None,
        "lmd": None,
    }
    if found is not None and truth is not None:
        figures["lmd"] = landmark_distance(found, truth) * LMD_REFERENCE / context.settings.size
    learned = context.learned
    if learned.lpips:
        figures["lpips"] = learned.lpips(output, sample.truth)
    if learned.identity and truth is not None:
        figures["identity"] = learned.identity(output, sample.truth, truth)
    if context.dlib_identity and truth is not None:
        figures["id_distance"] = context.dlib_identity(output, sample.truth, truth)
    return figures


def run_sample(context: Context, sample: Sample, with_pipeline: bool) -> Record:
    truth = truth_face(context, sample)
    record: Record = {
        "face": sample.name,
        "subset": sample.subset,
        "degradation": sample.params.to_dict(),
        "lowres_side": int(sample.degraded.lowres.shape[0]),
        "input_face_detected": find_face(context, sample.degraded.image, truth, single_scale=False)
        is not None,
        "truth_niqe": context.naturalness.score(sample.truth),
        "methods": {},
    }
    tiles = [(short_label(Bicubic.name) + " = input", sample.degraded.image)]
    for method in context.methods:
        if isinstance(method, FullPipeline) and not with_pipeline:
            continue
        record["methods"][method.name], output = run_method(context, method, sample, truth)
        if not isinstance(method, Bicubic):
            tiles.append((short_label(method.name), output))
    keep_for_fid(context, sample.subset, "ground truth", sample.truth)
    shown = sum(sample.subset == s for s, _, _ in context.sheet_rows)
    if with_pipeline and shown < context.settings.sheet_per_subset:
        caption = f"{sample.subset}: {sample.params.describe()}"
        context.sheet_rows.append((sample.subset, caption, [*tiles, ("ground truth", sample.truth)]))
    return record


def run_method(
    context: Context, method: Method, sample: Sample, truth: Face | None
) -> tuple[dict[str, Any], np.ndarray]:
    """One method on one sample: its figures (timed) and its output."""
    start = time.perf_counter()
    output = method.run(sample.degraded)
    seconds = time.perf_counter() - start
    keep_for_fid(context, sample.subset, method.name, output.image)
    figures = {**measure(context, sample, output.image, truth), **output.extras, "seconds": seconds}
    return figures, output.image


def keep_for_fid(context: Context, subset: str, method: str, image: np.ndarray) -> None:
    if context.learned.inception:
        context.inception.setdefault((subset, method), []).append(context.learned.inception(image))


def add_fid(context: Context, rows: list[Record]) -> None:
    for row in rows:
        features = context.inception.get((row["subset"], row["method"]))
        truth = context.inception.get((row["subset"], "ground truth"))
        if features and truth and row["method"] != "ground truth" and len(features) > 1:
            row["fid"] = frechet_distance(np.array(features), np.array(truth))


# -- real degraded sets -------------------------------------------------------------------------------------


def real_images(shared: Path, settings: Settings) -> list[tuple[str, Path]]:
    chosen = []
    for name in REAL_SETS:
        paths = sorted((shared / "data" / "real" / name).glob("*.png"))
        chosen += [(name, p) for p in paths[: settings.real_per_set]]
    return chosen


def run_real(context: Context, restorer: AlignedRestorer, name: str, path: Path) -> tuple[Record, np.ndarray]:
    before = read_rgb(path, context.settings.size)
    start = time.perf_counter()
    after = restorer.run(Degraded(before, before)).image
    seconds = time.perf_counter() - start
    detections = [detect_faces(context.detector, image) for image in (before, after)]
    record = {
        "set": name,
        "file": path.name,
        "niqe_before": context.naturalness.score(before),
        "niqe_after": context.naturalness.score(after),
        "delta_e": colour_shift(before, after),
        "face_found_before": bool(detections[0]),
        "face_found_after": bool(detections[1]),
        "seconds": seconds,
    }
    return record, after


# -- outputs ------------------------------------------------------------------------------------------------


def synthetic_sheet(context: Context, side: int, per_subset: int) -> np.ndarray:
    counts: dict[str, int] = {}
    rows, captions = [], []
    for subset, caption, tiles in context.sheet_rows:
        counts[subset] = counts.get(subset, 0) + 1
        if counts[subset] <= per_subset:
            rows.append(tiles)
            captions.append(caption)
    return contact_sheet(rows, captions, side)


def real_sheet(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], side: int, per_set: int) -> np.ndarray:
    """Rows of before | after pairs, one row per real set."""
    rows, captions = [], []
    for name in dict.fromkeys(p[0] for p in pairs):
        chosen = [p for p in pairs if p[0] == name][:per_set]
        rows.append([tile for _, before, after in chosen for tile in (("before", before), ("after", after))])
        captions.append(name)
    return contact_sheet(rows, captions, side)


METHOD_NOTES = """\
- Methods: `bicubic` is the degraded input itself; `(aligned)` rows run one face restorer through the
  engine's aligned-crop path (`--aligned`) at 1x; the `pipeline` row runs detect → align → restore → paste
  back on the degraded face pasted into a real photo twice its size (scikit-image's coffee cup), at 1x with
  no background network, and the face is cropped back out.
- PSNR/SSIM on Y (BT.601). LMD: mean distance between our RetinaFace's 5 landmarks on the output and on the
  ground truth, in px of a 512 face (faces it finds only). Shift: displacement of the whole output from the
  ground truth (ECC image registration), px of a 512 face: a geometry error, ~0 when nothing moved.
  Face found: our detector, searching at the output's own scale, finds the face (the detection-rate line
  below uses the engine's default search).
- ΔE: mean CIE76 ΔE between input and output after a low-pass (σ = side/32): colour and lighting shift.
- NIQE: NIQE-style distance to a multivariate Gaussian of natural-scene statistics fitted on the sharp faces
  (lower is more natural; the ground-truth rows are in-sample, so a floor).
- Seam: gradient across the paste border vs around it, relative to the unrestored picture (1.0 = no seam).
- id dist: Euclidean distance between dlib's face descriptors of output and ground truth, both aligned with
  the ground truth's landmarks (0 = same picture; dlib calls faces under 0.6 the same person); with the
  `identity` extra installed (`benchmarks/dlib_identity.py`).
- `auto (aligned)`: the aligned path with `--face-model auto --blend auto`: each face's analysis
  (`facerestore analyze`) picks the restorer and the blend strength."""


def protocol_line(seed: int, face_count: int, size: int) -> str:
    subsets = ", ".join(
        f"{name} (σ {p.sigma:g}, r {p.factor:g}, δ {p.noise:g}, q {p.quality})"
        for name, p in SEVERITIES.items()
    )
    return (
        f"Synthetic set (CelebA-Test style, seed {seed}): the {face_count} sharp faces of `shared/data/hq` "
        "at 512 px, degraded as y = JPEG_q(downsample_r(x ⊛ Gaussian_σ) + noise_δ) with σ∈[0.1, 10], "
        f"r∈[0.8, 8], δ∈[0, 20], q∈[60, 100] drawn per face (random set), plus fixed subsets {subsets}; "
        f"upsampled back and evaluated at {size} px."
    )


def report_markdown(document: Record, sheet: str, real_sheet_name: str | None) -> str:
    settings, info = document["settings"], document["machine"]
    lines = [
        "## Quality",
        "",
        f"Measured {machine_line(info)}; took {document['elapsed_s'] / 60:.1f} min.",
        f"Command: `{document['command']}`",
        "",
        protocol_line(settings["seed"], document["sharp_faces"], settings["size"]),
        "",
        METHOD_NOTES,
        "",
        markdown_table(document["summary"]),
        "",
        winners(document["summary"]),
        "",
        "The automatic choice (`--face-model auto --blend auto`: each face's analysis picks the restorer "
        "and its strength) against the best single method of each set, on the same images, and against "
        "the input:",
        "",
        auto_table(document["images"], AutomaticRestorer.name, Bicubic.name),
        "",
        *identity_lines(document["images"]),
        detection_line(document["images"], document["pipeline_method"]),
        "",
        "Real degraded sets (no ground truth), before and after the default restorer "
        f"({document['real_method']}):",
        "",
        real_table(document["real"]),
        "",
        skipped_line(document["skipped_models"], document["skipped_metrics"]),
        "",
        f"![quality contact sheet]({sheet})",
    ]
    if real_sheet_name:
        lines += ["", f"![real degraded faces, before and after]({real_sheet_name})"]
    return "\n".join(lines) + "\n"


def identity_lines(records: Sequence[Record]) -> list[str]:
    """The identity table by damage class, with its heading, when dlib measured identity."""
    table = identity_table(records, AutomaticRestorer.name, Bicubic.name)
    if not table:
        return []
    heading = "Identity by the damage class the analysis gave (dlib distance from the ground truth; mean):"
    return [heading, "", table, ""]


def skipped_line(models: Sequence[str], metrics: Sequence[str]) -> str:
    """Models skipped for the same reason are named together (results.json has each one's full reason)."""
    by_reason: dict[str, list[str]] = {}
    for line in models:
        name, reason = line.split(": ", 1)
        by_reason.setdefault(reason.split(" (")[0], []).append(name)
    parts = [f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()]
    return "Skipped models: " + "; ".join(parts) + ". Skipped metrics: " + "; ".join(metrics) + "."


def update_docs(path: Path, section: str) -> None:
    """Replaces the '## Quality' section of the docs file (up to the next '## ' heading), or appends it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start = text.find("## Quality")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        following = text.find("\n## ", start + 1)
        rest = text[following + 1 :] if following >= 0 else ""
        text = text[:start] + section + ("\n" + rest if rest else "")
    path.write_text(text, encoding="utf-8")


# -- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 faces at 256 px (CI)")
    parser.add_argument("--out", type=Path, default=Path("bench-output/quality"))
    parser.add_argument("--shared", help="the shared data folder (default: FACERESTORE_SHARED or ../shared)")
    parser.add_argument("--docs", type=Path, help="also write the '## Quality' section and its pictures here")
    parser.add_argument("--seed", type=int, default=FULL.seed)
    parser.add_argument(
        "--subsets", help=f"comma-separated sets to run (default all: {', '.join(('random', *SEVERITIES))})"
    )
    parser.add_argument(
        "--faces", type=int, help="faces per set (default: all for random, 8 per severity and real set)"
    )
    parser.add_argument("--real", type=int, help="images per real degraded set (default: 8, or --faces)")
    parser.add_argument("--pipeline", type=int, help="images per set the full pipeline runs on (default: 16)")
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    options = (" --quick" if args.quick else "") + (f" --docs {args.docs}" if args.docs else "")
    options += (f" --subsets {args.subsets}" if args.subsets else "") + (
        f" --faces {args.faces}" if args.faces else ""
    )
    options += (f" --real {args.real}" if args.real else "") + (
        f" --pipeline {args.pipeline}" if args.pipeline else ""
    )
    return "python benchmarks/quality.py" + options


def chosen_settings(args: argparse.Namespace) -> Settings:
    settings = replace(QUICK if args.quick else FULL, seed=args.seed)
    if args.faces:
        settings = replace(
            settings, random_faces=args.faces, severity_faces=args.faces, real_per_set=args.faces
        )
    if args.subsets:
        settings = replace(settings, subsets=tuple(args.subsets.split(",")))
    if args.real:
        settings = replace(settings, real_per_set=args.real)
    if args.pipeline:
        settings = replace(settings, pipeline_per_subset=args.pipeline)
    return settings


def build_methods() -> tuple[list[Method], list[str], FullPipeline]:
    runnable, skipped = restorer_models()
    pipeline = FullPipeline("auto")
    methods: list[Method] = [
        Bicubic(),
        LanczosUnsharp(),
        *(AlignedRestorer(m) for m in runnable),
        pipeline,
        AutomaticRestorer(),
    ]
    return methods, skipped, pipeline


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = chosen_settings(args)
    started = time.perf_counter()
    info = machine()
    print(f"facerestore quality benchmark, {machine_line(info)}", flush=True)
    shared = shared_root(args.shared)
    paths = sharp_faces(shared)
    args.out.mkdir(parents=True, exist_ok=True)

    methods, skipped_models, pipeline = build_methods()
    naturalness = NaturalnessModel.fit([read_rgb(p, settings.size) for p in paths])
    identity, identity_skipped = dlib_identity.load()
    context = Context(
        settings, methods, create_detector("retinaface"), naturalness, LearnedMetrics.load(), identity
    )
    items = plan(settings, len(paths))
    reals = real_images(shared, settings)
    default_restorer = next(
        m for m in methods if isinstance(m, AlignedRestorer) and m.face_model == pipeline.face_model
    )

    records, real_records, real_pairs = [], [], []
    with tqdm(total=len(items) + len(reals), unit="img", desc="synthetic", dynamic_ncols=True) as progress:
        for item in items:
            sample = make_sample(paths[item.face_index], item.face_index, item.subset, settings)
            records.append(run_sample(context, sample, item.with_pipeline))
            progress.update()
        progress.set_description("real sets")
        for name, path in reals:
            record, after = run_real(context, default_restorer, name, path)
            real_records.append(record)
            real_pairs.append((name, read_rgb(path, settings.size), after))
            progress.update()

    summary = summarise(records, [m.name for m in methods])
    add_fid(context, summary)
    document: Record = {
        "command": command_line(args),
        "machine": info,
        "settings": settings.__dict__,
        "sharp_faces": len(paths),
        "pipeline_method": pipeline.name,
        "real_method": default_restorer.name,
        "skipped_models": skipped_models,
        "skipped_metrics": context.learned.skipped + ([identity_skipped] if identity_skipped else []),
        "niqe_model_patches": naturalness.patch_count,
        "summary": summary,
        "images": records,
        "real": real_records,
    }
    document["elapsed_s"] = time.perf_counter() - started
    write_outputs(args, context, document, real_pairs)
    print(f"done in {document['elapsed_s']:.0f} s; results in {args.out}", flush=True)
    return 0


def write_outputs(
    args: argparse.Namespace,
    context: Context,
    document: Record,
    real_pairs: list[tuple[str, np.ndarray, np.ndarray]],
) -> None:
    settings = context.settings
    out = args.out
    save_png(
        out / "contact-synthetic.png",
        synthetic_sheet(context, settings.sheet_side, settings.sheet_per_subset),
    )
    save_png(out / "contact-real.png", real_sheet(real_pairs, settings.sheet_side, 4))
    write_json(out / "results.json", document)
    (out / "results.md").write_text(report_markdown(document, "contact-synthetic.png", "contact-real.png"))
    print(markdown_table(document["summary"]), flush=True)
    if args.docs:
        docs = args.docs.parent
        save_png(docs / "quality-contact-sheet.png", synthetic_sheet(context, DOCS_SHEET_SIDE, 1))
        save_png(docs / "quality-real-sets.png", real_sheet(real_pairs, DOCS_REAL_SIDE, 4))
        update_docs(
            args.docs, report_markdown(document, "quality-contact-sheet.png", "quality-real-sets.png")
        )


if __name__ == "__main__":
    sys.exit(main())
