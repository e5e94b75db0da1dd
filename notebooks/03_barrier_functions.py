# %% [markdown]
# # 03 Barrier functions: from a toy to the learned latent barrier
#
# A **barrier function** B certifies safety: B(x) >= 0 on safe states, B(x) < 0 on unsafe ones, and
# along every transition x -> x' of the policy
#
#     B(x') - B(x) + alpha B(x) >= 0,   so   B(x') >= (1 - alpha) B(x).
#
# Then a trajectory that starts with B >= 0 keeps B >= 0 forever: the safe set {B >= 0} is
# *forward invariant*. The workbench's `barrier` agent learns such a B on latent states, from
# labelled data and imagined transitions, and trains its actor to keep the condition. Here you
# first learn one where the answer is known: a 2-D toy, in plain torch.

# %%
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from workbench import widgets
from workbench.agents.barrier import barrier_loss, invariance_violation
from workbench.config import BarrierConfig
from workbench.inspect.projection import load_snapshot
from workbench.lessons import check, notebook_scale, pretrained_run, readable_anywhere, scaled, solution
from workbench.runs import Run, load_arrays

# %%
SCALE = notebook_scale()  # 1: about a minute on 2 CPU cores; raise it to train longer and sample more
print('SCALE =', SCALE)
readable_anywhere()  # every figure also saved as an image: the lesson reads without a kernel

# %% [markdown]
# **Exercise `barrier/decay`.** If B(z) = 1 and alpha = 0.1, what is the least B(z') that keeps the invariance condition?

# %%
answer = ...  # your answer here
check("barrier/decay", answer)
# Stuck? solution("barrier/decay")

# %% [markdown]
# **Exercise `barrier/invariance`.** Write holds(b_now, b_next, alpha): a boolean array, True where a transition keeps B(z') - B(z) + alpha B(z) >= 0.

# %%
answer = ...  # your answer here
check("barrier/invariance", answer)
# Stuck? solution("barrier/invariance")

# %% [markdown]
# ## The toy
#
# A point in the square [-2, 2]^2 moves by x' = x + 0.1 u. The hazard is a disc of radius 0.5 at
# the origin. The policy heads for a goal at (1.5, 1.5), and swerves away from the hazard when near.

# %%
CENTRE, RADIUS, GOAL = np.zeros(2), 0.5, np.array([1.5, 1.5])

def is_safe(x):
    return np.sum((x - CENTRE) ** 2, -1) > RADIUS**2

def policy(x, care=1.0):
    to_goal = GOAL - x
    away = x - CENTRE
    distance = np.linalg.norm(away, axis=-1, keepdims=True)
    push = care * np.clip(1.2 - distance, 0, None) * away / np.maximum(distance, 1e-6)
    u = to_goal / np.maximum(np.linalg.norm(to_goal, axis=-1, keepdims=True), 1e-6) + 3 * push
    return u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1.0)

def step(x, u):
    return x + 0.1 * u

rng = np.random.default_rng(0)
states = rng.uniform(-2, 2, (scaled(4000, SCALE, minimum=1000), 2))

# %% [markdown]
# **Exercise `barrier/hand_written`.** Write a barrier B(x) for the toy: positive inside the safe set, negative outside.

# %%
answer = ...  # your answer here
check("barrier/hand_written", answer, centre=CENTRE, radius=RADIUS)
# Stuck? solution("barrier/hand_written", centre=CENTRE, radius=RADIUS)

# %% [markdown]
# ## Learning B
#
# Three hinge losses, the same `barrier_loss` the latent barrier agent uses: B >= eps on safe
# states, B <= -eps on unsafe ones, and the invariance condition on each transition under the policy.

# %%
def learn_barrier(states, next_states, iterations):
    torch.manual_seed(0)
    barrier = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.Adam(barrier.parameters(), lr=3e-3)
    x, x_next = torch.tensor(states, dtype=torch.float32), torch.tensor(next_states, dtype=torch.float32)
    safe = torch.as_tensor(is_safe(states))
    config = BarrierConfig()
    for _ in range(iterations):
        b, b_next = barrier(x).squeeze(-1), barrier(x_next).squeeze(-1)
        loss, parts = barrier_loss(b[safe], b[~safe], b, b_next, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return barrier, {name: round(part.item(), 4) for name, part in parts.items()}

ITERATIONS = scaled(1500, SCALE, minimum=150)
careful, parts = learn_barrier(states, step(states, policy(states)), ITERATIONS)
print("final losses:", parts)

# %%
axis = np.linspace(-2, 2, 81)
grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)

def show_barrier(barrier, title):
    with torch.no_grad():
        values = barrier(torch.tensor(grid, dtype=torch.float32)).squeeze(-1).numpy()
    agreement = np.mean((values >= 0) == is_safe(grid))
    figure = go.Figure(go.Contour(x=axis, y=axis, z=values.reshape(81, 81), colorscale="RdBu", zmid=0,
                                  contours_coloring="heatmap", line_width=0, colorbar_title="B(x)"))
    figure.add_contour(x=axis, y=axis, z=values.reshape(81, 81), contours=dict(start=0, end=0, coloring="lines"),
                       line=dict(color="black", width=3), showscale=False, name="B = 0")
    figure.add_shape(type="circle", x0=-RADIUS, y0=-RADIUS, x1=RADIUS, y1=RADIUS, line=dict(dash="dash"))
    figure.update_layout(title=f"{title}: sign agrees with safety on {agreement:.1%} of the square",
                         height=450, width=520, yaxis_scaleanchor="x")
    figure.show()

show_barrier(careful, "careful policy")


# %% [markdown]
# ## When the policy is reckless
#
# Without the swerve (`care=0`) the policy drives straight through the hazard. No B can then keep
# both the labels and the invariance condition: the transitions that enter the hazard violate it.
# In the latent barrier agent, exactly these violations, judged along imagined rollouts, enter the
# actor's loss, and push the policy to swerve.

# %%
def violation_rate(barrier, care):
    x = torch.tensor(states, dtype=torch.float32)
    x_next = torch.tensor(step(states, policy(states, care)), dtype=torch.float32)
    with torch.no_grad():
        violated = invariance_violation(barrier(x).squeeze(-1), barrier(x_next).squeeze(-1), BarrierConfig().alpha) > 0
    return violated.float().mean().item()

reckless, _ = learn_barrier(states, step(states, policy(states, care=0.0)), ITERATIONS)
show_barrier(reckless, "reckless policy")
print(f"transitions violating invariance: careful {violation_rate(careful, 1.0):.1%}, reckless {violation_rate(reckless, 0.0):.1%}")

# %% [markdown]
# ## The learned latent barrier
#
# The pretrained agent's B(z) lives on world-model latents. Its snapshot says, for each latent, the
# real safety label and B: how often do they agree? Then follow B along imagined rollouts (it should
# fall before an imagined hazard), and along a real episode next to the real cost.

# %%
run = Run(pretrained_run())
snapshot = load_snapshot(run.snapshots()[-1])
b, unsafe = snapshot["barrier"], snapshot["unsafe"]
print(f"safe latents with B >= 0: {np.mean(b[~unsafe] >= 0):.1%} of {np.sum(~unsafe)}")
if unsafe.any():
    print(f"unsafe latents with B < 0: {np.mean(b[unsafe] < 0):.1%} of {np.sum(unsafe)}")
figure = go.Figure()
figure.add_histogram(x=b[~unsafe], name="safe", opacity=0.6)
figure.add_histogram(x=b[unsafe], name="unsafe", opacity=0.6)
figure.add_vline(x=0, line_dash="dash")
figure.update_layout(barmode="overlay", xaxis_title="B(z)", height=300)
figure.show()

# %%
widgets.imagination_view(snapshot)

# %%
widgets.episode_view(load_arrays(run.evaluations()[-1].path))
