"""``mm/memory.c``: the fault handlers, from ``handle_mm_fault`` down to ``finish_fault``.

Notes
-----
Models Linux v6.18 ``do_read_fault`` -> ``should_fault_around`` -> ``do_fault_around``
(v6.4+ window arithmetic) -> ``filemap_map_pages``, then ``filemap_fault`` and
``finish_fault`` (whole file folio mapped when it fits the VMA and the PTE table and
does not cross i_size; PMD via ``do_set_pmd``), ``do_cow_fault``,
``do_shared_fault``, ``do_wp_page`` (copy for private mappings, write-notify reuse
for shared ones), ``wp_huge_pmd`` (a file PMD is split by zapping it) and the
access-flag path of ``handle_pte_fault``. The v6.6 profile maps one PTE in
``finish_fault``; the v5.12 profile also allocates a fresh table there instead of
using ``vmf->prealloc_pte`` (as merged in f9ce0be71d1f).

Accounting follows ``mm_account_fault``: an attempt that returns
``VM_FAULT_RETRY`` is not counted; the completed attempt is major when it carries
``VM_FAULT_MAJOR`` or ``FAULT_FLAG_TRIED``. With per-VMA locks (v6.4+) a retry is
``FAULT_FLAG_TRIED`` only after a major attempt; v5.12 always sets it.
"""

from __future__ import annotations

import numpy as np

from fastfault._jit import inlined, jit
from fastfault.fault.filemap import (
    VM_FAULT_MAJOR,
    VM_FAULT_NOPAGE,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
    VMF_PREALLOC,
    filemap_fault,
    filemap_map_pages,
)
from fastfault.fault.pgtable import VM_FAULT_FALLBACK, do_set_pmd, pmd_slot, request_flush, set_pte_range
from fastfault.fault.state import (
    PG,
    PMD,
    PTE,
    Cfg,
    FileField,
    Profile,
    Stat,
    VmaField,
    VmaFlag,
)

_CLEAR_UNTOUCHED = np.uint8(0xFF ^ PTE.UNTOUCHED)
# Booleans typed as bool, not Literal[bool]: a call with a literal argument compiles its own version.
_TRUE = np.bool_(True)
_FALSE = np.bool_(False)
_CLEAR_CONT = np.uint8(0xFF ^ PTE.CONT)


@jit(inline="always")
def do_fault_around(s, v, k, vpn, pgoff):
    """``do_fault_around()``: the window of ``fault_around_pages`` around the fault, aligned on the
    virtual address, clamped to the VMA and to the PTE table."""
    nr_pages = s.cfg[Cfg.FA_PAGES]
    pte_off = vpn & 511
    vma_off = k
    from_pte = max(pte_off - pte_off % nr_pages, pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + nr_pages, 512, pte_off + s.vmas[v, VmaField.PAGES] - vma_off) - 1
    slot = pmd_slot(s, v, vpn)
    if (s.pmd[slot] & PMD.KIND_MASK) == PMD.NONE and s.vmf[VMF_PREALLOC] == 0:
        s.vmf[VMF_PREALLOC] = 1
        s.stats[Stat.PREALLOC_PTE] += 1
    s.stats[Stat.FAULTAROUND_CALLS] += 1
    s.fa_hist[to_pte - from_pte + 1] += 1
    ret = filemap_map_pages(s, v, pgoff + from_pte - pte_off, pgoff + to_pte - pte_off, k, vpn)
    if ret:
        s.stats[Stat.FAULTAROUND_NOPAGE] += 1
    return ret


@jit(inline="always")
def _pte_range_none(s, p0, nr):
    for i in range(nr):
        if s.pte[p0 + i] != 0:
            return False
    return True


@jit
def finish_fault(s, v, k, vpn, pgoff, write, is_cow):
    """``finish_fault()``: map the page ``filemap_fault`` found (or its COW copy)."""
    f = s.vmas[v, VmaField.FILE]
    base = s.files[f, FileField.BASE]
    profile = s.cfg[Cfg.PROFILE]
    order = np.int64(s.pc_order[base + pgoff])
    if is_cow:
        order = 0  # the new anonymous page
    head = pgoff & ~((1 << order) - 1)
    nr_folio = 1 << order
    slot = pmd_slot(s, v, vpn)
    vm_pages = s.vmas[v, VmaField.PAGES]
    pte_base = s.vmas[v, VmaField.PTE_BASE]
    needs_fallback = False
    if profile >= Profile.LINUX_6_18 and not is_cow:
        file_end = (s.files[f, FileField.ISIZE] + 4095) >> 12
        needs_fallback = file_end < head + nr_folio
    while True:
        if (s.pmd[slot] & PMD.KIND_MASK) == PMD.NONE:
            if not needs_fallback and order == 9:
                if do_set_pmd(s, v, vpn, base + head, order, write) != VM_FAULT_FALLBACK:
                    return 0
            if s.vmf[VMF_PREALLOC] != 0 and profile != Profile.LINUX_5_12:
                s.vmf[VMF_PREALLOC] = 0
            s.pmd[slot] = PMD.TABLE
            s.stats[Stat.PTE_TABLES] += 1
        elif (s.pmd[slot] & PMD.KIND_MASK) == PMD.HUGE:
            return VM_FAULT_NOPAGE
        nr = nr_folio
        k0 = k
        if profile < Profile.LINUX_6_18 or needs_fallback or (s.vmas[v, VmaField.FLAGS] & VmaFlag.UFFD):
            nr = 1  # userfaultfd_armed(vma) || needs_fallback: per-page fault
        elif nr > 1:
            idx = pgoff - head
            pte_off = vpn & 511
            if k < idx or k + (nr - idx) > vm_pages or pte_off < idx or pte_off + (nr - idx) > 512:
                nr = 1
            else:
                k0 = k - idx
        if nr == 1:
            if s.pte[pte_base + k] != 0:
                return VM_FAULT_NOPAGE
        elif not _pte_range_none(s, pte_base + k0, nr):
            needs_fallback = True
            continue
        set_pte_range(s, v, k0, nr, k, write, is_cow)
        if is_cow:
            s.stats[Stat.MM_ANONPAGES] += nr
        else:
            s.stats[Stat.MM_FILEPAGES] += nr
        return 0


@jit
def __do_fault(s, v, vpn, pgoff, tried):
    """``__do_fault()``: pre-allocate a PTE table if the PMD is none, then ``->fault``."""
    if (s.pmd[pmd_slot(s, v, vpn)] & PMD.KIND_MASK) == PMD.NONE and s.vmf[VMF_PREALLOC] == 0:
        s.vmf[VMF_PREALLOC] = 1
        s.stats[Stat.PREALLOC_PTE] += 1
    return filemap_fault(s, v, pgoff, tried)


#: Inlined twins for the read fault, the common one; the COW and shared faults call the compiled copies.
_do_fault_inline = inlined(__do_fault)
_finish_fault_inline = inlined(finish_fault)


@jit(inline="always")
def do_read_fault(s, v, k, vpn, pgoff, tried, vma_lock):
    """``do_read_fault()``: fault-around first; ``filemap_fault`` + ``finish_fault`` if it did not
    map the faulting page."""
    if s.cfg[Cfg.FA_PAGES] > 1 and not (s.vmas[v, VmaField.FLAGS] & VmaFlag.UFFD):
        if do_fault_around(s, v, k, vpn, pgoff):
            s.stats[Stat.FAULT_READ_FAULTAROUND] += 1
            return VM_FAULT_NOPAGE
    if vma_lock and s.cfg[Cfg.PROFILE] == Profile.LINUX_6_6:
        return VM_FAULT_RETRY  # v6.6: if (vmf->flags & FAULT_FLAG_VMA_LOCK) { vma_end_read(); return RETRY; }
    ret = _do_fault_inline(s, v, vpn, pgoff, tried)
    if ret & (VM_FAULT_SIGBUS | VM_FAULT_RETRY):
        return ret
    s.stats[Stat.FAULT_READ_FINISH] += 1
    return ret | _finish_fault_inline(s, v, k, vpn, pgoff, False, False)


@jit
def do_cow_fault(s, v, k, vpn, pgoff, tried, vma_lock):
    """``do_cow_fault()``: write to a private file mapping with no PTE: copy into an anon page."""
    if vma_lock and s.cfg[Cfg.PROFILE] == Profile.LINUX_6_6:
        return VM_FAULT_RETRY  # v6.6: no COW under the VMA lock
    s.vmas[v, VmaField.FLAGS] |= VmaFlag.ANON_VMA  # anon_vma_prepare() / vmf_anon_prepare()
    ret = __do_fault(s, v, vpn, pgoff, tried)
    if ret & (VM_FAULT_SIGBUS | VM_FAULT_RETRY):
        return ret
    s.stats[Stat.FAULT_COW] += 1
    return ret | finish_fault(s, v, k, vpn, pgoff, _TRUE, _TRUE)


@jit
def do_shared_fault(s, v, k, vpn, pgoff, tried, vma_lock):
    """``do_shared_fault()``: write to a shared mapping with no PTE: ``page_mkwrite`` dirties the
    folio, ``finish_fault`` maps it writable and dirty."""
    if vma_lock and s.cfg[Cfg.PROFILE] == Profile.LINUX_6_6:
        return VM_FAULT_RETRY  # v6.6: no ->page_mkwrite under the VMA lock
    ret = __do_fault(s, v, vpn, pgoff, tried)
    if ret & (VM_FAULT_SIGBUS | VM_FAULT_RETRY):
        return ret
    f = s.vmas[v, VmaField.FILE]
    base = s.files[f, FileField.BASE]
    order = np.int64(s.pc_order[base + pgoff])
    s.pc_flags[base + (pgoff & ~((1 << order) - 1))] |= PG.DIRTY
    s.stats[Stat.FAULT_SHARED] += 1
    return ret | finish_fault(s, v, k, vpn, pgoff, _TRUE, _FALSE)


@jit(inline="always")
def do_fault(s, v, k, vpn, pgoff, write, tried, vma_lock):
    """``do_fault()``: dispatch on read / private write / shared write; free an unused
    pre-allocated table."""
    if not write:
        ret = do_read_fault(s, v, k, vpn, pgoff, tried, vma_lock)
    elif not (s.vmas[v, VmaField.FLAGS] & VmaFlag.SHARED):
        ret = do_cow_fault(s, v, k, vpn, pgoff, tried, vma_lock)
    else:
        ret = do_shared_fault(s, v, k, vpn, pgoff, tried, vma_lock)
    if s.vmf[VMF_PREALLOC] != 0:
        s.vmf[VMF_PREALLOC] = 0
        s.stats[Stat.PREALLOC_PTE_FREED] += 1
    return ret


@jit(inline="always")
def do_wp_page(s, v, k, pgoff, vma_lock):
    """``do_wp_page()`` on a present, read-only file PTE: ``wp_page_shared`` + ``wp_page_reuse``
    (shared: same page, now writable, dirty, young) or ``wp_page_copy`` (private: an anon copy).

    A contpte block holding the page is unfolded first (``contpte_try_unfold``)."""
    p = s.vmas[v, VmaField.PTE_BASE] + k
    vpn = s.vmas[v, VmaField.START] + k
    if vma_lock and s.cfg[Cfg.PROFILE] == Profile.LINUX_6_6:
        flags = s.vmas[v, VmaField.FLAGS]
        if flags & VmaFlag.SHARED:
            return VM_FAULT_RETRY  # v6.6 wp_page_shared(): ->page_mkwrite needs the mmap_lock
        if not (s.pte[p] & PTE.ANON) and not (flags & VmaFlag.ANON_VMA):
            return VM_FAULT_RETRY  # v6.6: if ((vmf->flags & FAULT_FLAG_VMA_LOCK) && !vma->anon_vma)
    if s.pte[p] & PTE.CONT:
        b = p - (vpn & 15)
        for j in range(b, b + 16):
            s.pte[j] &= _CLEAR_CONT
        request_flush(s, vpn - (vpn & 15), 16)
    else:
        request_flush(s, vpn, 1)
    if s.vmas[v, VmaField.FLAGS] & VmaFlag.SHARED:
        f = s.vmas[v, VmaField.FILE]
        base = s.files[f, FileField.BASE]
        order = np.int64(s.pc_order[base + pgoff])
        if order >= 0:
            s.pc_flags[base + (pgoff & ~((1 << order) - 1))] |= PG.DIRTY
        s.pte[p] = (s.pte[p] & _CLEAR_UNTOUCHED) | PTE.YOUNG | PTE.DIRTY | PTE.WRITE
        s.stats[Stat.FAULT_WP_SHARED] += 1
    elif s.pte[p] & PTE.ANON:
        s.pte[p] = (s.pte[p] & _CLEAR_UNTOUCHED) | PTE.YOUNG | PTE.DIRTY | PTE.WRITE
        s.stats[Stat.FAULT_WP_COW] += 1
    else:
        s.vmas[v, VmaField.FLAGS] |= VmaFlag.ANON_VMA  # wp_page_copy(): anon_vma_prepare()
        s.pte[p] = PTE.PRESENT | PTE.YOUNG | PTE.DIRTY | PTE.WRITE | PTE.ANON
        s.stats[Stat.MM_FILEPAGES] -= 1
        s.stats[Stat.MM_ANONPAGES] += 1
        s.stats[Stat.FAULT_WP_COW] += 1
    return 0


@jit(inline="always")
def __handle_mm_fault(s, v, k, vpn, pgoff, write, tried, vma_lock):
    """``__handle_mm_fault()`` + ``handle_pte_fault()`` for a file VMA."""
    slot = pmd_slot(s, v, vpn)
    pmdv = s.pmd[slot]
    if (pmdv & PMD.KIND_MASK) == PMD.HUGE:
        if write and not (pmdv & PMD.WRITE):
            # wp_huge_pmd(): no ->huge_fault for regular files: __split_huge_pmd() zaps a file PMD.
            s.pmd[slot] = PMD.NONE
            request_flush(s, vpn & ~511, 512)
            # __split_huge_pmd_locked(): the folio inherits the PMD's young and dirty bits.
            head = s.files[s.vmas[v, VmaField.FILE], FileField.BASE] + (pgoff & ~511)
            if pmdv & PMD.YOUNG:
                s.pc_flags[head] |= PG.REFERENCED
            if pmdv & PMD.DIRTY:
                s.pc_flags[head] |= PG.DIRTY
            s.stats[Stat.MM_FILEPAGES] -= 512
            s.stats[Stat.PMD_SPLIT] += 1
            s.stats[Stat.FAULT_PMD_WP] += 1
        else:
            # huge_pmd_set_accessed(): only reached without a hardware accessed bit.
            if not (pmdv & PMD.YOUNG):
                s.stats[Stat.OLD_TO_YOUNG_FAULT] += 1
            s.pmd[slot] = pmdv | PMD.YOUNG | (PMD.DIRTY if write else 0)
            s.stats[Stat.FAULT_AF] += 1
            return 0
    p = s.vmas[v, VmaField.PTE_BASE] + k
    e = s.pte[p]
    if e == 0:
        return do_fault(s, v, k, vpn, pgoff, write, tried, vma_lock)
    if write and not (e & PTE.WRITE):
        return do_wp_page(s, v, k, pgoff, vma_lock)
    # Access-flag / dirty-bit fault: the PTE is fine but the hardware would not update it.
    if not (e & PTE.YOUNG):
        s.stats[Stat.OLD_TO_YOUNG_FAULT] += 1
    bits = PTE.YOUNG | (PTE.DIRTY if write else 0)
    if e & PTE.CONT:
        # contpte_ptep_set_access_flags(): "for SW access management, we need to update all the
        # ptes to prevent extra faults"
        b = p - (vpn & 15)
        for j in range(b, b + 16):
            s.pte[j] |= bits
    else:
        s.pte[p] = e | bits
    s.stats[Stat.FAULT_AF] += 1
    return 0


@jit
def handle_mm_fault(s, v, k, vpn, write):
    """``handle_mm_fault()`` with the arch handler's retry loop and ``mm_account_fault()``."""
    pgoff = s.vmas[v, VmaField.PGOFF] + k
    tried = np.bool_(False)  # not Literal[bool](False): the callees compile once
    # CONFIG_PER_VMA_LOCK (v6.4+): the first attempt is under lock_vma_under_rcu(); a retry takes
    # the mmap_lock (lock_mmap: retry:). One call site, so the fault chain is inlined here once.
    vma_lock = s.cfg[Cfg.PROFILE] >= Profile.LINUX_6_6
    while True:
        ret = __handle_mm_fault(s, v, k, vpn, pgoff, write, tried, vma_lock)
        if not (ret & VM_FAULT_RETRY):
            break
        s.stats[Stat.FAULT_RETRY] += 1
        if vma_lock:
            vma_lock = False
            if ret & VM_FAULT_MAJOR:  # v6.8+ (46e714c729c8); a v6.6 VMA-lock attempt is never MAJOR
                tried = True
        else:
            tried = True  # flags |= FAULT_FLAG_TRIED; goto retry;
    s.stats[Stat.PGFAULT] += 1
    if ret & VM_FAULT_SIGBUS:
        s.stats[Stat.SIGBUS] += 1
        return ret
    if (ret & VM_FAULT_MAJOR) or tried:
        s.stats[Stat.MAJFLT] += 1
    else:
        s.stats[Stat.MINFLT] += 1
    return ret
