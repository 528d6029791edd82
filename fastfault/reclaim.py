"""Reclaim aging over the simulator state: who keeps the accessed bits honest.

One :func:`age_pass` looks at every mapped page-cache folio the way ``shrink_folio_list``
would if the folio sat at the tail of the inactive list: ``folio_referenced`` (rmap walk,
test-and-clear young) then ``folio_check_references`` (KEEP / ACTIVATE / RECLAIM /
RECLAIM_CLEAN). By default it is a *census*: decisions are recorded and counted, nothing is
evicted. With ``evict=True`` (:func:`new_age_state`) clean RECLAIM / RECLAIM_CLEAN folios are
unmapped and dropped from the page cache, leaving workingset shadow entries.

The replay loop calls ``age_pass(s, a, policy)`` every K accesses. Clearing an accessed bit
needs a TLB flush on arm64 (``ptep_clear_flush_young`` issues a TLBI) but not on x86 (no flush:
a TLB-resident translation keeps being used without setting A again); unmapping needs one
everywhere. ``age_pass`` therefore only *collects* the virtual pages concerned, in the
preallocated ``a.cleared_vpn`` / ``a.unmapped_vpn`` (counts in ``a.nvpn``), and the caller flushes.

Notes
-----
Models, from the design notes' ``kernel-fault-path.md`` section 5.6 (mm/vmscan.c, mm/rmap.c,
Linux v6.x):

- ``folio_referenced``: for every VMA mapping the folio, every PTE (or huge PMD) mapping it is
  test-and-cleared young; a VMA counts once however many of its PTEs were young; VMAs without
  recency (``VM_SEQ_READ`` / ``VM_RAND_READ``, ``vma_has_recency``) are skipped entirely -- their
  young bits stay set. Anonymous COW copies in private mappings are not the file folio and are
  ignored. VM_LOCKED is not modelled.
- arm64 contpte (v6.9+): test-and-clear young on a PTE with the contiguous bit clears the
  accessed flag of the whole 16-PTE block and returns the OR (``contpte_ptep_test_and_clear_young``);
  the flush covers the block, so all of its PTEs are listed.
- ``folio_check_references``: PG_referenced is tested and cleared; with referencing VMAs it is
  set again and the folio is ACTIVATEd if it was already set, if more than one VMA referenced
  it, or if a referencing VMA is VM_EXEC (file-backed); else KEEP. Without references:
  RECLAIM_CLEAN if PG_referenced was set, else RECLAIM.
- MGLRU (``CONFIG_LRU_GEN``): a young PTE found through the rmap triggers
  ``lru_gen_look_around``: in the window ``[max(addr & PMD_MASK, vm_start), min(addr | ~PMD_MASK,
  vm_end - 1) + 1)`` cut to MIN_LRU_BATCH = 64 pages (anchored at the window edge within 32 pages
  of it, else centred on addr), every young PTE is test-and-cleared *without* a TLB flush
  (``ptep_test_and_clear_young``) and its folio promoted to the youngest generation. In this
  census a promoted folio that the pass has not reached yet is decided PROMOTED and not rmap-
  walked (it left the eviction candidates). Huge PMDs are cleared with the flushing primitive.
  Page-table walks of the MGLRU aging path (``walk_mm``) are not modelled.

Every pass examines every mapped folio (files in table order, folios by index); it does not
keep LRU lists, so ACTIVATEd folios are examined again on the next pass. Dirty folios (PG_dirty,
or a dirty PTE/PMD mapping them) and locked ones are left for writeback, never evicted.
"""

from __future__ import annotations

import numpy as np

from fastfault._jit import jit
from fastfault.errors import InputError
from fastfault.fault.state import PG, PMD, PTE, FileField, SimState, Stat, VmaField, VmaFlag
from fastfault.reclaim_codes import AgeCfg, AgePolicy, AgeStat, AgeState, Decision

__all__ = [
    "AgeCfg",
    "AgePolicy",
    "AgeStat",
    "AgeState",
    "Decision",
    "age",
    "age_pass",
    "age_stats",
    "new_age_state",
]


POLICY_NAMES = {"lru": AgePolicy.LRU, "classic": AgePolicy.LRU, "mglru": AgePolicy.MGLRU}


# Plain integers for the jitted code.
_START = int(VmaField.START)
_PAGES = int(VmaField.PAGES)
_PGOFF = int(VmaField.PGOFF)
_FILE = int(VmaField.FILE)
_FLAGS = int(VmaField.FLAGS)
_PTE_BASE = int(VmaField.PTE_BASE)
_PMD_BASE = int(VmaField.PMD_BASE)
_F_BASE = int(FileField.BASE)
_F_CAP = int(FileField.CAPACITY)
_NO_RECENCY = int(VmaFlag.SEQ_READ) | int(VmaFlag.RAND_READ)
_VM_EXEC = int(VmaFlag.EXEC)
_PRESENT = int(PTE.PRESENT)
_YOUNG = int(PTE.YOUNG)
_PDIRTY = int(PTE.DIRTY)
_ANON = int(PTE.ANON)
_UNTOUCHED = int(PTE.UNTOUCHED)
_CONT = int(PTE.CONT)
_NOT_YOUNG = 0xFF ^ _YOUNG
_PMD_KIND = int(PMD.KIND_MASK)
_PMD_HUGE = int(PMD.HUGE)
_PMD_NONE = int(PMD.NONE)
_PMD_YOUNG = int(PMD.YOUNG)
_PMD_DIRTY = int(PMD.DIRTY)
_NOT_PMD_YOUNG = 0xFF ^ _PMD_YOUNG
_PG_REF = int(PG.REFERENCED)
_PG_DIRTY = int(PG.DIRTY)
_PG_LOCKED = int(PG.LOCKED)
_PG_HWPOISON = int(PG.HWPOISON)
_PG_SHADOW = int(PG.SHADOW)
_MM_FILEPAGES = int(Stat.MM_FILEPAGES)
_MGLRU = int(AgePolicy.MGLRU)
_KEEP = int(Decision.KEEP)
_ACTIVATE = int(Decision.ACTIVATE)
_RECLAIM = int(Decision.RECLAIM)
_RECLAIM_CLEAN = int(Decision.RECLAIM_CLEAN)
_PROMOTED = int(Decision.PROMOTED)
_EVICT = int(AgeCfg.EVICT)
_LOOKAROUND_BATCH = 64  # MIN_LRU_BATCH = BITS_PER_LONG

_A_PASSES = int(AgeStat.PASSES)
_A_MAPPED = int(AgeStat.MAPPED_PTES)
_A_YOUNG = int(AgeStat.YOUNG_PTES)
_A_FALSE_YOUNG = int(AgeStat.FALSE_YOUNG)
_A_OLD_UNTOUCHED = int(AgeStat.OLD_UNTOUCHED)
_A_OLD_LATER = int(AgeStat.PREFAULT_OLD_LATER_ACCESSED)
_A_HUGE = int(AgeStat.HUGE_PMDS)
_A_YOUNG_PMDS = int(AgeStat.YOUNG_PMDS)
_A_FOLIOS = int(AgeStat.FOLIOS)
_A_REFVMAS = int(AgeStat.REFERENCED_VMAS)
_A_KEEP = int(AgeStat.KEEP)
_A_ACTIVATE_EXEC = int(AgeStat.ACTIVATE_EXEC)
_A_PROT_UNTOUCHED = int(AgeStat.PROTECTED_UNTOUCHED)
_A_PROT_USED = int(AgeStat.PROTECTED_USED)
_A_RECL_UNTOUCHED = int(AgeStat.RECLAIM_UNTOUCHED)
_A_RECL_USED = int(AgeStat.RECLAIM_USED)
_A_CLEARED = int(AgeStat.YOUNG_CLEARED)
_A_LA_CALLS = int(AgeStat.LOOKAROUND_CALLS)
_A_LA_CLEARED = int(AgeStat.LOOKAROUND_CLEARED)
_A_LA_PROMOTED = int(AgeStat.LOOKAROUND_PROMOTED)
_A_EV_FOLIOS = int(AgeStat.EVICTED_FOLIOS)
_A_EV_PAGES = int(AgeStat.EVICTED_PAGES)
_A_PTES_ZAPPED = int(AgeStat.PTES_ZAPPED)
_A_PMDS_ZAPPED = int(AgeStat.PMDS_ZAPPED)
_A_SKIP_DIRTY = int(AgeStat.EVICT_SKIPPED_DIRTY)
_A_SKIP_LOCKED = int(AgeStat.EVICT_SKIPPED_LOCKED)
_A_OVERFLOW = int(AgeStat.VPN_LIST_OVERFLOW)


# --------------------------------------------------------------------------------------------
# Allocation and the Python layer
# --------------------------------------------------------------------------------------------


def new_age_state(s: SimState, evict: bool = False, capacity: int | None = None) -> AgeState:
    """Allocate the aging state for simulator state ``s``.

    Parameters
    ----------
    s : SimState
    evict : bool
        Unmap and drop clean RECLAIM / RECLAIM_CLEAN folios (default: census only).
    capacity : int, optional
        Length of ``cleared_vpn`` and ``unmapped_vpn``. The default (every PTE plus two huge
        PMDs per VMA and one per 2 MiB) cannot overflow; with a smaller one, vpns beyond it are
        counted in ``VPN_LIST_OVERFLOW`` and the caller should flush the whole TLB.

    Returns
    -------
    AgeState

    Raises
    ------
    InputError
        ``s`` is not a SimState, or a negative capacity.
    """
    if not isinstance(s, SimState):
        raise InputError(f"aging: expected a SimState, got {type(s).__name__}")
    npte = s.pte.shape[0]
    nvmas = s.vmas.shape[0]
    if capacity is None:
        capacity = npte + npte // 512 + 2 * nvmas + 1
    if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 0:
        raise InputError(f"aging: capacity {capacity!r} is not a non-negative integer")
    ncache = s.pc_order.shape[0]
    cfg = np.zeros(AgeCfg.NFIELDS, dtype=np.int64)
    cfg[AgeCfg.EVICT] = int(bool(evict))
    return AgeState(
        stats=np.zeros(AgeStat.NFIELDS, dtype=np.int64),
        last=np.zeros(AgeStat.NFIELDS, dtype=np.int64),
        decision=np.full(ncache, -1, dtype=np.int8),
        seen_old=np.zeros(npte, dtype=np.uint8),
        promoted=np.zeros(ncache, dtype=np.uint8),
        cleared_vpn=np.zeros(int(capacity), dtype=np.int64),
        unmapped_vpn=np.zeros(int(capacity), dtype=np.int64),
        nvpn=np.zeros(2, dtype=np.int64),
        cfg=cfg,
        file_vmas=np.zeros(nvmas, dtype=np.int64),
    )


def age_stats(a: AgeState, last: bool = False) -> dict[str, int]:
    """Counters by lower-case :class:`AgeStat` name: cumulative, or of the last pass."""
    vec = a.last if last else a.stats
    return {m.name.lower(): int(vec[m]) for m in AgeStat if m is not AgeStat.NFIELDS}


def age(s: SimState, a: AgeState, policy: str | int = "lru") -> dict[str, int]:
    """Run one aging pass (validating wrapper of :func:`age_pass`).

    Parameters
    ----------
    s : SimState
        The simulator state (``Simulator.state``); modified in place.
    a : AgeState
        From :func:`new_age_state` for this ``s``.
    policy : str or int
        ``lru`` (or ``classic``), ``mglru``, or an :class:`AgePolicy` code.

    Returns
    -------
    dict of str to int
        The counters of this pass (:func:`age_stats` with ``last=True``).

    Raises
    ------
    InputError
        Unknown policy, or ``a`` was built for a state of another shape.
    """
    if isinstance(policy, str):
        if policy not in POLICY_NAMES:
            raise InputError(f"aging: policy {policy!r} is not one of {', '.join(POLICY_NAMES)}")
        code = int(POLICY_NAMES[policy])
    else:
        if int(policy) not in {int(p) for p in AgePolicy}:
            raise InputError(f"aging: policy code {policy!r} is not an AgePolicy")
        code = int(policy)
    if a.seen_old.shape != s.pte.shape or a.decision.shape != s.pc_order.shape:
        raise InputError("aging: the AgeState was built for another simulator state")
    if a.file_vmas.shape[0] != s.vmas.shape[0]:
        raise InputError("aging: the AgeState was built for another simulator state")
    age_pass(s, a, code)
    return age_stats(a, last=True)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@jit
def _record(a, which, vpn):
    """Append ``vpn`` to the cleared (0) or unmapped (1) list."""
    n = a.nvpn[which]
    buf = a.cleared_vpn if which == 0 else a.unmapped_vpn
    if n < buf.shape[0]:
        buf[n] = vpn
        a.nvpn[which] = n + 1
    else:
        a.last[_A_OVERFLOW] += 1


@jit
def _file_pte(e):
    return (e & _PRESENT) != 0 and (e & _ANON) == 0


@jit
def _clear_young(s, a, v, k, vpn, flush, stat):
    """Test-and-clear young of the PTE of VMA ``v`` page ``k``; contpte clears the whole block.

    ``flush``: the flushing primitive (``ptep_clear_flush_young``): list what it flushes. Returns
    True when a young bit was found.
    """
    base = s.vmas[v, _PTE_BASE]
    p = base + k
    e = s.pte[p]
    if e & _CONT:
        kb = k - (vpn & 15)
        if kb >= 0 and kb + 16 <= s.vmas[v, _PAGES]:
            young = False
            for i in range(16):
                q = s.pte[base + kb + i]
                if (q & _CONT) and _file_pte(q) and (q & _YOUNG):
                    young = True
            if young:
                for i in range(16):
                    q = s.pte[base + kb + i]
                    if (q & _CONT) and _file_pte(q):
                        if q & _YOUNG:
                            s.pte[base + kb + i] = q & _NOT_YOUNG
                            a.last[stat] += 1
                        if flush:
                            _record(a, 0, vpn - (vpn & 15) + i)
            return young
    if e & _YOUNG:
        s.pte[p] = e & _NOT_YOUNG
        a.last[stat] += 1
        if flush:
            _record(a, 0, vpn)
        return True
    return False


@jit
def _look_around(s, a, v, vpn0, fbase, head):
    """``lru_gen_look_around``: clear young PTEs near ``vpn0`` (no flush), promote their folios."""
    a.last[_A_LA_CALLS] += 1
    start = s.vmas[v, _START]
    lo = max(vpn0 & ~511, start)
    hi = min(vpn0 | 511, start + s.vmas[v, _PAGES] - 1) + 1
    half = _LOOKAROUND_BATCH // 2
    if hi - lo > _LOOKAROUND_BATCH:
        if vpn0 - lo < half:
            hi = lo + _LOOKAROUND_BATCH
        elif hi - vpn0 < half:
            lo = hi - _LOOKAROUND_BATCH
        else:
            lo = vpn0 - half
            hi = vpn0 + half
    base = s.vmas[v, _PTE_BASE]
    pgoff0 = s.vmas[v, _PGOFF]
    for vpn in range(lo, hi):
        k = vpn - start
        e = s.pte[base + k]
        if not _file_pte(e) or not (e & _YOUNG):
            continue
        _clear_young(s, a, v, k, vpn, False, _A_LA_CLEARED)
        pgoff = pgoff0 + k
        order = np.int64(s.pc_order[fbase + pgoff])
        if order < 0:
            continue
        h = fbase + (pgoff & ~((1 << order) - 1))
        if h != head and a.promoted[h] == 0 and a.decision[h] < 0:
            a.promoted[h] = 1
            a.last[_A_LA_PROMOTED] += 1


@jit
def _evict_folio(s, a, nv, fbase, head, n, cap):
    """Unmap the folio from every VMA and replace it by shadow entries."""
    for j in range(nv):
        v = a.file_vmas[j]
        pg0 = s.vmas[v, _PGOFF]
        lo = max(head, pg0)
        hi = min(head + n, pg0 + s.vmas[v, _PAGES])
        start = s.vmas[v, _START]
        base = s.vmas[v, _PTE_BASE]
        k = lo - pg0
        while k < hi - pg0:
            vpn = start + k
            slot = s.vmas[v, _PMD_BASE] + (vpn >> 9) - (start >> 9)
            if (s.pmd[slot] & _PMD_KIND) == _PMD_HUGE:
                s.pmd[slot] = _PMD_NONE
                s.stats[_MM_FILEPAGES] -= 512
                a.last[_A_PMDS_ZAPPED] += 1
                _record(a, 1, vpn & ~511)
                k += 512 - (vpn & 511)
                continue
            if _file_pte(s.pte[base + k]):
                s.pte[base + k] = 0
                s.stats[_MM_FILEPAGES] -= 1
                a.last[_A_PTES_ZAPPED] += 1
                _record(a, 1, vpn)
            k += 1
    keep = np.uint8(_PG_HWPOISON)
    for i in range(n):
        if head + i < cap:
            s.pc_order[fbase + head + i] = -1
            s.pc_flags[fbase + head + i] = (s.pc_flags[fbase + head + i] & keep) | _PG_SHADOW
    a.last[_A_EV_FOLIOS] += 1
    a.last[_A_EV_PAGES] += n


@jit
def _age_folio(s, a, policy, nv, fbase, head, n, cap):
    """``folio_referenced`` + ``folio_check_references`` for the folio at file index ``head``."""
    h = fbase + head
    mglru = policy == _MGLRU
    mapped = False
    referenced = 0
    vmflags = 0
    untouched = 0
    used = 0
    dirty = False
    promoted = mglru and a.promoted[h] != 0
    for j in range(nv):
        v = a.file_vmas[j]
        pg0 = s.vmas[v, _PGOFF]
        lo = max(head, pg0)
        hi = min(head + n, pg0 + s.vmas[v, _PAGES])
        if lo >= hi:
            continue
        flags = s.vmas[v, _FLAGS]
        recency = (flags & _NO_RECENCY) == 0 and not promoted
        start = s.vmas[v, _START]
        base = s.vmas[v, _PTE_BASE]
        young_here = False
        k = lo - pg0
        while k < hi - pg0:
            vpn = start + k
            slot = s.vmas[v, _PMD_BASE] + (vpn >> 9) - (start >> 9)
            pmdv = s.pmd[slot]
            if (pmdv & _PMD_KIND) == _PMD_HUGE:
                step = min(512 - (vpn & 511), hi - pg0 - k)
                mapped = True
                used += step
                if pmdv & _PMD_DIRTY:
                    dirty = True
                if recency and (pmdv & _PMD_YOUNG):
                    s.pmd[slot] = pmdv & _NOT_PMD_YOUNG
                    a.last[_A_CLEARED] += 1
                    _record(a, 0, vpn & ~511)
                    young_here = True
                k += step
                continue
            e = s.pte[base + k]
            if _file_pte(e):
                mapped = True
                if e & _UNTOUCHED:
                    untouched += 1
                else:
                    used += 1
                if e & _PDIRTY:
                    dirty = True
                if recency:
                    if mglru:
                        if e & _YOUNG:
                            _look_around(s, a, v, vpn, fbase, h)
                            young_here = True
                    elif _clear_young(s, a, v, k, vpn, True, _A_CLEARED):
                        young_here = True
            k += 1
        if young_here:
            referenced += 1
            vmflags |= flags
    if not mapped:
        return
    a.last[_A_FOLIOS] += 1
    if promoted:
        d = _PROMOTED
    else:
        a.last[_A_REFVMAS] += referenced
        was_referenced = (s.pc_flags[h] & _PG_REF) != 0
        s.pc_flags[h] &= np.uint8(0xFF ^ _PG_REF)
        if referenced > 0:
            s.pc_flags[h] |= np.uint8(_PG_REF)
            if was_referenced or referenced > 1:
                d = _ACTIVATE
            elif vmflags & _VM_EXEC:
                d = _ACTIVATE
                a.last[_A_ACTIVATE_EXEC] += 1
            else:
                d = _KEEP
        elif was_referenced:
            d = _RECLAIM_CLEAN
        else:
            d = _RECLAIM
    a.decision[h] = d
    a.last[_A_KEEP + d] += 1
    if d == _RECLAIM or d == _RECLAIM_CLEAN:
        a.last[_A_RECL_UNTOUCHED] += untouched
        a.last[_A_RECL_USED] += used
        if a.cfg[_EVICT] != 0:
            if s.pc_flags[h] & _PG_LOCKED:
                a.last[_A_SKIP_LOCKED] += 1
            elif dirty or (s.pc_flags[h] & _PG_DIRTY):
                a.last[_A_SKIP_DIRTY] += 1
            else:
                _evict_folio(s, a, nv, fbase, head, n, cap)
    else:
        a.last[_A_PROT_UNTOUCHED] += untouched
        a.last[_A_PROT_USED] += used


@jit
def _census(s, a):
    """Page-table census at the start of a pass (every VMA, file PTEs and huge PMDs)."""
    last = a.last
    for p in range(s.pte.shape[0]):
        e = s.pte[p]
        if not _file_pte(e):
            a.seen_old[p] = 0
            continue
        last[_A_MAPPED] += 1
        young = (e & _YOUNG) != 0
        untouched = (e & _UNTOUCHED) != 0
        if young:
            last[_A_YOUNG] += 1
            if untouched:
                last[_A_FALSE_YOUNG] += 1
        elif untouched:
            last[_A_OLD_UNTOUCHED] += 1
        if a.seen_old[p] != 0 and not untouched:
            last[_A_OLD_LATER] += 1
        a.seen_old[p] = 1 if (untouched and not young) else 0
    for i in range(s.pmd.shape[0]):
        if (s.pmd[i] & _PMD_KIND) == _PMD_HUGE:
            last[_A_HUGE] += 1
            if s.pmd[i] & _PMD_YOUNG:
                last[_A_YOUNG_PMDS] += 1


@jit
def age_pass(s, a, policy):
    """One reclaim aging pass over every mapped page-cache folio.

    Parameters
    ----------
    s : SimState
        Simulator state: PTE/PMD young bits and PG_referenced are updated; with ``evict`` set in
        ``a.cfg``, PTEs/PMDs are zapped, ``MM_FILEPAGES`` lowered and page-cache slots replaced by
        shadow entries.
    a : AgeState
        From :func:`new_age_state`. ``a.last`` is reset and then holds this pass's counters (also
        added to ``a.stats``); ``a.decision`` the decision per folio head.
    policy : int
        :class:`AgePolicy` code (0 classic LRU, 1 MGLRU).

    Returns
    -------
    int
        ``a.nvpn[0]``: how many virtual pages ``a.cleared_vpn`` lists (accessed bits cleared with
        a flushing primitive -- flush them on arm64, not on x86). ``a.nvpn[1]`` pages in
        ``a.unmapped_vpn`` were unmapped (flush them on every architecture).
    """
    a.last[:] = 0
    a.nvpn[:] = 0
    a.decision[:] = -1
    a.promoted[:] = 0
    a.last[_A_PASSES] = 1
    _census(s, a)
    nvmas = s.vmas.shape[0]
    for f in range(s.files.shape[0]):
        nv = np.int64(0)  # not a literal 0: typing would compile _age_folio for Literal[int](0) too
        for v in range(nvmas):
            if s.vmas[v, _FILE] == f:
                a.file_vmas[nv] = v
                nv += 1
        if nv == 0:
            continue
        fbase = s.files[f, _F_BASE]
        cap = s.files[f, _F_CAP]
        idx = 0
        while idx < cap:
            order = np.int64(s.pc_order[fbase + idx])
            if order < 0:
                idx += 1
                continue
            n = 1 << order
            head = idx & ~(n - 1)
            _age_folio(s, a, policy, nv, fbase, head, n, cap)
            idx = head + n
    for i in range(a.stats.shape[0]):
        a.stats[i] += a.last[i]
    return a.nvpn[0]
