"""The latent barrier function agent and CERL: their math on toys, and both end to end."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.agents.barrier import BarrierNet, barrier_loss
from workbench.agents.cerl import feasible_step, log_barrier_objective
from workbench.config import BarrierConfig, CERLConfig, resolve
from workbench.engine import Engine
from workbench.runs import Run


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values)


# --- the barrier loss ------------------------------------------------------------------------

CFG = BarrierConfig(eps_safe=0.1, eps_unsafe=0.1, alpha=0.5)
SAFE, UNSAFE = t(0.5, 0.2), t(-0.3)
NOW, NEXT = t(1.0, 0.4), t(0.6, 0.3)  # next >= (1 - alpha) now: invariant


def test_barrier_loss_is_zero_when_every_condition_holds():
    loss, parts = barrier_loss(SAFE, UNSAFE, NOW, NEXT, CFG)
    assert loss.item() == 0.0 and all(part.item() == 0.0 for part in parts.values())


@pytest.mark.parametrize(
    "case, part",
    [
        ((t(0.5, 0.05), UNSAFE, NOW, NEXT), "safe"),  # a safe state below eps_safe
        ((SAFE, t(-0.05), NOW, NEXT), "unsafe"),  # an unsafe state above -eps_unsafe
        ((SAFE, UNSAFE, NOW, t(0.4, 0.3)), "invariance"),  # 0.4 < (1 - 0.5) x 1.0
    ],
)
def test_barrier_loss_is_positive_when_one_condition_fails(case, part):
    loss, parts = barrier_loss(*case, CFG)
    assert loss.item() > 0 and parts[part].item() > 0
    assert all(value.item() == 0 for name, value in parts.items() if name != part)


def test_barrier_learns_a_safe_set_in_2d():
    """Unsafe = inside a disc of radius 0.5. Safe states drift outward, so the safe set is
    invariant and all three conditions can hold at once. (Inside the disc, the invariance
    condition would ask B's negativity to shrink by alpha each step, which outward drift this
    slow cannot give.)"""
    torch.manual_seed(0)

    def points(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.rand(count, 2) * 2 - 1
        return z, z.norm(dim=-1) < 0.5

    def features(z: torch.Tensor) -> torch.Tensor:
        # The MLP's first layer (bias-free linear, then LayerNorm) cannot see the scale of its
        # input; a constant feature restores it (latent features carry one in their one-hots).
        return torch.cat([z, torch.ones_like(z[:, :1])], -1)

    barrier = BarrierNet(3, hidden=32, layers=2)
    optimizer = torch.optim.Adam(barrier.parameters(), lr=1e-2)
    z, unsafe = points(512)
    safe = z[~unsafe]
    for _ in range(300):
        b, b_next = barrier(features(z)), barrier(features(1.05 * safe))
        loss, _ = barrier_loss(b[~unsafe], b[unsafe], b[~unsafe], b_next, CFG)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    z, unsafe = points(2000)
    with torch.no_grad():
        accuracy = ((barrier(features(z)) < 0) == unsafe).float().mean().item()
    assert accuracy > 0.9


# --- CERL's log barrier and feasible steps ---------------------------------------------------


def test_log_barrier_objective_falls_to_minus_infinity_at_the_budget():
    d, j = 1.0, t(3.0)
    values = [log_barrier_objective(j, t(d - gap), d, eta=0.1).item() for gap in (0.1, 1e-3, 1e-6)]
    assert values[0] > values[1] > values[2] and values[2] < 3.0 + 0.1 * math.log(1e-5)
    assert log_barrier_objective(j, t(0.0), d, eta=0.1).item() == pytest.approx(3.0)
    for jc in (d, d + 0.5):  # on and beyond the boundary
        assert log_barrier_objective(j, t(jc), d, eta=0.1).item() == -math.inf


def test_feasible_steps_stay_inside_and_approach_the_constrained_optimum():
    """Maximise x1 + x2 subject to x1^2 + x2^2 <= 1 (optimum sqrt 2) from the origin, as the agent
    does: Adam steps on the log barrier, each shrunk until it stays feasible."""
    cfg = CERLConfig(eta=0.01, backtrack=0.5, max_backtracks=10, slack=1e-6)
    x = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=0.05)

    def constraint() -> float:
        return x.detach().square().sum().item()

    backtracks = []
    for _ in range(300):
        start = x.detach().clone()
        objective = log_barrier_objective(x.sum(), x.square().sum(), 1.0, cfg.eta)
        optimizer.zero_grad()
        (-objective).backward()
        optimizer.step()
        step = x.detach() - start

        def move(scale: float, start=start, step=step) -> None:
            with torch.no_grad():
                x.copy_(start + scale * step)

        backtracks.append(feasible_step(move, constraint, 1.0, cfg).backtracks)
        assert constraint() < 1.0, "an iterate left the feasible set"
    assert max(backtracks) > 0, "no raw step ever left the feasible set: not a real test"
    assert x.sum().item() > math.sqrt(2) - 0.02


def test_feasible_step_keeps_the_start_when_no_scale_is_feasible():
    x = torch.tensor([0.5])
    moves = []

    def move(scale: float) -> None:
        moves.append(scale)
        x.fill_(0.5 + scale)

    result = feasible_step(move, lambda: 2.0, 1.0, CERLConfig(backtrack=0.5, max_backtracks=3))
    assert (result.scale, result.backtracks) == (0.0, 3)
    assert moves == [1.0, 0.5, 0.25, 0.125, 0.0] and x.item() == 0.5


def test_cerl_recovers_while_infeasible(fake_envs, tiny_config, tmp_path):
    """With no cost allowed, the log barrier is undefined: CERL takes whole recovery steps."""
    tiny_config.algo, tiny_config.agent.cost_limit, tiny_config.train.log_every = "cerl", 0.0, 1
    assert Engine(tiny_config, tmp_path / "run", progress=False).train() == "finished"
    records = Run(tmp_path / "run").metrics("train")
    assert any(r["cerl/feasible"] == 0 for r in records)
    for r in records:
        assert r["cerl/feasible"] == (r["cerl/jc_worst"] < r["cerl/budget"])
        if not r["cerl/feasible"]:
            assert r["cerl/step_scale"] == 1 and "cerl/barrier_term" not in r


# --- end to end on the real task ------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize(
    "algo, keys",
    [
        ("barrier", ["barrier/loss", "barrier/safe_accuracy", "barrier/actor_violation"]),
        ("cerl", ["cerl/jc_worst", "cerl/budget", "cerl/step_scale", "cerl/feasible"]),
    ],
)
def test_trains_end_to_end(tmp_path, algo, keys):
    config = resolve("tiny", {"algo": algo, "train.device": "cpu"})
    engine = Engine(config, tmp_path / "run", progress=False)
    assert engine.train() == "finished"
    records = Run(tmp_path / "run").metrics("train")
    assert records and all(key in records[-1] for key in keys)
    values = engine.agent.inspect(torch.zeros(3, engine.world_model.feature_dim))
    if algo == "barrier":
        assert values["barrier"].shape == (3,)
