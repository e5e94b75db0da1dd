"""OSRP and OSRP-Lag (SafeDreamer, seed 004): constrained cross-entropy planning in latent space.

The agent plans at every action, in the world model, from the current posterior state:

1. Proposals: roll the actor out `actor_samples` times for `horizon` steps; keep its actions.
2. Start a Gaussian over action sequences [horizon, action_dim] at mean 0, std 1 (each step
   starts afresh: the actor's proposals carry what was learned before).
3. Repeat `iterations` times:
   a. sample `samples - actor_samples` sequences from the Gaussian (clipped to [-1, 1]) and add
      the proposals;
   b. replay every sequence in the world model (all at once, no gradients) and score it: its
      reward return and its cost return, each the lambda-return of the predictions bootstrapped
      by the (target) critic at the end, in the critic's units, like `cost_budget`;
   c. elites: the `elites` best by objective (the reward return; OSRP-Lag: the reward return
      minus multiplier x cost return) among the sequences whose cost is within budget, or, when
      fewer than `elites` are, the `elites` of least cost (OSRP) or best by that Lagrangian
      objective over all sequences (OSRP-Lag) (`select_elites`);
   d. refit the Gaussian's mean and std (std >= `min_std`) to the elites.
4. Act: the first action of the mean; when exploring, plus the Gaussian's noise at that step.

Training (`update`) is Dreamer's: the actor learns reward returns (it is the planner's proposal),
the reward and cost critics learn their lambda-returns (the planner bootstraps with both).
The planner's statistics are averaged over the actions taken since the previous update.

OSRP-Lag adds a PID Lagrange multiplier (`lagrange.py`) to the objective. It is driven by the
planned cost (the elites' cost return) of the actions taken since the previous update: the
imagined cost of the behaviour the multiplier actually shapes, so the control loop is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from workbench.agents.base import Update
from workbench.agents.dreamer import Dreamer
from workbench.agents.lagrange import PIDLagrangian
from workbench.config import Config, PlannerConfig
from workbench.world_model import Latent, WorldModel

PLAN_STATISTICS = ("planner/safe_fraction", "planner/planned_return", "planner/planned_cost")


@dataclass
class Plan:
    mean: Tensor  # [H, N, A] the final sampling distribution
    std: Tensor  # [H, N, A]
    statistics: Tensor  # [3] of the last iteration, in the order of PLAN_STATISTICS


def select_elites(
    reward: Tensor, cost: Tensor, budget: float, elites: int, multiplier: float | None = None
) -> Tensor:
    """Indices [..., elites] into the last dim of reward and cost returns [..., S].

    OSRP (multiplier None): the `elites` best by reward among the sequences with cost <= budget,
    or, when fewer than `elites` are within budget, the `elites` of least cost.
    OSRP-Lag: the same, ranked by the Lagrangian reward - multiplier x cost, and with no safe
    plans enough, the best by that Lagrangian over all: the multiplier, not a fixed rule, then
    decides how much reward to give up for safety."""
    lagrangian = multiplier is not None
    objective = reward - multiplier * cost if lagrangian else reward
    feasible = cost <= budget
    enough = feasible.sum(-1, keepdim=True) >= elites
    best_feasible = objective.masked_fill(~feasible, -torch.inf)
    fallback = objective if lagrangian else -cost
    return torch.where(enough, best_feasible, fallback).topk(elites, dim=-1).indices


def cross_entropy_plan(
    score: Callable[[Tensor], tuple[Tensor, Tensor]],
    proposals: Tensor,
    config: PlannerConfig,
    budget: float,
    multiplier: float | None = None,
) -> Plan:
    """Constrained cross-entropy method (steps 2-3), for N start states at once.

    score: action sequences [H, N, S, A] -> (reward returns [N, S], cost returns [N, S]).
    proposals: [H, N, P, A] sequences tried at every iteration besides the Gaussian's samples.
    """
    horizon, count, _, action_dim = proposals.shape
    mean = proposals.new_zeros(horizon, count, action_dim)
    std = torch.ones_like(mean)
    shape = (horizon, count, config.samples - proposals.shape[2], action_dim)
    for _ in range(config.iterations):
        noise = torch.randn(shape, device=mean.device)
        samples = (mean.unsqueeze(2) + std.unsqueeze(2) * noise).clamp(-1, 1)  # a
        actions = torch.cat([proposals, samples], 2)
        returns, costs = score(actions)  # b
        elites = select_elites(returns, costs, budget, config.elites, multiplier)  # c
        chosen = actions.gather(2, elites[None, :, :, None].expand(horizon, -1, -1, action_dim))
        mean = chosen.mean(2)  # d
        std = chosen.std(2, unbiased=False).clamp(min=config.min_std)
    statistics = torch.stack([
        (costs <= budget).float().mean(),
        returns.gather(1, elites).float().mean(),
        costs.gather(1, elites).float().mean(),
    ])  # fmt: skip
    return Plan(mean, std, statistics)


class OSRP(Dreamer):
    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        self.plan_totals: Tensor | None = None  # sums of the statistics since the last update
        self.plan_count = 0

    @property
    def planning_multiplier(self) -> float | None:
        """Weight of the cost return in the planner's objective (None: OSRP's rule, see
        `select_elites`)."""
        return None

    @torch.no_grad()
    def act(self, latent: Latent, explore: bool) -> Tensor:
        plan = cross_entropy_plan(
            lambda actions: self.score(latent, actions),
            self.proposals(latent),
            self.config.planner,
            self.cost_budget,
            self.planning_multiplier,
        )
        totals = self.plan_totals
        self.plan_totals = plan.statistics if totals is None else totals + plan.statistics
        self.plan_count += 1
        action = plan.mean[0]  # 4
        if explore:
            action = action + plan.std[0] * torch.randn_like(action)
        return action.clamp(-1, 1)

    def proposals(self, start: Latent) -> Tensor:
        """Actions [H, N, P, A] of P rollouts of the actor from each of the N start states."""
        horizon, count = self.config.planner.horizon, self.config.planner.actor_samples
        starts = start.map(lambda x: x.repeat_interleave(count, 0))
        actions = self.world_model.imagine(self.actor.sample, starts, horizon).actions
        return actions.reshape(horizon, len(start.deter), count, actions.shape[-1]).float()

    def score(self, start: Latent, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Reward and cost returns [N, S] of action sequences [H, N, S, A] from start states [N]."""
        horizon, count, samples, action_dim = actions.shape
        starts = start.map(lambda x: x.repeat_interleave(samples, 0))
        steps = iter(actions.reshape(horizon, count * samples, action_dim))
        rollout = self.world_model.imagine(lambda _: next(steps), starts, horizon)  # replay them
        reward_return = self.returns(rollout, rollout.reward, self.critic)[0]
        cost_return = self.returns(rollout, rollout.cost, self.cost_critic)[0]
        return reward_return.reshape(count, samples), cost_return.reshape(count, samples)

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        result = super().update(posterior, batch)
        if self.plan_count:  # no plans yet right after the prefill
            averages = (self.plan_totals / self.plan_count).tolist()
            result.metrics.update(zip(PLAN_STATISTICS, averages, strict=True))
        self.plan_totals, self.plan_count = None, 0
        return result


class OSRPLag(OSRP):
    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        self.lagrangian = PIDLagrangian(config.lagrange, self.cost_budget)

    @property
    def planning_multiplier(self) -> float:
        return self.lagrangian.multiplier

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        result = super().update(posterior, batch)
        planned_cost = result.metrics.get("planner/planned_cost")
        if planned_cost is not None:
            self.lagrangian.update(planned_cost)
            result.metrics["lagrange/cost_estimate"] = planned_cost
        result.metrics["lagrange/multiplier"] = self.lagrangian.multiplier
        result.metrics["lagrange/budget"] = self.cost_budget
        return result
