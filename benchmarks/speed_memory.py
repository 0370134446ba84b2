"""Peak resident memory of a child process, measured so that nothing else's memory leaks into it.

Why a launcher: on Linux a child's ``ru_maxrss`` (from ``wait4``) starts at the high-water mark of the address
space it replaced at ``exec``; Python spawns with vfork, so that is the *parent's* peak (a 1.5 GB parent makes
a 13 MB child report 1.5 GB). So the command is started by a tiny interpreter (``python -S``, ~10 MB), whose
own small peak is then the only floor, and that launcher reports the command's ``ru_maxrss``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = r"""
import json, os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as handle:
    json.dump({"maxrss": usage.ru_maxrss, "returncode": os.waitstatus_to_exitcode(status)}, handle)
"""
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
MB = 1024 * 1024


@dataclass(frozen=True)
class ChildRun:
    returncode: int
    stdout: str
    peak_rss_bytes: int
    wall_s: float

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / MB


def run_with_peak_rss(argv: Sequence[str], *, timeout_s: float | None = None) -> ChildRun:
    """Runs ``argv`` (argv[0] an absolute executable path) in a fresh process; returns its stdout and its
    peak resident set size. Its stderr passes through to ours."""
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "rusage.json"
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv],
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        wall = time.perf_counter() - start
        usage = json.loads(report.read_text()) if report.is_file() else {"maxrss": 0, "returncode": -1}
    return ChildRun(usage["returncode"], completed.stdout, usage["maxrss"] * MAXRSS_UNIT, wall)


def own_peak_rss_bytes() -> int:
    """This process's VmHWM: its own peak, unlike ru_maxrss, which may carry the spawning parent's."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * MAXRSS_UNIT
    line = next(row for row in status.splitlines() if row.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
