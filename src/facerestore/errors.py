"""User-facing errors: each carries a one-line message that the CLI and HTTP API show as is.

A message names an option through ``option(name)``, so that each shell spells it its own way (the CLI as a
flag, the HTTP API as a form field): the library never names a shell's syntax.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_OPTION = re.compile("\x00([a-z_]+)\x00")  # NUL never occurs in a path or a value, so it cannot clash


def option(name: str) -> str:
    return f"\x00{name}\x00"


def spell_options(message: str, spell: Callable[[str], str] = str) -> str:
    return _OPTION.sub(lambda match: spell(match[1]), message)


class FaceRestoreError(Exception):
    """Base class: an expected failure with a message fit for the user (no traceback needed)."""

    def render(self, spell: Callable[[str], str] = str) -> str:
        return spell_options(str(self.args[0]) if self.args else "", spell)

    def __str__(self) -> str:
        return self.render()


class ImageError(FaceRestoreError):
    """The input cannot be read as an image (corrupt, truncated, unsupported, too large)."""


class ImageTooLargeError(ImageError):
    """The image declares more pixels than the configured limit (a decompression bomb, or just too big)."""


class ModelError(FaceRestoreError):
    """A model is missing, fails its checksum, or does not fit its declared contract."""


class ModelMissingError(ModelError):
    """A model's file is not installed; ``model`` names it (the message also says where it was looked for)."""

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message)
        self.model = model


class OptionError(FaceRestoreError):
    """An option value is out of range or unknown."""


class SkippedCheckpointError(ModelError):
    """A checkpoint a folder import passes over: a network facerestore does not import, or a model that run
    already imported from another file. Named on its own, the file fails."""
