"""The report's PNG figures (matplotlib, Agg backend: no display, no network).

Each function draws one figure from values it is given (TFMA results, model
predictions or the run's files) and saves it; none computes a metric itself.
"""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")  # headless: never try to open a window

import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"candidate": "#c0392b", "baseline": "#2c3e50", "served": "#27ae60"}
DPI = 110


REFERENCE = "reference"  # gid of guide lines (diagonals, the chosen threshold): drawn, but not data
POINTS_KEY = "Data points"  # PNG text chunk: JSON {axis title: finite points drawn}


def _save(figure, path: str) -> str | None:
    """Saves the figure without its empty axes; None (nothing written) when no axis has data.

    The number of finite data points of each axis is written into the PNG's
    `Data points` text chunk, so a reader (and the tests) can check that
    no figure of the report is empty.
    """
    points = {}
    for index, axis in enumerate(list(figure.axes)):
        count = drawn_points(axis)
        if count == 0:
            figure.delaxes(axis)
        else:
            points[axis.get_title() or f"axis {index + 1}"] = count
    if not points:
        plt.close(figure)
        return None
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, metadata={POINTS_KEY: json.dumps(points)})
    plt.close(figure)
    return path


def drawn_points(axis) -> int:
    """Finite data points on an axis: line vertices, scatter offsets and image cells (guide lines excluded)."""
    import numpy as np

    count = 0
    for line in axis.lines:
        if line.get_gid() != REFERENCE:
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            count += int(np.sum(np.isfinite(x) & np.isfinite(y)))
    for collection in axis.collections:
        offsets = np.asarray(collection.get_offsets(), float).reshape(-1, 2)
        count += int(np.sum(np.isfinite(offsets).all(axis=1)))
    for image in axis.images:
        count += int(np.asarray(image.get_array()).size)
    return count


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
    roc_axis.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, gid=REFERENCE)
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
    axis.axvline(chosen, color="black", linestyle="--", linewidth=1, label=f"threshold {chosen:.3f}", gid=REFERENCE)
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
        axis.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, label="perfect", gid=REFERENCE)
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


# (history key, panel title, x axis): what a training curve panel shows, if any history has it.
TRAINING_PANELS = [
    ("pr_auc", "neural: PR-AUC per epoch", "epoch"),
    ("round_val_pr_auc", "trees: validation PR-AUC per boosting round", "boosting round"),
    ("loss", "neural: loss per epoch", "epoch"),
    ("minority_recall", "neural: minority recall (at 0.5) per epoch", "epoch"),
]


def training_curves(histories: dict[str, dict[str, list[float]]], path: str) -> str | None:
    """Did the weighting help? Weighted vs unweighted on the same axes, per epoch and per boosting round.

    A panel is drawn for each curve some history has: neural members log
    per-epoch Keras metrics (train solid, validation dashed); tree members
    log LightGBM's held-out average precision per boosting round
    (`round_val_pr_auc`), with a dot at the round kept. A blend has both.

    Args:
      histories: run.json key (`weighted`, `baseline`) -> history (`RUN/history/`).
      path: Output PNG.

    Returns:
      `path`, or None when no history has any curve.
    """
    panels = [p for p in TRAINING_PANELS if any(_series(h, p[0]) for h in histories.values())]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    colors = {"weighted": COLORS["candidate"], "baseline": COLORS["baseline"]}
    for axis, (key, title, x_label) in zip(axes[0], panels, strict=True):
        for run_key, history in histories.items():
            name = "weighted" if run_key == "weighted" else "unweighted"
            for series_key, style, split in _series(history, key):
                values = history[series_key]
                axis.plot(range(1, len(values) + 1), values, style, color=colors.get(run_key),
                          label=f"{name} {split}", marker="." if len(values) < 60 else None)
            if key == "round_val_pr_auc" and history.get("rounds") and history.get(key):
                kept = min(int(history["rounds"][0]), len(history[key]))
                axis.plot([kept], [history[key][kept - 1]], "o", color=colors.get(run_key))
        axis.set(xlabel=x_label, title=title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _save(figure, path)


def _series(history: dict, key: str) -> list[tuple[str, str, str]]:
    """(history key, line style, split) of the curves of `key` a history has."""
    if key == "round_val_pr_auc":
        candidates = [(key, "--", "validation")]
    else:
        candidates = [(key, "-", "train"), (f"val_{key}", "--", "validation")]
    return [c for c in candidates if history.get(c[0])]
