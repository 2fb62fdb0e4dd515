"""The confirmation section of docs/benchmarks.md, from `benchmarks/results/confirmation[-quick].json`.

Only confirmation sets enter it (`registry.CONFIRMATION`; a record of any
other set is ignored), so no mean here ever includes a development set.
"""

from __future__ import annotations

import numpy as np

from benchmarks import paired, registry
from benchmarks.autogluon_contender import AUTOGLUON
from benchmarks.contenders import PACKAGE_TUNED
from benchmarks.quality import aggregate, common_datasets, ranks
from benchmarks.summary import MISSING, mean_std, table

CHEAP_COMMAND = ("`.venv/bin/python -m benchmarks.confirm --contenders lightgbm_default,lightgbm_300_spw,"
                 "logreg_balanced,lightgbm_tuned,ydf_gbt_default,ydf_gbt_tuned`")
# Paired tests against the package first; tuned LightGBM as a second reference, so the tables say something
# before the package has run (and whether tuning beats a library's defaults on data nobody tuned on).
REFERENCES = (PACKAGE_TUNED, "lightgbm_tuned")
# The package scored as its candidate: on a first execution the gate may serve the unweighted twin instead
# when the twin beats it on the test split, and `package_tuned` then scores the twin on those same rows (a
# choice between two models made on the rows it is scored on). The candidate is chosen on held-out data alone.
PACKAGE_CANDIDATE = "package_tuned_candidate"


def ordered(names, contenders: tuple) -> list[str]:
    names = set(names)
    return [n for n in contenders if n in names] + sorted(names - set(contenders))


def wall_times(records: list[dict]) -> dict[str, dict]:
    """Per contender: total and mean wall seconds per split, and the number of splits."""
    seconds: dict = {}
    for row in records:
        seconds.setdefault(row["contender"], []).append(float(row.get("wall_seconds", row["train_seconds"])))
    return {name: {"total": float(np.sum(v)), "mean": float(np.mean(v)), "splits": len(v)}
            for name, v in seconds.items()}


def served_line(records: list[dict]) -> str:
    """"First runs that served a model: k of n" over the package's runs through `make tune`."""
    runs = [r for r in records if r["contender"] == PACKAGE_TUNED and "served" in r]
    if not runs:
        return f"First runs that served a model: no `{PACKAGE_TUNED}` run yet."
    served = sum(bool(r["served"]) for r in runs)
    reasons = sorted({str(r.get("push_reason")) for r in runs if not r["served"]})
    text = f"First runs that served a model: **{served} of {len(runs)}** (`{PACKAGE_TUNED}`, one fresh run per split)"
    return text + (f". The gate's reason where it pushed nothing: {'; '.join(reasons)}" if reasons else ".")


def summary_rows(table_: dict, records: list[dict], contenders: list[str], datasets: list[str]) -> list[list]:
    """One row per contender complete on `datasets`: means over datasets of per-dataset means, ranks, time."""
    rank = ranks(table_, contenders, datasets)
    times = wall_times(records)
    means = {n: {m: float(np.mean([table_[d][n][m]["mean"] for d in datasets])) for m in ("pr_auc", "roc_auc", "brier")}
             for n in contenders}
    best = max(means[n]["pr_auc"] for n in contenders)
    rows = []
    for name in contenders:
        pr = f"{means[name]['pr_auc']:.3f}"
        r = rank["pr_auc"][name]
        wins = f"{r['wins']:.0f}" if float(r["wins"]).is_integer() else f"{r['wins']:.1f}"
        rows.append([f"`{name}`", f"**{pr}**" if means[name]["pr_auc"] == best else pr,
                     f"{r['mean_rank']:.2f} ({wins})", f"{means[name]['roc_auc']:.3f}", f"{means[name]['brier']:.4f}",
                     f"{times[name]['mean']:.1f}", f"{times[name]['total']:,.1f}", str(times[name]["splits"])])
    return rows


def summary_block(table_: dict, records: list[dict], present: list[str], contenders: tuple) -> str:
    """The summary over the sets every cheap contender ran; the package and AutoGluon join once they ran all those.

    Keeping the package out until it is complete keeps every mean of the
    table over the same datasets (its paired tests use whatever it ran).
    """
    # AutoGluon, like the package, costs minutes per split: it joins once complete, never shrinking the sets
    core = [c for c in present if c not in (PACKAGE_TUNED, AUTOGLUON)] or present
    datasets = common_datasets(table_, core)
    shown = core + [c for c in present if c not in core and datasets and all(c in table_[d] for d in datasets)]
    if not datasets:
        return "No confirmation set has results for every contender yet."
    left_out = [d for d in table_ if d not in datasets]
    parts = [f"Over the {len(datasets)} confirmation sets every contender below ran"
             + (f" (left out: {', '.join(left_out)})" if left_out else "")
             + "; each cell a mean over datasets of the per-dataset mean over seeds; rank 1 = best PR-AUC on a "
             "dataset, datasets won in brackets; wall time per split includes the whole search for tuned "
             "contenders and the whole `make tune` job for the package:", "",
             table(["contender", "mean PR-AUC", "PR-AUC mean rank (wins)", "mean ROC-AUC", "mean Brier",
                    "wall s per split", "wall s total", "splits"],
                   summary_rows(table_, [r for r in records if r["dataset"] in datasets], shown, datasets),
                   "lrrrrrrr")]
    missing = [c for c in contenders if c not in shown]
    if missing:
        parts += ["", "Not in these means (results on fewer of these sets): " + ", ".join(
            f"`{c}` ({sum(c in cells for cells in table_.values())} of {len(table_)} sets)" for c in missing) + "."]
    return "\n".join(parts)


def paired_block(records: list[dict], reference: str, others: list[str], datasets: list[str]) -> str:
    """The paired tests of `reference` against each of `others` over the datasets both ran."""
    rows = []
    for other in others:
        names, first, second = paired.paired_means(records, reference, other, datasets)
        if not names:
            continue
        c = paired.compare(first, second)
        rows.append([f"`{other}`", str(c["datasets"]), f"{c['mean_first']:.3f}", f"{c['mean_second']:.3f}",
                     f"{c['mean_difference']:+.3f}", f"{c['wins']} / {c['ties']} / {c['losses']}",
                     p_value(c["wilcoxon_p"]), p_value(c["sign_test_p"])])
    if not rows:
        return f"`{reference}`: no results on these datasets yet."
    return table([f"`{reference}` against", "datasets", f"mean `{reference}`", "mean other", "mean difference",
                  f"W / T / L (tie: ±{paired.TIE_BAND})", "Wilcoxon p", "sign test p"], rows, "lrrrrrrr")


def _package_runs(records: list[dict]) -> list[dict]:
    """The `package_tuned` records that hold their candidate's test PR-AUC (`package_test_pr_auc`)."""
    return [r for r in records if r["contender"] == PACKAGE_TUNED and r.get("package_test_pr_auc") is not None]


def candidate_records(records: list[dict]) -> list[dict]:
    """Each `package_tuned` record as `PACKAGE_CANDIDATE`: PR-AUC of the execution's candidate on the same test
    rows (`package_test_pr_auc`, as the package measured it), whatever the gate served."""
    return [{**r, "contender": PACKAGE_CANDIDATE, "pr_auc": float(r["package_test_pr_auc"])}
            for r in _package_runs(records)]


def candidate_block(records: list[dict], others: list[str], datasets: list[str]) -> str:
    """The paired tests of the candidate alone (`candidate_records`), with the splits where it differs."""
    switched = [f"{r['dataset']} seed {r['seed']} ({r['pr_auc']:.3f} served, {r['package_test_pr_auc']:.3f} candidate)"
                for r in _package_runs(records) if abs(r["pr_auc"] - r["package_test_pr_auc"]) > 0.005]
    intro = (f"The same, with `{PACKAGE_TUNED}` scored as its candidate (`{PACKAGE_CANDIDATE}`: chosen on held-out "
             "data alone). On a first execution the gate serves the unweighted twin when it beats the candidate "
             "on the test split, and the benchmark scores on those same rows, so the served model's score is "
             "chosen among two on the rows it is scored on; the candidate's is not. Splits where they differ by "
             f"more than 0.005: {', '.join(switched) if switched else 'none'}.")
    return "\n".join([intro, "", paired_block(records + candidate_records(records), PACKAGE_CANDIDATE, others,
                                              datasets)])


def p_value(value: float | None) -> str:
    """A p-value as the reports print it (three decimals; `MISSING` when the test does not apply)."""
    return MISSING if value is None else f"{value:.3f}"


def per_dataset_table(table_: dict, payload: dict, contenders: list[str]) -> str:
    """PR-AUC mean ± sd over seeds per dataset (best mean in bold)."""
    info = {d["name"]: d for d in payload["datasets"]}
    rows = []
    for dataset, cells in table_.items():
        best = max(cells[c]["pr_auc"]["mean"] for c in contenders if c in cells)
        seeds = max(cells[c]["pr_auc"]["n"] for c in cells)  # seeds recorded, whatever a run planned
        row = [dataset, f"{info[dataset]['rows']:,}", f"{info[dataset]['positives']:,}", str(seeds)]
        for name in contenders:
            text = mean_std(cells[name]["pr_auc"]) if name in cells else MISSING
            row.append(f"**{text}**" if name in cells and cells[name]["pr_auc"]["mean"] == best else text)
        rows.append(row)
    return table(["dataset", "rows", "positives", "seeds", *[f"`{c}`" for c in contenders]], rows)


def datasets_table(confirmation: list[dict], development: list[dict]) -> str:
    """Both registries, role by role, with their sizes."""
    rows = []
    for role, entries in (("confirmation", confirmation), ("development", development)):
        for d in entries:
            rows.append([role, d["name"], f"{d['rows']:,}", f"{d['positives']:,}", f"{100 * d['positive_rate']:.2f}%",
                         f"{d['numeric_features']} / {d['categorical_features']}", f"`{d['source']}`"])
    return table(["role", "dataset", "rows", "positives", "positive rate", "numeric / categorical features",
                  "source"], rows, "llrrrrl")


def confirmation_section(payload: dict, results_name: str, development: list[dict]) -> str:
    """The whole section: command, summary, paired tests, per-dataset table, the dataset registry."""
    from benchmarks.confirm import CONTENDERS, LABELS

    quick = payload.get("mode") == "quick"
    infos = [d for d in payload["datasets"] if d["name"] in registry.CONFIRMATION]
    names = [d["name"] for d in infos]
    records = [r for r in payload["records"] if r["dataset"] in names]
    table_ = aggregate(records, names)
    present = ordered({r["contender"] for r in records}, CONTENDERS)
    command = ("`make bench-confirm-quick` (`.venv/bin/python -m benchmarks.confirm --quick`)" if quick else
               "`make bench-confirm` (`.venv/bin/python -m benchmarks.confirm`: every contender, the package "
               f"included); the cheap contenders alone: {CHEAP_COMMAND}")
    parts = ["## Confirmation: datasets no default was chosen on", "",
             f"Reproduce: {command}, then `.venv/bin/python -m benchmarks.confirm --render-only`. Results: "
             f"`benchmarks/results/{results_name}` (mode `{payload.get('mode')}`). {len(table_)} confirmation sets; "
             f"{payload.get('seeds_rule', '')} (stratified 70/15/15, `assign_splits(labels, split, seed)`); tuned "
             f"contenders get {payload.get('trials', '?')} trials. Every number below is on confirmation sets only; "
             "the development sets' results are in \"Model quality (development sets)\" further down and never "
             "enter these means.", ""]
    parts += [summary_block(table_, records, present, CONTENDERS), "", served_line(records), ""]
    for reference in REFERENCES:
        # the package is compared with every peer; the second reference only with the cheap contenders
        others = [c for c in present if c != reference and (reference == PACKAGE_TUNED or c != PACKAGE_TUNED)]
        parts += [f"Paired over datasets, `{reference}` against each contender (per-dataset means over the seeds "
                  "both ran; Wilcoxon signed-rank test of the differences, two-sided; a difference within "
                  f"±{paired.TIE_BAND} PR-AUC is a tie, and the two-sided sign test counts wins against losses):",
                  "", paired_block(records, reference, others, list(table_)), ""]
    others = [c for c in present if c != PACKAGE_TUNED]
    if PACKAGE_TUNED in present:
        parts += [candidate_block(records, others, list(table_)), ""]
    parts += ["### Confirmation contenders", "",
              table(["contender", "what it is"], [[f"`{c}`", LABELS[c]] for c in CONTENDERS], "ll"), "",
              "### Test PR-AUC per confirmation set (mean ± sd over seeds)", "",
              per_dataset_table(table_, payload, present), ""]
    if payload.get("failures"):
        parts += ["Failures (not in the tables): " + "; ".join(
            f"{f['dataset']} seed {f['seed']} {f['contender']}: {f['error'][:200]}" for f in payload["failures"]), ""]
    parts += ["### Development and confirmation sets", "", datasets_table(infos, development)]
    return "\n".join(parts)
