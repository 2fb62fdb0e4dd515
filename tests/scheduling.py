"""The order pytest-xdist's workers take the tests in (`make test`: two workers, `--dist worksteal`).

worksteal hands worker i the i-th contiguous chunk of the collected items
(chunk sizes as in `xdist.scheduler.worksteal`: len(left) // workers left), and
a worker that runs out steals the second half of another's pending items. In
the alphabetical order the longest modules (the tuning runs) came late, so a
worker could start a 90-second test while the other had nothing left, and a
steal could split a module whose module-scoped fixture then ran on both workers.

Here the long modules are dealt out first, longest first, each to the chunk with
the least estimated work (whole modules, so each fixture is built once), and
every chunk is filled up with the short tests in their usual order: each worker
starts with long work, and what is stolen at the end is short tests.
"""

from __future__ import annotations

import pytest

# Seconds of one module on a worker of a 2-worker `make test` on 2 idle cores (fixtures included), from the
# suite's --durations (docs/benchmarks.md) and one-file runs. Estimates: they only decide the order.
LONG_MODULES = {
    "tests/test_storage": 240,  # test_storage*.py: one group, they share the session's emulators (run dirs: +90 s)
    "tests/test_tuning.py": 130,  # with test_tensorboard_hparams (SHARING)
    "tests/test_evaluation.py": 120,
    "tests/test_tuning_hyperband.py": 55,
    "tests/test_tuning_processes.py": 80,
    "tests/test_attributions.py": 65,
    "tests/test_push.py": 65,
    "tests/test_export.py": 60,
    "tests/test_reliability_data.py": 50,
    "tests/test_quality.py": 51,
    "tests/test_reliability_serving.py": 50,
    "tests/test_refit.py": 45,
    "tests/test_distribute.py": 40,
    "tests/test_multi_worker.py": 40,
    "tests/test_reliability_export.py": 40,
    "tests/test_live.py": 35,
    "tests/test_trees.py": 35,
    "tests/test_crossval_run.py": 35,
}


# Modules that share a session-scoped fixture with a long module go with it (built once, on one worker).
SHARING = {"tests/test_tensorboard_hparams.py": "tests/test_tuning.py"}  # conftest's tiny_search


def _group(nodeid: str) -> str:
    path = nodeid.split("::")[0]
    return "tests/test_storage" if path.startswith("tests/test_storage") else SHARING.get(path, path)


def chunk_sizes(count: int, workers: int) -> list[int]:
    """How many of `count` items worksteal first sends to each of `workers` workers."""
    sizes = []
    for index in range(workers):
        sizes.append(count // (workers - index))
        count -= sizes[-1]
    return sizes


def order_for_workers(items: list, workers: int) -> list:
    """`items` reordered so that each worker's chunk starts with long modules (see the module docstring)."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(_group(item.nodeid), []).append(item)
    long = sorted((name for name in groups if name in LONG_MODULES), key=lambda name: -LONG_MODULES[name])
    chunks: list[list] = [[] for _ in range(workers)]
    work = [0.0] * workers
    for name in long:  # longest first, to the chunk with the least work so far
        index = work.index(min(work))
        chunks[index] += groups[name]
        work[index] += LONG_MODULES[name]
    short = [item for name, members in groups.items() if name not in LONG_MODULES for item in members]
    ordered = []
    for chunk, size in zip(chunks, chunk_sizes(len(items), workers), strict=True):
        fill = max(0, size - len(chunk))
        ordered += chunk + short[:fill]
        short = short[fill:]
    return ordered + short


@pytest.hookimpl(trylast=True)  # after `-m` deselected (conftest marks first) and pytest grouped by fixtures
def pytest_collection_modifyitems(config, items):
    """In an xdist worker (each one collects and orders the same way), the order above."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers:
        items[:] = order_for_workers(items, workers)
