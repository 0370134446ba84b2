"""Command line: a thin shell over the Python API (``Restorer``, ``batch``, ``registry``)."""

from __future__ import annotations

import argparse
import io
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facerestore import batch, checkpoints, registry
from facerestore.analysis import analyse_picture
from facerestore.arguments import add_options, flag_for, options_from
from facerestore.errors import FaceRestoreError, OptionError, option
from facerestore.image_io import Picture, load_image
from facerestore.options import BatchOptions, DetectionOptions, Options, RestoreOptions
from facerestore.pipeline import ProgressCallback, Restorer
from facerestore.restoration import auto_fallback_note, resolve_face_model
from facerestore.server.config import ServerConfig, api_keys_from_env
from facerestore.video import for_video, is_video

OPTION_MODELS: tuple[type[Options], ...] = (RestoreOptions, DetectionOptions, BatchOptions, ServerConfig)
DETECT_OPTIONS = ("detector", "detector_model_path", "device", *DetectionOptions.model_fields)


def _add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", help="image or video files, folders (searched recursively) or globs"
    )
    add_options(parser, RestoreOptions)
    add_options(parser.add_argument_group("output"), BatchOptions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerestore", description="Restore faces in photos, offline.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_restore_arguments(commands.add_parser("restore", help="restore faces and upscale"))
    detect = commands.add_parser("detect", help="list the faces in images")
    detect.add_argument("inputs", nargs="+")
    detect.add_argument("--json", action="store_true", help="print JSON records")
    add_options(detect, RestoreOptions, only=DETECT_OPTIONS)
    add_options(detect, BatchOptions, only=("max_pixels",))
    analyze = commands.add_parser(
        "analyze", help="measure each face (size, pose, blur, noise, JPEG) and advise how to restore it"
    )
    analyze.add_argument("inputs", nargs="+")
    analyze.add_argument("--json", action="store_true", help="print JSON records")
    add_options(analyze, RestoreOptions, only=DETECT_OPTIONS)
    add_options(analyze, BatchOptions, only=("max_pixels",))
    models = commands.add_parser("models", help="list, download or import models")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    listing = model_commands.add_parser("list", help="what is installed, what can be downloaded")
    listing.add_argument("--json", action="store_true")
    download = model_commands.add_parser("download", help="download a model with checksum verification")
    download.add_argument("name")
    download.add_argument(
        "--official", action="store_true", help="download the official PyTorch checkpoint and import it"
    )
    importing = model_commands.add_parser(
        "import", help="convert official PyTorch checkpoints (GFPGAN, CodeFormer, RestoreFormer) to models"
    )
    importing.add_argument("path", type=Path, help="a .pth/.pt/.ckpt/.safetensors file, or a folder of them")
    importing.add_argument(
        "--as", dest="as_name", metavar="NAME", help="the model a file holds, where its name does not say"
    )
    add_options(commands.add_parser("serve", help="web page and HTTP API"), ServerConfig)
    return parser


def _flag(name: str) -> str:
    return "--as" if name == "as_name" else flag_for(name, OPTION_MODELS)


def _error_line(source: str, message: str) -> str:
    return f"error: {message}" if message.startswith(source) else f"error: {source}: {message}"


_STAGE_UNITS = {"upscale": "tile", "faces": "face", "frames": "frame"}  # the stages worth a bar


class _StageBar:
    """A transient bar for one input's slow stages (background tiles, faces, a clip's frames), with rate
    and ETA; a clip whose frame count is unknown gets a bar without a total."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name, self.enabled = name, enabled
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or stage not in _STAGE_UNITS or (total < 2 and stage != "frames"):
            return
        if self.bar is None or self.bar.desc != f"{self.name} {stage}":
            self.close()
            self.bar = tqdm(
                total=total or None,
                desc=f"{self.name} {stage}",
                unit=_STAGE_UNITS[stage],
                leave=False,
                file=sys.stderr,
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _note_licence(entry: registry.ModelEntry) -> None:
    if not entry.commercial_use:
        print(f"note: {entry.name} is licensed {entry.licence}", file=sys.stderr)


def _preflight(options: RestoreOptions, on_cluster: bool) -> Restorer:
    """The restorer whose plan the notes describe; a cluster's workers have their own accelerators, so
    here its models are checked on the CPU."""
    if on_cluster and options.device not in ("cpu", "auto"):
        options = options.model_copy(update={"device": "cpu"})
    restorer = Restorer(options)
    _note_licence(restorer.plan.face_model)
    return restorer


def _restorers_for(restorer: Restorer, jobs: Sequence[batch.Job]) -> list[Restorer]:
    """The restorers the jobs use (photos: ``restorer``; clips: ``for_video``'s), each with a note on the
    choices 'auto' made that the user may not expect."""
    clips = sum(is_video(job.source) for job in jobs)
    in_use = ([restorer] if clips < len(jobs) else []) + ([for_video(restorer)] if clips else [])
    fallback = auto_fallback_note(restorer.plan.face_model)
    if fallback and restorer.options.face_model == "auto":
        print(f"note: {fallback}", file=sys.stderr)
    if clips and in_use[-1].plan.bg_upsampler != restorer.plan.bg_upsampler:
        print(
            f"note: on a CPU clips take Lanczos for the background ({restorer.plan.bg_upsampler} costs "
            f"seconds a frame); {_flag('bg_upsampler')} chooses another",
            file=sys.stderr,
        )
    return in_use


def _cmd_restore(args: argparse.Namespace) -> int:
    output = options_from(args, BatchOptions)
    restore_options = options_from(args, RestoreOptions)
    restorer = _preflight(restore_options, on_cluster=output.cluster is not None)
    jobs = batch.plan_jobs(args.inputs, output)
    if not jobs:
        print("error: no input images found", file=sys.stderr)
        return 1
    batch.check_outputs(output, jobs)
    in_use = _restorers_for(restorer, jobs)
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

    if output.cluster:
        cluster = _cluster_module()
        if not args.debug:
            cluster.quiet_logs()
        with cluster.connect(output.cluster) as client:
            records = cluster.run_batch(client, restore_options, jobs, output, on_record, spell=_flag)
    else:
        for used in in_use:
            used.load()
        records = batch.run_batch(
            restorer, jobs, output, on_record, progress_for, debug=args.debug, spell=_flag
        )
    overall.close()
    _summarise(records, output)
    if output.report:
        batch.write_report(records, output)
    return 1 if any(record.error for record in records) else 0


def _cluster_module() -> Any:
    """Dask loads only for cluster runs, and only where it is installed."""
    try:
        from facerestore import cluster
    except ImportError as error:
        raise OptionError(
            f"{option('cluster')} needs Dask distributed ({error}): pip install 'facerestore[cluster]'"
        ) from None
    return cluster


def _summarise(records: Sequence[batch.ImageRecord], output: BatchOptions) -> None:
    failed = sum(1 for record in records if record.error)
    kept = sum(1 for record in records if record.resumed)
    faces = sum(len(r.faces) or (r.video or {}).get("faces", 0) for r in records)
    restored = len(records) - failed - kept
    resumed = f" ({kept} kept from before)" if kept else ""
    print(
        f"{restored} of {len(records)} inputs restored{resumed}, {faces} faces, {failed} failed"
        f" -> {output.output}",
        file=sys.stderr,
    )


def _for_each_picture(
    args: argparse.Namespace,
    describe: Callable[[Restorer, Picture], dict[str, Any]],
    show: Callable[..., None],
) -> int:
    """Runs ``describe`` on every input picture: a record each, printed by ``show`` or as one JSON list; one
    error line per bad file, and the rest go on."""
    restorer = Restorer(options_from(args, RestoreOptions))
    max_pixels: int = getattr(args, "max_pixels", BatchOptions.model_fields["max_pixels"].default)
    records: list[dict[str, Any]] = []
    failures = 0
    for source, _ in batch.expand_inputs(args.inputs):
        try:
            picture = load_image(source, max_pixels=max_pixels)
            record = {"input": str(source), "size": [picture.width, picture.height]}
            records.append({**record, **describe(restorer, picture)})
            if not args.json:
                show(**records[-1])
        except FaceRestoreError as error:
            failures += 1
            records.append({"input": str(source), "error": str(error)})
            print(_error_line(str(source), error.render(_flag)), file=sys.stderr)
    if args.json:
        print(json.dumps(records, indent=2))
    return 1 if failures else 0


def _detected(restorer: Restorer, picture: Picture) -> dict[str, Any]:
    return {"faces": [face.to_dict() for face in restorer.detect(picture)]}


def _show_detected(input: str, size: list[int], faces: list[dict[str, Any]]) -> None:
    print(f"{input}: {len(faces)} face(s)")
    for face in faces:
        print(f"  box {face['box']} score {face['score']}")


def _analysed(restorer: Restorer, picture: Picture) -> dict[str, Any]:
    return analyse_picture(picture, restorer.detect(picture)).to_dict()


def _show_analysed(input: str, size: list[int], scale: float, faces: list[dict[str, Any]]) -> None:
    print(f"{input}: {size[0]}x{size[1]}, {len(faces)} face(s), scale auto would choose {scale:g}x")
    for index, face in enumerate(faces, 1):
        found, advice = face["analysis"], face["analysis"]["advice"]
        pose = f"yaw {found['yaw']:+.0f}, roll {found['roll']:+.0f} degrees"
        quality = f", JPEG quality {found['jpeg_quality']}" if found["jpeg_quality"] else ""
        detail = f"detail of a {found['effective_width']:.0f} px face, noise {found['noise']:.1f}{quality}"
        print(f"  face {index}: {found['width']:.0f} px wide, {pose}; {detail}")
        restorer = advice["face_model"] or "none (keep as it is)"
        better = f"; better: facerestore models download {advice['download']}" if advice["download"] else ""
        damage = advice["damage"].replace("none", "no")
        strength = f"strength {advice['strength']:g}, scale {advice['scale']:g}x"
        print(f"    {damage} damage: {restorer} at {strength}{better}")
        print(f"    expected: {advice['outcome']}")
        if advice["identity_warning"]:
            print(f"    warning: {advice['identity_warning']}")


def _cmd_detect(args: argparse.Namespace) -> int:
    return _for_each_picture(args, _detected, _show_detected)


def _cmd_analyze(args: argparse.Namespace) -> int:
    return _for_each_picture(args, _analysed, _show_analysed)


def _cmd_import(args: argparse.Namespace) -> int:
    failures = 0
    for outcome in checkpoints.import_paths(args.path, as_name=args.as_name):
        if outcome.imported:
            _note_licence(outcome.imported.entry)
        failures += outcome.failed
        line = outcome.describe(_flag)
        print(f"error: {line}" if outcome.failed else line, file=sys.stderr if outcome.failed else sys.stdout)
    return 1 if failures else 0


def _cmd_models(args: argparse.Namespace) -> int:
    if args.models_command == "import":
        return _cmd_import(args)
    if args.models_command == "download":
        entry = registry.get_entry(args.name)
        _note_licence(entry)
        if args.official:
            print(f"{entry.name}: {checkpoints.import_official(entry, progress=not args.quiet).describe()}")
            return 0
        path = registry.download(entry, progress=not args.quiet)
        print(f"{entry.name}: saved to {path}")
        return 0
    rows = [registry.model_info(entry) for entry in registry.MODELS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"model folder: {registry.model_dir()}  (set {registry.MODEL_DIR_ENV} to change)")
    auto = resolve_face_model("auto").name
    for row in rows:
        state = "installed" if row["installed"] else row["obtained_by"]
        flag = "" if row["commercial_use"] else "  [non-commercial]"
        used = "  <- face model 'auto' uses this now" if row["name"] == auto else ""
        print(f"  {row['name']:<24} {row['purpose']:<14} {state:<10} {row['licence']}{flag}{used}")
        print(f"  {'':<24} {row['problem'] or row['verification']['summary']}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from facerestore.server import serve  # the web stack loads only for this command

    config = options_from(args, ServerConfig)
    if config.cluster:
        _cluster_module()  # one clear line where Dask is missing
    serve(config.model_copy(update={"api_keys": (*config.api_keys, *api_keys_from_env())}))
    return 0


COMMANDS = {
    "restore": _cmd_restore,
    "detect": _cmd_detect,
    "analyze": _cmd_analyze,
    "models": _cmd_models,
    "serve": _cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not valid UTF-8 must not end the run
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FaceRestoreError as error:
        print(f"error: {error.render(_flag)}", file=sys.stderr)
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
