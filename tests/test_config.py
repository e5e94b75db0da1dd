from __future__ import annotations

import pytest

from workbench.config import Config, ConfigError, resolve


def test_presets_resolve_and_round_trip():
    for preset in ("tiny", "cpu", "paper"):
        config = resolve(preset)
        assert Config.from_dict(config.to_dict()) == config
    assert resolve("paper").model.deter == 512 and resolve("paper").agent.horizon == 15


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean agent.cost_limit"):
        resolve("tiny", {"agent.cost_limt": 3})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.batch_size": "eight"}, "not a valid int"),
        ({"train.batch_size": 0}, "must be positive"),
        ({"algo": "ppo"}, "not one of"),
        ({"env.image_size": 50}, "multiple of 16"),
        ({"train.device": "tpu"}, "use auto, cpu"),
        ({"agent.gamma": 1.5}, "gamma"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve("tiny", overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="choose one of"):
        resolve("huge")


def test_string_overrides_are_converted():
    config = resolve("tiny", {"train.steps": "1e3", "agent.cost_limit": "10"})
    assert config.train.steps == 1000 and config.agent.cost_limit == 10.0
