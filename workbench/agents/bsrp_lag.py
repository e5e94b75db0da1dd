"""BSRP-Lag (SafeDreamer, seed 004): an actor trained with an augmented Lagrangian against a
pessimistic estimate of its imagined cost.

Each update:

1. Imagine `horizon` steps under the actor from every posterior state of the batch.
2. Compute lambda-returns of the predicted rewards and costs, bootstrapped by the target critics.
3. Cost estimate J_c: the discount-weighted average of the cost returns, rescaled from the
   critic's units to an episode's cost (x episode steps / sum of gamma^t over an episode) so
   that it compares with the episode cost limit d, made pessimistic by adding `pessimism`
   standard deviations of the same estimate over the ensemble: the same start states imagined
   once with each transition head alone (no gradients). The spread is taken over whole
   estimates, not per state, so it measures the members' disagreement rather than the noise of
   single rollouts. (These K extra rollouts make an update about 4x Dreamer's with K = 5;
   pessimism 0 skips them.)
4. Augmented Lagrangian penalty (`lagrange.py`) with multiplier l and quadratic weight c on
   g = J_c - d:
       psi = l g + c g^2 / 2   if l + c g > 0,   else  -l^2 / (2c)
   Its gradient pushes the cost down with weight max(0, l + c g).
5. Move l <- max(0, l + c g) and grow c <- min(c (1 + `penalty_growth`), `penalty_max`). From
   l = 1e-6 and c = 5e-9 (SafeDreamer's values), the constraint weighs little until c has grown
   for ~10^6 updates: the agent learns the task first, and the constraint tightens later.
6. Actor loss: minus the discounted, scale-normalised reward returns, minus an entropy bonus,
   plus psi (gradients flow back through the world model's dynamics into the actions).
7. Step the actor, then regress the reward and cost critics on their lambda-returns.

The EMA of the real episode costs (`episode_end`) is only reported, next to the estimate.

Where this differs from SafeDreamer (`agent.py`, `ImagSafeActorCritic.loss`; `jaxutils.py`,
`Lagrange`), and why: SafeDreamer's pessimism (`pessimistic: True` for BSRP-Lag) sums the
lambda-returns over the imagination horizon instead of averaging them, a 15-fold estimate that
reads as a slip for summing over several cost critics; here pessimism comes from the ensemble,
as the project's world model has one. Its cost returns span an episode by themselves (discount
1 - 1/333 over 250-step episodes); with this project's discount they are rescaled (step 3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from workbench.agents.base import Agent, Update, episode_steps
from workbench.agents.lagrange import AugmentedLagrangian, EpisodeCost
from workbench.config import Config
from workbench.world_model import Imagination, Latent, WorldModel


class BSRPLag(Agent):
    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        self.lagrangian = AugmentedLagrangian(config.lagrange, config.agent.cost_limit)
        self.episode_cost = EpisodeCost(config.lagrange.cost_ema)

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        cfg = self.config
        imagination = self.imagine(posterior)  # 1
        reward_return = self.returns(imagination, imagination.reward, self.critic)  # 2
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        weights = self.discount_weights(imagination)
        scale = episode_scale(cfg)
        cost_estimate = scale * weighted_average(cost_return, weights)  # 3
        spread = scale * self.member_spread(imagination) if cfg.lagrange.pessimism else 0.0
        cost_estimate = cost_estimate + cfg.lagrange.pessimism * spread
        multiplier, penalty_weight = self.lagrangian.multiplier, self.lagrangian.penalty_weight
        penalty = self.lagrangian.update(cost_estimate)  # 4, 5
        objective = self.normalised(reward_return) + cfg.agent.entropy * self.entropy(imagination)
        actor_loss = -(weights * objective).mean() + penalty  # 6
        grad_norm = self.step_actor(actor_loss)  # 7
        estimate, budget = cost_estimate.item(), self.lagrangian.budget
        metrics = self.train_critics(imagination, reward_return, cost_return)
        metrics.update(self.summary(imagination, reward_return, cost_return))
        metrics.update({
            "agent/actor_loss": actor_loss.item(),
            "agent/actor_grad_norm": grad_norm,
            "agent/episode_cost_ema": self.episode_cost.ema.item(),
            "lagrange/multiplier": multiplier,
            "lagrange/penalty_multiplier": penalty_weight,
            # max(0, l + c g): the weight of the cost estimate's gradient in the actor's loss
            "lagrange/cost_weight": max(multiplier + penalty_weight * (estimate - budget), 0.0),
            "lagrange/penalty": penalty.item(),
            "lagrange/cost_estimate": estimate,
            "lagrange/cost_spread": float(spread),
            "lagrange/budget": budget,
        })  # fmt: skip
        return Update(metrics, imagination)

    def episode_end(self, cost: float) -> None:
        self.episode_cost.add(cost)

    @torch.no_grad()
    def member_spread(self, imagination: Imagination) -> Tensor:
        """Standard deviation over the K ensemble members of the cost estimate (critic units),
        each member imagining alone from the same start states."""
        start = imagination.latents.map(lambda x: x[0])
        horizon = self.config.agent.horizon
        estimates = []
        for member in range(self.config.model.ensemble):
            rollout = self.world_model.imagine(self.actor.sample, start, horizon, member)
            cost_return = self.returns(rollout, rollout.cost, self.cost_critic)
            estimates.append(weighted_average(cost_return, self.discount_weights(rollout)))
        return torch.stack(estimates).std(unbiased=False)


def episode_scale(config: Config) -> float:
    """Factor from a cost critic's units to an episode's cost: episode steps L over the
    discounted horizon sum_{t<L} gamma^t (the inverse of `base.cost_budget`'s conversion)."""
    gamma, steps = config.agent.gamma, episode_steps(config)
    horizon = (1 - gamma**steps) / (1 - gamma) if gamma < 1 else steps
    return steps / horizon


def weighted_average(values: Tensor, weights: Tensor) -> Tensor:
    return (weights * values).sum() / weights.sum()
