#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with everything the workbench needs.
# Idempotent: a second run only checks that the pins are met.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
source .venv/bin/activate
pip install --quiet --upgrade pip
pip install --quiet -r requirements.txt
# safety-gymnasium 1.0.0 pins pygame==2.1.0 (no wheel for Python 3.11, and it is only used for the
# human render mode) and gymnasium-robotics pins more of the same: install both without their pins;
# requirements.txt lists what they really need at run time.
pip install --quiet --no-deps safety-gymnasium==1.0.0 gymnasium-robotics==1.2.2
pip install --quiet --no-deps -e .
echo "setup done: $(python -c 'import torch, mujoco; print("torch", torch.__version__, "| mujoco", mujoco.__version__)')"
