# %% [markdown]
# # 05 Lagrangians and planning: SafeDreamer's variants
#
# SafeDreamer (seed 004) keeps a world model safe in two ways:
#
# | agent | how it acts | how the cost constraint enters |
# | --- | --- | --- |
# | `osrp` | plans with the cross-entropy method in latent space | elites chosen among plans within budget |
# | `osrp-lag` | the same planner | plus a PID Lagrange multiplier on the plans' cost |
# | `bsrp-lag` | an actor network (no planning) | augmented Lagrangian against a pessimistic cost estimate |
#
# This lesson takes the two ideas apart on toys: the multiplier's dynamics, and the planner's elites.

# %%
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from workbench.agents.lagrange import PIDLagrangian
from workbench.agents.osrp import cross_entropy_plan, select_elites
from workbench.config import LagrangeConfig, PlannerConfig
from workbench.lessons import check, notebook_scale, readable_anywhere, scaled, solution

# %%
SCALE = notebook_scale()  # 1: under a minute on 2 CPU cores; raise it to train longer and sample more
print('SCALE =', SCALE)
readable_anywhere()  # every figure also saved as an image: the lesson reads without a kernel


# %% [markdown]
# ## The multiplier as a controller
#
# A Lagrangian agent maximises J_r - lambda (J_c - d) and raises lambda while the cost is over
# budget. Plain gradient ascent on lambda is an *integral* controller, and the policy reacts to it
# with a lag, so cost overshoots and oscillates. Here the "policy" is a toy: its cost drifts (with
# momentum) toward 4 / (1 + lambda). Compare a slow and a fast integral controller with a PID one.

# %%
def simulate(config, steps, budget=1.0):
    lagrangian = PIDLagrangian(config, budget)
    cost, velocity, costs, multipliers = 0.0, 0.0, [], []
    for _ in range(steps):
        multiplier = lagrangian.update(cost)
        velocity = 0.8 * velocity + 0.02 * (4.0 / (1.0 + multiplier) - cost)
        cost = max(cost + velocity, 0.0)
        costs.append(cost)
        multipliers.append(multiplier)
    return np.array(costs), np.array(multipliers)

controllers = {
    "integral, slow (ki=0.02)": LagrangeConfig(kp=0.0, ki=0.02, kd=0.0, max=100.0),
    "integral, fast (ki=0.2)": LagrangeConfig(kp=0.0, ki=0.2, kd=0.0, max=100.0),
    "PID (kp=1, ki=0.2, kd=5)": LagrangeConfig(kp=1.0, ki=0.2, kd=5.0, max=100.0),
}
figure = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=["cost (budget 1)", "multiplier"])
for name, config in controllers.items():
    costs, multipliers = simulate(config, scaled(300, SCALE, minimum=150))
    print(f"{name:28s} peak cost {costs.max():.2f}, total excess {np.clip(costs - 1, 0, None).sum():.1f}")
    figure.add_scatter(y=costs, name=name, legendgroup=name, row=1, col=1)
    figure.add_scatter(y=multipliers, name=name, legendgroup=name, showlegend=False, row=2, col=1)
figure.add_hline(y=1.0, line_dash="dash", row=1, col=1)
figure.update_layout(height=500)
figure.show()

# %% [markdown]
# **Exercise `lagrange/next_multiplier`.** With kd = 0, what is the next multiplier given the integral, the violation, ki, kp and the clip limit?

# %%
answer = ...  # your answer here
check("lagrange/next_multiplier", answer, integral=0.5, violation=2.0, ki=0.1, kp=0.3, limit=100.0)
# Stuck? solution("lagrange/next_multiplier", integral=0.5, violation=2.0, ki=0.1, kp=0.3, limit=100.0)

# %% [markdown]
# ## The constrained planner
#
# OSRP plans by the cross-entropy method: sample action sequences, score them in the model, keep
# the best (**elites**) and refit the sampling distribution to them. The constraint enters in the
# choice of elites: the best by reward *among those within the cost budget*, or the least costly
# when too few are. The toy: a point at (-1.5, -1.5) plans 15 steps toward (1.5, 1.5), a hazard
# disc in between; reward is the progress, cost the steps spent in the hazard.

# %%
START, GOAL, CENTRE, RADIUS = torch.tensor([-1.5, -1.5]), torch.tensor([1.5, 1.5]), torch.zeros(2), 0.8

def positions(actions):  # [H, N, S, 2] -> [H + 1, N, S, 2]
    moved = START + 0.3 * torch.cumsum(actions, 0)
    return torch.cat([START.expand_as(moved[:1]), moved])

def score(actions):  # (reward returns, cost returns) [N, S]
    path = positions(actions)
    progress = (START - GOAL).norm() - (path[-1] - GOAL).norm(dim=-1)
    cost = ((path - CENTRE).norm(dim=-1) < RADIUS).float().sum(0)
    return progress, cost

HORIZON = 15
planner = PlannerConfig(horizon=HORIZON, samples=scaled(500, SCALE, minimum=100), actor_samples=0,
                        elites=scaled(50, SCALE, minimum=10), iterations=6)
no_proposals = torch.zeros(HORIZON, 1, 0, 2)

def draw(plans, title):
    figure = go.Figure()
    figure.add_shape(type="circle", x0=-RADIUS, y0=-RADIUS, x1=RADIUS, y1=RADIUS, fillcolor="rgba(31,119,180,0.3)")
    for name, plan in plans.items():
        path = positions(plan.mean[:, :, None])[:, 0, 0].numpy()
        figure.add_scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name=name)
    figure.update_layout(title=title, height=420, width=520, yaxis_scaleanchor="x")
    figure.show()

torch.manual_seed(0)
plans = {f"budget {budget}": cross_entropy_plan(score, no_proposals, planner, budget) for budget in (float("inf"), 2.0, 0.0)}
draw(plans, "the plan's mean, for three cost budgets")

# %% [markdown]
# One iteration up close: all sampled sequences, and the elites the budget lets through.

# %%
torch.manual_seed(1)
samples = torch.randn(HORIZON, 1, 200, 2).clamp(-1, 1) * 0.5 + 0.4
rewards, costs = score(samples)
elites = select_elites(rewards, costs, budget=0.0, elites=10)[0]
paths = positions(samples)[:, 0].numpy()
figure = go.Figure()
figure.add_shape(type="circle", x0=-RADIUS, y0=-RADIUS, x1=RADIUS, y1=RADIUS, fillcolor="rgba(31,119,180,0.3)")
for index in range(paths.shape[1]):
    chosen = index in elites
    figure.add_scatter(x=paths[:, index, 0], y=paths[:, index, 1], mode="lines", showlegend=False,
                       line=dict(color="#d62728" if chosen else "rgba(120,120,120,0.2)", width=2 if chosen else 1))
figure.update_layout(title="200 samples (grey) and the 10 elites within budget 0 (red)", height=420, width=520, yaxis_scaleanchor="x")
figure.show()

# %% [markdown]
# **Exercise `planning/elites`.** Which sequences (indices) does the constrained planner keep as elites?

# %%
answer = ...  # your answer here
check("planning/elites", answer, returns=np.array([3.0, 5.0, 1.0, 4.0, 2.0]), costs=np.array([0.0, 2.0, 0.0, 1.0, 0.0]), budget=1.0, count=2)
# Stuck? solution("planning/elites", returns=np.array([3.0, 5.0, 1.0, 4.0, 2.0]), costs=np.array([0.0, 2.0, 0.0, 1.0, 0.0]), budget=1.0, count=2)

# %% [markdown]
# In OSRP-Lag, the PID multiplier of the first part weights the plans' cost in the elites'
# objective (reward - lambda cost), driven by the planned cost of the actions actually taken.
# BSRP-Lag uses the same multiplier on a learned actor instead of planning: cheaper to act with,
# since planning costs hundreds of imagined rollouts per step.
