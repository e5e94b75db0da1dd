"""Lagrange multipliers for the SafeDreamer agents, and the EMA of real episode costs.

A Lagrangian agent maximises J_reward - multiplier * (J_cost - d). Two ways to move the multiplier:

`PIDLagrangian` (OSRP-Lag; Stooke, Achiam & Abbeel 2020). Plain gradient ascent on the multiplier
is an integral controller on the violation J_cost - d: it lags, so the cost overshoots and
oscillates. The PID Lagrangian adds a proportional term (react to the violation now) and a
derivative term (react to the cost rising) to damp that:

    violation  = J_cost - d
    integral   = clip(integral + ki * violation, 0, max)
    multiplier = clip(kp * violation + integral + kd * max(0, J_cost - previous J_cost), 0, max)

SafeDreamer (`train.py`, `PIDLagrangian.pid_update`) drives it once per episode with J_cost the
EMA of the real episode costs (`EpisodeCost`), and caps it at 0.1. Where it differs: it also
smooths the proportional term (EMA 0.95) and takes the derivative over 10 episodes, which adds
little on an input that is already an EMA with weight 0.01; and it does not clip the integral,
so after a long violation the multiplier stays at its cap long after the cost has fallen. Here
the integral is clipped too (anti-windup).

`AugmentedLagrangian` (BSRP-Lag; SafeDreamer `jaxutils.py`, `Lagrange`, after Nocedal & Wright,
eq. 17.65) moves a multiplier l and a quadratic penalty weight c at every update, on the
violation g = J_cost - d of the imagined cost:

    psi = l g + c g^2 / 2   if l + c g > 0,   else  -l^2 / (2c)      (added to the actor's loss)
    l  <- max(0, l + c g)
    c  <- min(c (1 + growth), penalty_max)

l starts at 1e-6 and c at 5e-9, growing by 1e-5 per update: the constraint hardly weighs on the
actor for the first ~10^6 updates (c doubles every ~69,000), so the agent learns the task first,
and the constraint tightens later.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.config import LagrangeConfig


class EpisodeCost(nn.Module):
    """EMA of the real episode costs, from 0 (SafeDreamer `train_eval.py`: 0.99 ema + 0.01 cost)."""

    ema: Tensor
    episodes: Tensor

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate
        self.register_buffer("ema", torch.zeros(()))
        self.register_buffer("episodes", torch.zeros((), dtype=torch.long))

    def add(self, cost: float) -> float:
        """Fold in one episode's cost; the new EMA."""
        self.ema.mul_(1 - self.rate).add_(self.rate * cost)
        self.episodes += 1
        return self.ema.item()


class PIDLagrangian(nn.Module):
    """The multiplier, its integral and the previous cost live in buffers, so they are
    checkpointed with the agent that holds this module."""

    lagrange_multiplier: Tensor
    integral: Tensor
    previous_cost: Tensor

    def __init__(self, config: LagrangeConfig, budget: float):
        super().__init__()
        self.config = config
        self.budget = budget
        self.register_buffer("lagrange_multiplier", torch.tensor(float(config.init)))
        # The integral starts at `init` so that, with no violation, the multiplier stays there.
        self.register_buffer("integral", torch.tensor(float(config.init)))
        self.register_buffer("previous_cost", torch.zeros(()))  # J_cost,prev = 0 (Stooke et al.)

    @property
    def multiplier(self) -> float:
        return self.lagrange_multiplier.item()

    def update(self, cost_estimate: float) -> float:
        """Move the multiplier by the PID rule on the violation `cost_estimate - budget`."""
        c = self.config
        violation = cost_estimate - self.budget
        rise = max(cost_estimate - self.previous_cost.item(), 0.0)
        integral = _clip(self.integral.item() + c.ki * violation, c.max)
        multiplier = _clip(c.kp * violation + integral + c.kd * rise, c.max)
        self.integral.fill_(integral)
        self.previous_cost.fill_(cost_estimate)
        self.lagrange_multiplier.fill_(multiplier)
        return multiplier


class AugmentedLagrangian(nn.Module):
    """Multiplier l and penalty weight c in buffers (checkpointed with the agent)."""

    lagrange_multiplier: Tensor
    penalty_multiplier: Tensor

    def __init__(self, config: LagrangeConfig, budget: float):
        super().__init__()
        self.config = config
        self.budget = budget
        self.register_buffer("lagrange_multiplier", torch.tensor(float(config.multiplier_init)))
        self.register_buffer("penalty_multiplier", torch.tensor(float(config.penalty)))

    @property
    def multiplier(self) -> float:
        return self.lagrange_multiplier.item()

    @property
    def penalty_weight(self) -> float:
        return self.penalty_multiplier.item()

    def update(self, cost_estimate: Tensor) -> Tensor:
        """psi(cost_estimate - budget) with the current l and c (differentiable in the estimate),
        then move l and c (SafeDreamer `jaxutils.py`, `Lagrange.update`)."""
        violation = cost_estimate.float() - self.budget
        multiplier, penalty = self.multiplier, self.penalty_weight
        psi = augmented_lagrangian(violation, multiplier, penalty)
        moved = max(multiplier + penalty * violation.detach().mean().item(), 0.0)
        self.lagrange_multiplier.fill_(moved)
        self.penalty_multiplier.fill_(
            min(penalty * (1 + self.config.penalty_growth), self.config.penalty_max)
        )
        return psi


def augmented_lagrangian(violation: Tensor, multiplier: float, penalty: float) -> Tensor:
    """psi(g) = l g + c g^2 / 2 where l + c g > 0, else -l^2 / (2c): its gradient pushes the cost
    down with weight max(0, l + c g), hard while the constraint is violated, not at all once it
    is met with room to spare. (Written piecewise, not as one expression, so that a tiny c
    loses no precision.)"""
    active = multiplier + penalty * violation > 0
    inactive = torch.full_like(violation, -(multiplier**2) / (2 * penalty))
    return torch.where(active, multiplier * violation + penalty / 2 * violation**2, inactive)


def _clip(value: float, high: float) -> float:
    return min(max(value, 0.0), high)
