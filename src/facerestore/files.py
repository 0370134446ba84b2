"""Writing files so that nothing is ever half-written: readers see the old file or the whole new one.

Every output goes through a temporary file beside its final name and a rename. The temporary names follow
one pattern, so a run killed mid-write (a lost cluster worker) leaves files that the next run can find and
remove: ``.NAME.<random>.partSUFFIX`` (the suffix kept, so muxers and viewers still know the format).
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0)
os.umask(_UMASK)
_PART = ".part"


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write; renamed onto ``path`` when the block completes,
    removed when it raises. Concurrent writers never collide."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_PART + path.suffix)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp creates 0600 files
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    with atomic_target(path) as temp, open(temp, "wb") as part:
        part.write(data)
        part.flush()
        os.fsync(part.fileno())


def leftover_temporaries(path: Path) -> list[Path]:
    """Temporary files of writes to ``path`` that never finished (their writer was killed)."""
    pattern = f"{glob.escape('.' + path.name)}.*{_PART}{glob.escape(path.suffix)}"
    return sorted(path.parent.glob(pattern))
