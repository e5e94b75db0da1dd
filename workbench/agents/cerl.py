"""CERL (seed 002): pessimism over the world model's ensemble, and log-barrier policy
optimisation that keeps every policy iterate inside the feasible set.

The K transition heads of the world model are K plausible dynamics. A policy counts as safe only
if the worst of them predicts a cost Jc within the budget d. Inside that set the actor maximises
the log-barrier objective

    J + eta log(d - Jc_worst)

which falls to -inf at the boundary, so its gradient pushes the actor away from it. (The paper
writes the same barrier for a minimisation: J - eta log(-Jc), the constraint being Jc <= 0.)
Each update:

1. Pick the start states, and imagine `horizon` steps under the actor from them once per
   ensemble member k, with that member's dynamics throughout.
2. Compute lambda-returns of reward and cost along every rollout. Jc_k = the discount-weighted
   average of member k's cost returns over every imagined step of every rollout, in the units
   of d (`cost_budget`: both are discounted sums of per-step cost); Jc_worst = max_k Jc_k.
   Averaging over the imagined steps follows actsafe (`safe_actor_critic.py`, evaluate_actor:
   `constraint = safety_budget - safety_lambda_values.mean()`, a plain mean; the discount
   weights here are those of J and of BSRP-Lag's estimate). The cost return of the start
   states alone is mostly the cost of where the replay happened to be: a start inside a hazard
   owes the cost of the steps it takes to leave whatever the policy does, so with a small d that
   constraint can be out of every policy's reach and the agent would never leave recovery.
   (It is still reported, as cerl/jc_start.)
3. If Jc_worst < d (feasible), the actor maximises the log barrier (`log_barrier_objective`), J
   being Dreamer's discounted, scale-normalised return averaged over all rollouts. Otherwise the
   barrier is undefined, so the actor recovers: it minimises Jc_worst (actsafe's `lbsgd.py`
   fallback: a step down the constraint's gradient). Both add the entropy bonus. The mode is
   decided afresh at every update: recovery ends at the first update whose Jc_worst is below d.
   The iterates start inside the set, as LBSGD assumes: the world model's cost head and this
   agent's cost critic both start at exactly 0 (`CERL.__init__`), so Jc_worst = 0 < d at first.
4. Take the actor's Adam step. When feasible, keep the new actor only if it stays feasible
   (`feasible_step`): re-estimate its Jc_worst with fresh imagination from the same starts and,
   while Jc_worst >= d - slack, shrink the step by `backtrack`; after `max_backtracks` shrinks,
   keep the old actor. This backtracking line search stands in for LBSGD's step-size formula
   (Usmanova et al.; actsafe's `compute_lr`), which needs smoothness constants of J and Jc that
   are unknown here (actsafe sets them by hand, m_0 = m_1 = 1.2e4); both keep the iterates
   feasible. A rejected step (or one with a non-finite gradient) leaves Adam's state exactly as
   it was (`AdamSnapshot`; actsafe's `Learner.grad_step` likewise keeps its optimiser state on
   a non-finite update): the parameters did not move, so the moments must not remember the
   step, or the next update would be pushed again toward the step just refused. A step that was
   shrunk but kept keeps Adam's update: its gradient was used. Recovery steps are taken whole.
   After every feasible update eta shrinks: eta <- eta / (1 + eta_rate) (actsafe's `lbsgd.py`,
   happy case), so the barrier's pull slowly fades, as in an interior-point method.
5. Regress the reward and cost critics on the returns of all K x starts rollouts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

import torch
from torch import Tensor, nn

from workbench.agents.base import Agent, Update
from workbench.config import CERLConfig, Config
from workbench.world_model import Imagination, Latent, WorldModel


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


class AdamSnapshot:
    """A copy of an optimiser's per-parameter state (Adam: step, exp_avg, exp_avg_sq), to put
    back when the step it is about to take is refused."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.state = {
            parameter: {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
            for parameter, state in optimizer.state.items()
        }

    def restore(self) -> None:
        self.optimizer.state.clear()
        self.optimizer.state.update(self.state)


def join(rollouts: list[Imagination]) -> Imagination:
    """One batch [H+1, K*N] from K batches of rollouts [H+1, N], in order."""

    def cat(values: list) -> Any:  # a Tensor, or a Latent of them: as the values are
        if isinstance(values[0], Latent):
            return Latent(*(cat([getattr(v, f.name) for v in values]) for f in fields(Latent)))
        return torch.cat(values, 1)

    return Imagination(
        **{f.name: cat([getattr(r, f.name) for r in rollouts]) for f in fields(Imagination)}
    )


class CERL(Agent):
    eta: Tensor  # a buffer

    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        # 3: start inside the feasible set: the cost critic predicts exactly 0 at first, as the
        # world model's cost head does.
        output = cast(nn.Linear, self.cost_critic.net[-1])
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.cost_critic.target.load_state_dict(self.cost_critic.net.state_dict())
        self.register_buffer("eta", torch.tensor(float(config.cerl.eta)))

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """A checkpoint from before eta decayed has none: it goes on from `cerl.eta`."""
        return super().load_state_dict({"eta": self.eta, **state_dict}, strict, assign)

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        cfg = self.config
        start = self.imagination_starts(posterior)  # 1
        imagination = self.imagine_members(start)
        reward_return = self.returns(imagination, imagination.reward, self.critic)  # 2
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        weights = self.discount_weights(imagination)
        member_costs = self.member_constraints(cost_return, weights)
        jc_worst, d = member_costs.max(), self.cost_budget
        j = (weights * self.normalised(reward_return)).mean()
        entropy = cfg.agent.entropy * (weights * self.entropy(imagination)).mean()
        eta = self.eta.item()
        feasible = jc_worst.item() < d
        if feasible:  # 3
            objective = log_barrier_objective(j, jc_worst, d, eta)
        else:
            objective = -jc_worst  # recovery
        actor_loss = -(objective + entropy)
        grad_norm, step = self.step_actor_feasibly(actor_loss, start, feasible)  # 4
        if feasible:
            self.eta.div_(1 + cfg.cerl.eta_rate)
        metrics = self.train_critics(imagination, reward_return, cost_return)  # 5
        metrics.update(self.summary(imagination, reward_return, cost_return))
        jc_start = cost_return[0].reshape(len(member_costs), -1).mean(1).max().item()
        metrics.update({
            "agent/actor_loss": actor_loss.item(),
            "agent/actor_grad_norm": grad_norm,
            "cerl/jc_worst": jc_worst.item(),
            "cerl/jc_mean": member_costs.mean().item(),
            "cerl/jc_start": jc_start,
            "cerl/budget": d,
            "cerl/gap": d - jc_worst.item(),
            "cerl/eta": eta,
            "cerl/barrier_term": eta * math.log(d - jc_worst.item()) if feasible else math.nan,
            "cerl/step_scale": step.scale,
            "cerl/rejected": float(step.scale == 0),
            "cerl/feasible": float(feasible),
            "cerl/backtracks": float(step.backtracks),
        })  # fmt: skip
        return Update(metrics, imagination)

    def imagine_members(self, start: Latent) -> Imagination:
        """Rollouts from `start` [N] under each member k in turn: [H+1, K*N]."""
        members = self.world_model.config.ensemble
        return join([self.imagine_from(start, member=k) for k in range(members)])

    def member_constraints(self, cost_return: Tensor, weights: Tensor) -> Tensor:
        """[K] each member's Jc_k: the discount-weighted average of its cost returns over all
        imagined steps and starts (cost_return, weights: [H, K*N], members in order)."""
        members = self.world_model.config.ensemble
        cost_return = cost_return.reshape(len(cost_return), members, -1)
        weights = weights.reshape(len(weights), members, -1)
        return (weights * cost_return).sum((0, 2)) / weights.sum((0, 2))

    @torch.no_grad()
    def worst_cost_return(self, start: Latent) -> float:
        """Jc_worst of the actor as it is now, from fresh rollouts."""
        imagination = self.imagine_members(start)
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        weights = self.discount_weights(imagination)
        return self.member_constraints(cost_return, weights).max().item()

    def step_actor_feasibly(
        self, loss: Tensor, start: Latent, feasible: bool
    ) -> tuple[float, StepResult]:
        """Step 4: the actor's Adam step, shrunk by `feasible_step` while it leaves the feasible
        set (when it started inside), Adam's state put back when the step is refused. Returns the
        gradient norm and the step taken."""
        parameters = list(self.actor.parameters())
        before = [p.detach().clone() for p in parameters]
        adam = AdamSnapshot(self.actor_optimizer)
        grad_norm = self.step_actor(loss)
        proposed = [p.detach() - b for p, b in zip(parameters, before, strict=True)]

        @torch.no_grad()
        def move(scale: float) -> None:
            for p, b, delta in zip(parameters, before, proposed, strict=True):
                p.copy_(b + scale * delta if scale else b)

        if not math.isfinite(grad_norm):
            move(0.0)
            adam.restore()
            return grad_norm, StepResult(0.0, 0)
        if not feasible:
            return grad_norm, StepResult(1.0, 0)
        d = self.cost_budget
        step = feasible_step(move, lambda: self.worst_cost_return(start), d, self.config.cerl)
        if step.scale == 0:
            adam.restore()
        return grad_norm, step
