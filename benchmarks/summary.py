"""Markdown tables from `benchmarks/results/*.json`, and their place in docs/benchmarks.md.

Only the text between the `<!-- bench:... -->` markers is ever replaced; the
rest of the document (e.g. the "## Serving" section) is left as it is.
"""

from __future__ import annotations

import os

from benchmarks.contenders import ALL, LABELS, TUNED, TUNING
from benchmarks.metrics import HIGHER_IS_BETTER, METRICS
from benchmarks.quality import aggregate, common_datasets, overview, ranks
from benchmarks.selection import CV_FOLDS, CV_MAX_VALIDATION_POSITIVES

START, END = "<!-- bench:start (written by benchmarks/run.py) -->", "<!-- bench:end -->"
METRIC_TITLES = {"pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "recall_at_p50": "recall @ precision≥0.5",
                 "f1_at_threshold": "F1 @ own threshold", "recall_at_threshold": "recall @ own threshold",
                 "precision_at_threshold": "precision @ own threshold", "brier": "Brier"}
MISSING = "—"
HEAD_TO_HEAD = (("package_weighted", "package_unweighted"), ("package_tuned", "package_weighted"),
                ("lightgbm_tuned", "lightgbm_spw"), ("package_tuned", "lightgbm_tuned"),
                ("package_tuned", "ydf_gbt_tuned"))


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


def _digits(metric: str) -> int:
    return 4 if metric == "brier" else 3


def _best(contenders: dict, metric: str) -> float | None:
    values = [c[metric]["mean"] for c in contenders.values() if metric in c]
    if not values:
        return None
    return max(values) if HIGHER_IS_BETTER[metric] else min(values)


def _ordered(names) -> list[str]:
    names = set(names)
    return [n for n in ALL if n in names] + sorted(names - set(ALL))


def trial_budgets(records: list[dict]) -> dict[str, str]:
    """{contender: "10" | "3, 10"}: the trial counts its rows were tuned with."""
    seen: dict = {}
    for row in records:
        if row.get("trials") is not None:
            seen.setdefault(row["contender"], set()).add(int(row["trials"]))
    return {name: ", ".join(str(t) for t in sorted(values)) for name, values in seen.items()}


def _tuned_label(name: str, budgets: dict) -> str:
    if name not in TUNED:
        return "no"
    return f"yes, {budgets[name]} trials" if name in budgets else "yes"


def validation_positives(positives: int, fraction: float) -> int:
    """Positives in the validation split: `assign_splits` takes round(N_1 * fraction) of them."""
    return int(round(positives * fraction))


def quality_section(payload: dict, results_name: str) -> str:
    seeds = len(payload["seeds"])
    records = payload.get("records", [])
    # Recomputed from the records, so a file written by older code renders with today's columns.
    table_ = aggregate(records, [d["name"] for d in payload["datasets"]]) if records else payload.get("table", {})
    budgets = trial_budgets(records)
    ran = {c for cells in table_.values() for c in cells}
    parts = ["## Model quality (development sets: defaults were chosen on them)", "",
             f"Mode `{payload['mode']}`: {seeds} seed(s) ({', '.join(map(str, payload['seeds']))}); every contender "
             "trains on the same stratified 70/15/15 split (`trainer.data.split.assign_splits(labels, split, seed)`; "
             "the package's own split was checked to be identical: per-split class counts and a feature "
             "checksum of the test TFRecords), picks its decision threshold with "
             "`trainer.threshold.choose_threshold(..., \"recall_at_precision:0.5\")` (on validation, or on "
             "out-of-fold predictions for a tuned tree model chosen by cross-validation) and is scored on test. "
             "Cells are mean ± standard deviation over seeds (population sd: the seed-to-seed spread); the best "
             "mean per column is in bold. Recall @ precision≥0.5 is the best recall on test among thresholds "
             "reaching that precision (0 when none does); F1, recall and precision \"@ own threshold\" are at "
             f"the threshold the contender chose (precision 0 when it flags nothing). {MISSING} = not recorded "
             "(rows written before that metric existed: rerun the contender).", "",
             "### Contenders", ""]
    rows = []
    labels, tuning = {**payload.get("contenders", {}), **LABELS}, {**payload.get("tuning", {}), **TUNING}
    for name in _ordered(set(ALL) | ran):
        trials = budgets.get(name, MISSING if name not in TUNED else "none yet")
        rows.append([f"`{name}`", labels.get(name, name) + ("" if name in ran else " (no results yet)"),
                     tuning.get(name, MISSING), trials])
    parts.append(table(["contender", "model", "hyperparameters chosen by", "trials (budget)"], rows, "lllr"))
    parts += ["", _contender_notes(payload), "", "### Datasets", ""]
    fraction = payload["split"][1]
    parts.append(table(["dataset", "rows", "positives", "positive rate", "numeric / categorical features",
                        "validation positives: tuned trials scored by", "source"],
                       [[d["name"], f"{d['rows']:,}", f"{d['positives']:,}", f"{100 * d['positive_rate']:.2f}%",
                         f"{d['numeric_features']} / {d['categorical_features']}",
                         _selection_text(validation_positives(d["positives"], fraction)), f"`{d['source']}`"]
                        for d in payload["datasets"]], "lrrrrll"))
    present = _ordered(ran)
    if table_ and present:
        parts += ["", "### Summary over datasets", ""]
        common = common_datasets(table_, present)
        parts.append(summary_block(table_, present, common, budgets))
        everything = list(table_)
        complete = [n for n in present if all(n in table_[d] for d in everything)]
        if len(common) != len(everything) and len(complete) >= 2:
            parts += ["", summary_block(table_, complete, everything, budgets,
                                        [n for n in present if n not in complete])]
        sentences = [head_to_head(table_, a, b) for a, b in HEAD_TO_HEAD if a in present and b in present]
        if sentences:
            parts += ["", "\n".join(f"- {s}" for s in sentences)]
    for dataset, contenders in table_.items():
        parts += ["", f"### {dataset}", ""]
        best = {m: _best(contenders, m) for m in METRICS}
        rows = []
        for name in _ordered(contenders):
            cells = []
            for metric in METRICS:
                if metric not in contenders[name]:
                    cells.append(MISSING)
                    continue
                text = mean_std(contenders[name][metric], _digits(metric))
                cells.append(f"**{text}**" if contenders[name][metric]["mean"] == best[metric] else text)
            rows.append([f"`{name}`", *cells, f"{contenders[name]['train_seconds']['mean']:.1f}"])
        parts.append(table(["contender", *[METRIC_TITLES[m] for m in METRICS], "train s"], rows))
    if payload.get("failures"):
        parts += ["", "Failures (not in the tables): " + "; ".join(
            f"{f['dataset']} seed {f['seed']} {f.get('contender') or 'package'}: {f['error']}"
            for f in payload["failures"])]
    parts += ["", f"Raw records (every seed, thresholds, tuned hyperparameters and CV fold scores, epochs run, "
              f"trees): `benchmarks/results/{results_name}`. Rows are merged by (dataset, seed, contender), so one "
              "contender can be rerun alone, e.g. `.venv/bin/python -m benchmarks.run --full --only quality "
              "--contenders package_tuned` (add `--datasets a,b` for some datasets; without `--full`: the quick "
              "results, where tuned contenders get 3 trials or `--trials N`)."]
    return "\n".join(parts)


def _selection_text(positives: int) -> str:
    if positives < CV_MAX_VALIDATION_POSITIVES:
        return f"{positives}: {CV_FOLDS}-fold CV"
    return f"{positives}: validation"


def _wins(wins: float) -> str:
    return f"{wins:.0f}" if float(wins).is_integer() else f"{wins:.1f}"


def _fmt(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def summary_block(table_: dict, contenders: list[str], datasets: list[str], budgets: dict,
                  missing: list[str] = ()) -> str:
    """The per-contender overview and the mean ranks of every metric, over the same `datasets`.

    `missing`: contenders left out of this block for lack of results on some of the datasets.
    """
    if not datasets:
        return f"No dataset has results for all of {', '.join(contenders)} yet."
    left_out = [d for d in table_ if d not in datasets]
    scope = (f"Over the {len(datasets)} datasets where all {len(contenders)} contenders have results"
             + (f" (left out: {', '.join(left_out)})" if left_out else "")
             + (f"; without {', '.join(f'`{n}`' for n in missing)}, which lack results on some of them"
                if missing else "") + ".")
    parts = [scope + " Mean PR-AUC, recall, precision and Brier are means over datasets of the per-dataset means; "
             "the spread is the seed-to-seed standard deviation of PR-AUC on a dataset, averaged over the "
             "datasets with more than one seed; the PR-AUC rank is the mean rank over datasets (1 = best, ties "
             "share their average "
             "rank), with the number of datasets won in brackets.", ""]
    stats = overview(table_, contenders, datasets)
    rank = ranks(table_, contenders, datasets)
    best = {}
    for metric in ("pr_auc", "brier"):
        values = [stats[n][metric] for n in contenders if stats[n][metric] is not None]
        best[metric] = (max(values) if HIGHER_IS_BETTER[metric] else min(values)) if values else None
    best_rank = min(rank["pr_auc"][n]["mean_rank"] for n in contenders) if "pr_auc" in rank else None
    rows = []
    for name in contenders:
        s = stats[name]
        pr = _fmt(s["pr_auc"])
        brier = _fmt(s["brier"], 4)
        if "pr_auc" in rank:
            r = rank["pr_auc"][name]
            rank_text = f"{r['mean_rank']:.2f} ({_wins(r['wins'])})"
            rank_text = f"**{rank_text}**" if r["mean_rank"] == best_rank else rank_text
        else:
            rank_text = MISSING
        rows.append([f"`{name}`", _tuned_label(name, budgets),
                     f"**{pr}**" if s["pr_auc"] is not None and s["pr_auc"] == best["pr_auc"] else pr,
                     rank_text, _fmt(s["pr_auc_spread"]), _fmt(s["recall_at_threshold"]),
                     _fmt(s["precision_at_threshold"]),
                     f"**{brier}**" if s["brier"] is not None and s["brier"] == best["brier"] else brier,
                     _fmt(s["train_seconds"], 1)])
    parts.append(table(["contender", "tuned", "mean PR-AUC", "PR-AUC mean rank (wins)", "spread (PR-AUC sd)",
                        "recall @ own threshold", "precision @ own threshold", "Brier", "train s"], rows,
                       "llrrrrrrr"))
    metrics = [m for m in METRICS if m in rank]
    if metrics:
        parts += ["", f"Mean rank per metric (1 = best of the {len(contenders)}; wins in brackets):", ""]
        rows = [[f"`{name}`", *[f"{rank[m][name]['mean_rank']:.2f} ({_wins(rank[m][name]['wins'])})" for m in metrics]]
                for name in contenders]
        parts.append(table(["contender", *[METRIC_TITLES[m] for m in metrics]], rows))
    return "\n".join(parts)


def head_to_head(table_: dict, first: str, second: str) -> str:
    """One sentence: on how many datasets `first`'s mean beats `second`'s, per metric."""
    counts = []
    for metric in METRICS:
        pairs = [(c[first][metric]["mean"], c[second][metric]["mean"]) for c in table_.values()
                 if first in c and second in c and metric in c[first] and metric in c[second]]
        if not pairs:
            continue
        better = sum((a > b) if HIGHER_IS_BETTER[metric] else (a < b) for a, b in pairs)
        counts.append(f"{METRIC_TITLES[metric]} {better} of {len(pairs)}")
    return f"Head to head, `{first}` has the better mean than `{second}` on: " + ", ".join(counts) + " datasets."


def _contender_notes(payload: dict) -> str:
    return (f"The untuned package models train with `train_and_export` at their defaults (epochs ≤ "
            f"{payload['package_epochs']}, early stopping on validation PR-AUC with patience 5; the weighted one "
            "uses ratio N0/N1 and prior-shift calibration), from a Parquet copy of the data through the package's "
            "own ingest, Beam split and schema. `package_tuned` is the package's whole tuning pipeline "
            "(`tuning.pipeline.run_tuning`, fresh run directory, `max_trials` = the budget, its own trial scoring "
            "and threshold), scored on the same test TFRecords; its \"train s\" is the search plus the retraining "
            "of the best weighted model. \"train s\" of the package models includes calibration, threshold and "
            "SavedModel export. The scikit-learn pipelines impute (mean + missing indicators), scale and "
            "one-hot encode (ordinal for the forest); LightGBM (learning rate 0.1, early stopping on validation "
            "average precision, patience 50) handles missing values and categoricals natively. "
            "The tuned tree models (`benchmarks/tuned.py`) get the package tuner's budget and selection rule "
            f"(`benchmarks/selection.py`): with fewer than {CV_MAX_VALIDATION_POSITIVES} validation positives a "
            f"trial scores the mean average precision over stratified {CV_FOLDS}-fold CV of the train + validation "
            "rows (`StratifiedKFold(shuffle=True, random_state=seed)`) and the best parameters are refit on all of "
            "them, threshold from the out-of-fold predictions; otherwise a trial scores validation average "
            "precision after training on train, and that model is kept. Optuna's TPE sampler is seeded with the "
            "split seed; the rows in these development tables started from 3 random trials (as the package's "
            "Bayesian tuner does), while runs since the confirmation protocol (records with `first_trial`) make the library's "
            "defaults the first trial (`benchmarks.tuned.DEFAULTS`), then 2 random ones. Search spaces: "
            "LightGBM num_leaves 4–128, learning_rate 0.01–0.3, min_child_samples 2–100, feature_fraction "
            "0.4–1, bagging_fraction 0.5–1, lambda_l2 1e-3–10, scale_pos_weight 1–N0/N1 (log scales where "
            "ranges span decades), trees by early stopping (patience 50, ≤ 1000) on the held-out part, the refit "
            "using the folds' mean; YDF num_trees 20–500, shrinkage 0.02–0.3, max_depth 3–8, min_examples 2–50, "
            "subsample 0.5–1, l2_regularization 1e-4–10, class weight of the positives 1–N0/N1. Their \"train "
            "s\" is the whole search plus the refit. Brier scores are those of the raw `predict_proba` (class "
            "weighting and resampling inflate the minority probability; the package's exported probabilities "
            "are calibrated).")


def speed_section(payload: dict, results_name: str) -> str:
    sizes = payload["sizes"]
    parts = ["## Training, tuning and evaluation speed", "",
             f"Mode `{payload['mode']}`, {payload['cpus']} CPUs, synthetic data "
             "(`trainer.data.synthetic.make_synthetic`, 5.8% positive) at three sizes (1/10, 1/4, 1/1). "
             "Ratios are against a reference measured in the same script.", "",
             "### Training input pipeline", "",
             "The same compiled model (default hyperparameters, batch 256, weighted loss and training metrics) "
             "fed by the package's `trainer.data.dataset.make_dataset` (gzipped TFRecords, cached in memory after "
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
              "Measured by `benchmarks/speed.py` before the push-gate work and the histogram-derived metrics; "
              "the current figures are in \"TFMA's cost after deriving means and class 0 from the shared "
              "histogram\" above (`benchmarks/evaluation_speed.py`). "
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


def render(quality: dict | None, speed: dict | None, names: dict[str, str], command: str,
           confirmation: str | None = None) -> str:
    """The whole generated block, markers included; the confirmation section comes first."""
    parts = [START, ""]
    if confirmation:
        parts += [confirmation, ""]
    parts += [f"Reproduce: {command}. Results in `benchmarks/results/`.", ""]
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
