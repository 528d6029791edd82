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
from fastfault.fault.pgtable import VMF_FLUSH_PAGES, VMF_FLUSH_VPN, pmd_slot
from fastfault.fault.state import PG, PMD, PTE, Cfg, FileField, Stat, VmaField, VmaFlag
from fastfault.reclaim import AgeStat, age_pass
from fastfault.tlb.model import (
    _fill,
    _lookup,
    _walk,
    lookup_kind,
    mapping_kind,
    tlb_add_hits,
    tlb_flush_all,
    tlb_flush_page,
    tlb_flush_range,
    tlb_walk,
)
from fastfault.tlb.presets import PageKind, TlbLookup

OUTCOME_OK = 0
OUTCOME_ERROR = 1

_CLEAR_UNTOUCHED = np.uint8(0xFF ^ PTE.UNTOUCHED)
_CLEAR_YOUNG = np.uint8(0xFF ^ PTE.YOUNG)
_CLEAR_PMD_YOUNG = np.uint8(0xFF ^ PMD.YOUNG)
_CLEAR_REFERENCED = np.uint8(0xFF ^ PG.REFERENCED)


@jit(inline="always")
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


@jit(inline="always")
def _walk_fill(s, t, v, vpn, ifetch):
    """The page walk of an access that found its translation valid: walk (page-walk caches) and fill
    the TLB with the mapping as it now is (dirty when the entry is dirty and writable)."""
    kind = mapping_kind(s, v, vpn, s.cfg[Cfg.COALESCE])
    slot = pmd_slot(s, v, vpn)
    if (s.pmd[slot] & PMD.KIND_MASK) == PMD.HUGE:
        e = s.pmd[slot]
        dirty = (e & PMD.DIRTY) != 0 and (e & PMD.WRITE) != 0
    else:
        p = s.vmas[v, VmaField.PTE_BASE] + vpn - s.vmas[v, VmaField.START]
        e = s.pte[p]
        dirty = (e & PTE.DIRTY) != 0 and (e & PTE.WRITE) != 0
        if kind == PageKind.COALESCED_16K:  # one entry for 4 PTEs: writable-dirty only if all are
            b = p - (vpn & 3)
            for j in range(b, b + 4):
                if (s.pte[j] & PTE.DIRTY) == 0 or (s.pte[j] & PTE.WRITE) == 0:
                    dirty = False
    _walk(t, vpn, kind)
    _fill(t, vpn, kind, dirty, ifetch)


@jit(inline="always")
def _first_use(s, p, e):
    """Prefault accounting on the first access to a prefaulted PTE."""
    if e & PTE.UNTOUCHED:
        s.stats[Stat.PREFAULT_USED] += 1
        if not (e & PTE.YOUNG):
            s.stats[Stat.PREFAULT_OLD_USED] += 1
        e &= _CLEAR_UNTOUCHED
        s.pte[p] = e
    return e


@jit(inline="always")
def _set_young_pte(s, p, vpn, e, write):
    """What a page walk does to a valid PTE: set the accessed (and, for a store, dirty) bit. For a
    contpte block the bits are gathered per block (``contpte_ptep_get``), so the whole block turns young."""
    if not (e & PTE.YOUNG):
        s.stats[Stat.OLD_TO_YOUNG_HW] += 1
    s.pte[p] = e | PTE.YOUNG | (PTE.DIRTY if write else 0)
    if e & PTE.CONT:
        b = p - (vpn & 15)
        for j in range(b, b + 16):
            s.pte[j] |= PTE.YOUNG


@jit(inline="always")
def access_file_page(s, t, v, vpn, write, ifetch):
    """One access to virtual page ``vpn`` of file VMA ``v``: TLB, then page walk, then the fault path.

    Every access is one TLB lookup. A hit neither walks nor touches the accessed bit (so on x86, whose
    ``ptep_clear_flush_young`` does not flush, a still-cached translation is used without the page
    turning young again). A faulting access misses, walks (to the leaf it finds: a huge PMD is a 2M
    walk), faults, and walks again to fill the TLB. A walk that finds a valid entry sets the
    accessed/dirty bits -- or, without a hardware accessed flag, an old or clean entry raises an
    access-flag fault. A store to a VMA without ``VM_WRITE`` misses (it never finds a writable
    entry), walks and ends in SIGSEGV (``access_error()``), filling nothing. Returns
    :data:`OUTCOME_ERROR` when the access ended in SIGBUS or SIGSEGV.

    Inlined into the replay loop, so it is written with one call site per TLB helper: one lookup,
    one walk-and-fill; only a fault (``handle_mm_fault``, the walk before it, the flush it asks for)
    makes calls.
    """
    st = s.stats
    st[Stat.FILE_ACCESSES] += 1
    refused = write and not (s.vmas[v, VmaField.FLAGS] & VmaFlag.WRITE)
    tlb_on = t.ctl[0] != 0
    hw_af = s.cfg[Cfg.HW_AF] != 0
    k = vpn - s.vmas[v, VmaField.START]
    slot = pmd_slot(s, v, vpn)
    pmdv = s.pmd[slot]
    huge = (pmdv & PMD.KIND_MASK) == PMD.HUGE
    p = s.vmas[v, VmaField.PTE_BASE] + k
    e = s.pte[p]
    present = huge or (e & PTE.PRESENT) != 0
    r = TlbLookup.MISS
    if tlb_on:
        # the entries the page may be cached as, whatever its accessed bits are now (an unmapped
        # page has none cached: the lookup only counts)
        kind = PageKind.PTE_4K
        alt = -1
        if huge:
            kind = PageKind.PMD_2M
        elif present:
            kind = lookup_kind(s, v, vpn, s.cfg[Cfg.COALESCE])
            if kind == PageKind.COALESCED_16K:
                alt = PageKind.PTE_4K
        r = _lookup(t, vpn, kind, alt, write, ifetch)
    fill = False
    if huge:
        if r != TlbLookup.MISS:
            return OUTCOME_OK
        ok = not refused and not (write and not (pmdv & PMD.WRITE))
        if ok and not hw_af:
            ok = (pmdv & PMD.YOUNG) != 0 and (not write or (pmdv & PMD.DIRTY) != 0)
        if ok:
            if not (pmdv & PMD.YOUNG):
                st[Stat.OLD_TO_YOUNG_HW] += 1
            s.pmd[slot] = pmdv | PMD.YOUNG | (PMD.DIRTY if write else 0)
            fill = True
    elif present:
        if r != TlbLookup.MISS:
            _first_use(s, p, e)
            return OUTCOME_OK
        if not refused:
            e = _first_use(s, p, e)
            ok = not (write and not (e & PTE.WRITE))
            if ok and not hw_af:
                ok = (e & PTE.YOUNG) != 0 and (not write or (e & PTE.DIRTY) != 0)
            if ok:
                _set_young_pte(s, p, vpn, e, write)
                fill = True
    if not fill:
        # The access missed (nothing cached for an unmapped page; a cached entry that did not allow
        # it was refused above) and its walk, which ends at the leaf it finds, found no usable entry.
        if tlb_on:
            tlb_walk(t, vpn, PageKind.PMD_2M if huge else PageKind.PTE_4K)
        if refused:
            st[Stat.SEGV] += 1
            return OUTCOME_ERROR
        ret = handle_mm_fault(s, v, k, vpn, write)
        if s.vmf[VMF_FLUSH_PAGES] != 0:
            if tlb_on:
                tlb_flush_range(t, s.vmf[VMF_FLUSH_VPN], s.vmf[VMF_FLUSH_PAGES])
            s.vmf[VMF_FLUSH_VPN] = 0
            s.vmf[VMF_FLUSH_PAGES] = 0
        if ret & 8:  # VM_FAULT_SIGBUS
            return OUTCOME_ERROR
    if tlb_on:
        _walk_fill(s, t, v, vpn, ifetch)  # the walk of a usable entry (after a fault: the retried access)
    return OUTCOME_OK


@jit
def _flush_listed(s, t, vpn):
    """Flush a page an aging pass listed. A huge PMD is listed by its first page -- its slot is still
    huge (young cleared by ``pmdp_clear_flush_young``) or now none (unmapped), where a listed PTE's
    slot holds a table -- and its whole 2 MiB is flushed (``flush_pmd_tlb_range``): the entries of a
    2M page held as 4K entries by an array without 2M entries go too."""
    if (vpn & 511) == 0:
        v = find_vma(s.vmas, vpn, 0)
        if v >= 0 and (s.pmd[pmd_slot(s, v, vpn)] & PMD.KIND_MASK) != PMD.TABLE:
            tlb_flush_range(t, vpn, np.int64(512))  # not Literal[int](512): one compiled version
            return
    tlb_flush_page(t, vpn)


@jit
def aging_pass(s, t, a):
    """A reclaim aging pass (:func:`fastfault.reclaim.age_pass`) and the TLB flushes it implies:
    pages it unmapped on every architecture, pages whose accessed bit it cleared only where clearing
    flushes (arm64); a huge PMD as its 2 MiB (:func:`_flush_listed`)."""
    age_pass(s, a, s.cfg[Cfg.AGING_POLICY])
    if t.ctl[0] == 0:
        return
    if a.last[AgeStat.VPN_LIST_OVERFLOW] != 0:  # this pass could not list every page
        tlb_flush_all(t)
        return
    if s.cfg[Cfg.FLUSH_ON_CLEAR_YOUNG] != 0:
        for i in range(a.nvpn[0]):
            _flush_listed(s, t, a.cleared_vpn[i])
    for i in range(a.nvpn[1]):
        _flush_listed(s, t, a.unmapped_vpn[i])


@jit
def replay_trace(s, t, a, vpn, kind, count):
    """Replay a trace (one call for the whole trace).

    Parameters
    ----------
    s : SimState
    t : TlbState
        The TLB hierarchy (the ``none`` preset disables the model).
    a : AgeState
        Reclaim aging state; a pass runs every ``s.cfg[Cfg.AGING_INTERVAL]`` accesses (0: never).
    vpn : int64, (n,)
        Virtual page numbers.
    kind : uint8, (n,)
        :class:`~fastfault.codes.AccessKind` codes (0 load, 1 store, 2 instruction fetch).
    count : int64, (n,)
        Consecutive identical accesses each row stands for.
    """
    st = s.stats
    interval = s.cfg[Cfg.AGING_INTERVAL]
    tlb_on = t.ctl[0] != 0
    hint = 0
    for i in range(vpn.shape[0]):
        remaining = np.int64(count[i])
        page = vpn[i]
        write = kind[i] == 1
        ifetch = kind[i] == 2
        v = find_vma(s.vmas, page, hint)
        if v >= 0:
            hint = v
        while remaining > 0:
            # One access in full ...
            st[Stat.ACCESSES] += 1
            if v < 0:
                st[Stat.OTHER_ACCESSES] += 1
                if tlb_on:
                    # tlb_access (anonymous memory, stack: present, dirty-capable 4K pages), inlined:
                    # in a real program's trace these are most accesses
                    if _lookup(t, page, PageKind.PTE_4K, -1, write, ifetch) == TlbLookup.MISS:
                        _walk(t, page, PageKind.PTE_4K)
                        _fill(t, page, PageKind.PTE_4K, True, ifetch)
                settled = True
            else:
                settled = access_file_page(s, t, v, page, write, ifetch) == OUTCOME_OK
            remaining -= 1
            if interval > 0 and st[Stat.ACCESSES] % interval == 0:
                aging_pass(s, t, a)
            if not settled or remaining == 0:
                continue
            # ... then its repeats, which hit (translation cached, bits set) up to the next aging pass.
            h = remaining
            if interval > 0:
                h = min(h, interval - st[Stat.ACCESSES] % interval)
            st[Stat.ACCESSES] += h
            if v < 0:
                st[Stat.OTHER_ACCESSES] += h
            else:
                st[Stat.FILE_ACCESSES] += h
            if tlb_on:
                tlb_add_hits(t, h, write, ifetch)
            remaining -= h
            if interval > 0 and st[Stat.ACCESSES] % interval == 0:
                aging_pass(s, t, a)


@jit
def flush_tlb(t):
    """Flush every TLB entry (what the case recorder does between phases by sweeping 128 MiB)."""
    tlb_flush_all(t)


@jit
def _folio_head(s, v, k):
    """Page-cache index of the head of the folio holding the file page VMA page ``k`` maps (-1: none)."""
    f = s.vmas[v, VmaField.FILE]
    pg = s.vmas[v, VmaField.PGOFF] + k
    if pg >= s.files[f, FileField.CAPACITY]:
        return -1
    base = s.files[f, FileField.BASE]
    order = np.int64(s.pc_order[base + pg])
    if order < 0:
        return -1
    return base + (pg & ~((1 << order) - 1))


@jit
def clear_refs(s):
    """``echo 1 > /proc/PID/clear_refs``: clear the accessed bit of every PTE and huge PMD and the
    ``PG_referenced`` flag of every mapped folio."""
    for v in range(s.vmas.shape[0]):
        start = s.vmas[v, VmaField.START]
        npages = s.vmas[v, VmaField.PAGES]
        base = s.vmas[v, VmaField.PTE_BASE]
        k = 0
        while k < npages:
            vpn = start + k
            slot = pmd_slot(s, v, vpn)
            end = min(npages, k + 512 - (vpn & 511))
            if (s.pmd[slot] & PMD.KIND_MASK) == PMD.HUGE:
                s.pmd[slot] &= _CLEAR_PMD_YOUNG
                h = _folio_head(s, v, k)
                if h >= 0:
                    s.pc_flags[h] &= _CLEAR_REFERENCED
            else:
                for j in range(k, end):
                    e = s.pte[base + j]
                    if e & PTE.PRESENT:
                        s.pte[base + j] = e & _CLEAR_YOUNG
                        if not (e & PTE.ANON):
                            h = _folio_head(s, v, j)
                            if h >= 0:
                                s.pc_flags[h] &= _CLEAR_REFERENCED
            k = end
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
            h = _folio_head(s, v, k)
            if (pmdv & PMD.YOUNG) or (h >= 0 and (s.pc_flags[h] & PG.REFERENCED)):
                ref += n
            for j in range(k, end):
                present[j] = True
        else:
            for j in range(k, end):
                e = s.pte[base + j]
                present[j] = (e & PTE.PRESENT) != 0
                if e & PTE.PRESENT:
                    rss += 1
                    if e & PTE.ANON:
                        anon += 1
                        if e & PTE.YOUNG:
                            ref += 1
                    else:
                        # smaps_account(): young || folio_test_young || folio_test_referenced
                        h = _folio_head(s, v, j)
                        if (e & PTE.YOUNG) or (h >= 0 and (s.pc_flags[h] & PG.REFERENCED)):
                            ref += 1
        k = end
    return rss, ref, pmdmapped, anon


@jit
def file_mmap_miss(s, f):
    """``f_ra.mmap_miss`` of file row ``f``."""
    return s.files[f, FileField.MMAP_MISS]
