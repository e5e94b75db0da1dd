"""One file per algorithm, all behind the small interface in `base.py` (`AgentLike`).

Importing this package is cheap: an algorithm's module (and torch) loads when it is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from workbench.config import ALGOS, Config, ConfigError

if TYPE_CHECKING:
    from workbench.agents.base import AgentLike
    from workbench.world_model import WorldModel

# algo name -> "module:Class", imported on demand.
REGISTRY = {
    "dreamer": "workbench.agents.dreamer:Dreamer",
    "bsrp-lag": "workbench.agents.bsrp_lag:BSRPLag",
    "osrp": "workbench.agents.osrp:OSRP",
    "osrp-lag": "workbench.agents.osrp:OSRPLag",
    "barrier": "workbench.agents.barrier:BarrierAgent",
    "cerl": "workbench.agents.cerl:CERL",
    # Offline agents (base.OfflineAgent), trained by workbench.offline from a dataset:
    "lspc": "workbench.agents.lspc:LSPC",
    "bc-all": "workbench.agents.bc:BehaviourCloning",
    "bc-safe": "workbench.agents.bc:SafeBehaviourCloning",
}


def make_agent(config: Config, world_model: WorldModel, action_dim: int) -> AgentLike:
    """Build the agent named by `config.algo`."""
    if config.algo not in REGISTRY:
        known = ", ".join(name for name in ALGOS if name in REGISTRY)
        raise ConfigError(f"algo {config.algo!r} is not available; choose one of: {known}")
    module, name = REGISTRY[config.algo].split(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(config, world_model, action_dim)
