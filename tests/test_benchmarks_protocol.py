"""Issue 20's benchmark protocol: dataset roles, paired statistics, untuned contenders' rows, the gate's record."""

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks import confirm, confirm_report, defaults, package_cli, paired, registry
from benchmarks.confirmation_data import CONFIRMATION, QUICK_CONFIRMATION, load_confirmation
from benchmarks.datasets import Dataset, quality_datasets
from trainer.data.split import assign_splits
from trainer.summary import RunSummary

SPLIT = (0.7, 0.15, 0.15)


# ----------------------------------------------------------------------------- dataset roles

def test_development_and_confirmation_registries_are_disjoint():
    registry.check_disjoint()
    assert not set(registry.DEVELOPMENT) & set(registry.CONFIRMATION)
    # every set the model-quality benchmark runs, full or quick, is a development set
    for full in (True, False):
        for name, _ in quality_datasets(full):
            assert registry.role(name) == "development"
    assert all(registry.role(name) == "confirmation" for name in CONFIRMATION)
    assert set(QUICK_CONFIRMATION) <= set(CONFIRMATION) and len(QUICK_CONFIRMATION) == 2
    assert 12 <= len(CONFIRMATION) <= 15
    with pytest.raises(KeyError):
        registry.role("not_a_set")


def test_seed_count_is_five_below_a_hundred_positives():
    assert registry.seed_count(30) == registry.seed_count(99) == 5
    assert registry.seed_count(100) == registry.seed_count(3500) == 3


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: the sets must load offline."""
    def refuse(*args, **kwargs):
        raise AssertionError("a confirmation set tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.slow  # parses every file, FARS' 59 MB included (~5 s)
def test_every_confirmation_set_loads_offline_within_the_criteria(no_network):
    sizes, categorical_with_missing = [], []
    for name in CONFIRMATION:
        data = load_confirmation(name)
        info = data.describe()
        assert info["name"] == name and data.features.shape[0] == data.labels.size
        assert set(np.unique(data.labels)) == {0, 1}
        assert data.positives >= 30, name
        assert 300 <= data.labels.size <= 50_000, name
        assert data.rate < 0.16, name  # below ~15% (kc1: 15.5%)
        sizes.append(data.labels.size)
        if info["categorical_features"] and data.features.isna().to_numpy().any():
            categorical_with_missing.append(name)
    assert min(sizes) < 1_000 and max(sizes) > 20_000  # a spread of sizes
    assert categorical_with_missing == ["fars_possible_injury"]


def test_keel_reader_keeps_nominal_columns_as_strings_and_missing_as_none():
    data = load_confirmation("car_good")  # 1,728 rows, 6 nominal attributes, class 'good'
    assert data.labels.size == 1728 and data.positives == 69
    assert all(data.features[c].dtype == object for c in data.features.columns)
    assert set(data.features["f0"]) == {"vhigh", "high", "med", "low"}


# ----------------------------------------------------------------------------- paired statistics

# A hand-made table: per-dataset mean PR-AUC of the package and of another contender on 8 datasets.
PACKAGE = np.array([0.81, 0.62, 0.55, 0.90, 0.33, 0.47, 0.71, 0.64])
OTHER = np.array([0.80, 0.58, 0.57, 0.84, 0.30, 0.47, 0.66, 0.52])
#                 +0.01 +0.04 -0.02 +0.06 +0.03  0    +0.05 +0.12


def test_wilcoxon_and_sign_test_agree_with_scipy():
    assert paired.wilcoxon_p(PACKAGE, OTHER) == pytest.approx(stats.wilcoxon(PACKAGE, OTHER).pvalue)
    # sign test on wins / losses beyond the tie band: 5 wins, 1 loss (+0.01 and 0 are ties)
    assert paired.sign_test_p(PACKAGE, OTHER) == pytest.approx(stats.binomtest(5, 6, 0.5).pvalue)
    assert paired.sign_test_p(PACKAGE, OTHER) == pytest.approx(2 * (6 + 1) / 2**6)  # by hand: 0.21875
    # without a band, every non-zero difference counts: 6 of 7
    assert paired.sign_test_p(PACKAGE, OTHER, band=0.0) == pytest.approx(stats.binomtest(6, 7, 0.5).pvalue)


def test_statistics_by_hand_on_a_clean_case():
    second = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    first = second + np.array([0.02, 0.03, 0.04, 0.05, 0.06, 0.07])  # 6 distinct wins beyond the tie band
    # exact two-sided Wilcoxon with every difference positive: 2 / 2**6; sign test the same
    assert paired.wilcoxon_p(first, second) == pytest.approx(2 / 64)
    assert paired.sign_test_p(first, second) == pytest.approx(2 / 64)
    assert paired.wilcoxon_p(first, first) is None and paired.sign_test_p(first, first) is None
    assert paired.sign_test_p(first, first + 0.005) is None  # every dataset a tie: no decided pair


def test_win_tie_loss_uses_the_tie_band():
    # +0.01 (a tie, though 0.81 - 0.80 > 0.01 in floating point), +0.04, -0.02, +0.06, +0.03, 0, +0.05, +0.12
    assert paired.win_tie_loss(PACKAGE, OTHER) == {"wins": 5, "ties": 2, "losses": 1}
    assert paired.win_tie_loss([0.5, 0.5, 0.5], [0.489, 0.511, 0.5]) == {"wins": 1, "ties": 1, "losses": 1}
    assert paired.win_tie_loss(PACKAGE, OTHER, band=0.0) == {"wins": 6, "ties": 1, "losses": 1}
    result = paired.compare(PACKAGE, OTHER)
    assert result["datasets"] == 8 and result["mean_difference"] == pytest.approx(np.mean(PACKAGE - OTHER))
    assert (result["wins"], result["ties"], result["losses"]) == (5, 2, 1)


def test_paired_means_average_the_seeds_both_contenders_ran():
    def row(dataset, seed, contender, value):
        return {"dataset": dataset, "seed": seed, "contender": contender, "pr_auc": value}

    records = [row("a", 0, "p", 0.5), row("a", 1, "p", 0.7), row("a", 2, "p", 0.9),
               row("a", 0, "q", 0.4), row("a", 1, "q", 0.6),  # q lacks seed 2: p's seed 2 is left out
               row("b", 0, "p", 0.3),  # q never ran b
               row("c", 0, "q", 0.2), row("c", 0, "p", 0.1)]
    names, first, second = paired.paired_means(records, "p", "q", ["a", "b", "c"])
    assert names == ["a", "c"]
    assert first == pytest.approx([0.6, 0.1]) and second == pytest.approx([0.5, 0.2])


# ----------------------------------------------------------------------------- untuned contenders

def tiny(rows: int = 600, seed: int = 3) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.1).astype(np.int64)
    features = pd.DataFrame({"row": np.arange(rows, dtype=np.float64), "x": rng.normal(size=rows) + labels,
                             "colour": rng.choice(["red", "blue", None], size=rows)})
    return Dataset("tiny", features, labels, "test")


@pytest.mark.parametrize("name", ["lightgbm_default", "lightgbm_300_spw"])
def test_untuned_lightgbm_trains_on_exactly_the_non_test_rows(name, monkeypatch):
    import lightgbm

    data, seed = tiny(), 2
    assignment = assign_splits(data.labels, SPLIT, seed)
    seen = {}
    fit = lightgbm.LGBMClassifier.fit

    def spy(self, x, y, *args, **kwargs):
        assert not args and "eval_set" not in kwargs and "callbacks" not in kwargs  # no early stopping
        seen.update(rows=x["row"].to_numpy().astype(int), labels=np.asarray(y), params=self.get_params())
        return fit(self, x, y, *args, **kwargs)

    monkeypatch.setattr(lightgbm.LGBMClassifier, "fit", spy)
    result = defaults.run_default(name, data, assignment, seed)
    expected = np.flatnonzero(assignment != 2)
    assert np.array_equal(seen["rows"], expected)  # every train + validation row, in order, no test row
    assert result["train_rows"] == int((assignment != 2).sum()) == expected.size
    assert np.array_equal(seen["labels"], data.labels[expected])
    assert np.array_equal(result["labels"], data.labels[assignment == 2]) and result["threshold"] == 0.5
    negatives, positives = int((data.labels[expected] == 0).sum()), int((data.labels[expected] == 1).sum())
    if name == "lightgbm_default":
        assert seen["params"]["n_estimators"] == 100 and seen["params"]["learning_rate"] == 0.1
        assert "scale_pos_weight" not in seen["params"] and seen["params"]["class_weight"] is None
    else:
        assert seen["params"]["n_estimators"] == 300 and seen["params"]["learning_rate"] == 0.05
        assert seen["params"]["scale_pos_weight"] == pytest.approx(negatives / positives)


@pytest.mark.slow  # trains LightGBM (five folds, one trial)
def test_tuned_lightgbm_starts_from_the_library_defaults():
    from benchmarks import tuned

    data = tiny()
    assignment = assign_splits(data.labels, SPLIT, 0)
    result = tuned.tune(tuned.LightGBMFamily(max_trees=5, threads=1), data, assignment, 0, trials=1)
    assert result["hyperparameters"] == tuned.DEFAULTS["lightgbm_tuned"]
    assert result["first_trial"] == "library defaults"


# ----------------------------------------------------------------------------- package through make tune

def _write_run(tmp_path, run: dict) -> str:
    execution = tmp_path / "executions" / "0001"
    execution.mkdir(parents=True)
    (execution / "run.json").write_text(json.dumps(run))
    return str(tmp_path)


def test_gate_outcome_scores_the_pushed_copy_when_pushed(tmp_path):
    served = tmp_path / "serving_model" / "1"
    (served / "assets.extra").mkdir(parents=True)
    (served / "assets.extra" / "push.json").write_text(json.dumps({"threshold": 0.31}))
    run_dir = _write_run(tmp_path, {"push": {"pushed": True, "version": 1, "reason": "BLESSED: pushed as version 1"},
                                    "execution": {"id": "0001"}})
    path, run = package_cli.first_execution(run_dir)
    outcome = package_cli.gate_outcome(run_dir, run)
    assert path.endswith(os.path.join("executions", "0001"))
    assert outcome["served"] is True and outcome["model_dir"] == str(served)
    assert outcome["threshold"] == 0.31  # run.json had no weighted threshold: the push record's
    assert package_cli.tune_argv("d.parquet", "RUN", 4, 3) == [
        "--data", "d.parquet", "--label", "target", "--output-dir", "RUN", "--seed", "4", "--max-trials", "3"]


def test_gate_outcome_scores_the_candidate_when_not_pushed(tmp_path):
    candidate = tmp_path / "executions" / "0001" / "candidate_model" / "1"
    candidate.mkdir(parents=True)
    run = {"push": {"pushed": False, "reason": "NOT_BLESSED: not pushed; nothing is served"},
           "weighted": {"version_dir": str(candidate), "threshold": {"value": 0.42}}}
    (tmp_path / "executions" / "0001" / "run.json").write_text(json.dumps(run))
    _, loaded = package_cli.first_execution(str(tmp_path))
    outcome = package_cli.gate_outcome(str(tmp_path), loaded)
    assert outcome["served"] is False and outcome["model_dir"] == str(candidate) and outcome["threshold"] == 0.42
    assert outcome["push_reason"].startswith("NOT_BLESSED")
    with pytest.raises(RuntimeError):  # neither pushed nor a candidate: nothing to score
        package_cli.gate_outcome(str(tmp_path), RunSummary(push={"pushed": False}))


# ----------------------------------------------------------------------------- results file and report

def _row(dataset, seed, contender, value, **extra):
    return {"dataset": dataset, "seed": seed, "contender": contender, "pr_auc": value, "roc_auc": value,
            "recall_at_p50": 0.0, "f1_at_threshold": 0.0, "recall_at_threshold": 0.0,
            "precision_at_threshold": 0.0, "brier": 0.1, "train_seconds": 1.0, "wall_seconds": 2.0, **extra}


def test_runs_merge_into_one_file_and_the_report_ignores_development_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(confirm, "LOCK", str(tmp_path / "lock"))
    path = str(tmp_path / "confirmation.json")
    info = {"name": "cm1", "rows": 498, "positives": 49, "positive_rate": 0.098, "numeric_features": 21,
            "categorical_features": 0, "source": "x", "role": "confirmation", "seeds": [0]}
    meta = confirm.meta(False, 10)
    confirm.save_split(path, "full", info, 0, ["lightgbm_default"], [_row("cm1", 0, "lightgbm_default", 0.3)], [], meta)
    confirm.save_split(path, "full", info, 0, ["package_tuned"],
                       [_row("cm1", 0, "package_tuned", 0.4, served=False, push_reason="NOT_BLESSED: x")], [], meta)
    payload = json.load(open(path))
    assert [r["contender"] for r in payload["records"]] == ["package_tuned", "lightgbm_default"]
    assert confirm.recorded(path, "full") == {("cm1", 0, "package_tuned"), ("cm1", 0, "lightgbm_default")}
    payload["records"].append(_row("yeast4", 0, "lightgbm_default", 0.99))  # a development set: never counted
    text = confirm_report.confirmation_section(payload, "confirmation.json", [])
    assert "yeast4" not in text and "0.99" not in text
    assert "First runs that served a model: **0 of 1**" in text
    assert "| `lightgbm_default` | 1 | 0.400 | 0.300 | +0.100 | 1 / 0 / 0 |" in text


def test_command_line_refuses_development_sets_and_full_run_trials():
    with pytest.raises(SystemExit):
        confirm.parse_args(["--datasets", "yeast4"])
    with pytest.raises(SystemExit):
        confirm.parse_args(["--trials", "3"])
    args = confirm.parse_args(["--quick", "--trials", "3", "--contenders", "package_tuned", "--datasets", "cm1"])
    assert args.quick and args.trials == 3 and args.contenders == "package_tuned"


@pytest.mark.slow  # the package's data step (Beam) on a tiny file
def test_split_check_works_on_categorical_only_data(tmp_path):
    from benchmarks.contenders import SplitMismatch, verify_split, write_parquet
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data

    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.15).astype(np.int64)
    features = pd.DataFrame({"a": rng.choice(["x", "y", "z"], size=400).astype(object),
                             "b": rng.choice(["u", "v"], size=400).astype(object)})
    data = Dataset("strings", features, labels, "test")
    path = write_parquet(data, str(tmp_path))
    prepared = prepare_data(RunConfig(data=path, label="target", output_dir=str(tmp_path / "run"), seed=1))
    assignment = assign_splits(labels, SPLIT, 1)
    check = verify_split(prepared, data, assignment)
    assert check["checksum_feature"] == "a" and check["checksum"] > 0
    with pytest.raises(SplitMismatch):  # another seed's test rows have other counts or another checksum
        verify_split(prepared, data, assign_splits(labels, SPLIT, 2))


def test_the_package_is_also_scored_as_its_candidate():
    """Where the first execution served the twin (chosen on the test split), the candidate's own test PR-AUC
    is what `package_tuned_candidate` is paired with; elsewhere the two are the same run."""

    def record(contender, dataset, pr_auc, **extra):
        return {"contender": contender, "dataset": dataset, "seed": 0, "pr_auc": pr_auc, **extra}

    records = [record("package_tuned", "a", 0.90, package_test_pr_auc=0.40, pushed_model="baseline"),
               record("package_tuned", "b", 0.70, package_test_pr_auc=0.7004, pushed_model="candidate"),
               record("lightgbm_default", "a", 0.50), record("lightgbm_default", "b", 0.60)]
    derived = confirm_report.candidate_records(records)
    assert [(r["dataset"], r["pr_auc"], r["contender"]) for r in derived] == [
        ("a", 0.40, confirm_report.PACKAGE_CANDIDATE), ("b", 0.7004, confirm_report.PACKAGE_CANDIDATE)]
    block = confirm_report.candidate_block(records, ["lightgbm_default"], ["a", "b"])
    assert "a seed 0 (0.900 served, 0.400 candidate)" in block and "b seed 0" not in block
    row = next(line for line in block.splitlines() if line.startswith("| `lightgbm_default`"))
    assert row.split(" | ")[2:5] == ["0.550", "0.550", "+0.000"]  # means over a and b: (0.40 + 0.70) / 2 vs 0.55
