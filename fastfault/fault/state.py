"""Flat-array state of the simulated page cache, address space and page tables.

Everything the jitted fault path touches is a numpy array. Bit flags and table
columns are ``IntEnum`` codes so that Python reads ``Stat.MINFLT`` while the
kernels see plain integers.

Per simulated 4 KiB page the state costs three bytes: the page cache's folio
order (``int8``) and folio flags (``uint8``) per file page, and one PTE byte
(``uint8``) per mapped virtual page. Tables per 2 MiB (PMD slots), per file and
per VMA are negligible next to that.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_PTE = 512  # x86-64 and arm64 with 4 KiB pages
HPAGE_PMD_ORDER = 9
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER
MMAP_LOTSAMISS = 100
VM_READAHEAD_PAGES = 32  # 128 KiB / PAGE_SIZE


class Profile(IntEnum):
    """Kernel version whose fault path is simulated."""

    LINUX_5_12 = 0  # Kirill's refactor + arch opt-in old prefault: page-based mapping, young/old per page
    LINUX_6_6 = 1  # folio batching (set_pte_range), young/old per batch, no whole-folio mapping
    LINUX_6_18 = 2  # whole-large-folio mapping in fault-around and finish_fault, i_size rules


PROFILE_NAMES = {
    "linux-5.12": Profile.LINUX_5_12,
    "linux-6.6": Profile.LINUX_6_6,
    "linux-6.18": Profile.LINUX_6_18,
}


class Cfg(IntEnum):
    """Columns of the per-run configuration vector (``int64``)."""

    FA_PAGES = 0  # fault_around_pages: power of two, 1..PTRS_PER_PTE
    PROFILE = 1  # Profile code
    OLD_PREFAULT = 2  # arch_wants_old_prefaulted_pte()
    HW_AF = 3  # hardware sets the accessed bit (x86, arm64 FEAT_HAFDBS); else access-flag faults
    THP_DISABLED = 4  # thp_disabled_by_hw() / prctl(PR_SET_THP_DISABLE): no PMD mappings at all
    EXEC_ORDER = 5  # exec_folio_order() for VM_EXEC read-around (arm64: 4 with 4 KiB pages)
    CONTPTE = 6  # arm64 contpte (v6.9+): set_ptes() marks aligned 16-page blocks of a batch PTE_CONT
    COALESCE = 7  # TLB coalescing the hardware does: 0 none, 1 AMD Zen 4 (4 x 4K), 2 arm64 contpte (16 x 4K)
    AGING_INTERVAL = 8  # a reclaim aging pass every this many accesses (0: never)
    AGING_POLICY = 9  # 0 classic LRU (folio_referenced + folio_check_references), 1 MGLRU look-around
    FLUSH_ON_CLEAR_YOUNG = 10  # clearing the accessed bit flushes the TLB entry (arm64 yes, x86 no)
    NFIELDS = 11


class VmaFlag(IntEnum):
    """Bits of the ``FLAGS`` column of the VMA table (the ``vm_flags`` that matter here)."""

    SHARED = 1
    WRITE = 2
    EXEC = 4
    RAND_READ = 8  # MADV_RANDOM
    SEQ_READ = 16  # MADV_SEQUENTIAL
    HUGEPAGE = 32  # MADV_HUGEPAGE
    NOHUGEPAGE = 64  # MADV_NOHUGEPAGE: vma_thp_disabled()
    UFFD = 128  # VM_UFFD_WP / VM_UFFD_MINOR: uffd_disable_fault_around()
    ANON_VMA = 256  # set by the fault path: vma->anon_vma != NULL (anon_vma_prepare() has run)


class VmaField(IntEnum):
    """Columns of the VMA table (``int64``, one row per VMA, sorted by start)."""

    START = 0  # virtual page number of vm_start
    PAGES = 1  # (vm_end - vm_start) >> PAGE_SHIFT
    PGOFF = 2  # vm_pgoff
    FILE = 3  # row of the file table
    FLAGS = 4  # VmaFlag bits
    PTE_BASE = 5  # index of the VMA's first page in the PTE array
    PMD_BASE = 6  # PMD slot of the 2 MiB region holding vm_start
    NFIELDS = 7


class FileField(IntEnum):
    """Columns of the file table (``int64``, one row per file; per open file for ``f_ra``)."""

    BASE = 0  # index of the file's page 0 in the page-cache arrays
    CAPACITY = 1  # pages held in the page-cache arrays (i_size rounded up to a PMD)
    ISIZE = 2  # i_size in bytes
    MMAP_MISS = 3  # file->f_ra.mmap_miss
    RA_START = 4  # file->f_ra.start
    RA_SIZE = 5  # file->f_ra.size
    RA_ASYNC = 6  # file->f_ra.async_size
    RA_ORDER = 7  # file->f_ra.order
    RA_PAGES = 8  # file->f_ra.ra_pages (bdi read_ahead_kb in pages)
    MAX_ORDER = 9  # mapping_max_folio_order() (0: no large folios in this file system)
    NFIELDS = 10


class PG(IntEnum):
    """Folio flags, kept on the head page of each folio (``uint8``)."""

    UPTODATE = 1
    LOCKED = 2  # I/O in flight; fault-around skips it, filemap_fault waits (drops mmap_lock)
    READAHEAD = 4  # PG_readahead marker: never mapped by fault-around
    WORKINGSET = 8
    REFERENCED = 16  # PG_referenced (set by reclaim's second chance, cleared by clear_refs)
    DIRTY = 32
    HWPOISON = 64  # per page, not per folio
    SHADOW = 128  # on an uncached page: a workingset shadow (value) entry


class PTE(IntEnum):
    """Bits of one PTE (``uint8``)."""

    PRESENT = 1
    YOUNG = 2
    DIRTY = 4
    WRITE = 8
    ANON = 16  # maps a private COW copy, not the page-cache page
    UNTOUCHED = 32  # installed by prefault and not accessed since (for false-young statistics)
    CONT = 64  # arm64 contpte block member


class PMD(IntEnum):
    """Values and bits of one PMD slot (``uint8``): the low two bits are the kind."""

    NONE = 0
    TABLE = 1  # a PTE table is installed
    HUGE = 2  # maps a PMD-size folio
    KIND_MASK = 3
    YOUNG = 4
    DIRTY = 8
    WRITE = 16


class Stat(IntEnum):
    """Counters (``int64`` vector). Names follow the kernel counters they mirror."""

    ACCESSES = 0  # accesses replayed (a collapsed run of c counts c)
    FILE_ACCESSES = 1  # accesses that fell in a file VMA
    OTHER_ACCESSES = 2  # accesses outside every file VMA (anonymous memory, stack, ...)
    PGFAULT = 3  # completed faults, including errors (PGFAULT)
    MINFLT = 4  # task min_flt
    MAJFLT = 5  # task maj_flt (VM_FAULT_MAJOR or FAULT_FLAG_TRIED)
    PGMAJFAULT = 6  # vmstat pgmajfault: page-cache misses in filemap_fault
    FAULT_READ_FAULTAROUND = 7  # read fault resolved by fault-around (NOPAGE)
    FAULT_READ_FINISH = 8  # read fault resolved by filemap_fault + finish_fault
    FAULT_COW = 9  # do_cow_fault: write to a private mapping, PTE none
    FAULT_SHARED = 10  # do_shared_fault: write to a shared mapping, PTE none
    FAULT_WP_COW = 11  # do_wp_page copy: write to a private page mapped read-only
    FAULT_WP_SHARED = 12  # do_wp_page write-notify: write to a shared page mapped read-only
    FAULT_AF = 13  # access-flag fault (no hardware accessed bit): old PTE/PMD made young
    FAULT_PMD_WP = 14  # write to a read-only huge PMD: split, then handled at PTE level
    FAULT_RETRY = 15  # attempts that returned VM_FAULT_RETRY (waited on a locked folio)
    SIGBUS = 16  # access beyond i_size
    SEGV = 17  # store to a VMA without VM_WRITE
    FAULTAROUND_CALLS = 18
    FAULTAROUND_NOPAGE = 19
    FAULTAROUND_PAGES = 20  # PTEs installed by fault-around (the faulting one included)
    FAULTAROUND_SKIP_HOLE = 21
    FAULTAROUND_SKIP_NOT_UPTODATE = 22
    FAULTAROUND_SKIP_READAHEAD = 23
    FAULTAROUND_SKIP_LOCKED = 24
    FAULTAROUND_SKIP_EOF = 25
    FAULTAROUND_SKIP_PRESENT = 26
    FAULTAROUND_SKIP_HWPOISON = 27
    PTES_INSTALLED = 28
    PTES_YOUNG = 29
    PTES_OLD = 30
    PREFAULT_YOUNG = 31  # installed young without being the faulting page's batch
    SET_PTE_BATCHES = 32
    PMD_MAPPED = 33  # do_set_pmd successes (THP_FILE_MAPPED)
    PMD_SPLIT = 34
    PTE_TABLES = 35  # PTE-table pages installed
    PREALLOC_PTE = 36  # pte_alloc_one() for vmf->prealloc_pte
    PREALLOC_PTE_FREED = 37  # freed unused by do_fault()
    MM_FILEPAGES = 38  # current MM_FILEPAGES (pages)
    MM_ANONPAGES = 39  # current MM_ANONPAGES
    OLD_TO_YOUNG_HW = 40  # hardware set the accessed bit of an old PTE/PMD
    OLD_TO_YOUNG_FAULT = 41  # an access-flag fault made an old PTE/PMD young
    PREFAULT_USED = 42  # a prefaulted PTE accessed for the first time
    PREFAULT_OLD_USED = 43  # ... that had been installed old
    RA_SYNC = 44  # do_sync_mmap_readahead() that read something
    RA_ASYNC = 45  # page_cache_async_ra() calls
    RA_PAGES = 46  # pages brought into the page cache
    RA_NO_READAROUND = 47  # mmap_miss > MMAP_LOTSAMISS suppressed read-around
    RA_MARKERS = 48  # PG_readahead markers set
    CLEAR_REFS = 49  # clear_refs passes
    NFIELDS = 50


HIST_LEN = PTRS_PER_PTE + 1  # window-size histogram: index = window pages


class SimState(NamedTuple):
    """All mutable simulator state: flat arrays only.

    Attributes
    ----------
    pc_order : int8, (n_cache_pages,)
        Folio order of each page-cache slot, -1 if the page is not cached. Every page of a folio
        carries the order; the head is the page index rounded down to ``1 << order``.
    pc_flags : uint8, (n_cache_pages,)
        :class:`PG` bits; folio flags live on the head page, ``HWPOISON`` and ``SHADOW`` per page.
    files : int64, (n_files, FileField.NFIELDS)
        File table (page-cache base, i_size, readahead state).
    vmas : int64, (n_vmas, VmaField.NFIELDS)
        VMA table, sorted by start.
    pte : uint8, (n_vma_pages,)
        One PTE per page of every VMA (:class:`PTE` bits).
    pmd : uint8, (n_pmd_slots,)
        One entry per 2 MiB region any VMA touches (:class:`PMD`); VMAs sharing a region share the slot.
    stats : int64, (Stat.NFIELDS,)
        Counters.
    fa_hist : int64, (PTRS_PER_PTE + 1,)
        Fault-around window sizes in pages.
    cfg : int64, (Cfg.NFIELDS,)
        Knobs of the run.
    vmf : int64, (4,)
        Scratch of the fault in progress: ``vmf->prealloc_pte``, fault-around's local ``mmap_miss``,
        and the TLB flush the fault asks for (first virtual page, number of pages).
    """

    pc_order: np.ndarray
    pc_flags: np.ndarray
    files: np.ndarray
    vmas: np.ndarray
    pte: np.ndarray
    pmd: np.ndarray
    stats: np.ndarray
    fa_hist: np.ndarray
    cfg: np.ndarray
    vmf: np.ndarray
