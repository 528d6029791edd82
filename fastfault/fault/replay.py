"""The trace loop: one jitted call replays a whole trace through the MMU and the fault path.

Each access first goes through what the hardware does (a present PTE or huge PMD
with the right permissions: set the accessed and dirty bits, no fault); only
otherwise is ``handle_mm_fault`` entered. A row of a collapsed trace stands for
``count`` identical consecutive accesses: after the first one the page is
mapped with the bits the access needs, so the rest are hits -- unless the first
ended in SIGBUS/SIGSEGV, in which case each repeat faults again.

Notes
-----
Models the x86-64 / arm64 hardware side of Linux v5.12-v6.18: with a hardware
accessed flag (x86, arm64 FEAT_HAFDBS) a walk sets the accessed (and dirty) bit;
without it an old or clean PTE raises an access-flag fault (``handle_pte_fault``'s
``pte_mkyoung`` path), counted as a minor fault.
"""

from __future__ import annotations

import numpy as np

from fastfault._jit import jit
from fastfault.fault.memory import handle_mm_fault
from fastfault.fault.pgtable import pmd_slot
from fastfault.fault.state import PG, PMD, PTE, Cfg, FileField, Stat, VmaField, VmaFlag

OUTCOME_OK = 0
OUTCOME_ERROR = 1

_CLEAR_UNTOUCHED = np.uint8(0xFF ^ PTE.UNTOUCHED)
_CLEAR_YOUNG = np.uint8(0xFF ^ PTE.YOUNG)
_CLEAR_PMD_YOUNG = np.uint8(0xFF ^ PMD.YOUNG)
_CLEAR_REFERENCED = np.uint8(0xFF ^ PG.REFERENCED)


@jit
def find_vma(vmas, vpn, hint):
    """Row of the VMA holding ``vpn`` (-1 if none); ``hint`` is tried first."""
    n = vmas.shape[0]
    if 0 <= hint < n:
        if vmas[hint, VmaField.START] <= vpn < vmas[hint, VmaField.START] + vmas[hint, VmaField.PAGES]:
            return hint
    lo = 0
    hi = n - 1
    while lo <= hi:
        mid = (lo + hi) >> 1
        start = vmas[mid, VmaField.START]
        if vpn < start:
            hi = mid - 1
        elif vpn >= start + vmas[mid, VmaField.PAGES]:
            lo = mid + 1
        else:
            return mid
    return -1


@jit
def access_file_page(s, v, vpn, write):
    """One access to virtual page ``vpn`` of file VMA ``v``: hardware first, then the fault path.

    Returns :data:`OUTCOME_ERROR` when the access ended in SIGBUS or SIGSEGV.
    """
    st = s.stats
    st[Stat.FILE_ACCESSES] += 1
    if write and not (s.vmas[v, VmaField.FLAGS] & VmaFlag.WRITE):
        st[Stat.SEGV] += 1
        return OUTCOME_ERROR
    hw_af = s.cfg[Cfg.HW_AF] != 0
    k = vpn - s.vmas[v, VmaField.START]
    slot = pmd_slot(s, v, vpn)
    pmdv = s.pmd[slot]
    if (pmdv & PMD.KIND_MASK) == PMD.HUGE:
        if not (write and not (pmdv & PMD.WRITE)) and (hw_af or (pmdv & PMD.YOUNG)):
            if not (pmdv & PMD.YOUNG):
                st[Stat.OLD_TO_YOUNG_HW] += 1
            s.pmd[slot] = pmdv | PMD.YOUNG | (PMD.DIRTY if write else 0)
            return OUTCOME_OK
    else:
        p = s.vmas[v, VmaField.PTE_BASE] + k
        e = s.pte[p]
        if e & PTE.PRESENT:
            if e & PTE.UNTOUCHED:
                st[Stat.PREFAULT_USED] += 1
                if not (e & PTE.YOUNG):
                    st[Stat.PREFAULT_OLD_USED] += 1
                e &= _CLEAR_UNTOUCHED
                s.pte[p] = e
            ok = not (write and not (e & PTE.WRITE))
            if ok and not hw_af:
                ok = (e & PTE.YOUNG) != 0 and (not write or (e & PTE.DIRTY) != 0)
            if ok:
                if not (e & PTE.YOUNG):
                    st[Stat.OLD_TO_YOUNG_HW] += 1
                s.pte[p] = e | PTE.YOUNG | (PTE.DIRTY if write else 0)
                return OUTCOME_OK
    ret = handle_mm_fault(s, v, k, vpn, write)
    if ret & 8:  # VM_FAULT_SIGBUS
        return OUTCOME_ERROR
    return OUTCOME_OK


@jit
def replay_trace(s, vpn, kind, count):
    """Replay a trace (one call for the whole trace).

    Parameters
    ----------
    s : SimState
    vpn : int64, (n,)
        Virtual page numbers.
    kind : uint8, (n,)
        :class:`~fastfault.codes.AccessKind` codes (1 = store).
    count : uint32 or int64, (n,)
        Consecutive identical accesses each row stands for.
    """
    st = s.stats
    hint = 0
    for i in range(vpn.shape[0]):
        c = np.int64(count[i])
        st[Stat.ACCESSES] += c
        page = vpn[i]
        v = find_vma(s.vmas, page, hint)
        if v < 0:
            st[Stat.OTHER_ACCESSES] += c
            continue
        hint = v
        write = kind[i] == 1
        if access_file_page(s, v, page, write) == OUTCOME_OK:
            st[Stat.FILE_ACCESSES] += c - 1
        else:
            for _ in range(c - 1):
                access_file_page(s, v, page, write)


@jit
def clear_refs(s):
    """``echo 1 > /proc/PID/clear_refs``: clear the accessed bit of every PTE and huge PMD and the
    ``PG_referenced`` flag of every mapped folio."""
    for i in range(s.pte.shape[0]):
        s.pte[i] &= _CLEAR_YOUNG
    for i in range(s.pmd.shape[0]):
        s.pmd[i] &= _CLEAR_PMD_YOUNG
    for i in range(s.pc_flags.shape[0]):
        s.pc_flags[i] &= _CLEAR_REFERENCED
    s.stats[Stat.CLEAR_REFS] += 1


@jit
def smaps_vma(s, v, present):
    """Rss, Referenced, FilePmdMapped and Anonymous of VMA ``v`` in pages, as ``/proc/PID/smaps``
    reports them; fills ``present`` (bool, (vma_pages,)) like ``/proc/PID/pagemap``."""
    start = s.vmas[v, VmaField.START]
    npages = s.vmas[v, VmaField.PAGES]
    base = s.vmas[v, VmaField.PTE_BASE]
    rss = 0
    ref = 0
    pmdmapped = 0
    anon = 0
    k = 0
    while k < npages:
        vpn = start + k
        slot = pmd_slot(s, v, vpn)
        end = min(npages, k + 512 - (vpn & 511))
        pmdv = s.pmd[slot]
        if (pmdv & PMD.KIND_MASK) == PMD.HUGE:
            n = end - k
            rss += n
            pmdmapped += n
            if pmdv & PMD.YOUNG:
                ref += n
            for j in range(k, end):
                present[j] = True
        else:
            for j in range(k, end):
                e = s.pte[base + j]
                present[j] = (e & PTE.PRESENT) != 0
                if e & PTE.PRESENT:
                    rss += 1
                    if e & PTE.YOUNG:
                        ref += 1
                    if e & PTE.ANON:
                        anon += 1
        k = end
    return rss, ref, pmdmapped, anon


@jit
def file_mmap_miss(s, f):
    """``f_ra.mmap_miss`` of file row ``f``."""
    return s.files[f, FileField.MMAP_MISS]
