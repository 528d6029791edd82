"""The trace loop, the MMU side of an access, ``clear_refs`` and ``smaps``, in plain Python.

Mirrors :mod:`fastfault.fault.replay` (same signatures and encodings). The hardware model is the
simulator's (x86-64 / arm64 page walk: a present entry with the right permissions is used and its
accessed/dirty bits set; without a hardware access flag an old or clean entry faults); the
``/proc`` side is written from ``fs/proc/task_mmu.c`` of Linux 6.18.5.
"""

from __future__ import annotations

import numpy as np

from fastfault.fault.state import PG, PMD, PTE, Cfg, FileField, SimState, Stat, VmaField, VmaFlag
from kernels_py.filemap import VM_FAULT_ERROR
from kernels_py.memory import handle_mm_fault
from kernels_py.pgtable import CONT_PTES, Vma, contpte_block
from kernels_py.readahead import xa_load

__all__ = [
    "OUTCOME_ERROR",
    "OUTCOME_OK",
    "access_file_page",
    "clear_refs",
    "file_mmap_miss",
    "find_vma",
    "replay_trace",
    "smaps_vma",
]

OUTCOME_OK = 0
OUTCOME_ERROR = 1


#: ``Cfg.AGING_INTERVAL`` when this version of the state has it.
_CFG_AGING = int(Cfg.__members__["AGING_INTERVAL"]) if "AGING_INTERVAL" in Cfg.__members__ else None


def _require_no_tlb_no_aging(s: SimState, t) -> None:
    """This reference models the fault path only: the TLB model and reclaim aging must be off."""
    if t is not None and t.ctl[0] != 0:
        raise NotImplementedError("kernels_py.replay models no TLB: build the simulator with tlb=None")
    if _CFG_AGING is not None and s.cfg[_CFG_AGING] != 0:
        raise NotImplementedError("kernels_py.replay models no reclaim aging: use aging_interval=0")


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


def access_file_page(s: SimState, t, v: int, vpn: int, write: bool, ifetch: bool = False) -> int:
    """One access to page ``vpn`` of file VMA ``v``: the page walk, then the fault if needed.

    Parameters
    ----------
    s : SimState
    t : TlbState or None
        The TLB model: must be off (None or the ``none`` preset); see ``kernels_py.tlb``.
    v : int
        VMA row.
    vpn : int
        Virtual page number.
    write, ifetch : bool
        A store; an instruction fetch (read like a load here).

    Returns
    -------
    int
        :data:`OUTCOME_ERROR` when the access ended in SIGSEGV or SIGBUS.

    Notes
    -----
    A store to a VMA without ``VM_WRITE`` fails ``access_error()`` in the arch handler (SIGSEGV,
    no ``handle_mm_fault``, no PGFAULT). Simulator conventions: the first touch of a prefaulted
    PTE (``PTE.UNTOUCHED``) counts ``PREFAULT_USED`` (``PREFAULT_OLD_USED`` if it was old); the
    hardware setting an accessed bit counts ``OLD_TO_YOUNG_HW``.
    """
    _require_no_tlb_no_aging(s, t)
    st = s.stats
    st[Stat.FILE_ACCESSES] += 1
    vma = Vma.of(s, v)
    vpn = int(vpn)
    if write and not (vma.vm_flags & VmaFlag.WRITE):
        st[Stat.SEGV] += 1
        return OUTCOME_ERROR
    hw_af = bool(s.cfg[Cfg.HW_AF])
    slot = vma.pmd(vpn)
    pmdv = int(s.pmd[slot])
    k = vpn - vma.vm_start
    if (pmdv & PMD.KIND_MASK) == PMD.HUGE:
        permitted = not (write and not (pmdv & PMD.WRITE))
        if permitted and (hw_af or (pmdv & PMD.YOUNG and (not write or pmdv & PMD.DIRTY))):
            if not (pmdv & PMD.YOUNG):
                st[Stat.OLD_TO_YOUNG_HW] += 1
            s.pmd[slot] = pmdv | PMD.YOUNG | (PMD.DIRTY if write else 0)
            return OUTCOME_OK
    else:
        p = vma.pte_base + k
        e = int(s.pte[p])
        if e & PTE.PRESENT:
            if e & PTE.UNTOUCHED:
                st[Stat.PREFAULT_USED] += 1
                if not (e & PTE.YOUNG):
                    st[Stat.PREFAULT_OLD_USED] += 1
                e &= ~PTE.UNTOUCHED
                s.pte[p] = e
            permitted = not (write and not (e & PTE.WRITE))
            # without a hardware access flag (and dirty bit) an old / clean entry faults
            if permitted and (hw_af or (e & PTE.YOUNG and (not write or e & PTE.DIRTY))):
                if not (e & PTE.YOUNG):
                    st[Stat.OLD_TO_YOUNG_HW] += 1
                s.pte[p] = e | PTE.YOUNG | (PTE.DIRTY if write else 0)
                if e & PTE.CONT:
                    # the kernel reads a contpte block's young bit gathered over the block
                    # (contpte_ptep_get): one access makes the whole block young
                    p0 = contpte_block(vma, k)
                    s.pte[p0 : p0 + CONT_PTES] |= np.uint8(PTE.YOUNG)
                return OUTCOME_OK
    ret = handle_mm_fault(s, v, k, vpn, write)
    return OUTCOME_ERROR if ret & VM_FAULT_ERROR else OUTCOME_OK


def replay_trace(s: SimState, t, a, vpn: np.ndarray, kind: np.ndarray, count: np.ndarray) -> None:
    """Replay a trace of accesses.

    Parameters
    ----------
    s : SimState
    t : TlbState or None
        The TLB model: must be off (None or the ``none`` preset; ``kernels_py.tlb`` is its reference).
    a : AgeState or None
        Reclaim aging state: aging must be off (``Cfg.AGING_INTERVAL`` 0; see ``kernels_py.reclaim``).
    vpn : int64, (n,)
        Virtual page numbers.
    kind : uint8, (n,)
        :class:`~fastfault.codes.AccessKind` (1 = store; loads and instruction fetches read).
    count : int, (n,)
        Identical consecutive accesses each row stands for.

    Notes
    -----
    After a successful access the page is mapped with the bits the access needs, so the other
    ``count - 1`` accesses of the row are TLB/page-walk hits; after SIGSEGV/SIGBUS every repeat
    faults again.
    """
    _require_no_tlb_no_aging(s, t)
    st = s.stats
    for i in range(len(vpn)):
        c = int(count[i])
        page = int(vpn[i])
        st[Stat.ACCESSES] += c
        v = find_vma(s.vmas, page, 0)
        if v < 0:
            st[Stat.OTHER_ACCESSES] += c
            continue
        write = int(kind[i]) == 1
        if access_file_page(s, t, v, page, write, int(kind[i]) == 2) == OUTCOME_OK:
            st[Stat.FILE_ACCESSES] += c - 1
        else:
            for _ in range(c - 1):
                access_file_page(s, t, v, page, write, int(kind[i]) == 2)


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
    page-cache folio.
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
