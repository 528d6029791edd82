"""The same sweep on a real Dask cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fastfault.sweep import load_experiment, load_results, run_sweep
from fastfault.sweep.results import read_points

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("distributed")
pytestmark = pytest.mark.skipif(shutil.which("dask") is None, reason="the dask command line is not installed")

EXPERIMENT = """
[experiment]
name = "dask-tiny"
replicates = 2

[sweep]
fault_around_bytes = ["4KiB", "64KiB"]
prefault = ["young", "old"]

[fixed]
arch = "arm64-nohaf"

[[workloads]]
name = "zipf"
params = { npages = 1024, n = 4000 }

[[workloads]]
name = "program_start"
params = { n = 5000 }
"""


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def _scheduler_address(log: Path, proc: subprocess.Popen, timeout: float = 60) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        m = re.search(r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", log.read_text())
        if m:
            return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"the scheduler did not start:\n{log.read_text()[-2000:]}")


@pytest.fixture
def cluster(tmp_path):
    """A scheduler on an OS-chosen port and two single-threaded workers; always torn down."""
    procs: list[subprocess.Popen] = []
    try:
        sched_log = tmp_path / "scheduler.log"
        procs.append(
            _start(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"], sched_log),
        )
        address = _scheduler_address(sched_log, procs[0])
        for i in range(2):
            procs.append(
                _start(
                    [
                        "dask",
                        "worker",
                        address,
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--death-timeout",
                        "60",
                    ],
                    tmp_path / f"worker{i}.log",
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        _stop(procs[::-1])


def test_scheduler_sweep_equals_embedded(cluster, tmp_path):
    exp_path = tmp_path / "exp.toml"
    exp_path.write_text(EXPERIMENT)
    embedded = tmp_path / "embedded"
    run_sweep(load_experiment(exp_path), embedded, workers=1, progress=False)

    out = tmp_path / "dask"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastfault",
            "sweep",
            str(exp_path),
            "--out",
            str(out),
            "--scheduler",
            cluster,
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["backend"] == "dask" and summary["workers"] == 2 and summary["computed"] == 16
    pd.testing.assert_frame_equal(load_results(out), load_results(embedded))
    workers = {rec["worker"] for rec in read_points(out / "points").values()}
    assert len(workers) == 2, workers  # both worker processes took part
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sessions"][-1]["backend"]["scheduler"] == cluster


def test_unreachable_scheduler_is_an_input_error(tmp_path):
    exp_path = tmp_path / "exp.toml"
    exp_path.write_text(EXPERIMENT)
    out = tmp_path / "never"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastfault",
            "sweep",
            str(exp_path),
            "--out",
            str(out),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=dict(os.environ, FASTFAULT_DASK_TIMEOUT="2"),
    )
    assert r.returncode == 2, r.stderr
    assert "cannot connect" in r.stderr and not out.exists()


def test_local_cluster_equals_embedded(tmp_path):
    exp_path = tmp_path / "exp.toml"
    exp_path.write_text(EXPERIMENT)
    exp = load_experiment(exp_path)
    run_sweep(exp, tmp_path / "embedded", workers=1, progress=False)
    summary = run_sweep(exp, tmp_path / "local", workers=2, cluster="local", progress=False)
    assert summary.backend == "dask-local"
    pd.testing.assert_frame_equal(load_results(tmp_path / "local"), load_results(tmp_path / "embedded"))
