"""BSRP-Lag (SafeDreamer, seed 004): an actor trained with an augmented Lagrangian against a
pessimistic estimate of its imagined cost.

Each update:

1. Imagine `horizon` steps under the actor from every posterior state of the batch.
2. Compute lambda-returns of the predicted rewards and costs, bootstrapped by the target critics.
3. Cost estimate J_c: the discount-weighted average of the cost returns (in the critic's units,
   so it compares with `cost_budget`), made pessimistic by adding `pessimism` standard
   deviations of the same estimate over the ensemble: the same start states imagined once with
   each transition head alone (no gradients). The spread is taken over whole estimates, not per
   state, so it measures the members' disagreement rather than the noise of single rollouts.
   (These K extra rollouts make an update about 4x Dreamer's with K = 5; pessimism 0 skips them.)
4. Move the Lagrange multiplier by the PID rule on the violation J_c - budget (`lagrange.py`).
5. Augmented Lagrangian penalty (Nocedal & Wright, eq. 17.65) with multiplier l and quadratic
   weight c on g = J_c - budget:
       psi = l g + c g^2 / 2   if l + c g > 0,   else  -l^2 / (2c)
   Its gradient pushes the cost down with weight max(0, l + c g): hard while the constraint is
   violated, not at all once it is met with room to spare.
6. Actor loss: minus the discounted, scale-normalised reward returns, minus an entropy bonus,
   plus psi (gradients flow back through the world model's dynamics into the actions).
7. Step the actor, then regress the reward and cost critics on their lambda-returns.
"""

from __future__ import annotations

import torch
from torch import Tensor

from workbench.agents.base import Agent, Update
from workbench.agents.lagrange import PIDLagrangian
from workbench.config import Config
from workbench.world_model import Imagination, Latent, WorldModel


class BSRPLag(Agent):
    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        self.lagrangian = PIDLagrangian(config.lagrange, self.cost_budget)

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        cfg = self.config
        imagination = self.imagine(posterior)  # 1
        reward_return = self.returns(imagination, imagination.reward, self.critic)  # 2
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        weights = self.discount_weights(imagination)
        cost_estimate = weighted_average(cost_return, weights)  # 3
        spread = self.member_spread(imagination) if cfg.lagrange.pessimism else 0.0
        cost_estimate = cost_estimate + cfg.lagrange.pessimism * spread
        multiplier = self.lagrangian.update(cost_estimate.item())  # 4
        violation = cost_estimate - self.cost_budget
        penalty = augmented_lagrangian(violation, multiplier, cfg.lagrange.penalty)  # 5
        objective = self.normalised(reward_return) + cfg.agent.entropy * self.entropy(imagination)
        actor_loss = -(weights * objective).mean() + penalty  # 6
        grad_norm = self.step_actor(actor_loss)  # 7
        metrics = self.train_critics(imagination, reward_return, cost_return)
        metrics.update(self.summary(imagination, reward_return, cost_return))
        metrics.update({
            "agent/actor_loss": actor_loss.item(),
            "agent/actor_grad_norm": grad_norm,
            "lagrange/multiplier": multiplier,
            "lagrange/cost_estimate": cost_estimate.item(),
            "lagrange/cost_spread": float(spread),
            "lagrange/budget": self.cost_budget,
            "lagrange/penalty": penalty.item(),
        })  # fmt: skip
        return Update(metrics, imagination)

    @torch.no_grad()
    def member_spread(self, imagination: Imagination) -> Tensor:
        """Standard deviation over the K ensemble members of the cost estimate, each member
        imagining alone from the same start states."""
        start = imagination.latents.map(lambda x: x[0])
        horizon = self.config.agent.horizon
        estimates = []
        for member in range(self.config.model.ensemble):
            rollout = self.world_model.imagine(self.actor.sample, start, horizon, member)
            cost_return = self.returns(rollout, rollout.cost, self.cost_critic)
            estimates.append(weighted_average(cost_return, self.discount_weights(rollout)))
        return torch.stack(estimates).std(unbiased=False)


def weighted_average(values: Tensor, weights: Tensor) -> Tensor:
    return (weights * values).sum() / weights.sum()


def augmented_lagrangian(violation: Tensor, multiplier: float, penalty: float) -> Tensor:
    """psi(g) = l g + c g^2 / 2 where l + c g > 0, else -l^2 / (2c), written as one expression:
    (max(0, l + c g)^2 - l^2) / (2c)."""
    return ((multiplier + penalty * violation).clamp(min=0) ** 2 - multiplier**2) / (2 * penalty)
