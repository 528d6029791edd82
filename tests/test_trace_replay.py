"""Replaying recorded traces of real programs: reproducible, and collapsing same-page runs changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastfault.api import Layout, build, run
from fastfault.model import Config
from fastfault.trace.format import expand_runs, load_trace

from .conftest import DATA

LS = DATA / "traces" / "ls_usr_lib.fftrace"
PY = DATA / "traces" / "python_startup.fftrace"


def test_recorded_traces_name_real_files():
    for path, binary in ((LS, "/usr/bin/ls"), (PY, "python3")):
        t = load_trace(path)
        files = {m.path for m in t.mappings if m.is_file}
        assert any(binary in f for f in files), files
        assert any("libc.so.6" in f for f in files)
        assert any("ld-linux" in f for f in files)
        assert any(m.executable for m in t.mappings if m.is_file)


def test_replay_is_reproducible():
    a = run(str(LS), seed=3, thp_ratio=0.0, base_order=2)
    b = run(str(LS), seed=3, thp_ratio=0.0, base_order=2)
    assert a.row() == b.row()
    assert a.counters["file_accesses"] > 0 and a.counters["minflt"] > 0


@pytest.mark.parametrize("tlb", [None, "zen4"])
def test_collapsing_runs_changes_no_result(tlb):
    trace = load_trace(LS)
    assert (trace.count > 1).any()
    expanded = expand_runs(trace)
    assert expanded.vpn.shape[0] > trace.vpn.shape[0]
    config = Config(arch="arm64")
    layout = Layout(folio_orders={0: 0.5, 2: 0.3, 4: 0.2})
    kw = {"tlb": tlb, "aging_interval": 100_000 if tlb else 0}
    sims = []
    for t in (trace, expanded):
        sim = build(t, config=config, layout=layout, seed=1, **kw)
        sim.run(t.vpn, t.kind, t.count)
        sims.append(sim)
    assert sims[0].counters() == sims[1].counters()
    assert sims[0].tlb_stats() == sims[1].tlb_stats()
    assert sims[0].aging_stats() == sims[1].aging_stats()
    for name in ("pte", "pmd", "pc_flags"):
        assert np.array_equal(getattr(sims[0].state, name), getattr(sims[1].state, name))


def test_run_trace_cli_with_saved_layout(cli, tmp_path):
    trace = load_trace(LS)
    libc = next(m for m in trace.mappings if m.is_file and "libc.so.6" in m.path)
    npages = -(-libc.file_size // 4096)
    layout = np.full(npages, -1, np.int64)  # nothing of libc cached: its first touches are major faults
    np.save(tmp_path / "libc.npy", layout)
    out = cli("run", "--trace", LS, "--json", "--layout", f"{libc.path}=" + str(tmp_path / "libc.npy"))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["counters"]["majflt"] > 0
    plain = json.loads(cli("run", "--trace", LS, "--json").stdout)
    assert plain["counters"]["majflt"] == 0


def test_run_trace_cli_errors(cli, tmp_path):
    bad = tmp_path / "bad.fftrace"
    bad.write_bytes(b"not a trace")
    out = cli("run", "--trace", bad)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    out = cli("run", "--trace", tmp_path / "missing.fftrace")
    assert out.returncode == 2 and "no such file" in out.stderr
