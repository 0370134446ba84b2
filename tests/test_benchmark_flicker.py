"""The flicker benchmark runs end to end in its quick mode and prints its figures (not a timed test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_quick_flicker_benchmark_prints_both_runs(shared_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "flicker.py"), "--quick", "--out", str(tmp_path)]
    environment = {**os.environ, "FACERESTORE_SHARED": str(shared_dir)}
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env=environment
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line.split() for line in completed.stdout.splitlines() if line.startswith("pan ")]
    assert [row[1] for row in rows] == ["input", "per-frame", "landmarks", "stabilized"]
    assert all(float(row[2]) > 0 for row in rows)
    assert (tmp_path / "pan-strip.png").is_file()
