"""Recording real programs under valgrind lackey, and the recorded traces shipped in tests/data/traces."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastfault.codes import AccessKind
from fastfault.errors import InputError
from fastfault.trace.format import Mapping, file_pages, load_trace, mapping_index
from fastfault.trace.record import VALGRIND_MISSING, _attribute_exact, paint_mappings, record
from tests.test_lackey import run_main

TRACES = Path(__file__).parent / "data" / "traces"
needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")


def paths(trace) -> set[str]:
    return {m.path for m in trace.mappings if m.is_file}


def check_real_trace(trace, binary: str) -> None:
    names = paths(trace)
    assert binary in names
    assert any(p.endswith("/libc.so.6") for p in names), names
    assert any(p.endswith("/ld-linux-x86-64.so.2") for p in names), names
    assert trace.meta["unmapped_accesses"] == 0
    assert (mapping_index(trace) >= 0).all()
    # instructions are fetched from executable file mappings only
    idx = mapping_index(trace)
    fetch_maps = {trace.mappings[i] for i in np.unique(idx[trace.kind == AccessKind.IFETCH])}
    assert fetch_maps and all(m.executable and m.is_file for m in fetch_maps)
    for m in trace.mappings:  # file sizes come from stat (on the recording machine)
        assert (m.file_size > 0) if m.is_file else (m.file_size == -1)


@pytest.mark.parametrize(
    ("name", "binary"),
    [("python_startup.fftrace", "/usr/bin/python3.11"), ("ls_usr_lib.fftrace", "/usr/bin/ls")],
)
def test_recorded_traces_name_real_files(name, binary):
    trace = load_trace(TRACES / name)
    check_real_trace(trace, binary)
    meta = trace.meta
    assert meta["tool"].startswith("valgrind-3.19.0 lackey") and meta["kernel"] and meta["date"]
    assert meta["mapping_discovery"]["final_snapshot"]
    text = [m for m in trace.mappings if m.path == binary and m.executable]
    assert len(text) == 1 and file_pages(trace, trace.mappings.index(text[0])).pgoff.size > 0


def test_python_startup_trace_is_a_python_startup():
    trace = load_trace(TRACES / "python_startup.fftrace")
    assert trace.meta["command"] == ["/usr/bin/python3", "-c", "pass"]
    assert trace.n_accesses == 15_000_000 and trace.meta["truncated_at_max_accesses"]
    idx = mapping_index(trace)
    by_path: dict[str, int] = {}
    for i, m in enumerate(trace.mappings):
        by_path[m.path] = by_path.get(m.path, 0) + int(trace.count[idx == i].sum())
    # most instruction fetches are in the interpreter binary (the Debian build links libpython statically)
    assert by_path["/usr/bin/python3.11"] > trace.n_accesses // 2


# ------------------------------------------------------------------- table merging (no valgrind)


def M(start, end, path="", offset=0, perms="r--p"):
    return Mapping(start * 4096, end * 4096, offset * 4096, perms, path)


def test_paint_later_snapshot_wins_and_keeps_pieces():
    a = M(10, 20, "/a", 5)
    b = M(12, 14, "/b", 0)
    conflicts: list = []
    table = paint_mappings([(a,), (b,)], conflicts)
    assert table == [M(10, 12, "/a", 5), b, M(14, 20, "/a", 9)]
    assert conflicts == [{"start": hex(12 * 4096), "end": hex(14 * 4096), "old": "/a", "new": "/b"}]
    # a permission change over the same bytes is not a conflict
    conflicts.clear()
    assert paint_mappings([(a,), (M(10, 20, "/a", 5, "r-xp"),)], conflicts) == [M(10, 20, "/a", 5, "r-xp")]
    assert conflicts == []
    # a mapping that disappears stays in the table
    assert paint_mappings([(a, M(30, 31)), (M(30, 31),)]) == [a, M(30, 31)]


def test_attribute_exact_relocates_reused_addresses():
    a, b, heap = M(10, 14, "/a", 0), M(10, 14, "/b", 1), M(100, 101)
    # accesses 0-3 happen while /a is mapped at 10..14, access 4 with nothing there, 5-9 with /b there
    vpn = np.array([10, 11, 100, 13, 100, 10, 10, 12, 100], dtype=np.int64)
    kind = np.zeros(9, dtype=np.uint8)
    count = np.array([1, 1, 1, 1, 1, 2, 1, 1, 1], dtype=np.uint32)  # row 5 counts accesses 5 and 6
    snaps = [(4, (a, heap)), (5, (heap,)), (10, (b, heap))]
    stats: dict = {}
    v, k, c, table = _attribute_exact(vpn, kind, count, snaps, stats)
    assert int(c.sum()) == 10
    (rel,) = stats["relocated"]
    assert rel["path"] == "/a" and rel["accesses"] == 3  # rows 0, 1 and 3
    moved = [m for m in table if m.path == "/a"]
    assert len(moved) == 1 and moved[0].start >= heap.end and moved[0].start % (2 << 20) == a.start % (2 << 20)
    shift = (moved[0].start - a.start) >> 12
    assert v.tolist() == [10 + shift, 11 + shift, 100, 13 + shift, 100, 10, 10, 12, 100]
    assert stats["epochs"] == 3


def test_attribute_exact_splits_rows_across_epochs():
    a, b = M(10, 11, "/a"), M(10, 11, "/b")
    vpn = np.array([10], dtype=np.int64)
    # one row of 4 identical accesses: 2 through /a, then /a is replaced by /b
    v, _, c, table = _attribute_exact(vpn, np.zeros(1, np.uint8), np.array([4], np.uint32), [(2, (a,)), (4, (b,))], {})
    assert c.tolist() == [2, 2] and v[1] == 10 and v[0] != 10
    assert {m.path for m in table} == {"/a", "/b"}


# ---------------------------------------------------------------------------- error handling


def test_missing_valgrind(monkeypatch, tmp_path, capsys):
    with pytest.raises(InputError) as err:
        record(["/bin/true"], valgrind="no-such-valgrind-binary")
    assert (
        str(err.value) == VALGRIND_MISSING == ("valgrind is not installed; install it with `apt-get install valgrind`")
    )
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "valgrind" else real_which(name))
    out = tmp_path / "t.fftrace"
    code, _, stderr = run_main(monkeypatch, capsys, "trace", "record", "--out", out, "--", "/bin/true")
    assert code == 2 and stderr == f"fastfault: error: {VALGRIND_MISSING}\n" and not out.exists()


@needs_valgrind
def test_missing_command():
    with pytest.raises(InputError, match="command not found: no-such-program-xyz"):
        record(["no-such-program-xyz"])
    with pytest.raises(InputError, match="no command"):
        record([])


# -------------------------------------------------------------------------- live recordings


@needs_valgrind
def test_cli_record_true(tmp_path, monkeypatch, capsys):
    out = tmp_path / "true.fftrace"
    code, stdout, stderr = run_main(monkeypatch, capsys, "trace", "record", "--out", out, "--", "/bin/true")
    assert code == 0, stderr
    assert "accesses" in stdout and out.exists() and not list(tmp_path.glob(".*"))
    trace = load_trace(out)
    check_real_trace(trace, "/usr/bin/true")
    assert trace.meta["exit_status"] == 0 and trace.meta["command"] == ["/bin/true"]
    assert trace.meta["mapping_discovery"]["seccomp_stops"] > 0
    code, stdout, _ = run_main(monkeypatch, capsys, "trace", "info", out)
    assert code == 0 and "/usr/bin/true" in stdout and "libc.so.6" in stdout


@needs_valgrind
def test_record_max_accesses_and_polling_mode():
    t = record(["/bin/true"], max_accesses=3000)
    assert t.n_accesses == 3000 and t.meta["truncated_at_max_accesses"]
    assert t.meta["exit_status"] == -9 and t.meta["mapping_discovery"]["final_snapshot"]
    assert (mapping_index(t) >= 0).all() and "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" in paths(t)
    p = record(["/bin/true"], exact=False)
    assert "/usr/bin/true" in paths(p) and p.meta["mapping_discovery"]["method"].startswith("poll")


@needs_valgrind
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_record_attributes_reused_addresses_exactly(tmp_path):
    exe = tmp_path / "remap"
    subprocess.run(["gcc", "-O2", "-o", exe, TRACES / "remap.c"], check=True)
    fa, fb = tmp_path / "a.bin", tmp_path / "b.bin"
    fa.write_bytes(os.urandom(5 * 4096))
    fb.write_bytes(os.urandom(5 * 4096))
    t = record([str(exe), str(fa), str(fb)])
    assert t.meta["exit_status"] == 0
    got = {}
    for i, m in enumerate(t.mappings):
        if m.path in (str(fa), str(fb)):
            fp = file_pages(t, i)
            got[Path(m.path).name] = sorted(np.repeat(fp.pgoff, fp.count.astype(np.int64)).tolist())
    # a.bin: one load on each of pages 0-3; b.bin (mapped at the same address from page 1): two loads each on 1-4
    assert got == {"a.bin": [0, 1, 2, 3], "b.bin": [1, 1, 2, 2, 3, 3, 4, 4]}
    assert any(r["path"] == str(fa) for r in t.meta["mapping_discovery"]["relocated"])


@needs_valgrind
def test_record_without_ptrace(monkeypatch):
    """If ptrace/seccomp are refused, the recorder degrades to polling an untraced valgrind."""
    import fastfault.trace.record as rec

    def refuse(prog):
        def setup():
            raise OSError("ptrace refused")

        return setup

    monkeypatch.setattr(rec, "_child_setup", refuse)
    t = record(["/bin/true"], max_accesses=5000)
    assert t.n_accesses == 5000 and "ptrace unavailable" in t.meta["mapping_discovery"]["method"]
    assert "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" in paths(t)
    full = record(["/bin/true"])
    assert full.meta["exit_status"] == 0 and "/usr/bin/true" in paths(full)
