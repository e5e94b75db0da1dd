# %% [markdown]
# # 02 The world model: reconstructions and imagination
#
# The agents never plan or learn in the real environment directly: they learn a **world model**
# (a DreamerV3-style RSSM) and imagine in it. Its latent state z_t = (h_t, s_t) has a deterministic
# GRU part h_t and a categorical part s_t. While it *observes*, each new frame corrects the state (the
# posterior); when it *imagines*, a prior predicts the next state from the last one and an action,
# with no frame to correct it. Here you compare both with reality, then train a small one live.

# %%
import workbench  # before torch: it makes torch's idle threads sleep instead of spinning
import tempfile
import time

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

# %%
SCALE = notebook_scale()  # 1: about 2 minutes on 2 CPU cores; raise it to train longer and sample more
print('SCALE =', SCALE)
readable_anywhere()  # every figure also saved as an image: the lesson reads without a kernel

# %% [markdown]
# ## Reconstructions
#
# The pretrained agent plays an episode; `play_episode` records each frame and the decoder's
# reconstruction of the posterior state at that frame.

# %%
loaded = load_agent(pretrained_run())
world_model, agent = loaded.world_model, loaded.agent
STEPS = scaled(300, SCALE, minimum=60)
env = make_env(loaded.config.env, time_limit=2 * STEPS)  # the env it trained in
episode = play_episode(env, world_model, agent, explore=False, seed=7)
env.close()
shown = np.linspace(0, len(episode["frame"]) - 1, 8).astype(int)
frame_strip(episode["frame"][shown], [f"real {t}" for t in shown], scale=2).show()
frame_strip(episode["recon"][shown], [f"recon {t}" for t in shown], scale=2).show()

# %% [markdown]
# ## Open-loop imagination against reality
#
# Observe the first `CONTEXT` frames, then stop looking: from the posterior state at that frame,
# imagine forward with the actions the agent really took, decode each imagined state, and compare
# with what really happened. Errors grow with the horizon: small mistakes in the latent dynamics
# compound. (`action[t]` is chosen at frame t and leads to frame t+1.)

# %%
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

# %% [markdown]
# **Exercise `world_model/worst_step`.** At which step (index) is the open-loop prediction furthest from reality?

# %%
answer = ...  # your answer here
check("world_model/worst_step", answer, errors=imagined_errors)
# Stuck? solution("world_model/worst_step", errors=imagined_errors)

# %% [markdown]
# **Exercise `world_model/which_is_better`.** Which is closer to the real frames on average: 'reconstruction' or 'imagination'?

# %%
answer = ...  # your answer here
check("world_model/which_is_better", answer, recon_errors=recon_errors, imagined_errors=imagined_errors)
# Stuck? solution("world_model/which_is_better", recon_errors=recon_errors, imagined_errors=imagined_errors)

# %% [markdown]
# The same imagined states also carry predicted **costs**: this is how an agent can foresee a hazard
# without entering it.

# %%
figure = go.Figure()
figure.add_scatter(y=episode["cost"][CONTEXT : CONTEXT + HORIZON], name="real cost", line_shape="hv")
figure.add_scatter(y=imagined.cost[1:, 0].numpy(), name="predicted cost, imagined")
figure.update_layout(xaxis_title="steps after the last observed frame", height=280)
figure.show()

# %% [markdown]
# ## Train one live
#
# `widgets.train_in_background` trains in a background thread of this kernel and shows it on a
# board that updates while the notebook is idle: watch `wm/recon` (reconstruction loss) fall in the
# curves tab and the snapshots' imagined frames sharpen. This is the `tiny` preset (a few minutes
# of training makes a blurry but working model; `workbench train --preset cpu` makes a useful one).
# `training.stop()` stops it cleanly (with a checkpoint).

# %%
steps = scaled(1500, SCALE, minimum=120)
config = resolve("tiny", {
    "train.steps": steps, "train.prefill": steps // 2, "train.snapshot_every": 20,
    "train.device": "cpu", "env.time_limit": 400,
})
run_dir = f"{tempfile.gettempdir()}/workbench-notebook-{time.strftime('%Y%m%d-%H%M%S')}"
training = widgets.train_in_background(config, run_dir)
training

# %% [markdown]
# Wait for it to finish (the board above keeps updating while no cell runs; waiting in a cell holds
# the updates until the cell ends). The run stays in a temporary folder (a hundred MB or so): open it
# again with `widgets.Board(run_dir)`, and delete it when you are done.

# %%
print(training.wait(), "at step", training.engine.step, "in", run_dir)
