# %% [markdown]
# # 04 Ensembles and uncertainty
#
# The world model has K transition heads (priors) trained on the same data. Where data was
# plentiful they agree; where it was scarce or absent they disagree. Their **disagreement** (the
# variance over members of the predicted class probabilities) measures *epistemic* uncertainty:
# what the model does not know, as opposed to noise it cannot predict. CERL (seed 002) turns it into
# pessimism: a policy is judged by the worst member's cost.

# %%
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

# %%
SCALE = notebook_scale()  # 1: about a minute on 2 CPU cores; raise it to train longer and sample more
print('SCALE =', SCALE)
readable_anywhere()  # every figure also saved as an image: the lesson reads without a kernel

# %%
loaded = load_agent(pretrained_run())
world_model, agent = loaded.world_model, loaded.agent
K = world_model.config.ensemble
STEPS = scaled(200, SCALE, minimum=40)
env = make_env(loaded.config.env, time_limit=2 * STEPS)  # the env it trained in
episode = play_episode(env, world_model, agent, explore=False, seed=3)
env.close()
print(f"{K} ensemble members; an episode of {len(episode['frame'])} frames")


# %% [markdown]
# ## Familiar and unfamiliar frames
#
# Filter the episode's frames through the model, and the same frames with their colours inverted (a
# world it never saw), and measure the members' disagreement about each next step.

# %%
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

# %% [markdown]
# **Exercise `ensembles/more_uncertain`.** Where does the ensemble disagree more on average: 'familiar' or 'unfamiliar' frames?

# %%
answer = ...  # your answer here
check("ensembles/more_uncertain", answer, familiar=familiar, unfamiliar=unfamiliar)
# Stuck? solution("ensembles/more_uncertain", familiar=familiar, unfamiliar=unfamiliar)

# %% [markdown]
# ## K dreams of one future
#
# From one real state, each member imagines the same future under the agent's policy on its own.
# Where they diverge is where the model is unsure.

# %%
HORIZON = 12
posterior = observe(episode["frame"], episode["action"])
start = posterior.map(lambda x: x[:, len(episode["frame"]) // 2])
with torch.no_grad():
    for member in range(K):
        dream = world_model.imagine(agent.actor.mode, start, HORIZON, member=member)
        frames = (world_model.decode(dream.features[::3, 0]).clamp(0, 1) * 255).byte().numpy()
        labels = [f"t+{t}" for t in range(0, HORIZON + 1, 3)]
        frame_strip(frames, labels, scale=1, title=f"member {member}: predicted cost {dream.cost[1:, 0].sum():.2f}").show()

# %% [markdown]
# ## CERL's pessimism
#
# Imagine from every state of the episode once per member, with that member's dynamics throughout;
# each member gives a cost estimate Jc_k (the mean lambda-return of predicted cost, in the critic's
# units). CERL calls a policy feasible only if the **worst** member's estimate is within budget.
# (The members differ in their dynamics only; the one cost critic that ends every return is shared,
# so over a short horizon their estimates stay close.)

# %%
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

# %% [markdown]
# **Exercise `ensembles/worst_member`.** CERL judges a policy by its worst member: what is Jc_worst for these member estimates?

# %%
answer = ...  # your answer here
check("ensembles/worst_member", answer, member_costs=member_costs)
# Stuck? solution("ensembles/worst_member", member_costs=member_costs)

# %% [markdown]
# **Exercise `ensembles/feasible`.** Is the policy feasible for CERL, Jc_worst < d? Answer True or False.

# %%
answer = ...  # your answer here
check("ensembles/feasible", answer, member_costs=member_costs, budget=budget)
# Stuck? solution("ensembles/feasible", member_costs=member_costs, budget=budget)

# %% [markdown]
# Inside the feasible set CERL's actor maximises the log barrier J + eta log(d - Jc_worst): it
# costs almost nothing far from the budget and falls to minus infinity at it, so gradient steps
# never cross it (and the line search in `agents/cerl.py` rejects any step that would).

# %%
jc = torch.linspace(0, 0.999, 200)
figure = go.Figure()
for eta in (0.05, 0.2, 1.0):
    figure.add_scatter(x=jc.numpy(), y=log_barrier_objective(torch.zeros(()), jc, 1.0, eta).numpy(), name=f"eta = {eta}")
figure.update_layout(xaxis_title="Jc_worst / d", yaxis_title="objective with J = 0", yaxis_range=[-1.5, 0.2], height=300)
figure.show()
