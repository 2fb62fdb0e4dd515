"""Markdown tables from `benchmarks/results/*.json`, and their place in docs/benchmarks.md.

Only the text between the `<!-- bench:... -->` markers is ever replaced; the
rest of the document (e.g. the "## Serving" section) is left as it is.
"""

from __future__ import annotations

import os

from benchmarks.contenders import ALL
from benchmarks.metrics import HIGHER_IS_BETTER, METRICS

START, END = "<!-- bench:start (written by benchmarks/run.py) -->", "<!-- bench:end -->"
METRIC_TITLES = {"pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "recall_at_p50": "recall @ precision≥0.5",
                 "f1_at_threshold": "F1 @ own threshold", "brier": "Brier"}


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub markdown table; `align` is one char per column, `l` or `r` (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(cell: dict, digits: int = 3) -> str:
    if cell["n"] > 1:
        return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"
    return f"{cell['mean']:.{digits}f}"


def _best(contenders: dict, metric: str) -> float:
    values = [c[metric]["mean"] for c in contenders.values()]
    return max(values) if HIGHER_IS_BETTER[metric] else min(values)


def quality_section(payload: dict, results_name: str) -> str:
    seeds = len(payload["seeds"])
    parts = ["## Model quality", "",
             f"Mode `{payload['mode']}`: {seeds} seed(s) ({', '.join(map(str, payload['seeds']))}); every contender "
             "trains on the same stratified 70/15/15 split (`trainer.split.assign_splits(labels, split, seed)`; "
             "the package's own split was checked to be identical: per-split class counts and a feature "
             "checksum of the test TFRecords), picks its decision threshold on validation with "
             "`trainer.threshold.choose_threshold(..., \"recall_at_precision:0.5\")` and is scored on test. "
             "Cells are mean ± standard deviation over seeds; the best mean per column is in bold. "
             "Recall @ precision≥0.5 is the best recall on test among thresholds reaching that precision "
             "(0 when none does); F1 is at the threshold chosen on validation.", "",
             "Contenders:", ""]
    parts += [f"- `{name}`: {label}" for name, label in payload["contenders"].items()]
    parts += ["", _contender_notes(payload), "", "### Datasets", ""]
    parts.append(table(["dataset", "rows", "positives", "positive rate", "numeric / categorical features", "source"],
                       [[d["name"], f"{d['rows']:,}", f"{d['positives']:,}", f"{100 * d['positive_rate']:.2f}%",
                         f"{d['numeric_features']} / {d['categorical_features']}", f"`{d['source']}`"]
                        for d in payload["datasets"]], "lrrrrl"))
    if payload.get("ranks"):
        parts += ["", "### Summary over datasets", "",
                  "Mean rank per metric (1 = best of the six, average ranks for ties) and, in brackets, the "
                  "number of datasets where the contender has the best mean (ties split).", ""]
        names = [n for n in ALL if n in payload["ranks"]["pr_auc"]]
        rows = []
        for name in names:
            cells = [f"{payload['ranks'][m][name]['mean_rank']:.2f} ({payload['ranks'][m][name]['wins']:g})"
                     for m in METRICS]
            rows.append([f"`{name}`", *cells])
        parts.append(table(["contender", *[METRIC_TITLES[m] for m in METRICS]], rows))
        parts += ["", head_to_head(payload["table"], "package_weighted", "package_unweighted")]
    for dataset, contenders in payload.get("table", {}).items():
        parts += ["", f"### {dataset}", ""]
        best = {m: _best(contenders, m) for m in METRICS}
        rows = []
        for name in [n for n in ALL if n in contenders]:
            cells = []
            for metric in METRICS:
                text = mean_std(contenders[name][metric], 4 if metric == "brier" else 3)
                cells.append(f"**{text}**" if contenders[name][metric]["mean"] == best[metric] else text)
            rows.append([f"`{name}`", *cells, f"{contenders[name]['train_seconds']['mean']:.1f}"])
        parts.append(table(["contender", *[METRIC_TITLES[m] for m in METRICS], "train s"], rows))
    if payload.get("failures"):
        parts += ["", "Failures (not in the tables): " + "; ".join(
            f"{f['dataset']} seed {f['seed']} {f.get('contender', 'package')}: {f['error']}"
            for f in payload["failures"])]
    parts += ["", f"Raw records (every seed, thresholds, epochs run, LightGBM trees): "
              f"`benchmarks/results/{results_name}`."]
    return "\n".join(parts)


def head_to_head(table_: dict, first: str, second: str) -> str:
    """One sentence: on how many datasets `first`'s mean beats `second`'s, per metric."""
    counts = []
    for metric in METRICS:
        pairs = [(c[first][metric]["mean"], c[second][metric]["mean"]) for c in table_.values()
                 if first in c and second in c]
        better = sum((a > b) if HIGHER_IS_BETTER[metric] else (a < b) for a, b in pairs)
        counts.append(f"{METRIC_TITLES[metric]} {better} of {len(pairs)}")
    return f"Head to head, `{first}` has the better mean than `{second}` on: " + ", ".join(counts) + " datasets."


def _contender_notes(payload: dict) -> str:
    return (f"The package models train with `train_and_export` at their defaults (epochs ≤ "
            f"{payload['package_epochs']}, early stopping on validation PR-AUC with patience 5; the weighted one "
            "uses ratio N0/N1 and prior-shift calibration), from a Parquet copy of the data through the package's "
            "own ingest, Beam split and schema; no tuning. \"train s\" for them includes calibration, threshold "
            "and SavedModel export. The scikit-learn pipelines impute (mean + missing indicators), scale and "
            "one-hot encode (ordinal for the forest); LightGBM (learning rate 0.1, early stopping on validation "
            "average precision, patience 50) handles missing values and categoricals natively. Their Brier "
            "scores are those of their raw `predict_proba` (class weighting and resampling inflate the minority "
            "probability; the package's exported probabilities are calibrated).")


def speed_section(payload: dict, results_name: str) -> str:
    sizes = payload["sizes"]
    parts = ["## Training, tuning and evaluation speed", "",
             f"Mode `{payload['mode']}`, {payload['cpus']} CPUs, synthetic data "
             "(`trainer.synthetic.make_synthetic`, 5.8% positive) at three sizes (1/10, 1/4, 1/1). "
             "Ratios are against a reference measured in the same script.", "",
             "### Training input pipeline", "",
             "The same compiled model (default hyperparameters, batch 256, weighted loss and training metrics) "
             "fed by the package's `trainer.dataset.make_dataset` (gzipped TFRecords, cached in memory after "
             "the first pass, shuffled, parsed per batch) vs by the same batches already parsed into in-memory "
             "tensors (`tf.data.Dataset.from_tensor_slices(...).batch().cache()`, filled beforehand: the "
             "ceiling). Warm = mean of epochs 2 and 3; cold = epoch 1 (file reads, decompression, cache fill "
             "and the tf.function trace). No validation pass in these epochs.", ""]
    rows = []
    for s in sizes:
        t = s["throughput"]
        rows.append([f"{s['rows']:,}", f"{t['train_examples']:,}", f"{t['package_cold_examples_per_s']:,.0f}",
                     f"{t['package_warm_examples_per_s']:,.0f}", f"{t['in_memory_examples_per_s']:,.0f}",
                     f"{t['warm_ratio_vs_in_memory']:.2f}", f"{t['cold_ratio_vs_in_memory']:.2f}",
                     f"{s['prepare_seconds']:.1f}"])
    parts.append(table(["rows", "train examples", "package cold ex/s", "package warm ex/s", "in-memory ex/s",
                        "warm / in-memory", "cold / in-memory", "prepare_data s (Beam split)"], rows))
    parts += ["", "### Evaluation: TFMA vs plain batch inference", "",
              "`evaluation.run_evaluation(RUN)` (TFMA over the test TFRecords for the weighted model and the "
              "unweighted baseline in one Beam pipeline, default options: overall, label and categorical slices "
              "with ≤ 20 values; then blessing and the HTML report) vs the plain alternative "
              "(`benchmarks/worker.py infer`): both SavedModels' `serving_default` in batches of 4,096 over the "
              "same test TFRecords, plus PR-AUC, ROC-AUC, confusion matrix at each model's threshold, Brier and "
              "a calibration histogram with scikit-learn / NumPy, for the same slices. TFMA s is the Beam "
              "pipeline's wall time as `run_evaluation` reports it (`tfma_seconds`); process s includes Python "
              "and TensorFlow start-up. What drives TFMA's cost, and how the metric layout was chosen, is in "
              "the \"Evaluation\" section below.", ""]
    rows = []
    for s in [s for s in sizes if "evaluate" in s]:
        e, i = s["evaluate"], s["infer"]
        rows.append([f"{s['rows']:,}", f"{i['examples']:,}", f"{e['tfma_seconds']:.1f}",
                     f"{e['run_evaluation_seconds']:.1f}", f"{i['infer_seconds']:.2f}",
                     f"{s['tfma_vs_plain_ratio']:.0f}x", f"{e['process_wall_seconds']:.1f}",
                     f"{i['process_wall_seconds']:.1f}", f"{s['evaluate_vs_infer_process_ratio']:.1f}x"])
    parts.append(table(["rows", "test examples", "TFMA s", "run_evaluation s (+ report)", "plain s",
                        "TFMA / plain", "evaluate process s", "plain process s", "process ratio"], rows))
    parts += ["", "### Memory (peak RSS of a subprocess)", "",
              "Each job runs in its own process (`python -m benchmarks.worker`) and reports its own peak RSS "
              "(`VmHWM` of /proc/self/status). `getrusage(RUSAGE_CHILDREN).ru_maxrss` is not used: Linux "
              "carries the forking runner's high-water mark into the child at exec, so it reported the "
              "runner's ~1.8 GiB for every job. Training = `train_and_export` of the weighted model and then "
              "the baseline, 2 epochs each, including calibration, test metrics and export.", ""]
    rows = []
    for s in [s for s in sizes if "train" in s]:
        rows.append([f"{s['rows']:,}", f"{s['train']['peak_rss_mib']:,.0f}", f"{s['train']['process_wall_seconds']:.1f}",
                     f"{s['evaluate']['peak_rss_mib']:,.0f}", f"{s['infer']['peak_rss_mib']:,.0f}"])
    parts.append(table(["rows", "training MiB", "training process s", "evaluation (TFMA) MiB",
                        "plain inference MiB"], rows))
    parts += ["", "### Tuning", ""]
    rows = []
    if payload.get("tuning"):
        t = payload["tuning"]
        rows.append([f"small `run_tuning` (Bayesian, {t['trials']} trials × {t['tuning_epochs']} epochs), synthetic, "
                     f"{t['train_examples']:,} training examples", f"{t['seconds_per_trial']:.1f}",
                     f"{t['search_seconds']:.1f}", f"{t['run_tuning_seconds']:.1f}"])
    tune = payload.get("make_tune")
    if tune:  # benchmarks.make_tune: the whole job, TFMA and report included
        rows.append([f"default `make tune` on sylva ({tune['trials']} trials × {tune['tuning_epochs']} epochs), "
                     f"whole job incl. TFMA and report: {tune['total_seconds']:.0f} s",
                     f"{tune['seconds_per_trial']:.1f}", f"{tune['search_seconds']:.1f}", "—"])
    else:
        rows.append(["default `make tune` on sylva: run `make bench-tune`", "—", "—", "—"])
    parts.append(table(["run", "s per trial", "search s", "run_tuning s (+ retrain best and baseline, "
                        f"{payload.get('tuning', {}).get('retrain_epochs', '?')} epoch)"], rows, "lrrr"))
    if payload.get("tuning_error"):
        parts += ["", f"The tuning measurement failed: `{payload['tuning_error'].splitlines()[-1][:300]}`"]
    parts += ["", f"Raw numbers: `benchmarks/results/{results_name}`."]
    return "\n".join(parts)


def render(quality: dict | None, speed: dict | None, names: dict[str, str], command: str) -> str:
    """The whole generated block, markers included."""
    parts = [START, "", f"Reproduce: {command}. Results in `benchmarks/results/`.", ""]
    if quality:
        parts += [quality_section(quality, names["quality"]), ""]
    if speed:
        parts += [speed_section(speed, names["speed"]), ""]
    parts.append(END)
    return "\n".join(parts)


def update_doc(path: str, block: str) -> None:
    """Puts `block` between the markers, or above "## Serving" (or at the end) the first time."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + block + after
    elif "## Serving" in text:
        before, after = text.split("## Serving", 1)
        text = before + block + "\n\n## Serving" + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as handle:
        handle.write(text)
