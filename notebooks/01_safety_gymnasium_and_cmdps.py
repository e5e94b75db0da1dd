# %% [markdown]
# # 01 Safety Gymnasium and constrained MDPs
#
# Safe RL is usually framed as a **constrained MDP**: besides the reward r_t the environment emits a
# cost c_t, and the agent must
#
#     maximise  J_r = E[sum_t gamma^t r_t]   subject to   J_c = E[sum_t c_t] <= d,
#
# d being the episode **cost budget**. Safety-Gymnasium's navigation tasks are CMDPs: a robot (Point,
# Car, Racecar) does a task (Goal, Button, Push, Circle) at a level (0: no hazards, 1 and 2: more
# and more), and pays cost 1 for every physics step it spends in a hazard (in some tasks also for
# touching objects it should leave alone).

# %%
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import numpy as np
import plotly.graph_objects as go

from workbench.agents import make_agent
from workbench.config import resolve
from workbench.envs import NAV_TASKS, make_env
from workbench.inspect.figures import frame_strip
from workbench.lessons import check, notebook_scale, readable_anywhere, scaled, solution
from workbench.world_model import WorldModel

# %%
SCALE = notebook_scale()  # 1: about a minute on 2 CPU cores; raise it to train longer and sample more
print('SCALE =', SCALE)
readable_anywhere()  # every figure also saved as an image: the lesson reads without a kernel

# %%
print(len(NAV_TASKS), "tasks, e.g.", NAV_TASKS[:3], "...")

# %% [markdown]
# ## What the agent sees
#
# The workbench's agents see only a 64x64 image from the robot's camera. Here are the first frames
# of a few tasks: the same goal task with more hazards at each level, and a button task.

# %%
shown = ["SafetyPointGoal0-v0", "SafetyPointGoal1-v0", "SafetyPointGoal2-v0", "SafetyPointButton1-v0"]
frames = []
for task in shown:
    env = make_env(task, seed=0)
    frames.append(env.reset())
    env.close()
frame_strip(frames, [task.removeprefix("Safety").removesuffix("-v0") for task in shown], scale=3).show()

# %% [markdown]
# ## Costs along an episode
#
# A random policy on SafetyPointGoal1. Each agent step here repeats the action for 2 physics steps
# (`action_repeat=2`; the workbench trains with 4), so a step's cost is 0, 1 or 2. The dashed line is the episode budget d.

# %%
STEPS = scaled(500, SCALE, minimum=50)  # agent steps (500 = a full episode of 1000 physics steps)
BUDGET = 25.0  # OmniSafe's default d; SafeDreamer's vision tasks use 2

def random_episode(seed):
    env = make_env("SafetyPointGoal1-v0", action_repeat=2, time_limit=2 * STEPS, seed=seed)
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

# %%
unsafe = np.flatnonzero(costs > 0)
print(f"{len(unsafe)} of {len(costs)} steps had cost")
if len(unsafe):
    chosen = unsafe[:: max(1, len(unsafe) // 6)][:6]
    frame_strip(frames[chosen + 1], [f"step {i}" for i in chosen], scale=2).show()

# %% [markdown]
# **Exercise `cmdp/episode_cost`.** What is the episode cost J_c of the recorded episode (undiscounted)?

# %%
answer = ...  # your answer here
check("cmdp/episode_cost", answer, costs=costs)
# Stuck? solution("cmdp/episode_cost", costs=costs)

# %% [markdown]
# **Exercise `cmdp/discounted_cost`.** What is its discounted cost return, sum over t of gamma^t c_t (t from 0)?

# %%
answer = ...  # your answer here
check("cmdp/discounted_cost", answer, costs=costs, gamma=0.99)
# Stuck? solution("cmdp/discounted_cost", costs=costs, gamma=0.99)

# %% [markdown]
# ## Budgets over episodes
#
# A constraint is on the *expected* episode cost; single episodes scatter around it.

# %%
episode_costs = np.array([random_episode(seed)[2].sum() for seed in range(scaled(5, SCALE, minimum=2))])
figure = go.Figure(go.Bar(y=episode_costs, name="episode cost"))
figure.add_hline(y=BUDGET, line_dash="dash", annotation_text="budget d")
figure.update_layout(xaxis_title="episode", height=300)
figure.show()

# %% [markdown]
# **Exercise `cmdp/within_budget`.** Which of the episodes (their indices) satisfy the constraint J_c <= d?

# %%
answer = ...  # your answer here
check("cmdp/within_budget", answer, episode_costs=episode_costs, budget=BUDGET)
# Stuck? solution("cmdp/within_budget", episode_costs=episode_costs, budget=BUDGET)

# %% [markdown]
# ## The budget in an agent's units
#
# Agents estimate cost with a discounted critic over imagined futures, not with whole-episode sums.
# So they compare their estimate with `cost_budget`: the per-step budget d / L (L agent steps per
# episode), discounted the same way, sum over t < L of gamma^t d / L.

# %%
config = resolve("cpu", {"algo": "bsrp-lag", "agent.cost_limit": BUDGET})
agent = make_agent(config, WorldModel(config.model, action_dim=2), action_dim=2)
print(f"d = {BUDGET}, L = {agent.episode_steps} steps, gamma = {config.agent.gamma}")
print(f"budget in the critic's units: {agent.cost_budget:.3f}")
