"""PTE and PMD setters of ``mm/memory.c``: ``set_pte_range``/``do_set_pte`` and ``do_set_pmd``.

Also the small page-table helpers every other module uses (PMD slot lookup,
the suitability test of ``include/linux/huge_mm.h``).

Notes
-----
Models Linux v5.12 (``do_set_pte``, young/old per page), v6.6 (``set_pte_range``,
young/old per batch) and v6.18 (same setter; whole folios reach it). ``mk_pte``
with a normal ``vm_page_prot`` is young on x86-64 and arm64; only
``pte_mkold`` for a prefaulted batch on an architecture that asks for it
(``arch_wants_old_prefaulted_pte``) makes a fresh PTE old. A PMD installed by
``do_set_pmd`` is always young.
"""

from __future__ import annotations

import numpy as np

from fastfault._jit import jit
from fastfault.fault.state import PG, PMD, PTE, Cfg, FileField, Profile, Stat, VmaField, VmaFlag

# Plain integers for the jitted code.
_START = int(VmaField.START)
_PAGES = int(VmaField.PAGES)
_PGOFF = int(VmaField.PGOFF)
_FLAGS = int(VmaField.FLAGS)
_PTE_BASE = int(VmaField.PTE_BASE)
_PMD_BASE = int(VmaField.PMD_BASE)
_VM_WRITE = int(VmaFlag.WRITE)
_VM_NOHUGEPAGE = int(VmaFlag.NOHUGEPAGE)
_PTE_PRESENT = int(PTE.PRESENT)
_PTE_YOUNG = int(PTE.YOUNG)
_PTE_DIRTY = int(PTE.DIRTY)
_PTE_WRITE = int(PTE.WRITE)
_PTE_ANON = int(PTE.ANON)
_PTE_UNTOUCHED = int(PTE.UNTOUCHED)
_PMD_KIND = int(PMD.KIND_MASK)
_PMD_NONE = int(PMD.NONE)
_PMD_HUGE = int(PMD.HUGE)
_PMD_YOUNG = int(PMD.YOUNG)
_PMD_DIRTY = int(PMD.DIRTY)
_PMD_WRITE = int(PMD.WRITE)
_PG_HWPOISON = int(PG.HWPOISON)
_PTE_CONT = int(PTE.CONT)
_OLD_PREFAULT = int(Cfg.OLD_PREFAULT)
_CONTPTE = int(Cfg.CONTPTE)
_THP_DISABLED = int(Cfg.THP_DISABLED)
_FILE = int(VmaField.FILE)
_FBASE = int(FileField.BASE)
_CAPACITY = int(FileField.CAPACITY)
_PROFILE = int(Cfg.PROFILE)
VMF_FLUSH_VPN = 2  # s.vmf[VMF_FLUSH_VPN], s.vmf[VMF_FLUSH_PAGES]: a TLB flush the fault requests
VMF_FLUSH_PAGES = 3  # (flush_tlb_page / flush_tlb_range after changing a present entry)
_LINUX_6_18 = int(Profile.LINUX_6_18)

VM_FAULT_FALLBACK = 1


@jit(inline="always")
def pmd_slot(s, v, vpn):
    """PMD slot (index into ``s.pmd``) of virtual page ``vpn`` inside VMA row ``v``."""
    return s.vmas[v, _PMD_BASE] + (vpn >> 9) - (s.vmas[v, _START] >> 9)


@jit(inline="always")
def thp_vma_suitable_order(s, v, vpn):
    """``thp_vma_suitable_order(vma, addr, PMD_ORDER)`` for a file VMA.

    True when ``(vm_start >> PAGE_SHIFT) - vm_pgoff`` is a multiple of 512 and the
    whole 2 MiB region holding ``vpn`` lies inside the VMA.
    """
    start = s.vmas[v, _START]
    if (start - s.vmas[v, _PGOFF]) % 512 != 0:
        return False
    hvpn = vpn & ~511
    return hvpn >= start and hvpn + 512 <= start + s.vmas[v, _PAGES]


@jit(inline="always")
def request_flush(s, vpn, npages):
    """Ask the replay loop to flush the TLB for ``[vpn, vpn + npages)`` after this fault
    (``flush_tlb_page``/``flush_tlb_range``: a present entry changed). Several requests of one fault
    merge into one range covering them all."""
    if s.vmf[VMF_FLUSH_PAGES] == 0:
        s.vmf[VMF_FLUSH_VPN] = vpn
        s.vmf[VMF_FLUSH_PAGES] = npages
    else:
        lo = min(s.vmf[VMF_FLUSH_VPN], vpn)
        hi = max(s.vmf[VMF_FLUSH_VPN] + s.vmf[VMF_FLUSH_PAGES], vpn + npages)
        s.vmf[VMF_FLUSH_VPN] = lo
        s.vmf[VMF_FLUSH_PAGES] = hi - lo


@jit
def _contpte_try_fold(s, v, k):
    """``contpte_try_fold()`` after a single-PTE ``set_ptes()``: when the PTE is the last of a 16-page
    block aligned virtually and physically, one folio covers the block and all 16 PTEs are present
    with the same permissions, ``contpte_convert()`` folds the block: PTE_CONT plus the OR of the
    young/dirty bits on every PTE."""
    vpn = s.vmas[v, _START] + k
    if (vpn & 15) != 15 or k < 15:
        return
    f = s.vmas[v, _FILE]
    pg = s.vmas[v, _PGOFF] + k
    if pg >= s.files[f, _CAPACITY]:
        return
    order = np.int64(s.pc_order[s.files[f, _FBASE] + pg])
    if order < 4 or (pg & 15) != 15 or pg - 15 < (pg & ~((1 << order) - 1)):
        return
    b = s.vmas[v, _PTE_BASE] + k - 15
    want = s.pte[b + 15] & (_PTE_PRESENT | _PTE_WRITE | _PTE_ANON)
    gathered = 0
    for j in range(16):
        e = s.pte[b + j]
        if (e & _PTE_PRESENT) == 0 or (e & (_PTE_ANON | _PTE_CONT)) != 0:
            return
        if (e & (_PTE_PRESENT | _PTE_WRITE | _PTE_ANON)) != want:
            return
        gathered |= e & (_PTE_YOUNG | _PTE_DIRTY)
    for j in range(16):
        s.pte[b + j] |= gathered | _PTE_CONT
    request_flush(s, vpn - 15, 16)  # contpte_convert(): __flush_tlb_range() of the block


@jit(inline="always")
def set_pte_range(s, v, k0, nr, fault_k, write, anon):
    """``set_pte_range(vmf, folio, page, nr, addr)``: install ``nr`` consecutive PTEs.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    k0 : int
        Page index inside the VMA of the first PTE.
    nr : int
        Number of PTEs (consecutive pages of one folio).
    fault_k : int
        Page index of the faulting address (``vmf->address``); the batch is a prefault unless it
        contains it.
    write, anon : bool
        A write fault (PTEs dirty, writable if ``VM_WRITE``); a private COW copy.
    """
    prefault = not (k0 <= fault_k < k0 + nr)
    entry = _PTE_PRESENT
    if not (prefault and s.cfg[_OLD_PREFAULT] != 0):
        entry |= _PTE_YOUNG
    if write:
        entry |= _PTE_DIRTY
        if s.vmas[v, _FLAGS] & _VM_WRITE:
            entry |= _PTE_WRITE
    if anon:
        entry |= _PTE_ANON
    base = s.vmas[v, _PTE_BASE] + k0
    for i in range(nr):
        e = entry
        if k0 + i != fault_k:
            e |= _PTE_UNTOUCHED
        s.pte[base + i] = e
    if nr >= 16 and not anon and s.cfg[_CONTPTE] != 0:
        # contpte_set_ptes(): every 16-page block of the batch aligned both virtually and physically
        # (a folio is naturally aligned, so physically means: file index aligned) gets PTE_CONT.
        vpn0 = s.vmas[v, _START] + k0
        pgoff0 = s.vmas[v, _PGOFF] + k0
        i = (16 - (vpn0 & 15)) & 15
        while i + 16 <= nr:
            if ((pgoff0 + i) & 15) == 0:
                for j in range(i, i + 16):
                    s.pte[base + j] |= _PTE_CONT
            i += 16
    if nr == 1 and not anon and s.cfg[_CONTPTE] != 0:
        _contpte_try_fold(s, v, k0)  # set_ptes(nr == 1) -> contpte_try_fold()
    st = s.stats
    st[Stat.PTES_INSTALLED] += nr
    st[Stat.SET_PTE_BATCHES] += 1
    if entry & _PTE_YOUNG:
        st[Stat.PTES_YOUNG] += nr
        if prefault:
            st[Stat.PREFAULT_YOUNG] += nr
        elif nr > 1:
            st[Stat.PREFAULT_YOUNG] += nr - 1
    else:
        st[Stat.PTES_OLD] += nr


@jit
def do_set_pmd(s, v, vpn, cache_head, order, write):
    """``do_set_pmd()``: map a PMD-size folio with one huge PMD.

    Returns 0 on success, :data:`VM_FAULT_FALLBACK` when the caller must use PTEs: THP
    disabled for the VMA or the machine, the VMA not 2 MiB-suitable around ``vpn``, a folio
    that is not PMD-size, a hwpoisoned subpage, or a PMD that is no longer none.
    """
    # v6.11+ (2b0f922323cc): vma_thp_disabled(vma, vm_flags, forced_collapse=true) / thp_disabled_by_hw()
    if s.cfg[_PROFILE] >= _LINUX_6_18 and (s.cfg[_THP_DISABLED] != 0 or (s.vmas[v, _FLAGS] & _VM_NOHUGEPAGE)):
        return VM_FAULT_FALLBACK
    if not thp_vma_suitable_order(s, v, vpn):
        return VM_FAULT_FALLBACK
    if order != 9:
        return VM_FAULT_FALLBACK
    for i in range(512):
        if s.pc_flags[cache_head + i] & _PG_HWPOISON:
            return VM_FAULT_FALLBACK
    slot = pmd_slot(s, v, vpn)
    if (s.pmd[slot] & _PMD_KIND) != _PMD_NONE:
        return VM_FAULT_FALLBACK
    entry = _PMD_HUGE | _PMD_YOUNG
    if write:
        entry |= _PMD_DIRTY
        if s.vmas[v, _FLAGS] & _VM_WRITE:
            entry |= _PMD_WRITE
    s.pmd[slot] = entry
    s.stats[Stat.MM_FILEPAGES] += 512
    s.stats[Stat.PMD_MAPPED] += 1
    return 0
