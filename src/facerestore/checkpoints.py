"""Official PyTorch checkpoints (GFPGAN 1.2-1.4, CodeFormer, RestoreFormer) made into the registry's models.

``import_checkpoint`` reads a checkpoint without running pickled code, lets spandrel detect its architecture,
maps it to a registry entry and converts it once into that entry's ONNX file in the model folder, with an
import record beside it (the source's sha256). From then on it runs on ONNX Runtime like any other model.
Converting needs the optional torch extra; restoring never does.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from facerestore import registry
from facerestore.errors import ModelError, SkippedCheckpointError, option
from facerestore.restoration import FacePriorRestorer

TORCH_EXTRA = "pip install 'facerestore[torch]'"
CHECKPOINT_SUFFIXES = frozenset({".pth", ".pt", ".ckpt", ".safetensors"})


@dataclass(frozen=True)
class Imported:
    """One checkpoint made into an entry's model file (or found already made from it)."""

    source: Path
    entry: registry.ModelEntry
    model_file: Path
    record: registry.ImportRecord
    seconds: float
    already: bool = False

    def describe(self) -> str:
        if self.already:
            return f"already imported as {self.entry.name} ({self.model_file})"
        origin = "the official release file" if self.record.official else "not the official release file"
        return (
            f"imported as {self.entry.name} ({self.record.architecture}, {origin}) -> {self.model_file} "
            f"in {self.seconds:.0f} s"
        )


@dataclass(frozen=True)
class Outcome:
    """What became of one file: imported, skipped (another architecture, in a folder) or failed."""

    source: Path
    imported: Imported | None = None
    problem: ModelError | None = None

    @property
    def failed(self) -> bool:
        return self.problem is not None and not isinstance(self.problem, SkippedCheckpointError)

    def describe(self, spell: Callable[[str], str] = str) -> str:
        if self.imported:
            return f"{self.source}: {self.imported.describe()}"
        assert self.problem is not None
        message = self.problem.render(spell)
        if not self.failed:
            message = f"skipped: {message}"
        return message if message.startswith(str(self.source)) else f"{self.source}: {message}"


def torch_tools() -> ModuleType:
    """The PyTorch side (``checkpoint_export``); without it, a one-line ModelError saying what to install."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # spandrel's import-time torch.jit deprecations
            from facerestore import checkpoint_export
    except ImportError as error:
        raise ModelError(
            f"importing PyTorch checkpoints needs the torch extra ({error.name or error} is missing): "
            f"{TORCH_EXTRA} (restoring never needs it)"
        ) from None
    except RuntimeError as error:  # e.g. a torchvision built for another torch release
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(f"PyTorch is installed but fails to import ({first}): {TORCH_EXTRA}") from None
    return checkpoint_export


def find_checkpoints(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.rglob("*") if path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file()
    )


def import_paths(path: Path, *, as_name: str | None = None) -> Iterator[Outcome]:
    """One outcome per checkpoint: ``path`` itself, or each checkpoint in the folder ``path`` (recursively),
    where a file of another architecture, or of a model already imported from another file, is skipped."""
    torch_tools()  # without the extra, one line before any file
    if path.is_dir():
        if as_name:
            raise ModelError(f"{option('as_name')} names the model in one file, not in a folder")
        made: dict[str, Path] = {}  # entry name -> the file this run imported it from
        for source in find_checkpoints(path):
            outcome = _attempt(source, made)
            if outcome.imported:
                made.setdefault(outcome.imported.entry.name, source)
            yield outcome
    elif path.is_file():
        yield Outcome(path, imported=import_checkpoint(path, as_name=as_name))
    else:
        raise ModelError(f"{path}: no such file or folder")


def _attempt(source: Path, made: dict[str, Path]) -> Outcome:
    try:
        return Outcome(source, imported=import_checkpoint(source, keep=made))
    except ModelError as problem:
        return Outcome(source, problem=problem)


def import_checkpoint(
    source: Path,
    *,
    as_name: str | None = None,
    folder: Path | None = None,
    keep: Mapping[str, Path] | None = None,
) -> Imported:
    """Converts the checkpoint into its registry entry's ONNX file in ``folder`` (the model folder); nothing
    is done when that file was already made from this very checkpoint. ``keep`` maps entries that must not
    be replaced to the files they were made from (a folder import: the first file of a model wins)."""
    tools = torch_tools()
    started = time.perf_counter()
    source_sha256 = registry.sha256_of(source)
    state = tools.read_state_dict(source)
    architecture = tools.architecture_of(state)
    entry = choose_entry(architecture, source.name, source_sha256, as_name)
    target = (folder or registry.model_dir()) / entry.filename
    previous = _made_from(target, source_sha256)
    if previous:
        return Imported(source, entry, target, previous, time.perf_counter() - started, already=True)
    if keep and entry.name in keep:
        raise SkippedCheckpointError(
            f"{entry.name} was imported from {keep[entry.name]} in this run (import this file on its own "
            "to replace it)"
        )
    network = tools.build_network(state, architecture)
    del state  # the network holds its own copy of the weights
    with registry.staging_folder(target.parent, entry.filename) as staging:
        exported = Path(staging) / entry.filename
        tools.export_onnx(network, architecture, exported, entry.input_size, entry.fidelity_input)
        del network
        FacePriorRestorer(entry, model_path=exported)  # refuses a graph our restorer could not run
        record = registry.ImportRecord(
            source=source.name,
            source_sha256=source_sha256,
            source_size=source.stat().st_size,
            official=entry.checkpoint is not None and entry.checkpoint.sha256 == source_sha256,
            architecture=architecture,
            exporter=tools.EXPORTER,
            onnx_sha256=registry.sha256_of(exported),
            onnx_size=exported.stat().st_size,
        )
        os.replace(exported, target)
        registry.write_import_record(target, record)
    return Imported(source, entry, target, record, time.perf_counter() - started)


def _made_from(target: Path, source_sha256: str) -> registry.ImportRecord | None:
    """The import record of ``target`` when it is the export of the checkpoint with that digest."""
    record = registry.read_import_record(target) if target.is_file() else None
    same = record and record.source_sha256 == source_sha256 and record.onnx_size == target.stat().st_size
    return record if same else None


def choose_entry(
    architecture: str, filename: str, source_sha256: str, as_name: str | None = None
) -> registry.ModelEntry:
    """The entry a checkpoint becomes: the one named, else the one whose official file it is, else the only
    entry of its architecture, else the one its file name points to (GFPGAN's versions share one)."""
    candidates = [
        entry
        for entry in registry.entries(registry.Purpose.FACE_RESTORER)
        if entry.checkpoint and entry.checkpoint.architecture == architecture
    ]
    names = ", ".join(entry.name for entry in candidates)
    if as_name:
        named = registry.get_entry(as_name)
        if named.name not in {entry.name for entry in candidates}:
            raise ModelError(
                f"{filename} holds a {architecture} network, not a '{as_name}' one ({architecture}: {names})"
            )
        return named
    official = [e for e in candidates if e.checkpoint and e.checkpoint.sha256 == source_sha256]
    if official or len(candidates) == 1:
        return (official or candidates)[0]
    hinted = [e for e in candidates if e.checkpoint and _hinted(e.checkpoint, filename)]
    if len(hinted) == 1:
        return hinted[0]
    raise ModelError(
        f"{filename} holds a {architecture} network, but its name does not say which version: "
        f"name the model with {option('as_name')} ({names})"
    )


def _hinted(checkpoint: registry.Checkpoint, filename: str) -> bool:
    return any(hint.lower() in filename.lower() for hint in checkpoint.name_hints)


def import_official(entry: registry.ModelEntry, *, progress: bool = True) -> Imported:
    """Downloads the entry's official PyTorch checkpoint (checked against its pins), imports it, and deletes
    it: the model folder keeps only the converted file and its import record."""
    torch_tools()  # before a download of hundreds of megabytes, not after
    folder = registry.model_dir()
    with registry.staging_folder(folder, "checkpoint") as staging:
        source = registry.download_checkpoint(entry, Path(staging), progress=progress)
        return import_checkpoint(source, as_name=entry.name, folder=folder)
