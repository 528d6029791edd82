"""The test oracles of the fault-path digest (kernel-fault-path.md §11) that concern the fault path.

Unless a test says otherwise: 4 KiB pages, fault_around_bytes 64 KiB (16 pages), one VMA
starting 2 MiB aligned at file offset 0, the whole file hot in the page cache, reads only,
each page touched once in order.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastfault.errors import InputError
from fastfault.model import Config, FileSpec, Simulator, VmaSpec, fault_around_pages

BASE = 0x7F0000000000  # 2 MiB aligned
MiB64 = 16384


def sim_for(sizes, *, vma_pages=None, pgoff=0, start=BASE, i_size=None, file_kw=None, **cfg):
    f = FileSpec.from_folio_sizes(np.asarray(sizes), i_size=i_size, **(file_kw or {}))
    vma = VmaSpec(start=start, pages=vma_pages or f.npages, pgoff=pgoff)
    return Simulator([f], [vma], Config(**cfg))


def seq(sim, n=None):
    n = sim.vmas[0].pages if n is None else n
    sim.run_relative(np.arange(n))
    return sim.counters()


# -- the knob ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 4096, 8191])
def test_knob_small_values_disable_fault_around(value):
    assert fault_around_pages(value) == 1
    c = seq(sim_for(np.ones(64, np.int64), fault_around_bytes=value))
    assert c["minflt"] == 64
    assert c["faultaround_calls"] == 0


def test_knob_rounding_and_limit():
    assert fault_around_pages(100000) * 4096 == 65536
    assert fault_around_pages(2097152 + 4095) == 512
    with pytest.raises(InputError, match="EINVAL"):
        fault_around_pages(2097152 + 4096)
    with pytest.raises(InputError):
        Config(fault_around_bytes=3 << 20)


# -- the window ----------------------------------------------------------------------------------


def mapped_after_one_fault(page, *, npages=1024, vma_pages=None, start=BASE, i_size=None):
    sim = sim_for(np.ones(npages, np.int64), vma_pages=vma_pages, start=start, i_size=i_size)
    sim.run_relative([page])
    return np.flatnonzero(sim.present()), sim


def test_window_aligned_block():
    mapped, sim = mapped_after_one_fault(37)
    assert mapped.tolist() == list(range(32, 48))
    assert sim.window_histogram() == {16: 1}


def test_window_vma_starting_inside_block_extends_past_it():
    # VMA at virtual page 5 of an aligned 16-page block, fault at its 2nd page.
    mapped, _ = mapped_after_one_fault(1, start=BASE + 5 * 4096)
    assert mapped.tolist() == list(range(0, 16))  # virtual pages 5..20


def test_window_never_crosses_pmd():
    mapped, _ = mapped_after_one_fault(511)
    assert mapped.tolist() == list(range(496, 512))


def test_window_small_vma():
    mapped, _ = mapped_after_one_fault(3, npages=10)
    assert mapped.tolist() == list(range(10))


def test_window_eof_clamp_and_sigbus():
    sim = sim_for(np.ones(20, np.int64), vma_pages=64)
    sim.run_relative([17])
    assert np.flatnonzero(sim.present()).tolist() == [16, 17, 18, 19]
    before = sim.counters()
    sim.run_relative([25])
    after = sim.counters()
    assert after["sigbus"] - before["sigbus"] == 1
    assert after["minflt"] == before["minflt"]
    assert not sim.present()[25]


# -- sequential hot-cache touch of a 64 MiB file ---------------------------------------------------


@pytest.mark.parametrize("profile", ["linux-5.12", "linux-6.6", "linux-6.18"])
def test_order0_sequential(profile):
    sim = sim_for(np.ones(MiB64, np.int64), profile=profile)
    c = seq(sim)
    assert c["minflt"] == 1024 and c["majflt"] == 0
    assert c["ptes_installed"] == MiB64
    assert c["ptes_young"] == MiB64
    sim_arm = sim_for(np.ones(MiB64, np.int64), profile=profile, arch="arm64")
    c = seq(sim_arm)
    assert (c["ptes_young"], c["ptes_old"]) == (1024, 15360)


@pytest.mark.parametrize("profile", ["linux-6.6", "linux-6.18"])
def test_order4_sequential_all_young_on_arm64(profile):
    c = seq(sim_for(np.full(MiB64, 16), profile=profile, arch="arm64"))
    assert c["minflt"] == 1024
    assert c["ptes_young"] == MiB64 and c["ptes_old"] == 0


def test_order6_whole_folio_mapping_v618():
    assert seq(sim_for(np.full(MiB64, 64), profile="linux-6.6"))["minflt"] == 1024
    # 255 whole-folio maps + the last folio, which ends exactly at EOF (off-by-one): 4 window faults.
    assert seq(sim_for(np.full(MiB64, 64), profile="linux-6.18"))["minflt"] == 259
    # A file of exactly one 256 KiB folio in a fresh PMD: finish_fault maps all 64 PTEs.
    c = seq(sim_for(np.full(64, 64), profile="linux-6.18"))
    assert c["minflt"] == 1 and c["ptes_installed"] == 64


@pytest.mark.parametrize("profile", ["linux-5.12", "linux-6.6", "linux-6.18"])
def test_order9_pmd_mappings(profile):
    sim = sim_for(np.full(MiB64, 512), profile=profile)
    c = seq(sim)
    assert c["minflt"] == 32
    assert c["pmd_mapped"] == 32
    assert c["ptes_installed"] == 0
    assert c["mm_filepages"] == MiB64
    assert sim.smaps()["FilePmdMapped"] == MiB64


@pytest.mark.parametrize("profile", ["linux-5.12", "linux-6.6", "linux-6.18"])
def test_order9_unsuitable_vma_maps_ptes(profile):
    # vm_pgoff = 1: (vm_start >> PAGE_SHIFT) - vm_pgoff is not a multiple of 512, so no PMD can map.
    sim = sim_for(np.full(MiB64, 512), vma_pages=MiB64 - 1, pgoff=1, profile=profile)
    c = seq(sim)
    assert c["pmd_mapped"] == 0
    # The digest's reconstruction says 1024 for every profile. v6.18 adds one: the last PMD range holds
    # only the file's last folio, which ends exactly at EOF, so filemap_map_pages() skips
    # filemap_map_pmd() (the file_end >= folio_next_index() off-by-one), installs no PTE table and maps
    # nothing; finish_fault() maps the one page, and the next page needs a fault-around of its own.
    assert c["minflt"] == (1025 if profile == "linux-6.18" else 1024)
    assert c["ptes_installed"] == MiB64 - 1


def test_fault_around_2mib_and_off():
    assert seq(sim_for(np.ones(MiB64, np.int64), fault_around_bytes=2 << 20))["minflt"] == 32
    assert seq(sim_for(np.ones(MiB64, np.int64), fault_around_bytes=4096))["minflt"] == MiB64


def test_one_page_past_64mib():
    assert seq(sim_for(np.ones(MiB64 + 1, np.int64)))["minflt"] == 1025


# -- cold cache: readahead -----------------------------------------------------------------------


def test_cold_sequential_read_around():
    f = FileSpec.uncached(MiB64 * 4096, max_folio_order=0)
    sim = Simulator([f], [VmaSpec(start=BASE, pages=MiB64)], Config())
    c = seq(sim)
    # The digest reconstructs 1 major + 1025 minor, with finish_fault() mapping page 0 alone. In the
    # v6.18 source, filemap_fault() drops the lock for the read (maybe_unlock_mmap_for_io) and returns
    # VM_FAULT_RETRY; the retried fault (FAULT_FLAG_TRIED, counted once, as major) runs fault-around
    # again, which now finds pages 0..15 uptodate. So page 1 does not fault.
    assert c["majflt"] == 1
    assert c["minflt"] == 1024
    assert c["pgmajfault"] == 1
    assert c["fault_retry"] >= 1
    assert c["ptes_installed"] == MiB64


def test_cold_random_advice_no_readahead():
    f = FileSpec.uncached(MiB64 * 4096, max_folio_order=0)
    sim = Simulator([f], [VmaSpec(start=BASE, pages=MiB64, advice="random")], Config())
    c = seq(sim)
    assert c["majflt"] == MiB64 and c["minflt"] == 0
    assert c["ptes_installed"] == MiB64
    assert sim.mmap_miss() == 0


def test_mmap_miss_gates_read_around():
    # One-page touches far apart in a cold file, fault-around off: every fault is a page-cache miss and
    # nothing is ever found mapped around it (no "hits"), so after MMAP_LOTSAMISS misses read-around stops.
    npages = 512 * 400
    f = FileSpec.uncached(npages * 4096, max_folio_order=0, ra_pages=32)
    sim = Simulator([f], [VmaSpec(start=BASE, pages=npages)], Config(fault_around_bytes=4096))
    pages = np.arange(0, npages, 512)[:150]
    sim.run_relative(pages)
    c = sim.counters()
    assert c["majflt"] == 150
    assert c["ra_no_readaround"] == 150 - 100
    assert sim.mmap_miss() == 150


# -- accounting ----------------------------------------------------------------------------------


def test_accounting_minor_and_major():
    sim = sim_for(np.ones(64, np.int64))
    sim.run_relative([0])
    c = sim.counters()
    assert (c["pgfault"], c["minflt"], c["pgmajfault"]) == (1, 1, 0)
    f = FileSpec.uncached(64 * 4096)
    sim = Simulator([f], [VmaSpec(start=BASE, pages=64)], Config())
    sim.run_relative([0])
    c = sim.counters()
    assert (c["pgfault"], c["majflt"], c["pgmajfault"], c["minflt"]) == (1, 1, 1, 0)


# -- young/old and writes ------------------------------------------------------------------------


def test_arm64_nohaf_access_flag_faults_after_clear_refs():
    sim = sim_for(np.ones(64, np.int64), arch="arm64-nohaf")
    sim.run_relative([0])  # fault-around maps 16 young PTEs
    sim.clear_refs()
    before = sim.counters()["minflt"]
    sim.run_relative(np.arange(16))
    c = sim.counters()
    assert c["minflt"] - before == 16
    assert c["fault_af"] == 16


def test_write_faults_shared_and_private():
    shared = Simulator(
        [FileSpec.from_folio_sizes(np.ones(64, np.int64))],
        [VmaSpec(start=BASE, pages=64, shared=True, writable=True)],
        Config(),
    )
    shared.run_relative([0, 0], writes=[False, True])  # read maps read-only, the store is write-notify
    c = shared.counters()
    assert c["minflt"] == 2 and c["fault_wp_shared"] == 1
    private = Simulator(
        [FileSpec.from_folio_sizes(np.ones(64, np.int64))],
        [VmaSpec(start=BASE, pages=64, shared=False, writable=True)],
        Config(),
    )
    private.run_relative([5, 6], writes=[True, True])  # no fault-around on write faults
    c = private.counters()
    assert c["fault_cow"] == 2 and c["faultaround_calls"] == 0
    assert private.smaps()["Anonymous"] == 2 and c["mm_anonpages"] == 2
