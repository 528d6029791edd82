"""Codes and the state record of reclaim aging, without numba.

:class:`AgePolicy`, :class:`Decision`, :class:`AgeStat`, :class:`AgeCfg` and :class:`AgeState` are
what :mod:`fastfault.reclaim` (the jitted aging pass) and its plain-Python mirror
:mod:`kernels_py.reclaim` share. :mod:`fastfault.reclaim` re-exports every name, so
``from fastfault.reclaim import AgeStat`` keeps working; importing this module loads no numba.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np

__all__ = ["AgeCfg", "AgePolicy", "AgeStat", "AgeState", "Decision"]


class AgePolicy(IntEnum):
    """Reclaim flavour (the ``policy`` argument of :func:`age_pass`)."""

    LRU = 0  # classic active/inactive LRU
    MGLRU = 1  # multi-gen LRU: rmap path with the 64-PTE look-around


class Decision(IntEnum):
    """``folio_check_references`` result per folio (``int8`` in ``AgeState.decision``)."""

    NOT_SCANNED = -1  # not a mapped folio head in the last pass
    KEEP = 0
    ACTIVATE = 1
    RECLAIM = 2
    RECLAIM_CLEAN = 3
    PROMOTED = 4  # MGLRU: promoted by another folio's look-around before the pass reached it


class AgeStat(IntEnum):
    """Counters of an aging pass (``AgeState.last``) and cumulative (``AgeState.stats``)."""

    PASSES = 0
    # Census of the page tables at the start of the pass (every VMA, file PTEs only).
    MAPPED_PTES = 1
    YOUNG_PTES = 2
    FALSE_YOUNG = 3  # young and UNTOUCHED: installed young by prefault, never accessed
    OLD_UNTOUCHED = 4  # old and UNTOUCHED: installed old by prefault, never accessed
    PREFAULT_OLD_LATER_ACCESSED = 5  # seen OLD_UNTOUCHED by an earlier pass, accessed since
    HUGE_PMDS = 6
    YOUNG_PMDS = 7
    # Decisions (one per mapped folio).
    FOLIOS = 8  # mapped folios examined
    REFERENCED_VMAS = 9  # sum of folio_referenced() results
    KEEP = 10  # KEEP + Decision code: one counter per decision
    ACTIVATE = 11
    RECLAIM = 12
    RECLAIM_CLEAN = 13
    PROMOTED = 14
    ACTIVATE_EXEC = 15  # ACTIVATEd only because a referencing VMA is VM_EXEC
    # What the decisions mean for the pages mapped (PTE pages; a huge PMD counts its 512 as used).
    PROTECTED_UNTOUCHED = 16  # UNTOUCHED pages of KEEP/ACTIVATE/PROMOTED folios (never-used prefault kept)
    PROTECTED_USED = 17
    RECLAIM_UNTOUCHED = 18  # UNTOUCHED pages of RECLAIM/RECLAIM_CLEAN folios
    RECLAIM_USED = 19  # accessed pages the policy would evict
    # Accessed-bit clearing.
    YOUNG_CLEARED = 20  # via ptep/pmdp_clear_flush_young (listed in cleared_vpn)
    LOOKAROUND_CALLS = 21
    LOOKAROUND_CLEARED = 22  # via ptep_test_and_clear_young in the look-around (no flush)
    LOOKAROUND_PROMOTED = 23
    # Eviction (evict=True).
    EVICTED_FOLIOS = 24
    EVICTED_PAGES = 25  # page-cache pages dropped (shadow entries left)
    PTES_ZAPPED = 26
    PMDS_ZAPPED = 27
    EVICT_SKIPPED_DIRTY = 28
    EVICT_SKIPPED_LOCKED = 29
    VPN_LIST_OVERFLOW = 30  # vpns not listed because cleared_vpn / unmapped_vpn were full
    NFIELDS = 31


class AgeCfg(IntEnum):
    """Fields of ``AgeState.cfg``."""

    EVICT = 0
    NFIELDS = 1


class AgeState(NamedTuple):
    """State of the aging passes over one :class:`~fastfault.fault.state.SimState`.

    Attributes
    ----------
    stats : int64, (AgeStat.NFIELDS,)
        Cumulative counters.
    last : int64, (AgeStat.NFIELDS,)
        Counters of the last pass.
    decision : int8, (n_cache_pages,)
        :class:`Decision` of the last pass, on folio head pages (same index as ``s.pc_order``).
    seen_old : uint8, (n_vma_pages,)
        Per PTE: old and UNTOUCHED at the last pass (for ``PREFAULT_OLD_LATER_ACCESSED``).
    promoted : uint8, (n_cache_pages,)
        Scratch: folio heads promoted by look-around during the current pass.
    cleared_vpn : int64, (capacity,)
        Virtual pages whose accessed bit the last pass cleared with a flushing primitive (a huge
        PMD is listed once, by its first page); ``nvpn[0]`` of them are valid.
    unmapped_vpn : int64, (capacity,)
        Virtual pages the last pass unmapped (``evict=True``); ``nvpn[1]`` valid.
    nvpn : int64, (2,)
    cfg : int64, (AgeCfg.NFIELDS,)
    file_vmas : int64, (n_vmas,)
        Scratch: the VMA rows mapping the file being aged.
    """

    stats: np.ndarray
    last: np.ndarray
    decision: np.ndarray
    seen_old: np.ndarray
    promoted: np.ndarray
    cleared_vpn: np.ndarray
    unmapped_vpn: np.ndarray
    nvpn: np.ndarray
    cfg: np.ndarray
    file_vmas: np.ndarray
