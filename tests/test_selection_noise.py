"""The selection-noise proxy (benchmarks/selection_noise.py): its refit shortcut, candidates and rules."""

import math

import numpy as np

from benchmarks import selection_noise
from trainer.hparams import declare_all
from trainer.trees import fit_trees
from tuning.portfolio import LIGHTGBM_DEFAULTS


def test_one_long_refit_predicts_as_the_shorter_refit_at_its_round_count():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + rng.normal(size=300) > 1.2).astype(np.int64)
    params = {"tree_learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 5, "feature_fraction": 0.7,
              "bagging_fraction": 0.7, "tree_l2": 0.1, "extra_trees": True}  # every seeded draw in play
    with selection_noise.one_thread():
        long, _ = fit_trees(x, y, (1.0, 3.0), params, seed=4, rounds=40)
        short, _ = fit_trees(x, y, (1.0, 3.0), params, seed=4, rounds=13)
    np.testing.assert_array_equal(long.predict(x, raw_score=True, num_iteration=13), short.predict(x, raw_score=True))


def test_candidates_are_the_portfolios_tree_entries_then_draws_inside_the_space():
    counts = (900, 30)
    pool = selection_noise.candidate_values(counts, seed=2, random=6)
    assert [name for name, _ in pool[:5]] == ["lightgbm_defaults", "trees", "trees_unweighted", "lightgbm_extra_trees",
                                               "lightgbm_large"]
    defaults = dict(pool[0][1])
    assert {k: defaults[k] for k in LIGHTGBM_DEFAULTS} == LIGHTGBM_DEFAULTS and defaults["weight_ratio"] == 30.0
    assert math.isclose(pool[1][1]["weight_ratio"], math.sqrt(30.0)) and pool[2][1]["weight_ratio"] == 1.0
    space = {hp.name: hp for hp in declare_all(counts).space}
    for _, values in pool[5:]:
        assert values["model_family"] == "trees"
        assert 0.01 <= values["tree_learning_rate"] <= 0.3 and 4 <= values["num_leaves"] <= 128
        assert 1.0 <= values["weight_ratio"] <= space["weight_ratio"].max_value == 90.0
    assert len({values["num_leaves"] for _, values in pool[5:]}) > 1  # draws differ
    again = selection_noise.candidate_values(counts, seed=2, random=6)
    assert [v for _, v in again] == [v for _, v in pool]


def _candidate(name: str, cv5: float, cv3x5: float, validation: float) -> dict:
    # test AP = 10 x the held-out score, so a pick is identified by its test value
    return {"name": name, **{scorer: {"score": s, "rounds": 10, "test": 10 * s}
                             for scorer, s in (("cv5", cv5), ("cv3x5", cv3x5), ("validation", validation))}}


def test_rules_pick_the_best_held_out_score_within_their_pool():
    record = {"candidates": [_candidate("trees", 0.5, 0.3, 0.2), _candidate("lightgbm_defaults", 0.4, 0.6, 0.1),
                             _candidate("random_0", 0.7, 0.2, 0.3), _candidate("random_1", 0.1, 0.1, 0.1),
                             _candidate("random_2", 0.2, 0.2, 0.2), _candidate("random_3", 0.9, 0.8, 0.9)]}
    largest = selection_noise.LARGEST  # 3 random draws here: its pool is all six candidates
    picks = {rule: selection_noise.choose(record, rule) for rule in selection_noise.RULES}
    assert picks["a default"] == (4.0, 0.4)
    assert picks["b portfolio cv5"] == (5.0, 0.5) and picks["portfolio cv3x5"] == (6.0, 0.6)
    assert picks["c search3 cv5"] == (7.0, 0.7) and picks["e search3 validation"] == (3.0, 0.3)
    assert picks[f"c {largest} cv5"] == (9.0, 0.9) and picks[f"d {largest} cv3x5"] == (8.0, 0.8)
