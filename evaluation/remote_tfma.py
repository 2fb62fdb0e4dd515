"""Where TFMA reads and writes: on the store for a run on object storage (docs/design.md §10).

A remote run's commands run on a local working copy (`trainer.run_storage`),
but a Beam runner's workers may be other machines (`--beam-pipeline-args
"--runner=DataflowRunner ..."`, one set of Beam options for the data step and
TFMA), which cannot read the launcher's disk. So for a remote run TFMA's
pipeline reads and writes the store, by one rule for every runner:

* the test shards at the data directory's URL (the data step wrote them
  there, or they were copied from there);
* the models at their own URLs in the run: the candidate's and baseline's
  exported versions are uploaded first (`run_storage.publish`; one copied
  from the store is not written again), the served version is on the store
  under `serving_model/` already;
* its output at the URL of the run's evaluation directory, emptied first
  (an old verdict marker before the rest: no reader trusts the old verdict
  beside new output); it is then copied into the working copy, where the
  gate and the report read it, and recorded as on the store
  (`run_storage.published`), so the upload does not write it again. The
  marker and `summary.json` are written afterwards, locally, and uploaded
  last with the run's records, as for a local evaluation.

What `work` put on the store is removed again if the run fails before its
upload completes. TensorFlow cannot open s3:// (`storage.tensorflow_can_open`),
so on s3:// TFMA reads and writes the working copy, as before.
"""

from __future__ import annotations

import dataclasses
import os

from evaluation.blessing import BLESSED, NOT_BLESSED
from evaluation.evaluate import SUMMARY_FILE
from evaluation.run_files import EvaluatedModel, split_pattern
from trainer import storage
from trainer.atomic import replace_directory, staging_directory


@dataclasses.dataclass(frozen=True)
class Places:
    """Where TFMA's pipeline reads and writes.

    Attributes:
      models: The models with the paths TFMA loads them from.
      data_pattern: Glob of the test split's shards.
      output: TFMA's output directory: the run's evaluation directory, or its URL.
    """

    models: list[EvaluatedModel]
    data_pattern: str
    output: str

    def remote(self) -> bool:
        """Whether TFMA writes on the store (its output is then brought into the working copy)."""
        return storage.is_remote(self.output)


def places(run_dir: str, models: list[EvaluatedModel], eval_dir: str) -> Places:
    """The run's own local paths, or for a remote run (module docstring) the URLs, models uploaded first."""
    from trainer import run_storage

    remote = run_storage.on_store(eval_dir)
    pattern = split_pattern(run_dir)
    if remote is None or not storage.tensorflow_can_open(remote):
        return Places(models, pattern, eval_dir)
    # A model given from outside the run (--candidate-dir) is read where it is.
    on_store = [dataclasses.replace(m, path=run_storage.publish(m.path)) if run_storage.on_store(m.path) else m
                for m in models]
    run_storage.clear(eval_dir, first=(BLESSED, NOT_BLESSED, SUMMARY_FILE))
    return Places(on_store, run_storage.on_store(pattern), remote)


def bring_back(where: Places, eval_dir: str) -> None:
    """A remote output copied into the working copy's `eval_dir` (replacing it) and recorded as published."""
    if not where.remote():
        return
    from trainer import run_storage
    with staging_directory(os.path.dirname(eval_dir), "evaluation-staging") as staging:
        storage.copy_files(where.output, staging, storage.list_files(where.output))
        os.makedirs(staging, exist_ok=True)
        replace_directory(staging, eval_dir)
    run_storage.published(eval_dir, provisional=True)
