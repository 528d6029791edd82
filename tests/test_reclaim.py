"""Reclaim aging: the young/old oracles of kernel-fault-path.md section 11, MGLRU look-around,
eviction, and the plain-Python mirror."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels_py.reclaim as ref
from fastfault.errors import InputError
from fastfault.fault.replay import replay_trace
from fastfault.fault.state import PG, PMD, PTE, SimState
from fastfault.model import Config, FileSpec, Simulator, VmaSpec, folio_sizes_from_orders
from fastfault.reclaim import (
    AgePolicy,
    AgeState,
    Decision,
    age,
    age_pass,
    age_stats,
    new_age_state,
)

START = 0x7F0000000000
START_VPN = START >> 12


def small_sim(arch="x86_64", pages=64, folio=1, vmas=None, **vma_kw) -> Simulator:
    f = FileSpec.from_folio_sizes(np.full(pages, folio, dtype=np.int64))
    vmas = vmas or [VmaSpec(start=START, pages=pages, **vma_kw)]
    return Simulator([f], vmas, Config(arch=arch))


def decisions(sim, a, pages=16):
    return a.decision[:pages].tolist()


# ---------------------------------------------------------------------------------------------
# Section 11, oracles 19 and 20
# ---------------------------------------------------------------------------------------------


def test_oracle19_x86_untouched_prefault_keep_then_reclaim_clean():
    sim = small_sim("x86_64")
    sim.run_relative([0])  # one fault-around of 16 order-0 pages; only page 0 is touched
    a = new_age_state(sim.state)
    r1 = age(sim.state, a)
    assert decisions(sim, a) == [Decision.KEEP] * 16
    assert (sim.state.pc_flags[:16] & PG.REFERENCED).all()  # second chance
    assert not (sim.state.pte[:16] & PTE.YOUNG).any()
    assert r1["false_young"] == 15 and r1["protected_untouched"] == 15 and r1["protected_used"] == 1
    # x86 does not flush when clearing A, but the vpns are listed for arm64 callers.
    assert a.nvpn.tolist() == [16, 0]
    assert sorted(a.cleared_vpn[:16].tolist()) == list(range(START_VPN, START_VPN + 16))
    r2 = age(sim.state, a)
    assert decisions(sim, a) == [Decision.RECLAIM_CLEAN] * 16
    assert r2["reclaim_clean"] == 16 and r2["reclaim_untouched"] == 15 and r2["reclaim_used"] == 1
    assert r2["young_cleared"] == 0 and a.nvpn[0] == 0
    assert age_stats(a)["passes"] == 2 and age_stats(a)["keep"] == 16


def test_oracle19_arm64_hw_af_old_prefault_reclaimed_at_first_scan():
    sim = small_sim("arm64")
    sim.run_relative([0])
    a = new_age_state(sim.state)
    r = age(sim.state, a)
    assert decisions(sim, a) == [Decision.KEEP] + [Decision.RECLAIM] * 15
    assert r["old_untouched"] == 15 and r["false_young"] == 0
    assert r["reclaim_untouched"] == 15 and r["reclaim_used"] == 0 and r["protected_used"] == 1
    assert a.nvpn[0] == 1 and a.cleared_vpn[0] == START_VPN  # arm64 flushes this one


def test_oracle19_x86_vm_exec_activated_on_first_scan():
    sim = small_sim("x86_64", executable=True)
    sim.run_relative([0])
    a = new_age_state(sim.state)
    r = age(sim.state, a)
    assert decisions(sim, a) == [Decision.ACTIVATE] * 16
    assert r["activate"] == 16 and r["activate_exec"] == 16


def test_oracle20_arm64_without_hw_af_access_flag_fault_after_aging():
    sim = small_sim("arm64-nohaf")
    sim.run_relative([0])
    assert (sim.state.pte[:16] & PTE.YOUNG).all()  # no old prefault without hardware AF
    a = new_age_state(sim.state)
    age(sim.state, a)
    assert decisions(sim, a) == [Decision.KEEP] * 16  # identical to x86
    before = sim.counters()
    sim.run_relative(np.arange(16))
    after = sim.counters()
    assert after["fault_af"] - before["fault_af"] == 16
    assert after["minflt"] - before["minflt"] == 16
    assert after["pgmajfault"] == before["pgmajfault"]


def test_prefault_old_later_accessed():
    sim = small_sim("arm64")
    sim.run_relative([0])
    a = new_age_state(sim.state)
    assert age(sim.state, a)["old_untouched"] == 15
    sim.run_relative([3, 4, 5, 6, 7])
    r = age(sim.state, a)
    assert r["prefault_old_later_accessed"] == 5 and r["old_untouched"] == 10
    assert age(sim.state, a)["prefault_old_later_accessed"] == 0


# ---------------------------------------------------------------------------------------------
# folio_referenced details
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("advice", ["sequential", "random"])
def test_vmas_without_recency_are_ignored(advice):
    sim = small_sim("x86_64", advice=advice)
    sim.run_relative([0])
    young = int((sim.state.pte[:16] & PTE.YOUNG).astype(bool).sum())
    a = new_age_state(sim.state)
    r = age(sim.state, a)
    assert r["reclaim"] == r["folios"] and r["young_cleared"] == 0
    assert int((sim.state.pte[:16] & PTE.YOUNG).astype(bool).sum()) == young  # not cleared


def test_two_referencing_vmas_activate():
    vmas = [VmaSpec(start=START, pages=64), VmaSpec(start=START + (4 << 20), pages=64)]
    sim = small_sim("x86_64", vmas=vmas)
    sim.run_relative([0], vma=0)
    sim.run_relative([0], vma=1)
    a = new_age_state(sim.state)
    r = age(sim.state, a)
    assert decisions(sim, a) == [Decision.ACTIVATE] * 16
    assert r["referenced_vmas"] == 32 and a.nvpn[0] == 32


def test_anon_cow_copies_are_not_the_file_folio():
    sim = small_sim("x86_64", shared=False, writable=True)
    sim.run_relative([0])
    sim.run_relative([5], writes=[True])  # COW: page 5 now maps an anonymous copy
    a = new_age_state(sim.state)
    r = age(sim.state, a)
    assert r["folios"] == 15 and a.decision[5] == Decision.NOT_SCANNED
    assert sim.state.pte[5] & PTE.YOUNG  # the anon PTE keeps its bit


def test_huge_pmd_young_cleared_and_listed_once():
    sim = small_sim("x86_64", pages=1024, folio=512)
    sim.run_relative([3])
    assert sim.counters()["pmd_mapped"] == 1
    a = new_age_state(sim.state, evict=True)
    r = age(sim.state, a)
    assert a.decision[0] == Decision.KEEP and r["young_pmds"] == 1
    assert a.cleared_vpn[: a.nvpn[0]].tolist() == [START_VPN]
    filepages = sim.counters()["mm_filepages"]
    r = age(sim.state, a)
    assert a.decision[0] == Decision.RECLAIM_CLEAN and r["reclaim_used"] == 512
    assert r["pmds_zapped"] == 1 and a.unmapped_vpn[: a.nvpn[1]].tolist() == [START_VPN]
    assert (sim.state.pmd[0] & PMD.KIND_MASK) == PMD.NONE
    assert sim.counters()["mm_filepages"] == filepages - 512
    assert (sim.state.pc_order[:512] == -1).all() and (sim.state.pc_flags[:512] & PG.SHADOW).all()


def test_contpte_block_cleared_as_one():
    sim = small_sim("arm64", folio=16)
    sim.run_relative([0])  # one 64 KiB folio, 16 PTEs
    pte = sim.state.pte
    pte[:16] = (pte[:16] | PTE.CONT) & ~np.uint8(PTE.YOUNG)
    pte[3] |= PTE.YOUNG  # the hardware set AF in one PTE of the block
    a = new_age_state(sim.state)
    r = age(sim.state, a)
    assert a.decision[0] == Decision.KEEP
    assert r["young_cleared"] == 1
    assert a.cleared_vpn[: a.nvpn[0]].tolist() == list(range(START_VPN, START_VPN + 16))  # flush covers 64K
    assert not (pte[:16] & PTE.YOUNG).any()


# ---------------------------------------------------------------------------------------------
# MGLRU look-around
# ---------------------------------------------------------------------------------------------


def test_mglru_look_around_promotes_false_young_neighbours():
    sim = small_sim("x86_64")
    sim.run_relative([0, 16, 32, 48])  # 64 young PTEs, 60 of them never touched
    classic = new_age_state(sim.state)
    s2 = SimState(*(x.copy() for x in sim.state))
    r = age(sim.state, classic, "lru")
    assert r["keep"] == 64 and r["protected_untouched"] == 60 and classic.nvpn[0] == 64
    a = new_age_state(s2)
    r = age(s2, a, "mglru")
    # Folio 0's young PTE: the window is the whole 64-page VMA; the 63 others are promoted.
    assert a.decision[0] == Decision.KEEP and (a.decision[1:64] == Decision.PROMOTED).all()
    assert r["lookaround_calls"] == 1 and r["lookaround_cleared"] == 64 and r["lookaround_promoted"] == 63
    assert r["protected_untouched"] == 60
    assert a.nvpn[0] == 0  # ptep_test_and_clear_young: nothing to flush
    assert not (s2.pte[:64] & PTE.YOUNG).any()


def test_mglru_window_is_64_pages_anchored_in_the_pmd():
    sim = small_sim("x86_64", pages=512)
    sim.run_relative([0, 48, 80])  # young runs 0..15, 48..63, 80..95
    a = new_age_state(sim.state)
    r = age(sim.state, a, AgePolicy.MGLRU)
    # From page 0 the window is [0, 64) (anchored at the start): 48..63 promoted, 80..95 not.
    keep = np.flatnonzero(a.decision == Decision.KEEP).tolist()
    assert keep == [0, 80]
    assert r["promoted"] == 15 + 16 + 15 and r["lookaround_calls"] == 2


def test_mglru_window_centred():
    sim = small_sim("x86_64", pages=512)
    sim.run_relative([96, 130])  # young 96..111 and 128..143
    a = new_age_state(sim.state)
    age(sim.state, a, "mglru")
    # Window of 96: [64, 128): 128..143 are outside it and found by their own rmap walk.
    assert np.flatnonzero(a.decision == Decision.KEEP).tolist() == [96, 128]


# ---------------------------------------------------------------------------------------------
# Eviction
# ---------------------------------------------------------------------------------------------


def test_evict_drops_reclaimed_folios_with_shadow_entries():
    sim = small_sim("arm64")
    sim.run_relative([0])
    a = new_age_state(sim.state, evict=True)
    before = sim.counters()["mm_filepages"]
    r = age(sim.state, a)
    assert r["evicted_folios"] == 15 and r["ptes_zapped"] == 15
    assert sorted(a.unmapped_vpn[: a.nvpn[1]].tolist()) == list(range(START_VPN + 1, START_VPN + 16))
    assert sim.counters()["mm_filepages"] == before - 15
    assert (sim.state.pc_order[1:16] == -1).all() and (sim.state.pc_flags[1:16] & PG.SHADOW).all()
    assert sim.state.pc_order[0] == 0
    assert (sim.state.pte[1:16] == 0).all()
    maj = sim.counters()["pgmajfault"]
    sim.run_relative([7])  # a refault
    assert sim.counters()["pgmajfault"] == maj + 1
    assert sim.state.pc_flags[7] & PG.WORKINGSET


def test_evict_leaves_dirty_folios_for_writeback():
    sim = small_sim("x86_64", shared=True, writable=True)
    sim.run_relative([0, 1], writes=[True, False])
    a = new_age_state(sim.state, evict=True)
    age(sim.state, a)
    r = age(sim.state, a)
    assert r["reclaim_clean"] == 16 and r["evict_skipped_dirty"] == 1 and r["evicted_folios"] == 15
    assert sim.state.pte[0] & PTE.PRESENT


def test_age_validation():
    sim = small_sim()
    a = new_age_state(sim.state)
    with pytest.raises(InputError, match="policy"):
        age(sim.state, a, "clock")
    with pytest.raises(InputError, match="policy"):
        age(sim.state, a, 7)
    other = small_sim(pages=128)
    with pytest.raises(InputError, match="another simulator state"):
        age(other.state, a)
    with pytest.raises(InputError, match="capacity"):
        new_age_state(sim.state, capacity=-1)
    with pytest.raises(InputError):
        new_age_state("state")


def test_vpn_list_overflow_is_counted():
    sim = small_sim("x86_64")
    sim.run_relative([0])
    a = new_age_state(sim.state, capacity=4)
    r = age(sim.state, a)
    assert a.nvpn[0] == 4 and r["vpn_list_overflow"] == 12


# ---------------------------------------------------------------------------------------------
# The mirror on random page-table states
# ---------------------------------------------------------------------------------------------


def random_state(seed: int, arch: str) -> tuple[Simulator, np.random.Generator]:
    rng = np.random.default_rng(seed)
    files, vmas = [], []
    for fidx in range(int(rng.integers(1, 3))):
        npages = int(rng.integers(16, 1100)) if rng.random() < 0.6 else int(rng.integers(1024, 1600))
        weights = {0: 0.5, 2: 0.15, 4: 0.2, 9: 0.15} if rng.random() < 0.6 else {0: 0.3, 9: 0.7}
        sizes = folio_sizes_from_orders(npages, weights, rng)
        heads = np.flatnonzero(np.arange(npages) % np.maximum(sizes, 1) == 0)
        for h in heads[rng.random(heads.size) < 0.1]:  # some folios not cached
            sizes[h : h + sizes[h]] = -1
        files.append(FileSpec.from_folio_sizes(sizes))
        for _ in range(int(rng.integers(1, 3))):
            pgoff = int(rng.integers(0, npages // 2)) if rng.random() < 0.4 else 0
            start = START + len(vmas) * (8 << 20) + (int(rng.integers(0, 8)) << 12 if rng.random() < 0.3 else 0)
            shared = bool(rng.random() < 0.6)
            vmas.append(
                VmaSpec(
                    start=start,
                    pages=npages - pgoff if rng.random() < 0.5 else int(rng.integers(1, npages - pgoff + 1)),
                    file=fidx,
                    pgoff=pgoff,
                    shared=shared,
                    writable=bool(rng.random() < 0.5),
                    executable=bool(rng.random() < 0.2),
                    advice=[None, None, None, "sequential", "random", "hugepage"][int(rng.integers(0, 6))],
                )
            )
    fab = int(rng.choice([4096, 16384, 65536]))
    sim = Simulator(files, vmas, Config(arch=arch, fault_around_bytes=fab))
    for i, vm in enumerate(vmas):
        n = int(rng.integers(1, 60))
        pages = rng.integers(0, vm.pages, n)
        sim.run_relative(pages, writes=rng.random(n) < 0.1, vma=i)
    s = sim.state
    present = (s.pte & PTE.PRESENT) != 0
    flip = lambda p: present & (rng.random(s.pte.size) < p)  # noqa: E731
    s.pte[flip(0.3)] ^= np.uint8(PTE.YOUNG)
    s.pte[flip(0.2)] ^= np.uint8(PTE.UNTOUCHED)
    s.pte[flip(0.1)] |= np.uint8(PTE.DIRTY)
    for v in range(s.vmas.shape[0]):  # contpte blocks where 16 aligned PTEs are present
        start, npg, base = s.vmas[v, 0], s.vmas[v, 1], s.vmas[v, 5]
        for b in range(-(start % 16) % 16, npg - 15, 16):
            if present[base + b : base + b + 16].all() and rng.random() < 0.4:
                s.pte[base + b : base + b + 16] |= np.uint8(PTE.CONT)
    cached = s.pc_order >= 0
    s.pc_flags[cached & (rng.random(cached.size) < 0.3)] |= np.uint8(PG.REFERENCED)
    s.pc_flags[cached & (rng.random(cached.size) < 0.05)] |= np.uint8(PG.DIRTY)
    s.pc_flags[cached & (rng.random(cached.size) < 0.03)] |= np.uint8(PG.LOCKED)
    huge = (s.pmd & PMD.KIND_MASK) == PMD.HUGE
    s.pmd[huge & (rng.random(s.pmd.size) < 0.5)] ^= np.uint8(PMD.YOUNG)
    return sim, rng


def copy_state(x):
    return type(x)(*(f.copy() for f in x))


def assert_same(s1, s2, a1, a2):
    for name in SimState._fields:
        np.testing.assert_array_equal(getattr(s1, name), getattr(s2, name), err_msg=name)
    for name in AgeState._fields:
        if name == "file_vmas":
            continue  # scratch
        np.testing.assert_array_equal(getattr(a1, name), getattr(a2, name), err_msg=name)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    arch=st.sampled_from(["x86_64", "arm64", "arm64-nohaf"]),
    policy=st.sampled_from([AgePolicy.LRU, AgePolicy.MGLRU]),
    evict=st.booleans(),
    small_capacity=st.booleans(),
)
def test_mirror_matches_age_pass(seed, arch, policy, evict, small_capacity):
    sim, rng = random_state(seed, arch)
    s1 = sim.state
    s2 = copy_state(s1)
    cap = 7 if small_capacity else None
    a1 = new_age_state(s1, evict=evict, capacity=cap)
    a2 = copy_state(a1)
    for _ in range(3):
        n1 = age_pass(s1, a1, int(policy))
        n2 = ref.age_pass(s2, a2, int(policy))
        assert n1 == n2
        assert_same(s1, s2, a1, a2)
        # Some accesses between passes (both copies replay the same trace).
        vma = int(rng.integers(0, s1.vmas.shape[0]))
        vpn = s1.vmas[vma, 0] + rng.integers(0, s1.vmas[vma, 1], 30)
        kind = (rng.random(30) < 0.1).astype(np.uint8)
        count = np.ones(30, dtype=np.int64)
        replay_trace(s1, sim.tlb, sim.aging, vpn, kind, count)  # no TLB model, no aging inside
        replay_trace(s2, sim.tlb, sim.aging, vpn, kind, count)


def test_callable_from_jitted_code():
    """The replay loop calls age_pass every K accesses from its own jitted code."""
    from fastfault._jit import jit
    from fastfault.tlb import TlbStat, build_tlb, tlb_preset
    from fastfault.tlb.model import tlb_flush_page

    @jit(cache=False)
    def driver(s, a, t):
        n = age_pass(s, a, 0)
        for i in range(n):
            tlb_flush_page(t, a.cleared_vpn[i])
        return n

    sim = small_sim("arm64")
    sim.run_relative([0])
    a = new_age_state(sim.state)
    t = build_tlb(tlb_preset("neoverse-v2"))
    assert driver(sim.state, a, t) == 1
    assert t.stats[TlbStat.FLUSH_PAGE] == 1
