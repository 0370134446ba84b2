"""Calibration of the per-face analysis (src/facerestore/analysis.py) on the sharp faces of ../shared/data/hq.

    python benchmarks/auto_calibration.py estimates     # each estimate against the known damage (~1 min)
    python benchmarks/auto_calibration.py policy        # fits the automatic restorer and strength (~10 min)

``estimates`` degrades every third face by known blur, downscaling, noise and JPEG (degradations.py) and
prints the mean ratio of the measured effective width to the true one (the width at which the blur's MTF
50 sits at Nyquist, or the downscaled width) and the measured noise. ``policy`` draws other damage than the
quality benchmark (seed 7, not 2024), runs every super-resolution restorer on every face through the
aligned path at 1x, scores each at blends 0 to 1 (PSNR on Y), and grid-searches the damage-class limits and
each class's restorer and blend for the best mean PSNR: the values in analysis.py.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from degradations import SEVERITIES, Degradation, degrade_lowres, random_degradation, sample_rng, upsample
from metrics import psnr_y
from quality import read_rgb, shared_root, sharp_faces
from quality_methods import AlignedRestorer, Degraded

from facerestore.analysis import FaceMeasures, measure_face
from facerestore.detection import Face, create_detector, detect_faces

MTF50_BLUR = math.pi / math.sqrt(2 * math.log(2))  # Gaussian sigma -> downscale factor with MTF 50 at Nyquist
ESTIMATE_CASES = (
    Degradation(0.1, 1, 0, 95),
    Degradation(1, 1, 0, 95),
    Degradation(2, 1, 0, 95),
    Degradation(4, 1, 0, 95),
    Degradation(8, 1, 0, 95),
    Degradation(0.1, 2, 0, 95),
    Degradation(0.1, 4, 0, 95),
    Degradation(0.1, 8, 0, 95),
    Degradation(0.1, 1, 5, 100),
    Degradation(0.1, 1, 10, 100),
    Degradation(0.1, 1, 20, 100),
    Degradation(2, 1, 10, 100),
    *SEVERITIES.values(),
)
POLICY_SEED = 7
RESTORERS = ("realesr-compact-x2", "realesr-compact-x4", "realesrgan-x4plus")
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
WHOLE = Face(box=(0.0, 0.0, 512.0, 512.0), score=1.0, landmarks=())


def estimates(paths: Sequence[Path]) -> None:
    detector = create_detector("retinaface")
    faces = []
    for path in paths[::3]:
        pixels = read_rgb(path, 512)
        faces.append((pixels, max(detect_faces(detector, pixels), key=lambda face: face.width)))
    print("| damage | effective width / truth | noise read (sigma added) |\n|---|---:|---:|")
    for damage in ESTIMATE_CASES:
        ratios, noise = [], []
        for index, (pixels, face) in enumerate(faces):
            lowres = degrade_lowres(pixels, damage, sample_rng(1, index, "estimates"))
            measures = measure_face(lowres, face.scaled(lowres.shape[0] / 512))
            truth = face.width * min(1 / damage.factor, 1 / (MTF50_BLUR * damage.sigma))
            ratios.append(measures.effective_width / truth)
            noise.append(measures.noise)
        print(
            f"| {damage.describe()} | {np.mean(ratios):.2f} ± {np.std(ratios):.2f} | "
            f"{np.mean(noise):.1f} ± {np.std(noise):.1f} ({damage.noise:g}) |"
        )


@dataclass(frozen=True)
class Scored:
    subset: str
    measures: FaceMeasures
    psnr: dict[tuple[str, float], float]  # (restorer, blend) -> PSNR


def score_faces(paths: Sequence[Path]) -> list[Scored]:
    restorers = [AlignedRestorer(name) for name in RESTORERS]
    items = [(i, "random") for i in range(len(paths))]
    items += [(i, subset) for subset in SEVERITIES for i in range(1, len(paths), 7)]
    scored = []
    for index, subset in items:
        rng = sample_rng(POLICY_SEED, index, subset)
        damage = random_degradation(rng) if subset == "random" else SEVERITIES[subset]
        truth = read_rgb(paths[index], 512)
        lowres = degrade_lowres(truth, damage, rng)
        image = upsample(lowres, 512)
        psnr = {}
        for restorer in restorers:
            restored = restorer.run(Degraded(lowres, image)).image.astype(np.float32)
            for blend in BLENDS:
                mixed = np.clip(blend * restored + (1 - blend) * image + 0.5, 0, 255).astype(np.uint8)
                psnr[(restorer.face_model, blend)] = psnr_y(mixed, truth)
        scored.append(Scored(subset, measure_face(image, WHOLE), psnr))
        print(f"{len(scored)}/{len(items)} {subset} {damage.describe()}", file=sys.stderr, flush=True)
    return scored


def damage_class(measures: FaceMeasures, limits: tuple[float, float, float, float]) -> str:
    mild, moderate, severe, noise = limits
    if measures.sharpness < severe:
        return "severe"
    if measures.sharpness < moderate:
        return "moderate"
    return "mild" if measures.sharpness < mild or measures.noise > noise else "none"


def fit(scored: Sequence[Scored]) -> tuple[tuple[float, float, float, float], dict[str, tuple[str, float]]]:
    """The class limits and each class's (restorer, blend) with the best total PSNR ('none': the input)."""
    keep = (RESTORERS[0], 0.0)
    best: tuple[float, tuple[float, float, float, float], dict[str, tuple[str, float]]] | None = None
    grid = itertools.product(
        (0.6, 0.65, 0.7, 0.8), (0.26, 0.3, 0.35, 0.4), (0.1, 0.13, 0.15, 0.17), (3.0, 4.0, 5.0)
    )
    for limits in (g for g in grid if g[0] > g[1] > g[2]):
        classes: dict[str, list[Scored]] = {}
        for item in scored:
            classes.setdefault(damage_class(item.measures, limits), []).append(item)
        choice = {
            name: keep if name == "none" else max(items[0].psnr, key=lambda o: sum(i.psnr[o] for i in items))
            for name, items in classes.items()
        }
        total = sum(item.psnr[choice[name]] for name, items in classes.items() for item in items)
        if best is None or total > best[0]:
            best = (total, limits, choice)
    assert best is not None
    return best[1], best[2]


def policy(paths: Sequence[Path]) -> None:
    scored = score_faces(paths)
    limits, choice = fit(scored)
    print(f"limits (mild, moderate, severe sharpness; mild noise): {limits}\nchoice: {choice}")
    print("| set | n | auto PSNR | best single restorer | its PSNR | input PSNR |")
    print("|---|---:|---:|---|---:|---:|")
    for subset in ("random", *SEVERITIES):
        items = [item for item in scored if item.subset == subset]
        auto = np.mean([item.psnr[choice[damage_class(item.measures, limits)]] for item in items])
        single = max(RESTORERS, key=lambda name: np.mean([item.psnr[(name, 1.0)] for item in items]))
        best = np.mean([item.psnr[(single, 1.0)] for item in items])
        source = np.mean([item.psnr[(RESTORERS[0], 0.0)] for item in items])
        print(f"| {subset} | {len(items)} | {auto:.2f} | {single} | {best:.2f} | {source:.2f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("estimates", "policy"))
    parser.add_argument("--shared", help="the shared data folder (default: FACERESTORE_SHARED or ../shared)")
    args = parser.parse_args(argv)
    paths = sharp_faces(shared_root(args.shared))
    (estimates if args.part == "estimates" else policy)(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
