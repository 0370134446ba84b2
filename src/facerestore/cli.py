"""Command line: a thin shell over the Python API (``Restorer``, ``batch``, ``registry``)."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facerestore import batch, registry, runtime
from facerestore.detection import DETECTORS, DetectionOptions
from facerestore.errors import FaceRestoreError
from facerestore.image_io import DEFAULT_MAX_PIXELS, load_image
from facerestore.pipeline import ProgressCallback, RestoreOptions, Restorer
from facerestore.server import config as server_config
from facerestore.upscaling import BG_UPSAMPLERS, PRECISIONS


def _add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detection")
    group.add_argument("--detector", choices=DETECTORS, default="retinaface")
    group.add_argument("--detector-model-path", metavar="FILE", help="detector model file (YuNet ONNX)")
    group.add_argument("--threshold", type=float, help="face score threshold, 0-1 (default: the detector's)")
    group.add_argument(
        "--min-face-size", type=float, default=10.0, metavar="PX", help="ignore narrower faces"
    )
    group.add_argument("--only-center-face", action="store_true")
    group.add_argument("--only-largest-face", action="store_true")
    group.add_argument(
        "--device", choices=runtime.DEVICES, default="cpu", help="inference device (default cpu)"
    )
    group.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")


def _add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or globs")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("-s", "--scale", type=float, default=2.0, help="output scale, 1-8 (default 2)")
    parser.add_argument(
        "--face-model",
        default="auto",
        help="face restorer: auto (best installed), a registry name (see 'models list'); "
        "codeformer and gpen are licensed for non-commercial use only",
    )
    parser.add_argument(
        "--model-path", metavar="FILE", help="face model file to use instead of the model folder"
    )
    parser.add_argument("--fidelity", type=float, default=0.5, help="CodeFormer: 0 = quality, 1 = fidelity")
    parser.add_argument("--blend", type=float, default=1.0, help="1 = restored face, 0 = original face")
    parser.add_argument(
        "--no-color-fix",
        dest="color_fix",
        action="store_false",
        help="keep the model's own colours instead of the photo's",
    )
    parser.add_argument(
        "--bg-upsampler",
        choices=("auto", *BG_UPSAMPLERS),
        default="auto",
        help="background: auto (x4plus on GPU, compact on CPU), a network, or none (Lanczos)",
    )
    parser.add_argument(
        "--bg-precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="background network arithmetic: auto (int8 for the compact network on a CPU), fp32, int8",
    )
    parser.add_argument("--tile", type=int, default=256, help="background tile size in input pixels")
    parser.add_argument("--aligned", action="store_true", help="inputs are aligned face crops: restore whole")
    out = parser.add_argument_group("output")
    out.add_argument("--ext", default="auto", choices=("auto", "jpg", "png", "webp", "tiff", "bmp"))
    out.add_argument("--suffix", default="", help="added to each output file name")
    out.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    out.add_argument("--save-faces", action="store_true", help="also save aligned crops before/after")
    out.add_argument("--compare", action="store_true", help="also save a side-by-side before/after image")
    out.add_argument("--report", type=Path, metavar="FILE.json", help="write a per-image JSON report")
    _add_detection_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerestore", description="Restore faces in photos, offline.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_restore_arguments(commands.add_parser("restore", help="restore faces and upscale"))
    detect = commands.add_parser("detect", help="list the faces in images")
    detect.add_argument("inputs", nargs="+")
    detect.add_argument("--json", action="store_true", help="print JSON records")
    _add_detection_arguments(detect)
    models = commands.add_parser("models", help="list or download models")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    listing = model_commands.add_parser("list", help="what is installed, what can be downloaded")
    listing.add_argument("--json", action="store_true")
    download = model_commands.add_parser("download", help="download a model with checksum verification")
    download.add_argument("name")
    serve = commands.add_parser("serve", help="web page and HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    server_config.add_arguments(serve)
    return parser


def _detection_options(args: argparse.Namespace) -> DetectionOptions:
    return DetectionOptions(
        score_threshold=args.threshold,
        min_face_size=args.min_face_size,
        only_center_face=args.only_center_face,
        only_largest_face=args.only_largest_face,
    )


def _restore_options(args: argparse.Namespace) -> RestoreOptions:
    return RestoreOptions(
        scale=args.scale,
        face_model=args.face_model,
        model_path=args.model_path,
        bg_upsampler=args.bg_upsampler,
        bg_precision=args.bg_precision,
        fidelity=args.fidelity,
        blend=args.blend,
        color_fix=args.color_fix,
        aligned=args.aligned,
        detector=args.detector,
        detector_model_path=args.detector_model_path,
        detection=_detection_options(args),
        device=args.device,
        tile=args.tile,
    )


def _error_line(source: str, message: str) -> str:
    return f"error: {message}" if message.startswith(source) else f"error: {source}: {message}"


class _StageBar:
    """A transient bar for one picture's slow stages (background tiles, faces)."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name, self.enabled = name, enabled
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or stage not in ("upscale", "faces") or total < 2:
            return
        if self.bar is None or self.bar.desc != f"{self.name} {stage}":
            self.close()
            self.bar = tqdm(
                total=total, desc=f"{self.name} {stage}", unit="step", leave=False, file=sys.stderr
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _note_licence(entry: registry.ModelEntry) -> None:
    if not entry.commercial_use:
        print(f"note: {entry.name} is licensed {entry.licence}", file=sys.stderr)


def _cmd_restore(args: argparse.Namespace) -> int:
    restorer = Restorer(_restore_options(args))
    _note_licence(registry.get_entry(restorer.face_model_name))
    output = batch.OutputOptions(
        directory=args.output,
        extension=args.ext,
        suffix=args.suffix,
        overwrite=args.overwrite,
        quality=args.quality,
        save_faces=args.save_faces,
        compare=args.compare,
        max_pixels=args.max_pixels,
    )
    jobs = batch.plan_jobs(args.inputs, output)
    if not jobs:
        print("error: no input images found", file=sys.stderr)
        return 1
    show = not args.quiet
    overall = tqdm(
        total=len(jobs), desc="images", unit="img", disable=not show or len(jobs) < 2, file=sys.stderr
    )
    stage_bars: list[_StageBar] = []

    def progress_for(job: batch.Job) -> ProgressCallback:
        for old in stage_bars:
            old.close()
        stage_bars[:] = [_StageBar(job.source.name, show)]
        return stage_bars[0]

    def on_record(record: batch.ImageRecord) -> None:
        for bar in stage_bars:
            bar.close()
        if record.error:
            tqdm.write(_error_line(record.input, record.error), file=sys.stderr)
        overall.update(1)

    records = batch.run_batch(restorer, jobs, output, on_record, progress_for, debug=args.debug)
    overall.close()
    failed = [r for r in records if r.error]
    faces = sum(len(r.faces) for r in records)
    print(
        f"{len(records) - len(failed)} of {len(records)} images restored, {faces} faces, {len(failed)} failed"
        f" -> {args.output}",
        file=sys.stderr,
    )
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps([vars(r) for r in records], indent=2))
    return 1 if failed else 0


def _cmd_detect(args: argparse.Namespace) -> int:
    restorer = Restorer(
        RestoreOptions(
            detector=args.detector,
            detector_model_path=args.detector_model_path,
            detection=_detection_options(args),
            device=args.device,
        )
    )
    records: list[dict[str, Any]] = []
    failures = 0
    for source, _ in batch.expand_inputs(args.inputs):
        try:
            picture = load_image(source, max_pixels=args.max_pixels)
            faces = [face.to_dict() for face in restorer.detect(picture)]
            records.append({"input": str(source), "size": [picture.width, picture.height], "faces": faces})
            if not args.json:
                print(f"{source}: {len(faces)} face(s)")
                for face in faces:
                    print(f"  box {face['box']} score {face['score']}")
        except FaceRestoreError as error:
            failures += 1
            records.append({"input": str(source), "error": str(error)})
            print(_error_line(str(source), str(error)), file=sys.stderr)
    if args.json:
        print(json.dumps(records, indent=2))
    return 1 if failures else 0


def _model_row(entry: registry.ModelEntry) -> dict[str, Any]:
    path = registry.locate(entry)
    return {
        "name": entry.name,
        "purpose": entry.purpose.value,
        "installed": path is not None,
        "path": str(path) if path else None,
        "licence": entry.licence,
        "commercial_use": entry.commercial_use,
        "source": f"PyPI: {entry.python_package}" if entry.python_package else entry.url,
        "sha256": entry.sha256,
        "notes": entry.notes,
    }


def _cmd_models(args: argparse.Namespace) -> int:
    if args.models_command == "download":
        entry = registry.get_entry(args.name)
        _note_licence(entry)
        path = registry.download(entry, progress=not args.quiet)
        print(f"{entry.name}: saved to {path}")
        return 0
    rows = [_model_row(entry) for entry in registry.MODELS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"model folder: {registry.model_dir()}  (set {registry.MODEL_DIR_ENV} to change)")
    for row in rows:
        state = "installed" if row["installed"] else "download"
        flag = "" if row["commercial_use"] else "  [non-commercial]"
        print(f"  {row['name']:<24} {row['purpose']:<14} {state:<10} {row['licence']}{flag}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from facerestore.server import serve  # the web stack loads only for this command

    serve(host=args.host, port=args.port, config=server_config.from_arguments(args))
    return 0


COMMANDS = {"restore": _cmd_restore, "detect": _cmd_detect, "models": _cmd_models, "serve": _cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FaceRestoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        print(
            f"error: internal error: {type(error).__name__}: {error} (run with --debug for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
