"""Tests of the world model and its building blocks (CPU, tiny sizes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from workbench.config import ModelConfig
from workbench.nets import (
    EnsembleLayerNorm,
    EnsembleLinear,
    TwoHot,
    kl_with_free_bits,
    lambda_returns,
    symexp,
    symlog,
)
from workbench.world_model import Latent, WorldModel

TINY = ModelConfig(deter=32, stoch=4, classes=4, hidden=32, cnn_depth=4, ensemble=3)
ACTION_DIM = 2


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make_model(**overrides: float) -> WorldModel:
    return WorldModel(dataclasses.replace(TINY, **overrides), ACTION_DIM, image_size=64)


def random_batch(batch: int = 2, length: int = 5) -> dict[str, Tensor]:
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "obs": torch.randint(0, 256, (batch, length, 64, 64, 3), dtype=torch.uint8),
        "action": torch.rand(batch, length, ACTION_DIM) * 2 - 1,
        "reward": torch.randn(batch, length),
        "cost": (torch.rand(batch, length) < 0.3).float(),
        "is_first": is_first,
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }


# ----- building blocks ------------------------------------------------------------------------


def test_symlog_symexp_are_inverse() -> None:
    x = torch.tensor([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4])
    torch.testing.assert_close(symexp(symlog(x)), x)
    assert symlog(torch.tensor(1e4)) < 10


def test_two_hot_expected_value_is_the_value() -> None:
    values = torch.tensor([-250.0, -1.0, 0.0, 0.3, 1.0, 7.5, 1000.0])
    dist = TwoHot(torch.zeros(len(values), 255))
    weights = dist.encode(values)
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(values)))
    assert ((weights > 0).sum(-1) <= 2).all()
    torch.testing.assert_close((weights * dist.bins).sum(-1), symlog(values))
    torch.testing.assert_close(TwoHot(weights.log()).mean(), values, rtol=1e-4, atol=1e-4)
    assert dist.loss(values).shape == values.shape


def test_lambda_returns_hand_computed() -> None:
    reward = torch.tensor([0.0, 1.0, 2.0])  # reward[t]: on arriving at state t
    cont = torch.tensor([1.0, 1.0, 0.0])  # state 2 is terminal
    value = torch.tensor([0.0, 10.0, 20.0])
    # R1 = r2 + 0.5 * 0 * (...) = 2;  R0 = r1 + 0.5 * 1 * (0.5 * V1 + 0.5 * R1) = 1 + 0.5 * 6 = 4
    torch.testing.assert_close(
        lambda_returns(reward, cont, value, 0.5, 0.5), torch.tensor([4.0, 2.0])
    )
    # lam = 0: one-step TD targets r[t+1] + gamma * cont[t+1] * V[t+1]
    torch.testing.assert_close(
        lambda_returns(reward, cont, value, 0.5, 0.0), torch.tensor([6.0, 2.0])
    )
    batched = lambda_returns(*(x[:, None].repeat(1, 3) for x in (reward, cont, value)), 0.5, 0.5)
    assert batched.shape == (2, 3)


def test_kl_free_bits_is_constant_below_threshold() -> None:
    post = torch.randn(6, 4, 4) * 0.01
    prior = (post + torch.randn(6, 4, 4) * 0.01).requires_grad_()
    loss = kl_with_free_bits(post, prior, free_bits=1.0)
    torch.testing.assert_close(loss, torch.ones(6))
    loss.sum().backward()
    assert prior.grad is not None and (prior.grad == 0).all()
    far = kl_with_free_bits(post, torch.randn(6, 4, 4) * 5, free_bits=1.0)
    assert (far > 1.0).all()


def reference_member(ensemble: nn.Module, k: int, x: Tensor) -> Tensor:
    """Run member k alone, with plain layers holding its slice of the ensemble's weights."""
    for layer in ensemble.net:
        if isinstance(layer, EnsembleLinear):
            bias = None if layer.bias is None else layer.bias[k, 0]
            x = F.linear(x, layer.weight[k].T, bias)
        elif isinstance(layer, EnsembleLayerNorm):
            x = F.layer_norm(x, x.shape[-1:], layer.weight[k, 0], layer.bias[k, 0])
        else:
            x = layer(x)
    return x


def test_member_priors_equal_each_member_run_separately() -> None:
    model = make_model()
    latent = model.initial(3).map(lambda x: x + torch.rand_like(x))
    action = torch.rand(3, ACTION_DIM)
    logits = model.member_priors(latent, action)
    assert logits.shape == (TINY.ensemble, 3, TINY.stoch, TINY.classes)
    deter = model.imagine_step(latent, action, member=0).deter
    for k in range(TINY.ensemble):
        raw = reference_member(model.prior_nets, k, deter).reshape(3, TINY.stoch, TINY.classes)
        probs = 0.99 * raw.softmax(-1) + 0.01 / TINY.classes
        torch.testing.assert_close(logits[k], probs.log(), rtol=1e-4, atol=1e-5)


def test_disagreement_zero_iff_members_identical() -> None:
    model = make_model()
    latent = model.initial(4).map(lambda x: x + torch.rand_like(x))
    action = torch.rand(4, ACTION_DIM)
    assert (model.disagreement(latent, action) > 0).all()
    with torch.no_grad():
        for param in model.prior_nets.parameters():
            param.copy_(param[:1].expand_as(param))
    torch.testing.assert_close(model.disagreement(latent, action), torch.zeros(4))


# ----- shapes ---------------------------------------------------------------------------------


def test_shapes_of_observe_imagine_decode() -> None:
    model = make_model()
    batch = random_batch(batch=2, length=5)
    post, prior = model.observe(batch["obs"], batch["action"], batch["is_first"])
    for latent in (post, prior):
        assert latent.deter.shape == (2, 5, TINY.deter)
        assert latent.stoch.shape == (2, 5, TINY.stoch * TINY.classes)
        assert latent.logits.shape == (2, 5, TINY.stoch, TINY.classes)
    assert post.features().shape == (2, 5, model.feature_dim)
    assert ((post.stoch == 0) | (post.stoch == 1)).all()  # one-hot forward values
    images = model.decode(post.features())
    assert images.shape == (2, 5, 64, 64, 3) and images.min() >= 0 and images.max() <= 1

    step = model.observe_step(model.initial(2), batch["action"][:, 0], batch["obs"][:, 0],
                              batch["is_first"][:, 0])  # fmt: skip
    assert step.deter.shape == (2, TINY.deter)

    start = post.map(lambda x: x.reshape(-1, *x.shape[2:]))
    imag = model.imagine(lambda f: torch.tanh(f[:, :ACTION_DIM]), start, horizon=4)
    n, h = 10, 4
    assert imag.latents.deter.shape == (h + 1, n, TINY.deter)
    assert imag.features.shape == (h + 1, n, model.feature_dim)
    assert imag.actions.shape == (h, n, ACTION_DIM)
    assert imag.reward.shape == imag.cost.shape == imag.cont.shape == (h + 1, n)
    assert imag.disagreement.shape == (h, n) and (imag.disagreement >= 0).all()
    assert (imag.cost >= 0).all() and ((imag.cont >= 0) & (imag.cont <= 1)).all()
    torch.testing.assert_close(imag.features[0], start.features())
    one = model.imagine(lambda f: torch.zeros(len(f), ACTION_DIM), start, horizon=2, member=1)
    assert one.features.shape == (3, n, model.feature_dim)


def test_latent_stack_and_map() -> None:
    model = make_model()
    items = [model.initial(3).map(lambda x, i=i: x + i) for i in range(4)]
    stacked = Latent.stack(items, 1)
    assert stacked.deter.shape == (3, 4, TINY.deter)
    assert stacked.logits.shape == (3, 4, TINY.stoch, TINY.classes)
    assert (stacked.stoch[:, 2] == 2).all()
    flat = stacked.map(lambda x: x.reshape(12, *x.shape[2:]))
    assert flat.features().shape == (12, model.feature_dim)
    assert not Latent.stack(items, 0).map(lambda x: x.requires_grad_()).detach().deter.requires_grad


def test_imagination_is_differentiable_wrt_policy() -> None:
    model = make_model()
    policy = nn.Linear(model.feature_dim, ACTION_DIM)
    start = model.initial(5).map(lambda x: x + torch.rand_like(x))
    imag = model.imagine(lambda f: torch.tanh(policy(f)), start, horizon=3)
    (imag.features[1:].sum() + imag.cont.sum()).backward()
    assert policy.weight.grad is not None and policy.weight.grad.abs().sum() > 0


def test_train_step_metrics_and_detached_posterior() -> None:
    model = make_model()
    metrics, post = model.train_step(random_batch())
    names = {"loss", "recon", "kl", "reward_loss", "cost_loss", "cont_loss", "reward_mae",
             "cost_mae", "disagreement", "grad_norm"}  # fmt: skip
    assert set(metrics) == {f"wm/{name}" for name in names}
    assert all(isinstance(v, float) and v == v for v in metrics.values())
    assert post.deter.shape == (2, 5, TINY.deter) and not post.deter.requires_grad


# ----- learning -------------------------------------------------------------------------------

SQUARE = 16
HAZARD_X = 40  # cost 1 when the square's left edge is at x >= HAZARD_X


def moving_square_batch(batch: int, length: int) -> dict[str, Tensor]:
    """A bright square on a dark image, moved by the action (its velocity), bouncing off walls.

    reward = x position / 64; cost = 1 while the square is in the hazard strip on the right.
    """
    action = torch.rand(batch, length, 2) * 2 - 1
    action[:, 0] = 0
    position = torch.rand(batch, 2) * (64 - SQUARE)
    positions = []
    for t in range(length):
        position = (position + 6 * action[:, t]).clamp(0, 64 - SQUARE)
        positions.append(position)
    pos = torch.stack(positions, 1)  # [B, T, 2] (x, y)
    grid = torch.arange(64.0)
    inside_x = (grid >= pos[..., :1].round()) & (grid < pos[..., :1].round() + SQUARE)  # [B,T,64]
    inside_y = (grid >= pos[..., 1:].round()) & (grid < pos[..., 1:].round() + SQUARE)
    mask = inside_y[..., :, None] & inside_x[..., None, :]  # [B, T, y, x]
    obs = torch.full((batch, length, 64, 64, 3), 20, dtype=torch.uint8)
    obs[mask] = torch.tensor([250, 220, 60], dtype=torch.uint8)
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "obs": obs,
        "action": action,
        "reward": pos[..., 0] / 64,
        "cost": (pos[..., 0] >= HAZARD_X).float(),
        "is_first": is_first,
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Two intra-op threads on a shared 2-core machine can be several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_learns_moving_square_images_and_hazard_cost(one_thread: None) -> None:
    model = make_model(lr=3e-3, stoch=8, classes=8)  # a little more latent room, learns faster
    first = None
    for _ in range(150):
        metrics, _ = model.train_step(moving_square_batch(8, 12))
        first = first if first is not None else metrics["wm/recon"]
    assert metrics["wm/recon"] < 0.7 * first, (first, metrics["wm/recon"])

    test = moving_square_batch(16, 12)
    with torch.no_grad():
        post, _ = model.observe(test["obs"], test["action"], test["is_first"])
        predicted = model.cost(post.features())
    auroc = roc_auc_score(test["cost"].flatten().numpy(), predicted.flatten().numpy())
    assert auroc > 0.8, auroc


def test_cost_head_learns_unsafe_steps_weighted_and_predicts_calibrated_costs() -> None:
    """Trained on 10% unsafe steps (cost 2) weighted 10x, the head's own distribution puts about
    half its mass on the unsafe cost; `cost` undoes the weight and predicts what an unweighted
    head would: symexp(0.1 symlog 2) = 0.116 (`TwoHot.mean` is symexp of the expected bin)."""
    model = make_model(unsafe_cost_weight=10.0)
    features = torch.randn(1, model.feature_dim).expand(512, -1)  # one ambiguous state
    optimizer = torch.optim.Adam(model.cost_head.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        cost = 2.0 * (torch.rand(512, generator=generator) < 0.1).float()
        optimizer.zero_grad()
        model.cost_loss(features, cost).mean().backward()
        optimizer.step()
    with torch.no_grad():
        weighted = TwoHot(model.cost_head(features[:1])).mean().item()
        calibrated = model.cost(features[:1]).item()
    assert weighted > 0.8, "the weighting makes the head take unsafe steps seriously"
    unweighted = symexp(0.1 * symlog(torch.tensor(2.0))).item()
    assert calibrated == pytest.approx(unweighted, abs=0.02)


def test_subpixel_output_layer_equals_the_transposed_conv() -> None:
    from workbench.nets import subpixel_conv_transpose

    layer = nn.ConvTranspose2d(8, 3, 4, 2, 1).double()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    assert torch.allclose(subpixel_conv_transpose(x, layer), layer(x), atol=1e-12)
