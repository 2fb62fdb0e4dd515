"""Apache Beam pipelines that never download anything by default.

Beam's `DirectRunner` first tries the Prism runner, which fetches a binary
from the network on first use. The default here is the in-process
`FnApiRunner` (the DirectRunner's own fallback), which honours
`--direct_num_workers` and `--direct_running_mode=multi_processing`. Any other
`--runner` (Flink, Spark, Dataflow, ...) passes through untouched, so the same
pipeline scales out.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

IN_PROCESS_RUNNERS = (None, "DirectRunner", "direct", "FnApiRunner")


def make_pipeline(beam_pipeline_args: Sequence[str] = ()) -> beam.Pipeline:
    """A Beam pipeline for `beam_pipeline_args`, in-process unless told otherwise."""
    options = PipelineOptions(list(beam_pipeline_args))
    runner_name = options.view_as(StandardOptions).runner
    if runner_name in IN_PROCESS_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        return beam.Pipeline(runner=fn_runner.FnApiRunner(), options=options)
    return beam.Pipeline(options=options)
