"""Configuration: dataclasses with a docstring per field, named presets, and validated overrides.

A run is fully described by one `Config`. `resolve(preset, overrides)` builds it; the resolved
config is written into the run directory, and `Config.from_dict` reads it back (rejecting
unknown keys, so a typo never silently does nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from workbench.tasks import check_task


class ConfigError(ValueError):
    """A config value or key is wrong; the message says which and what is allowed."""


@dataclass
class EnvConfig:
    task: str = "SafetyPointGoal1-v0"
    """Safety-Gymnasium task id (navigation tasks: Point/Car/Racecar x Goal/Button/Push/Circle, 0-2)."""
    image_size: int = 64
    """Side of the square RGB observation in pixels."""
    action_repeat: int = 4
    """Each agent action is repeated this many physics steps; rewards and costs are summed.
    SafeDreamer uses 4 (5 for OSRP). Measured here: at 2, per-step rewards (+-0.01-0.03) were too
    small for the reward head to learn in 6000 steps (R^2 -0.05), at 4 it reached 0.27."""
    num_envs: int = 1
    """Environments stepped in parallel, each in its own process when > 1."""
    render: str = "fast"
    """'fast': one persistent MuJoCo renderer without shadows/reflections; 'stock': env.render()."""
    time_limit: int = 1000
    """Physics steps per episode (Safety-Gymnasium's own limit is 1000)."""


@dataclass
class ModelConfig:
    deter: int = 512
    """Size of the RSSM's deterministic (GRU) state h."""
    stoch: int = 32
    """Number of categorical variables in the stochastic state z."""
    classes: int = 32
    """Classes per categorical variable."""
    hidden: int = 512
    """Width of the MLPs inside the RSSM and of the reward/cost/continue heads."""
    cnn_depth: int = 32
    """Channels of the first conv layer of encoder and decoder (doubled at each of 4 stages)."""
    ensemble: int = 5
    """Number K of transition (prior) heads; their disagreement measures epistemic uncertainty."""
    free_bits: float = 1.0
    """KL below this many nats per step is not penalised (DreamerV3)."""
    kl_dynamics: float = 0.5
    """Weight of the KL that trains the prior toward the (stopped) posterior."""
    kl_representation: float = 0.1
    """Weight of the KL that keeps the posterior near the (stopped) prior."""
    unimix: float = 0.01
    """Mix of a uniform distribution into the categorical latents, so no class has zero mass."""
    reward_scale: float = 1.0
    """Weight of the reward-prediction loss (the image loss, summed over pixels, is ~100x larger)."""
    cost_scale: float = 1.0
    """Weight of the cost-prediction loss."""
    unsafe_cost_weight: float = 1.0
    """Weight of the cost loss on unsafe steps (cost > 0), which are rare; predictions undo it.
    Every preset uses SafeDreamer's 10; 1 (no weighting) is how runs saved before it trained."""
    lr: float = 1e-4
    """World-model learning rate (Adam; DreamerV3 and SafeDreamer: 1e-4)."""
    grad_clip: float = 100.0
    """Global gradient-norm clip for the world model."""


@dataclass
class AgentConfig:
    horizon: int = 15
    """Imagination horizon in agent steps."""
    imagine_starts: int = 0
    """Imagine from this many posterior states of each batch, chosen at random (0: all B x T)."""
    gamma: float = 0.99
    """Discount for reward and cost returns."""
    lam: float = 0.95
    """Lambda of the lambda-returns."""
    hidden: int = 256
    """Width of the actor and critic MLPs."""
    layers: int = 2
    """Hidden layers of the actor and critic MLPs."""
    actor_lr: float = 3e-5
    """Actor learning rate (Adam; DreamerV3 and SafeDreamer: 3e-5)."""
    critic_lr: float = 3e-5
    """Reward and cost critic learning rate (Adam; DreamerV3 and SafeDreamer: 3e-5)."""
    entropy: float = 3e-4
    """Weight of the actor's entropy bonus."""
    target_tau: float = 0.02
    """Rate at which the slow target critics follow the critics."""
    grad_clip: float = 100.0
    """Global gradient-norm clip for the actor and the critics."""
    cost_limit: float = 2.0
    """Episode cost budget d (SafeDreamer's vision configs use 2; OmniSafe's defaults 25)."""


@dataclass
class LagrangeConfig:
    """Lagrange multipliers (`agents/lagrange.py`), SafeDreamer's values by default: OSRP-Lag's
    PID Lagrangian (Stooke et al. 2020), driven once per episode by the EMA of the real episode
    costs against `agent.cost_limit` (configs.yaml `osrp_lag.pid`); BSRP-Lag's augmented
    Lagrangian, moved every update by the imagined cost (configs.yaml `defaults`)."""

    kp: float = 0.1
    """PID (OSRP-Lag): proportional gain on the violation (episode-cost EMA - cost limit)."""
    ki: float = 0.01
    """PID: integral gain; with kp = kd = 0 this is plain gradient ascent on the multiplier."""
    kd: float = 0.01
    """PID: derivative gain on the rise of the episode-cost EMA since the last episode (falls
    ignored)."""
    init: float = 0.0
    """PID: initial multiplier (and integral)."""
    max: float = 0.1
    """PID: upper clip of the multiplier and of its integral. The planner ranks feasible plans by
    reward return - multiplier x cost return, so this bounds the weight of cost in that ranking."""
    cost_ema: float = 0.01
    """Weight of each new episode in the EMA (from 0) of real episode costs that drives the PID."""
    multiplier_init: float = 1e-6
    """Augmented Lagrangian (BSRP-Lag): initial multiplier l."""
    penalty: float = 5e-9
    """Augmented Lagrangian: initial quadratic penalty weight c (positive)."""
    penalty_growth: float = 1e-5
    """Augmented Lagrangian: c grows by this fraction every update (doubling every ~69,000)."""
    penalty_max: float = 1.0
    """Augmented Lagrangian: upper clip of c."""
    pessimism: float = 1.0
    """BSRP-Lag: standard deviations over the ensemble members of the cost estimate added to it."""


@dataclass
class PlannerConfig:
    """Constrained cross-entropy planning (OSRP) in latent space."""

    horizon: int = 15
    """Planning horizon in agent steps."""
    samples: int = 500
    """Action sequences sampled per iteration (including those proposed by the actor)."""
    actor_samples: int = 50
    """Of the samples, how many are rollouts of the actor (the proposal); below `samples`."""
    elites: int = 50
    """Sequences kept to refit the sampling distribution."""
    iterations: int = 6
    """Cross-entropy iterations per action."""
    min_std: float = 0.05
    """Lower bound of the sampling standard deviation."""
    momentum: float = 0.1
    """Weight of the previous mean when the sampling mean is refitted to the elites."""


@dataclass
class BarrierConfig:
    """Latent barrier function B(z) (seeds 000/001)."""

    eps_safe: float = 0.1
    """B(z) >= eps_safe is asked of safe latents."""
    eps_unsafe: float = 0.1
    """B(z) <= -eps_unsafe is asked of unsafe latents."""
    alpha: float = 0.1
    """Decay rate in (0, 1] of the invariance condition B(z') - B(z) + alpha B(z) >= 0."""
    invariance_weight: float = 1.0
    """Weight of the invariance loss on imagined transitions."""
    unsafe_cost: float = 0.1
    """Imagined states whose predicted cost exceeds this are labelled unsafe (reference: 0.01)."""
    actor_weight: float = 1.0
    """Weight of the invariance violations along imagined rollouts in the actor's loss, each
    measured in units of alpha x eps_unsafe: at 1, a step spent in a hazard costs as much as the
    spread of the normalised returns."""
    lr: float = 3e-4
    """Barrier network learning rate (Adam)."""


@dataclass
class CERLConfig:
    """Pessimistic ensemble + log-barrier policy optimisation (seed 002)."""

    eta: float = 0.1
    """Initial weight of the log barrier: the actor maximises J + eta log(d - Jc_worst)."""
    eta_rate: float = 8e-6
    """After every update inside the feasible set, eta <- eta / (1 + eta_rate) (actsafe: 8e-6)."""
    backtrack: float = 0.5
    """Step-size shrink factor in (0, 1) while an update would leave the feasible set."""
    max_backtracks: int = 5
    """Give up on an update (keep the old actor) after this many shrinks."""
    slack: float = 1e-3
    """A step is kept only if the new actor's Jc_worst < d - slack (in critic units)."""


@dataclass
class LSPCConfig:
    """Latent safety-constrained policy learning from a fixed dataset (seed 003)."""

    latent_dim: int = 8
    """Dimension of the CVAE's latent action space."""
    latent_bound: float = 2.0
    """The policy's latent actions stay within this many standard deviations of the safe data's
    latent codes (per dimension, around their mean)."""
    beta: float = 0.5
    """Weight of the CVAE's KL term (KL and squared error each averaged over their dimensions)."""
    fallback_fraction: float = 0.1
    """When no transition of a batch counts as safe (see agents/lspc.py), the CVAE learns from
    this fraction of it with the lowest cost Q instead, and says so (lspc/cvae_fallback)."""
    expectile: float = 0.7
    """Expectile tau of the IQL value regression."""
    temperature: float = 3.0
    """Advantage temperature of the policy's weighted regression (advantages in batch-std units)."""
    updates: int = 2000
    """Offline gradient updates of the agent, for every offline algo (lspc, bc-all, bc-safe)."""


@dataclass
class OfflineConfig:
    """Learning from a fixed dataset (`workbench dataset build`), never acting in the env until
    evaluation: the offline algos lspc, bc-all and bc-safe (see `workbench/offline.py`)."""

    dataset: str = ""
    """Folder of the dataset to learn from (`workbench train --dataset PATH` sets it)."""
    world_model: str = ""
    """An offline run on the same dataset whose world model to reuse, skipping its training."""
    model_updates: int = 2000
    """World-model updates on the dataset's sequences (train.batch_size x train.batch_length);
    then `lspc.updates` agent updates on its encoded transitions."""
    batch_size: int = 256
    """Transitions per agent update."""
    lr: float = 3e-4
    """Learning rate (Adam) of every network of the offline agents."""


@dataclass
class TrainConfig:
    steps: int = 100_000
    """Environment steps (agent steps, after action repeat) to train for."""
    prefill: int = 2500
    """Random-action steps collected before training starts."""
    train_every: int = 5
    """One gradient update (world model + agent) every this many env steps."""
    batch_size: int = 16
    """Sequences per training batch."""
    batch_length: int = 64
    """Steps per training sequence."""
    log_every: int = 50
    """Write averaged training metrics every this many updates."""
    checkpoint_every: int = 5000
    """Save a checkpoint every this many env steps (and always at the end)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk (oldest removed first)."""
    skip_bad_updates: int = 0
    """Updates with a non-finite loss or gradient to skip (no optimiser step is taken on a
    non-finite gradient) before the divergence guard stops the run (0: stop at the first)."""
    eval_every: int = 0
    """Run evaluation episodes every this many env steps (0: only at the end)."""
    eval_episodes: int = 1
    """Episodes per evaluation; their frames are saved in the run directory."""
    snapshot_every: int = 0
    """Publish latent/imagination snapshots every this many updates (0: never)."""
    seed: int = 0
    """Seed for environments, networks and sampling."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."""
    overlap: bool = False
    """Collect (act, step, render) in a background thread while training, at the same replay
    ratio (it runs at most one update's worth of steps ahead), the learner on one torch thread.
    It hides collection time only: where updates dominate (the `cpu` preset) it does not pay.
    Learning then depends on thread timing (which steps an update samples), so
    seeded runs are repeatable only with False."""
    replay_capacity: int = 0
    """Steps the replay holds in memory (FIFO, oldest dropped first; 0: every step). Every
    episode is still saved whole on disk."""
    precision: str = "auto"
    """'auto' (bf16 autocast on CUDA and on CPUs with native bf16, else fp32), 'fp32', 'bf16'."""


@dataclass
class Config:
    algo: str = "dreamer"
    """Agent: dreamer, bsrp-lag, osrp, osrp-lag, barrier, cerl; offline: lspc, bc-all, bc-safe."""
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    lagrange: LagrangeConfig = field(default_factory=LagrangeConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    barrier: BarrierConfig = field(default_factory=BarrierConfig)
    cerl: CERLConfig = field(default_factory=CERLConfig)
    lspc: LSPCConfig = field(default_factory=LSPCConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        config = cls()
        apply(config, flatten(data))
        return config


# Presets: each is a set of dotted overrides on top of the defaults (the `paper` sizes follow
# SafeDreamer's vision configs). `tiny` is for tests, `cpu` for a useful demo on 2 cores.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"model.unsafe_cost_weight": 10.0},
    "cpu": {
        "model.deter": 128,
        "model.stoch": 16,
        "model.classes": 16,
        "model.hidden": 128,
        "model.cnn_depth": 16,
        "model.unsafe_cost_weight": 10.0,
        "model.lr": 3e-4,  # 20x fewer updates than the references' runs: a faster rate
        "agent.hidden": 128,
        "agent.actor_lr": 8e-5,
        "agent.critic_lr": 8e-5,
        "agent.imagine_starts": 128,
        # The reference's augmented-Lagrangian schedule doubles its penalty every ~69k updates;
        # a 10k-step run makes ~1800: start it higher and let it grow faster, so the constraint
        # binds within the run (the multiplier still starts at 1e-6: the task first).
        "lagrange.penalty": 1e-5,
        "lagrange.penalty_growth": 5e-4,
        # Planning runs at every env step: about 1 s per action at 200 x 3 x 15 on 2 cores.
        "planner.horizon": 10,
        "planner.samples": 64,
        "planner.actor_samples": 8,
        "planner.elites": 8,
        "planner.iterations": 2,
        # Replay ratio 16 x 32 / 5 = 102 (was 25.6; references 512): one update every 5 steps.
        "train.steps": 10000,
        "train.prefill": 1000,
        "train.train_every": 5,
        "train.batch_size": 16,
        "train.batch_length": 32,
        "train.log_every": 20,
        "train.checkpoint_every": 1000,
        "train.eval_every": 2000,  # each evaluation logs the world model's health
        "train.snapshot_every": 100,
        # train.overlap stays off: measured on an idle 2-core machine, 1400 steps, the learner is
        # 80% of the work and overlap (learner on one thread) ran 9.6 env steps/s at 103% CPU,
        # against 10.0 steps/s at 129% without it; off, seeded runs are also repeatable.
    },
    "tiny": {
        "model.deter": 32,
        "model.stoch": 4,
        "model.classes": 4,
        "model.hidden": 32,
        "model.cnn_depth": 4,
        "model.ensemble": 3,
        "model.unsafe_cost_weight": 10.0,
        "model.lr": 3e-4,
        "agent.actor_lr": 8e-5,
        "agent.critic_lr": 8e-5,
        "agent.hidden": 32,
        "agent.layers": 1,
        "agent.horizon": 5,
        "planner.horizon": 5,
        "planner.samples": 16,
        "planner.actor_samples": 4,
        "planner.elites": 4,
        "planner.iterations": 2,
        "lspc.updates": 50,
        "offline.model_updates": 6,
        "offline.batch_size": 32,
        "env.image_size": 64,
        "env.action_repeat": 2,
        "env.time_limit": 100,
        "train.steps": 120,
        "train.prefill": 60,
        "train.train_every": 10,
        "train.batch_size": 2,
        "train.batch_length": 8,
        "train.log_every": 2,
        "train.checkpoint_every": 60,
        "train.snapshot_every": 3,
    },
}

OFFLINE_ALGOS = ("lspc", "bc-all", "bc-safe")
"""Algos that learn from `offline.dataset` (workbench/offline.py) instead of acting in the env."""
ALGOS = ("dreamer", "bsrp-lag", "osrp", "osrp-lag", "barrier", "cerl", *OFFLINE_ALGOS)
CHOICES: dict[str, tuple[str, ...]] = {
    "algo": ALGOS,
    "env.render": ("fast", "stock"),
    "train.precision": ("auto", "fp32", "bf16"),
}


def resolve(preset: str = "cpu", overrides: dict[str, Any] | None = None) -> Config:
    """The defaults, then the preset's overrides, then the caller's (dotted keys, e.g. 'train.seed')."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    config = Config()
    apply(config, PRESETS[preset])
    apply(config, overrides or {})
    validate(config)
    return config


@dataclass
class TrainRequest:
    """What `workbench train` is asked for on its command line; with `add_run_flags`, the one
    place its flags are spelled (the dashboard and `workbench compare` start runs through
    `flags()`). A field left None takes its default here (so the parser's defaults can be None),
    and is typed as it is after that."""

    preset: str = "cpu"
    algo: str = "dreamer"
    seed: int = 0
    task: str | None = None
    steps: int | None = None
    device: str = "auto"
    sets: list[str] | tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field_ in dataclasses.fields(self):
            if getattr(self, field_.name) is None:
                setattr(self, field_.name, field_.default)

    def config(self) -> Config:
        """The config these flags build (a bad key or value raises ConfigError)."""
        overrides: dict[str, Any] = dict(parse_assignment(text) for text in self.sets)
        overrides.update({"algo": self.algo, "train.seed": self.seed, "train.device": self.device})
        if self.task:
            overrides["env.task"] = self.task
        if self.steps is not None:
            overrides["train.steps"] = self.steps
        return resolve(self.preset, overrides)

    def flags(self) -> list[str]:
        """The `workbench train` flags that ask for this."""
        flags = ["--algo", self.algo, "--preset", self.preset, "--seed", str(self.seed)]
        flags += ["--device", self.device]
        flags += (["--steps", str(self.steps)] if self.steps else []) + (
            ["--task", self.task] if self.task else []
        )
        return flags + [f"--set={assignment}" for assignment in self.sets]


def add_run_flags(parser: Any, *, several: bool = False) -> None:
    """Add the flags that say what to train to an argparse parser: `workbench train`'s (one
    --algo and --seed) or, with `several`, `workbench compare`'s (--algos and --seeds lists).
    Every default is None on the parser (`TrainRequest` fills it in), so a resume can tell
    which flags were given."""
    parser.add_argument("--task", help="Safety-Gymnasium task id (default SafetyPointGoal1-v0)")
    if several:
        parser.add_argument("--algos", type=names, help="comma-separated, e.g. dreamer,bsrp-lag")
        parser.add_argument("--seeds", type=numbers, default=[0], help="comma-separated: 0,1,2")
    else:
        parser.add_argument("--algo", choices=ALGOS, help="the agent (default dreamer)")
        parser.add_argument("--seed", type=non_negative, help="seed (default 0)")
    parser.add_argument("--preset", choices=list(PRESETS), help="sizes and schedules (default cpu)")
    parser.add_argument("--steps", type=positive, help="env steps to train for (after repeat)")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set agent.cost_limit=10",
    )


def non_negative(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive(text: str) -> int:
    """An argparse type: an integer > 0."""
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text}")
    return value


def names(text: str) -> list[str]:
    """An argparse type: comma-separated names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def numbers(text: str) -> list[int]:
    """An argparse type: comma-separated integers >= 0."""
    return [non_negative(name) for name in names(text)]


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def apply(config: Config, overrides: dict[str, Any]) -> None:
    """Set dotted keys on a config, converting each value to the field's type."""
    for key, value in overrides.items():
        target, name = _locate(config, key)
        current = getattr(target, name)
        setattr(target, name, _convert(key, value, type(current)))


def parse_assignment(text: str) -> tuple[str, str]:
    """'train.seed=3' -> ('train.seed', '3')."""
    if "=" not in text:
        raise ConfigError(f"expected KEY=VALUE (for example train.seed=3), got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def validate(config: Config) -> None:
    """Reject values that cannot work, saying which key and what is allowed."""
    check_task(config.env.task)
    for key, allowed in CHOICES.items():
        value = _get(config, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}")
    positive = [
        "env.image_size", "env.action_repeat", "env.num_envs", "env.time_limit",
        "model.deter", "model.stoch", "model.classes", "model.hidden", "model.cnn_depth",
        "model.ensemble", "agent.horizon", "agent.hidden", "train.steps", "train.train_every",
        "train.batch_size", "train.batch_length", "train.log_every", "train.checkpoint_every",
        "train.keep_checkpoints", "planner.samples", "planner.elites", "planner.iterations",
    ]  # fmt: skip
    for key in positive:
        if _get(config, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {_get(config, key)}")
    if config.env.image_size % 16:
        raise ConfigError(f"env.image_size must be a multiple of 16 (got {config.env.image_size})")
    if not 0 < config.agent.gamma <= 1 or not 0 <= config.agent.lam <= 1:
        raise ConfigError("agent.gamma must be in (0, 1] and agent.lam in [0, 1]")
    for key in ("train.replay_capacity", "train.skip_bad_updates"):
        if _get(config, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {_get(config, key)}")
    if config.agent.cost_limit < 0:
        raise ConfigError(f"agent.cost_limit must be >= 0, got {config.agent.cost_limit}")
    if config.planner.elites > config.planner.samples:
        raise ConfigError("planner.elites must not exceed planner.samples")
    if not 0 <= config.planner.actor_samples < config.planner.samples:
        raise ConfigError("planner.actor_samples must be >= 0 and below planner.samples")
    if config.planner.horizon <= 0 or config.lagrange.penalty <= 0:
        raise ConfigError("planner.horizon and lagrange.penalty must be positive")
    if not 0 < config.barrier.alpha <= 1:
        raise ConfigError(f"barrier.alpha must be in (0, 1], got {config.barrier.alpha}")
    if not 0 < config.cerl.backtrack < 1 or config.cerl.eta <= 0:
        raise ConfigError("cerl.backtrack must be in (0, 1) and cerl.eta positive")
    _validate_offline(config)
    _validate_sequences(config)
    device = config.train.device
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError(f"train.device={device!r}: use auto, cpu, cuda or cuda:N")


def _validate_sequences(config: Config) -> None:
    """Training starts after the prefill: each env's stream must then hold one whole sequence."""
    train, env = config.train, config.env
    if config.algo in OFFLINE_ALGOS:
        return
    per_env = (train.prefill + train.train_every) // env.num_envs + 1
    if train.batch_length > per_env:
        episode = env.time_limit // env.action_repeat
        raise ConfigError(
            f"train.batch_length={train.batch_length} is longer than the {per_env} steps each env "
            f"holds when training starts (train.prefill={train.prefill}, env.num_envs="
            f"{env.num_envs}; an episode is {episode} steps): lower train.batch_length or raise "
            "train.prefill"
        )


def _validate_offline(config: Config) -> None:
    """An offline algo needs a dataset; an online one must not be given one."""
    offline, lspc = config.offline, config.lspc
    if config.algo in OFFLINE_ALGOS and not offline.dataset:
        raise ConfigError(
            f"--algo {config.algo} learns from a dataset: give --dataset PATH "
            "(build one with `workbench dataset build`)"
        )
    if config.algo not in OFFLINE_ALGOS and (offline.dataset or offline.world_model):
        raise ConfigError(
            f"--algo {config.algo} learns online; a dataset is only for {', '.join(OFFLINE_ALGOS)}"
        )
    if offline.model_updates < 0 or lspc.updates <= 0 or offline.batch_size <= 0:
        raise ConfigError("lspc.updates and offline.batch_size must be positive")
    if lspc.latent_dim <= 0 or lspc.latent_bound <= 0 or not 0 < lspc.expectile < 1:
        raise ConfigError(
            "lspc.latent_dim and lspc.latent_bound must be positive, lspc.expectile in (0, 1)"
        )


def _locate(config: Config, key: str) -> tuple[Any, str]:
    *path, name = key.split(".")
    target = config
    for part in path:
        if not dataclasses.is_dataclass(getattr(target, part, None)):
            raise ConfigError(_unknown(key))
        target = getattr(target, part)
    if name not in {f.name for f in dataclasses.fields(target)} or dataclasses.is_dataclass(
        getattr(target, name)
    ):
        raise ConfigError(_unknown(key))
    return target, name


def _get(config: Config, key: str) -> Any:
    target, name = _locate(config, key)
    return getattr(target, name)


def _all_keys(obj: Any = None, prefix: str = "") -> list[str]:
    obj = obj if obj is not None else Config()
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += _all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, _all_keys(), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown config key {key!r}{hint} (see workbench/config.py for every key)"


def _convert(key: str, value: Any, kind: type) -> Any:
    if isinstance(value, str) and kind is not str:
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return value.lower() in ("true", "1")
            converted = kind(float(value)) if kind is int and "e" in value.lower() else kind(value)
        except (ValueError, OverflowError):
            raise ConfigError(f"{key}={value!r} is not a valid {kind.__name__}") from None
        value = converted
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: give a finite number")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} should be a {kind.__name__}")
    return value


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'seed': 0}} -> {'train.seed': 0}."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
