"""Building blocks of the world model and the agents (DreamerV3 style).

- `symlog` / `symexp`: squash large targets so one loss scale fits every task.
- `TwoHot`: a categorical over 255 bins in symlog space, for reward, cost and value heads.
- `MLP`, `EnsembleMLP`: Linear + LayerNorm + SiLU stacks; the ensemble runs its K members in
  one batched matmul per layer.
- `NormGRUCell`: the RSSM's deterministic recurrence.
- `ConvEncoder` / `ConvDecoder`: 64x64 RGB images <-> feature vectors.
- `unimix_logits`, `sample_onehot`, `categorical_kl`, `kl_with_free_bits`: the categorical latents.
- `lambda_returns`: TD(lambda) targets along imagined rollouts.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ADAM_EPS = 1e-5
"""Adam's epsilon for every optimiser (DreamerV3, SafeDreamer): with 1e-8, an actor whose
gradients have norm 1e-3 takes full-size steps on noise."""

TWOHOT_BINS = 255
TWOHOT_LOW = -20.0
TWOHOT_HIGH = 20.0


def adam(parameters, lr: float) -> torch.optim.Adam:
    """The optimiser every network here uses: Adam with `ADAM_EPS`."""
    return torch.optim.Adam(parameters, lr=lr, eps=ADAM_EPS)


def clipped_step(optimizer: torch.optim.Optimizer, loss: Tensor, parameters, clip: float) -> float:
    """One optimiser step on `loss`, its gradient norm clipped to `clip`; no step when the
    gradient is not finite, so a bad update never spoils the weights (`train.skip_bad_updates`).
    Gradients left by other losses are cleared first. Returns the norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = nn.utils.clip_grad_norm_(list(parameters), clip).item()
    if math.isfinite(norm):
        optimizer.step()
    return norm


def symlog(x: Tensor) -> Tensor:
    """sign(x) * log(1 + |x|): compresses large magnitudes, identity-like near zero."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """Inverse of `symlog`: sign(x) * (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHot:
    """A scalar predicted as a categorical over `TWOHOT_BINS` equally spaced bins in symlog space.

    `logits` [..., bins] come from a head. The loss is the cross-entropy against the two-hot
    encoding of symlog(target) (the two bins around it, weighted so their expectation is exactly
    symlog(target)); the prediction is symexp of the expected bin. Computed in float32.
    """

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits.float()
        self.bins = torch.linspace(
            TWOHOT_LOW, TWOHOT_HIGH, self.logits.shape[-1], device=self.logits.device
        )

    def mean(self) -> Tensor:
        """Predicted value [...]: symexp(sum_i p_i * bin_i)."""
        return symexp((self.logits.softmax(-1) * self.bins).sum(-1))

    def encode(self, target: Tensor) -> Tensor:
        """Two-hot weights [..., bins] whose expected bin is symlog(target) (clipped to range)."""
        x = symlog(target.float()).clamp(TWOHOT_LOW, TWOHOT_HIGH)
        step = (TWOHOT_HIGH - TWOHOT_LOW) / (len(self.bins) - 1)
        position = (x - TWOHOT_LOW) / step
        below = position.floor().long().clamp(max=len(self.bins) - 2)
        above_weight = (position - below).unsqueeze(-1)
        n = len(self.bins)
        return F.one_hot(below, n) * (1 - above_weight) + F.one_hot(below + 1, n) * above_weight

    def loss(self, target: Tensor) -> Tensor:
        """Cross-entropy [...] of the predicted bins against the two-hot encoding of target."""
        return -(self.encode(target) * self.logits.log_softmax(-1)).sum(-1)


class MLP(nn.Sequential):
    """`layers` x (Linear without bias, LayerNorm, SiLU), then a Linear to `out_dim` (if given)."""

    def __init__(self, in_dim: int, out_dim: int | None, hidden: int, layers: int) -> None:
        modules: list[nn.Module] = []
        for i in range(layers):
            modules += [
                nn.Linear(in_dim if i == 0 else hidden, hidden, bias=False),
                nn.LayerNorm(hidden),
                nn.SiLU(),
            ]
        if out_dim is not None:
            modules.append(nn.Linear(hidden if layers else in_dim, out_dim))
        super().__init__(*modules)


class EnsembleLinear(nn.Module):
    """K independent linear layers held as one weight [K, in, out], applied in one batched matmul.

    Input [N, in] (shared by all members) or [K, N, in] (one slice per member); output [K, N, out].
    Each member is initialised like `nn.Linear`.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = (
            nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound)) if bias else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """[N, in] or [K, N, in] -> [K, N, out]."""
        out = torch.matmul(x, self.weight)
        return out if self.bias is None else out + self.bias


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate scale and shift per member: [K, N, d] -> same."""

    def __init__(self, members: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each row, then apply member k's affine to slice k."""
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """K MLPs of the same shape as `MLP`, evaluated together: [..., in] -> [K, ..., out].

    Every parameter has the member index as its leading dimension, and each layer is a single
    batched matmul over all members (no Python loop over members).
    """

    def __init__(self, members: int, in_dim: int, out_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for i in range(layers):
            modules += [
                EnsembleLinear(members, in_dim if i == 0 else hidden, hidden, bias=False),
                EnsembleLayerNorm(members, hidden),
                nn.SiLU(),
            ]
        modules.append(EnsembleLinear(members, hidden if layers else in_dim, out_dim))
        self.net = nn.Sequential(*modules)
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        """Input shared by all members [..., in] -> member outputs [K, ..., out]."""
        lead = x.shape[:-1]
        out = self.net(x.reshape(-1, x.shape[-1]))
        return out.reshape(self.members, *lead, out.shape[-1])


class NormGRUCell(nn.Module):
    """GRU cell with LayerNorm on its gates (DreamerV3): h' = u * tanh(r * c) + (1 - u) * h.

    The update gate is biased by -1 so the state starts out mostly kept.
    """

    def __init__(self, in_dim: int, size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """One step: input [..., in], state [..., size] -> new state [..., size] (float32)."""
        parts = self.norm(self.linear(torch.cat([x, h], -1))).float()
        reset, candidate, update = parts.chunk(3, -1)
        candidate = torch.tanh(torch.sigmoid(reset) * candidate)
        update = torch.sigmoid(update - 1)
        return update * candidate + (1 - update) * h.float()


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of an image batch [N, C, H, W]."""

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each pixel's channel vector."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvEncoder(nn.Module):
    """uint8 images [..., H, W, 3] -> features [..., out_dim].

    Pixels are scaled to [-0.5, 0.5]; four stride-2 4x4 convolutions with depth d, 2d, 4d, 8d
    (each followed by channel LayerNorm and SiLU) bring H x W down to H/16 x W/16, then flatten.
    """

    def __init__(self, depth: int, image_size: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage in range(4):
            out = depth * 2**stage
            layers += [
                nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=False),
                ChannelNorm(out),
                nn.SiLU(),
            ]
            channels = out
        self.net = nn.Sequential(*layers)
        self.out_dim = channels * (image_size // 16) ** 2

    def forward(self, obs: Tensor) -> Tensor:
        """Encode all images at once, whatever their leading dims."""
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float() / 255 - 0.5
        return self.net(x).reshape(*lead, self.out_dim)


class ConvDecoder(nn.Module):
    """Features [..., in_dim] -> images [..., H, W, 3] on the encoder's [-0.5, 0.5] pixel scale.

    The mirror of `ConvEncoder`: a Linear to 8d x H/16 x W/16, then four stride-2 transposed
    convolutions (8d -> 4d -> 2d -> d -> 3). The output is not squashed (it is the mean of a
    unit Gaussian); clamp it to [-0.5, 0.5] for display.
    """

    def __init__(self, in_dim: int, depth: int, image_size: int = 64) -> None:
        super().__init__()
        self.start = (depth * 8, image_size // 16, image_size // 16)
        self.linear = nn.Linear(in_dim, math.prod(self.start))
        layers: list[nn.Module] = []
        for stage in (3, 2, 1):
            layers += [
                nn.ConvTranspose2d(depth * 2**stage, depth * 2 ** (stage - 1), 4, 2, 1, bias=False),
                ChannelNorm(depth * 2 ** (stage - 1)),
                nn.SiLU(),
            ]
        layers.append(nn.ConvTranspose2d(depth, 3, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        self.subpixel_output = True
        """Compute the last layer with `subpixel_conv_transpose` (measured at `cpu` sizes, bf16,
        one thread: 0.97x the world-model update's time); False: the plain transposed conv."""

    def forward(self, features: Tensor) -> Tensor:
        """Decode all feature vectors at once, whatever their leading dims."""
        lead = features.shape[:-1]
        x = self.linear(features.reshape(-1, features.shape[-1])).reshape(-1, *self.start)
        first, last = cast(nn.ConvTranspose2d, self.net[0]), cast(nn.ConvTranspose2d, self.net[-1])
        x = x.contiguous(memory_format=memory_format(first.weight))
        if self.subpixel_output:
            x = subpixel_conv_transpose(self.net[:-1](x), last)
        else:
            x = self.net(x)
        x = x.permute(0, 2, 3, 1)
        return x.reshape(*lead, *x.shape[1:])


_TAPS = torch.tensor([[3, 1, 4], [4, 2, 0]])
"""For output phase a (row or column parity) and 3x3 tap m, the transposed conv's kernel index
(4: no tap; it reads a zero pad)."""


def subpixel_conv_transpose(x: Tensor, layer: nn.ConvTranspose2d) -> Tensor:
    """`layer(x)` for a stride-2, kernel-4, padding-1 transposed conv, computed as a 3x3 conv to
    4x the channels and a pixel shuffle (the same function of the same weights, to rounding).
    oneDNN's transposed conv is slow on CPU when it has few output channels (the decoder's last
    layer: 3); a plain conv is not."""
    w = F.pad(layer.weight, (0, 1, 0, 1))  # [in, out, 5, 5]: index 4 reads zero
    taps = _TAPS.to(w.device)
    kernel = w[:, :, taps][:, :, :, :, taps]  # [in, out, 2 (a), 3 (m), 2 (b), 3 (n)]
    kernel = kernel.permute(1, 2, 4, 0, 3, 5).reshape(-1, w.shape[0], 3, 3)
    bias = None if layer.bias is None else layer.bias.repeat_interleave(4)
    return F.pixel_shuffle(F.conv2d(x, kernel, bias, padding=1), 2)


def memory_format(weight: Tensor) -> torch.memory_format:
    """channels_last if this conv weight is stored so (see `WorldModel.channels_last`), else
    the default: a conv's input in the same layout as its weight takes oneDNN's fast path."""
    channels_last = weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def unimix_logits(logits: Tensor, unimix: float) -> Tensor:
    """Log-probs [..., classes] of (1 - unimix) * softmax(logits) + unimix * uniform (float32)."""
    probs = logits.float().softmax(-1)
    probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return torch.log(probs)


def sample_onehot(logits: Tensor) -> Tensor:
    """One-hot sample [..., classes] of a categorical, with straight-through gradients to the probs.

    The forward value is an exact one-hot sample (Gumbel-max); the backward pass treats it as
    the class probabilities, so gradients reach whatever produced `logits`.
    """
    logits = logits.float()
    gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-20, 1.0 - 1e-7)))
    onehot = F.one_hot((logits + gumbel).argmax(-1), logits.shape[-1]).float()
    probs = logits.softmax(-1)
    return onehot + (probs - probs.detach())  # exactly one-hot forward, grads to probs


def categorical_kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL(p || q) [...] between factorised categoricals [..., stoch, classes], summed over stoch."""
    p_log = p_logits.float().log_softmax(-1)
    q_log = q_logits.float().log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum((-2, -1))


def kl_with_free_bits(p_logits: Tensor, q_logits: Tensor, free_bits: float) -> Tensor:
    """max(free_bits, KL(p || q)) [...]: a KL below `free_bits` nats gets no gradient."""
    return categorical_kl(p_logits, q_logits).clamp(min=free_bits)


def lambda_returns(reward: Tensor, cont: Tensor, value: Tensor, gamma: float, lam: float) -> Tensor:
    """TD(lambda) returns along an imagined rollout.

    Time indexing follows `Imagination`: all inputs are [H+1, ...] over the states 0..H;
    reward[t] and cont[t] are received/predicted on ARRIVING at state t (so reward[0] and cont[0]
    are unused), value[t] = V(state t). Returns R [H, ...] for the states 0..H-1:

        R[H]  = value[H]                         (bootstrap; not returned)
        R[t]  = reward[t+1] + gamma * cont[t+1] * ((1 - lam) * value[t+1] + lam * R[t+1])

    lam = 0 gives one-step TD targets, lam = 1 the discounted reward sum bootstrapped at H.
    """
    discount = gamma * cont[1:]
    returns = []
    next_return = value[-1]
    for t in reversed(range(len(reward) - 1)):
        blended = (1 - lam) * value[t + 1] + lam * next_return
        next_return = reward[t + 1] + discount[t] * blended
        returns.append(next_return)
    return torch.stack(returns[::-1])
