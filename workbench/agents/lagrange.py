"""The PID Lagrangian multiplier (Stooke, Achiam & Abbeel 2020), shared by every Lagrangian agent.

A Lagrangian agent maximises J_reward - multiplier * (J_cost - d). Plain gradient ascent on the
multiplier is an integral controller on the violation J_cost - d: it lags, so the cost overshoots
and oscillates. The PID Lagrangian adds a proportional term (react to the violation now) and a
derivative term (react to the cost rising) to damp that:

    violation  = J_cost - d
    integral   = clip(integral + ki * violation, 0, max)
    multiplier = clip(kp * violation + integral + kd * max(0, J_cost - previous J_cost), 0, max)
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.config import LagrangeConfig


class PIDLagrangian(nn.Module):
    """The multiplier, its integral and the previous cost live in buffers, so they are
    checkpointed with the agent that holds this module."""

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


def _clip(value: float, high: float) -> float:
    return min(max(value, 0.0), high)
