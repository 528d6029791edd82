"""The TLB model inside the replay: the live-kernel cases with it on, and what x86's clear-without-flush does."""

from __future__ import annotations

import numpy as np
import pytest

from fastfault.errors import InputError
from fastfault.kernel.cases import case_json_paths, load_case
from fastfault.kernel.check import check_case
from fastfault.model import Config, FileSpec, Simulator, VmaSpec
from fastfault.tlb import TlbArray, TlbSpec

from .conftest import CASE_DIRS

BASE = 0x7F0000000000
CASES = [p for d in CASE_DIRS for p in case_json_paths(d)]


@pytest.mark.parametrize("tlb", ["zen4", "golden-cove"])
def test_cases_match_with_tlb_model(tlb):
    """With the TLB flushed between phases (as the recorder does), a TLB model changes no observable."""
    bad = []
    for path in CASES:
        r = check_case(load_case(path), tlb=tlb)
        bad += [f"{r.name}: {d}" for d in r.diffs]
    assert not bad, "\n".join(bad[:20])


def fully_associative(entries: int) -> TlbSpec:
    return TlbSpec(name=f"fa{entries}", l1d=(TlbArray(entries=entries, ways=entries, sizes=("4K",)),))


@pytest.mark.parametrize("flush", [False, True])
def test_clear_refs_without_flush_hides_cached_translations(flush):
    """x86 clears the accessed bit without flushing: every page whose translation is still cached is
    accessed without becoming young -- exactly as many pages as the TLB held."""
    entries, n = 64, 1000
    sim = Simulator(
        [FileSpec.from_folio_sizes(np.ones(n, np.int64))],
        [VmaSpec(start=BASE, pages=n)],
        Config(),
        tlb=fully_associative(entries),
    )
    sim.run_relative(np.arange(n))
    assert sim.smaps()["Referenced"] == n
    sim.clear_refs(flush_tlb=flush)
    assert sim.smaps()["Referenced"] == 0
    before = sim.tlb_stats()
    sim.run_relative(np.arange(n)[::-1])  # the most recently used pages first: they are the ones cached
    after = sim.tlb_stats()
    hits = after["l1_hits"] - before["l1_hits"]
    referenced = sim.smaps()["Referenced"]
    if flush:
        assert hits == 0 and referenced == n
    else:
        assert hits == entries
        assert referenced == n - entries


def test_no_tlb_model_every_access_walks():
    sim = Simulator([FileSpec.from_folio_sizes(np.ones(64, np.int64))], [VmaSpec(start=BASE, pages=64)], Config())
    sim.run_relative(np.arange(64))
    sim.clear_refs()
    sim.run_relative(np.arange(64))
    assert sim.smaps()["Referenced"] == 64
    assert sim.tlb_stats() == {}


def test_collapsed_runs_count_as_l1_hits():
    def make():
        return Simulator(
            [FileSpec.from_folio_sizes(np.ones(256, np.int64))],
            [VmaSpec(start=BASE, pages=256)],
            Config(),
            tlb="zen4",
            cost="auto",
        )

    rng = np.random.default_rng(1)
    pages = np.repeat(rng.integers(0, 256, 300), rng.integers(1, 5, 300))
    expanded = make()
    expanded.run_relative(pages)
    change = np.flatnonzero(np.diff(pages)) + 1
    starts = np.concatenate([[0], change])
    counts = np.diff(np.concatenate([starts, [pages.size]]))
    collapsed = make()
    collapsed.run(pages[starts] + (BASE >> 12), None, counts)
    assert collapsed.counters() == expanded.counters()
    assert collapsed.tlb_stats() == expanded.tlb_stats()
    assert np.array_equal(collapsed.state.pte, expanded.state.pte)


def test_arm64_contpte_blocks_and_entries():
    sim = Simulator(
        [FileSpec.from_folio_sizes(np.full(512, 64))],
        [VmaSpec(start=BASE, pages=512)],
        Config(arch="arm64"),
        tlb="neoverse-n1",
    )
    sim.run_relative(np.arange(512))
    from fastfault.fault.state import PTE

    assert ((sim.state.pte & PTE.CONT) != 0).all()  # 256 KiB folios, aligned: every block contiguous
    st = sim.tlb_stats()
    assert st["fills_64k"] == 512 // 16 and st["l1_hits"] == st["lookups"] - st["misses"]


def test_impossible_tlb_refused():
    with pytest.raises(InputError, match="ways"):
        Simulator(
            [FileSpec.from_folio_sizes(np.ones(8, np.int64))],
            [VmaSpec(start=BASE, pages=8)],
            Config(),
            tlb=TlbSpec(name="bad", l1d=(TlbArray(entries=8, ways=0, sizes=("4K",)),)),
        )
