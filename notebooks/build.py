"""Writes the teaching notebooks in this folder: `python notebooks/build.py`.

Each notebook is a list of cells below; exercises take their question from
`workbench.lessons.EXERCISES`. Edit a lesson here, rebuild, and commit the .ipynb files too
(they are written with no outputs). Every notebook has one size knob, SCALE, in its first code
cell: 1 runs it in a few minutes on a laptop CPU, CI runs it small (WORKBENCH_NOTEBOOK_FAST=1).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from workbench.lessons import EXERCISES

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str):
    return new_code_cell(text.strip())


def exercise(name: str, data: str = "") -> list:
    """The question (from the lessons module), an answer cell to fill in, and its check."""
    args = f", {data}" if data else ""
    return [
        md(f"**Exercise `{name}`.** {EXERCISES[name].question}"),
        code(
            f"answer = ...  # your answer here\n"
            f'check("{name}", answer{args})\n'
            f'# Stuck? solution("{name}"{args})'
        ),
    ]


def scale_cell(minutes: str) -> str:
    return (
        f"SCALE = notebook_scale()  # 1: {minutes} on 2 CPU cores; raise it to train longer and sample more\n"
        f"print('SCALE =', SCALE)\n"
        f"readable_anywhere()  # every figure also saved as HTML: the lesson reads without a kernel"
    )


# ---------------------------------------------------------------------------------------------


QUICKSTART = [
    md("""
# 00 Quickstart: a pretrained safe agent, from the inside

The workbench ships a small agent trained from pixels on **SafetyPointGoal1**: a point robot must
reach green goals while avoiding blue hazards, seeing only 64x64 camera images. It learned a
*world model* of the task and a **latent barrier function** that tells safe latent states from
unsafe ones (lesson 03). It trained for 20,000 steps on a laptop-class CPU, a fraction of what
such agents usually get, so it is cautious rather than good: `checkpoints/README.md` has its
numbers. Here you open its run directory, look at its latent space, and watch it play.
"""),
    code("""
from workbench import widgets
from workbench.checkpoint import load_agent
from workbench.evaluation import episode_summary, play_episode
from workbench.envs import make_env
from workbench.inspect.projection import load_snapshot, probe_accuracy
from workbench.lessons import check, notebook_scale, pretrained_run, readable_anywhere, scaled, solution
from workbench.runs import Run
"""),
    code(scale_cell("about a minute")),
    md("""
## The run directory

Everything a training run produces lives in one folder, read through `workbench.runs.Run`: the
resolved config, the metrics (one JSON line per record), snapshots of the latent space, evaluation
episodes with their frames, and checkpoints. The dashboard and these notebooks read the same files.
"""),
    code("""
run = Run(pretrained_run())
config = run.config()
print(run.info()["algo"], "on", config["env"]["task"], "| status:", run.status)
print("trained for", run.weights()[-1].number, "env steps; cost limit", config["agent"]["cost_limit"])
run.metrics("eval")
"""),
    md("""
## Everything at once: the board

`widgets.Board` shows a run as tabs: training **curves**, the **latent map** (the latents of a
snapshot projected to 2-D with UMAP; fitting it takes a little while the first time, in the
background), **imagination** (barrier, predicted cost and disagreement along rollouts imagined by
the world model), **disagreement** of the world model's ensemble, and an **episode** to step through
(press play). Opened on a run that is still training, it follows it as it grows.
"""),
    code("""
board = widgets.Board(run.path, wait=True)  # wait: the latent map's first fit takes seconds
board
"""),
    md("""
## The latent space, in numbers

A snapshot holds a few hundred latent states from the replay, each with its safety label
(unsafe: the step had cost > 0) and what the models make of it. How well does a *linear* probe tell
safe from unsafe latents? `probe_accuracy` reports the **balanced** accuracy on held-out latents
(the mean of the two classes' recalls), for which chance is 0.5 however rare unsafe states are.
"""),
    code("""
snapshot = load_snapshot(run.snapshots()[-1])
labels = snapshot["unsafe"]
print(f"{len(labels)} latents, {labels.sum()} unsafe")
print("linear probe, balanced accuracy:", probe_accuracy(snapshot["features"], labels))
"""),
    *exercise("quickstart/unsafe_fraction", "labels=labels"),
    *exercise("quickstart/majority_accuracy", "labels=labels"),
    md("""
## Watch it play

`load_agent` rebuilds the world model and the agent from the newest checkpoint; `play_episode`
plays one episode in the real environment and records, per step, the frame, the world model's
reconstruction of it, the action, reward, cost, the predicted cost, the ensemble's disagreement and
the agent's own values (here: its barrier B(z)).
"""),
    code("""
loaded = load_agent(run.path)
env = make_env(config["env"]["task"], time_limit=scaled(1000, SCALE, minimum=100))
episode = play_episode(env, loaded.world_model, loaded.agent, explore=True, seed=123)  # sampling, as in training
env.close()
print(episode_summary(episode))
widgets.episode_view(episode)
"""),
    md("""
## Where next

- `01_safety_gymnasium_and_cmdps`: tasks, hazards, costs and budgets.
- `02_world_model`: reconstructions and imagination against reality; train one live.
- `03_barrier_functions`, `04_ensembles_and_uncertainty`, `05_lagrangian_vs_planning`,
  `06_offline_safe_rl`: the safe agents, one idea at a time.
- `workbench dashboard checkpoints` opens the same run in the browser.
"""),
]


CMDPS = [
    md("""
# 01 Safety Gymnasium and constrained MDPs

Safe RL is usually framed as a **constrained MDP**: besides the reward r_t the environment emits a
cost c_t, and the agent must

    maximise  J_r = E[sum_t gamma^t r_t]   subject to   J_c = E[sum_t c_t] <= d,

d being the episode **cost budget**. Safety-Gymnasium's navigation tasks are CMDPs: a robot (Point,
Car, Racecar) does a task (Goal, Button, Push, Circle) at a level (0: no hazards, 1 and 2: more
and more), and pays cost 1 for every physics step it spends in a hazard (in some tasks also for
touching objects it should leave alone).
"""),
    code("""
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import numpy as np
import plotly.graph_objects as go

from workbench.agents import make_agent
from workbench.config import resolve
from workbench.envs import NAV_TASKS, make_env
from workbench.inspect.figures import frame_strip
from workbench.lessons import check, notebook_scale, readable_anywhere, scaled, solution
from workbench.world_model import WorldModel
"""),
    code(scale_cell("about a minute")),
    code("""
print(len(NAV_TASKS), "tasks, e.g.", NAV_TASKS[:3], "...")
"""),
    md("""
## What the agent sees

The workbench's agents see only a 64x64 image from the robot's camera. Here are the first frames
of a few tasks: the same goal task with more hazards at each level, and a button task.
"""),
    code("""
shown = ["SafetyPointGoal0-v0", "SafetyPointGoal1-v0", "SafetyPointGoal2-v0", "SafetyPointButton1-v0"]
frames = []
for task in shown:
    env = make_env(task, seed=0)
    frames.append(env.reset())
    env.close()
frame_strip(frames, [task.removeprefix("Safety").removesuffix("-v0") for task in shown], scale=3).show()
"""),
    md("""
## Costs along an episode

A random policy on SafetyPointGoal1. Each agent step repeats the action for 2 physics steps
(`env.action_repeat`), so a step's cost is 0, 1 or 2. The dashed line is the episode budget d.
"""),
    code("""
STEPS = scaled(500, SCALE, minimum=50)  # agent steps (500 = a full episode of 1000 physics steps)
BUDGET = 25.0  # OmniSafe's default d; SafeDreamer's vision tasks use 2

def random_episode(seed):
    env = make_env("SafetyPointGoal1-v0", time_limit=2 * STEPS, seed=seed)
    rng = np.random.default_rng(seed)
    frames, rewards, costs = [env.reset()], [], []
    done = False
    while not done:
        step = env.step(rng.uniform(env.action_low, env.action_high))
        frames.append(step.obs)
        rewards.append(step.reward)
        costs.append(step.cost)
        done = step.terminated or step.truncated
    env.close()
    return np.array(frames), np.array(rewards), np.array(costs)

frames, rewards, costs = random_episode(seed=0)
figure = go.Figure()
figure.add_scatter(y=costs, name="cost per step", line_shape="hv")
figure.add_scatter(y=np.cumsum(costs), name="cumulative cost")
figure.add_hline(y=BUDGET, line_dash="dash", annotation_text="budget d")
figure.update_layout(xaxis_title="agent step", height=300)
figure.show()
"""),
    code("""
unsafe = np.flatnonzero(costs > 0)
print(f"{len(unsafe)} of {len(costs)} steps had cost")
if len(unsafe):
    chosen = unsafe[:: max(1, len(unsafe) // 6)][:6]
    frame_strip(frames[chosen + 1], [f"step {i}" for i in chosen], scale=2).show()
"""),
    *exercise("cmdp/episode_cost", "costs=costs"),
    *exercise("cmdp/discounted_cost", "costs=costs, gamma=0.99"),
    md("""
## Budgets over episodes

A constraint is on the *expected* episode cost; single episodes scatter around it.
"""),
    code("""
episode_costs = np.array([random_episode(seed)[2].sum() for seed in range(scaled(5, SCALE, minimum=2))])
figure = go.Figure(go.Bar(y=episode_costs, name="episode cost"))
figure.add_hline(y=BUDGET, line_dash="dash", annotation_text="budget d")
figure.update_layout(xaxis_title="episode", height=300)
figure.show()
"""),
    *exercise("cmdp/within_budget", "episode_costs=episode_costs, budget=BUDGET"),
    md("""
## The budget in an agent's units

Agents estimate cost with a discounted critic over imagined futures, not with whole-episode sums.
So they compare their estimate with `cost_budget`: the per-step budget d / L (L agent steps per
episode), discounted the same way, sum over t < L of gamma^t d / L.
"""),
    code("""
config = resolve("cpu", {"algo": "bsrp-lag", "agent.cost_limit": BUDGET})
agent = make_agent(config, WorldModel(config.model, action_dim=2), action_dim=2)
print(f"d = {BUDGET}, L = {agent.episode_steps} steps, gamma = {config.agent.gamma}")
print(f"budget in the critic's units: {agent.cost_budget:.3f}")
"""),
]


WORLD_MODEL = [
    md("""
# 02 The world model: reconstructions and imagination

The agents never plan or learn in the real environment directly: they learn a **world model**
(a DreamerV3-style RSSM) and imagine in it. Its latent state z_t = (h_t, s_t) has a deterministic
GRU part h_t and a categorical part s_t. While it *observes*, each new frame corrects the state (the
posterior); when it *imagines*, a prior predicts the next state from the last one and an action,
with no frame to correct it. Here you compare both with reality, then train a small one live.
"""),
    code("""
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import numpy as np
import plotly.graph_objects as go
import torch

from workbench import widgets
from workbench.checkpoint import load_agent
from workbench.config import resolve
from workbench.evaluation import play_episode
from workbench.envs import make_env
from workbench.inspect.figures import frame_strip
from workbench.lessons import check, notebook_scale, pretrained_run, readable_anywhere, scaled, solution
"""),
    code(scale_cell("about 2 minutes")),
    md("""
## Reconstructions

The pretrained agent plays an episode; `play_episode` records each frame and the decoder's
reconstruction of the posterior state at that frame.
"""),
    code("""
loaded = load_agent(pretrained_run())
world_model, agent = loaded.world_model, loaded.agent
STEPS = scaled(300, SCALE, minimum=60)
env = make_env(loaded.config.env.task, time_limit=2 * STEPS)
episode = play_episode(env, world_model, agent, explore=False, seed=7)
env.close()
shown = np.linspace(0, len(episode["frame"]) - 1, 8).astype(int)
frame_strip(episode["frame"][shown], [f"real {t}" for t in shown], scale=2).show()
frame_strip(episode["recon"][shown], [f"recon {t}" for t in shown], scale=2).show()
"""),
    md("""
## Open-loop imagination against reality

Observe the first `CONTEXT` frames, then stop looking: from the posterior state at that frame,
imagine forward with the actions the agent really took, decode each imagined state, and compare
with what really happened. Errors grow with the horizon: small mistakes in the latent dynamics
compound. (`action[t]` is chosen at frame t and leads to frame t+1.)
"""),
    code("""
CONTEXT, HORIZON = 10, min(scaled(40, SCALE, minimum=10), len(episode["frame"]) - 11)

def as_tensor(array):
    return torch.as_tensor(np.asarray(array))[None]  # a batch of one sequence

with torch.no_grad():
    frames = as_tensor(episode["frame"][:CONTEXT])
    led_to = np.concatenate([np.zeros_like(episode["action"][:1]), episode["action"][: CONTEXT - 1]])
    is_first = torch.zeros(1, CONTEXT, dtype=torch.bool)
    is_first[0, 0] = True
    posterior, _ = world_model.observe(frames, as_tensor(led_to).float(), is_first)
    start = posterior.map(lambda x: x[:, -1])  # the state at frame CONTEXT - 1
    actions = iter(torch.as_tensor(episode["action"][CONTEXT - 1 : CONTEXT - 1 + HORIZON])[:, None])
    imagined = world_model.imagine(lambda _: next(actions), start, HORIZON, member=0)
    dreamed = (world_model.decode(imagined.features[1:, 0]).clamp(0, 1) * 255).byte().numpy()

real = episode["frame"][CONTEXT : CONTEXT + HORIZON]
def error(a, b):
    return ((a.astype(np.float32) - b.astype(np.float32)) / 255) ** 2

imagined_errors = error(dreamed, real).mean(axis=(1, 2, 3))
recon_errors = error(episode["recon"][CONTEXT : CONTEXT + HORIZON], real).mean(axis=(1, 2, 3))
every = max(1, HORIZON // 8)
frame_strip(real[::every], [f"real +{t + 1}" for t in range(0, HORIZON, every)], scale=2).show()
frame_strip(dreamed[::every], [f"imagined +{t + 1}" for t in range(0, HORIZON, every)], scale=2).show()
figure = go.Figure()
figure.add_scatter(y=recon_errors, name="reconstruction (sees each frame)")
figure.add_scatter(y=imagined_errors, name="open-loop imagination")
figure.update_layout(xaxis_title="steps after the last observed frame", yaxis_title="pixel MSE", height=300)
figure.show()
"""),
    *exercise("world_model/worst_step", "errors=imagined_errors"),
    *exercise(
        "world_model/which_is_better",
        "recon_errors=recon_errors, imagined_errors=imagined_errors",
    ),
    md("""
The same imagined states also carry predicted **costs**: this is how an agent can foresee a hazard
without entering it.
"""),
    code("""
figure = go.Figure()
figure.add_scatter(y=episode["cost"][CONTEXT : CONTEXT + HORIZON], name="real cost", line_shape="hv")
figure.add_scatter(y=imagined.cost[1:, 0].numpy(), name="predicted cost, imagined")
figure.update_layout(xaxis_title="steps after the last observed frame", height=280)
figure.show()
"""),
    md("""
## Train one live

`widgets.train_in_background` trains in a background thread of this kernel and shows it on a
board that updates while the notebook is idle: watch `wm/recon` (reconstruction loss) fall in the
curves tab and the snapshots' imagined frames sharpen. This is the `tiny` preset (a few minutes
of training makes a blurry but working model; `workbench train --preset cpu` makes a useful one).
`training.stop()` stops it cleanly (with a checkpoint).
"""),
    code("""
import tempfile, time

steps = scaled(1500, SCALE, minimum=120)
config = resolve("tiny", {
    "train.steps": steps, "train.prefill": steps // 2, "train.snapshot_every": 20,
    "train.device": "cpu", "env.time_limit": 400,
})
run_dir = f"{tempfile.gettempdir()}/workbench-notebook-{time.strftime('%Y%m%d-%H%M%S')}"
training = widgets.train_in_background(config, run_dir)
training
"""),
    md("""
Wait for it to finish (the board above keeps updating while no cell runs; waiting in a cell holds
the updates until the cell ends). The run stays in a temporary folder (a hundred MB or so): open it
again with `widgets.Board(run_dir)`, and delete it when you are done.
"""),
    code("""
print(training.wait(), "at step", training.engine.step, "in", run_dir)
"""),
]


BARRIERS = [
    md("""
# 03 Barrier functions: from a toy to the learned latent barrier

A **barrier function** B certifies safety: B(x) >= 0 on safe states, B(x) < 0 on unsafe ones, and
along every transition x -> x' of the policy

    B(x') - B(x) + alpha B(x) >= 0,   so   B(x') >= (1 - alpha) B(x).

Then a trajectory that starts with B >= 0 keeps B >= 0 forever: the safe set {B >= 0} is
*forward invariant*. The workbench's `barrier` agent learns such a B on latent states, from
labelled data and imagined transitions, and trains its actor to keep the condition. Here you
first learn one where the answer is known: a 2-D toy, in plain torch.
"""),
    code("""
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
"""),
    code(scale_cell("about a minute")),
    *exercise("barrier/decay"),
    *exercise("barrier/invariance"),
    md("""
## The toy

A point in the square [-2, 2]^2 moves by x' = x + 0.1 u. The hazard is a disc of radius 0.5 at
the origin. The policy heads for a goal at (1.5, 1.5), and swerves away from the hazard when near.
"""),
    code("""
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
"""),
    *exercise("barrier/hand_written", "centre=CENTRE, radius=RADIUS"),
    md("""
## Learning B

Three hinge losses, the same `barrier_loss` the latent barrier agent uses: B >= eps on safe
states, B <= -eps on unsafe ones, and the invariance condition on each transition under the policy.
"""),
    code("""
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
"""),
    code("""
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
"""),
    md("""
## When the policy is reckless

Without the swerve (`care=0`) the policy drives straight through the hazard. No B can then keep
both the labels and the invariance condition: the transitions that enter the hazard violate it.
In the latent barrier agent, exactly these violations, judged along imagined rollouts, enter the
actor's loss, and push the policy to swerve.
"""),
    code("""
def violation_rate(barrier, care):
    x = torch.tensor(states, dtype=torch.float32)
    x_next = torch.tensor(step(states, policy(states, care)), dtype=torch.float32)
    with torch.no_grad():
        violated = invariance_violation(barrier(x).squeeze(-1), barrier(x_next).squeeze(-1), BarrierConfig().alpha) > 0
    return violated.float().mean().item()

reckless, _ = learn_barrier(states, step(states, policy(states, care=0.0)), ITERATIONS)
show_barrier(reckless, "reckless policy")
print(f"transitions violating invariance: careful {violation_rate(careful, 1.0):.1%}, reckless {violation_rate(reckless, 0.0):.1%}")
"""),
    md("""
## The learned latent barrier

The pretrained agent's B(z) lives on world-model latents. Its snapshot says, for each latent, the
real safety label and B: how often do they agree? Then follow B along imagined rollouts (it should
fall before an imagined hazard), and along a real episode next to the real cost.
"""),
    code("""
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
"""),
    code("""
widgets.imagination_view(snapshot)
"""),
    code("""
widgets.episode_view(load_arrays(run.evaluations()[-1].path))
"""),
]


ENSEMBLES = [
    md("""
# 04 Ensembles and uncertainty

The world model has K transition heads (priors) trained on the same data. Where data was
plentiful they agree; where it was scarce or absent they disagree. Their **disagreement** (the
variance over members of the predicted class probabilities) measures *epistemic* uncertainty:
what the model does not know, as opposed to noise it cannot predict. CERL (seed 002) turns it into
pessimism: a policy is judged by the worst member's cost.
"""),
    code("""
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import numpy as np
import plotly.graph_objects as go
import torch

from workbench.agents.cerl import log_barrier_objective
from workbench.checkpoint import load_agent
from workbench.evaluation import play_episode
from workbench.envs import make_env
from workbench.inspect.figures import frame_strip
from workbench.lessons import check, notebook_scale, pretrained_run, readable_anywhere, scaled, solution
"""),
    code(scale_cell("about a minute")),
    code("""
loaded = load_agent(pretrained_run())
world_model, agent = loaded.world_model, loaded.agent
K = world_model.config.ensemble
STEPS = scaled(200, SCALE, minimum=40)
env = make_env(loaded.config.env.task, time_limit=2 * STEPS)
episode = play_episode(env, world_model, agent, explore=False, seed=3)
env.close()
print(f"{K} ensemble members; an episode of {len(episode['frame'])} frames")
"""),
    md("""
## Familiar and unfamiliar frames

Filter the episode's frames through the model, and the same frames with their colours inverted (a
world it never saw), and measure the members' disagreement about each next step.
"""),
    code("""
def observe(frames, actions):
    led_to = np.concatenate([np.zeros_like(actions[:1]), actions[:-1]])
    is_first = torch.zeros(1, len(frames), dtype=torch.bool)
    is_first[0, 0] = True
    with torch.no_grad():
        posterior, _ = world_model.observe(torch.as_tensor(frames)[None], torch.as_tensor(led_to)[None], is_first)
    return posterior

def disagreement_along(frames, actions):
    with torch.no_grad():
        return world_model.disagreement(observe(frames, actions), torch.as_tensor(actions)[None])[0].numpy()

familiar = disagreement_along(episode["frame"], episode["action"])
unfamiliar = disagreement_along(255 - episode["frame"], episode["action"])
frame_strip([episode["frame"][5], 255 - episode["frame"][5]], ["familiar", "unfamiliar"], scale=3).show()
figure = go.Figure()
figure.add_scatter(y=familiar, name="familiar")
figure.add_scatter(y=unfamiliar, name="unfamiliar (inverted colours)")
figure.update_layout(xaxis_title="step", yaxis_title="disagreement", height=300)
figure.show()
"""),
    *exercise("ensembles/more_uncertain", "familiar=familiar, unfamiliar=unfamiliar"),
    md("""
## K dreams of one future

From one real state, each member imagines the same future under the agent's policy on its own.
Where they diverge is where the model is unsure.
"""),
    code("""
HORIZON = 12
posterior = observe(episode["frame"], episode["action"])
start = posterior.map(lambda x: x[:, len(episode["frame"]) // 2])
with torch.no_grad():
    for member in range(K):
        dream = world_model.imagine(agent.actor.mode, start, HORIZON, member=member)
        frames = (world_model.decode(dream.features[::3, 0]).clamp(0, 1) * 255).byte().numpy()
        labels = [f"t+{t}" for t in range(0, HORIZON + 1, 3)]
        frame_strip(frames, labels, scale=1, title=f"member {member}: predicted cost {dream.cost[1:, 0].sum():.2f}").show()
"""),
    md("""
## CERL's pessimism

Imagine from every state of the episode once per member, with that member's dynamics throughout;
each member gives a cost estimate Jc_k (the mean lambda-return of predicted cost, in the critic's
units). CERL calls a policy feasible only if the **worst** member's estimate is within budget.
(The members differ in their dynamics only; the one cost critic that ends every return is shared,
so over a short horizon their estimates stay close.)
"""),
    code("""
starts = posterior.map(lambda x: x[0])
with torch.no_grad():
    member_costs = np.array([
        agent.returns(rollout, rollout.cost, agent.cost_critic)[0].mean().item()
        for rollout in (world_model.imagine(agent.actor.mode, starts, HORIZON, member=k) for k in range(K))
    ])
budget = agent.cost_budget
figure = go.Figure(go.Bar(x=[f"member {k}" for k in range(K)], y=member_costs))
figure.add_hline(y=budget, line_dash="dash", annotation_text="budget")
figure.add_hline(y=member_costs.mean(), line_dash="dot", annotation_text="mean")
figure.update_layout(yaxis_title="cost return Jc_k", height=300)
figure.show()
"""),
    *exercise("ensembles/worst_member", "member_costs=member_costs"),
    *exercise("ensembles/feasible", "member_costs=member_costs, budget=budget"),
    md("""
Inside the feasible set CERL's actor maximises the log barrier J + eta log(d - Jc_worst): it
costs almost nothing far from the budget and falls to minus infinity at it, so gradient steps
never cross it (and the line search in `agents/cerl.py` rejects any step that would).
"""),
    code("""
jc = torch.linspace(0, 0.999, 200)
figure = go.Figure()
for eta in (0.05, 0.2, 1.0):
    figure.add_scatter(x=jc.numpy(), y=log_barrier_objective(torch.zeros(()), jc, 1.0, eta).numpy(), name=f"eta = {eta}")
figure.update_layout(xaxis_title="Jc_worst / d", yaxis_title="objective with J = 0", yaxis_range=[-1.5, 0.2], height=300)
figure.show()
"""),
]


LAGRANGE_VS_PLANNING = [
    md("""
# 05 Lagrangians and planning: SafeDreamer's variants

SafeDreamer (seed 004) keeps a world model safe in two ways:

| agent | how it acts | how the cost constraint enters |
| --- | --- | --- |
| `osrp` | plans with the cross-entropy method in latent space | elites chosen among plans within budget |
| `osrp-lag` | the same planner | plus a PID Lagrange multiplier on the plans' cost |
| `bsrp-lag` | an actor network (no planning) | augmented Lagrangian against a pessimistic cost estimate |

This lesson takes the two ideas apart on toys: the multiplier's dynamics, and the planner's elites.
"""),
    code("""
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from workbench.agents.lagrange import PIDLagrangian
from workbench.agents.osrp import cross_entropy_plan, select_elites
from workbench.config import LagrangeConfig, PlannerConfig
from workbench.lessons import check, notebook_scale, readable_anywhere, scaled, solution
"""),
    code(scale_cell("under a minute")),
    md("""
## The multiplier as a controller

A Lagrangian agent maximises J_r - lambda (J_c - d) and raises lambda while the cost is over
budget. Plain gradient ascent on lambda is an *integral* controller, and the policy reacts to it
with a lag, so cost overshoots and oscillates. Here the "policy" is a toy: its cost drifts (with
momentum) toward 4 / (1 + lambda). Compare a slow and a fast integral controller with a PID one.
"""),
    code("""
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
"""),
    *exercise(
        "lagrange/next_multiplier", "integral=0.5, violation=2.0, ki=0.1, kp=0.3, limit=100.0"
    ),
    md("""
## The constrained planner

OSRP plans by the cross-entropy method: sample action sequences, score them in the model, keep
the best (**elites**) and refit the sampling distribution to them. The constraint enters in the
choice of elites: the best by reward *among those within the cost budget*, or the least costly
when too few are. The toy: a point at (-1.5, -1.5) plans 15 steps toward (1.5, 1.5), a hazard
disc in between; reward is the progress, cost the steps spent in the hazard.
"""),
    code("""
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
"""),
    md("""
One iteration up close: all sampled sequences, and the elites the budget lets through.
"""),
    code("""
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
"""),
    *exercise(
        "planning/elites",
        "returns=np.array([3.0, 5.0, 1.0, 4.0, 2.0]), costs=np.array([0.0, 2.0, 0.0, 1.0, 0.0]), budget=1.0, count=2",
    ),
    md("""
In OSRP-Lag, the PID multiplier of the first part weights the plans' cost in the elites'
objective (reward - lambda cost), driven by the planned cost of the actions actually taken.
BSRP-Lag uses the same multiplier on a learned actor instead of planning: cheaper to act with,
since planning costs hundreds of imagined rollouts per step.
"""),
]


OFFLINE = [
    md("""
# 06 Offline safe RL: LSPC

Offline, an agent learns from a fixed dataset and never acts until it is deployed. The danger is
*distribution shift*: critics trained on the data misjudge actions the data never took, and a
policy that maximises them drifts exactly there. LSPC (seed 003) keeps the policy on the data's
safe behaviour: a conditional VAE learns the actions of safe episodes given the state, and the
policy picks a point in its **bounded latent space**, which the decoder turns into an action.
Within that space it maximises reward with critics learnt from the data alone (steps in
`workbench/agents/lspc.py`).
"""),
    code("""
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from workbench import widgets
from workbench.config import resolve
from workbench.datasets import Behaviour, build_dataset, load_dataset
from workbench.evaluation import evaluate_run
from workbench.inspect.projection import load_snapshot
from workbench.lessons import check, notebook_scale, pretrained_run, readable_anywhere, scaled, solution
from workbench.runs import Run
"""),
    code(scale_cell("about 4 minutes")),
    md("""
## A dataset from mixed behaviours

Random actions, the pretrained agent with action noise, and the pretrained agent as it is: good
and bad behaviour side by side, as offline datasets usually are.
"""),
    code("""
WORK = Path(tempfile.mkdtemp(prefix="workbench-offline-"))
TIME_LIMIT = scaled(600, SCALE, minimum=100)  # physics steps per episode (a full one: 1000)
pretrained = pretrained_run()
behaviours = [Behaviour.parse("random"), Behaviour.parse(f"{pretrained}:0.5"), Behaviour.parse(str(pretrained))]
repeat = Run(pretrained).config()["env"]["action_repeat"]  # collect as the agent was trained
dataset_path = build_dataset("SafetyPointGoal1-v0", WORK / "data", scaled(2, SCALE), behaviours,
                             time_limit=TIME_LIMIT, action_repeat=repeat, progress=False)
dataset = load_dataset(dataset_path)
for record in dataset.records:
    print(f"{record['policy'][:40]:42s} noise {record['noise']:.1f}  return {record['return']:6.2f}  cost {record['cost']:5.0f}")
"""),
    code("""
costs = np.concatenate([episode["cost"][1:] for episode in dataset.episodes()])
"""),
    *exercise("offline/safe_fraction", "costs=costs"),
    md("""
## Train LSPC, live

An offline run first trains a world model on the dataset's sequences, encodes every episode into
latent features, then takes `lspc.updates` agent updates on the encoded transitions. Episodes whose
cost is within `agent.cost_limit` count as safe: only they teach the CVAE.
"""),
    code("""
config = resolve("tiny", {
    "algo": "lspc", "offline.dataset": str(dataset_path), "train.device": "cpu",
    "offline.model_updates": scaled(250, SCALE, minimum=20), "lspc.updates": scaled(1000, SCALE, minimum=100),
    "train.batch_size": 8, "train.batch_length": 32, "train.snapshot_every": 1, "agent.cost_limit": 10.0,
})
print("safe episodes:", [record["cost"] <= config.agent.cost_limit for record in dataset.records])
training = widgets.train_in_background(config, WORK / "lspc")
training
"""),
    code("""
print(training.wait())
"""),
    md("""
## Against behaviour cloning

`bc-safe` clones the safe episodes' actions without any critic; `lspc` should collect more reward
at a similar cost. Both reuse the same world model (`offline.world_model`), so only the agent
differs. (With a small dataset and a short training the numbers are noisy: raise SCALE.)
"""),
    code("""
baseline = resolve("tiny", {
    "algo": "bc-safe", "offline.dataset": str(dataset_path), "offline.world_model": str(WORK / "lspc"),
    "train.device": "cpu", "lspc.updates": scaled(1000, SCALE, minimum=100), "agent.cost_limit": 10.0,
})
widgets.train_in_background(baseline, WORK / "bc-safe").wait()
for name in ("lspc", "bc-safe"):
    report = evaluate_run(WORK / name, episodes=scaled(2, SCALE), explore=False)
    print(f"{name:8s} return {report['return_mean']:6.2f} +- {report['return_std']:.2f}   cost {report['cost_mean']:5.1f} +- {report['cost_std']:.1f}")
"""),
    md("""
## The bounded latent action space

The snapshot of the offline run holds, for a batch of dataset states, the CVAE's code of the
action the data took there and the policy's latent. The policy's latents live in the box
[-bound, bound]^d (the first two dimensions here), where the decoder reproduces safe behaviour.
"""),
    code("""
snapshot = load_snapshot(Run(WORK / "lspc").snapshots()[-1])
bound = config.lspc.latent_bound
figure = go.Figure()
figure.add_scatter(x=snapshot["cvae_latent"][:, 0], y=snapshot["cvae_latent"][:, 1], mode="markers", name="data's actions, encoded", opacity=0.5)
figure.add_scatter(x=snapshot["policy_latent"][:, 0], y=snapshot["policy_latent"][:, 1], mode="markers", name="policy's latent actions")
figure.add_shape(type="rect", x0=-bound, y0=-bound, x1=bound, y1=bound, line_dash="dash")
figure.update_layout(xaxis_title="latent 1", yaxis_title="latent 2", height=420, width=520, yaxis_scaleanchor="x")
figure.show()
"""),
    *exercise("offline/latent_action", "u=np.array([-3.0, 0.0, 0.5]), bound=bound"),
    md("""
The dataset and both runs are in `WORK`, a temporary folder: delete it when you are done
(`shutil.rmtree(WORK)`).
"""),
]


NOTEBOOKS = {
    "00_quickstart": QUICKSTART,
    "01_safety_gymnasium_and_cmdps": CMDPS,
    "02_world_model": WORLD_MODEL,
    "03_barrier_functions": BARRIERS,
    "04_ensembles_and_uncertainty": ENSEMBLES,
    "05_lagrangian_vs_planning": LAGRANGE_VS_PLANNING,
    "06_offline_safe_rl": OFFLINE,
}


def notebook(cells: list) -> nbformat.NotebookNode:
    for index, cell in enumerate(cells):  # stable ids: rebuilding changes only what changed
        cell["id"] = f"cell-{index:02d}"
    built = new_notebook(cells=cells)
    built.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.validate(built)
    return built


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(cells), HERE / f"{name}.ipynb")
        print(f"wrote {name}.ipynb ({len(cells)} cells)")


if __name__ == "__main__":
    main()
