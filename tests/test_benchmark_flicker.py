"""The flicker benchmark runs end to end in its quick mode and prints its figures (not a timed test)."""

from __future__ import annotations

from pathlib import Path

from assertions import quick_benchmark_output


def test_quick_flicker_benchmark_prints_every_run(shared_dir: Path, tmp_path: Path) -> None:
    lines = quick_benchmark_output("flicker.py", tmp_path, shared_dir, timeout=600)
    rows = [line.split() for line in lines if line.startswith("pan ")]
    assert [row[1] for row in rows] == [
        "input",
        "clean",
        "per-frame",
        "landmarks",
        "blend-only",
        "stabilized",
    ]
    assert all(float(row[2]) > 0 for row in rows)
    stabilized = rows[-1]  # ... its last two cells: alignment jitter, and that over the per-frame run's
    assert float(stabilized[-2]) > 0 and float(stabilized[-1]) < 1
    assert (tmp_path / "pan-strip.png").is_file()
