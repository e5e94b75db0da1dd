"""SafeDreamer's agents: the PID Lagrangian, the constrained cross-entropy planner, and
BSRP-Lag, OSRP, OSRP-Lag trained end to end on the real task."""

from __future__ import annotations

import pytest
import torch

from workbench import checkpoint
from workbench.agents import make_agent
from workbench.agents.bsrp_lag import augmented_lagrangian
from workbench.agents.lagrange import PIDLagrangian
from workbench.agents.osrp import cross_entropy_plan, select_elites
from workbench.config import LagrangeConfig, PlannerConfig, resolve
from workbench.engine import Engine
from workbench.runs import Run
from workbench.world_model import WorldModel


def pid(budget: float = 1.0, **gains) -> PIDLagrangian:
    return PIDLagrangian(LagrangeConfig(**{"kp": 0.0, "ki": 0.0, "kd": 0.0, **gains}), budget)


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


def test_with_too_few_safe_plans_the_lagrangian_planner_lets_the_multiplier_decide():
    returns = torch.tensor([10.0, 9.0, 8.0, 3.0, 2.0, 1.0])
    costs = torch.tensor([5.0, 4.0, 2.0, 3.0, 6.0, 7.0])  # none within budget
    least_cost = [1, 2, 3]
    assert sorted(select_elites(returns, costs, 1.0, 3).tolist()) == least_cost  # OSRP
    eager = select_elites(returns, costs, 1.0, 3, multiplier=0.1)  # reward first
    assert sorted(eager.tolist()) == [0, 1, 2]
    strict = select_elites(returns, costs, 1.0, 3, multiplier=100.0)  # cost first
    assert sorted(strict.tolist()) == least_cost


def test_elites_are_chosen_per_start_state():
    returns = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    costs = torch.tensor([[0.0, 0.0, 9.0], [0.0, 5.0, 9.0]])
    chosen = select_elites(returns, costs, budget=1.0, elites=2)
    assert sorted(chosen[0].tolist()) == [0, 1] and sorted(chosen[1].tolist()) == [0, 1]


def toy_world(actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward: the sum of the actions. Cost: one for every action above 0.5."""
    return actions.sum((0, -1)), (actions > 0.5).float().sum((0, -1))


TOY = PlannerConfig(horizon=3, samples=200, actor_samples=4, elites=20, iterations=6, min_std=0.01)


def test_planner_maximises_reward_within_budget():
    torch.manual_seed(0)
    proposals = torch.ones(3, 2, 4, 1)  # a reckless actor: always 1, over budget
    plan = cross_entropy_plan(toy_world, proposals, TOY, budget=0.0)
    assert plan.mean.shape == (3, 2, 1)
    assert (plan.mean <= 0.5).all() and (plan.mean > 0.4).all(), plan.mean.flatten()
    safe_fraction, planned_return, planned_cost = plan.statistics.tolist()
    assert planned_cost == 0 and planned_return > 3 * 0.4 and 0 < safe_fraction < 1


def test_planner_without_budget_trades_reward_for_cost_by_the_multiplier():
    torch.manual_seed(0)
    proposals = torch.empty(3, 1, 0, 1)
    greedy = cross_entropy_plan(toy_world, proposals, TOY, budget=float("inf"))
    assert (greedy.mean > 0.9).all()
    careful = cross_entropy_plan(toy_world, proposals, TOY, budget=float("inf"), multiplier=10.0)
    assert (careful.mean <= 0.5).all() and (careful.mean > 0.4).all()


# --- the agents, end to end on the real task ----------------------------------------------------

METRICS = {
    "bsrp-lag": ["lagrange/multiplier", "lagrange/cost_estimate", "lagrange/budget",
                 "lagrange/penalty"],
    "osrp": ["planner/safe_fraction", "planner/planned_return", "planner/planned_cost"],
    "osrp-lag": ["planner/safe_fraction", "planner/planned_cost", "lagrange/multiplier",
                 "lagrange/cost_estimate", "lagrange/budget"],
}  # fmt: skip


@pytest.mark.real
@pytest.mark.parametrize("algo", list(METRICS))
def test_agent_trains_end_to_end_and_its_multiplier_is_checkpointed(algo, tmp_path):
    # A high initial multiplier, so a restored one cannot pass for a fresh one.
    config = resolve("tiny", {"algo": algo, "train.device": "cpu", "lagrange.init": 5.0})
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
        assert restored.lagrangian.multiplier == 0.0
        restored.load_state_dict(state["agent"])
        assert restored.lagrangian.multiplier == trained.multiplier
        assert restored.lagrangian.integral == trained.integral
        assert restored.lagrangian.previous_cost == trained.previous_cost
