"""The trace loop, the MMU side of an access, reclaim aging, ``clear_refs`` and ``smaps``, in plain Python.

Mirrors :mod:`fastfault.fault.replay` (same signatures and encodings), the TLB model and the aging
passes included: the TLB is a :class:`kernels_py.tlb.RefTlb` (convert a jitted ``TlbState`` with
:func:`kernels_py.tlb.from_state`), the aging state the same ``AgeState`` arrays the jitted pass
uses, aged by :func:`kernels_py.reclaim.age_pass`. The hardware model is the simulator's:

- **TLB.** Every access is one lookup, for the entries the page may be cached as (a huge PMD is a
  2M page; a contpte block one 64K entry on arm64; a group of 4 PTEs Zen 4 may coalesce one 16K
  entry or four 4K ones; see :func:`_tlb_lookup`). A hit uses the cached translation: no walk, no
  accessed bit (on x86, whose ``ptep_clear_flush_young`` does not flush, a cached translation keeps
  being used while the PTE stays old). A miss walks the page tables; the fill is of the kind the
  walk finds (:func:`kernels_py.tlb.mapping_kind`: only an all-young group is coalesced).
- **Walk.** A present entry with the right permissions is used: the walk sets its accessed (and,
  for a store, dirty) bit -- a contpte block turns young as a whole -- and the translation is filled
  (dirty when the entry is dirty and writable). Without a hardware access flag an old or clean entry
  faults instead (``handle_pte_fault``'s ``pte_mkyoung`` path).
- **Fault.** The fault path runs; TLB entries of present entries it changed are flushed (see
  :func:`fault_flush_range`); then the faulting instruction runs again: it walks and fills. A store
  to a VMA without ``VM_WRITE``, and an access ending in SIGBUS, fill nothing.
- **Collapsed rows.** A row standing for ``count`` identical accesses: after the first one the
  translation is cached with the bits the access needs, so the repeats are L1 hits (no state
  change) up to the next aging boundary, where the next repeat is again an access in full. After
  SIGSEGV/SIGBUS every repeat faults again.
- **Aging.** Every ``Cfg.AGING_INTERVAL`` accesses a reclaim aging pass runs; the TLB entries of the
  pages it unmapped are flushed on every architecture, those whose accessed bit it cleared only
  where clearing flushes (arm64 ``ptep_clear_flush_young``; ``Cfg.FLUSH_ON_CLEAR_YOUNG``), and the
  whole TLB when the pass could not list them all.

The ``/proc`` side is written from ``fs/proc/task_mmu.c`` of Linux 6.18.5.
"""

from __future__ import annotations

import numpy as np

from fastfault.fault.state import PG, PMD, PTE, Cfg, FileField, SimState, Stat, VmaField, VmaFlag
from fastfault.reclaim_codes import AgeStat
from fastfault.tlb.presets import PageKind, TlbCtl
from kernels_py import tlb as reftlb
from kernels_py.filemap import VM_FAULT_ERROR
from kernels_py.memory import handle_mm_fault
from kernels_py.pgtable import CONT_PTES, Vma, contpte_block
from kernels_py.readahead import xa_load
from kernels_py.reclaim import age_pass

__all__ = [
    "EMULATE",
    "JIT_DEVIATIONS",
    "OUTCOME_ERROR",
    "OUTCOME_OK",
    "access_file_page",
    "aging_pass",
    "clear_refs",
    "fault_flush_range",
    "file_mmap_miss",
    "find_vma",
    "flush_tlb",
    "replay_trace",
    "smaps_vma",
]

OUTCOME_OK = 0
OUTCOME_ERROR = 1

#: Behaviours of the jitted replay loop this reference does not share, each reported with a
#: reproducer and a proposed fix in ``/tmp/full_findings.md``:
#:
#: - ``segv_skips_tlb`` (T1): a store refused with SIGSEGV makes no TLB lookup and no walk;
#: - ``huge_fault_walk_4k`` (T2): the walk of an access that faults on a huge PMD is counted as a
#:   4K walk (one reference too many, and the leaf PDE goes into the PDE cache);
#: - ``fold_no_flush`` (T3): folding a contpte block (``contpte_convert``) flushes nothing;
#: - ``overflow_sticky`` (T4): once one aging pass overflowed its vpn lists, every later pass
#:   flushes the whole TLB instead of the pages it listed;
#: - ``coalesced_lookup_by_young`` (T5): a Zen 4 lookup looks for the 16K entry only while the
#:   group's four PTEs are young, and for the 4K entry only while they are not -- so a cached entry
#:   of the other size is missed (after x86 clears accessed bits without a flush, and whenever a
#:   group turns all-young);
#: - ``pmd_flush_first_page`` (T6): a huge PMD an aging pass unmapped or cleared is flushed as its
#:   first page only, so a 2M page cached as 4K entries (an array without 2M entries) keeps the
#:   translations of its other pages.
JIT_DEVIATIONS = frozenset(
    {
        "segv_skips_tlb",
        "huge_fault_walk_4k",
        "fold_no_flush",
        "overflow_sticky",
        "coalesced_lookup_by_young",
        "pmd_flush_first_page",
    }
)

#: Names from :data:`JIT_DEVIATIONS` the reference reproduces (empty by default: the reference
#: models the kernel and the hardware). A differential test adds those the jitted side still has,
#: so that everything else keeps being compared until the fix lands.
EMULATE: set[str] = set()

_LOOKUP_MISS = reftlb.MISS
#: PTE bits the hardware or an access-flag fault may change without a TLB flush (and the
#: simulator's own bookkeeping bit).
_NO_FLUSH_BITS = PTE.YOUNG | PTE.DIRTY | PTE.UNTOUCHED
_NO_FLUSH_PMD_BITS = PMD.YOUNG | PMD.DIRTY


def _tlb_model(t):
    """The TLB the replay uses: a :class:`~kernels_py.tlb.RefTlb`, or None when the model is off
    (``t`` None, a disabled ``RefTlb``, or a jitted ``TlbState`` of the ``none`` preset)."""
    if t is None:
        return None
    if isinstance(t, reftlb.RefTlb):
        return t if t.enabled else None
    ctl = getattr(t, "ctl", None)
    if ctl is not None and int(ctl[TlbCtl.ENABLED]) == 0:
        return None
    raise TypeError("kernels_py.replay: the TLB model is a kernels_py.tlb.RefTlb (see kernels_py.tlb.from_state)")


def find_vma(vmas: np.ndarray, vpn: int, hint: int) -> int:
    """Row of the VMA holding page ``vpn``, or -1.

    Parameters
    ----------
    vmas : numpy.ndarray
        The VMA table (rows sorted by start, non-overlapping).
    vpn : int
        Virtual page number.
    hint : int
        Unused (the jitted version tries it first; the answer is the same).

    Notes
    -----
    ``vma_lookup(mm, addr)``: the VMA with ``vm_start <= addr < vm_end``.
    """
    vpn = int(vpn)
    for v in range(vmas.shape[0]):
        start = int(vmas[v, VmaField.START])
        if start <= vpn < start + int(vmas[v, VmaField.PAGES]):
            return v
    return -1


def _walk_fill(s: SimState, t, v: int, vpn: int, ifetch: bool) -> None:
    """The walk of an access that finds its translation valid, and the TLB fill with the mapping as
    it now is.

    The entry is dirty (stores may use it) when the PTE or huge PMD is dirty and writable; a
    coalesced 16K entry stands for 4 PTEs and is dirty only when all four are.
    """
    vma = Vma.of(s, v)
    kind = reftlb.mapping_kind(s, v, vpn, int(s.cfg[Cfg.COALESCE]))
    pmdv = int(s.pmd[vma.pmd(vpn)])
    if pmdv & PMD.KIND_MASK == PMD.HUGE:
        dirty = bool(pmdv & PMD.DIRTY and pmdv & PMD.WRITE)
    else:
        p = vma.ptep(vpn)
        ptes = [int(s.pte[p])]
        if kind == PageKind.COALESCED_16K:
            first = p - vpn % 4
            ptes = [int(e) for e in s.pte[first : first + 4]]
        dirty = all(e & PTE.DIRTY and e & PTE.WRITE for e in ptes)
    reftlb.tlb_walk(t, vpn, kind)
    reftlb.tlb_fill(t, vpn, kind, dirty, ifetch)


def _first_use(s: SimState, p: int, e: int) -> int:
    """Simulator bookkeeping on the first access to a prefaulted PTE (``PTE.UNTOUCHED``): count
    ``PREFAULT_USED`` (``PREFAULT_OLD_USED`` if it was old) and drop the mark. Returns the PTE."""
    if e & PTE.UNTOUCHED:
        s.stats[Stat.PREFAULT_USED] += 1
        if not (e & PTE.YOUNG):
            s.stats[Stat.PREFAULT_OLD_USED] += 1
        e &= ~PTE.UNTOUCHED
        s.pte[p] = e
    return e


def _set_young_pte(s: SimState, vma: Vma, p: int, vpn: int, e: int, write: bool) -> None:
    """What a walk does to a valid PTE: set the accessed bit (and the dirty bit for a store),
    counting ``OLD_TO_YOUNG_HW``. The kernel reads a contpte block's young bit gathered over the
    block (``contpte_ptep_get``), so one access makes the whole block young."""
    if not (e & PTE.YOUNG):
        s.stats[Stat.OLD_TO_YOUNG_HW] += 1
    s.pte[p] = e | PTE.YOUNG | (PTE.DIRTY if write else 0)
    if e & PTE.CONT:
        p0 = contpte_block(vma, vpn - vma.vm_start)
        s.pte[p0 : p0 + CONT_PTES] |= np.uint8(PTE.YOUNG)


def _tlb_lookup(s: SimState, t, v: int, vpn: int, huge: bool, present: bool, write: bool, ifetch: bool) -> bool:
    """The TLB lookup of an access: True on a hit (L1 or L2).

    A huge PMD is looked up as a 2M page, a page without a present PTE as a 4K page (nothing is
    cached for it). A present PTE is looked up as what it may be cached as: a 64K entry for a
    contpte block; on Zen 4, for a group of 4 PTEs that may be coalesced, the 16K entry or its own
    4K entry -- whichever a fill made, whatever the accessed bits are now
    (:func:`~kernels_py.tlb.lookup_kind`, :func:`~kernels_py.tlb.tlb_lookup_coalesced`).
    """
    coalesce = int(s.cfg[Cfg.COALESCE])
    if huge:
        kind = PageKind.PMD_2M
    elif not present:
        kind = PageKind.PTE_4K
    elif "coalesced_lookup_by_young" in EMULATE:
        kind = reftlb.mapping_kind(s, v, vpn, coalesce)
    else:
        kind = reftlb.lookup_kind(s, v, vpn, coalesce)
        if kind == PageKind.COALESCED_16K:
            return reftlb.tlb_lookup_coalesced(t, vpn, write, ifetch) != _LOOKUP_MISS
    return reftlb.tlb_lookup(t, vpn, kind, write, ifetch) != _LOOKUP_MISS


def _walk_kind(huge: bool) -> int:
    """Page kind of the walk of an access that faults: it ends at the leaf it finds -- a huge PMD
    (a 2M walk) or the PTE level."""
    if huge and "huge_fault_walk_4k" not in EMULATE:
        return PageKind.PMD_2M
    return PageKind.PTE_4K


def _fault_region(s: SimState, vma: Vma, vpn: int) -> tuple[int, int, int]:
    """The entries a fault at ``vpn`` can change: the PMD slot and the VMA's PTEs under it, as
    ``(pmd slot, first PTE index, last PTE index + 1)``."""
    lo = max(vma.vm_start, vpn & ~511)
    hi = min(vma.vm_end, (vpn | 511) + 1)
    return vma.pmd(vpn), vma.ptep(lo), vma.ptep(hi)


def fault_flush_range(s: SimState, vma: Vma, vpn: int, pmd_before: int, ptes_before: np.ndarray) -> tuple[int, int]:
    """The TLB flush the fault just handled at ``vpn`` issued, as ``(first page, pages)`` (0 pages:
    none), from what it changed in the page tables.

    Parameters
    ----------
    s : SimState
        After the fault.
    vma : Vma
    vpn : int
        The faulting page.
    pmd_before : int
        The PMD covering ``vpn`` before the fault.
    ptes_before : numpy.ndarray
        The VMA's PTEs under that PMD before the fault (:func:`_fault_region`).

    Notes
    -----
    :mod:`kernels_py.memory` updates the page tables but does not report its flushes; they follow
    from which present entries changed, one rule per kernel primitive:

    - a huge PMD zapped (``wp_huge_pmd`` -> ``__split_huge_pmd_locked``: ``pmdp_huge_clear_flush``)
      flushes its 2 MiB;
    - a present PTE that joined or left a contpte block (``contpte_convert``: fold in
      ``contpte_try_fold``, unfold in ``contpte_try_unfold``) flushes the whole 16-page block
      (``__flush_tlb_range`` of the block; arm64 cores without BBML2);
    - any other change of a present PTE but its young/dirty bits (``do_wp_page``: write-notify
      reuse, or ``wp_page_copy``'s ``ptep_clear_flush``) flushes the page.

    Setting young/dirty bits (access-flag faults) flushes nothing; neither does installing entries
    where there were none. Several flushes of one fault are one range covering them all.
    """
    lo = hi = 0
    slot, p0, p1 = _fault_region(s, vma, vpn)

    def add(first: int, n: int) -> None:
        nonlocal lo, hi
        lo, hi = (first, first + n) if hi == lo else (min(lo, first), max(hi, first + n))

    if pmd_before & PMD.KIND_MASK == PMD.HUGE and (pmd_before ^ int(s.pmd[slot])) & ~_NO_FLUSH_PMD_BITS:
        add(vpn & ~511, 512)
    now = s.pte[p0:p1]
    for i in np.flatnonzero((ptes_before & PTE.PRESENT) != 0).tolist():
        before, after = int(ptes_before[i]), int(now[i])
        page = vma.vm_start + (p0 - vma.pte_base) + i
        changed = (before ^ after) & ~_NO_FLUSH_BITS
        if changed & PTE.CONT and not ("fold_no_flush" in EMULATE and after & PTE.CONT):
            add(page & ~(CONT_PTES - 1), CONT_PTES)
        elif changed & ~PTE.CONT:
            add(page, 1)
    return lo, hi - lo


def access_file_page(s: SimState, t, v: int, vpn: int, write: bool, ifetch: bool = False) -> int:
    """One access to page ``vpn`` of file VMA ``v``: TLB lookup, page walk, then the fault if needed.

    Parameters
    ----------
    s : SimState
    t : RefTlb or None
        The TLB model (None, or a disabled one, for none).
    v : int
        VMA row.
    vpn : int
        Virtual page number.
    write, ifetch : bool
        A store; an instruction fetch (a read for the page tables, the instruction-side TLB).

    Returns
    -------
    int
        :data:`OUTCOME_ERROR` when the access ended in SIGSEGV or SIGBUS.

    Notes
    -----
    Every access is one TLB lookup (:func:`_tlb_lookup`; for a page without a present entry nothing
    is cached: every unmapping flushes). A store to a VMA
    without ``VM_WRITE`` finds no writable entry (a write never hits a clean TLB entry), walks,
    and fails ``access_error()`` in the arch handler (SIGSEGV, no ``handle_mm_fault``, no PGFAULT).
    Simulator conventions: the first access to a prefaulted PTE (``PTE.UNTOUCHED``) counts
    ``PREFAULT_USED`` (``PREFAULT_OLD_USED`` if it was old), TLB hit or not; the hardware setting an
    accessed bit counts ``OLD_TO_YOUNG_HW``.
    """
    tlb = _tlb_model(t)
    st = s.stats
    st[Stat.FILE_ACCESSES] += 1
    vma = Vma.of(s, v)
    vpn = int(vpn)
    refused = bool(write and not (vma.vm_flags & VmaFlag.WRITE))
    if refused and (tlb is None or "segv_skips_tlb" in EMULATE):
        st[Stat.SEGV] += 1
        return OUTCOME_ERROR
    hw_af = bool(s.cfg[Cfg.HW_AF])
    slot = vma.pmd(vpn)
    pmdv = int(s.pmd[slot])
    huge = pmdv & PMD.KIND_MASK == PMD.HUGE
    p = vma.ptep(vpn)
    e = 0 if huge else int(s.pte[p])
    present = huge or bool(e & PTE.PRESENT)

    # The TLB.
    if tlb is not None:
        hit = _tlb_lookup(s, tlb, v, vpn, huge, present, write, ifetch)
        if hit and present:
            if not huge:
                _first_use(s, p, e)
            return OUTCOME_OK
        # nothing is cached for a page without a present entry: every unmapping flushes
        assert not hit or "pmd_flush_first_page" in EMULATE, f"a translation of unmapped page {vpn:#x} is cached"
    if refused:
        reftlb.tlb_walk(tlb, vpn, _walk_kind(huge))
        st[Stat.SEGV] += 1
        return OUTCOME_ERROR

    # The page walk.
    if huge:
        permitted = not (write and not (pmdv & PMD.WRITE))
        if permitted and (hw_af or (pmdv & PMD.YOUNG and (not write or pmdv & PMD.DIRTY))):
            if not (pmdv & PMD.YOUNG):
                st[Stat.OLD_TO_YOUNG_HW] += 1
            s.pmd[slot] = pmdv | PMD.YOUNG | (PMD.DIRTY if write else 0)
            if tlb is not None:
                _walk_fill(s, tlb, v, vpn, ifetch)
            return OUTCOME_OK
    elif present:
        e = _first_use(s, p, e)
        permitted = not (write and not (e & PTE.WRITE))
        # without a hardware access flag (and dirty bit) an old / clean entry faults
        if permitted and (hw_af or (e & PTE.YOUNG and (not write or e & PTE.DIRTY))):
            _set_young_pte(s, vma, p, vpn, e, write)
            if tlb is not None:
                _walk_fill(s, tlb, v, vpn, ifetch)
            return OUTCOME_OK

    # The fault.
    if tlb is not None:
        reftlb.tlb_walk(tlb, vpn, _walk_kind(huge))
        _, p0, p1 = _fault_region(s, vma, vpn)
        ptes_before = s.pte[p0:p1].copy()
    ret = handle_mm_fault(s, v, vpn - vma.vm_start, vpn, write)
    if tlb is not None:
        first, npages = fault_flush_range(s, vma, vpn, pmdv, ptes_before)
        if npages:
            reftlb.tlb_flush_range(tlb, first, npages)
    if ret & VM_FAULT_ERROR:
        return OUTCOME_ERROR
    if tlb is not None:
        _walk_fill(s, tlb, v, vpn, ifetch)  # the faulting instruction runs again and walks
    return OUTCOME_OK


def _flush_listed(s: SimState, t, vpn: int) -> None:
    """Flush a page an aging pass listed. A huge PMD is listed by its first page -- its slot is still
    huge (young cleared by ``pmdp_clear_flush_young``) or now none (unmapped), where a listed PTE's
    slot holds a table -- and its whole 2 MiB is flushed (``flush_pmd_tlb_range``): the entries of a
    2M page held as 4K entries by an array without 2M entries go too."""
    if vpn % 512 == 0 and "pmd_flush_first_page" not in EMULATE:
        v = find_vma(s.vmas, vpn, 0)
        if v >= 0 and int(s.pmd[Vma.of(s, v).pmd(vpn)]) & PMD.KIND_MASK != PMD.TABLE:
            reftlb.tlb_flush_range(t, vpn, 512)
            return
    reftlb.tlb_flush_page(t, vpn)


def aging_pass(s: SimState, t, a) -> None:
    """A reclaim aging pass (:func:`kernels_py.reclaim.age_pass`) and the TLB flushes it implies.

    Notes
    -----
    Pages the pass unmapped are flushed on every architecture (``try_to_unmap``); pages whose
    accessed bit it cleared with ``ptep_clear_flush_young``/``pmdp_clear_flush_young`` only where
    that flushes (arm64: ``Cfg.FLUSH_ON_CLEAR_YOUNG``; x86 does not flush); a huge PMD as its 2 MiB
    (:func:`_flush_listed`). When this pass could not list every page
    (``AgeStat.VPN_LIST_OVERFLOW`` of the pass), the whole TLB is flushed instead.
    """
    age_pass(s, a, int(s.cfg[Cfg.AGING_POLICY]))
    tlb = _tlb_model(t)
    if tlb is None:
        return
    counters = a.stats if "overflow_sticky" in EMULATE else a.last
    if counters[AgeStat.VPN_LIST_OVERFLOW]:
        reftlb.tlb_flush_all(tlb)
        return
    if s.cfg[Cfg.FLUSH_ON_CLEAR_YOUNG]:
        for vpn in a.cleared_vpn[: int(a.nvpn[0])].tolist():
            _flush_listed(s, tlb, vpn)
    for vpn in a.unmapped_vpn[: int(a.nvpn[1])].tolist():
        _flush_listed(s, tlb, vpn)


def replay_trace(s: SimState, t, a, vpn: np.ndarray, kind: np.ndarray, count: np.ndarray) -> None:
    """Replay a trace of accesses.

    Parameters
    ----------
    s : SimState
    t : RefTlb or None
        The TLB model (None, a disabled ``RefTlb`` or a jitted ``TlbState`` of the ``none`` preset:
        no model).
    a : AgeState or None
        Reclaim aging state; a pass runs every ``s.cfg[Cfg.AGING_INTERVAL]`` accesses (0: never).
    vpn : int64, (n,)
        Virtual page numbers.
    kind : uint8, (n,)
        :class:`~fastfault.codes.AccessKind` (0 load, 1 store, 2 instruction fetch).
    count : int, (n,)
        Identical consecutive accesses each row stands for.

    Notes
    -----
    Accesses outside every file VMA (anonymous memory, stack, ...) are TLB accesses only: a miss
    walks and fills a dirty 4K entry. After a successful access the page is mapped with the bits
    the access needs and its translation cached, so the repeats of the row are L1 hits that change
    nothing -- up to the next aging pass, after which the next repeat is an access in full. After
    SIGSEGV/SIGBUS every repeat faults again.
    """
    tlb = _tlb_model(t)
    st = s.stats
    interval = int(s.cfg[Cfg.AGING_INTERVAL])

    def aging_due() -> bool:
        return interval > 0 and int(st[Stat.ACCESSES]) % interval == 0

    for i in range(len(vpn)):
        page = int(vpn[i])
        write = int(kind[i]) == 1
        ifetch = int(kind[i]) == 2
        v = find_vma(s.vmas, page, 0)
        remaining = int(count[i])
        while remaining > 0:
            # One access in full ...
            st[Stat.ACCESSES] += 1
            if v < 0:
                st[Stat.OTHER_ACCESSES] += 1
                if tlb is not None:
                    reftlb.tlb_access(tlb, page, PageKind.PTE_4K, write, ifetch, True)
                settled = True
            else:
                settled = access_file_page(s, tlb, v, page, write, ifetch) == OUTCOME_OK
            remaining -= 1
            if aging_due():
                aging_pass(s, tlb, a)
            if not settled or remaining == 0:
                continue
            # ... then its repeats: L1 hits up to the next aging pass.
            hits = remaining
            if interval > 0:
                hits = min(hits, interval - int(st[Stat.ACCESSES]) % interval)
            st[Stat.ACCESSES] += hits
            st[Stat.OTHER_ACCESSES if v < 0 else Stat.FILE_ACCESSES] += hits
            if tlb is not None:
                reftlb.tlb_add_hits(tlb, hits, write, ifetch)
            remaining -= hits
            if aging_due():
                aging_pass(s, tlb, a)


def flush_tlb(t) -> None:
    """Flush every TLB entry (what the case recorder does between phases by sweeping 128 MiB)."""
    tlb = _tlb_model(t)
    if tlb is not None:
        reftlb.tlb_flush_all(tlb)


def _file_folio_head(s: SimState, vma: Vma, k: int) -> int:
    """Page-cache index of the head of the folio a file PTE at VMA page ``k`` maps, or -1."""
    entry = xa_load(s, vma.file, vma.vm_pgoff + k)
    if entry is None:
        return -1
    return int(s.files[vma.file, FileField.BASE]) + entry[0]


def clear_refs(s: SimState) -> None:
    """``echo 1 > /proc/PID/clear_refs``.

    Notes
    -----
    ``clear_refs_pte_range()``, fs/proc/task_mmu.c, Linux 6.18.5: for a huge PMD and for every
    present PTE of every VMA::

        /* Clear accessed and referenced bits. */
        pmdp_test_and_clear_young(vma, addr, pmd);     /* ptep_test_and_clear_young() */
        folio_test_clear_young(folio);
        folio_clear_referenced(folio);

    Only folios mapped by the walked entries lose ``PG_referenced``; an anon COW page is not a
    page-cache folio. No TLB flush (Linux 6.x flushes only for ``CLEAR_REFS_SOFT_DIRTY``).
    """
    for v in range(s.vmas.shape[0]):
        vma = Vma.of(s, v)
        k = 0
        npages = vma.pages()
        while k < npages:
            vpn = vma.vm_start + k
            end = min(npages, k + 512 - (vpn & 511))
            slot = vma.pmd(vpn)
            pmdv = int(s.pmd[slot])
            if (pmdv & PMD.KIND_MASK) == PMD.HUGE:
                s.pmd[slot] = pmdv & ~PMD.YOUNG
                head = _file_folio_head(s, vma, k)
                if head >= 0:
                    s.pc_flags[head] &= ~PG.REFERENCED & 0xFF
            elif (pmdv & PMD.KIND_MASK) == PMD.TABLE:
                for j in range(k, end):
                    p = vma.pte_base + j
                    e = int(s.pte[p])
                    if not (e & PTE.PRESENT):
                        continue
                    s.pte[p] = e & ~PTE.YOUNG
                    if not (e & PTE.ANON):
                        head = _file_folio_head(s, vma, j)
                        if head >= 0:
                            s.pc_flags[head] &= ~PG.REFERENCED & 0xFF
            k = end
    s.stats[Stat.CLEAR_REFS] += 1


def _pte_young(s: SimState, vma: Vma, k: int, e: int) -> bool:
    """``pte_young(ptep_get(pte))``: for a contpte block, ``contpte_ptep_get()`` ORs the young bits
    of the 16 PTEs."""
    if not (e & PTE.CONT):
        return bool(e & PTE.YOUNG)
    p0 = contpte_block(vma, k)
    return bool((s.pte[p0 : p0 + CONT_PTES] & PTE.YOUNG).any())


def smaps_vma(s: SimState, v: int, present: np.ndarray) -> tuple[int, int, int, int]:
    """``Rss``, ``Referenced``, ``FilePmdMapped`` and ``Anonymous`` of VMA ``v``, in pages.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    present : bool, (vma_pages,)
        Filled like ``/proc/PID/pagemap``'s present bit.

    Notes
    -----
    ``smaps_pte_entry()``/``smaps_pmd_entry()``/``smaps_account()``, fs/proc/task_mmu.c, Linux
    6.18.5::

        if (folio_test_anon(folio))
            mss->anonymous += size;
        mss->resident += size;
        /* Accumulate the size in pages that have been accessed. */
        if (young || folio_test_young(folio) || folio_test_referenced(folio))
            mss->referenced += size;

    ``smaps_pmd_entry`` adds ``HPAGE_PMD_SIZE`` to ``file_thp`` for a page-cache folio.
    """
    vma = Vma.of(s, v)
    npages = vma.pages()
    rss = ref = pmdmapped = anon = 0
    k = 0
    while k < npages:
        vpn = vma.vm_start + k
        end = min(npages, k + 512 - (vpn & 511))
        pmdv = int(s.pmd[vma.pmd(vpn)])
        if (pmdv & PMD.KIND_MASK) == PMD.HUGE:
            n = end - k
            rss += n
            pmdmapped += n
            head = _file_folio_head(s, vma, k)
            if pmdv & PMD.YOUNG or (head >= 0 and s.pc_flags[head] & PG.REFERENCED):
                ref += n
            present[k:end] = True
        else:
            for j in range(k, end):
                e = int(s.pte[vma.pte_base + j])
                present[j] = bool(e & PTE.PRESENT)
                if not (e & PTE.PRESENT):
                    continue
                rss += 1
                if e & PTE.ANON:
                    anon += 1
                    if _pte_young(s, vma, j, e):
                        ref += 1
                    continue
                head = _file_folio_head(s, vma, j)
                if _pte_young(s, vma, j, e) or (head >= 0 and s.pc_flags[head] & PG.REFERENCED):
                    ref += 1
        k = end
    return rss, ref, pmdmapped, anon


def file_mmap_miss(s: SimState, f: int) -> int:
    """``file->f_ra.mmap_miss`` of file row ``f``."""
    return int(s.files[f, FileField.MMAP_MISS])
