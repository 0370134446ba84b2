"""The video speed, quality and memory benchmark runs end to end in its quick mode (not a timed test)."""

from __future__ import annotations

from pathlib import Path

from assertions import quick_benchmark_output


def test_quick_video_speed_benchmark_prints_every_part(shared_dir: Path, tmp_path: Path) -> None:
    lines = quick_benchmark_output("video_speed.py", tmp_path, shared_dir, timeout=900)
    speeds = [line.split() for line in lines if line.startswith(("480p", "720p"))]
    devices = {row[4] for row in speeds}  # cpu, and openvino where installed
    assert "cpu" in devices and len(speeds) == 4 * len(devices)  # 4 clips on each device
    assert all(float(row[5]) > 0 for row in speeds)  # frames/s of each clip
    assert any(line.startswith("compact+none") for line in lines)  # its quality on carphone
    memory = [line for line in lines if line.startswith("memory:")]
    assert len(memory) == 3 and all("peak RSS" in line for line in memory)  # 2 clips, then their ratio
