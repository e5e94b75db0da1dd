"""SafeDreamer's agents: the PID and augmented Lagrangians, the constrained cross-entropy
planner, the agents' multipliers and plans on toy latent worlds, and BSRP-Lag, OSRP, OSRP-Lag
trained end to end on the real task."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import workbench
from workbench import checkpoint
from workbench.agents import make_agent
from workbench.agents.bsrp_lag import BSRPLag
from workbench.agents.lagrange import (
    AugmentedLagrangian,
    EpisodeCost,
    PIDLagrangian,
    augmented_lagrangian,
)
from workbench.agents.osrp import PLAN_STATISTICS, cross_entropy_plan, select_elites
from workbench.config import LagrangeConfig, PlannerConfig, resolve
from workbench.engine import Engine
from workbench.runs import Run
from workbench.world_model import Imagination, Latent, WorldModel


def pid(budget: float = 1.0, **gains) -> PIDLagrangian:
    config = {"kp": 0.0, "ki": 0.0, "kd": 0.0, "max": 100.0, **gains}
    return PIDLagrangian(LagrangeConfig(**config), budget)


# --- the PID Lagrangian -------------------------------------------------------------------------


def test_multiplier_rises_above_the_budget_and_falls_to_zero_below():
    lagrangian = pid(ki=0.5)
    assert [lagrangian.update(3.0) for _ in range(3)] == [1.0, 2.0, 3.0]  # violation +2
    assert [lagrangian.update(0.0) for _ in range(8)] == [2.5, 2, 1.5, 1, 0.5, 0, 0, 0]
    assert lagrangian.update(2.0) == 0.5, "the integral was clipped at 0, not wound below it"


def test_proportional_and_derivative_terms_react_at_once():
    lagrangian = pid(kp=1.0, kd=2.0)
    assert lagrangian.update(2.0) == 1 + 2 * 2  # violation 1, rise from 0 to 2
    assert lagrangian.update(2.0) == 1  # same cost: no derivative term
    assert lagrangian.update(1.5) == 0.5  # a fall is ignored by the derivative term
    assert lagrangian.update(3.0) == 2 + 2 * 1.5
    assert lagrangian.update(0.0) == 0  # clipped at 0


def test_multiplier_and_integral_are_clipped_at_max():
    lagrangian = pid(ki=1.0, max=4.0)
    lagrangian.update(101.0)  # the integral would be 100 without the clip
    assert lagrangian.update(0.0) == 3.0, "one step below the budget brings it down at once"


def test_state_round_trips_through_state_dict():
    trained = pid(kp=0.5, ki=0.3, kd=0.2)
    for cost in (2.0, 3.0, 0.5):
        trained.update(cost)
    restored = pid(kp=0.5, ki=0.3, kd=0.2)
    restored.load_state_dict(trained.state_dict())
    assert restored.multiplier == trained.multiplier > 0
    assert restored.update(4.0) == trained.update(4.0)  # integral and previous cost came too


def test_augmented_lagrangian_pushes_the_cost_down_only_while_needed():
    violation = torch.tensor([2.0, -1.0, -20.0], requires_grad=True)
    penalty = augmented_lagrangian(violation, multiplier=1.0, penalty=0.1)
    penalty.sum().backward()
    assert penalty.tolist() == pytest.approx([2.0 + 0.05 * 4, -1.0 + 0.05, -1 / 0.2])
    # Gradient max(0, l + c g): none once the budget is met with room to spare.
    assert violation.grad.tolist() == pytest.approx([1.2, 0.9, 0.0])


def test_augmented_lagrangian_moves_its_multiplier_and_grows_its_penalty_to_the_cap():
    config = LagrangeConfig(multiplier_init=1.0, penalty=0.25, penalty_growth=1.0, penalty_max=1.0)
    lagrangian = AugmentedLagrangian(config, budget=2.0)
    estimate = torch.tensor(6.0, requires_grad=True)  # violation 4
    psi = lagrangian.update(estimate)
    assert psi.item() == pytest.approx(1.0 * 4 + 0.25 / 2 * 16)  # with the old l and c
    psi.backward()
    assert estimate.grad.item() == pytest.approx(1.0 + 0.25 * 4)
    assert (lagrangian.multiplier, lagrangian.penalty_weight) == (2.0, 0.5)  # l + c g, 2c
    lagrangian.update(torch.tensor(4.0))
    assert (lagrangian.multiplier, lagrangian.penalty_weight) == (3.0, 1.0)
    lagrangian.update(torch.tensor(2.0))  # on the budget: l stays, c stays at its cap
    assert (lagrangian.multiplier, lagrangian.penalty_weight) == (3.0, 1.0)
    lagrangian.update(torch.tensor(-8.0))  # far below: l falls to 0, never below
    assert lagrangian.multiplier == 0.0


def test_episode_cost_is_an_ema_from_zero():
    costs = EpisodeCost(rate=0.01)
    assert costs.add(10.0) == pytest.approx(0.1)
    assert costs.add(10.0) == pytest.approx(0.1 * 0.99 + 0.1)
    assert costs.episodes.item() == 2


# --- the constrained cross-entropy planner ------------------------------------------------------


def test_elites_are_the_best_within_budget_when_enough_are():
    returns = torch.tensor([10.0, 9.0, 8.0, 3.0, 2.0, 1.0])
    costs = torch.tensor([5.0, 5.0, 0.0, 1.0, 0.5, 0.0])
    chosen = select_elites(returns, costs, budget=1.0, elites=3)
    assert sorted(chosen.tolist()) == [2, 3, 4]  # never the high-return, over-budget 0 and 1


def test_elites_are_the_least_costly_when_too_few_are_within_budget():
    returns = torch.tensor([10.0, 9.0, 8.0, 3.0, 2.0, 1.0])
    costs = torch.tensor([5.0, 4.0, 0.0, 3.0, 6.0, 7.0])
    chosen = select_elites(returns, costs, budget=1.0, elites=3)
    assert sorted(chosen.tolist()) == [1, 2, 3]


def test_with_too_few_safe_plans_the_lagrangian_planner_also_takes_the_least_costly():
    returns = torch.tensor([10.0, 9.0, 8.0, 3.0, 2.0, 1.0])
    costs = torch.tensor([5.0, 4.0, 2.0, 3.0, 6.0, 7.0])  # none within budget
    least_cost = [1, 2, 3]
    assert sorted(select_elites(returns, costs, 1.0, 3).tolist()) == least_cost  # OSRP
    for multiplier in (0.0, 0.1, 100.0):  # OSRP-Lag, as SafeDreamer's PIDPlanner
        chosen = select_elites(returns, costs, 1.0, 3, multiplier, cost_return=-returns)
        assert sorted(chosen.tolist()) == least_cost


def test_among_safe_plans_the_multiplier_weighs_the_cost_return():
    returns = torch.tensor([10.0, 9.0, 8.0, 3.0, 2.0, 1.0])
    costs = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 5.0])  # all but the last within budget
    cost_returns = torch.tensor([9.0, 9.0, 0.0, 0.0, 1.0, 0.0])  # the critic's, beyond the horizon
    assert sorted(select_elites(returns, costs, 1.0, 2, 0.1, cost_returns).tolist()) == [0, 1]
    assert sorted(select_elites(returns, costs, 1.0, 2, 10.0, cost_returns).tolist()) == [2, 3]


def test_elites_are_chosen_per_start_state():
    returns = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    costs = torch.tensor([[0.0, 0.0, 9.0], [0.0, 5.0, 9.0]])
    chosen = select_elites(returns, costs, budget=1.0, elites=2)
    assert sorted(chosen[0].tolist()) == [0, 1] and sorted(chosen[1].tolist()) == [0, 1]


def toy_world(actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward: the sum of the actions. Cost: one for every action above 0.5."""
    return actions.sum((0, -1)), (actions > 0.5).float().sum((0, -1))


# No momentum: each refit goes all the way to the elites (momentum: see the warm-start test).
TOY = PlannerConfig(
    horizon=3, samples=200, actor_samples=4, elites=20, iterations=6, min_std=0.01, momentum=0.0
)


def test_planner_maximises_reward_within_budget():
    torch.manual_seed(0)
    proposals = torch.ones(3, 2, 4, 1)  # a reckless actor: always 1, over budget
    plan = cross_entropy_plan(toy_world, proposals, TOY, budget=0.0)
    assert plan.mean.shape == (3, 2, 1)
    assert (plan.mean <= 0.5).all() and (plan.mean > 0.4).all(), plan.mean.flatten()
    statistics = dict(zip(PLAN_STATISTICS, plan.statistics.tolist(), strict=True))
    assert statistics["planner/planned_cost"] == 0
    assert statistics["planner/planned_return"] > 3 * 0.4
    assert 0 < statistics["planner/feasible_fraction"] < 1
    assert statistics["planner/enough_feasible"] == 1  # both start states found enough


def test_planner_without_budget_trades_reward_for_cost_by_the_multiplier():
    torch.manual_seed(0)
    proposals = torch.empty(3, 1, 0, 1)
    greedy = cross_entropy_plan(toy_world, proposals, TOY, budget=float("inf"))
    assert (greedy.mean > 0.9).all()
    careful = cross_entropy_plan(toy_world, proposals, TOY, budget=float("inf"), multiplier=10.0)
    assert (careful.mean <= 0.5).all() and (careful.mean > 0.4).all()


def test_planner_starts_from_the_given_mean_and_refits_it_with_momentum():
    torch.manual_seed(0)
    start = torch.full((3, 1, 1), -0.75)
    frozen = PlannerConfig(horizon=3, samples=50, actor_samples=0, elites=5, momentum=1.0)
    plan = cross_entropy_plan(toy_world, torch.empty(3, 1, 0, 1), frozen, 9.0, mean=start)
    assert torch.equal(plan.mean, start)  # momentum 1: the mean never leaves its start
    config = PlannerConfig(horizon=3, samples=2, actor_samples=2, elites=1, iterations=1)
    proposals = torch.tensor([0.2, 0.4]).expand(3, 1, 2).unsqueeze(-1)  # 0.4: the elite
    plan = cross_entropy_plan(toy_world, proposals, config, 9.0, mean=start)
    assert plan.mean.flatten().tolist() == pytest.approx([0.1 * -0.75 + 0.9 * 0.4] * 3)


# --- the agents' plans and multipliers on toy latent worlds -------------------------------------


class ToyWorld(torch.nn.Module):
    """A latent world with a known answer. The state is a position (its `deter`); an action
    [a0, a1] in [-1, 1]^2 moves it by 0.1 x action, with predicted reward a0 + a1. Predicted cost:
    1 at each step with a1 > 0 (`cost_everywhere`: at every step): the safe, rewarding plan is
    a0 = 1, a1 <= 0 (just below 0). Continuation 1."""

    feature_dim = 3

    def __init__(self, cost_everywhere: bool = False):
        super().__init__()
        self.cost_everywhere = cost_everywhere
        self.unused = torch.nn.Linear(1, 1)  # a parameter, as a world model has

    def initial(self, batch_size: int) -> Latent:
        return Latent(
            torch.zeros(batch_size, 2), torch.zeros(batch_size, 1), torch.zeros(batch_size, 1, 1)
        )

    def imagine_step(self, prev: Latent, action: torch.Tensor, member: int | None = None) -> Latent:
        return Latent(prev.deter + 0.1 * action, prev.stoch, prev.logits)

    def imagine(
        self, policy, start: Latent, horizon: int, member: int | None = None
    ) -> Imagination:
        latents, actions, rewards, costs = [start], [], [], []
        for _ in range(horizon):
            action = policy(latents[-1].features().detach())
            latents.append(self.imagine_step(latents[-1], action))
            actions.append(action)
            rewards.append(action.sum(-1))
            costly = torch.ones_like(action[:, 1]) if self.cost_everywhere else action[:, 1] > 0
            costs.append(costly.float())
        zeros = torch.zeros_like(rewards[0])
        stacked = Latent.stack(latents, 0)
        return Imagination(
            latents=stacked,
            features=stacked.features(),
            actions=torch.stack(actions),
            reward=torch.stack([zeros, *rewards]),
            cost=torch.stack([zeros, *costs]),
            cont=torch.ones(horizon + 1, len(zeros)),
            disagreement=torch.zeros(horizon, len(zeros)),
        )


def toy_config(algo: str, **overrides):
    """tiny: 50 steps an episode, cost limit 2; plans of 5 steps, so one costly step in a plan
    predicts 10 an episode: infeasible."""
    planner = {"planner.samples": 200, "planner.elites": 20, "planner.iterations": 6}
    return resolve("tiny", {"algo": algo, "train.device": "cpu", **planner, **overrides})


def toy_agent(algo: str, world: ToyWorld | None = None, **overrides):
    """An agent on the toy world whose cost critic, like that of a cost-blind actor, values
    every state at 5 (above what the whole episode may cost in the critic's units, 0.40)."""
    agent = make_agent(toy_config(algo, **overrides), world or ToyWorld(), action_dim=2)
    agent.critic.target_value = lambda features: torch.zeros(features.shape[:-1])
    agent.cost_critic.target_value = lambda features: torch.full(features.shape[:-1], 5.0)
    assert agent.cost_budget < 5.0 * agent.config.agent.gamma**agent.config.planner.horizon
    return agent


def toy_posterior(batch: int = 2, length: int = 3) -> Latent:
    return Latent(
        torch.rand(batch, length, 2) + 1,
        torch.zeros(batch, length, 1),
        torch.zeros(batch, length, 1, 1),
    )


@pytest.mark.parametrize("algo", ["osrp", "osrp-lag"])
def test_planner_finds_the_safe_rewarding_plan_whatever_the_cost_critic_says(algo):
    torch.manual_seed(0)
    agent = toy_agent(algo)
    for _ in range(500):  # OSRP-Lag: the real cost far above the limit, the multiplier capped
        agent.episode_end(100.0)
    start = Latent(torch.full((3, 2), 0.5), torch.zeros(3, 1), torch.zeros(3, 1, 1))
    for _ in range(3):  # warm-started after the first
        action = agent.act(start, explore=True)
    assert (action[:, 0] > 0.8).all(), action  # the reward it may take
    assert (action[:, 1] <= 0).all() and (action[:, 1] > -0.3).all(), action  # and no cost
    metrics = agent.update(toy_posterior(), {}).metrics
    assert metrics["planner/enough_feasible"] == 1.0
    assert 0 < metrics["planner/feasible_fraction"] < 1
    assert metrics["planner/planned_cost"] == 0.0 and metrics["planner/planned_return"] > 2.5


def test_osrp_lag_multiplier_follows_the_episode_costs_not_imagined_ones():
    torch.manual_seed(0)
    agent = toy_agent("osrp-lag", ToyWorld(cost_everywhere=True))
    for _ in range(500):  # imagined costs far above the limit at every update
        metrics = agent.update(toy_posterior(), {}).metrics
        assert metrics["lagrange/multiplier"] == 0.0
    for _ in range(50):  # real episodes within the limit (2)
        agent.episode_end(1.5)
    assert agent.lagrangian.multiplier == 0.0
    emas, multipliers = [], []
    for _ in range(500):  # then far above it, for good
        agent.episode_end(30.0)
        emas.append(agent.episode_cost.ema.item())
        multipliers.append(agent.lagrangian.multiplier)
    crossed = next(i for i, ema in enumerate(emas) if ema > 2.0)  # the EMA passes the limit
    assert crossed > 0 and all(m == 0 for m, e in zip(multipliers, emas, strict=True) if e < 1.5)
    assert (
        all(m > 0 for m in multipliers[crossed:])
        and multipliers[crossed + 20] > multipliers[crossed]
    )
    assert max(multipliers) == pytest.approx(0.1)  # bounded: SafeDreamer's cap, reached
    metrics = agent.update(toy_posterior(), {}).metrics
    assert metrics["lagrange/multiplier"] == multipliers[-1] == pytest.approx(0.1)
    assert metrics["lagrange/cost_ema"] == emas[-1] > 2.0
    assert metrics["lagrange/budget"] == 2.0


def test_bsrp_lag_multiplier_rises_slowly_under_sustained_violation():
    torch.manual_seed(0)
    agent = toy_agent("bsrp-lag", ToyWorld(cost_everywhere=True))
    assert isinstance(agent, BSRPLag)
    start = agent.lagrangian.multiplier
    records = [agent.update(toy_posterior(), {}).metrics for _ in range(500)]
    estimates = [r["lagrange/cost_estimate"] for r in records]
    assert min(estimates) > 2.0, "the imagined cost stayed above the limit"
    multipliers = [r["lagrange/multiplier"] for r in records]
    assert multipliers[0] == pytest.approx(1e-6)
    assert all(b > a for a, b in zip(multipliers, multipliers[1:], strict=False))  # it rises
    # ... and stays far below the reward's weight in the actor's loss (1, on normalised returns).
    assert agent.lagrangian.multiplier < 1e-3
    assert max(r["lagrange/cost_weight"] for r in records) < 1e-3
    assert agent.lagrangian.penalty_weight == pytest.approx(5e-9 * (1 + 1e-5) ** 500)
    assert multipliers[-1] > start


def test_bsrp_lag_multiplier_falls_once_the_imagined_cost_is_within_the_limit():
    torch.manual_seed(0)
    overrides = {"lagrange.multiplier_init": 1e-3, "lagrange.penalty": 1e-4}
    agent = toy_agent("bsrp-lag", ToyWorld(), **overrides)
    agent.cost_critic.target_value = lambda features: torch.zeros(features.shape[:-1])
    agent.actor.net[-1].bias.data[1] = -5.0  # the mean of a1: a1 < 0, no cost anywhere
    multipliers = [
        agent.update(toy_posterior(), {}).metrics["lagrange/multiplier"] for _ in range(20)
    ]
    assert all(b <= a for a, b in zip(multipliers, multipliers[1:], strict=False))
    assert multipliers[1] < multipliers[0] and multipliers[-1] == 0.0  # by c g a step, to 0


# --- the planner's warm start, on the real world model ------------------------------------------


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_plans_are_warm_started_per_environment_and_reset_where_an_episode_starts(precision):
    torch.manual_seed(0)
    # The engine filters in fp32 and plans under autocast (bf16 on CUDA by default).
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == torch.bfloat16)
    config = resolve("tiny", {"algo": "osrp", "train.device": "cpu"})
    world_model = WorldModel(config.model, 2)
    agent = make_agent(config, world_model, 2)
    frames = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        first = world_model.observe_step(
            world_model.initial(2), torch.zeros(2, 2), frames, torch.ones(2, dtype=torch.bool)
        )
        with autocast:
            assert agent.episode_starts(first).tolist() == [True, True]
            action = agent.act(first, explore=True)
        plan = agent.plan_mean.clone()
        assert torch.equal(action, plan[0].clamp(-1, 1))  # it acts with the mean
        later = world_model.observe_step(first, action, frames, torch.tensor([False, True]))
    with autocast:
        assert agent.episode_starts(later).tolist() == [False, True]
        warm = agent.warm_start(later)
    assert torch.equal(warm[:, 0], torch.cat([plan[1:, 0], plan[-1:, 0]]))  # shifted by one
    assert (warm[:, 1] == 0).all()  # env 1 started a new episode
    assert (agent.warm_start(later.map(lambda x: x[:1])) == 0).all()  # other environments
    agent.reset_plans()
    assert (agent.warm_start(later) == 0).all()


# --- devices ------------------------------------------------------------------------------------

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
FACTORIES = {
    torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.empty, torch.full, torch.rand,
    torch.randn, torch.randint, torch.randperm, torch.arange, torch.linspace, torch.eye,
}  # fmt: skip
PACKAGE = str(Path(workbench.__file__).parent)


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


class DeviceAudit(TorchFunctionMode):
    """Records every tensor the workbench's own code builds off `device`, and every factory it
    calls without saying where (a CPU tensor on CPU, but not on CUDA)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device, self.misplaced = device, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        caller = sys._getframe(1)
        if caller.f_code.co_filename.startswith(PACKAGE) and func in FACTORIES:
            if "device" not in kwargs and not (
                func is torch.as_tensor and torch.is_tensor(args[0])
            ):
                self.misplaced.append(f"{func.__name__} without a device at {_where(caller)}")
        frame = caller
        while frame and "/torch/" in frame.f_code.co_filename:
            if "/torch/optim/" in frame.f_code.co_filename:
                return result  # the optimiser keeps its step counts on the CPU on purpose
            frame = frame.f_back
        if frame and frame.f_code.co_filename.startswith(PACKAGE):
            outputs = result if isinstance(result, tuple | list) else [result]
            for output in outputs:
                if torch.is_tensor(output) and output.device.type != self.device.type:
                    self.misplaced.append(f"{func.__name__} on {output.device} at {_where(frame)}")
        return result


def _where(frame) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


@pytest.mark.parametrize("algo", ["osrp", "osrp-lag", "bsrp-lag"])
def test_every_tensor_an_agent_builds_is_on_its_device(algo, device):
    torch.manual_seed(0)
    config = resolve("tiny", {"algo": algo, "train.device": device.type})
    world_model = WorldModel(config.model, 2).to(device)
    agent = make_agent(config, world_model, 2).to(device)
    obs = torch.randint(0, 255, (2, 3, 64, 64, 3), dtype=torch.uint8, device=device)
    is_first = torch.zeros(2, 3, dtype=torch.bool, device=device)
    is_first[:, 0] = True
    posterior, _ = world_model.observe(obs, torch.zeros(2, 3, 2, device=device), is_first)
    posterior = posterior.detach()
    latent = posterior.map(lambda x: x[:, -1])
    agent.act(latent, explore=True)
    agent.update(posterior, {})  # the optimisers build their state
    with DeviceAudit(device) as audit:
        agent.act(latent, explore=True)
        agent.episode_end(3.0)
        agent.update(posterior, {})
    assert audit.misplaced == []


# --- the agents, end to end on the real task ----------------------------------------------------

METRICS = {
    "bsrp-lag": ["lagrange/multiplier", "lagrange/penalty_multiplier", "lagrange/cost_estimate",
                 "lagrange/budget", "lagrange/penalty", "lagrange/cost_weight",
                 "agent/episode_cost_ema"],
    "osrp": [*PLAN_STATISTICS, "planner/cost_limit", "agent/episode_cost_ema"],
    "osrp-lag": [*PLAN_STATISTICS, "lagrange/multiplier", "lagrange/cost_ema", "lagrange/budget",
                 "agent/episode_cost_ema"],
}  # fmt: skip


@pytest.mark.real
@pytest.mark.parametrize("algo", list(METRICS))
def test_agent_trains_end_to_end_and_its_multiplier_is_checkpointed(algo, tmp_path):
    # A high initial multiplier, so a restored one cannot pass for a fresh one (and, for the
    # augmented Lagrangian, a penalty weight large enough to move it visibly in a few updates).
    high = {"lagrange.init": 5.0, "lagrange.multiplier_init": 5.0, "lagrange.penalty": 0.1}
    config = resolve("tiny", {"algo": algo, "train.device": "cpu", **high})
    engine = Engine(config, tmp_path / "run", progress=False)
    assert engine.train() == "finished"

    records = Run(tmp_path / "run").metrics("train")
    for key in METRICS[algo] + ["agent/actor_loss", "agent/cost_critic_loss"]:
        assert any(key in record for record in records), key

    if hasattr(engine.agent, "lagrangian"):
        trained = engine.agent.lagrangian
        assert trained.multiplier != 5.0, "the multiplier moved during training"
        state = checkpoint.load_latest(tmp_path / "run")
        fresh_config = resolve("tiny", {"algo": algo, "train.device": "cpu"})
        world_model = WorldModel(fresh_config.model, engine.action_dim)
        restored = make_agent(fresh_config, world_model, engine.action_dim)
        assert restored.lagrangian.multiplier in (0.0, pytest.approx(1e-6))  # PID, augmented
        restored.load_state_dict(state["agent"])
        assert restored.lagrangian.multiplier == trained.multiplier
        buffers = dict(trained.named_buffers())  # the integral, the penalty weight ...
        for name, value in restored.lagrangian.named_buffers():
            assert torch.equal(value, buffers[name]), name
        ema = restored.episode_cost.ema
        assert engine.agent.episode_cost.episodes > 0 and torch.equal(
            ema, engine.agent.episode_cost.ema
        )
