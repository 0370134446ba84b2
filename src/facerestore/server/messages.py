"""What an error tells a client: options named as the form fields they are, or as settings of the server
(never as its command-line flags), and nothing of the server's file system."""

from __future__ import annotations

import re

from facerestore.errors import FaceRestoreError, ModelMissingError
from facerestore.server.forms import ENCODING_FIELDS, RESTORE_FIELDS, VIDEO_FIELDS

FORM_FIELDS = frozenset(field.name for field in (*RESTORE_FIELDS, *ENCODING_FIELDS, *VIDEO_FIELDS))
# An absolute path's folders (POSIX or Windows); not a URL's, whose slashes follow a colon or a slash.
_FOLDERS = re.compile(r"(?<![\w.:/\\])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'\"():;,]+[/\\])+")


def spell(name: str) -> str:
    return name if name in FORM_FIELDS else f"the server's {name} setting"


def without_paths(message: str) -> str:
    """``/root/.cache/facerestore/models/x.onnx: ...`` -> ``x.onnx: ...``."""
    return _FOLDERS.sub("", message)


def public_message(error: FaceRestoreError) -> str:
    if isinstance(error, ModelMissingError):
        return f"model '{error.model}' is missing: it is not installed on this server"
    return without_paths(error.render(spell))
