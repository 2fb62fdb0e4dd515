"""Speed and model-quality benchmarks (entry point of `make bench` / `make bench-quick`).

  .venv/bin/python -m benchmarks.run            # quick, CI-sized (a few minutes on 2 CPUs)
  .venv/bin/python -m benchmarks.run --full     # the documented numbers (hours on 2 CPUs)

  # one contender again, merged into the existing full results (the others' rows are kept):
  .venv/bin/python -m benchmarks.run --full --only quality --contenders package_tuned
  # the tree contenders on two datasets:
  .venv/bin/python -m benchmarks.run --full --only quality --contenders lightgbm_tuned,ydf_gbt_tuned \
      --datasets yeast4,ecoli3

Writes `benchmarks/results/{quality,speed}.json` (`--full`) or
`{quality,speed}-quick.json`, then regenerates the benchmark sections of
docs/benchmarks.md from the full results when they exist, else from the quick
ones. `--render-only` just regenerates the document.

Quality results are merged by (dataset, seed, contender): a run replaces only
the rows it recomputes (`--fresh` starts the file over). Tuned contenders get
`selection.TUNING_TRIALS` (10) trials in a full run; the quick run gives them
`selection.QUICK_TUNING_TRIALS` (3), or `--trials N` (quick runs only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from benchmarks.contenders import ALL
from benchmarks.selection import QUICK_TUNING_TRIALS, TUNING_TRIALS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
PARTS = ("quality", "speed")  # `--only tuning` redoes just the tuning row of the speed results


def result_name(part: str, full: bool) -> str:
    return f"{part}.json" if full else f"{part}-quick.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="all datasets, 3 seeds, reference-scale (531k-row) speed runs")
    parser.add_argument("--only", choices=(*PARTS, "tuning"), default=None,
                        help="run one part (tuning: only the tuning measurement, into existing speed results)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for quality (default: 3 full, 1 quick)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="run seeds first-seed .. first-seed + seeds - 1 (add seeds to existing results)")
    parser.add_argument("--datasets", default=None, help="comma-separated subset of the quality datasets")
    parser.add_argument("--synthetic-rows", type=int, nargs=2, default=None, metavar=("NEG", "POS"),
                        help="size of the synthetic set in the quality part")
    parser.add_argument("--contenders", default=None,
                        help="comma-separated subset of the quality contenders (default: all): "
                        + ",".join(ALL))
    parser.add_argument("--trials", type=int, default=None,
                        help=f"trials per tuned contender, quick runs only (default {QUICK_TUNING_TRIALS}; "
                        f"a full run always uses {TUNING_TRIALS})")
    parser.add_argument("--fresh", action="store_true",
                        help="start the quality results file over instead of merging into it")
    parser.add_argument("--render-only", action="store_true", help="only regenerate docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.contenders:
        unknown = sorted(set(args.contenders.split(",")) - set(ALL))
        if unknown:
            parser.error(f"unknown contenders {', '.join(unknown)}; choose from {', '.join(ALL)}")
    if args.trials is not None and (args.full or args.trials < 1):
        parser.error("--trials is for quick runs only (a full run uses the package tuner's budget), and >= 1")
    return args


def render_doc() -> None:
    import json

    from benchmarks.summary import render, update_doc

    loaded, names = {}, {}
    for part in PARTS:
        for full in (True, False):
            path = os.path.join(RESULTS, result_name(part, full))
            if os.path.exists(path):
                with open(path) as handle:
                    loaded[part] = json.load(handle)
                names[part] = result_name(part, full)
                break
    make_tune = os.path.join(RESULTS, "make_tune.json")  # from benchmarks.make_tune
    if "speed" in loaded and os.path.exists(make_tune):
        with open(make_tune) as handle:
            loaded["speed"]["make_tune"] = json.load(handle)
    full = loaded.get("quality", {}).get("mode") == "full" or loaded.get("speed", {}).get("mode") == "full"
    command = ("`make bench` (`.venv/bin/python -m benchmarks.run --full`); CI-sized: `make bench-quick`" if full else
               "`make bench-quick` (`.venv/bin/python -m benchmarks.run`); full: `make bench`")
    update_doc(DOC, render(loaded.get("quality"), loaded.get("speed"), names, command,
                           confirmation_text(loaded.get("quality"))))


def confirmation_text(quality: dict | None) -> str | None:
    """The confirmation section from `confirmation.json` (else `confirmation-quick.json`), or None."""
    import json

    from benchmarks.confirm_report import confirmation_section

    for name in ("confirmation.json", "confirmation-quick.json"):
        path = os.path.join(RESULTS, name)
        if os.path.exists(path):
            with open(path) as handle:
                payload = json.load(handle)
            return confirmation_section(payload, name, (quality or {}).get("datasets", []))
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    if not args.render_only:
        started = time.time()
        if args.only in (None, "quality"):
            from benchmarks import quality

            seeds = args.seeds or (3 if args.full else 1)
            only = set(args.datasets.split(",")) if args.datasets else None
            rows = tuple(args.synthetic_rows) if args.synthetic_rows else None
            trials = TUNING_TRIALS if args.full else (args.trials or QUICK_TUNING_TRIALS)
            contenders = args.contenders.split(",") if args.contenders else None
            quality.run(args.full, seeds, os.path.join(RESULTS, result_name("quality", args.full)),
                        synthetic_rows=rows, only=only, log=lambda m: print(m, flush=True),
                        contenders=contenders, trials=trials, fresh=args.fresh, first_seed=args.first_seed)
        if args.only in (None, "speed"):
            from benchmarks import speed

            speed.run(args.full, os.path.join(RESULTS, result_name("speed", args.full)),
                      log=lambda m: print(m, flush=True))
        if args.only == "tuning":
            from benchmarks import speed

            speed.run_tuning_only(args.full, os.path.join(RESULTS, result_name("speed", args.full)),
                                  log=lambda m: print(m, flush=True))
        print(f"[bench] done in {time.time() - started:.0f} s", flush=True)
    render_doc()
    print(f"[bench] wrote {DOC}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
