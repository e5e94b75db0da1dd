"""The latent barrier function agent and CERL: their math on toys, and both end to end."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils._python_dispatch import TorchDispatchMode

from workbench.agents.barrier import BarrierAgent, BarrierNet, barrier_loss
from workbench.agents.cerl import CERL, feasible_step, log_barrier_objective
from workbench.config import BarrierConfig, CERLConfig, resolve
from workbench.engine import Engine
from workbench.runs import Run
from workbench.world_model import Imagination, Latent


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values)


# --- a toy world, and the devices to run updates on -------------------------------------------


class ToyWorld(nn.Module):
    """A world model stand-in: a point on a line, x' = x + 0.25 a[0] (member k adds a small
    drift of its own). The hazard is |x| < radius, cost 1 per step inside it (smoothed at the
    edge); the reward is x. Features: (x, 1)."""

    feature_dim = 2

    def __init__(self, radius: float = 0.5, members: int = 3, device: str = "cpu"):
        super().__init__()
        self.config = SimpleNamespace(ensemble=members)
        self.radius = radius
        self.register_buffer("drift", torch.linspace(-0.02, 0.02, members, device=device))

    def latent(self, x: Tensor) -> Latent:
        """The state at positions x [...]."""
        return Latent(
            x[..., None], torch.ones_like(x)[..., None], torch.zeros_like(x)[..., None, None]
        )

    def cost_at(self, x: Tensor) -> Tensor:
        return torch.sigmoid((self.radius - x.abs()) / 0.05)

    def imagine(self, policy, start: Latent, horizon: int, member: int | None = None):
        x, xs, actions = start.deter[..., 0], [start.deter[..., 0]], []
        for _ in range(horizon):
            action = policy(self.latent(x).features().detach())
            if member is None:
                drift = self.drift[torch.randint(len(self.drift), x.shape, device=x.device)]
            else:
                drift = self.drift[member]
            x = x + 0.25 * action[..., 0] + drift
            xs.append(x)
            actions.append(action)
        x = torch.stack(xs)
        latents = self.latent(x)
        return Imagination(
            latents=latents,
            features=latents.features(),
            actions=torch.stack(actions),
            reward=x,
            cost=self.cost_at(x),
            cont=torch.ones_like(x),
            disagreement=torch.zeros_like(x[1:]),
        )


def toy_agent(cls, device: str = "cpu", radius: float = 0.5, **overrides):
    """An agent of `cls` on the toy world, with learning rates that suit a toy."""
    torch.manual_seed(0)
    settings = {
        "algo": {CERL: "cerl", BarrierAgent: "barrier"}[cls],
        "train.device": "cpu",
        "agent.horizon": 10,
        "agent.actor_lr": 1e-3,
        "agent.critic_lr": 1e-3,
        "barrier.lr": 1e-3,
        **overrides,
    }
    world = ToyWorld(radius, device=device)
    return cls(resolve("tiny", settings), world, action_dim=2).to(device), world


def positions(low: float, high: float, device: str = "cpu") -> Tensor:
    """A batch [8, 8] of positions uniform in [low, high]."""
    return low + (high - low) * torch.rand(8, 8, device=device)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]  # fmt: skip


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


class DeviceCheck(TorchDispatchMode):
    """Records every operation, forward or backward, that puts a tensor anywhere but on
    `device`. Adam's step counters, which PyTorch keeps on the CPU, are let through."""

    def __init__(self, device: str):
        super().__init__()
        self.device = torch.device(device).type
        self.strays: list[str] = []
        self.in_optimizer = False

    def __enter__(self):
        def enter(*_):
            self.in_optimizer = True

        def leave(*_):
            self.in_optimizer = False

        self.hooks = [
            register_optimizer_step_pre_hook(enter),
            register_optimizer_step_post_hook(leave),
        ]
        return super().__enter__()

    def __exit__(self, *args):
        for hook in self.hooks:
            hook.remove()
        return super().__exit__(*args)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in pytree.tree_leaves(out):
            if isinstance(value, Tensor) and value.device.type != self.device:
                if not (self.in_optimizer and value.dim() == 0):
                    self.strays.append(f"{func} -> {value.device}")
        return out


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


def test_cerl_leaves_recovery_once_the_constraint_is_satisfiable():
    """Every start lies in a hazard it takes up to four steps to leave, so the cost return of
    the starts alone (the constraint before it was averaged over the imagined steps) stays above
    the budget whatever the policy does. The constraint averaged over the imagined steps is
    within reach: recovery must bring the actor inside, and then it must stay there."""
    agent, world = toy_agent(CERL, radius=1.0, **{"agent.cost_limit": 2.0})
    records = [agent.update(world.latent(positions(-0.8, 0.8)), {}).metrics for _ in range(400)]
    assert records[0]["cerl/feasible"] == 0, "the toy should start infeasible"
    for r in records:
        assert r["cerl/feasible"] == (r["cerl/jc_worst"] < r["cerl/budget"])
    assert any(r["cerl/feasible"] for r in records), "CERL never left recovery"
    assert sum(r["cerl/feasible"] for r in records[-50:]) >= 40
    assert min(r["cerl/jc_start"] for r in records) > records[0]["cerl/budget"], (
        "the toy should put the start states' cost return out of reach"
    )


def test_cerl_starts_inside_the_feasible_set(fake_envs, tiny_config, tmp_path):
    """LBSGD's premise: the first policy is feasible. Nothing predicts cost yet: the world
    model's cost head and CERL's cost critic both start at 0."""
    tiny_config.algo, tiny_config.train.log_every = "cerl", 1
    assert Engine(tiny_config, tmp_path / "run", progress=False).train() == "finished"
    first = Run(tmp_path / "run").metrics("train")[0]
    assert first["cerl/feasible"] == 1 and first["cerl/jc_worst"] < 0.1 * first["cerl/budget"]


def test_cerl_rejected_step_leaves_adam_as_it_was():
    """A step the line search refuses moves neither the actor nor Adam's moments and step count."""
    agent, world = toy_agent(CERL)
    safe_starts = world.latent(positions(1.5, 2.0))  # far from the hazard: feasible
    first = agent.update(safe_starts, {}).metrics
    assert first["cerl/feasible"] == 1 and first["cerl/step_scale"] > 0
    adam = copy.deepcopy(agent.actor_optimizer.state_dict())
    actor = copy.deepcopy(agent.actor.state_dict())
    assert adam["state"], "Adam should hold moments after the first step"
    agent.worst_cost_return = lambda start: math.inf  # every scale of the step is infeasible
    metrics = agent.update(safe_starts, {}).metrics
    after = agent.actor_optimizer.state_dict()
    assert after["state"].keys() == adam["state"].keys()
    for key, state in adam["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(after["state"][key][name], value, rtol=0, atol=0)
    for name, value in actor.items():
        torch.testing.assert_close(agent.actor.state_dict()[name], value, rtol=0, atol=0)
    assert metrics["cerl/feasible"] == 1 and metrics["cerl/step_scale"] == 0


def test_cerl_eta_decays_inside_the_feasible_set_only():
    """eta <- eta / (1 + eta_rate) after each feasible update (actsafe's LBSGD), not in recovery."""
    agent, world = toy_agent(CERL, **{"cerl.eta_rate": 0.5, "agent.cost_limit": 0.0})
    assert agent.update(world.latent(positions(1.5, 2.0)), {}).metrics["cerl/feasible"] == 0
    assert agent.eta.item() == pytest.approx(agent.config.cerl.eta)
    agent.config.agent.cost_limit = 2.0
    metrics = agent.update(world.latent(positions(1.5, 2.0)), {}).metrics
    assert metrics["cerl/feasible"] == 1 and metrics["cerl/eta"] == pytest.approx(0.1)
    assert agent.eta.item() == pytest.approx(0.1 / 1.5)


# --- the barrier agent on the toy world ------------------------------------------------------


def test_barrier_learns_the_hazard_from_predicted_costs_alone():
    """No posterior state is ever unsafe, but imagined states inside the hazard are predicted
    costly: the barrier must learn to be negative there."""
    agent, world = toy_agent(BarrierAgent, **{"agent.horizon": 5, "agent.actor_lr": 0.0})
    for _ in range(150):
        x = positions(0.7, 1.0)  # every start is safe, and a step can reach the hazard
        metrics = agent.update(world.latent(x), {"cost": torch.zeros_like(x)}).metrics
    with torch.no_grad():
        inside = agent.barrier(world.latent(torch.linspace(0.0, 0.3, 7)).features())
        outside = agent.barrier(world.latent(torch.linspace(0.8, 1.0, 5)).features())
    assert (inside < 0).all() and (outside > 0).all()
    assert metrics["barrier/imagined_unsafe_fraction"] > 0.05


def actor_gradient(agent: BarrierAgent, start: Latent, cost: Tensor, weight: float) -> Tensor:
    """The actor's gradient in one update of a copy of `agent` with barrier.actor_weight=weight."""
    agent = copy.deepcopy(agent)
    agent.config.barrier.actor_weight = weight
    torch.manual_seed(1)
    agent.update(start, {"cost": cost})
    return torch.cat([p.grad.flatten() for p in agent.actor.parameters()])


def test_the_barrier_term_outweighs_the_reward_term_in_a_hazard():
    """After barrier and actor trained together, from starts inside a hazard, the barrier term's
    gradient on the actor is at least the reward term's (before: about 1/100 of it on this toy,
    1/30 on the shipped SafetyPointGoal1 checkpoint)."""
    overrides = {"agent.horizon": 5, "agent.entropy": 0.0}
    agent, world = toy_agent(BarrierAgent, **overrides)
    for _ in range(200):
        x = positions(-2.0, 2.0)
        agent.update(world.latent(x), {"cost": (x.abs() < world.radius).float()})
    start = world.latent(positions(-0.4, 0.4))
    inside = torch.ones(8, 8)
    reward_only = actor_gradient(agent, start, inside, weight=0.0)
    both = actor_gradient(agent, start, inside, weight=1.0)
    assert (both - reward_only).norm() >= reward_only.norm() > 0


# --- every update stays on its device --------------------------------------------------------


@pytest.mark.parametrize("cls", [BarrierAgent, CERL])
def test_updates_create_every_tensor_on_their_device(device, cls):
    agent, world = toy_agent(cls, device, **{"agent.horizon": 3})
    x = positions(-1.0, 1.0, device)
    with DeviceCheck(device) as check:
        for _ in range(2):  # the second step finds Adam's state in place
            agent.update(world.latent(x), {"cost": (x.abs() < 0.5).float()})
    assert not check.strays, check.strays[:5]


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
