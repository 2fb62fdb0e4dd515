"""Optional Weights & Biases logging of a finished execution (`tuning.task --wandb offline|online`).

The execution is logged once it is complete, from what it wrote (`run.json`,
`history/`, `tuning/trials.csv`, the test split, `report/`), so a W&B problem
can never cost a training run, and the logged numbers are the run's own:

- config: the run configuration and the best hyperparameters;
- history: the per-epoch metrics of the weighted model and of its unweighted
  baseline (`weighted/val_pr_auc`, `baseline/loss`, ...; step = epoch);
- the PR curve of each exported model on the test split (`test/pr_curve_weighted`,
  `test/pr_curve_baseline`), the trials table (`tuning/trials`), and the
  test metrics, verdict and push in the run summary;
- the HTML report directory as an artifact of type `report`.

Offline, the run is written to `<execution>/wandb/offline-run-*/` and needs
no account or network (`wandb sync` uploads it later). wandb is the optional
`tracking` extra: `pip install 'imbalance-tf[tracking]'`.
"""

from __future__ import annotations

import importlib.util
import os
import re

import numpy as np

from evaluation.predictions import predict_test
from evaluation.run_files import RUN_KEYS, load_histories, load_trials, run_models, run_schema, split_pattern
from trainer.config import ConfigError
from trainer.summary import RunSummary, read_run

INSTALL_HINT = "pip install 'imbalance-tf[tracking]'  (or: pip install wandb)"
CLASS_NAMES = ["majority", "minority"]  # class ids 0 and 1 in the PR curve's legend


class TrackingError(RuntimeError):
    """W&B refused the run (e.g. online without an API key, or no network)."""


def require_wandb() -> None:
    """Fails with one line, before any work, when wandb is asked for but not installed.

    Raises:
      ConfigError: wandb cannot be imported.
    """
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"--wandb needs the wandb package, which is not installed: {INSTALL_HINT}")


def log_execution(execution_dir: str, mode: str, project: str) -> str:
    """Logs a finished execution (or a `trainer.task`-style run directory) as one W&B run.

    Args:
      execution_dir: The execution's directory (`RUN/executions/<id>`).
      mode: `offline` or `online` (`wandb.init`'s mode).
      project: The W&B project.

    Returns:
      Where the run is: its local directory (offline) or its URL (online).

    Raises:
      TrackingError: wandb failed (its own errors, in one line).
    """
    import wandb

    try:
        return _log(wandb, execution_dir, mode, project)
    except wandb.errors.Error as error:
        raise TrackingError(str(error).splitlines()[0] if str(error) else type(error).__name__) from None


def _log(wandb, execution_dir: str, mode: str, project: str) -> str:
    run_json = read_run(execution_dir)
    run = wandb.init(project=project, dir=execution_dir, mode=mode, name=run_name(execution_dir, run_json),
                     job_type="tune", config=run_config(run_json),
                     # Quiet: the command prints its own summary; no system metrics of a finished run.
                     settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
    try:
        _log_epochs(run, execution_dir)
        _log_trials(run, execution_dir)
        _log_pr_curves(run, execution_dir, run_json)
        run.summary.update(run_summary(run_json))
        _log_report(run, run_json)
        where = run.url if mode == "online" else os.path.dirname(run.dir)  # run.dir is the run's files/
    finally:
        run.finish()
    return where


def run_name(execution_dir: str, run_json: RunSummary) -> str:
    """`<run directory name>-<execution id>` (e.g. `sylva-0001`), or the directory's name."""
    execution = (run_json.execution or {}).get("id")
    if execution is None:
        return os.path.basename(os.path.abspath(execution_dir))
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(execution_dir)))  # RUN/executions/<id>
    return f"{os.path.basename(run_dir)}-{execution}"


def run_config(run_json: RunSummary) -> dict:
    """The run configuration, the exported model's hyperparameters and how it was weighted."""
    weighted = run_json.weighted
    model = {"hyperparameters": {}, "model_family": None, "loss": None, "weight_ratio": None} if weighted is None \
        else {"hyperparameters": weighted.hyperparameters or {}, "model_family": weighted.model_family,
              "loss": weighted.loss, "weight_ratio": weighted.weight_ratio}
    return {**(run_json.config or {}), **model, "execution": (run_json.execution or {}).get("id")}


def epoch_rows(histories: dict[str, dict[str, list[float]]]) -> list[dict[str, float]]:
    """One row per epoch: `{"<model>/<metric>": value}` over both models (rows as long as the longest)."""
    epochs = max((len(values) for history in histories.values() for values in history.values()), default=0)
    return [{f"{model}/{metric}": values[epoch]
             for model, history in histories.items() for metric, values in history.items() if epoch < len(values)}
            for epoch in range(epochs)]


def run_summary(run_json: RunSummary) -> dict:
    """Test metrics of both models, the verdict and the push, as flat W&B summary keys."""
    summary = {}
    for model in RUN_KEYS.values():
        section = run_json.model(model)
        if section is not None and section.test is not None:
            for metric, value in section.test.to_json().items():
                summary[f"{model}/test_{metric}"] = value
    evaluation, push = run_json.evaluation, run_json.push or {}
    if evaluation is not None:
        summary["verdict"] = evaluation.verdict
    if push:
        summary["pushed_version"] = push.get("version")
    return summary


def _log_epochs(run, execution_dir: str) -> None:
    for epoch, row in enumerate(epoch_rows(load_histories(execution_dir))):
        run.log({**row, "epoch": epoch}, step=epoch)


def _log_trials(run, execution_dir: str) -> None:
    import wandb

    rows = load_trials(execution_dir)
    if rows:
        columns = list(rows[0])
        run.log({"tuning/trials": wandb.Table(columns=columns,
                                              data=[[_number_or_text(row[c]) for c in columns] for row in rows])})


def _number_or_text(value: str):
    """A CSV cell as a number where it is one (so W&B can plot the trials), else as text."""
    try:
        return float(value)
    except ValueError:
        return value


def _log_pr_curves(run, execution_dir: str, run_json: RunSummary) -> None:
    """Each exported model's PR curve on the test split (W&B's own chart, interpolated precision)."""
    import wandb

    schema, pattern = run_schema(execution_dir), split_pattern(execution_dir, "test")
    for model in run_models(execution_dir, run_json):
        key = RUN_KEYS[model.name]
        outputs = predict_test(model.path, pattern, schema)
        scores = outputs["scores"]
        pr_auc = run_json.model(key).test.pr_auc
        run.log({f"test/pr_curve_{key}": wandb.plot.pr_curve(
            outputs["labels"], np.stack([1.0 - scores, scores], axis=1), labels=CLASS_NAMES, classes_to_plot=[1],
            title=f"Test PR curve, {key} model (PR-AUC {pr_auc:.4f})")})


def _log_report(run, run_json: RunSummary) -> None:
    """The report directory (index.html and its PNGs) as an artifact; nothing when it was not evaluated."""
    import wandb

    report = run_json.evaluation.report if run_json.evaluation else None
    if not report or not os.path.exists(report):
        return
    artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", f"report-{run.name}"), type="report",
                              description="the execution's HTML report (index.html and its figures)")
    root = os.path.dirname(report)
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(directory, name)
            # File by file: `add_dir` prints a progress line. Immutable: referenced where it is,
            # not copied into wandb's staging area first.
            artifact.add_file(path, name=os.path.relpath(path, root), policy="immutable")
    run.log_artifact(artifact)
