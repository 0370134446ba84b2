"""The face-prior speed benchmark (benchmarks/face_prior_speed.py): its docs section, and a --quick run end to
end. The run needs the torch extra (pip install -e .[torch]) and is skipped without it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import face_prior_report  # noqa: E402
import speed_report  # noqa: E402

MISSING = [
    name for name in ("torch", "spandrel", "spandrel_extra_arches") if importlib.util.find_spec(name) is None
]


def test_docs_update_adds_its_own_section_and_keeps_the_others(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Speed and memory\n\nspeed table\n")
    for generated in ("first\n", "second\n"):
        speed_report.update_docs(
            docs, generated, face_prior_report.DOCS_HEADING, face_prior_report.DOCS_MARKERS
        )
    text = docs.read_text()
    assert "speed table" in text and "second" in text and "first" not in text
    assert text.count(face_prior_report.DOCS_HEADING) == 1


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"torch extra not installed ({', '.join(MISSING)})")
def test_quick_benchmark_runs_to_completion(tmp_path: Path, shared_dir: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "face_prior_speed.py"), "--quick", "--out", str(tmp_path)]
    completed = subprocess.run(
        [*command, "--shared", str(shared_dir)], capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((tmp_path / "face_prior_speed.json").read_text())
    assert {"date", "cpu", "cores", "onnxruntime", "torch", "bf16"} <= results["meta"].keys()
    [architecture] = results["architectures"]
    assert architecture["ort_speedup_over_pytorch"] > 0
    rows = {row["runtime"]: row for row in architecture["rows"]}
    assert {
        "PyTorch fp32",
        "PyTorch bf16 autocast",
        "ONNX Runtime fp32",
        "ONNX Runtime int8 static",
    } <= rows.keys()
    assert rows["ONNX Runtime fp32"]["difference"]["max_abs"] == 0
    if importlib.util.find_spec("openvino"):  # the same file on OpenVINO: compared with ONNX Runtime's output
        [openvino] = [row for label, row in rows.items() if label.startswith("OpenVINO")]
        assert 0 < openvino["difference"]["max_abs_of_range"] < 0.2
        assert architecture["openvino_speedup_over_pytorch"] > 0
    for row in rows.values():
        assert "skipped" in row or row["median_s"] > 0
    assert "| network | runs on |" in (tmp_path / "face_prior_speed.md").read_text()
