"""LSPC: a latent safety-constrained policy, learnt from a fixed dataset (seed 003: Koirala et
al., "Latent Safety-Constrained Policy Approach for Safe Offline Reinforcement Learning").

The policy never picks raw actions. A conditional VAE learns the actions of safe behaviour given
the state; the policy picks a point in the CVAE's latent space, within `bound` standard
deviations of the codes of safe behaviour, and the decoder turns it into an action, so its
actions stay near safe behaviour. Within that space it maximises reward by advantage-weighted
regression, with critics learnt from the data alone (IQL style: no action outside the dataset
is ever evaluated).

Each update, on a minibatch of dataset transitions (s, a, r, c, s', done), each marked safe by
the dataset when its episode's cost is within `agent.cost_limit`:

1. CVAE, on the safe transitions (`cvae_data`). When a batch has none (always, for a dataset
   without a single episode within the limit), the CVAE learns from the safest
   `fallback_fraction` of the batch instead, ranked by the cost critic Q_c(s, a): the safest
   behaviour the data has. That is logged (lspc/cvae_fallback) and warned about once, as such
   a policy imitates behaviour that was over the limit. The reference (`lspc_iql.py`,
   `_update_cost_v`) labels transitions by its cost critics alone, safe where V_c(s) and
   Q_c(s, a) are both below 0.02, i.e. where no more cost is to come. Here the dataset's label
   comes first, as a learnt critic blurs the edge of a hazard (tried: adding the transitions
   the critics put within the budget, on a bandit whose actions a[0] > 0.5 cost 1, 79% of the
   policy's actions ended above 0.65), and the critic only ranks, so that there is always data.
   Encoder q(z | s, a) = N(mu, sigma), decoder D(s, z) in [-1, 1]; loss |D(s, z) - a|^2 +
   beta KL(q || N(0, I)), z sampled from q, both averaged over their dimensions (as in BCQ and
   PLAS, whose beta = 0.5 this keeps: a heavier KL lets the decoder ignore z, so that every
   latent action decodes to the same average safe action). Unlike the reference, the CVAE's
   transitions are not weighted by exp(cost advantage): the cost advantage acts in step 4.
   Follow the mean and standard deviation per dimension of the safe codes mu (moving averages
   m and d).
2. Reward critics (IQL): V_r(s) regresses the expectile tau of the target critic Q_r(s, a) over
   the dataset's actions (close to the best the data does from s); Q_r(s, a) regresses
   r + gamma (1 - done) V_r(s').
3. Cost critics: the same with the cost and the expectile 1 - tau, so V_c(s) is close to the
   cost of the safest behaviour in the data from s.
4. Policy: z = m + bound * d * tanh(pi(s)), its action D(s, z) (the decoder held fixed). The
   bound counts the codes' spread, not the prior's: with this light KL the codes fill only part
   of N(0, I) (on SafetyPointGoal1, d = 0.24 in the dimensions the decoder uses), and beyond
   them the decoder extrapolates to actions no safe behaviour took. The decoded action is
   regressed onto the dataset's action with weight exp(temperature * A), clipped at
   MAX_WEIGHT. The advantage puts safety first: where V_c(s) is within the cost budget
   (`cost_budget`, the limit in the critic's units), A = Q_r(s, a) - V_r(s); elsewhere
   A = -(Q_c(s, a) - V_c(s)), which favours the data's least costly actions. Each advantage is
   divided by its batch standard deviation, so the temperature means the same whatever the
   scale of rewards and costs.
5. The target critics follow the critics slowly.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from workbench.agents.base import Critic, OfflineAgent, cost_budget
from workbench.config import Config
from workbench.nets import MLP, adam
from workbench.world_model import WorldModel

MAX_WEIGHT = 100.0
"""Upper clip of the policy's regression weights (as in IQL), so a few transitions cannot
dominate a batch."""
LOG_STD_RANGE = (-5.0, 2.0)
CODE_RATE = 0.01
"""Rate of the moving averages of the safe codes' mean and spread."""


def expectile_loss(difference: Tensor, tau: float) -> Tensor:
    """Mean of |tau - 1(u < 0)| u^2 over u = target - prediction: minimised by the expectile
    tau of the targets (tau = 0.5: the mean; towards 1: the maximum; towards 0: the minimum)."""
    weight = torch.where(difference < 0, 1 - tau, tau)
    return (weight * difference.square()).mean()


class CVAE(nn.Module):
    """q(z | s, a) = N(mu, sigma) and a decoder D(s, z) in [-1, 1]; the prior is N(0, I)."""

    def __init__(
        self, feature_dim: int, action_dim: int, latent_dim: int, hidden: int, layers: int
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = MLP(feature_dim + action_dim, 2 * latent_dim, hidden, layers)
        self.decoder = MLP(feature_dim + latent_dim, action_dim, hidden, layers)

    def encode(self, features: Tensor, action: Tensor) -> Normal:
        mean, log_std = self.encoder(torch.cat([features, action], -1)).chunk(2, -1)
        return Normal(mean, log_std.clamp(*LOG_STD_RANGE).exp())

    def decode(self, features: Tensor, latent: Tensor) -> Tensor:
        return torch.tanh(self.decoder(torch.cat([features, latent], -1)))

    def losses(self, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Per transition [N], each averaged over its dimensions: the squared reconstruction
        error (z sampled from q) and KL(q || prior)."""
        posterior = self.encode(features, action)
        reconstruction = self.decode(features, posterior.rsample())
        prior = Normal(torch.zeros_like(posterior.loc), torch.ones_like(posterior.scale))
        error = (reconstruction - action).square().mean(-1)
        return error, kl_divergence(posterior, prior).mean(-1)


class LatentActor(nn.Module):
    """Acts in the CVAE's latent space: z = center + bound * scale * tanh(net(s)), then the
    action D(s, z); center and scale follow the mean and spread of the safe data's codes."""

    center: Tensor  # buffers
    scale: Tensor

    def __init__(self, feature_dim: int, cvae: CVAE, bound: float, hidden: int, layers: int):
        super().__init__()
        self.net = MLP(feature_dim, cvae.latent_dim, hidden, layers)
        self.cvae = cvae  # shared with the agent
        self.bound = bound
        self.register_buffer("center", torch.zeros(cvae.latent_dim))
        self.register_buffer("scale", torch.ones(cvae.latent_dim))  # the prior's, to begin with

    def latent(self, features: Tensor) -> Tensor:
        return self.center + self.bound * self.scale * torch.tanh(self.net(features))

    @torch.no_grad()
    def follow_codes(self, codes: Tensor) -> None:
        """Move center and scale towards the mean and standard deviation of `codes` [N, d]."""
        if len(codes) > 1:
            codes = codes.float()  # the buffers stay fp32 under bf16 autocast
            self.center.lerp_(codes.mean(0), CODE_RATE)
            self.scale.lerp_(codes.std(0), CODE_RATE)

    def mode(self, features: Tensor) -> Tensor:
        return self.cvae.decode(features, self.latent(features))


class Critics(nn.Module):
    """For one signal (reward or cost): Q(s, a) with a slowly following target, and V(s), the
    expectile `expectile` of the target Q over the dataset's actions."""

    def __init__(
        self, feature_dim: int, action_dim: int, hidden: int, layers: int, expectile: float
    ):
        super().__init__()
        self.q = Critic(feature_dim + action_dim, hidden, layers)
        self.v = MLP(feature_dim, 1, hidden, layers)
        self.expectile = expectile

    def value(self, features: Tensor) -> Tensor:
        return self.v(features).squeeze(-1)

    @torch.no_grad()
    def advantage(self, features: Tensor, action: Tensor) -> Tensor:
        return self.q.target_value(torch.cat([features, action], -1)) - self.value(features)

    def losses(self, transitions: dict[str, Tensor], signal: Tensor, gamma: float):
        """(Q loss, V loss) on a minibatch, for the reward or cost `signal` [N]."""
        features, next_features = transitions["features"], transitions["next_features"]
        state_action = torch.cat([features, transitions["action"]], -1)
        target_q = self.q.target_value(state_action).detach()
        v_loss = expectile_loss(target_q - self.value(features), self.expectile)
        with torch.no_grad():
            target = signal + gamma * (1 - transitions["done"]) * self.value(next_features)
        q_loss = (self.q(state_action) - target).square().mean()
        return q_loss, v_loss


class LSPC(OfflineAgent):
    actor: LatentActor

    def __init__(self, config: Config, world_model: WorldModel, action_dim: int):
        super().__init__(config, world_model, action_dim)
        cfg, lspc, lr = config.agent, config.lspc, config.offline.lr
        feature_dim = world_model.feature_dim
        self.cvae = CVAE(feature_dim, action_dim, lspc.latent_dim, cfg.hidden, cfg.layers)
        self.actor = LatentActor(feature_dim, self.cvae, lspc.latent_bound, cfg.hidden, cfg.layers)
        sizes = (feature_dim, action_dim, cfg.hidden, cfg.layers)
        self.reward_critics = Critics(*sizes, expectile=lspc.expectile)
        self.cost_critics = Critics(*sizes, expectile=1 - lspc.expectile)
        critics = [*self.reward_critics.parameters(), *self.cost_critics.parameters()]
        self.cvae_optimizer = adam(self.cvae.parameters(), lr)
        self.critic_optimizer = adam([p for p in critics if p.requires_grad], lr)
        self.actor_optimizer = adam(self.actor.net.parameters(), lr)
        self.budget = cost_budget(config)
        self._warned = False

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "cvae": self.cvae_optimizer,
            "critic": self.critic_optimizer,
            "actor": self.actor_optimizer,
        }

    def update(self, transitions: dict[str, Tensor]) -> dict[str, float]:
        features, action, safe = transitions["features"], transitions["action"], transitions["safe"]
        gamma = self.config.agent.gamma
        chosen, fallback = self.cvae_data(transitions)  # 1
        recon, kl = self.cvae.losses(features, action)
        cvae_loss = (chosen * (recon + self.config.lspc.beta * kl)).sum() / chosen.sum()
        self.step(self.cvae_optimizer, cvae_loss)
        self.actor.follow_codes(
            self.cvae.encode(features[chosen > 0], action[chosen > 0]).mean.detach()
        )
        reward_q, reward_v = self.reward_critics.losses(
            transitions, transitions["reward"], gamma
        )  # 2
        cost_q, cost_v = self.cost_critics.losses(transitions, transitions["cost"], gamma)  # 3
        self.step(self.critic_optimizer, reward_q + reward_v + cost_q + cost_v)
        weight, feasible = self.policy_weights(features, action)  # 4
        self.cvae.requires_grad_(False)
        try:
            error = (self.actor.mode(features) - action).square().sum(-1)
        finally:
            self.cvae.requires_grad_(True)
        actor_loss = (weight * error).mean()
        grad_norm = self.step(self.actor_optimizer, actor_loss)
        tau = self.config.agent.target_tau  # 5
        self.reward_critics.q.follow(tau)
        self.cost_critics.q.follow(tau)
        return {
            "lspc/cvae_recon": ((chosen * recon).sum() / chosen.sum()).item(),
            "lspc/cvae_kl": ((chosen * kl).sum() / chosen.sum()).item(),
            "lspc/cvae_fraction": chosen.mean().item(),
            "lspc/cvae_fallback": float(fallback),
            "lspc/episode_safe_fraction": (safe > 0).float().mean().item(),
            "lspc/feasible_fraction": feasible.float().mean().item(),
            "lspc/weight_mean": weight.mean().item(),
            "agent/critic_loss": (reward_q + reward_v).item(),
            "agent/cost_critic_loss": (cost_q + cost_v).item(),
            "agent/actor_loss": actor_loss.item(),
            "agent/actor_grad_norm": grad_norm,
            "agent/cost_budget": self.budget,
        }

    @torch.no_grad()
    def cvae_data(self, transitions: dict[str, Tensor]) -> tuple[Tensor, bool]:
        """Step 1's transitions: a mask [N] (1: the CVAE learns from it), and whether it is the
        fallback (the batch's safest fraction by Q_c, for want of a transition marked safe)."""
        safe = transitions["safe"] > 0
        if safe.any():
            return safe.float(), False
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"LSPC: a batch without a transition of any episode within agent.cost_limit="
                f"{self.config.agent.cost_limit}; the CVAE learns from the safest "
                f"{self.config.lspc.fallback_fraction:.0%} of each such batch by cost Q instead "
                "(metric lspc/cvae_fallback = 1)",
                stacklevel=3,
            )
        state_action = torch.cat([transitions["features"], transitions["action"]], -1)
        cost_q = self.cost_critics.q.target_value(state_action)
        count = max(1, math.ceil(self.config.lspc.fallback_fraction * len(cost_q)))
        chosen = torch.zeros_like(cost_q)
        chosen[cost_q.topk(count, largest=False).indices] = 1
        return chosen, True

    @torch.no_grad()
    def policy_weights(self, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Step 4's regression weights [N], and where the state is within the budget [N]."""
        feasible = self.cost_critics.value(features) <= self.budget
        reward_advantage = _standardised(self.reward_critics.advantage(features, action))
        cost_advantage = _standardised(self.cost_critics.advantage(features, action))
        advantage = torch.where(feasible, reward_advantage, -cost_advantage)
        weight = (self.config.lspc.temperature * advantage).exp().clamp(max=MAX_WEIGHT)
        return weight, feasible

    @torch.no_grad()
    def inspect(self, features: Tensor) -> dict[str, Tensor]:
        return {
            "value": self.reward_critics.value(features),
            "cost_value": self.cost_critics.value(features),
        }

    @torch.no_grad()
    def latent_codes(self, features: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """The CVAE's code (its encoder's mean) of each state's action, and the policy's latent."""
        return {
            "cvae_latent": self.cvae.encode(features, actions).mean,
            "policy_latent": self.actor.latent(features),
        }


def _standardised(advantage: Tensor) -> Tensor:
    return advantage / advantage.std().clamp(min=1e-6)
