# %% [markdown]
# # 06 Offline safe RL: LSPC
#
# Offline, an agent learns from a fixed dataset and never acts until it is deployed. The danger is
# *distribution shift*: critics trained on the data misjudge actions the data never took, and a
# policy that maximises them drifts exactly there. LSPC (seed 003) keeps the policy on the data's
# safe behaviour: a conditional VAE learns the actions of safe episodes given the state, and the
# policy picks a point in its **bounded latent space**, which the decoder turns into an action.
# Within that space it maximises reward with critics learnt from the data alone (steps in
# `workbench/agents/lspc.py`).

# %%
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

# %%
SCALE = notebook_scale()  # 1: about 4 minutes on 2 CPU cores; raise it to train longer and sample more
print('SCALE =', SCALE)
readable_anywhere()  # every figure also saved as an image: the lesson reads without a kernel

# %% [markdown]
# ## A dataset from mixed behaviours
#
# Random actions, the pretrained agent with action noise, and the pretrained agent as it is: good
# and bad behaviour side by side, as offline datasets usually are.

# %%
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

# %%
costs = np.concatenate([episode["cost"][1:] for episode in dataset.episodes()])

# %% [markdown]
# **Exercise `offline/safe_fraction`.** What fraction of the dataset's transitions are safe (cost == 0)?

# %%
answer = ...  # your answer here
check("offline/safe_fraction", answer, costs=costs)
# Stuck? solution("offline/safe_fraction", costs=costs)

# %% [markdown]
# ## Train LSPC, live
#
# An offline run first trains a world model on the dataset's sequences, encodes every episode into
# latent features, then takes `lspc.updates` agent updates on the encoded transitions. Episodes whose
# cost is within `agent.cost_limit` count as safe: only they teach the CVAE.

# %%
config = resolve("tiny", {
    "algo": "lspc", "offline.dataset": str(dataset_path), "train.device": "cpu",
    "offline.model_updates": scaled(250, SCALE, minimum=20), "lspc.updates": scaled(1000, SCALE, minimum=100),
    "train.batch_size": 8, "train.batch_length": 32, "train.snapshot_every": 1, "agent.cost_limit": 10.0,
})
print("safe episodes:", [record["cost"] <= config.agent.cost_limit for record in dataset.records])
training = widgets.train_in_background(config, WORK / "lspc")
training

# %%
print(training.wait())

# %% [markdown]
# ## Against behaviour cloning
#
# `bc-safe` clones the safe episodes' actions without any critic; `lspc` should collect more reward
# at a similar cost. Both reuse the same world model (`offline.world_model`), so only the agent
# differs. (With a small dataset and a short training the numbers are noisy: raise SCALE.)

# %%
baseline = resolve("tiny", {
    "algo": "bc-safe", "offline.dataset": str(dataset_path), "offline.world_model": str(WORK / "lspc"),
    "train.device": "cpu", "lspc.updates": scaled(1000, SCALE, minimum=100), "agent.cost_limit": 10.0,
})
widgets.train_in_background(baseline, WORK / "bc-safe").wait()
for name in ("lspc", "bc-safe"):
    report = evaluate_run(WORK / name, episodes=scaled(2, SCALE), explore=False)
    print(f"{name:8s} return {report['return_mean']:6.2f} +- {report['return_std']:.2f}   cost {report['cost_mean']:5.1f} +- {report['cost_std']:.1f}")

# %% [markdown]
# ## The bounded latent action space
#
# The snapshot of the offline run holds, for a batch of dataset states, the CVAE's code of the
# action the data took there and the policy's latent. The policy's latents live in the box
# [-bound, bound]^d (the first two dimensions here), where the decoder reproduces safe behaviour.

# %%
snapshot = load_snapshot(Run(WORK / "lspc").snapshots()[-1])
bound = config.lspc.latent_bound
figure = go.Figure()
figure.add_scatter(x=snapshot["cvae_latent"][:, 0], y=snapshot["cvae_latent"][:, 1], mode="markers", name="data's actions, encoded", opacity=0.5)
figure.add_scatter(x=snapshot["policy_latent"][:, 0], y=snapshot["policy_latent"][:, 1], mode="markers", name="policy's latent actions")
figure.add_shape(type="rect", x0=-bound, y0=-bound, x1=bound, y1=bound, line_dash="dash")
figure.update_layout(xaxis_title="latent 1", yaxis_title="latent 2", height=420, width=520, yaxis_scaleanchor="x")
figure.show()

# %% [markdown]
# **Exercise `offline/latent_action`.** The policy outputs u; LSPC squashes it into [-bound, bound]. What latent action is taken?

# %%
answer = ...  # your answer here
check("offline/latent_action", answer, u=np.array([-3.0, 0.0, 0.5]), bound=bound)
# Stuck? solution("offline/latent_action", u=np.array([-3.0, 0.0, 0.5]), bound=bound)

# %% [markdown]
# The dataset and both runs are in `WORK`, a temporary folder: delete it when you are done
# (`shutil.rmtree(WORK)`).
