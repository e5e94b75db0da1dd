"""The world model: a DreamerV3-style RSSM with reward, cost and continuation heads, an image
decoder, and an ensemble of K transition (prior) heads whose disagreement measures epistemic
uncertainty.

The latent state is z_t = (h_t, s_t): h_t the deterministic GRU state, s_t a vector of
`stoch` categorical variables with `classes` classes each (sampled one-hot, straight-through).

    h_t      = GRU(h_{t-1}, MLP(s_{t-1}, a_t))              a_t: the action that led to o_t
    q(s_t)   = posterior MLP(h_t, encoder(o_t))             used when the image is seen
    p_k(s_t) = prior head k (h_t), k = 1..K                 used in imagination
    r_t, c_t, cont_t, o_t  <-  heads on features (h_t, s_t)

The K prior heads are one `EnsembleMLP`: one batched pass gives every member's logits.

Choices:
- The `prior` returned by `observe` (and the target of the representation loss) is the
  member-averaged distribution p(s) = mean_k p_k(s): the model's best single guess.
- Imagination steps with one member per sample (uniformly random, or a fixed one if asked).
- Disagreement of a transition = variance over the K members of the predicted class
  probabilities, summed over all stoch x classes entries (0 when all members agree).

Training loss, per step, averaged over batch and time (DreamerV3 with free bits f):
    image        sum over pixels of (decoder(features) - obs)^2, pixels in [-0.5, 0.5]
    reward, cost two-hot cross-entropy in symlog space (cost weighted by cost_scale, and its
                 unsafe steps, cost > 0, by unsafe_cost_weight)
    cont         binary cross-entropy against 1 - is_terminal
    dynamics     mean_k max(f, KL(sg(q) || p_k))           weight kl_dynamics (trains the priors)
    representation  max(f, KL(q || sg(mean_k p_k)))       weight kl_representation (trains q)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.config import ModelConfig
from workbench.nets import (
    MLP,
    TWOHOT_BINS,
    ConvDecoder,
    ConvEncoder,
    EnsembleMLP,
    NormGRUCell,
    TwoHot,
    adam,
    categorical_kl,
    clipped_step,
    kl_with_free_bits,
    sample_onehot,
    unimix_logits,
)


@dataclass
class Latent:
    """RSSM state. Leading dims arbitrary ([B], [B,T], [H+1,N] ...)."""

    deter: Tensor  # [..., deter]
    stoch: Tensor  # [..., stoch*classes] one-hot sample (straight-through gradients)
    logits: Tensor  # [..., stoch, classes] log-probabilities (unimix applied)

    def features(self) -> Tensor:
        """cat(deter, stoch): [..., deter + stoch*classes], the input of every head and policy."""
        return torch.cat([self.deter, self.stoch], -1)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Latent:
        """Apply fn to every tensor; fn must act on leading dims only (index, reshape, .to)."""
        return Latent(fn(self.deter), fn(self.stoch), fn(self.logits))

    def detach(self) -> Latent:
        """The same state, cut from the graph."""
        return self.map(Tensor.detach)

    @staticmethod
    def stack(items: list[Latent], dim: int) -> Latent:
        """Stack states along a new leading dim (`dim` counts leading dims, so it must be >= 0)."""
        return Latent(
            torch.stack([x.deter for x in items], dim),
            torch.stack([x.stoch for x in items], dim),
            torch.stack([x.logits for x in items], dim),
        )


@dataclass
class Imagination:
    """A batch of imagined rollouts. Index t = 0 is the start state; actions[t] is taken in
    state t and leads to t+1."""

    latents: Latent  # [H+1, N]
    features: Tensor  # [H+1, N, F]
    actions: Tensor  # [H, N, A]
    reward: Tensor  # [H+1, N] reward on arriving at t (reward[0]: that of the start state)
    cost: Tensor  # [H+1, N] predicted cost, same indexing
    cont: Tensor  # [H+1, N] predicted continuation probability
    disagreement: Tensor  # [H, N] ensemble disagreement of the transition t -> t+1


class WorldModel(nn.Module):
    """RSSM with reward/cost/continuation heads, image decoder and a K-member prior ensemble."""

    cost_unweight: Tensor  # a buffer

    def __init__(self, config: ModelConfig, action_dim: int, image_size: int = 64) -> None:
        super().__init__()
        c = config
        self.config = config
        self.action_dim = action_dim
        self.stoch_dim = c.stoch * c.classes
        self.feature_dim = c.deter + self.stoch_dim
        self.encoder = ConvEncoder(c.cnn_depth, image_size)
        self.dynamics_in = MLP(self.stoch_dim + action_dim, None, c.hidden, layers=1)
        self.gru = NormGRUCell(c.hidden, c.deter)
        self.posterior_net = MLP(c.deter + self.encoder.out_dim, self.stoch_dim, c.hidden, 1)
        self.prior_nets = EnsembleMLP(c.ensemble, c.deter, self.stoch_dim, c.hidden, 1)
        self.decoder = ConvDecoder(self.feature_dim, c.cnn_depth, image_size)
        self.reward_head = MLP(self.feature_dim, TWOHOT_BINS, c.hidden, layers=2)
        self.cost_head = MLP(self.feature_dim, TWOHOT_BINS, c.hidden, layers=2)
        self.cont_head = MLP(self.feature_dim, 1, c.hidden, layers=2)
        for head in (self.reward_head, self.cost_head):  # start by predicting exactly 0
            output = cast(nn.Linear, head[-1])
            nn.init.zeros_(output.weight)
            nn.init.zeros_(output.bias)
        # What `cost` subtracts from the cost head's logits to undo the unsafe-step weight: log w
        # on every bin but the zero bin (derived from the config, so not saved in checkpoints).
        unweight = torch.full((TWOHOT_BINS,), math.log(c.unsafe_cost_weight))
        unweight[TWOHOT_BINS // 2] = 0.0
        self.register_buffer("cost_unweight", unweight, persistent=False)
        # Convolutions in channels-last layout (encoder input is NHWC already): measured at
        # `cpu` sizes, bf16, one thread, 0.93x the world-model update's time.
        # (valid torch, missing from its stubs' overloads of Module.to)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.optimizer = adam(self.parameters(), c.lr)

    # ----- states and transitions -------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

    def initial(self, batch_size: int) -> Latent:
        """The all-zeros state [batch_size] that starts every episode."""
        c = self.config

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(batch_size, *shape, device=self.device)

        return Latent(zeros(c.deter), zeros(self.stoch_dim), zeros(c.stoch, c.classes))

    def _deter_step(self, prev: Latent, action: Tensor) -> Tensor:
        """h_t = GRU(h_{t-1}, MLP(s_{t-1}, a_t))."""
        x = self.dynamics_in(torch.cat([prev.stoch, action.to(prev.stoch.dtype)], -1))
        return self.gru(x, prev.deter)

    def _member_logits(self, deter: Tensor) -> Tensor:
        """All K priors' log-probabilities [K, ..., stoch, classes] from h [..., deter]."""
        logits = self.prior_nets(deter)
        logits = logits.reshape(*logits.shape[:-1], self.config.stoch, self.config.classes)
        return unimix_logits(logits, self.config.unimix)

    def _latent(self, deter: Tensor, logits: Tensor) -> Latent:
        """A state with a fresh one-hot sample of the categorical `logits` [..., stoch, classes]."""
        return Latent(deter, sample_onehot(logits).flatten(-2), logits)

    def _posterior_step(
        self, prev: Latent, prev_action: Tensor, embed: Tensor, is_first: Tensor
    ) -> Latent:
        """One filtering step; state and action are reset to zero where is_first."""
        keep = (~is_first).float()
        prev = prev.map(lambda x: x * keep.reshape(keep.shape + (1,) * (x.dim() - keep.dim())))
        deter = self._deter_step(prev, prev_action * keep.unsqueeze(-1))
        logits = self.posterior_net(torch.cat([deter, embed.to(deter.dtype)], -1))
        logits = logits.reshape(*logits.shape[:-1], self.config.stoch, self.config.classes)
        return self._latent(deter, unimix_logits(logits, self.config.unimix))

    def observe_step(
        self, prev: Latent, prev_action: Tensor, obs: Tensor, is_first: Tensor
    ) -> Latent:
        """Posterior [B] for acting online: obs uint8 [B,H,W,3], prev_action [B,A], is_first [B]."""
        return self._posterior_step(prev, prev_action, self.encoder(obs), is_first)

    def _scan(
        self, obs: Tensor, action: Tensor, is_first: Tensor, start: Latent | None
    ) -> tuple[Latent, Tensor]:
        """Posterior [B,T] and every member's prior logits [K,B,T,stoch,classes] over a sequence."""
        embed = self.encoder(obs)  # all frames at once
        latent = start if start is not None else self.initial(obs.shape[0])
        posts = []
        for t in range(obs.shape[1]):
            latent = self._posterior_step(latent, action[:, t], embed[:, t], is_first[:, t])
            posts.append(latent)
        post = Latent.stack(posts, 1)
        return post, self._member_logits(post.deter)  # priors depend on h only: one pass

    @staticmethod
    def _mixture(member_logits: Tensor) -> Tensor:
        """Log-probabilities [..., stoch, classes] of the member-averaged prior mean_k p_k."""
        return torch.logsumexp(member_logits, 0) - math.log(len(member_logits))

    def observe(
        self, obs: Tensor, action: Tensor, is_first: Tensor, start: Latent | None = None
    ) -> tuple[Latent, Latent]:
        """Filter a batch of sequences: obs uint8 [B,T,H,W,3], action [B,T,A] (action[:, t] led
        to obs[:, t]; zeros when is_first), is_first bool [B,T]. Returns (posterior [B,T],
        prior [B,T]), the prior being the member-averaged distribution at the same h_t."""
        post, member_logits = self._scan(obs, action, is_first, start)
        return post, self._latent(post.deter, self._mixture(member_logits))

    def _pick_member(self, member_logits: Tensor, member: int | None) -> Tensor:
        """Logits [..., stoch, classes] of one member per sample (random if member is None)."""
        if member is not None:
            return member_logits[member]
        batch = member_logits.shape[1:-2]
        index = torch.randint(len(member_logits), (1, *batch, 1, 1), device=member_logits.device)
        return member_logits.gather(0, index.expand(1, *member_logits.shape[1:]))[0]

    def member_priors(self, latent: Latent, action: Tensor) -> Tensor:
        """Log-probabilities of all K members' next stochastic state [K, ..., stoch, classes]."""
        return self._member_logits(self._deter_step(latent, action))

    def _prior_step(
        self, prev: Latent, action: Tensor, member: int | None
    ) -> tuple[Latent, Tensor]:
        """The next state under the prior, and all members' logits [K, ..., stoch, classes]."""
        deter = self._deter_step(prev, action)
        member_logits = self._member_logits(deter)
        return self._latent(deter, self._pick_member(member_logits, member)), member_logits

    def imagine_step(self, prev: Latent, action: Tensor, member: int | None = None) -> Latent:
        """Prior transition; member None: each sample uses a uniformly random ensemble member."""
        return self._prior_step(prev, action, member)[0]

    @staticmethod
    def _spread(member_logits: Tensor) -> Tensor:
        """Variance over members of the class probabilities, summed over stoch x classes: [...]."""
        probs = member_logits.exp()
        # Written out: on CPU, torch's var over the leading dim is ~30x slower than this.
        return (probs - probs.mean(0)).square().mean(0).sum((-2, -1))

    def disagreement(self, latent: Latent, action: Tensor) -> Tensor:
        """Spread [...] of the K members' predicted next stochastic state (see `_spread`)."""
        return self._spread(self.member_priors(latent, action))

    def imagine(
        self,
        policy: Callable[[Tensor], Tensor],
        start: Latent,
        horizon: int,
        member: int | None = None,
    ) -> Imagination:
        """Roll `policy` (features [N,F] -> actions [N,A]) forward `horizon` steps from start [N].

        Differentiable w.r.t. the actions (and so the policy's parameters): gradients reach each
        action from the states after it, never through the policy's input (DreamerV3's
        `policy(sg(state))`); wrap in no_grad when not needed.
        """
        latents, actions, spreads = [start], [], []
        latent = start
        for _ in range(horizon):
            action = policy(latent.features().detach())  # sg(state), as every reference does
            latent, member_logits = self._prior_step(latent, action, member)
            latents.append(latent)
            actions.append(action)
            spreads.append(self._spread(member_logits))
        stacked = Latent.stack(latents, 0)
        features = stacked.features()
        return Imagination(
            latents=stacked,
            features=features,
            actions=torch.stack(actions),
            reward=self.reward(features),
            cost=self.cost(features),
            cont=self.continuation(features),
            disagreement=torch.stack(spreads),
        )

    # ----- heads ------------------------------------------------------------------------------

    def reward(self, features: Tensor) -> Tensor:
        """Predicted mean reward [...] from features [..., F]."""
        return TwoHot(self.reward_head(features)).mean()

    def cost(self, features: Tensor) -> Tensor:
        """Predicted mean cost [...] from features [..., F], clamped to >= 0, calibrated.

        The head is trained with unsafe steps weighted by w = `unsafe_cost_weight`, so it learns
        them, but its own distribution then overstates every cost w-fold in odds (measured at
        w = 10: median 0.39 on safe steps, episodes summed to 258 for a true 83, so no plan was
        feasible and every imagined state looked unsafe). A safe step's target is exactly the
        zero bin, and an unsafe step's (cost >= 1) never touches it, so dividing the other bins'
        probabilities by w gives back the unweighted prediction exactly."""
        logits = self.cost_head(features).float()
        return TwoHot(logits - self.cost_unweight).mean().clamp(min=0)

    def cost_loss(self, features: Tensor, cost: Tensor) -> Tensor:
        """The cost head's two-hot loss [...], unsafe steps (cost > 0) weighted by
        `unsafe_cost_weight`: they are rare, and unweighted the head settled on "nearly safe"
        everywhere (measured: 0.23 predicted on unsafe steps whose true cost was 1.97).
        SafeDreamer weights cost >= 1 by 10. `cost` undoes the weight when predicting."""
        weight = torch.where(cost > 0, self.config.unsafe_cost_weight, 1.0)
        return weight * TwoHot(self.cost_head(features)).loss(cost)

    def continuation(self, features: Tensor) -> Tensor:
        """Predicted probability [...] that the episode continues after this state."""
        return torch.sigmoid(self.cont_head(features).float().squeeze(-1))

    def decode(self, features: Tensor) -> Tensor:
        """Reconstructed images [..., H, W, 3], float in [0, 1]."""
        return (self.decoder(features).float() + 0.5).clamp(0, 1)

    # ----- training ---------------------------------------------------------------------------

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float], Latent]:
        """Total world-model loss on a batch of sequences, its metrics, and the posterior [B,T]."""
        c = self.config
        post, member_logits = self._scan(
            batch["obs"], batch["action"], batch["is_first"], start=None
        )
        features = post.features()
        prior_logits = self._mixture(member_logits)

        # KL balancing with free bits: the priors chase the posterior, the posterior stays near
        # the (member-averaged) prior.
        dynamics = kl_with_free_bits(post.logits.detach(), member_logits, c.free_bits).mean()
        representation = kl_with_free_bits(post.logits, prior_logits.detach(), c.free_bits).mean()

        target = batch["obs"].float() / 255 - 0.5
        recon = (self.decoder(features).float() - target).square().sum((-3, -2, -1)).mean()

        reward_dist = TwoHot(self.reward_head(features))
        reward_loss = reward_dist.loss(batch["reward"]).mean()
        cost_loss = self.cost_loss(features, batch["cost"]).mean()

        cont_logits = self.cont_head(features).float().squeeze(-1)
        cont_target = 1.0 - batch["is_terminal"].float()
        cont_loss = F.binary_cross_entropy_with_logits(cont_logits, cont_target)

        total = (
            recon
            + c.reward_scale * reward_loss
            + c.cost_scale * cost_loss
            + cont_loss
            + c.kl_dynamics * dynamics
            + c.kl_representation * representation
        )
        with torch.no_grad():
            values = {
                "wm/loss": total,
                "wm/recon": recon,
                "wm/kl": categorical_kl(post.logits, prior_logits).mean(),
                "wm/reward_loss": reward_loss,
                "wm/cost_loss": cost_loss,
                "wm/cont_loss": cont_loss,
                "wm/reward_mae": (reward_dist.mean() - batch["reward"]).abs().mean(),
                "wm/cost_mae": (self.cost(features) - batch["cost"]).abs().mean(),
                "wm/disagreement": self._spread(member_logits).mean(),
            }
            numbers = torch.stack([v.float() for v in values.values()]).tolist()  # one sync
        return total, dict(zip(values, numbers, strict=True)), post

    def train_step(self, batch: dict[str, Tensor]) -> tuple[dict[str, float], Latent]:
        """One Adam step on `loss` (`nets.clipped_step`: gradient norm clipped to grad_clip, no
        step on a non-finite gradient; gradients left on the world model by other losses, e.g.
        an actor backpropagating through imagination, are cleared first).

        Returns the metrics and the detached posterior [B,T].
        """
        total, metrics, post = self.loss(batch)
        metrics["wm/grad_norm"] = clipped_step(
            self.optimizer, total, self.parameters(), self.config.grad_clip
        )
        return metrics, post.detach()
