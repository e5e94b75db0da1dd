"""A workbench for safe reinforcement learning from pixels with world models."""

import os

# OpenMP threads that spin while they wait fight the MuJoCo renderer and env workers for the
# cores: on a busy 2-core machine a world-model update took 3-19 s with spinning threads and
# 0.6-1.3 s with passive ones. Only takes effect if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
