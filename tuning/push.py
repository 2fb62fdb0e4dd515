"""The pusher: only what the gate approves becomes the next served version.

As TFX's Pusher does after its Evaluator: the candidate of an execution is
copied to `RUN/serving_model/<N+1>` (atomically: a server polling that
directory never sees half a model) when TFMA blessed it, or when the user
forces it with `--push-anyway` (recorded). On a first execution the gate may
choose the unweighted twin instead, or the candidate in spite of a failed
change check (`evaluation.decision`); the copy's record says which model it
is. Otherwise the served versions are left exactly as they were, and the
models stay in their execution's `candidate_model/` and `baseline_model/`
for inspection.

Each pushed copy carries `assets.extra/push.json` (TF Serving ignores
`assets.extra/` apart from its warm-up file): which execution it came from
and its decision threshold, which the next execution's gate needs.
"""

from __future__ import annotations

import dataclasses
import json
import os

from trainer.atomic import publish_version
from trainer.layout import PUSH_FILE, SERVING_DIR, list_versions, read_push_record

DEFAULT_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """The version being served: what TF Serving's default policy loads (the latest)."""

    version: int
    path: str
    threshold: float


def served_model(run_dir: str) -> ServedModel | None:
    """The latest version under `RUN/serving_model/`, or None when nothing is served."""
    versions = list_versions(os.path.join(run_dir, SERVING_DIR))
    if not versions:
        return None
    version = max(versions)
    return ServedModel(version=version, path=versions[version], threshold=served_threshold(versions[version]))


def served_threshold(version_dir: str) -> float:
    """A served version's decision threshold.

    From its `push.json`; for a version exported directly (a `trainer.task`
    run, or a run made before executions existed), from the SavedModel's own
    `threshold` variable; else 0.5, the convention of any probability model.
    """
    record = read_push_record(version_dir)
    if "threshold" in record:
        return float(record["threshold"])
    import tensorflow as tf

    threshold = getattr(tf.saved_model.load(version_dir), "threshold", None)
    return float(threshold.numpy()) if threshold is not None else DEFAULT_THRESHOLD


def push(run_dir: str, candidate_dir: str, record: dict, blessed: bool, push_anyway: bool = False,
         why: str | None = None) -> dict:
    """Pushes a model version if the gate approved it (or forced); returns what happened.

    Args:
      run_dir: The tuning run directory (`RUN`).
      candidate_dir: The exported version directory to push: the candidate,
        or on a first execution the unweighted twin that the gate chose.
      record: Written into the pushed copy's `push.json`; must hold the
        model's `threshold` and the `execution` id; `model` says which
        (`candidate` when absent).
      blessed: The gate's approval: TFMA's verdict, or on a first execution
        its decision (`evaluation.decision`).
      push_anyway: Push a NOT_BLESSED candidate (the record says so).
      why: The decision's one line when TFMA's verdict alone does not explain
        it (`evaluation.decision.Decision.reason`): "the unweighted twin: it
        beat ..." when pushed, "neither model ..." when not.

    Returns:
      `{"pushed": bool, "version": int | None, "path": str | None,
      "push_anyway": bool, "model": str | None, "reason": str}`.
    """
    if not blessed and not push_anyway:
        versions = list_versions(os.path.join(run_dir, SERVING_DIR))  # no need to load it for its threshold
        kept = f"version {max(versions)} stays served" if versions else "nothing is served"
        return {"pushed": False, "version": None, "path": None, "push_anyway": False, "model": None,
                "reason": f"not pushed: {why}; {kept}" if why else f"NOT_BLESSED: not pushed; {kept}"}
    forced = push_anyway and not blessed
    payload = json.dumps({**record, "push_anyway": forced}, indent=1)
    path = publish_version(candidate_dir, os.path.join(run_dir, SERVING_DIR), {PUSH_FILE: payload})
    version = int(os.path.basename(path))
    if forced:
        reason = f"NOT_BLESSED, pushed because of --push-anyway: pushed as version {version}"
    elif why:
        reason = f"pushed {why}; served as version {version}"
    else:
        reason = f"BLESSED: pushed as version {version}"
    return {"pushed": True, "version": version, "path": path, "push_anyway": forced,
            "model": record.get("model", "candidate"), "reason": reason}
