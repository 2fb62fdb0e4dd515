"""The report's PNG figures (matplotlib, Agg backend: no display, no network).

Each function draws one figure from values it is given (TFMA results, model
predictions or the run's files) and saves it; none computes a metric itself.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # headless: never try to open a window

import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"candidate": "#c0392b", "baseline": "#2c3e50", "served": "#27ae60"}
DPI = 110


def _save(figure, path: str) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def pr_roc_curves(curves: dict[str, dict], operating: dict[str, dict], labels: dict[str, str], path: str) -> str:
    """PR and ROC curves of each model, with its operating point.

    Args:
      curves: model -> TFMA ConfusionMatrixPlot points (`precision`, `recall`, `fpr`).
      operating: model -> {`precision`, `recall`, `fpr`} at its own threshold.
      labels: model -> legend label.
      path: Output PNG.
    """
    figure, (pr_axis, roc_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, curve in curves.items():
        color = COLORS.get(name)
        pr_axis.plot(curve["recall"], curve["precision"], color=color, label=labels[name])
        roc_axis.plot(curve["fpr"], curve["recall"], color=color, label=labels[name])
        point = operating.get(name)
        if point:
            pr_axis.plot(point["recall"], point["precision"], "o", color=color, markersize=7)
            roc_axis.plot(point["fpr"], point["recall"], "o", color=color, markersize=7)
    roc_axis.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    pr_axis.set(xlabel="recall (minority)", ylabel="precision (minority)", title="Precision-recall (test)",
                xlim=(0, 1), ylim=(0, 1.02))
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)",
                 xlim=(0, 1), ylim=(0, 1.02))
    for axis in (pr_axis, roc_axis):
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8, title="dot = model's threshold", title_fontsize=8)
    return _save(figure, path)


def confusion_matrices(matrices: dict[str, dict], labels: dict[str, str], path: str) -> str:
    """2x2 confusion matrices, one per model, at each model's own threshold."""
    figure, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8), squeeze=False)
    for axis, (name, m) in zip(axes[0], matrices.items(), strict=False):
        cells = [[m["tn"], m["fp"]], [m["fn"], m["tp"]]]  # rows: true 0, 1; columns: predicted 0, 1
        axis.imshow([[math.log1p(v) for v in row] for row in cells], cmap="Blues")
        for i in range(2):
            for j in range(2):
                row_total = sum(cells[i]) or 1.0
                axis.text(j, i, f"{int(cells[i][j]):,}\n{cells[i][j] / row_total:.1%} of row", ha="center",
                          va="center", fontsize=9, color="black",
                          bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"})
        axis.set_xticks([0, 1], ["pred 0", "pred 1 (minority)"])
        axis.set_yticks([0, 1], ["true 0", "true 1"])
        axis.set_title(f"{labels[name]}\nthreshold {m['threshold']:.4f}", fontsize=10)
    return _save(figure, path)


def threshold_explorer(curve: dict[str, list[float]], chosen: float, cost_ratio: float | None, path: str) -> str:
    """Precision, recall and F1 (and expected cost, for a cost objective) against the threshold.

    Args:
      curve: TFMA's ConfusionMatrixPlot points (`evaluation.results`), with counts.
      chosen: The model's decision threshold (a vertical line).
      cost_ratio: cost_fn / cost_fp of a `cost:FN:FP` objective, or None.
    """
    import numpy as np

    t = np.asarray(curve["threshold"], dtype=float)
    precision, recall = np.asarray(curve["precision"]), np.asarray(curve["recall"])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    figure, axis = plt.subplots(figsize=(8, 4))
    for values, name, color in ((precision, "precision", "#2980b9"), (recall, "recall", "#c0392b"),
                                (f1, "F1", "#27ae60")):
        axis.plot(t, values, color=color, label=name)
    axis.axvline(chosen, color="black", linestyle="--", linewidth=1, label=f"threshold {chosen:.3f}")
    axis.set_xlabel("threshold on the minority probability")
    axis.set_ylim(0, 1.02)
    axis.set_xlim(0, 1)
    if cost_ratio is not None:
        cost = cost_ratio * np.asarray(curve["fn"]) + np.asarray(curve["fp"])  # in units of one false alarm
        twin = axis.twinx()
        twin.plot(t, cost, color="#7f8c8d", linestyle=":", label="expected cost")
        twin.set_ylabel("expected cost (false-alarm units)")
    axis.legend(loc="lower left", fontsize=8)
    return _save(figure, path)


def reliability(tables: dict[str, dict[str, dict]], labels: dict[str, str], path: str) -> str:
    """Reliability diagrams: before (sigmoid of logit) and after calibration, per model.

    Args:
      tables: model -> {"before": bins, "after": bins}; bins have `mean_prediction`,
        `mean_label`, `count`.
    """
    figure, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4.3), squeeze=False)
    for axis, (name, table) in zip(axes[0], tables.items(), strict=False):
        axis.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, label="perfect")
        for stage, style in (("before", "s--"), ("after", "o-")):
            bins = table.get(stage)
            if bins and bins["mean_prediction"]:
                axis.plot(bins["mean_prediction"], bins["mean_label"], style, label=f"{stage} correction",
                          color=COLORS.get(name) if stage == "after" else "#7f8c8d")
        axis.set(xlabel="mean predicted minority probability", ylabel="observed minority rate",
                 title=labels[name], xlim=(0, 1), ylim=(0, 1))
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def trials(rows: list[dict], path: str) -> str:
    """The tuner's trials: objective vs weight ratio (log x), best circled."""
    points = [(float(r["weight_ratio"]), float(r["objective"]), r.get("loss", "")) for r in rows
              if _is_number(r.get("weight_ratio")) and _is_number(r.get("objective"))]
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for family in sorted({p[2] for p in points}):
        chosen = [p for p in points if p[2] == family]
        axis.scatter([p[0] for p in chosen], [p[1] for p in chosen], label=family or "trial", alpha=0.8)
    if points:
        best = max(points, key=lambda p: p[1])
        axis.scatter([best[0]], [best[1]], s=160, facecolors="none", edgecolors="black", label="best")
    axis.set_xscale("log")
    axis.set(xlabel="weight ratio w1 / w0 (log scale)", ylabel="objective (validation)",
             title=f"Tuner trials ({len(points)} completed)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    return _save(figure, path)


def _is_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def training_curves(histories: dict[str, dict[str, list[float]]], path: str) -> str:
    """Did the weighting help? Loss, accuracy, minority recall per epoch, weighted vs not."""
    metrics = [("loss", "loss"), ("accuracy", "accuracy"), ("minority_recall", "minority recall (at 0.5)")]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colors = {"weighted": COLORS["candidate"], "baseline": COLORS["baseline"]}
    for axis, (key, title) in zip(axes, metrics, strict=False):
        for run_key, history in histories.items():
            for prefix, style, split in (("", "-", "train"), ("val_", "--", "validation")):
                values = history.get(prefix + key)
                if values:
                    epochs = range(1, len(values) + 1)
                    label = f"{'weighted' if run_key == 'weighted' else 'unweighted'} {split}"
                    axis.plot(epochs, values, style, color=colors.get(run_key), label=label, marker=".")
        axis.set(xlabel="epoch", title=title)
        axis.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # tree models have no per-epoch curves
        axes[0].legend(fontsize=7)
    return _save(figure, path)
