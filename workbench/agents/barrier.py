"""Latent barrier function (seeds 000/001): Dreamer's actor-critic, kept safe by a learned
barrier B(z) on latent states.

B is positive on safe states and negative on unsafe ones. A discrete-time barrier keeps the safe
set {B >= 0} forward invariant: if B(z) >= 0 and every transition z -> z' satisfies
B(z') - B(z) + alpha B(z) >= 0, then B(z') >= (1 - alpha) B(z) >= 0, so B never turns negative.
The barrier learns these conditions from data and imagination, and the actor learns to keep the
third one along its own imagined trajectories. All of it trains jointly with the world model.
Each update:

1. Imagine `horizon` steps under the actor from every posterior state of the batch.
2. Barrier step. Label the batch's posterior latents safe (real cost == 0) or unsafe (cost > 0),
   and the imagined states t = 1..H by the world model's predicted cost (`imagination.cost`):
   unsafe where it exceeds `unsafe_cost`, as the reference does (`bc.py`, `barrier_loss_return`
   on the imagined costs, threshold 0.01). Take one Adam step on three hinge losses
   (`barrier_loss`):
       safe:        max(0, eps_safe - B(z))                 on safe latents, real and imagined
       unsafe:      max(0, eps_unsafe + B(z))               on unsafe latents, real and imagined
       invariance:  max(0, -(B(z') - B(z) + alpha B(z)))    on the imagined transitions z -> z'
   The imagination is detached here: this step moves B only.
3. Compute lambda-returns of the predicted rewards and costs.
4. Actor loss: Dreamer's (minus the discounted, scale-normalised returns, minus an entropy bonus)
   plus actor_weight x a penalty: the invariance violations of the imagined transitions, judged
   by the updated barrier, measured in units of alpha x eps_unsafe (`actor_violation`: the
   violation of a step that stays put in a hazard whose B sits at -eps_unsafe), and summed into
   a discounted return as rewards are (`future_sum`). So with actor_weight 1 every step ahead
   spent in a hazard costs the actor 1, as much as the whole spread (5th to 95th percentile)
   of its normalised returns, and moving deeper in costs more. Gradients flow through B and the
   world model's dynamics into the actions.
5. Step the actor.
6. Regress the reward and cost critics on their lambda-returns.

Where this differs from the reference (`bc.py`, `utils/utils.py`):
- The reference minimises one joint loss over barrier and controller, -sum_t returns + eta x
  the barrier loss, whose derivative condition is weighted 1e2 / dt = 5000 (dt = 0.02) against
  unnormalised returns. Here B and the actor take alternating steps, and the actor sees only
  the invariance condition: the safe/unsafe hinges judge B, not the policy (through the actor,
  the unsafe hinge would move imagined unsafe states to wherever B is lower). The weight is
  set by the unit and the return above instead of the reference's constant: the returns are
  normalised (DreamerV3), so the barrier's term has to be on their scale. Left in B's units and
  per step, staying in a hazard cost the actor alpha x eps_unsafe = 0.01 a step. Measured on
  `checkpoints/pointgoal1-barrier`, imagining from the hazard steps of its evaluation episode,
  the gradient norms on the actor were: reward term 0.26, barrier term 0.0094 before, 10.6
  now; on the toy of `tests/test_barrier_cerl.py` the barrier term went from a hundredth of
  the reward term's to more than it. That checkpoint's B (safe states at B = 0.06, below
  eps_safe) is violated on a third of the transitions even far from hazards, where the term
  now also outweighs the reward's (8.8 against 0.14): `actor_weight` is the knob.
- Labels of imagined states use `unsafe_cost` = 0.1 rather than 0.01: the cost head's
  prediction is a mean that, while the head is unsure, spreads a hazard's cost thinly over
  nearby states; 0.1 is still a tenth of the cost of one physics step in a hazard, so a hazard
  the head under-predicts (as it does: SafetyPointGoal1's unsafe steps were once predicted at
  0.23 for a true 1.97) is still labelled unsafe.
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


def future_sum(signal: Tensor, cont: Tensor, gamma: float) -> Tensor:
    """[H, N] discounted sums sum_k>=t gamma^(k-t) signal[k] of a per-transition signal [H, N]
    (transition t: state t -> t+1), discounted like rewards (cont: [H+1, N]), not bootstrapped."""
    total, sums = torch.zeros_like(signal[0]), []
    for t in reversed(range(len(signal))):
        total = signal[t] + gamma * cont[t + 1] * total
        sums.append(total)
    return torch.stack(sums[::-1])


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
        violation = self.actor_violation(imagination)
        penalty = future_sum(violation, imagination.cont.detach(), cfg.agent.gamma)
        objective = (
            self.normalised(reward_return)
            + cfg.agent.entropy * self.entropy(imagination)
            - cfg.barrier.actor_weight * penalty
        )
        actor_loss = -(weights * objective).mean()  # 4
        grad_norm = self.step_actor(actor_loss)  # 5
        metrics.update(self.train_critics(imagination, reward_return, cost_return))  # 6
        metrics.update(self.summary(imagination, reward_return, cost_return))
        metrics.update({
            "agent/actor_loss": actor_loss.item(),
            "agent/actor_grad_norm": grad_norm,
            "barrier/actor_violation": (weights * violation).mean().item(),
            "barrier/actor_violation_max": violation.max().item(),
        })  # fmt: skip
        return Update(metrics, imagination)

    def actor_violation(self, imagination: Imagination) -> Tensor:
        """Step 4: [H, N] invariance violation of each imagined transition, in units of
        alpha x eps_unsafe (staying put in a hazard at the margin: 1)."""
        cfg = self.config.barrier
        b = self.barrier(imagination.features)
        unit = cfg.alpha * cfg.eps_unsafe
        return invariance_violation(b[:-1], b[1:], cfg.alpha) / unit

    def train_barrier(
        self, posterior: Latent, cost: Tensor, imagination: Imagination
    ) -> dict[str, float]:
        """Step 2: one Adam step on `barrier_loss`. The metrics describe B before the step."""
        cfg = self.config.barrier
        b_real = self.barrier(posterior.features().detach()).flatten()
        unsafe_real = (cost > 0).flatten()
        b_imagined = self.barrier(imagination.features.detach())
        unsafe_imagined = (imagination.cost[1:] > cfg.unsafe_cost).flatten()
        b = torch.cat([b_real, b_imagined[1:].flatten()])
        unsafe = torch.cat([unsafe_real, unsafe_imagined])
        b_now, b_next = b_imagined[:-1], b_imagined[1:]
        loss, parts = barrier_loss(b[~unsafe], b[unsafe], b_now, b_next, cfg)
        _step(self.barrier_optimizer, loss, self.barrier.parameters(), self.config)
        with torch.no_grad():
            violated = invariance_violation(b_now, b_next, cfg.alpha) > 0
            imagined = b_imagined[1:].flatten()
            return {
                "barrier/loss": loss.item(),
                **{f"barrier/{name}_loss": part.item() for name, part in parts.items()},
                "barrier/safe_accuracy": _fraction(b_real[~unsafe_real] > 0),
                "barrier/unsafe_accuracy": _fraction(b_real[unsafe_real] < 0),
                "barrier/imagined_unsafe_fraction": _fraction(unsafe_imagined),
                "barrier/imagined_unsafe_accuracy": _fraction(imagined[unsafe_imagined] < 0),
                "barrier/invariance_violation_rate": _fraction(violated),
            }
