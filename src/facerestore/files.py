"""Writing files so that nothing is ever half-written: readers see the old file or the whole new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomically(path: Path, data: bytes) -> None:
    """Writes through a uniquely named temporary file beside ``path`` and a rename, so concurrent writers
    never collide and readers never see a partial file."""
    temp: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, delete=False, prefix="." + path.name, suffix=".part"
        ) as part:
            temp = Path(part.name)
            part.write(data)
            part.flush()
            os.fsync(part.fileno())
        publish(temp, path)
    except BaseException:
        if temp is not None:
            temp.unlink(missing_ok=True)
        raise


def publish(temp: Path, path: Path) -> None:
    """Moves a finished temporary file to ``path`` with the permissions any new file gets (temporary files
    are created 0600, readable by their owner only)."""
    os.chmod(temp, 0o666 & ~_UMASK)
    os.replace(temp, path)
