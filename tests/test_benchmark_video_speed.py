"""The video speed, quality and memory benchmark runs end to end in its quick mode (not a timed test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_quick_video_speed_benchmark_prints_every_part(shared_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "video_speed.py"), "--quick", "--out", str(tmp_path)]
    environment = {**os.environ, "FACERESTORE_SHARED": str(shared_dir)}
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, env=environment
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    speeds = [line.split() for line in lines if line.startswith(("480p", "720p"))]
    assert len(speeds) == 4 and all(float(row[5]) > 0 for row in speeds)  # frames/s of each clip
    assert any(line.startswith("video default") for line in lines)  # its quality on carphone
    memory = [line for line in lines if line.startswith("memory:")]
    assert len(memory) == 3 and all("peak RSS" in line for line in memory)  # 2 clips, then their ratio
