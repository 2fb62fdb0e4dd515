"""The pusher: only a blessed candidate becomes the next served version.

As TFX's Pusher does after its Evaluator: the candidate of an execution is
copied to `RUN/serving_model/<N+1>` (atomically: a server polling that
directory never sees half a model) when TFMA blessed it, or when the user
forces it with `--push-anyway` (recorded). Otherwise the served versions are
left exactly as they were, and the candidate stays in its execution's
`candidate_model/` for inspection.

Each pushed copy carries `assets.extra/push.json` (TF Serving ignores
`assets.extra/` apart from its warm-up file): which execution it came from
and its decision threshold, which the next execution's gate needs.
"""

from __future__ import annotations

import dataclasses
import json
import os

from trainer.export import list_versions, publish_version
from trainer.layout import SERVING_DIR

PUSH_FILE = os.path.join("assets.extra", "push.json")
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
    path = os.path.join(version_dir, PUSH_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            return float(json.load(handle)["threshold"])
    import tensorflow as tf

    threshold = getattr(tf.saved_model.load(version_dir), "threshold", None)
    return float(threshold.numpy()) if threshold is not None else DEFAULT_THRESHOLD


def push(run_dir: str, candidate_dir: str, record: dict, blessed: bool, push_anyway: bool = False) -> dict:
    """Pushes the candidate version if it is blessed (or forced); returns what happened.

    Args:
      run_dir: The tuning run directory (`RUN`).
      candidate_dir: The candidate's exported version directory.
      record: Written into the pushed copy's `push.json`; must hold the
        candidate's `threshold` and the `execution` id.
      blessed: TFMA's verdict.
      push_anyway: Push a NOT_BLESSED candidate (the record says so).

    Returns:
      `{"pushed": bool, "version": int | None, "path": str | None,
      "push_anyway": bool, "reason": str}`.
    """
    if not blessed and not push_anyway:
        versions = list_versions(os.path.join(run_dir, SERVING_DIR))  # no need to load it for its threshold
        kept = f"version {max(versions)} stays served" if versions else "nothing is served"
        return {"pushed": False, "version": None, "path": None, "push_anyway": False,
                "reason": f"NOT_BLESSED: not pushed; {kept}"}
    forced = push_anyway and not blessed
    payload = json.dumps({**record, "push_anyway": forced}, indent=1)
    path = publish_version(candidate_dir, os.path.join(run_dir, SERVING_DIR), {PUSH_FILE: payload})
    version = int(os.path.basename(path))
    reason = "NOT_BLESSED, pushed because of --push-anyway" if forced else "BLESSED"
    return {"pushed": True, "version": version, "path": path, "push_anyway": forced,
            "reason": f"{reason}: pushed as version {version}"}
