# %% [markdown]
# # 00 Quickstart: a pretrained safe agent, from the inside
#
# The workbench ships a small agent trained from pixels on **SafetyPointGoal1**: a point robot must
# reach green goals while avoiding blue hazards, seeing only 64x64 camera images. It learned a
# *world model* of the task and a **latent barrier function** that tells safe latent states from
# unsafe ones (lesson 03). It trained for 20,000 steps on a laptop-class CPU, a fraction of what
# such agents usually get, so it is cautious rather than good: `checkpoints/README.md` has its
# numbers. Here you open its run directory, look at its latent space, and watch it play.

# %%
from workbench import widgets
from workbench.checkpoint import load_agent
from workbench.evaluation import episode_summary, play_episode
from workbench.envs import make_env
from workbench.inspect.projection import load_snapshot, probe_accuracy
from workbench.lessons import check, notebook_scale, pretrained_run, readable_anywhere, scaled, solution
from workbench.runs import Run

# %%
SCALE = notebook_scale()  # 1: about a minute on 2 CPU cores; raise it to train longer and sample more
print('SCALE =', SCALE)
readable_anywhere()  # every figure also saved as an image: the lesson reads without a kernel

# %% [markdown]
# ## The run directory
#
# Everything a training run produces lives in one folder, read through `workbench.runs.Run`: the
# resolved config, the metrics (one JSON line per record), snapshots of the latent space, evaluation
# episodes with their frames, and checkpoints. The dashboard and these notebooks read the same files.

# %%
run = Run(pretrained_run())
config = run.config()
print(run.info()["algo"], "on", config["env"]["task"], "| status:", run.status)
print("trained for", run.weights()[-1].number, "env steps; cost limit", config["agent"]["cost_limit"])
run.metrics("eval")

# %% [markdown]
# ## Everything at once: the board
#
# `widgets.Board` shows a run as tabs: training **curves**, the **latent map** (the latents of a
# snapshot projected to 2-D with UMAP; fitting it takes a little while the first time, in the
# background), **imagination** (barrier, predicted cost and disagreement along rollouts imagined by
# the world model), **disagreement** of the world model's ensemble, and an **episode** to step through
# (press play). Opened on a run that is still training, it follows it as it grows.

# %%
board = widgets.Board(run.path, wait=True)  # wait: the latent map's first fit takes seconds
board

# %% [markdown]
# ## The latent space, in numbers
#
# A snapshot holds a few hundred latent states from the replay, each with its safety label
# (unsafe: the step had cost > 0) and what the models make of it. How well does a *linear* probe tell
# safe from unsafe latents? `probe_accuracy` reports the **balanced** accuracy on held-out latents
# (the mean of the two classes' recalls), for which chance is 0.5 however rare unsafe states are.

# %%
snapshot = load_snapshot(run.snapshots()[-1])
labels = snapshot["unsafe"]
print(f"{len(labels)} latents, {labels.sum()} unsafe")
print("linear probe, balanced accuracy:", probe_accuracy(snapshot["features"], labels))

# %% [markdown]
# **Exercise `quickstart/unsafe_fraction`.** What fraction of the snapshot's latent states are unsafe (cost > 0)?

# %%
answer = ...  # your answer here
check("quickstart/unsafe_fraction", answer, labels=labels)
# Stuck? solution("quickstart/unsafe_fraction", labels=labels)

# %% [markdown]
# **Exercise `quickstart/majority_accuracy`.** What plain accuracy does a lazy probe get that calls every latent safe?

# %%
answer = ...  # your answer here
check("quickstart/majority_accuracy", answer, labels=labels)
# Stuck? solution("quickstart/majority_accuracy", labels=labels)

# %% [markdown]
# ## Watch it play
#
# `load_agent` rebuilds the world model and the agent from the newest checkpoint; `play_episode`
# plays one episode in the real environment and records, per step, the frame, the world model's
# reconstruction of it, the action, reward, cost, the predicted cost, the ensemble's disagreement and
# the agent's own values (here: its barrier B(z)).

# %%
loaded = load_agent(run.path)
env = make_env(loaded.config.env, time_limit=scaled(1000, SCALE, minimum=100))  # as it trained
episode = play_episode(env, loaded.world_model, loaded.agent, explore=True, seed=123)  # sampling, as in training
env.close()
print(episode_summary(episode))
widgets.episode_view(episode)

# %% [markdown]
# ## Where next
#
# - `01_safety_gymnasium_and_cmdps`: tasks, hazards, costs and budgets.
# - `02_world_model`: reconstructions and imagination against reality; train one live.
# - `03_barrier_functions`, `04_ensembles_and_uncertainty`, `05_lagrangian_vs_planning`,
#   `06_offline_safe_rl`: the safe agents, one idea at a time.
# - `workbench dashboard checkpoints` opens the same run in the browser.
