"""OSRP and OSRP-Lag (SafeDreamer, seed 004): constrained cross-entropy planning in latent space.

The agent plans at every action, in the world model, from the current posterior state of each
environment (SafeDreamer `behaviors.py`, `CCEPlanner.policy` and `PIDPlanner.policy`):

1. Proposals: roll the actor out `actor_samples` times for `horizon` steps; keep its actions.
2. Start a Gaussian over action sequences [horizon, action_dim] at std 1 and at the previous
   step's final mean shifted by one step (its last step repeated); at 0 where an episode starts.
3. Repeat `iterations` times:
   a. sample `samples - actor_samples` sequences from the Gaussian (clipped to [-1, 1]) and add
      the proposals;
   b. replay every sequence in the world model (all at once, no gradients) and score it: its
      reward return (the lambda-return of the predicted rewards, bootstrapped by the reward
      critic) and its cost: the predicted costs over the horizon, summed and scaled to an
      episode (x episode steps / horizon), to compare with the episode cost limit d;
   c. elites: the `elites` best by objective (the reward return; OSRP-Lag: the reward return
      minus multiplier x cost return, the cost critic's lambda-return) among the sequences whose
      cost is within d, or, when fewer than `elites` are, the `elites` of least cost
      (`select_elites`);
   d. refit the Gaussian to the elites: mean = momentum x mean + (1 - momentum) x their mean,
      std = their std (>= `min_std`).
4. Act: the first action of the final mean (when exploring too, as SafeDreamer does).

Training (`update`) is Dreamer's: the actor learns reward returns (it is the planner's
proposal), the reward and cost critics learn their lambda-returns. The planner's statistics are
averaged over the actions taken since the previous update (`planner/...` metrics).

OSRP-Lag adds a PID Lagrange multiplier (`lagrange.py`, at most 0.1), moved once per episode
(`episode_end`) by the EMA of the real episode costs against d (SafeDreamer `train_eval.py`),
never by imagined costs: it only ranks the feasible plans, so safety first comes from the
feasibility rule, and the multiplier trades reward for cost among safe plans while the real
cost stays above the limit.

Where this differs from SafeDreamer, and why:
- The cost of a plan is scaled by episode steps / horizon, where SafeDreamer scales by
  1000 / horizon whatever the action repeat: with a repeat of 4 or 5 (and costs summed over the
  repeated steps) that overstates the episode cost 4 or 5 times.
- A plan is feasible at cost <= d, not < d, so that d = 0 leaves the cost-free plans feasible;
  the elites among feasible plans are chosen by masking the others (SafeDreamer's fixed-size
  `nonzero` pads the feasible set with the first sample, feasible or not).
- A warm start is kept per environment and reset where an episode starts, recognised from the
  posterior itself (`episode_starts`), since `act` is not told; `reset_plans` forgets them all.
- The std never falls below `min_std` (SafeDreamer has no floor), so sampling never collapses.
- The actor proposes `actor_samples` of the sequences (SafeDreamer's `mixture_coef`: 5% by
  default, 0 in its OSRP configs), so what the actor learns reaches the plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from workbench.agents.base import Update, episode_steps
from workbench.agents.dreamer import Dreamer
from workbench.agents.lagrange import EpisodeCost, PIDLagrangian
from workbench.config import Config, PlannerConfig
from workbench.world_model import Latent, WorldModel

PLAN_STATISTICS = (
    "planner/feasible_fraction",  # of the sampled plans, within the cost limit
    "planner/enough_feasible",  # of the plans made, those with `elites` feasible: reward ranked
    "planner/planned_return",  # the elites' reward return
    "planner/planned_cost",  # the elites' predicted episode cost
    "planner/action_std",  # the final Gaussian's std at the first step
)


@dataclass
class Plan:
    mean: Tensor  # [H, N, A] the final sampling distribution
    std: Tensor  # [H, N, A]
    statistics: Tensor  # [5] of the last iteration, in the order of PLAN_STATISTICS


def select_elites(
    reward: Tensor,
    cost: Tensor,
    budget: float,
    elites: int,
    multiplier: float | None = None,
    cost_return: Tensor | None = None,
) -> Tensor:
    """Indices [..., elites] into the last dim of the plans' rewards and costs [..., S].

    The `elites` best by objective among the plans with cost <= budget, or, when fewer than
    `elites` are within budget, the `elites` of least cost. The objective is the reward (OSRP)
    or the Lagrangian reward - multiplier x cost_return (OSRP-Lag; cost_return defaults to
    cost)."""
    objective = reward
    if multiplier is not None:
        objective = reward - multiplier * (cost if cost_return is None else cost_return)
    feasible = cost <= budget
    enough = feasible.sum(-1, keepdim=True) >= elites
    best_feasible = objective.masked_fill(~feasible, -torch.inf)
    return torch.where(enough, best_feasible, -cost).topk(elites, dim=-1).indices


def cross_entropy_plan(
    score: Callable[[Tensor], Sequence[Tensor]],
    proposals: Tensor,
    config: PlannerConfig,
    budget: float,
    multiplier: float | None = None,
    mean: Tensor | None = None,
) -> Plan:
    """Constrained cross-entropy method (steps 2-3), for N start states at once.

    score: action sequences [H, N, S, A] -> (rewards [N, S], costs [N, S]), or with a third,
    the cost returns [N, S] the multiplier weighs (see `select_elites`).
    proposals: [H, N, P, A] sequences tried at every iteration besides the Gaussian's samples.
    mean: [H, N, A] where the Gaussian starts (a warm start), zeros when None.
    """
    horizon, count, _, action_dim = proposals.shape
    mean = proposals.new_zeros(horizon, count, action_dim) if mean is None else mean
    std = torch.ones_like(mean)
    shape = (horizon, count, config.samples - proposals.shape[2], action_dim)
    for _ in range(config.iterations):
        noise = torch.randn(shape, device=mean.device)
        samples = (mean.unsqueeze(2) + std.unsqueeze(2) * noise).clamp(-1, 1)  # a
        actions = torch.cat([proposals, samples], 2)
        rewards, costs, *cost_returns = score(actions)  # b
        cost_return = cost_returns[0] if cost_returns else None
        elites = select_elites(rewards, costs, budget, config.elites, multiplier, cost_return)  # c
        chosen = actions.gather(2, elites[None, :, :, None].expand(horizon, -1, -1, action_dim))
        mean = config.momentum * mean + (1 - config.momentum) * chosen.mean(2)  # d
        std = chosen.std(2, unbiased=False).clamp(min=config.min_std)
    feasible = costs <= budget
    statistics = torch.stack([
        feasible.float().mean(),
        (feasible.sum(-1) >= config.elites).float().mean(),
        rewards.gather(1, elites).float().mean(),
        costs.gather(1, elites).float().mean(),
        std[0].float().mean(),
    ])  # fmt: skip
    return Plan(mean, std, statistics)


class OSRP(Dreamer):
    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        self.action_dim = action_dim
        self.episode_cost = EpisodeCost(config.lagrange.cost_ema)
        self.plan_mean: Tensor | None = None  # [H, N, A] the last plan of each environment
        self.plan_totals: Tensor | None = None  # sums of the statistics since the last update
        self.plan_count = 0

    @property
    def planning_multiplier(self) -> float | None:
        """Weight of the cost return in the planner's objective (None: reward alone)."""
        return None

    @property
    def cost_limit(self) -> float:
        """The episode cost limit d, which a plan's predicted episode cost is held to."""
        return self.config.agent.cost_limit

    @torch.no_grad()
    def act(self, latent: Latent, explore: bool) -> Tensor:
        multiplier = self.planning_multiplier
        plan = cross_entropy_plan(
            lambda actions: self.score(latent, actions, with_cost_return=multiplier is not None),
            self.proposals(latent),  # 1
            self.config.planner,
            self.cost_limit,
            multiplier,
            mean=self.warm_start(latent),  # 2
        )  # 3
        self.plan_mean = plan.mean
        totals = self.plan_totals
        self.plan_totals = plan.statistics if totals is None else totals + plan.statistics
        self.plan_count += 1
        return plan.mean[0].clamp(-1, 1)  # 4

    def reset_plans(self) -> None:
        """Forget every environment's last plan: the next plans start from 0."""
        self.plan_mean = None

    def warm_start(self, latent: Latent) -> Tensor:
        """[H, N, A] the mean each environment's plan starts from: its previous plan shifted by
        one step (the last step repeated), or 0 at an episode's start or with no previous plan
        for this batch of environments."""
        count, horizon = len(latent.deter), self.config.planner.horizon
        previous = self.plan_mean
        if previous is None or previous.shape != (horizon, count, self.action_dim):
            return latent.deter.new_zeros(horizon, count, self.action_dim, dtype=torch.float32)
        shifted = torch.cat([previous[1:], previous[-1:]]).to(latent.deter.device)
        return shifted.masked_fill(self.episode_starts(latent)[None, :, None], 0.0)

    def episode_starts(self, latent: Latent) -> Tensor:
        """[N] whether each posterior state is an episode's first. The filter resets the state
        and action to zero there, so its deterministic state is the one the zero state and a
        zero action lead to, whatever the frame; later states differ from it."""
        world_model = self.world_model
        with torch.autocast(latent.deter.device.type, enabled=False):
            zero_action = torch.zeros(1, self.action_dim, device=latent.deter.device)
            first = world_model.imagine_step(world_model.initial(1), zero_action).deter
        return torch.isclose(latent.deter.float(), first.float(), rtol=0, atol=1e-5).all(-1)

    def proposals(self, start: Latent) -> Tensor:
        """Actions [H, N, P, A] of P rollouts of the actor from each of the N start states."""
        horizon, count = self.config.planner.horizon, self.config.planner.actor_samples
        starts = start.map(lambda x: x.repeat_interleave(count, 0))
        actions = self.world_model.imagine(self.actor.sample, starts, horizon).actions
        return actions.reshape(horizon, len(start.deter), count, actions.shape[-1]).float()

    def score(
        self, start: Latent, actions: Tensor, with_cost_return: bool = False
    ) -> tuple[Tensor, ...]:
        """For action sequences [H, N, S, A] from start states [N]: reward returns [N, S],
        predicted episode costs [N, S] and, if asked, cost returns [N, S]."""
        horizon, count, samples, action_dim = actions.shape
        starts = start.map(lambda x: x.repeat_interleave(samples, 0))
        steps = iter(actions.reshape(horizon, count * samples, action_dim))
        rollout = self.world_model.imagine(lambda _: next(steps), starts, horizon)  # replay them
        reward_return = self.returns(rollout, rollout.reward, self.critic)[0]
        episode_cost = rollout.cost[1:].float().sum(0) * (episode_steps(self.config) / horizon)
        scores = [reward_return.float(), episode_cost]
        if with_cost_return:
            scores.append(self.returns(rollout, rollout.cost, self.cost_critic)[0].float())
        return tuple(score.reshape(count, samples) for score in scores)

    def episode_end(self, cost: float) -> None:
        self.episode_cost.add(cost)

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        result = super().update(posterior, batch)
        metrics = result.metrics
        if self.plan_totals is not None:  # no plans yet right after the prefill
            averages = (self.plan_totals / self.plan_count).tolist()
            metrics.update(zip(PLAN_STATISTICS, averages, strict=True))
        self.plan_totals, self.plan_count = None, 0
        metrics["planner/cost_limit"] = self.cost_limit
        metrics["agent/episode_cost_ema"] = self.episode_cost.ema.item()
        return result


class OSRPLag(OSRP):
    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        self.lagrangian = PIDLagrangian(config.lagrange, config.agent.cost_limit)

    @property
    def planning_multiplier(self) -> float:
        return self.lagrangian.multiplier

    def episode_end(self, cost: float) -> None:
        """Move the multiplier by the PID rule on the EMA of the real episode costs."""
        super().episode_end(cost)
        self.lagrangian.update(self.episode_cost.ema.item())

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        result = super().update(posterior, batch)
        result.metrics.update({
            "lagrange/multiplier": self.lagrangian.multiplier,
            "lagrange/integral": self.lagrangian.integral.item(),
            "lagrange/cost_ema": self.episode_cost.ema.item(),
            "lagrange/budget": self.lagrangian.budget,
        })  # fmt: skip
        return result
