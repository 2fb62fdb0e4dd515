"""`make tune` as separate processes: killed mid-search and resumed; keras-tuner's distributed mode."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO, first_execution, read_trials

pytestmark = pytest.mark.slow


def _tune_command(csv_path, run_dir, trials):
    return [sys.executable, "-m", "tuning.task", "--data", csv_path, "--label", "target", "--output-dir", run_dir,
            "--max-trials", str(trials), "--tuning-epochs", "2", "--epochs", "2", "--verbose", "0",
            "--tuner", "random", "--skip-evaluation", "--selection", "validation", "--skip-weighting-study"]


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO, **extra}


def test_kill_9_mid_search_then_resume(tmp_path, tiny_csv):
    run_dir = str(tmp_path / "run")
    process = subprocess.Popen(_tune_command(tiny_csv, run_dir, 4), cwd=REPO, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if "trial 2 of 4" in line:
            process.send_signal(signal.SIGKILL)  # dies in the middle of trial 3
            break
    process.wait(timeout=120)
    completed = [r for r in _trials_from_oracle(first_execution(run_dir)) if r == "COMPLETED"]
    assert len(completed) == 2
    result = subprocess.run(_tune_command(tiny_csv, run_dir, 4), cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trial 3 of 4" in result.stdout and "trial 1 of 4" not in result.stdout
    assert "execution 0001 (resumed)" in result.stdout
    rows = read_trials(first_execution(run_dir))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}


def _trials_from_oracle(run_dir):
    project = os.path.join(run_dir, "tuning", "search")
    statuses = []
    for name in sorted(os.listdir(project)):
        path = os.path.join(project, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            statuses.append(json.load(open(path))["status"])
    return statuses


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_distributed_chief_and_two_workers(tmp_path, tiny_csv):
    run_dir = str(tmp_path / "run")
    port = str(_free_port())
    processes = {
        tuner_id: subprocess.Popen(
            _tune_command(tiny_csv, run_dir, 4), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=_env(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                                KERASTUNER_ORACLE_PORT=port))
        for tuner_id in ("chief", "worker0", "worker1")
    }
    outputs = {name: p.communicate(timeout=400) for name, p in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, outputs[name][1][-2000:]
    worker_trials = [outputs[w][0].count(f": {w}: val objective") for w in ("worker0", "worker1")]
    # Every trial ran on a worker (the chief only hosts the oracle). Which worker
    # gets how many depends on start-up timing, so only the total is asserted.
    assert sum(worker_trials) == 4
    assert all("worker done" in outputs[w][0] for w in ("worker0", "worker1"))
    assert "candidate_model/1" in outputs["chief"][0]
    assert len(read_trials(first_execution(run_dir))) == 4
