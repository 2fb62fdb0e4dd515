"""`python -m serving.batch` (`imbalance-predict`): score a file of rows with a served model, on Apache Beam.

  python -m serving.batch --model_base_path runs/sylva/serving_model \\
      --data 'new/*.csv' --output scores/2026-12-06 --id-column transaction_id

Writes `<output>/predictions-*.parquet` ([id,] probability, class_id,
model_version) and `<output>/errors-*.jsonl` (file, line or record, reason)
for rows that could not be scored; the last line printed is
`scored N rows, M errors`. A bad argument or input: one line, exit 2,
nothing written. See README, "Scoring a file", and serving/batch_pipeline.py.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, scores, prints the summary; 2 after one line on a bad argument or input."""
    from serving.batch_pipeline import BatchError
    from trainer.cli import run_entry_point

    return run_entry_point(lambda: _score(argv), expected=(BatchError,))


def _score(argv: list[str] | None) -> int:
    from serving.batch_config import parse_args
    from serving.batch_pipeline import score

    result = score(parse_args(argv))
    print(result.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
