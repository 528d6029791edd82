"""Differential tests: the jitted fault path against the pure-Python reference ``kernels_py``.

Both implementations replay the same trace phases (with ``clear_refs`` between phases) on deep
copies of the same initial :class:`~fastfault.fault.state.SimState`; every array the fault path
writes (counters, fault-around histogram, PTEs, PMDs, page cache, file table) and ``smaps`` of
every VMA must come out identical. ``kernels_py`` is written from the kernel source; a
disagreement is settled there (the findings are described in the commit that fixed them).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import kernels_py.replay as ref
from fastfault.fault import replay as jit
from fastfault.fault.state import HIST_LEN, PG, PMD, PTE, FileField, SimState, Stat
from fastfault.model import Config, FileSpec, VmaSpec

try:
    from tests.strategies import BASE_VPN, PROFILES, Case, build_states, cases, replay_extra, reproducer
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from strategies import BASE_VPN, PROFILES, Case, build_states, cases, replay_extra, reproducer

#: Arrays the fault path writes; ``vmas``, ``cfg`` and the ``vmf`` scratch are not compared.
COMPARED = ("stats", "fa_hist", "pte", "pmd", "pc_order", "pc_flags", "files")


def _describe(name: str, a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"{name}: shapes {a.shape} != {b.shape}"
    idx = np.argwhere(a != b)
    if name == "stats":
        items = [f"{Stat(int(i[0])).name}: jit={a[tuple(i)]} ref={b[tuple(i)]}" for i in idx]
    else:
        items = [f"[{', '.join(map(str, i))}] jit={a[tuple(i)]} ref={b[tuple(i)]}" for i in idx[:12]]
        if len(idx) > 12:
            items.append(f"... {len(idx)} differences")
    return f"{name}: " + "; ".join(items)


def compare_states(s_jit: SimState, s_ref: SimState, where: str = "") -> list[str]:
    """Human-readable differences between two states (empty when identical)."""
    out = []
    for name in COMPARED:
        a, b = getattr(s_jit, name), getattr(s_ref, name)
        if a.shape != b.shape or not np.array_equal(a, b):
            out.append(where + _describe(name, a, b))
    for v in range(s_jit.vmas.shape[0]):
        n = int(s_jit.vmas[v, 1])
        p_jit, p_ref = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        r_jit = tuple(int(x) for x in jit.smaps_vma(s_jit, v, p_jit))
        r_ref = tuple(int(x) for x in ref.smaps_vma(s_ref, v, p_ref))
        if r_jit != r_ref or not np.array_equal(p_jit, p_ref):
            out.append(f"{where}smaps_vma(v={v}) (Rss, Referenced, FilePmdMapped, Anonymous): jit={r_jit} ref={r_ref}")
    return out


def run_case(case: Case, *, check_each_phase: bool = True) -> tuple[SimState, SimState]:
    """Replay ``case`` through both implementations; fail with a reproducer on any difference."""
    sim, s_jit, s_ref = build_states(case)
    jit_extra, ref_extra = replay_extra(sim), replay_extra(sim)  # TLB / aging state: both off
    for i, (vpn, kind, count) in enumerate(case.phases):
        if i:
            jit.clear_refs(s_jit)
            ref.clear_refs(s_ref)
        jit.replay_trace(s_jit, *jit_extra, vpn, kind, count)
        ref.replay_trace(s_ref, *ref_extra, vpn, kind, count)
        if check_each_phase or i == len(case.phases) - 1:
            diff = compare_states(s_jit, s_ref, f"phase {i}: ")
            if diff:
                pytest.fail("\n".join(diff) + "\n\nreproducer:\n" + reproducer(case), pytrace=False)
    return s_jit, s_ref


# --- property tests, one per kernel profile -------------------------------------------------------

_SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("profile", PROFILES)
def test_differential(profile):
    """At least 1000 generated cases per profile (``max_examples``); see :mod:`tests.strategies`."""

    @_SETTINGS
    @given(case=cases(profile))
    def check(case):
        run_case(case)

    check()


# --- explicit cases for the tricky spots ----------------------------------------------------------

VPN0 = BASE_VPN  # 2 MiB aligned


def _case(files, vmas, phases, **cfg) -> Case:
    out = []
    for ph in phases:
        vpn = np.asarray([p[0] for p in ph], dtype=np.int64)
        kind = np.asarray([p[1] if len(p) > 1 else 0 for p in ph], dtype=np.uint8)
        out.append((vpn, kind, np.ones(len(vpn), np.int64)))
    return Case(files=files, vmas=vmas, config=Config(**cfg), phases=out)


def _stat(s: SimState, name: str) -> int:
    return int(s.stats[Stat[name]])


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("table_first", [False, True])
def test_large_folio_ending_at_eof(profile, table_first):
    """A 64-page folio that ends exactly at EOF, faulted with and without a PTE table in place.

    v6.18 ``filemap_map_pages`` tests ``file_end >= folio_next_index(folio)`` with ``file_end`` the
    last page index, so this folio is treated as crossing EOF: without a table fault-around maps
    nothing and ``finish_fault`` (which uses a page count) maps the whole folio; with a table
    (made by touching the first folio of the same PMD) fault-around maps only the window.
    """
    sizes = np.concatenate([np.full(64, 64), np.full(64, 64)])  # two order-6 folios, 128 pages
    f = FileSpec.from_folio_sizes(sizes)
    vma = VmaSpec(start=VPN0 * 4096, pages=128)
    phase = ([(VPN0 + 3,)] if table_first else []) + [(VPN0 + 70,)]
    s_jit, s_ref = run_case(_case([f], [vma], [phase], profile=profile))
    if profile == "linux-6.18":
        present = int((s_ref.pte[64:128] != 0).sum())
        assert present == (16 if table_first else 64)


@pytest.mark.parametrize("profile", PROFILES)
def test_window_vma_starts_mid_block(profile):
    """A VMA starting at virtual page 5 of a 16-page block: the window is VMA pages 0..15."""
    f = FileSpec.from_folio_sizes(np.ones(64, np.int64))
    vma = VmaSpec(start=(VPN0 + 5) * 4096, pages=40)
    s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0 + 6,), (VPN0 + 21,), (VPN0 + 20,)]], profile=profile))
    assert int(s_ref.fa_hist[16]) >= 1
    assert (s_ref.pte[0:16] != 0).all()


@pytest.mark.parametrize("profile", PROFILES)
def test_finish_fault_whole_folio_fallback(profile):
    """``finish_fault`` falls back to one PTE when a PTE inside the folio's range is present.

    Fault-around is off (4 KiB); the first access maps page 3 of a 64-page folio (whole folio in
    v6.18), a private write then replaces one PTE with an anon page, and a fault elsewhere in the
    folio finds PTEs present.
    """
    sizes = np.full(64, 64)
    f = FileSpec.from_folio_sizes(sizes, locked=np.eye(1, 64, 0, dtype=bool)[0])
    vma = VmaSpec(start=VPN0 * 4096, pages=64, shared=False, writable=True)
    phases = [[(VPN0 + 10, 1), (VPN0 + 11,), (VPN0 + 40,)]]
    s_jit, s_ref = run_case(_case([f], [vma], phases, profile=profile, fault_around_bytes=4096))
    assert int((s_ref.pte != 0).sum()) == 3  # the COW page, then one PTE per fault


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("pgoff", "pages", "page"), [(1, 1024, 3), (256, 1024, 300), (0, 700, 600)])
def test_pmd_folio_in_unsuitable_vma(profile, pgoff, pages, page):
    """A PMD-size folio in a VMA that is not 2 MiB suitable there (``vm_start - vm_pgoff`` not a
    multiple of 512, or the VMA ends inside the 2 MiB range): ``thp_vma_suitable_order()`` fails, so
    no PMD; PTEs only (in v6.18 the folio spans two PMD ranges or leaves the VMA: no whole-folio
    mapping either)."""
    f = FileSpec.from_folio_sizes(np.full(1536, 512))
    vma = VmaSpec(start=VPN0 * 4096, pages=pages, pgoff=pgoff)
    s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0 + page,), (VPN0 + page + 1,)]], profile=profile))
    assert _stat(s_ref, "PMD_MAPPED") == 0
    assert _stat(s_ref, "PTES_INSTALLED") > 0


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("shared", [False, True])
def test_write_to_readonly_huge_pmd(profile, shared):
    """A store to a read-only huge PMD: ``wp_huge_pmd`` zaps the file PMD and the fault is handled
    at PTE level (COW page, or ``do_shared_fault`` re-mapping the folio writable)."""
    f = FileSpec.from_folio_sizes(np.full(1024, 512))
    vma = VmaSpec(start=VPN0 * 4096, pages=1024, shared=shared, writable=True)
    s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0 + 7,), (VPN0 + 9, 1), (VPN0 + 10,)]], profile=profile))
    assert _stat(s_ref, "PMD_SPLIT") == 1


@pytest.mark.parametrize("profile", PROFILES)
def test_access_flag_faults_after_clear_refs(profile):
    """arm64 without hardware AF: after ``clear_refs`` every access to a mapped page is an
    access-flag fault (a minor fault), PTE and PMD alike."""
    f0 = FileSpec.from_folio_sizes(np.ones(64, np.int64))
    f1 = FileSpec.from_folio_sizes(np.full(512, 512))
    vmas = [
        VmaSpec(start=VPN0 * 4096, pages=64, file=0),
        VmaSpec(start=(VPN0 + 512) * 4096, pages=512, file=1),
    ]
    touch = [(VPN0 + i,) for i in range(0, 32, 3)] + [(VPN0 + 512 + 5,)]
    s_jit, s_ref = run_case(_case([f0, f1], vmas, [touch, touch, touch], profile=profile, arch="arm64-nohaf"))
    assert _stat(s_ref, "FAULT_AF") == 2 * len(touch)


# --- regression cases for the findings of the first differential runs (kernel expectations on the reference) --


def test_v66_vma_lock_retries():
    """F1: v6.6 gives up under the per-VMA lock after fault-around; a PG_readahead hit then retries
    under mmap_lock with FAULT_FLAG_TRIED and counts as a major fault."""
    ra = np.zeros(64, bool)
    ra[16] = True
    f = FileSpec.from_folio_sizes(np.ones(64, np.int64), readahead=ra)
    vma = VmaSpec(start=VPN0 * 4096, pages=64)
    for profile, majflt, retries, fa_calls in (("linux-6.6", 1, 2, 3), ("linux-6.18", 0, 1, 2)):
        s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0 + 16,)]], profile=profile))
        assert (_stat(s_ref, "MAJFLT"), _stat(s_ref, "FAULT_RETRY")) == (majflt, retries)
        assert _stat(s_ref, "FAULTAROUND_CALLS") == fa_calls


def test_uffd_finish_fault_maps_one_pte():
    """F2: ``userfaultfd_armed(vma)`` keeps v6.18 ``finish_fault`` at one PTE."""
    f = FileSpec.from_folio_sizes(np.full(64, 64))
    vma = VmaSpec(start=VPN0 * 4096, pages=64, uffd=True)
    s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0 + 5,)]]))
    assert _stat(s_ref, "PTES_INSTALLED") == 1


@pytest.mark.parametrize("max_order", [0, 9])
def test_hugepage_readahead(max_order):
    """F3: the VM_HUGEPAGE read-ahead of v6.18 reads two PMD-sizes from the aligned index whatever
    ``mapping_max_folio_order`` is, and leaves ``ra->start`` alone."""
    f = FileSpec.uncached(2048 * 4096, max_folio_order=max_order)
    vma = VmaSpec(start=VPN0 * 4096, pages=2048, advice="hugepage")
    s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0 + 700,)]]))
    assert _stat(s_ref, "RA_PAGES") == 1024
    assert int(s_ref.files[0, FileField.RA_START]) == 0


def test_split_sets_referenced_and_clear_refs_spares_unmapped():
    """F4/F5/F6: zapping a young file PMD sets PG_referenced; ``clear_refs`` leaves it on the folio
    while no PTE or PMD maps it; smaps counts it as Referenced once mapped again."""
    f = FileSpec.from_folio_sizes(np.full(512, 512))
    vma = VmaSpec(start=VPN0 * 4096, pages=512, shared=False, writable=True)
    phases = [[(VPN0,), (VPN0 + 1, 1)], [(VPN0 + 2,)]]
    s_jit, s_ref = run_case(_case([f], [vma], phases, arch="arm64"))
    assert int(s_ref.pc_flags[0]) & PG.REFERENCED


def test_contpte_fold_and_access_flag_fault():
    """F12/F13: arm64 v6.18 folds a block completed by single-PTE installs; without hardware AF one
    access-flag fault makes the whole block young."""
    f = FileSpec.from_folio_sizes(np.full(64, 32))
    vma = VmaSpec(start=VPN0 * 4096, pages=16, pgoff=16)
    s_jit, s_ref = run_case(
        _case([f], [vma], [[(VPN0 + i,) for i in range(16)]], arch="arm64", fault_around_bytes=4096)
    )
    assert (s_ref.pte[0:16] & PTE.CONT).all()
    f = FileSpec.from_folio_sizes(np.full(32, 16))
    vma = VmaSpec(start=VPN0 * 4096, pages=32)
    s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0,)], [(VPN0,), (VPN0 + 1,)]], arch="arm64-nohaf"))
    assert _stat(s_ref, "FAULT_AF") == 1


def test_v66_maps_past_eof_v518_does_not():
    """F11: v6.6 fault-around PTE-maps a folio straddling EOF past i_size (no SIGBUS there)."""
    f = FileSpec.from_folio_sizes(np.concatenate([np.full(8, 8), np.full(2, 8)]))
    vma = VmaSpec(start=VPN0 * 4096, pages=16)
    for profile, sigbus in (("linux-6.6", 0), ("linux-6.18", 1), ("linux-5.12", 1)):
        s_jit, s_ref = run_case(_case([f], [vma], [[(VPN0 + 9,), (VPN0 + 12,)]], profile=profile))
        assert _stat(s_ref, "SIGBUS") == sigbus


def test_reference_does_not_import_numba():
    """``kernels_py`` stays plain Python: importing it in a fresh interpreter loads no numba."""
    import subprocess
    import sys

    code = "import sys, kernels_py; assert 'numba' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unused_codes_are_known():
    """Guard: the encodings the comparison relies on."""
    assert HIST_LEN == 513 and PTE.UNTOUCHED == 32 and PMD.HUGE == 2 and PG.REFERENCED == 16
