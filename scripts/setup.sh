#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the workbench and its extras,
# from pyproject.toml (the only list of dependencies). Idempotent: a second run only checks pins.
#   bash scripts/setup.sh                     # everything: dashboard, notebooks, tensorboard, dev
#   bash scripts/setup.sh dashboard           # the library and the dashboard only
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dashboard,notebooks,tensorboard,dev}"
python3 -m venv .venv
source .venv/bin/activate
pip install --quiet --upgrade pip
# pyproject.toml's requirements for plain pip: everything but the two packages below.
python scripts/pyproject_requirements.py "$EXTRAS" > .venv/requirements-from-pyproject.txt
pip install --quiet -r .venv/requirements-from-pyproject.txt
# safety-gymnasium 1.0.0 pins pygame==2.1.0 (no wheel for Python 3.11, and it is only used for the
# human render mode) and gymnasium-robotics pins more of the same: install both without their pins;
# pyproject.toml lists what they really need at run time (uv applies the same as overrides).
pip install --quiet --no-deps safety-gymnasium==1.0.0 gymnasium-robotics==1.2.2
pip install --quiet --no-deps -e .
echo "setup done ($EXTRAS): $(python -c 'import torch, mujoco; print("torch", torch.__version__, "| mujoco", mujoco.__version__)')"
