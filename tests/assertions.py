"""Assertions several test files share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from facerestore.errors import ModelError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def assert_one_clear_line(error: ModelError, *words: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__), (
        "the CLI would show a chained traceback"
    )
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def quick_benchmark_output(script: str, out: Path, shared_dir: Path, timeout: float) -> list[str]:
    """Runs ``benchmarks/SCRIPT --quick`` in its own process; its printed lines, once it has succeeded."""
    command = [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out)]
    environment = {**os.environ, "FACERESTORE_SHARED": str(shared_dir)}
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=environment
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.splitlines()
