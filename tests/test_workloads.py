"""Generated workloads: seeded and bit-reproducible, validated, and shaped as documented."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfault.codes import AccessKind
from fastfault.errors import InputError
from fastfault.trace.format import expand_runs, load_trace, mapping_index
from fastfault.workloads import DEFAULT_BASE, WORKLOADS, make_workload, workload_params
from tests.test_lackey import run_main

SMALL = {
    "sequential": {"npages": 64, "passes": 2},
    "reverse": {"npages": 64},
    "strided": {"npages": 64, "stride": 5, "offset": 2},
    "random": {"npages": 64, "n": 500},
    "zipf": {"npages": 64, "n": 500},
    "hotcold": {"npages": 64, "n": 500},
    "phases": {"npages": 64, "phases": "sequential;random:n=100,write_fraction=0.5"},
    "multifile": {"npages": 32, "nfiles": 3, "pattern": "random", "pattern_params": "n=50"},
    "program_start": {"n": 5000, "binary_pages": 32, "lib_pages": 16},
}


def pages(trace, mapping=0):
    """Expanded page indices relative to a mapping's start."""
    e = expand_runs(trace)
    return e.vpn - trace.mappings[mapping].start_vpn


def same(a, b) -> bool:
    return (
        all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a[:3], b[:3], strict=True))
        and a.mappings == b.mappings
        and a.meta == b.meta
    )


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_seeded_and_reproducible(name):
    a = make_workload(name, seed=11, **SMALL[name])
    b = make_workload(name, seed=11, **SMALL[name])
    assert same(a, b)
    assert a.meta["name"] == name and a.meta["seed"] == 11
    assert (mapping_index(a) >= 0).all()
    assert all(m.path.startswith("synthetic:") and m.file_size > 0 for m in a.mappings)
    # collapsed: no two consecutive identical rows
    assert not ((a.vpn[1:] == a.vpn[:-1]) & (a.kind[1:] == a.kind[:-1])).any()
    if name not in ("sequential", "reverse", "strided"):  # these draw nothing without write_fraction
        c = make_workload(name, seed=12, **SMALL[name])
        assert not same(a, c)


def test_registry_and_defaults():
    assert set(WORKLOADS) == set(SMALL)
    for name in WORKLOADS:
        params = workload_params(name)
        assert "seed" not in params
        t = make_workload(name, seed=0, **SMALL[name])
        assert t.n_accesses > 0
    assert make_workload("zipf", seed=1).n_accesses == workload_params("zipf")["n"]


def test_sequential_reverse_strided():
    assert pages(make_workload("sequential", seed=0, npages=4, passes=2)).tolist() == [0, 1, 2, 3] * 2
    assert pages(make_workload("sequential", seed=0, npages=4, n=6)).tolist() == [0, 1, 2, 3, 0, 1]
    assert pages(make_workload("reverse", seed=0, npages=4)).tolist() == [3, 2, 1, 0]
    s = make_workload("strided", seed=0, npages=10, stride=3, offset=1, passes=2)
    assert pages(s).tolist() == [1, 4, 7, 1, 4, 7]
    t = make_workload("sequential", seed=0, npages=8, file_offset=3)
    m = t.mappings[0]
    assert m.pgoff == 3 and m.file_size == 11 * 4096 and m.start == DEFAULT_BASE and m.perms == "r--p"


def test_layout_and_kinds():
    t = make_workload("random", seed=3, npages=16, n=2000, write_fraction=0.25, shared=True, base=0x1234000)
    m = t.mappings[0]
    assert m.start == 0x1400000 and m.perms == "rw-s"  # base rounded up to 2 MiB
    stores = t.count[t.kind == AccessKind.STORE].sum() / t.n_accesses
    assert 0.2 < stores < 0.3
    t = make_workload("sequential", seed=0, npages=4, kind="ifetch", align=4096, base=0x5000)
    assert t.mappings[0].perms == "r-xp" and t.mappings[0].start == 0x5000
    assert set(t.kind.tolist()) == {AccessKind.IFETCH}


def test_zipf_and_hotcold_shapes():
    z = pages(make_workload("zipf", seed=5, npages=1000, n=50_000, alpha=1.2, permute=False))
    freq = np.bincount(z, minlength=1000)
    assert freq[0] == freq.max() and freq[0] > 10 * freq[100]
    zp = pages(make_workload("zipf", seed=5, npages=1000, n=50_000, alpha=1.2, permute=True))
    assert np.bincount(zp, minlength=1000).argmax() != 0 or np.bincount(zp)[0] < freq[0]
    u = pages(make_workload("zipf", seed=5, npages=50, n=50_000, alpha=0.0))
    assert np.bincount(u, minlength=50).min() > 800  # alpha 0 is uniform
    h = pages(make_workload("hotcold", seed=2, npages=1000, n=20_000, hot_fraction=0.05, hot_probability=0.8))
    assert 0.77 < (h < 50).mean() < 0.83
    hs = pages(make_workload("hotcold", seed=2, npages=1000, n=20_000, hot_fraction=0.05, scatter=True))
    assert len(np.unique(hs[:2000])) > 50 and (hs < 50).mean() < 0.5


def test_phases():
    spec = "sequential:passes=1;zipf:n=300,alpha=1.5;random:n=200,kind=store"
    t = make_workload("phases", seed=4, npages=100, phases=spec)
    assert t.meta["phase_starts"] == [0, 100, 400] and t.n_accesses == 600
    p = pages(t)
    assert p[:100].tolist() == list(range(100))
    e = expand_runs(t)
    assert (e.kind[400:] == AccessKind.STORE).all() and (e.kind[:400] == AccessKind.LOAD).all()
    assert t.mappings[0].perms == "rw-p"
    as_list = [
        {"pattern": "sequential", "passes": 1},
        {"pattern": "zipf", "n": 300, "alpha": 1.5},
        {"pattern": "random", "n": 200, "kind": "store"},
    ]
    assert same(t._replace(meta={}), make_workload("phases", seed=4, npages=100, phases=as_list)._replace(meta={}))


def test_multifile_interleaves_in_bursts():
    t = make_workload("multifile", seed=0, nfiles=3, npages=8, burst=2)
    assert len(t.mappings) == 3 and [m.path for m in t.mappings] == [f"synthetic:file{i}" for i in range(3)]
    assert all(m.start % (2 << 20) == 0 for m in t.mappings)
    idx = mapping_index(expand_runs(t))
    assert idx[:12].tolist() == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    rel = expand_runs(t).vpn - np.array([m.start_vpn for m in t.mappings])[idx]
    assert rel[:6].tolist() == [0, 1, 0, 1, 0, 1] and t.n_accesses == 24


def test_program_start_structure():
    t = make_workload("program_start", seed=9, n=20_000, nlibs=3, binary_pages=64, lib_pages=32, data_pages=4)
    assert t.n_accesses == 20_000 and len(t.mappings) == 16
    names = [m.path for m in t.mappings]
    assert names[0] == "synthetic:bin" and "synthetic:lib3.so" in names
    assert [m.perms for m in t.mappings[:4]] == ["r--p", "r-xp", "r--p", "rw-p"]
    objects = [m for m in t.mappings if m.offset == 0]
    assert all(m.start % (2 << 20) == 0 for m in objects) and objects[0].start == 0x400000
    idx = mapping_index(t)
    perms = np.array([m.perms for m in t.mappings])[idx]
    assert (perms[t.kind == AccessKind.IFETCH] == "r-xp").all()
    assert (perms[t.kind == AccessKind.STORE] == "rw-p").all()
    # loading part: the header page of each object, then stores to its data pages
    load = t.meta["load_accesses"]
    assert load == 4 * (1 + 4)
    e = expand_runs(t)
    assert e.kind[0] == AccessKind.LOAD and e.vpn[0] == t.mappings[0].start_vpn
    assert (e.kind[1:5] == AccessKind.STORE).all()
    assert (e.kind[load:] == AccessKind.IFETCH).mean() > 0.8
    # runs of sequential text pages: consecutive fetch rows are often on adjacent pages
    f = t.vpn[t.kind == AccessKind.IFETCH]
    assert (np.diff(f) == 1).mean() > 0.3
    with pytest.raises(InputError, match="shorter than the loading part"):
        make_workload("program_start", seed=0, n=10)


@settings(max_examples=25)
@given(st.sampled_from(["random", "zipf", "hotcold", "program_start"]), st.integers(1, 3000), st.integers(0, 2**32))
def test_n_counts_accesses(name, n, seed):
    if name == "program_start":
        n += 100
    assert make_workload(name, seed=seed, n=n).n_accesses == n


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("nope", {}, "unknown workload 'nope'; valid: sequential, reverse, strided, random"),
        ("zipf", {"bogus": 1}, r"unknown parameter\(s\) bogus; valid: npages, n, alpha"),
        ("zipf", {"alpha": -1}, "alpha=-1.0 must be >= 0.0"),
        ("random", {"n": 0}, "n=0 must be >= 1"),
        ("random", {"npages": "many"}, "not an integer"),
        ("random", {"shared": "perhaps"}, "not a boolean"),
        ("random", {"kind": "write"}, "kind='write' must be one of load, store, ifetch"),
        ("sequential", {"kind": "ifetch", "write_fraction": 0.5}, "exclude each other"),
        ("random", {"write_fraction": 1.5}, "must be <= 1.0"),
        ("random", {"align": 3 * 4096}, "power of two"),
        ("strided", {"npages": 10, "offset": 10}, "offset=10 must be <= 9"),
        ("phases", {"phases": "foo:n=3"}, "unknown access pattern 'foo'; valid: sequential"),
        ("phases", {"phases": "random:zz=3"}, r"pattern 'random': unknown parameter\(s\) zz; valid: n"),
        ("phases", {"phases": "random:n"}, "is not KEY=VALUE"),
        ("phases", {"phases": ""}, "is empty"),
        ("multifile", {"pattern": "zipf", "pattern_params": "beta=2"}, "unknown parameter"),
    ],
)
def test_validation(name, params, match):
    with pytest.raises(InputError, match=match):
        make_workload(name, seed=0, **params)
    with pytest.raises(InputError, match="seed=-1 must be >= 0"):
        make_workload("random", seed=-1)


def test_cli_generate(tmp_path, monkeypatch, capsys):
    out = tmp_path / "z.fftrace"
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "trace", "generate", "zipf", "--seed", "3", "-p", "n=1000", "-p", "npages=64", "--out", out
    )
    assert code == 0, stderr
    assert same(load_trace(out), make_workload("zipf", seed=3, n=1000, npages=64))
    code, stdout, _ = run_main(monkeypatch, capsys, "trace", "generate", "--list")
    assert code == 0 and "program_start" in stdout and "hot_fraction=0.1" in stdout
    code, _, stderr = run_main(monkeypatch, capsys, "trace", "generate", "zipf", "-p", "gamma=1", "--out", out)
    assert code == 2 and "unknown parameter(s) gamma" in stderr and stderr.count("\n") == 1
