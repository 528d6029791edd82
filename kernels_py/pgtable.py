"""PTE and PMD setters of ``mm/memory.c``, re-derived in plain Python from the kernel text.

This is the oracle side of the differential tests: every function here was written from the Linux
6.18.5 source (the upstream 6.18.5 release tarball), with the v6.6 and v5.12 differences as profile branches, and works
on the same :class:`~fastfault.fault.state.SimState` arrays as :mod:`fastfault.fault.pgtable`.

Encodings shared with the jitted code (see :mod:`fastfault.fault.state`):

* an address is a virtual page number (``vpn`` = ``vmf->address >> PAGE_SHIFT``); ``k`` is the page
  index inside the VMA (``(address - vm_start) >> PAGE_SHIFT``);
* a folio is named by its head's absolute index in the page-cache arrays (``cache_head``) or by its
  head's file index (``head``) and its ``order``;
* ``s.vmf[VMF_PREALLOC]`` is ``vmf->prealloc_pte`` of the fault in progress.

Notes
-----
Kernel functions: ``set_pte_range()`` (v6.6+; ``do_set_pte()`` in v5.12), ``do_set_pmd()``,
``thp_vma_suitable_order()`` (``include/linux/huge_mm.h``; ``transhuge_vma_suitable()`` before
v6.8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastfault.fault.state import (
    HPAGE_PMD_NR,
    HPAGE_PMD_ORDER,
    PG,
    PMD,
    PTE,
    PTRS_PER_PTE,
    Cfg,
    FileField,
    Profile,
    SimState,
    Stat,
    VmaField,
    VmaFlag,
)

__all__ = [
    "VM_FAULT_FALLBACK",
    "Vma",
    "Vmf",
    "do_set_pmd",
    "pmd_slot",
    "set_pte_range",
    "thp_vma_suitable_order",
]

#: ``VM_FAULT_FALLBACK`` as :mod:`fastfault.fault.pgtable` spells it (``do_set_pmd`` returns it or 0).
VM_FAULT_FALLBACK = 1

# FAULT_FLAG_* of include/linux/mm_types.h (the ones the simulated fault path looks at).
FAULT_FLAG_WRITE = 1 << 0
FAULT_FLAG_TRIED = 1 << 5
FAULT_FLAG_VMA_LOCK = 1 << 12

#: ``s.vmf`` slots (the jitted code's layout): pending ``vmf->prealloc_pte`` and fault-around's
#: local ``mmap_miss``.
VMF_PREALLOC = 0
VMF_MMAP_MISS = 1

#: Reference-only bit in the VMA table's ``FLAGS`` column: ``vma->anon_vma != NULL``. The v6.6
#: per-VMA-lock path needs it (``do_wp_page``: ``(vmf->flags & FAULT_FLAG_VMA_LOCK) &&
#: !vma->anon_vma`` -> retry); the jitted code ignores unknown bits.
VM_ANON_VMA_PREPARED = int(getattr(VmaFlag, "ANON_VMA", 1 << 16))

#: arm64 ``CONT_PTES`` with 4 KiB pages: a contpte block is 16 PTEs (64 KiB), aligned virtually and
#: physically.
CONT_PTES = 16

#: v6.6 as released had ``prefault = in_range(vmf->address, addr, nr * PAGE_SIZE)`` in
#: ``set_pte_range()`` (3bd786f76de2, inverted; fixed by 4cd7ba16a0af and backported to 6.6.y).
#: The profile models the fixed 6.6.y kernel unless this is set.
V6_6_INVERTED_PREFAULT = False

_PTE_PMD_NR = HPAGE_PMD_NR
_F_START, _F_PAGES, _F_PGOFF, _F_FLAGS, _F_FILE, _F_PTE_BASE, _F_PMD_BASE = (
    int(VmaField.START),
    int(VmaField.PAGES),
    int(VmaField.PGOFF),
    int(VmaField.FLAGS),
    int(VmaField.FILE),
    int(VmaField.PTE_BASE),
    int(VmaField.PMD_BASE),
)
#: ``Cfg.CONTPTE`` when this version of the state has it (arm64 contpte, v6.9+).
_CFG_CONTPTE = int(Cfg.__members__["CONTPTE"]) if "CONTPTE" in Cfg.__members__ else None
assert PTRS_PER_PTE == _PTE_PMD_NR  # x86-64 / arm64 with 4 KiB pages


@dataclass(frozen=True, slots=True)
class Vma:
    """The ``struct vm_area_struct`` fields the fault path reads, from one row of ``s.vmas``.

    Addresses are page numbers: ``vm_start``/``vm_end`` are ``vma->vm_start >> PAGE_SHIFT`` and
    ``vma->vm_end >> PAGE_SHIFT``.
    """

    row: int
    vm_start: int
    vm_end: int
    vm_pgoff: int
    vm_flags: int
    file: int
    pte_base: int
    pmd_base: int

    @classmethod
    def of(cls, s: SimState, v: int) -> Vma:
        r = s.vmas[v].tolist()
        start = r[_F_START]
        return cls(
            int(v),
            start,
            start + r[_F_PAGES],
            r[_F_PGOFF],
            r[_F_FLAGS],
            r[_F_FILE],
            r[_F_PTE_BASE],
            r[_F_PMD_BASE],
        )

    def pages(self) -> int:
        """``vma_pages(vma)``."""
        return self.vm_end - self.vm_start

    def linear_page_index(self, address: int) -> int:
        """``linear_page_index(vma, address)``: the file page mapped at page ``address``."""
        return address - self.vm_start + self.vm_pgoff

    def ptep(self, address: int) -> int:
        """Index into ``s.pte`` of the PTE mapping page ``address`` (``pte_offset_map``)."""
        return self.pte_base + address - self.vm_start

    def pmd(self, address: int) -> int:
        """Index into ``s.pmd`` of the PMD covering page ``address`` (``pmd_offset``)."""
        return self.pmd_base + (address >> 9) - (self.vm_start >> 9)


@dataclass(slots=True)
class Vmf:
    """``struct vm_fault``: the fault being handled.

    ``address`` is the faulting page number, ``pgoff`` ``linear_page_index(vma, address)``. The
    pre-allocated PTE table lives in ``s.vmf[VMF_PREALLOC]`` so that it survives between the
    helpers, which keep the jitted code's signatures.
    """

    s: SimState
    vma: Vma
    address: int
    pgoff: int
    flags: int = 0

    @classmethod
    def at(cls, s: SimState, v: int, vpn: int, flags: int = 0) -> Vmf:
        vma = Vma.of(s, v)
        return cls(s, vma, int(vpn), vma.linear_page_index(int(vpn)), flags)

    @property
    def prealloc_pte(self) -> bool:
        return bool(self.s.vmf[VMF_PREALLOC])

    @prealloc_pte.setter
    def prealloc_pte(self, value: bool) -> None:
        self.s.vmf[VMF_PREALLOC] = 1 if value else 0

    @property
    def pmd(self) -> int:
        """``vmf->pmd``: index into ``s.pmd``."""
        return self.vma.pmd(self.address)


# --- page-table predicates --------------------------------------------------------------------


def profile_of(s: SimState) -> int:
    """The simulated kernel version (:class:`~fastfault.fault.state.Profile`)."""
    return int(s.cfg[Cfg.PROFILE])


def pmd_none(s: SimState, slot: int) -> bool:
    """``pmd_none(*pmd)``: neither a PTE table nor a huge mapping."""
    return (int(s.pmd[slot]) & PMD.KIND_MASK) == PMD.NONE


def pmd_trans_huge(s: SimState, slot: int) -> bool:
    """``pmd_trans_huge(*pmd)``: the PMD maps a PMD-size folio."""
    return (int(s.pmd[slot]) & PMD.KIND_MASK) == PMD.HUGE


def pmd_install(s: SimState, vmf: Vmf) -> None:
    """``pmd_install(mm, pmd, &vmf->prealloc_pte)`` / ``pte_alloc()``: a PTE table appears."""
    s.pmd[vmf.pmd] = PMD.TABLE
    s.stats[Stat.PTE_TABLES] += 1


def arch_wants_old_prefaulted_pte(s: SimState) -> bool:
    """arm64: ``#define arch_wants_old_prefaulted_pte cpu_has_hw_af``; every other arch: false."""
    return bool(s.cfg[Cfg.OLD_PREFAULT])


# --- arm64 contpte (arch/arm64/mm/contpte.c, v6.9+) ---------------------------------------------


def contpte_enabled(s: SimState) -> bool:
    """``CONFIG_ARM64_CONTPTE`` on an arm64 kernel of v6.9 or later (``Cfg.CONTPTE``)."""
    return _CFG_CONTPTE is not None and bool(s.cfg[_CFG_CONTPTE])


def _file_folio(s: SimState, vma: Vma, k: int) -> tuple[int, int] | None:
    """(head, order) of the page-cache folio at VMA page ``k``, file indices."""
    f = vma.file
    pg = vma.vm_pgoff + k
    if pg >= int(s.files[f, FileField.CAPACITY]):
        return None
    order = int(s.pc_order[int(s.files[f, FileField.BASE]) + pg])
    if order < 0:
        return None
    return pg & ~((1 << order) - 1), order


def contpte_set_ptes(s: SimState, vma: Vma, k0: int, nr: int) -> None:
    """``contpte_set_ptes()``: the 16-page blocks of a batch aligned virtually and physically get PTE_CONT.

    Notes
    -----
    ``arch/arm64/mm/contpte.c`` (v6.9+)::

        do {
            next = pte_cont_addr_end(addr, end);
            nr = (next - addr) >> PAGE_SHIFT;
            pte = pfn_pte(pfn, prot);
            if (((addr | next | (pfn << PAGE_SHIFT)) & ~CONT_PTE_MASK) == 0)
                pte = pte_mkcont(pte);
            else
                pte = pte_mknoncont(pte);
            __set_ptes(mm, addr, ptep, pte, nr);
            ...
        } while (addr != end);

    A batch lies in one folio; a folio is naturally aligned in physical memory, so a batch of 16 or
    more pages belongs to a folio of order >= 4 and its pfn is 16-aligned exactly where the file
    index is.
    """
    k = k0
    end = k0 + nr
    while k < end:
        vpn = vma.vm_start + k
        nxt = min(end, k + CONT_PTES - (vpn & (CONT_PTES - 1)))
        pgoff = vma.vm_pgoff + k
        if (vpn & (CONT_PTES - 1)) == 0 and nxt - k == CONT_PTES and (pgoff & (CONT_PTES - 1)) == 0:
            p = vma.pte_base + k
            s.pte[p : p + CONT_PTES] |= np.uint8(PTE.CONT)
        k = nxt


def contpte_try_fold(s: SimState, vma: Vma, k: int) -> None:
    """``contpte_try_fold()`` after a single-PTE ``set_ptes()``: fold a complete block into PTE_CONT.

    Notes
    -----
    arch/arm64/include/asm/pgtable.h (v6.9+)::

        if (likely(nr == 1)) {
            contpte_try_unfold(mm, addr, ptep, __ptep_get(ptep));
            __set_ptes(mm, addr, ptep, pte, 1);
            contpte_try_fold(mm, addr, ptep, pte);
        }
        ...
        bool valign = ((addr >> PAGE_SHIFT) & contmask) == contmask;
        if (unlikely(valign)) {
            bool palign = (pte_pfn(pte) & contmask) == contmask;
            if (unlikely(palign && pte_valid(pte) && !pte_cont(pte) && !pte_special(pte)))
                __contpte_try_fold(mm, addr, ptep, pte);
        }

    ``__contpte_try_fold()`` requires one folio to cover the whole block and all 16 PTEs to map
    consecutive pfns with the same prot (young/dirty ignored); ``contpte_convert()`` then rewrites
    the block with PTE_CONT and the OR of the young and dirty bits.
    """
    vpn = vma.vm_start + k
    if (vpn & (CONT_PTES - 1)) != CONT_PTES - 1:
        return
    folio = _file_folio(s, vma, k)
    if folio is None:
        return
    head, order = folio
    pgoff = vma.vm_pgoff + k
    if order < 4 or (pgoff & (CONT_PTES - 1)) != CONT_PTES - 1:  # palign; a smaller folio cannot cover
        return
    k0 = k - (CONT_PTES - 1)
    if k0 < 0 or vma.vm_pgoff + k0 < head:  # folio_start > cont_start
        return
    p0 = vma.pte_base + k0
    block = [int(x) for x in s.pte[p0 : p0 + CONT_PTES]]
    want = block[-1] & (PTE.PRESENT | PTE.WRITE | PTE.ANON)
    for e in block:
        if not (e & PTE.PRESENT) or e & (PTE.ANON | PTE.CONT) or (e & (PTE.PRESENT | PTE.WRITE | PTE.ANON)) != want:
            return
    gathered = 0
    for e in block:
        gathered |= e & (PTE.YOUNG | PTE.DIRTY)
    for i, e in enumerate(block):
        s.pte[p0 + i] = e | gathered | PTE.CONT


def contpte_block(vma: Vma, k: int) -> int:
    """Index into ``s.pte`` of the first PTE of the contpte block holding VMA page ``k``."""
    vpn = vma.vm_start + k
    return vma.pte_base + k - (vpn & (CONT_PTES - 1))


def contpte_unfold(s: SimState, vma: Vma, k: int) -> None:
    """``__contpte_try_unfold()``: ``contpte_convert(mm, addr, ptep, pte_mknoncont(pte))`` -- the
    block's PTEs lose PTE_CONT and all take the OR of the block's young and dirty bits."""
    p0 = contpte_block(vma, k)
    gathered = 0
    for i in range(CONT_PTES):
        gathered |= int(s.pte[p0 + i]) & (PTE.YOUNG | PTE.DIRTY)
    for i in range(CONT_PTES):
        s.pte[p0 + i] = (int(s.pte[p0 + i]) | gathered) & ~PTE.CONT & 0xFF


def pmd_slot(s: SimState, v: int, vpn: int) -> int:
    """PMD slot (index into ``s.pmd``) of virtual page ``vpn`` inside VMA row ``v``.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    vpn : int
        Virtual page number.

    Returns
    -------
    int

    Notes
    -----
    ``pmd_offset(pud, address)``: one slot per 2 MiB region; VMAs sharing a region share the slot.
    """
    return int(s.vmas[v, VmaField.PMD_BASE]) + (int(vpn) >> 9) - (int(s.vmas[v, VmaField.START]) >> 9)


def thp_vma_suitable_order(s: SimState, v: int, vpn: int) -> bool:
    """Can the 2 MiB region holding ``vpn`` be mapped by one PMD in VMA ``v``?

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    vpn : int
        Any page of the region.

    Returns
    -------
    bool

    Notes
    -----
    ``thp_vma_suitable_order(vma, addr, PMD_ORDER)``, include/linux/huge_mm.h, Linux 6.18.5 (same
    test as ``transhuge_vma_suitable()`` of v5.12 and v6.6)::

        if (!vma_is_anonymous(vma)) {
            if (!IS_ALIGNED((vma->vm_start >> PAGE_SHIFT) - vma->vm_pgoff,
                            hpage_size >> PAGE_SHIFT))
                return false;
        }
        haddr = ALIGN_DOWN(addr, hpage_size);
        if (haddr < vma->vm_start || haddr + hpage_size > vma->vm_end)
            return false;
    """
    vma = Vma.of(s, v)
    # "check if the linear page offset of vma is order-aligned within the file" (a negative
    # difference wraps in C; IS_ALIGNED of the wrapped value is the same as Python's modulo)
    if (vma.vm_start - vma.vm_pgoff) % _PTE_PMD_NR != 0:
        return False
    haddr = int(vpn) & ~(_PTE_PMD_NR - 1)
    if haddr < vma.vm_start or haddr + _PTE_PMD_NR > vma.vm_end:
        return False
    return True


def set_pte_range(s: SimState, v: int, k0: int, nr: int, fault_k: int, write: bool, anon: bool) -> None:
    """Install ``nr`` consecutive PTEs for pages of one folio.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    k0 : int
        VMA page index of the first PTE (``addr``).
    nr : int
        Number of PTEs.
    fault_k : int
        VMA page index of the faulting address (``vmf->address``).
    write : bool
        ``vmf->flags & FAULT_FLAG_WRITE``.
    anon : bool
        A COW copy. The kernel decides this itself (``write && !(vma->vm_flags & VM_SHARED)``);
        the argument is accepted for signature compatibility and checked against that.

    Notes
    -----
    ``set_pte_range(vmf, folio, page, nr, addr)``, mm/memory.c, Linux 6.18.5::

        bool prefault = !in_range(vmf->address, addr, nr * PAGE_SIZE);
        entry = mk_pte(page, vma->vm_page_prot);
        if (prefault && arch_wants_old_prefaulted_pte())
            entry = pte_mkold(entry);
        else
            entry = pte_sw_mkyoung(entry);
        if (write)
            entry = maybe_mkwrite(pte_mkdirty(entry), vma);

    ``mk_pte()`` with a normal ``vm_page_prot`` is young on x86-64 and arm64, so only ``pte_mkold``
    makes an entry old. ``vm_page_prot`` of a file mapping is read-only (private: COW; shared:
    write-notify), so the ``pte_write(entry) && folio_test_dirty(folio)`` branch never fires.
    v5.12 ``do_set_pte(vmf, page, addr)`` is the ``nr == 1`` case (``prefault = vmf->address !=
    addr``). On arm64 (v6.9+, ``Cfg.CONTPTE``) ``set_ptes()`` is contpte-aware: a batch goes
    through :func:`contpte_set_ptes`, a single PTE through :func:`contpte_try_fold`. Simulator
    conventions: every PTE but the faulting one is marked ``PTE.UNTOUCHED``; ``PREFAULT_YOUNG``
    counts the young ones among those.
    """
    vma = Vma.of(s, v)
    k0 = int(k0)
    nr = int(nr)
    fault_k = int(fault_k)
    covers_fault = k0 <= fault_k < k0 + nr
    # bool prefault = !in_range(vmf->address, addr, nr * PAGE_SIZE);
    prefault = not covers_fault
    if V6_6_INVERTED_PREFAULT and profile_of(s) == Profile.LINUX_6_6:
        prefault = not prefault  # 3bd786f76de2: prefault = in_range(...)
    entry = PTE.PRESENT
    if not (prefault and arch_wants_old_prefaulted_pte(s)):
        entry |= PTE.YOUNG  # pte_sw_mkyoung(mk_pte(...)): young by default
    if write:
        entry |= PTE.DIRTY  # pte_mkdirty()
        if vma.vm_flags & VmaFlag.WRITE:
            entry |= PTE.WRITE  # maybe_mkwrite(): only with VM_WRITE
    # /* copy-on-write page */ if (write && !(vma->vm_flags & VM_SHARED))
    cow = bool(write) and not (vma.vm_flags & VmaFlag.SHARED)
    if cow != bool(anon):
        raise ValueError("set_pte_range: anon must be write && !VM_SHARED")
    if cow:
        if nr != 1:
            raise ValueError("VM_BUG_ON_FOLIO(nr != 1, folio)")
        entry |= PTE.ANON  # folio_add_new_anon_rmap()
    base = vma.pte_base + k0
    # set_ptes(vma->vm_mm, addr, vmf->pte, entry, nr)
    s.pte[base : base + nr] = entry | PTE.UNTOUCHED
    if covers_fault:
        s.pte[base + fault_k - k0] = entry
    if contpte_enabled(s):
        if nr > 1:
            contpte_set_ptes(s, vma, k0, nr)
        elif not cow:
            contpte_try_fold(s, vma, k0)
    st = s.stats
    st[Stat.PTES_INSTALLED] += nr
    st[Stat.SET_PTE_BATCHES] += 1
    if entry & PTE.YOUNG:
        st[Stat.PTES_YOUNG] += nr
        st[Stat.PREFAULT_YOUNG] += nr - 1 if covers_fault else nr
    else:
        st[Stat.PTES_OLD] += nr


def do_set_pmd(s: SimState, v: int, vpn: int, cache_head: int, order: int, write: bool) -> int:
    """Map a PMD-size page-cache folio with one huge PMD.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    vpn : int
        Faulting page (``vmf->address``); the PMD covers its 2 MiB region.
    cache_head : int
        Index of the folio's head in the page-cache arrays.
    order : int
        Folio order.
    write : bool
        ``vmf->flags & FAULT_FLAG_WRITE``.

    Returns
    -------
    int
        0 when the PMD was installed, :data:`VM_FAULT_FALLBACK` otherwise.

    Notes
    -----
    ``do_set_pmd(vmf, folio, page)``, mm/memory.c, Linux 6.18.5::

        if (thp_disabled_by_hw() || vma_thp_disabled(vma, vma->vm_flags,
                                                     /* forced_collapse=*/ true))
            return ret;
        if (!thp_vma_suitable_order(vma, haddr, PMD_ORDER))
            return ret;
        if (folio_order(folio) != HPAGE_PMD_ORDER)
            return ret;
        if (unlikely(folio_test_has_hwpoisoned(folio)))
            return ret;
        ...
        if (unlikely(!pmd_none(*vmf->pmd)))
            goto out;
        entry = folio_mk_pmd(folio, vma->vm_page_prot);
        if (write)
            entry = maybe_pmd_mkwrite(pmd_mkdirty(entry), vma);
        add_mm_counter(vma->vm_mm, mm_counter_file(folio), HPAGE_PMD_NR);

    ``vma_thp_disabled(..., forced_collapse=true)`` is true for ``VM_NOHUGEPAGE`` and for
    ``MMF_DISABLE_THP_COMPLETELY`` (``Cfg.THP_DISABLED``). The v6.6 and v5.12 texts
    (``do_set_pmd(vmf, page)``) start with ``transhuge_vma_suitable()``: the THP-disabled test
    (2b0f922323cc, v6.11) is not there. The entry is young (``mk_huge_pmd``); no prefault rule.
    """
    vma = Vma.of(s, v)
    haddr = int(vpn) & ~(_PTE_PMD_NR - 1)
    if profile_of(s) >= Profile.LINUX_6_18:
        thp_disabled_by_hw_or_mm = bool(s.cfg[Cfg.THP_DISABLED])
        if thp_disabled_by_hw_or_mm or (vma.vm_flags & VmaFlag.NOHUGEPAGE):
            return VM_FAULT_FALLBACK
    if not thp_vma_suitable_order(s, v, haddr):
        return VM_FAULT_FALLBACK
    if int(order) != HPAGE_PMD_ORDER:
        return VM_FAULT_FALLBACK
    cache_head = int(cache_head)
    # folio_test_has_hwpoisoned(folio): any subpage poisoned
    if (s.pc_flags[cache_head : cache_head + _PTE_PMD_NR] & PG.HWPOISON).any():
        return VM_FAULT_FALLBACK
    slot = vma.pmd(int(vpn))
    # vmf->ptl = pmd_lock(); if (unlikely(!pmd_none(*vmf->pmd))) goto out;
    if not pmd_none(s, slot):
        return VM_FAULT_FALLBACK
    entry = PMD.HUGE | PMD.YOUNG
    if write:
        entry |= PMD.DIRTY
        if vma.vm_flags & VmaFlag.WRITE:
            entry |= PMD.WRITE
    s.pmd[slot] = entry
    s.stats[Stat.MM_FILEPAGES] += _PTE_PMD_NR  # add_mm_counter(..., HPAGE_PMD_NR)
    s.stats[Stat.PMD_MAPPED] += 1  # count_vm_event(THP_FILE_MAPPED)
    return 0
