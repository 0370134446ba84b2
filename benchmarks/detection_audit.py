"""Detection audit: faces found, missed and false on every real photo in ../shared/data and on harder cases
built from them, before and after the second look at doubtful detections (detection.SURE_FACE_SCORE).

    python benchmarks/detection_audit.py [--seed 0] [--group "whole photos" ...] [--detector yunet]
                                         [--out bench-output/detection-audit] [--sheets]

"Before" is the same search with every detection trusted; "after" is detect_faces as shipped. Prints each
image with a doubtful (score < SURE_FACE_SCORE) or wrong detection, then the totals per set and the margin
between the second-look scores of real faces and of false ones; the full listing of every image and detection
goes to detections.txt under --out. --sheets also draws each listed image's detections there as PNG contact
sheets (green: face, red: false, orange: dropped by the second look, cyan cross: a face the truth expects).
--seed draws other old prints, hand close-ups and collages: a held-out check of the calibration (seed 0).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
from detection_cases import GROUPS, Case, all_cases

from facerestore import detection
from facerestore.detection import DetectionOptions, Face, SingleScaleDetector, create_detector, detect_faces

REPO = Path(__file__).resolve().parents[1]
PARTIAL_MATCH = 0.6  # a detection this close to a cut face's centre (in its widths) is that face


@dataclass
class Detection:
    face: Face
    label: str  # "face", "false" or "partial" (a face cut by the border: counts neither way)
    kept: bool
    second_look: float | None  # None: sure enough that no second look was taken


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, case: Case, detections: list[Detection], seconds: dict[str, float]) -> None:
        self.counts.update({"images": 1, "faces": len(case.faces), **seconds})
        for stage, chosen in (("before", detections), ("after", [d for d in detections if d.kept])):
            found = sum(d.label == "face" for d in chosen)
            self.counts[f"{stage} found"] += found
            self.counts[f"{stage} missed"] += len(case.faces) - found
            self.counts[f"{stage} false"] += sum(d.label == "false" for d in chosen)
            self.counts[f"{stage} cut"] += sum(d.label == "partial" for d in chosen)


def shared_root() -> Path:
    configured = os.environ.get("FACERESTORE_SHARED")
    return Path(configured) if configured else REPO.parent / "shared"


def label_detections(case: Case, faces: list[Face]) -> list[str]:
    """Each detection is the face whose centre its box holds (best score first, each face once), a cut face,
    or false."""
    free = list(case.faces)
    labels = {}
    for face in sorted(faces, key=lambda f: -f.score):
        x1, y1, x2, y2 = face.box
        hit = next(((x, y, w) for x, y, w in free if x1 <= x <= x2 and y1 <= y <= y2), None)
        if hit is not None:
            free.remove(hit)
            labels[id(face)] = "face"
        elif any(math.dist(face.center, (x, y)) < PARTIAL_MATCH * w for x, y, w in case.partial):
            labels[id(face)] = "partial"
        else:
            labels[id(face)] = "false"
    return [labels[id(face)] for face in faces]


def audit_case(detector: SingleScaleDetector, case: Case) -> tuple[list[Detection], dict[str, float]]:
    """Every detection trusted ("before"), those detect_faces keeps ("after"), and the seconds each took."""
    start = time.perf_counter()
    with mock.patch.object(detection, "SURE_FACE_SCORE", 0.0):
        before = detect_faces(detector, case.image)
    middle = time.perf_counter()
    after = detect_faces(detector, case.image)
    seconds = {"before s": middle - start, "after s": time.perf_counter() - middle}
    kept = {face.box for face in after}
    height, width = case.image.shape[:2]
    scales = detection.pyramid_scales(height, width, DetectionOptions())
    detections = [
        Detection(
            face,
            label,
            face.box in kept,
            None
            if face.score >= detection.SURE_FACE_SCORE or face.width < detection.SECOND_LOOK_MIN_WIDTH
            else detection.second_look_score(detector, case.image, face, scales),
        )
        for face, label in zip(before, label_detections(case, before), strict=True)
    ]
    return detections, seconds


def geometry(face: Face) -> str:
    """Landmark figures: eye distance over box width, eye-line roll, and where the nose and mouth centre sit
    across the eye line (0: midway between the eyes, +-0.5: under an eye; profiles go beyond)."""
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmark_array().astype(np.float64)
    eyes = right_eye - left_eye
    distance = float(np.hypot(*eyes)) + 1e-6
    across = eyes / distance
    middle = (left_eye + right_eye) / 2
    nose_x = float((nose - middle) @ across) / distance
    mouth_x = float(((mouth_left + mouth_right) / 2 - middle) @ across) / distance
    roll = math.degrees(math.atan2(eyes[1], eyes[0]))
    return f"eyes/w {distance / face.width:.2f} roll {roll:+4.0f} nose {nose_x:+.2f} mouth {mouth_x:+.2f}"


def describe(found: Detection) -> str:
    face = found.face
    look = "     -" if found.second_look is None else f"{found.second_look:6.2f}"
    fate = "kept" if found.kept else "DROPPED"
    return f"    {face.score:.3f}  w {face.width:5.0f}  {geometry(face)}  2nd {look}  {found.label:7s} {fate}"


def noteworthy(case: Case, detections: list[Detection]) -> bool:
    found = sum(d.label == "face" for d in detections)
    return found < len(case.faces) or any(d.second_look is not None or d.label == "false" for d in detections)


def margins(all_detections: list[Detection]) -> list[str]:
    """The second-look scores nearest the threshold: real faces' lowest, false detections' around it."""
    looked = [d for d in all_detections if d.second_look is not None and d.label != "partial"]

    def scores(label: str, kept: bool | None = None) -> list[float]:
        return sorted(d.second_look or 0.0 for d in looked if d.label == label and kept in (None, d.kept))

    def listed(values: list[float]) -> str:
        return f"({len(values)}): " + ", ".join(f"{v:.2f}" for v in values[:5])

    return [
        f"Second look (threshold {detection.SECOND_LOOK_SCORE}), over {len(looked)} doubtful detections:",
        f"  real faces, lowest {listed(scores('face'))}",
        f"  false and dropped by it, highest {listed(scores('false', kept=False)[::-1])}",
        f"  false and kept by it, lowest {listed(scores('false', kept=True))}",
    ]


def table(tallies: dict[str, Tally]) -> list[str]:
    """Found / missed / false per set, before and after; cut faces (centre outside the image) count apart."""
    lines = [
        "| set | images | faces | before: found / missed / false | after: found / missed / false "
        "| cut faces found, before → after | detection seconds, before → after |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total = Tally()
    for group, tally in tallies.items():
        lines.append(_row(group, tally.counts))
        total.counts.update(tally.counts)
    lines.append(_row("**all**", total.counts))
    return lines


def _row(name: str, counts: Counter[str]) -> str:
    before, after = (
        " / ".join(str(counts[f"{stage} {kind}"]) for kind in ("found", "missed", "false"))
        for stage in ("before", "after")
    )
    return (
        f"| {name} | {counts['images']} | {counts['faces']} | {before} | {after} "
        f"| {counts['before cut']} → {counts['after cut']} "
        f"| {counts['before s']:.1f} → {counts['after s']:.1f} |"
    )


def contact_sheet(cases: list[tuple[Case, list[Detection]]], path: Path, tile: int = 320) -> None:
    tiles = []
    for case, detections in cases:
        image = np.ascontiguousarray(case.image[..., ::-1]).copy()
        factor = tile / max(image.shape[:2])
        image = cv2.resize(
            image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        )
        for x, y, _ in case.faces:
            cv2.drawMarker(
                image, (round(x * factor), round(y * factor)), (255, 255, 0), cv2.MARKER_CROSS, 8, 1
            )
        for found in detections:
            colour = (
                (0, 140, 255) if not found.kept else (0, 200, 0) if found.label != "false" else (0, 0, 255)
            )
            x1, y1, x2, y2 = (round(v * factor) for v in found.face.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 1)
            cv2.putText(
                image,
                f"{found.face.score:.2f}",
                (x1, max(9, y1 - 2)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.33,
                colour,
                1,
            )
        canvas = np.zeros((tile + 14, tile, 3), np.uint8)
        canvas[: image.shape[0], : image.shape[1]] = image
        cv2.putText(
            canvas, case.name[-48:], (2, tile + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1
        )
        tiles.append(canvas)
    columns = 5
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), np.vstack(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group", action="append", choices=GROUPS, help="only these sets (repeatable)")
    parser.add_argument("--detector", default="retinaface", choices=detection.DETECTORS)
    parser.add_argument("--out", type=Path, default=REPO / "bench-output/detection-audit")
    parser.add_argument("--sheets", action="store_true")
    args = parser.parse_args(argv)
    root = shared_root()
    if not (root / "data").is_dir():
        sys.exit(f"no photos under {root} (set FACERESTORE_SHARED)")
    model = root / "models/face_detection_yunet_2023mar.onnx" if args.detector == "yunet" else None
    detector = create_detector(args.detector, model_path=model)
    args.out.mkdir(parents=True, exist_ok=True)
    header = [
        f"Detection audit, {datetime.datetime.now().isoformat(timespec='seconds')}, {platform.node()}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.detector}, seed {args.seed}",
        f"second look below score {detection.SURE_FACE_SCORE}, for faces from "
        f"{detection.SECOND_LOOK_MIN_WIDTH} px wide, kept at >= {detection.SECOND_LOOK_SCORE}",
    ]
    print("\n".join(header), flush=True)
    tallies: dict[str, Tally] = {}
    listing, everything = [*header, ""], []
    sheets: dict[str, list[tuple[Case, list[Detection]]]] = {}
    for case in all_cases(root / "data", args.seed, tuple(args.group or GROUPS)):
        detections, seconds = audit_case(detector, case)
        tallies.setdefault(case.group, Tally()).add(case, detections, seconds)
        everything += detections
        lines = [f"{case.group} | {case.name}: {len(case.faces)} faces expected"] + [
            describe(d) for d in detections
        ]
        listing += lines
        if noteworthy(case, detections):
            print("\n".join(lines), flush=True)
            sheets.setdefault(case.group, []).append((case, detections))
    summary = ["", *table(tallies), "", *margins(everything)]
    print("\n".join(summary))
    (args.out / "detections.txt").write_text("\n".join(listing + summary) + "\n", encoding="utf-8")
    if args.sheets:
        for group, cases in sheets.items():
            for start in range(0, len(cases), 40):
                contact_sheet(
                    cases[start : start + 40], args.out / f"{group.replace(' ', '-')}-{start // 40}.png"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
