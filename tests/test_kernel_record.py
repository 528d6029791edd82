"""The live-kernel recorder (``fastfault kernel record``) and the folio-layout reader.

The recording tests run on Linux as root with a readable ``/proc/kpageflags`` and a C compiler; elsewhere they
skip with the reason. The spec/parsing tests run everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

from fastfault.errors import InputError
from fastfault.kernel import layout as layout_mod
from fastfault.kernel import record as rec
from fastfault.kernel.cases import JSON_KEYS, PHASE_KEYS, load_case

FORMAT_ARRAYS = {"folio_size", "trace1", "trace2", "present1", "present2"}


def _live_problem() -> str | None:
    if not sys.platform.startswith("linux"):
        return "not Linux"
    problem = layout_mod.layout_access_problem()
    if problem:
        return problem
    if not (os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")):
        return "no C compiler (gcc) to build the touch helper"
    return None


LIVE_PROBLEM = _live_problem()
live = pytest.mark.skipif(LIVE_PROBLEM is not None, reason=f"needs root and /proc/kpageflags: {LIVE_PROBLEM}")


# ----------------------------------------------------------------------------------------- everywhere


def test_mapping_spec_text_round_trip():
    for text in ("shared", "private+w", "shared+rw+u", "private+r2w+u+off=1+len=4000", "shared+off=8+len=10"):
        m = rec.MappingSpec.parse(text)
        assert rec.MappingSpec.parse(m.tag()) == m
    m = rec.MappingSpec.parse("private+rw+u+off=1+len=4000")
    assert m.private and m.access == "rw" and not m.aligned and m.offset_pages == 1 and m.vma_pages == 4000
    assert m.vma_start() == rec.VMA_BASE + 4096 and rec.VMA_BASE % (2 << 20) == 0
    assert rec.MappingSpec().suffix() == "a" and rec.MappingSpec(aligned=False).suffix() == "u"


@pytest.mark.parametrize("text", ["both", "shared+x", "shared+off=abc", "private+len=0", "shared+off=-1"])
def test_mapping_spec_bad_text(text):
    with pytest.raises(InputError) as ei:
        rec.MappingSpec.parse(text)
    assert "\n" not in str(ei.value)


def test_mapping_past_eof_refused():
    with pytest.raises(InputError, match="past EOF"):
        rec.CaseSpec("order0", "seq", rec.MappingSpec.parse("shared+off=100+len=8100"), 8192)
    with pytest.raises(InputError, match="past EOF"):
        rec.MappingSpec(vma_pages=9000).length(8192)
    assert rec.MappingSpec(offset_pages=100).length(8192) == 8092


def test_unknown_names_refused():
    with pytest.raises(InputError, match="layout"):
        rec.plan_cases(layouts=("order3",))
    with pytest.raises(InputError, match="pattern"):
        rec.plan_cases(patterns=("spiral",))


def test_plans():
    assert len(rec.public_like_specs()) == 63
    ext = rec.extended_specs()
    assert 40 <= len(ext) <= 80
    labels = [s.label() for s in ext]
    assert len(set(labels)) == len(labels)
    assert any(s.mapping.private and s.mapping.has_stores for s in ext)
    assert any(not s.mapping.private and s.mapping.has_stores for s in ext)
    assert any(s.mapping.offset_pages for s in ext) and any(not s.mapping.aligned for s in ext)
    assert any(s.layout == "uniform512" and s.mapping.vma_pages for s in ext)
    quick = rec.quick_specs()
    assert len(quick) == 6 and all(s.npages == 2048 for s in quick)


@pytest.mark.parametrize("layout", rec.LAYOUTS)
def test_layout_plans_are_naturally_aligned(layout):
    for n in (8192, 7205):
        fs = rec.layout_plan(layout, n, seed=3)
        assert fs.shape == (n,) and fs.dtype == np.int64
        assert ((fs & (fs - 1)) == 0).all() and (fs >= 1).all() and fs.max() <= 512
        pos = 0
        while pos < n:
            s = int(fs[pos])
            assert pos % s == 0 and (fs[pos : pos + s] == s).all() and pos + s <= n
            pos += s
    if layout.startswith("uniform"):
        assert (rec.layout_plan(layout, 8192) == int(layout[7:])).all()
    if layout == "mixed":
        assert set(np.unique(rec.layout_plan(layout, 8192)).tolist()) == {1, 4, 16, 64, 512}
    if layout == "mixedall":
        assert len(np.unique(rec.layout_plan(layout, 8192))) == 10


@pytest.mark.parametrize("pattern", rec.PATTERNS)
def test_traces_like_the_public_set(pattern):
    n = 8192
    t1, t2, w1, w2 = rec.make_traces(pattern, "r", n, np.random.default_rng(0))
    assert w1 is None and w2 is None
    assert t1.dtype == np.int64 and (t1 >= 0).all() and (t1 < n).all()
    assert len(t2) == 819 and len(np.unique(t2)) == 819
    expected_len = {
        "seq": n, "reverse": n, "stride16": 512, "stride16_off8": 512, "stride17": 482, "stride40": 205,
        "rand_all": n, "rand_sub": 409, "zipf": 2048,
    }  # fmt: skip
    assert len(t1) == expected_len[pattern]
    if pattern == "stride40":
        assert t1[0] == 3
    a = rec.make_traces(pattern, "rw", n, np.random.default_rng(5))
    b = rec.make_traces(pattern, "rw", n, np.random.default_rng(5))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    _, _, w1, w2 = rec.make_traces(pattern, "r2w", n, np.random.default_rng(0))
    assert not w1.any() and w2.all()


def test_smaps_block_parsing():
    text = (
        "5f0000000000-5f0000001000 r--p 00000000 fe:00 12 /x\nRss:                   4 kB\n"
        "600000000000-600000800000 r--s 00000000 fe:00 1234 /tmp/f\n"
        "Size:               8192 kB\nRss:                8192 kB\nReferenced:          400 kB\n"
        "FilePmdMapped:      2048 kB\nVmFlags: rd mr me ms sd\n"
        "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nRss:                   4 kB\n"
    )
    kb = rec._smaps_block(text, 0x600000000000)
    assert kb == {"Size": 8192, "Rss": 8192, "Referenced": 400, "FilePmdMapped": 2048}


def test_not_root_is_input_error(monkeypatch, tmp_path):
    monkeypatch.setattr(layout_mod.os, "geteuid", lambda: 1000)
    with pytest.raises(InputError) as ei:
        rec.record_cases(tmp_path / "out", quick=True, log=None)
    msg = str(ei.value)
    assert "\n" not in msg and ("root" in msg or "Linux" in msg or "page size" in msg)
    assert not (tmp_path / "out").exists()


def test_fault_around_default(monkeypatch):
    monkeypatch.setattr(rec, "FAULT_AROUND_PATH", "/nonexistent/fault_around_bytes")
    assert rec.read_fault_around_bytes() == (65536, "default")


# ----------------------------------------------------------------------------------------- live kernel


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    if LIVE_PROBLEM is not None:
        pytest.skip(f"needs root and /proc/kpageflags: {LIVE_PROBLEM}")
    out = tmp_path_factory.mktemp("cases")
    work = tmp_path_factory.mktemp("work")
    cache = tmp_path_factory.mktemp("cache")
    report = rec.record_cases(out, seed=1, quick=True, work_dir=work, cache_dir=cache, attempts=3, log=None)
    return report, out


@live
def test_read_file_layout_live(tmp_path):
    for layout in ("uniform16", "mixed"):
        plan = rec.layout_plan(layout, 1024, seed=2)
        f = tmp_path / f"{layout}.dat"
        rec._make_layout_file(f, layout, plan, np.random.default_rng(0))
        assert np.array_equal(layout_mod.read_file_layout(f), plan), layout_mod.describe_layout(
            layout_mod.read_file_layout(f)
        )
    # order-0 by fadvise + random preads, and a partly cached file: -1 where not cached
    f = tmp_path / "order0.dat"
    rec._make_layout_file(f, "order0", np.ones(256, np.int64), np.random.default_rng(0))
    assert (layout_mod.read_file_layout(f) == 1).all()
    fd = os.open(f, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 64 * 4096, 64 * 4096, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    fs = layout_mod.read_file_layout(f)
    assert (fs[64:128] == -1).all() and (fs[:64] == 1).all() and (fs[128:] == 1).all()
    assert not layout_mod.cached_pages(f)[64:128].any()  # reading the layout did not read the file


@live
def test_record_quick_set(recorded):
    report, out = recorded
    specs = rec.quick_specs()
    assert report.dropped == [], report.summary()
    assert len(report.written) == len(specs)
    assert report.kernel == os.uname().release
    if report.fault_around_bytes_source == "default":
        assert any("fault_around_bytes" in n for n in report.notes)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{i:03d}_{s.label()}.{ext}" for i, s in enumerate(specs) for ext in ("json", "npz")]
    )


@live
def test_recorded_cases_follow_format(recorded):
    report, _ = recorded
    by_name = {f"{i:03d}_{s.label()}": s for i, s in enumerate(rec.quick_specs())}
    for path in report.written:
        spec = by_name[path.stem]
        meta = json.loads(path.read_text())
        assert list(meta)[: len(JSON_KEYS)] == list(JSON_KEYS)
        assert meta["recorder"] == "fastfault kernel record" and meta["kernel"] == os.uname().release
        assert meta["arch"] == os.uname().machine
        assert meta["fault_around_bytes_source"] in ("default", "debugfs")
        for ph in ("phase1", "phase2"):
            assert list(meta[ph]) == list(PHASE_KEYS)
        with np.load(path.with_suffix(".npz")) as z:
            names = set(z.files)
        want = FORMAT_ARRAYS | ({"write1", "write2"} if spec.mapping.has_stores else set())
        assert names == want
        c = load_case(path)  # validates dtypes and shapes
        m = spec.mapping
        assert c.npages == spec.npages and c.private == m.private
        assert c.vma_pages == m.length(spec.npages) and c.offset_pages == m.offset_pages
        assert c.vma_start == m.vma_start()
        assert c.vma_aligned_2m == m.aligned
        assert c.vma_start % (2 << 20) == (0 if m.aligned else 4096)
        assert np.array_equal(c.folio_size, rec.layout_plan(spec.layout, spec.npages, seed=1))
        # the traces are the seeded ones
        rng = np.random.default_rng([1, rec.zlib.crc32(spec.label().encode())])
        t1, t2, w1, w2 = rec.make_traces(spec.pattern, m.access, c.vma_pages, rng)
        assert np.array_equal(c.trace1, t1) and np.array_equal(c.trace2, t2)
        if m.has_stores:
            assert np.array_equal(c.write1, w1) and np.array_equal(c.write2, w2)


@live
def test_recorded_cases_are_consistent(recorded):
    report, _ = recorded
    for path in report.written:
        c = load_case(path)
        for ph, present, trace in ((c.phase1, c.present1, c.trace1), (c.phase2, c.present2, c.trace2)):
            assert ph.majflt == 0
            # every page of the mapping with a page-table entry is resident: the pagemap count is Rss
            assert int(present.sum()) == ph.rss, c.name
            assert ph.referenced <= ph.rss and ph.file_pmd_mapped <= ph.rss
            assert ph.file_pmd_mapped % 512 == 0
            assert present[trace].all(), c.name  # every page touched in the phase is mapped after it
        # phase 1 starts from an empty mapping; a touch faults at most once (stores are pure stores)
        assert 1 <= c.phase1.minflt <= len(c.trace1)
        if c.arch == "x86_64":
            assert c.phase1.referenced == c.phase1.rss  # hardware accessed bit, prefaulted PTEs are young
        assert c.phase2.referenced >= len(np.unique(c.trace2)) or c.phase2.file_pmd_mapped
        assert c.meta["detail1"]["pagemap_anon"] == c.meta["detail1"].get("Anonymous", 0)
        if not c.private:
            assert c.meta["detail1"]["pagemap_anon"] == 0 and c.meta["detail2"]["pagemap_anon"] == 0
        if c.private and c.has_writes:
            # each store to a private mapping leaves an anonymous copy of its page
            stored = np.unique(np.concatenate([c.trace1[c.write1], c.trace2[c.write2]]))
            assert c.meta["detail2"]["Anonymous"] >= len(stored) > 0
        if not c.has_writes and not c.private:
            assert c.phase2.rss >= c.phase1.rss  # nothing unmaps pages between the phases


@live
def test_recorded_case_kinds(recorded):
    report, _ = recorded
    cases = [load_case(p) for p in report.written]
    assert any(c.private and c.has_writes for c in cases)
    assert any(not c.private and c.has_writes for c in cases)
    assert any(c.offset_pages > 0 for c in cases)
    assert any(not c.vma_aligned_2m for c in cases)
    assert any(c.vma_pages < c.npages for c in cases)
    pmd = [c for c in cases if c.layout == "uniform512" and c.vma_aligned_2m and c.vma_pages == c.npages]
    assert pmd and all(c.phase1.file_pmd_mapped == c.npages for c in pmd)  # PMD-size folios are PMD-mapped


@live
def test_shared_stores_leave_file_clean_and_unchanged(tmp_path):
    spec = rec.CaseSpec("uniform16", "seq", rec.MappingSpec.parse("shared+w"), 256)
    report = rec.record_cases(tmp_path / "o", specs=[spec], work_dir=tmp_path, attempts=3, log=None)
    assert len(report.written) == 1, report.summary()
    c = load_case(report.written[0])
    assert c.write1.all() and c.phase1.minflt >= 1
    assert c.meta["detail1"]["Shared_Dirty"] + c.meta["detail1"]["Private_Dirty"] > 0  # the stores dirtied it


@live
def test_without_large_folios_only_order0_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(rec, "_probe_large_folios", lambda work: False)
    specs = [rec.CaseSpec("order0", "seq", npages=256), rec.CaseSpec("uniform16", "seq", npages=256)]
    report = rec.record_cases(tmp_path / "o", specs=specs, work_dir=tmp_path, attempts=3, log=None)
    assert [p.stem for p in report.written] == ["000_order0_seq_a_n256"]
    assert [name for name, _ in report.dropped] == ["001_uniform16_seq_a_n256"]
    assert any("order-0 cases only" in n for n in report.notes)


@live
def test_simulator_matches_freshly_recorded_cases(recorded):
    """The acceptance test of `fastfault kernel record`: record on this kernel, then check every case."""
    from fastfault.kernel.check import check_dir

    _, out = recorded
    results = check_dir(out)
    assert len(results) == len(rec.quick_specs())
    assert all(r.match for r in results), "\n".join(f"{r.name}: {d}" for r in results for d in r.diffs)
