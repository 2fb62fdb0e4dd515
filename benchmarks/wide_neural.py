"""The final fit of one neural portfolio member on a (wide) table, timed: docs/benchmarks.md,
"Neural models on wide data".

    .venv/bin/python -m benchmarks.wide_neural --data hiva.csv --body linear --encoding standard
    .venv/bin/python -m benchmarks.wide_neural --data hiva.csv --body tabm --encoding ple

It runs what `trainer.pipeline` runs for one member after the search
(`train_candidate(..., refit=True)`: 5-fold cross-validation when the
validation split holds fewer than 50 positives, as on hiva; the run's default
epochs and early stopping), with the rows already in memory as the search
leaves them, and prints the seconds, the epochs per fold and the held-out
score. `--body linear --encoding standard` is the portfolio's logistic
regression (`tuning.portfolio`), with its learning rate, weight decay and
balanced weights. hiva.csv: `benchmarks.confirmation_data.load_hiva`, written as CSV.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def measure(data_path: str, label: str, body: str, encoding: str, seed: int) -> str:
    """One member's final fit on `data_path`; returns the line printed."""
    import keras

    from trainer import hparams as hparams_lib
    from trainer.candidates import Splits, train_candidate
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data
    from trainer.train import fit_settings
    from tuning.portfolio import PORTFOLIO, portfolio_values

    with tempfile.TemporaryDirectory() as run:
        config = RunConfig(data=data_path, label=label, output_dir=run, seed=seed)
        data = prepare_data(config)
        counts = data.train_counts
        values = {"model_family": "neural", "body": body, "numeric_encoding": encoding}
        if body == "linear":  # the portfolio's own entry, weights and optimizer included
            entries = dict(zip((e.name for e in PORTFOLIO), portfolio_values({}, counts), strict=True))
            values = entries["logistic_regression"]
        hp = hparams_lib.with_values(counts, values)
        settings = fit_settings(hp, counts, config, weighted=True)
        splits = Splits(data, config)
        _ = splits.train_and_validation  # loaded before the clock: the search has them in memory already
        keras.utils.set_random_seed(seed)
        started = time.time()
        candidate = train_candidate(hp, settings, data, config, config.epochs, splits, refit=True)
        seconds = time.time() - started
    folds = candidate.info.get("cross_validation", {}).get("epochs_run", candidate.info.get("epochs_run"))
    return f"{body}/{encoding}: final fit {seconds:.1f} s, epochs {folds}, held-out score {candidate.score:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--label", default="target")
    parser.add_argument("--body", choices=("linear", "mlp", "tabm"), default="linear")
    parser.add_argument("--encoding", choices=("standard", "quantile_normal", "ple", "periodic"), default="standard")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    print(measure(args.data, args.label, args.body, args.encoding, args.seed), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
