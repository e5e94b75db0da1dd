"""The agent interface, and the actor-critic machinery every algorithm shares.

An agent is a `torch.nn.Module` (so its parameters and buffers, such as a Lagrange multiplier,
are checkpointed by `state_dict`) with three methods the engine calls:

    act(latent, explore)      -> actions for a batch of posterior latents
    learn(batch, posterior)   -> Update(metrics, imagination): one training step
    optimizers()              -> named optimisers, checkpointed with the agent

and one that viewers call: `inspect(features)`, per-state quantities worth showing (values, cost
values, and for some agents a barrier value). The world model is held, not owned: it is trained
by the engine and is not part of the agent's state_dict.

An online `Agent` learns by `update(posterior, sequences)`, on rollouts imagined from the
posterior of the batch the world model has just learnt from. An `OfflineAgent` (`offline.py`)
learns by `update(transitions)`, on a minibatch of dataset transitions. `learn` is how the engine
calls either, with the `Batch` its data source gave; `AgentLike` is what both kinds share: the
type everything outside `agents/` holds an agent by.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import torch
from torch import Tensor, nn

from workbench.config import Config
from workbench.device import autocast
from workbench.nets import MLP, adam, clipped_step, lambda_returns
from workbench.world_model import Imagination, Latent, WorldModel


class Policy(Protocol):
    """What is asked of an agent's actor from outside: its deterministic actions."""

    def mode(self, features: Tensor) -> Tensor:
        """Actions [N, A] for features [N, F]."""


@runtime_checkable
class AgentLike(Protocol):
    """What online (`Agent`) and offline (`OfflineAgent`) agents share: how the engine, the
    evaluation, snapshots and checkpoints hold an agent. (Their `update`s differ: online
    `update(posterior, sequences) -> Update`, offline `update(transitions) -> metrics`.)"""

    config: Config

    def learn(self, batch: Batch, posterior: Latent | None) -> Update:
        """One training step on what the data source gave (`posterior`: the latents of
        `batch.sequences`, which the world model has just learnt from, when it has any)."""

    @property
    def world_model(self) -> WorldModel:
        """The world model the agent acts and imagines in (held, not owned)."""

    @property
    def actor(self) -> Policy:
        """The policy (snapshots label each latent with `actor.mode`)."""

    def act(self, latent: Latent, explore: bool) -> Tensor:
        """Actions [N, A] for a batch of posterior latents."""

    def inspect(self, features: Tensor) -> dict[str, Tensor]:
        """Per-state quantities worth showing (values, cost values, barrier...), name -> [N]."""

    def imagine_from(self, start: Latent, member: int | None = None) -> Imagination:
        """Roll the policy forward in the world model from start states [N]."""

    def episode_end(self, cost: float) -> None:
        """A training episode ended with this real cost."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimisers, checkpointed with the agent."""

    def state_dict(self) -> dict[str, Any]:
        """Parameters and buffers (as `torch.nn.Module`)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> Any:
        """Restore what `state_dict` gave (as `torch.nn.Module`)."""

    def to(self, device: torch.device | str) -> Self:
        """Move parameters and buffers (as `torch.nn.Module`)."""

    def eval(self) -> Self:
        """Evaluation mode (as `torch.nn.Module`)."""


@dataclass
class Batch:
    """What one update learns from, as the engine's data source gives it: sequences [B, T] of
    steps (the world model learns from them, and online agents imagine from their posterior),
    or a minibatch of transitions [N] for an offline agent; an offline agent waits (no
    transitions) while the world model learns."""

    sequences: dict[str, Tensor] | None = None
    transitions: dict[str, Tensor] | None = None


@dataclass
class Update:
    metrics: dict[str, float]
    imagination: Imagination | None = None


class Actor(nn.Module):
    """Squashed Gaussian policy over actions in [-1, 1], reparameterised for backprop."""

    def __init__(self, feature_dim: int, action_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = MLP(feature_dim, 2 * action_dim, hidden, layers)

    def forward(self, features: Tensor) -> torch.distributions.Normal:
        mean, std = self.net(features).chunk(2, dim=-1)
        std = 0.9 * torch.sigmoid(std + 2.0) + 0.1
        return torch.distributions.Normal(mean, std)

    def sample(self, features: Tensor) -> Tensor:
        return torch.tanh(self(features).rsample())

    def mode(self, features: Tensor) -> Tensor:
        return torch.tanh(self(features).mean)


class Critic(nn.Module):
    """A value network with a slowly following target copy."""

    def __init__(self, feature_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = MLP(feature_dim, 1, hidden, layers)
        self.target = copy.deepcopy(self.net).requires_grad_(False)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)

    def target_value(self, features: Tensor) -> Tensor:
        return self.target(features).squeeze(-1)

    def follow(self, tau: float) -> None:
        with torch.no_grad():
            for target, source in zip(self.target.parameters(), self.net.parameters(), strict=True):
                target.lerp_(source, tau)


class Agent(nn.Module):
    """Shared parts: an actor, a reward critic and a cost critic trained on imagined rollouts."""

    return_scale: Tensor  # a buffer

    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__()
        self.config = config
        cfg = config.agent
        self._world_model = [world_model]  # held in a list so it is not part of state_dict
        feature_dim = world_model.feature_dim
        self.actor = Actor(feature_dim, action_dim, cfg.hidden, cfg.layers)
        self.critic = Critic(feature_dim, cfg.hidden, cfg.layers)
        self.cost_critic = Critic(feature_dim, cfg.hidden, cfg.layers)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.actor_lr)
        critics = [*self.critic.net.parameters(), *self.cost_critic.net.parameters()]
        self.critic_optimizer = adam(critics, cfg.critic_lr)
        # Return scale (DreamerV3): an EMA of the 5th-95th percentile range of reward returns.
        self.register_buffer("return_scale", torch.ones(()))

    @property
    def world_model(self) -> WorldModel:
        return self._world_model[0]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    @property
    def episode_steps(self) -> int:
        return episode_steps(self.config)

    @property
    def cost_budget(self) -> float:
        """The episode cost limit in the critic's units (see `cost_budget`)."""
        return cost_budget(self.config)

    # --- acting -----------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, latent: Latent, explore: bool) -> Tensor:
        features = latent.features()
        return self.actor.sample(features) if explore else self.actor.mode(features)

    @torch.no_grad()
    def inspect(self, features: Tensor) -> dict[str, Tensor]:
        return {"value": self.critic(features), "cost_value": self.cost_critic(features)}

    def episode_end(self, cost: float) -> None:
        """Called by the engine when a training episode ends, with its real cost. Agents whose
        multiplier follows the real episode cost (SafeDreamer's PID Lagrangian) override it."""

    # --- the steps shared by every update ---------------------------------------------------

    def learn(self, batch: Batch, posterior: Latent | None) -> Update:
        """Update on rollouts imagined from the posterior of the batch's sequences, at the
        run's `train.precision`."""
        assert batch.sequences is not None and posterior is not None, "online agents imagine"
        with autocast(self.world_model.device, self.config.train.precision):
            return self.update(posterior, batch.sequences)

    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        raise NotImplementedError

    def imagine(self, posterior: Latent, member: int | None = None) -> Imagination:
        """Roll the actor forward in the world model from the batch's posterior states [B,T]
        (see `imagination_starts`)."""
        return self.imagine_from(self.imagination_starts(posterior), member)

    def imagination_starts(self, posterior: Latent) -> Latent:
        """The detached states [N] imagination starts from: every posterior state of the batch,
        or `agent.imagine_starts` of them chosen at random."""
        start = posterior.map(lambda x: x.reshape(-1, *x.shape[2:]).detach())
        count = self.config.agent.imagine_starts
        if 0 < count < len(start.deter):
            chosen = torch.randperm(len(start.deter), device=start.deter.device)[:count]
            start = start.map(lambda x: x[chosen])
        return start

    def imagine_from(self, start: Latent, member: int | None = None) -> Imagination:
        """Roll the actor `agent.horizon` steps from start states [N] (member: see
        `WorldModel.imagine`). Gradients flow into the actor through the dynamics; the world
        model's own parameters stay untouched."""
        world_model = self.world_model
        world_model.requires_grad_(False)
        try:
            return world_model.imagine(self.actor.sample, start, self.config.agent.horizon, member)
        finally:
            world_model.requires_grad_(True)

    def discount_weights(self, imagination: Imagination) -> Tensor:
        """[H, N]: weight of each imagined step, the discounted chance the episode got there."""
        gamma = self.config.agent.gamma * imagination.cont[1:].detach()
        ones = torch.ones_like(gamma[:1])
        return torch.cumprod(torch.cat([ones, gamma[:-1]]), dim=0)

    def returns(self, imagination: Imagination, signal: Tensor, critic: Critic) -> Tensor:
        """[H, N] lambda-returns of `signal` (reward or cost), bootstrapped with `critic`'s target."""
        cfg = self.config.agent
        values = critic.target_value(imagination.features)
        return lambda_returns(signal, imagination.cont, values, cfg.gamma, cfg.lam)

    def normalised(self, reward_return: Tensor) -> Tensor:
        """Reward returns divided by their (EMA) percentile range, floored at 1 (DreamerV3)."""
        with torch.no_grad():
            low, high = torch.quantile(
                reward_return.detach().float(),
                torch.tensor([0.05, 0.95], device=reward_return.device),
            )
            self.return_scale.lerp_(torch.clamp(high - low, min=1.0), 0.01)
        return reward_return / self.return_scale

    def entropy(self, imagination: Imagination) -> Tensor:
        return self.actor(imagination.features[:-1].detach()).entropy().sum(-1)

    def step_actor(self, loss: Tensor) -> float:
        return _step(self.actor_optimizer, loss, self.actor.parameters(), self.config)

    def train_critics(
        self, imagination: Imagination, reward_return: Tensor, cost_return: Tensor
    ) -> dict[str, float]:
        """Regress both critics on their lambda-returns (targets held fixed)."""
        features = imagination.features[:-1].detach()
        weights = self.discount_weights(imagination)
        reward_loss = (weights * (self.critic(features) - reward_return.detach()) ** 2).mean()
        cost_loss = (weights * (self.cost_critic(features) - cost_return.detach()) ** 2).mean()
        parameters = [*self.critic.net.parameters(), *self.cost_critic.net.parameters()]
        _step(self.critic_optimizer, reward_loss + cost_loss, parameters, self.config)
        self.critic.follow(self.config.agent.target_tau)
        self.cost_critic.follow(self.config.agent.target_tau)
        return {"agent/critic_loss": reward_loss.item(), "agent/cost_critic_loss": cost_loss.item()}

    def summary(self, imagination: Imagination, reward_return: Tensor, cost_return: Tensor):
        """Metrics every agent reports."""
        return {
            "agent/reward_return": reward_return[0].mean().item(),
            "agent/cost_return": cost_return[0].mean().item(),
            "agent/cost_budget": self.cost_budget,
            "agent/imagined_cost": imagination.cost[1:].mean().item(),
            "agent/disagreement": imagination.disagreement.mean().item(),
            "agent/return_scale": self.return_scale.item(),
        }


class OfflineAgent(nn.Module):
    """An agent learnt from a dataset by `workbench.offline`. It acts, is inspected, imagines
    (for snapshots) and is checkpointed like `Agent`, with a deterministic `actor` (its `mode`)
    that subclasses build; `update(transitions)` takes a minibatch of dataset transitions
    {features, action, reward, cost, next_features, done, safe} [N, ...] and returns metrics."""

    actor: Policy

    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__()
        self.config = config
        self._world_model = [world_model]  # held in a list so it is not part of state_dict

    @property
    def world_model(self) -> WorldModel:
        return self._world_model[0]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def learn(self, batch: Batch, posterior: Latent | None) -> Update:
        """Update on the batch's transitions, in full precision (small MLPs); nothing while the
        world model is still learning (no transitions yet)."""
        if batch.transitions is None:
            return Update(metrics={})
        return Update(metrics=self.update(batch.transitions))

    def update(self, transitions: dict[str, Tensor]) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def act(self, latent: Latent, explore: bool) -> Tensor:
        """The policy's action (deterministic: offline there is nothing to explore)."""
        return self.actor.mode(latent.features())

    @torch.no_grad()
    def inspect(self, features: Tensor) -> dict[str, Tensor]:
        return {}

    def episode_end(self, cost: float) -> None:
        """Offline agents learn from the dataset only; an episode's cost changes nothing."""

    @torch.no_grad()
    def latent_codes(self, features: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """Per-state codes worth a snapshot (LSPC: its CVAE's latent codes), name -> [M, D]."""
        return {}

    @torch.no_grad()
    def imagine_from(self, start: Latent, member: int | None = None) -> Imagination:
        """Roll the policy `agent.horizon` steps in the world model from start states [N]."""
        return self.world_model.imagine(self.actor.mode, start, self.config.agent.horizon, member)

    def step(self, optimizer: torch.optim.Optimizer, loss: Tensor) -> float:
        """One gradient step of the optimiser's parameters on `loss`, clipped; the norm."""
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        return _step(optimizer, loss, parameters, self.config)


def episode_steps(config: Config) -> int:
    """Agent steps L in an episode."""
    return max(config.env.time_limit // config.env.action_repeat, 1)


def cost_budget(config: Config) -> float:
    """The episode cost limit d in a cost critic's units: the per-step budget d / L, discounted
    over the future (sum of gamma^t for t < L)."""
    gamma, steps = config.agent.gamma, episode_steps(config)
    horizon = (1 - gamma**steps) / (1 - gamma) if gamma < 1 else steps
    return config.agent.cost_limit / steps * horizon


def _step(optimizer: torch.optim.Optimizer, loss: Tensor, parameters, config: Config) -> float:
    return clipped_step(optimizer, loss, parameters, config.agent.grad_clip)
