"""Behaviour cloning: the offline baselines LSPC is compared against.

A policy regresses the dataset's actions from the latent features of the states they were taken
in. Each update, on a minibatch of dataset transitions:

1. Predict an action in [-1, 1] for each state (a tanh MLP on the features).
2. Loss: the squared error to the dataset's action, averaged over every transition (`bc-all`) or
   over the transitions of safe episodes only, those whose cost is within `agent.cost_limit`
   (`bc-safe`).
3. Step the policy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.agents.base import OfflineAgent
from workbench.config import Config
from workbench.nets import MLP, adam
from workbench.world_model import WorldModel


class TanhPolicy(nn.Module):
    """A deterministic policy: features -> actions in [-1, 1]."""

    def __init__(self, feature_dim: int, action_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = MLP(feature_dim, action_dim, hidden, layers)

    def mode(self, features: Tensor) -> Tensor:
        return torch.tanh(self.net(features))


class BehaviourCloning(OfflineAgent):
    """`bc-all`: clone every transition of the dataset."""

    safe_only = False
    actor: TanhPolicy

    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        cfg = config.agent
        self.actor = TanhPolicy(world_model.feature_dim, action_dim, cfg.hidden, cfg.layers)
        self.optimizer = adam(self.actor.parameters(), config.offline.lr)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.optimizer}

    def update(self, transitions: dict[str, Tensor]) -> dict[str, float]:
        predicted = self.actor.mode(transitions["features"])  # 1
        error = (predicted - transitions["action"]).square().sum(-1)
        weight = transitions["safe"] if self.safe_only else torch.ones_like(error)
        loss = (weight * error).sum() / weight.sum().clamp(min=1)  # 2
        grad_norm = self.step(self.optimizer, loss)  # 3
        return {"agent/actor_loss": loss.item(), "agent/actor_grad_norm": grad_norm}


class SafeBehaviourCloning(BehaviourCloning):
    """`bc-safe`: clone only the transitions of episodes within the cost limit."""

    safe_only = True
