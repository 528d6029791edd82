"""Running sweeps: equal tables for any worker count and equal to `api.run`; durability, resume, Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fastfault.errors import InputError
from fastfault.sweep import SweepInterrupted, load_experiment, load_results, run_sweep
from fastfault.sweep.results import clean_row

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[experiment]
name = "tiny"
replicates = 2

[sweep]
fault_around_bytes = ["4KiB", "64KiB", "2MiB"]

[[sweep.zip]]
arch = ["x86_64", "arm64-nohaf"]
prefault = ["young", "old"]

[[workloads]]
name = "zipf"
params = { npages = 1024, n = 4000, alpha = 1.1 }

[[workloads]]
name = "sequential"
params = { npages = 768 }

[[workloads]]
name = "hotcold"
params = { npages = 1024, n = 3000 }
"""

# Slower runs (a larger page cache to build), so a sweep can be killed half-way.
SLOW = """
[experiment]
name = "slow"
replicates = 2

[sweep]
fault_around_bytes = ["4KiB", "16KiB", "64KiB", "256KiB", "1MiB", "2MiB"]

[[workloads]]
name = "zipf"
params = { npages = 8192, n = 20000 }

[[workloads]]
name = "sequential"
params = { npages = 8192 }
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    exp_path = _write(d / "tiny.toml", TINY)
    exp = load_experiment(exp_path)
    summary = run_sweep(exp, d / "serial", workers=1, progress=False)
    return exp_path, exp, summary, load_results(d / "serial")


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    d = tmp_path_factory.mktemp("slow")
    exp_path = _write(d / "slow.toml", SLOW)
    run_sweep(load_experiment(exp_path), d / "reference", workers=1, progress=False)
    return exp_path, load_results(d / "reference")


def _cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fastfault", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: signals reach it and its workers only
        cwd=ROOT,
        **kw,
    )


def _wait_for_points(points: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        done = len(list(points.glob("*.json"))) if points.is_dir() else 0
        if done >= n:
            return done
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early: {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError("no durable points appeared")


def test_table_shape_and_ids(tiny):
    _, exp, summary, df = tiny
    assert summary.total == len(df) == 3 * 3 * 2 * 2
    assert summary.computed == summary.total and summary.resumed == 0
    assert list(df.columns[:3]) == ["point", "replicate", "workload_label"]
    assert list(zip(df["point"], df["replicate"], strict=True)) == [r.key for r in exp.runs()]
    assert not any("second" in c or "time" in c for c in df.columns)  # timing lives in meta.json
    for col in (
        "param_fault_around_bytes",
        "param_arch",
        "param_prefault",
        "param_wl_npages",
        "minflt",
        "faults_per_1k",
    ):
        assert col in df.columns
    assert df["param_seed"].tolist() == [r.seed for r in exp.runs()]


def test_two_workers_equal_one_worker_equal_api_run(tiny, tmp_path):
    from fastfault.api import run as api_run

    _, exp, _, df1 = tiny
    summary = run_sweep(exp, tmp_path / "pool", workers=2, progress=False)
    assert summary.backend == "processes" and summary.workers == 2
    df2 = load_results(tmp_path / "pool")
    pd.testing.assert_frame_equal(df1, df2)
    for run, (_, row) in zip(exp.runs(), df1.iterrows(), strict=True):
        direct = clean_row(api_run(**run.kwargs()).row())
        for k, v in direct.items():
            assert row[k] == v or (pd.isna(row[k]) and pd.isna(v)), (run.key, k, row[k], v)


def test_meta_json(tiny):
    exp_path, exp, summary, _ = tiny
    meta = json.loads((Path(summary.out) / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert meta["experiment"]["sha256"] == hashlib.sha256(exp_path.read_bytes()).hexdigest()
    assert meta["experiment"]["plan_sha256"] == exp.plan_sha256
    for pkg in ("fastfault", "numpy", "numba", "pyarrow", "dask"):
        assert meta["versions"][pkg]
    assert meta["host"]["hostname"] and meta["started"] and meta["finished"]
    assert "git" in meta
    assert meta["timing"]["runs"] == summary.total and meta["timing"]["compute_seconds"] > 0
    assert meta["results"]["rows"] == summary.total
    assert (Path(summary.out) / "experiment.toml").read_bytes() == exp_path.read_bytes()


def test_interrupt_keeps_finished_runs_and_resume_completes(tiny, tmp_path):
    _, exp, _, ref = tiny
    out = tmp_path / "partial"

    def stop_after_five(record, seen=[]):  # noqa: B006 - a counter across calls
        seen.append(record)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted) as info:
        run_sweep(exp, out, workers=1, progress=False, on_result=stop_after_five)
    assert (info.value.done, info.value.total) == (5, len(exp.runs()))
    assert not (out / "results.parquet").exists()
    assert json.loads((out / "meta.json").read_text())["status"] == "interrupted"
    with pytest.raises(InputError, match="--resume"):
        run_sweep(exp, out, workers=1, progress=False)
    summary = run_sweep(exp, out, workers=1, resume=True, progress=False)
    assert (summary.resumed, summary.computed) == (5, len(exp.runs()) - 5)
    pd.testing.assert_frame_equal(load_results(out), ref)
    sessions = json.loads((out / "meta.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["interrupted", "complete"]


def test_output_directory_guards(tiny, tmp_path):
    _, exp, summary, _ = tiny
    other = load_experiment(ROOT / "experiments" / "kernel_profiles.toml", scale=0.01)
    with pytest.raises(InputError, match="holds a different experiment"):
        run_sweep(other, summary.out, workers=1, progress=False)
    with pytest.raises(InputError, match="holds a different experiment"):
        run_sweep(other, summary.out, workers=1, resume=True, progress=False)
    with pytest.raises(InputError, match="already holds this experiment"):
        run_sweep(exp, summary.out, workers=1, progress=False)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        run_sweep(exp, stranger, workers=1, progress=False)
    # a complete sweep resumed: nothing to compute, the same table again
    again = run_sweep(exp, summary.out, workers=1, resume=True, progress=False)
    assert again.computed == 0 and again.resumed == again.total


def test_sigkill_then_resume(slow, tmp_path):
    """kill -9 mid-sweep loses only runs in flight; --resume finishes without recomputing or duplicating."""
    exp_path, ref = slow
    out = tmp_path / "killed"
    proc = _cli("sweep", exp_path, "--out", out, "--workers", "2", "--no-progress")
    try:
        _wait_for_points(out / "points", 4, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    durable = {p.name for p in (out / "points").glob("*.json")}
    assert 4 <= len(durable) < len(ref), len(durable)
    assert not (out / "results.parquet").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    time.sleep(1.0)  # let any orphaned worker notice its parent is gone

    resumed = _cli("sweep", exp_path, "--out", out, "--resume", "--workers", "2", "--no-progress", "--json")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["resumed"] == len(durable) and summary["computed"] == len(ref) - len(durable)
    for name, mtime in mtimes.items():  # durable runs were not recomputed
        assert (out / "points" / name).stat().st_mtime_ns == mtime
    assert not list(out.glob(".*.tmp")) and not list((out / "points").glob("*.tmp"))
    df = load_results(out)
    assert not df.duplicated(["point", "replicate"]).any()
    pd.testing.assert_frame_equal(df, ref)


def test_ctrl_c_stops_cleanly(slow, tmp_path):
    exp_path, ref = slow
    out = tmp_path / "interrupted"
    proc = _cli("sweep", exp_path, "--out", out, "--workers", "2")
    try:
        _wait_for_points(out / "points", 2, proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does to the foreground group
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "--resume" in stderr and "runs are saved in" in stderr, stderr
    assert not (out / "results.parquet").exists()
    assert json.loads((out / "meta.json").read_text())["status"] == "interrupted"
    assert len(list((out / "points").glob("*.json"))) >= 2
