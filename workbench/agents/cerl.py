"""CERL (seed 002): pessimism over the world model's ensemble, and log-barrier policy
optimisation that keeps every policy iterate inside the feasible set.

The K transition heads of the world model are K plausible dynamics. A policy counts as safe only
if the worst of them predicts a cost return Jc within the budget d. Inside that set the actor
maximises the log-barrier objective

    J + eta log(d - Jc_worst)

which falls to -inf at the boundary, so its gradient pushes the actor away from it. (The paper
writes the same barrier for a minimisation: J - eta log(-Jc), the constraint being Jc <= 0.)
Each update:

1. Pick the start states, and imagine `horizon` steps under the actor from them once per
   ensemble member k, with that member's dynamics throughout.
2. Compute lambda-returns of reward and cost along every rollout. Jc_k = member k's mean cost
   return from the starts, in the same units as d (`cost_budget`); Jc_worst = max_k Jc_k.
3. If Jc_worst < d (feasible), the actor maximises the log barrier (`log_barrier_objective`), J
   being Dreamer's discounted, scale-normalised return averaged over all rollouts. Otherwise the
   barrier is undefined, so the actor recovers: it minimises Jc_worst until it is back inside.
   Both add the entropy bonus.
4. Take the actor's Adam step. When feasible, keep the new actor only if it stays feasible
   (`feasible_step`): re-estimate its Jc_worst with fresh imagination from the same starts and,
   while Jc_worst >= d - slack, shrink the step by `backtrack`; after `max_backtracks` shrinks,
   keep the old actor. This backtracking line search stands in for LBSGD's step-size formula
   (Usmanova et al.), which needs smoothness constants of J and Jc that are unknown here; both
   keep the iterates feasible. Recovery steps are taken whole.
5. Regress the reward and cost critics on the returns of all K x starts rollouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from workbench.agents.base import Agent, Update
from workbench.config import CERLConfig
from workbench.world_model import Imagination, Latent


def log_barrier_objective(j: Tensor, jc: Tensor, d: float, eta: float) -> Tensor:
    """J + eta log(d - Jc), to maximise; -inf where Jc >= d (outside the feasible set)."""
    gap = d - jc
    barrier = torch.log(gap.clamp(min=torch.finfo(gap.dtype).tiny))
    return torch.where(gap > 0, j + eta * barrier, -torch.inf)


@dataclass
class StepResult:
    scale: float
    """Fraction of the proposed step taken (0: the old parameters were kept)."""
    backtracks: int
    """How many times the step was shrunk."""


def feasible_step(
    move: Callable[[float], None], worst_cost: Callable[[], float], d: float, cfg: CERLConfig
) -> StepResult:
    """Take the largest of the step scales 1, b, b^2, ..., b^max_backtracks (b = `backtrack`)
    after which worst_cost() < d - slack, or, if none is, stay where the step started.

    move(scale) puts the parameters at start + scale x the proposed step; worst_cost() estimates
    the constraint where they are."""
    scale = 1.0
    for backtracks in range(cfg.max_backtracks + 1):
        move(scale)
        if worst_cost() < d - cfg.slack:
            return StepResult(scale, backtracks)
        scale *= cfg.backtrack
    move(0.0)
    return StepResult(0.0, cfg.max_backtracks)


def join(rollouts: list[Imagination]) -> Imagination:
    """One batch [H+1, K*N] from K batches of rollouts [H+1, N], in order."""

    def cat(values: list) -> Tensor | Latent:
        if isinstance(values[0], Latent):
            return Latent(*(cat([getattr(v, f.name) for v in values]) for f in fields(Latent)))
        return torch.cat(values, 1)

    return Imagination(
        **{f.name: cat([getattr(r, f.name) for r in rollouts]) for f in fields(Imagination)}
    )


class CERL(Agent):
    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        cfg = self.config
        start = self.imagination_starts(posterior)  # 1
        imagination = self.imagine_members(start)
        reward_return = self.returns(imagination, imagination.reward, self.critic)  # 2
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        member_costs = self.member_cost_returns(cost_return)
        jc_worst, d = member_costs.max(), self.cost_budget
        weights = self.discount_weights(imagination)
        j = (weights * self.normalised(reward_return)).mean()
        entropy = cfg.agent.entropy * (weights * self.entropy(imagination)).mean()
        feasible = jc_worst.item() < d
        if feasible:  # 3
            objective = log_barrier_objective(j, jc_worst, d, cfg.cerl.eta)
        else:
            objective = -jc_worst  # recovery
        actor_loss = -(objective + entropy)
        grad_norm, step = self.step_actor_feasibly(actor_loss, start, feasible)  # 4
        metrics = self.train_critics(imagination, reward_return, cost_return)  # 5
        metrics.update(self.summary(imagination, reward_return, cost_return))
        barrier = cfg.cerl.eta * torch.log(d - jc_worst).item() if feasible else float("nan")
        metrics.update({
            "agent/actor_loss": actor_loss.item(),
            "agent/actor_grad_norm": grad_norm,
            "cerl/jc_worst": jc_worst.item(),
            "cerl/jc_mean": member_costs.mean().item(),
            "cerl/budget": d,
            "cerl/barrier_term": barrier,
            "cerl/step_scale": step.scale,
            "cerl/feasible": float(feasible),
            "cerl/backtracks": float(step.backtracks),
        })  # fmt: skip
        return Update(metrics, imagination)

    def imagine_members(self, start: Latent) -> Imagination:
        """Rollouts from `start` [N] under each member k in turn: [H+1, K*N]."""
        members = self.world_model.config.ensemble
        return join([self.imagine_from(start, member=k) for k in range(members)])

    def member_cost_returns(self, cost_return: Tensor) -> Tensor:
        """[K] each member's mean cost return from the start states (cost_return: [H, K*N])."""
        return cost_return[0].reshape(self.world_model.config.ensemble, -1).mean(1)

    @torch.no_grad()
    def worst_cost_return(self, start: Latent) -> float:
        """Jc_worst of the actor as it is now, from fresh rollouts."""
        imagination = self.imagine_members(start)
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        return self.member_cost_returns(cost_return).max().item()

    def step_actor_feasibly(
        self, loss: Tensor, start: Latent, feasible: bool
    ) -> tuple[float, StepResult]:
        """Step 4: the actor's Adam step, shrunk by `feasible_step` while it leaves the feasible
        set (when it started inside). Returns the gradient norm and the step taken."""
        parameters = list(self.actor.parameters())
        before = [p.detach().clone() for p in parameters]
        grad_norm = self.step_actor(loss)
        if not feasible:
            return grad_norm, StepResult(1.0, 0)
        proposed = [p.detach() - b for p, b in zip(parameters, before, strict=True)]

        @torch.no_grad()
        def move(scale: float) -> None:
            for p, b, delta in zip(parameters, before, proposed, strict=True):
                p.copy_(b + scale * delta)

        d = self.cost_budget
        return grad_norm, feasible_step(
            move, lambda: self.worst_cost_return(start), d, self.config.cerl
        )
