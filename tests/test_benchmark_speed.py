"""The speed benchmark's own parts that can be wrong: the MAC counter, the peak-memory probe, the tiling
arithmetic of the speed-push estimate, the RRDBNet layout, the docs update, and a --quick run end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import speed  # noqa: E402
import speed_compute  # noqa: E402
import speed_memory  # noqa: E402
import speed_push  # noqa: E402
import speed_report  # noqa: E402
import torch_rrdbnet  # noqa: E402

from facerestore import registry  # noqa: E402
from facerestore.upscaling import NetworkUpscaler, TileOptions  # noqa: E402

X4PLUS_MACS_PER_PIXEL = 17.9e6  # the figure for Real-ESRGAN x4plus


def _allocating_child(megabytes: int) -> list[str]:
    code = f"block = bytearray({megabytes} * 1024 * 1024)\nblock[::4096] = b'x' * len(block[::4096])"
    return [sys.executable, "-c", code]


def test_mac_counter_on_the_real_x4plus_graph() -> None:
    per_pixel = speed_compute.conv_macs_per_pixel(speed_compute.network_graph("realesrgan-x4plus"))
    assert per_pixel == pytest.approx(X4PLUS_MACS_PER_PIXEL, rel=0.05)


def test_mac_counter_does_not_depend_on_the_probe_size() -> None:
    graph = speed_compute.network_graph("realesr-compact-x4")
    assert speed_compute.conv_macs_per_pixel(graph, 32) == speed_compute.conv_macs_per_pixel(graph, 80)


def test_peak_memory_probe_sees_a_300_mb_child() -> None:
    child = speed_memory.run_with_peak_rss(_allocating_child(300))
    assert child.returncode == 0
    assert child.peak_rss_mb >= 300


def test_peak_memory_probe_ignores_a_large_parent() -> None:
    held = bytearray(400 * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])  # touch every page, so the parent's RSS really is 400 MB
    child = speed_memory.run_with_peak_rss(_allocating_child(10))
    assert child.peak_rss_mb < 200, "the parent's memory leaked into the child's peak"
    del held


def test_probe_reports_the_exit_status() -> None:
    assert speed_memory.run_with_peak_rss([sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3


def test_fed_pixels_matches_what_the_engine_feeds_its_network(monkeypatch: pytest.MonkeyPatch) -> None:
    tiles = TileOptions(tile=64, overlap=12)
    upscaler = NetworkUpscaler(registry.get_entry("realesr-compact-x4"), "cpu", tiles)
    fed: list[int] = []
    network = upscaler.run

    def counting_run(rgb: np.ndarray) -> np.ndarray:
        fed.append(rgb.shape[0] * rgb.shape[1])
        return network(rgb)

    monkeypatch.setattr(upscaler, "run", counting_run)
    upscaler.upscale(np.zeros((150, 100, 3), np.uint8), 2.0)
    assert sum(fed) == speed_push.fed_pixels(150, 100, tiles)


def test_pytorch_layout_matches_the_ncnn_graph() -> None:
    param = registry.require(registry.get_entry("realesrgan-x4plus")).with_suffix(".param")
    specs = torch_rrdbnet.ncnn_conv_specs(param)
    assert specs == torch_rrdbnet.conv_specs()
    assert len(specs) == 351
    weights = torch_rrdbnet.onnx_conv_weights(speed_compute.network_graph("realesrgan-x4plus"))
    assert [weight.shape[:2] for weight, _ in weights] == [(s.out_channels, s.in_channels) for s in specs]


def test_psnr() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert speed_push.psnr(a, b) == math.inf
    b[0, 0, 0] = 255  # one pixel of 48 fully wrong: MSE = 255^2 / 48
    assert speed_push.psnr(a, b) == pytest.approx(10 * math.log10(48))


def test_docs_update_keeps_the_other_sections(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Quality\n\nquality table\n\n## Speed and memory\n\nhand note\n")
    speed_report.update_docs(docs, "first\n")
    speed_report.update_docs(docs, "second\n")
    text = docs.read_text()
    assert "quality table" in text and "hand note" in text and "second" in text
    assert "first" not in text and text.count("## Speed and memory") == 1


def test_unknown_option_is_refused() -> None:
    with pytest.raises(SystemExit):
        speed.parse_overrides(["no_such_field=1"])
    assert speed.parse_overrides(["tile=128", "bg_upsampler=none"]) == {"tile": 128, "bg_upsampler": "none"}


@pytest.mark.slow
def test_quick_benchmark_runs_to_completion(tmp_path: Path, shared_dir: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "speed.py"), "--quick", "--out", str(tmp_path)]
    completed = subprocess.run(
        [*command, "--shared", str(shared_dir)], capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((tmp_path / "speed.json").read_text())
    assert {"date", "commit", "cpu", "onnxruntime"} <= results["meta"].keys()
    for case in results["cases"]:
        assert set(case["median"]) >= {"decode", "detect", "align", "restore", "upscale", "paste", "encode"}
        assert case["peak_rss_mb"] > 50
    assert len(results["memory_growth"]["rows"]) >= 3
    assert results["peak_gmacs_per_s"] > 0
    reference = results["reference"]
    if reference["pytorch"] is not None:
        assert reference["max_abs_diff"] < 1e-3
        assert reference["time_ratio_pytorch_over_ort"] > 0
    estimate = results["speed_push"][-1]
    assert estimate["method"] == "estimated" and estimate["speedup"] > 1
    assert "| case |" in (tmp_path / "speed.md").read_text()
