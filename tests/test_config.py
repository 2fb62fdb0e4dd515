"""The run configuration fails loudly on bad values and unknown keys."""

import pytest

from trainer.config import ConfigError, RunConfig, parse_tuning_objective


def test_unknown_keys_fail_loudly():
    with pytest.raises(ConfigError, match="unknown config keys: epohcs"):
        RunConfig.from_dict({"epohcs": 3})


@pytest.mark.parametrize("values,message", [
    ({"loss": "hinge"}, "loss must be one of"),
    ({"split": (0.5, 0.5, 0.5)}, "split must be"),
    ({"weight_ratio": 0.0}, "weight_ratio must be > 0"),
    ({"max_trials": 0}, "max_trials"),
    ({"objective": "recall"}, "unknown tuning objective"),
    ({"threshold_objective": "accuracy"}, "unknown threshold objective"),
])
def test_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(values)


def test_round_trip_and_frozen():
    config = RunConfig.from_dict({"epochs": 4, "split": [0.8, 0.1, 0.1]})
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(AttributeError):
        config.epochs = 5


def test_tuning_objectives():
    assert parse_tuning_objective("pr_auc") == ("pr_auc", None)
    assert parse_tuning_objective("recall_at_precision:0.5") == ("recall_at_precision", 0.5)


def test_both_objective_parsers_share_one_rule_for_p_and_r():
    from trainer.config import ConfigError
    from trainer.threshold import parse_objective

    for bad in ("0", "1.5", "-0.2", "x"):
        with pytest.raises(ConfigError):
            parse_tuning_objective(f"recall_at_precision:{bad}")
        with pytest.raises(ConfigError):
            parse_objective(f"recall_at_precision:{bad}")
    assert parse_tuning_objective("recall_at_precision:1") == ("recall_at_precision", 1.0)
    assert parse_objective("precision_at_recall:1").value == 1.0
