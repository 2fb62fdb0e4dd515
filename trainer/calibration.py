"""Calibrated probabilities for a class-weighted model, chosen so that calibration never hurts.

Weighting by r = w1 / w0 shifts the model's single logit s = z1 - z0 by about
log r. `auto` chooses among the maps of s that keep the order of the scores,
by their cross-fitted log-loss on the held-out data (k folds: each map is fit
on k - 1 and scored on the k-th, so a fitted map is judged on examples it did
not see):

* `none`: sigmoid(s), the model's own probability;
* `prior_shift`: sigmoid(s - shift), the closed-form correction of the
  weighting, where the loss has one (nothing is fit);
* `platt`: sigmoid(a * s + b), a logistic regression of the labels on s,
  eligible only with a > 0.

`none` is kept unless another map lowers the held-out log-loss by more
than noise: the mean per-example improvement must exceed 1.645 of its
standard errors (a one-sided paired test over the same examples). Among
the maps that pass, the lowest log-loss wins. So a model that is already
calibrated (a blend of unweighted members) is not made worse by a
correction fit to noise, and the served ranking (PR-AUC, ROC-AUC) is the
model's own. The chosen map is then fit on all held-out examples and
exported inside the SavedModel (`trainer.export`).

`isotonic` (scikit-learn's IsotonicRegression as a monotone piecewise-linear
map of s, clipped outside the fitted range) is fitted only when asked for:
its flat blocks tie scores. On sylva it won the held-out log-loss with three
levels (0, 0.5, 1) and cost the served model 0.011 test PR-AUC, enough for
the push gate to refuse the better candidate (docs/design.md §6).
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("none", "prior_shift", "platt", "isotonic")
ORDER_KEEPING = ("none", "prior_shift", "platt")  # what `auto` chooses among: maps that never tie or swap scores
CROSS_FIT_FOLDS = 5
LOG_LOSS_EPSILON = 1e-12  # probabilities are clipped to [eps, 1 - eps] for the log-loss (an isotonic 0 or 1)
ONE_SIDED_95 = 1.645  # a map must beat `none` by this many standard errors of the paired improvement


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A map from the single logit s to the minority probability.

    Attributes:
      kind: One of `KINDS`.
      scale, offset: sigmoid(scale * s + offset) (`none`, `prior_shift`, `platt`).
      knots, values: `isotonic`: the probability at ascending logits `knots`,
        linearly interpolated between them and constant beyond them.
      held_out_log_loss: kind -> cross-fitted held-out log-loss of every map
        compared (empty when the kind was not chosen by `auto`).
    """

    kind: str
    scale: float = 1.0
    offset: float = 0.0
    knots: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    held_out_log_loss: dict = dataclasses.field(default_factory=dict, compare=False)

    def apply(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated minority probability [N] from single logits s [N] (float64)."""
        margin = np.asarray(margin, np.float64)
        if self.knots:
            return np.interp(margin, self.knots, self.values)
        return sigmoid(self.scale * margin + self.offset)

    def to_json(self) -> dict:
        """run.json's `calibration` record."""
        record = {"kind": self.kind, "scale": self.scale, "offset": self.offset}
        if self.knots:
            record.update(knots=list(self.knots), values=list(self.values))
        if self.held_out_log_loss:  # None: a map that could not be cross-fitted (strict JSON has no inf)
            record["held_out_log_loss"] = {k: (v if np.isfinite(v) else None) for k, v in self.held_out_log_loss.items()}
        return record

    @classmethod
    def from_json(cls, record: dict) -> Calibration:
        """The inverse of `to_json` (a record without knots is an affine map)."""
        return cls(record["kind"], float(record.get("scale", 1.0)), float(record.get("offset", 0.0)),
                   tuple(float(v) for v in record.get("knots", ())), tuple(float(v) for v in record.get("values", ())),
                   {k: (np.inf if v is None else v) for k, v in record.get("held_out_log_loss", {}).items()})


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def calibrate_graph(margin, scale, offset, knots, values):
    """`Calibration.apply` in TensorFlow float32 ops: the exported model's map (`trainer.export`).

    With more than one knot (isotonic): np.interp's piecewise-linear map,
    constant beyond the end knots; else sigmoid(scale * s + offset). The
    threshold is chosen on this function's own output (`trainer.finalize`),
    so the served `class_ids` agree with it exactly.
    """
    import tensorflow as tf

    def interpolate():
        right = tf.clip_by_value(tf.searchsorted(knots, margin, side="right"), 1, tf.size(knots) - 1)  # [N]
        x0, x1 = tf.gather(knots, right - 1), tf.gather(knots, right)
        y0, y1 = tf.gather(values, right - 1), tf.gather(values, right)
        share = tf.clip_by_value(tf.math.divide_no_nan(margin - x0, x1 - x0), 0.0, 1.0)
        return y0 + share * (y1 - y0)

    return tf.cond(tf.size(knots) > 1, interpolate, lambda: tf.sigmoid(scale * margin + offset))


def served_probability(calibration: Calibration, margin: np.ndarray) -> np.ndarray:
    """The exported model's probability for single logits [N], computed with its float32 ops."""
    import tensorflow as tf

    return calibrate_graph(tf.constant(np.asarray(margin, np.float32)), tf.constant(calibration.scale, tf.float32),
                           tf.constant(calibration.offset, tf.float32),
                           tf.constant(calibration.knots, tf.float32, shape=[len(calibration.knots)]),
                           tf.constant(calibration.values, tf.float32, shape=[len(calibration.values)])).numpy()


def fit_calibration(kind: str, margin: np.ndarray, labels: np.ndarray, shift: float | None,
                    seed: int = 0) -> Calibration:
    """Chooses and fits the correction.

    Args:
      kind: `auto` (of the order-keeping maps, the one of lowest cross-fitted
        held-out log-loss, `none` unless beaten), or one of `KINDS` to fit that map.
      margin: Held-out single logits s [N].
      labels: Held-out labels [N].
      shift: The loss's closed-form shift, or None when it has none.
      seed: Seeds the cross-fitting folds.

    Raises:
      ValueError: `prior_shift` asked for a loss without a closed form.
    """
    margin, labels = np.asarray(margin, np.float64), np.asarray(labels, np.int64)
    if kind == "prior_shift" and shift is None:
        raise ValueError("this loss has no closed-form prior shift; use calibration 'platt' or 'auto'")
    if kind != "auto":
        return _fit(kind, margin, labels, shift)
    candidates = [k for k in ORDER_KEEPING if k != "prior_shift" or shift is not None]
    per_example = cross_fitted_losses(candidates, margin, labels, shift, seed)
    losses = {kind: float(np.mean(values)) for kind, values in per_example.items()}
    passing = [kind for kind in candidates if kind == "none" or beats(per_example["none"], per_example[kind])]
    ranked = sorted(passing, key=lambda k: (losses[k], candidates.index(k)))  # ties keep the earlier (`none` first)
    # A Platt slope <= 0 would tie or reverse every score; `none` (scale 1) always remains.
    chosen = next(fit for fit in (_fit(k, margin, labels, shift) for k in ranked) if fit.scale > 0)
    return dataclasses.replace(chosen, held_out_log_loss=losses)


def beats(reference: np.ndarray, other: np.ndarray, z: float = ONE_SIDED_95) -> bool:
    """Whether per-example losses `other` are lower than `reference`'s by more than z paired standard errors."""
    improvement = np.asarray(reference, np.float64) - np.asarray(other, np.float64)
    if not np.isfinite(improvement).all() or improvement.size < 2:
        return False
    return bool(improvement.mean() > z * improvement.std(ddof=1) / np.sqrt(improvement.size))


def _fit(kind: str, margin: np.ndarray, labels: np.ndarray, shift: float | None) -> Calibration:
    if kind == "none":
        return Calibration("none")
    if kind == "prior_shift":
        return Calibration("prior_shift", 1.0, -float(shift))
    if kind == "platt":
        return platt(margin, labels)
    if kind == "isotonic":
        return isotonic(margin, labels)
    raise ValueError(f"unknown calibration {kind!r}; expected auto or one of {', '.join(KINDS)}")


def cross_fitted_log_loss(kinds: list[str], margin: np.ndarray, labels: np.ndarray, shift: float | None,
                          seed: int = 0) -> dict[str, float]:
    """kind -> mean log-loss of its map on held-out folds, fit on the other folds (`cross_fitted_losses`)."""
    return {kind: float(np.mean(values))
            for kind, values in cross_fitted_losses(kinds, margin, labels, shift, seed).items()}


def cross_fitted_losses(kinds: list[str], margin: np.ndarray, labels: np.ndarray, shift: float | None,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """kind -> per-example log-loss [N] of its map on held-out folds, fit on the other folds.

    Stratified folds, at most `CROSS_FIT_FOLDS` and at most the minority
    count; with fewer than 2 examples of a class nothing can be cross-fitted
    and only the maps without fitted parameters are scored (the others get inf).
    """
    from sklearn.model_selection import StratifiedKFold

    probability = {kind: np.full(labels.size, np.nan) for kind in kinds}
    folds = min(CROSS_FIT_FOLDS, int(labels.sum()), int((1 - labels).sum()))
    fitted = [k for k in kinds if k in ("platt", "isotonic")]
    for kind in kinds:
        if kind not in fitted:
            probability[kind] = _fit(kind, margin, labels, shift).apply(margin)
    if folds >= 2:
        for fit_index, held_index in StratifiedKFold(folds, shuffle=True, random_state=seed).split(margin, labels):
            for kind in fitted:
                probability[kind][held_index] = _fit(kind, margin[fit_index], labels[fit_index], shift).apply(
                    margin[held_index])
    return {kind: example_log_loss(labels, p) for kind, p in probability.items()}


def log_loss(labels: np.ndarray, probability: np.ndarray) -> float:
    """Mean binary log-loss, probabilities clipped to [eps, 1 - eps]."""
    return float(np.mean(example_log_loss(labels, probability)))


def example_log_loss(labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Per-example binary log-loss [N]; inf where the probability is missing (NaN: a map that could not be fit)."""
    raw = np.asarray(probability, np.float64)
    p = np.clip(raw, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    y = np.asarray(labels, np.float64)
    return np.where(np.isnan(raw), np.inf, -(y * np.log(p) + (1 - y) * np.log1p(-p)))


def platt(margin: np.ndarray, labels: np.ndarray) -> Calibration:
    """Platt scaling: logistic regression of the labels on s (nearly unregularised)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(np.asarray(margin, np.float64).reshape(-1, 1), np.asarray(labels))
    return Calibration("platt", float(model.coef_[0, 0]), float(model.intercept_[0]))


def isotonic(margin: np.ndarray, labels: np.ndarray) -> Calibration:
    """Isotonic regression of the labels on s, as its interpolation knots (scikit-learn's fit)."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(np.asarray(margin, np.float64), np.asarray(labels, np.float64))
    knots, values = model.X_thresholds_, model.y_thresholds_
    if knots.size == 1:  # one block: a constant, kept as two knots so the map always interpolates
        knots, values = np.array([knots[0], knots[0] + 1.0]), np.array([values[0], values[0]])
    return Calibration("isotonic", knots=tuple(float(v) for v in knots), values=tuple(float(v) for v in values))


def brier_score(labels: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared error of the minority probability."""
    return float(np.mean((np.asarray(probability, np.float64) - np.asarray(labels, np.float64)) ** 2))


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width probability bins: sum_b |B|/N * |mean(y) - mean(p)|."""
    probability = np.asarray(probability, np.float64)
    labels = np.asarray(labels, np.float64)
    index = np.minimum((probability * bins).astype(int), bins - 1)  # [N] bin of each example
    total = 0.0
    for b in range(bins):
        member = index == b
        if member.any():
            total += member.mean() * abs(labels[member].mean() - probability[member].mean())
    return float(total)
