"""Latent barrier function (seeds 000/001): Dreamer's actor-critic, kept safe by a learned
barrier B(z) on latent states.

B is positive on safe states and negative on unsafe ones. A discrete-time barrier keeps the safe
set {B >= 0} forward invariant: if B(z) >= 0 and every transition z -> z' satisfies
B(z') - B(z) + alpha B(z) >= 0, then B(z') >= (1 - alpha) B(z) >= 0, so B never turns negative.
The barrier learns these conditions from data and imagination, and the actor learns to keep the
third one along its own imagined trajectories. All of it trains jointly with the world model.
Each update:

1. Imagine `horizon` steps under the actor from every posterior state of the batch.
2. Barrier step. Label the batch's posterior latents safe (cost == 0) or unsafe (cost > 0) and
   take one Adam step on three hinge losses (`barrier_loss`):
       safe:        max(0, eps_safe - B(z))                 on safe posterior latents
       unsafe:      max(0, eps_unsafe + B(z))               on unsafe posterior latents
       invariance:  max(0, -(B(z') - B(z) + alpha B(z)))    on the imagined transitions z -> z'
   The imagination is detached here: this step moves B only.
3. Compute lambda-returns of the predicted rewards and costs.
4. Actor loss: Dreamer's (minus the discounted, scale-normalised returns, minus an entropy bonus)
   plus actor_weight x the invariance violation of every imagined transition, judged by the
   updated barrier. Gradients flow through B and the world model's dynamics into the actions.
5. Step the actor.
6. Regress the reward and cost critics on their lambda-returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.agents.base import Agent, Update, _step
from workbench.config import BarrierConfig, Config
from workbench.nets import MLP, adam
from workbench.world_model import Imagination, Latent, WorldModel


class BarrierNet(nn.Module):
    """B(z): one number per latent state, from its features [..., F] -> [...]."""

    def __init__(self, feature_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = MLP(feature_dim, 1, hidden, layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)


def invariance_violation(b_now: Tensor, b_next: Tensor, alpha: float) -> Tensor:
    """How far each transition falls short of B(z') - B(z) + alpha B(z) >= 0 (0 where it holds)."""
    return F.relu(-(b_next - b_now + alpha * b_now))


def barrier_loss(
    b_safe: Tensor, b_unsafe: Tensor, b_now: Tensor, b_next: Tensor, cfg: BarrierConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """The barrier's loss from B on safe latents, on unsafe latents, and on both ends of imagined
    transitions (b_now -> b_next), and its three parts. Each part is the mean of a hinge over its
    own set (0 for an empty set), so a few unsafe states weigh as much as many safe ones."""
    parts = {
        "safe": _mean(F.relu(cfg.eps_safe - b_safe)),
        "unsafe": _mean(F.relu(cfg.eps_unsafe + b_unsafe)),
        "invariance": _mean(invariance_violation(b_now, b_next, cfg.alpha)),
    }
    loss = parts["safe"] + parts["unsafe"] + cfg.invariance_weight * parts["invariance"]
    return loss, parts


def _mean(values: Tensor) -> Tensor:
    return values.sum() / max(values.numel(), 1)


def _fraction(condition: Tensor) -> float:
    """Share of True entries; NaN when there are none to count (the metrics writer skips NaN)."""
    return condition.float().mean().item() if condition.numel() else float("nan")


class BarrierAgent(Agent):
    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        self.barrier = BarrierNet(world_model.feature_dim, config.agent.hidden, config.agent.layers)
        self.barrier_optimizer = adam(self.barrier.parameters(), config.barrier.lr)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "barrier": self.barrier_optimizer}

    @torch.no_grad()
    def inspect(self, features: Tensor) -> dict[str, Tensor]:
        return {**super().inspect(features), "barrier": self.barrier(features)}

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        cfg = self.config
        imagination = self.imagine(posterior)  # 1
        metrics = self.train_barrier(posterior, batch["cost"], imagination)  # 2
        reward_return = self.returns(imagination, imagination.reward, self.critic)  # 3
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        weights = self.discount_weights(imagination)
        b = self.barrier(imagination.features)
        violation = invariance_violation(b[:-1], b[1:], cfg.barrier.alpha)
        objective = (
            self.normalised(reward_return)
            + cfg.agent.entropy * self.entropy(imagination)
            - cfg.barrier.actor_weight * violation
        )
        actor_loss = -(weights * objective).mean()  # 4
        grad_norm = self.step_actor(actor_loss)  # 5
        metrics.update(self.train_critics(imagination, reward_return, cost_return))  # 6
        metrics.update(self.summary(imagination, reward_return, cost_return))
        metrics.update({
            "agent/actor_loss": actor_loss.item(),
            "agent/actor_grad_norm": grad_norm,
            "barrier/actor_violation": (weights * violation).mean().item(),
        })  # fmt: skip
        return Update(metrics, imagination)

    def train_barrier(
        self, posterior: Latent, cost: Tensor, imagination: Imagination
    ) -> dict[str, float]:
        """Step 2: one Adam step on `barrier_loss`. The metrics describe B before the step."""
        b = self.barrier(posterior.features().detach())
        unsafe = cost > 0
        b_imagined = self.barrier(imagination.features.detach())
        b_now, b_next = b_imagined[:-1], b_imagined[1:]
        loss, parts = barrier_loss(b[~unsafe], b[unsafe], b_now, b_next, self.config.barrier)
        _step(self.barrier_optimizer, loss, self.barrier.parameters(), self.config)
        with torch.no_grad():
            violated = invariance_violation(b_now, b_next, self.config.barrier.alpha) > 0
            return {
                "barrier/loss": loss.item(),
                **{f"barrier/{name}_loss": part.item() for name, part in parts.items()},
                "barrier/safe_accuracy": _fraction(b[~unsafe] > 0),
                "barrier/unsafe_accuracy": _fraction(b[unsafe] < 0),
                "barrier/invariance_violation_rate": _fraction(violated),
            }
