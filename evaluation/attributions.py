"""Feature attributions of an exported model's margin: exact TreeSHAP or sampled Shapley values.

What is explained: the SavedModel's `logits` output, the single margin s
before calibration (log-odds of the blended probability). Calibration is a
monotone map of s, and TreeSHAP is exact only in margin space.

* A trees-only model (its version carries `trainer.layout.TREES_FILE`, the
  served booster as text): LightGBM's `Booster.predict(pred_contrib=True)`,
  path-dependent TreeSHAP (Lundberg et al. 2020). Each row's contributions
  plus the expected value sum to the booster's raw score, which is the
  exported margin; `tree_shap` checks that sum against the SavedModel's own
  `logits` (the completeness check) and fails loudly when they differ.
* Anything else (neural models, fold ensembles, blends): sampled Shapley
  values on the exported `predict_features` function (Strumbelj and
  Kononenko 2014). For each explained row x and each background row b, one
  random permutation of the features; walking it, each feature switches from
  b's value to x's value and is credited with the change of f. The credits of
  one walk telescope to f(x) - f(b), so the mean over the background set sums
  to f(x) - mean_b f(b) exactly (up to float32 rounding), whatever the
  permutations: the completeness check holds by construction, and is
  measured. Integrated Gradients is not used: the tree ops' gradient is zero
  almost everywhere, so it gives a blend's tree member no credit at all.

Cost, bounded (`AttributionOptions`, `sample_sizes`): TreeSHAP explains up
to `max_rows` test rows (half of them positives when there are enough, so the
minority slice is measured on enough rows). Sampled Shapley calls f on
rows x background x (features + 1) rows, at most `max_evaluations` per model:
on wide data the background shrinks first (to `min_background`), then the
rows (to `min_rows`, below which the background may shrink further). Measured
on sylva (216 features; a blend of two LightGBM and two neural members,
about 2,000 rows/s through `predict_features` on 2 cores): 65 rows against
7 background rows, half the time of the 200,000 evaluations it used to
allow (docs/design.md, "Attributions"; docs/benchmarks.md).
Each explained row carries an example weight of (class count in test) /
(class rows explained), so weighted means over the sample estimate means
over the whole test split (`attribution_extractor`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from trainer.data.schema import Schema
from trainer.layout import TREES_FILE

TREESHAP, SAMPLED_SHAPLEY = "tree_shap", "sampled_shapley"
LOGITS = "logits"  # the explained output: the margin before calibration
FEATURES_SIGNATURE = "predict_features"
BATCH = 4_096  # rows per call of f: faster than 16,384 through the exported trees (measured on sylva)
# |sum of attributions - (f(x) - E[f])| allowed, relative to max(1, |f(x)|): float32 margins and
# float64 sums of F + 1 differences (TreeSHAP: LightGBM's float64 vs the exported float32 trees).
COMPLETENESS_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class AttributionOptions:
    """Sample sizes of the explanations (docs/design.md, "Attributions").

    Attributes:
      max_rows: Test rows explained, at most (half positives when available).
      background: Training rows forming the baseline distribution (sampled Shapley), at most.
      max_evaluations: Model rows sampled Shapley may evaluate per model
        (rows x background x (features + 1)).
      min_rows, min_background: What the budget shrinks the rows and the
        background to before shrinking the other.
      seed: Seeds the row samples and the permutations.
    """

    max_rows: int = 256
    background: int = 32
    # Half of the 200,000 it was: on sylva the two seeds' top-10 features still share 8 of 10 (9 at 200,000)
    # and the explanation takes half the time (benchmarks/attribution_budget.py, docs/benchmarks.md).
    max_evaluations: int = 100_000
    min_rows: int = 64
    min_background: int = 8
    seed: int = 0


def sample_sizes(options: AttributionOptions, width: int, sampled: bool) -> tuple[int, int]:
    """(rows, background rows) for `width` features; `sampled`: some model needs sampled Shapley."""
    if not sampled:
        return max(2, options.max_rows), 0
    steps = width + 1
    background = max(1, min(options.background, options.max_evaluations // (max(1, options.min_rows) * steps)))
    background = max(background, min(options.background, options.min_background))
    rows = min(options.max_rows, options.max_evaluations // (background * steps))
    if rows < options.min_rows:  # even min_background is too many: the budget is shared by rows and background
        background = max(1, min(background, options.max_evaluations // (options.min_rows * steps)))
        rows = min(options.max_rows, options.max_evaluations // (background * steps))
    return max(2, rows), background


@dataclasses.dataclass(frozen=True)
class Attributions:
    """One model's attributions on the explained rows.

    Attributes:
      method: `TREESHAP` or `SAMPLED_SHAPLEY`.
      features: Raw feature names, the columns of `values`.
      values: [n, F] attributions to the margin.
      margins: [n] f(x), the exported `logits` of the explained rows.
      expected: E[f]: TreeSHAP's expected value, or the background rows' mean margin.
      max_completeness_error: max over rows of |sum(values) - (f(x) - E[f])|.
      background: Background rows used (0 for TreeSHAP, whose baseline is the training cover).
    """

    method: str
    features: tuple[str, ...]
    values: np.ndarray
    margins: np.ndarray
    expected: float
    max_completeness_error: float
    background: int

    def check_completeness(self) -> None:
        """Raises ValueError when the attributions do not add up to f(x) - E[f]."""
        scale = np.maximum(1.0, np.abs(self.margins))
        error = np.abs(self.values.sum(axis=1) - (self.margins - self.expected)) / scale
        if error.size and error.max() > COMPLETENESS_TOLERANCE:
            raise ValueError(f"{self.method} attributions miss completeness by {error.max():.2e} "
                             f"(> {COMPLETENESS_TOLERANCE:g}, relative to max(1, |f(x)|))")


def has_trees_file(model_dir: str) -> bool:
    """True when the version is a trees-only model exported with its booster (`trainer.trees.to_keras`)."""
    return os.path.exists(os.path.join(model_dir, TREES_FILE))


def feature_columns(rows: dict, schema: Schema) -> dict[str, np.ndarray]:
    """Raw features as `predict_features` takes them: float32 numerics (NaN = missing), strings."""
    columns = {}
    for feature in schema.features:
        values = rows[feature.name]
        if feature.kind == "numeric":
            columns[feature.name] = np.asarray(values, np.float32)
        else:
            columns[feature.name] = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values],
                                             dtype=object)
    return columns


def margin_function(model, schema: Schema):
    """The SavedModel's `predict_features` margin, batched: {name: [N]} -> [N] float64.

    `model`: its directory, or the SavedModel already loaded. None when the
    SavedModel has no such signature (e.g. one written by hand).
    """
    import tensorflow as tf

    signatures = (tf.saved_model.load(model) if isinstance(model, str) else model).signatures
    if FEATURES_SIGNATURE not in signatures:
        return None
    function = signatures[FEATURES_SIGNATURE]
    kinds = {f.name: (tf.float32 if f.kind == "numeric" else tf.string) for f in schema.features}

    def margins(columns: dict[str, np.ndarray]) -> np.ndarray:
        size = len(next(iter(columns.values())))
        parts = []
        for start in range(0, size, BATCH):
            batch = {name: tf.constant(values[start:start + BATCH], kinds[name]) for name, values in columns.items()}
            parts.append(function(**batch)[LOGITS].numpy().astype(np.float64))
        return np.concatenate(parts) if parts else np.zeros(0)

    return margins


def sampled_shapley(f, rows: dict[str, np.ndarray], background: dict[str, np.ndarray], seed: int) -> Attributions:
    """Sampled Shapley values of `f` at each row, against every background row.

    For row x and background row b_j, one permutation pi_j (seeded): z_0 = b_j,
    z_k = z_{k-1} with feature pi_j(k) taken from x; feature pi_j(k) is
    credited f(z_k) - f(z_{k-1}). Values are the mean credit over the B
    background rows, so they sum to f(x) - mean_j f(b_j).

    Args:
      f: {name: [N]} -> [N] margins (e.g. `margin_function`).
      rows: The explained rows, {name: [n]} in the model's input form.
      background: Baseline rows, {name: [B]}.
      seed: Seeds the permutations.
    """
    names = tuple(rows)
    n, b, width = len(rows[names[0]]), len(background[names[0]]), len(names)
    rng = np.random.default_rng(seed)
    chunk = max(1, BATCH // (b * (width + 1)))  # rows per call of f: about one batch of hybrids
    values, margins, baselines = np.zeros((n, width)), np.zeros(n), np.zeros((n, b))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # rank[i, j, k]: the step of walk (i, j) at which feature k takes x_i's value (a random permutation).
        rank = np.argsort(rng.random((stop - start, b, width)), axis=2)
        z = f(_hybrids(take(rows, np.arange(start, stop)), background, rank)).reshape(stop - start, b, width + 1)
        credit = np.diff(z, axis=2)  # [m, B, F]: step s's change, credited to the feature switched at s
        values[start:stop] = np.take_along_axis(credit, rank, axis=2).mean(axis=1)  # back in feature order
        margins[start:stop], baselines[start:stop] = z[:, 0, -1], z[:, :, 0]  # f(x_i); f(b_j)
    # Each row's baselines are the same B rows, so E[f] is their mean; f(b_j) can differ between calls only
    # by float32 batching, which the completeness error then shows.
    expected = float(baselines.mean()) if n else 0.0
    error = np.abs(values.sum(axis=1) - (margins - expected))
    return Attributions(SAMPLED_SHAPLEY, names, values, margins, expected,
                        float(error.max()) if error.size else 0.0, b)


def _hybrids(rows: dict[str, np.ndarray], background: dict[str, np.ndarray], rank: np.ndarray) -> dict:
    """{name: [m * B * (F + 1)]}: step s of walk (i, j) has feature k from x_i when rank[i, j, k] < s, else b_j."""
    m, b, width = rank.shape
    steps = np.arange(width + 1)
    hybrid = {}
    for k, name in enumerate(rows):
        from_x = rank[:, :, None, k] < steps[None, None, :]  # [m, B, F + 1]
        x_values = np.broadcast_to(rows[name][:, None, None], from_x.shape)
        b_values = np.broadcast_to(background[name][None, :, None], from_x.shape)
        hybrid[name] = np.where(from_x, x_values, b_values).reshape(-1)
    return hybrid


def tree_shap(model_dir: str, rows: dict[str, np.ndarray], schema: Schema) -> Attributions:
    """Exact TreeSHAP of a trees-only model, checked against the SavedModel's own margins.

    Raises:
      ValueError: the contributions do not sum to the exported margin (the
        booster text and the exported trees disagree).
    """
    from trainer.trees import feature_matrix, import_lightgbm

    lightgbm = import_lightgbm()

    booster = lightgbm.Booster(model_file=os.path.join(model_dir, TREES_FILE))
    contributions = booster.predict(feature_matrix(rows, schema), pred_contrib=True)  # [n, F + 1]
    values, expected = contributions[:, :-1], contributions[:, -1]
    served = margin_function(model_dir, schema)
    if served is None:
        raise ValueError(f"{model_dir} has a booster but no {FEATURES_SIGNATURE} signature to check it against")
    margins = served(rows)
    error = np.abs(contributions.sum(axis=1) - margins)
    attributions = Attributions(TREESHAP, tuple(f.name for f in schema.features), values, margins,
                                float(expected[0]) if expected.size else 0.0,
                                float(error.max()) if error.size else 0.0, 0)
    attributions.check_completeness()
    return attributions


def sample_rows(labels: np.ndarray, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which test rows to explain (at most `cap`, half positives when there are enough), and each one's
    weight (class count / class rows explained).

    Returns:
      (indices [n] ascending, weights [n]).
    """
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    take_positive = min(len(positives), cap // 2 if len(negatives) >= cap - cap // 2 else cap - len(negatives))
    take_negative = min(len(negatives), cap - take_positive)
    chosen, weights = [], []
    for pool, take in ((positives, take_positive), (negatives, take_negative)):
        if take:
            chosen.append(rng.choice(pool, size=take, replace=False))
            weights.append(np.full(take, len(pool) / take))
    if not chosen:
        return np.zeros(0, np.int64), np.zeros(0)
    indices, weights = np.concatenate(chosen), np.concatenate(weights)
    order = np.argsort(indices)
    return indices[order], weights[order]


def take(columns: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[indices] for name, values in columns.items()}
