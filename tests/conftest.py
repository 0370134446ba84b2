"""Shared fixtures: where the real test photos are (../shared beside the repo, or FACERESTORE_SHARED)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    configured = os.environ.get("FACERESTORE_SHARED")
    return Path(configured) if configured else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = _shared_root()
    if not (root / "data").is_dir():
        pytest.skip(f"real test photos not found at {root} (set FACERESTORE_SHARED)")
    return root
