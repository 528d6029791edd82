"""Plain-Python mirror of :func:`fastfault.reclaim.age_pass` (the test oracle; no numba).

Operates on the same :class:`~fastfault.fault.state.SimState` and
:class:`~fastfault.reclaim_codes.AgeState` arrays, written from the kernel description
(``folio_referenced`` -> ``folio_check_references``; ``lru_gen_look_around``) with Python
sets, generators and dicts instead of the kernel's index arithmetic. Tests run both on copies
of one state and compare every array exactly.
"""

from __future__ import annotations

import numpy as np

from fastfault.fault.state import PG, PMD, PTE, FileField, Stat, VmaField, VmaFlag
from fastfault.reclaim_codes import AgeCfg, AgePolicy, AgeStat, Decision

_COUNTER = {
    Decision.KEEP: AgeStat.KEEP,
    Decision.ACTIVATE: AgeStat.ACTIVATE,
    Decision.RECLAIM: AgeStat.RECLAIM,
    Decision.RECLAIM_CLEAN: AgeStat.RECLAIM_CLEAN,
    Decision.PROMOTED: AgeStat.PROMOTED,
}


def _is_file_pte(e: int) -> bool:
    return bool(e & PTE.PRESENT) and not (e & PTE.ANON)


class _Pass:
    def __init__(self, s, a, policy: int):
        self.s = s
        self.a = a
        self.mglru = policy == AgePolicy.MGLRU
        self.last = dict.fromkeys(AgeStat, 0)
        self.cleared: list[int] = []
        self.unmapped: list[int] = []
        self.promoted: set[int] = set()
        self.decided: set[int] = set()
        # The VMA table does not change during a pass: read each row once.
        names = [f.name for f in VmaField if f is not VmaField.NFIELDS]
        self.vmas = [dict(zip(names, row[: len(names)], strict=True)) for row in s.vmas.tolist()]

    # -- helpers ---------------------------------------------------------------------------------
    def vma(self, v: int) -> dict:
        return self.vmas[v]

    def maps(self, v: int, head: int, n: int) -> bool:
        """VMA ``v`` maps some of the file pages ``[head, head + n)``."""
        vm = self.vmas[v]
        return max(head, vm["PGOFF"]) < min(head + n, vm["PGOFF"] + vm["PAGES"])

    def pmd_slot(self, vm: dict, vpn: int) -> int:
        return vm["PMD_BASE"] + (vpn >> 9) - (vm["START"] >> 9)

    def visits(self, v: int, head: int, n: int):
        """The folio's pages in VMA ``v`` in address order, a huge PMD once: tuples
        ``(what, index, k, vpn, npages)`` with ``what`` 'pmd' (index: PMD slot) or 'pte' (index: PTE)."""
        vm = self.vma(v)
        lo = max(head, vm["PGOFF"])
        hi = min(head + n, vm["PGOFF"] + vm["PAGES"])
        k = lo - vm["PGOFF"]
        while k < hi - vm["PGOFF"]:
            vpn = vm["START"] + k
            slot = self.pmd_slot(vm, vpn)
            if int(self.s.pmd[slot]) & PMD.KIND_MASK == PMD.HUGE:
                npages = min(512 - vpn % 512, hi - vm["PGOFF"] - k)
                yield "pmd", slot, k, vpn, npages
                k += npages
            else:
                yield "pte", vm["PTE_BASE"] + k, k, vpn, 1
                k += 1

    def record(self, lst: list[int], vpn: int) -> None:
        if len(lst) < len(self.a.cleared_vpn):
            lst.append(vpn)
        else:
            self.last[AgeStat.VPN_LIST_OVERFLOW] += 1

    def clear_young(self, v: int, k: int, vpn: int, flush: bool, stat: AgeStat) -> bool:
        vm = self.vma(v)
        pte = self.s.pte
        p = vm["PTE_BASE"] + k
        block_start = vpn - vpn % 16
        kb = block_start - vm["START"]
        if int(pte[p]) & PTE.CONT and kb >= 0 and kb + 16 <= vm["PAGES"]:
            members = [
                (vm["PTE_BASE"] + kb + i, block_start + i)
                for i in range(16)
                if int(pte[vm["PTE_BASE"] + kb + i]) & PTE.CONT and _is_file_pte(int(pte[vm["PTE_BASE"] + kb + i]))
            ]
            if not any(int(pte[q]) & PTE.YOUNG for q, _ in members):
                return False
            for q, qvpn in members:
                if int(pte[q]) & PTE.YOUNG:
                    pte[q] = int(pte[q]) & ~PTE.YOUNG
                    self.last[stat] += 1
                if flush:
                    self.record(self.cleared, qvpn)
            return True
        if int(pte[p]) & PTE.YOUNG:
            pte[p] = int(pte[p]) & ~PTE.YOUNG
            self.last[stat] += 1
            if flush:
                self.record(self.cleared, vpn)
            return True
        return False

    def folio_head(self, fbase: int, pgoff: int) -> int | None:
        order = int(self.s.pc_order[fbase + pgoff])
        if order < 0:
            return None
        return fbase + pgoff - pgoff % (1 << order)

    def look_around(self, v: int, vpn0: int, fbase: int, head: int) -> None:
        self.last[AgeStat.LOOKAROUND_CALLS] += 1
        vm = self.vma(v)
        lo = max(vpn0 - vpn0 % 512, vm["START"])
        hi = min(vpn0 - vpn0 % 512 + 511, vm["START"] + vm["PAGES"] - 1) + 1
        if hi - lo > 64:
            if vpn0 - lo < 32:
                hi = lo + 64
            elif hi - vpn0 < 32:
                lo = hi - 64
            else:
                lo, hi = vpn0 - 32, vpn0 + 32
        for vpn in range(lo, hi):
            k = vpn - vm["START"]
            e = int(self.s.pte[vm["PTE_BASE"] + k])
            if not (_is_file_pte(e) and e & PTE.YOUNG):
                continue
            self.clear_young(v, k, vpn, False, AgeStat.LOOKAROUND_CLEARED)
            h = self.folio_head(fbase, vm["PGOFF"] + k)
            if h is None or h == head or h in self.promoted or h in self.decided:
                continue
            self.promoted.add(h)
            self.last[AgeStat.LOOKAROUND_PROMOTED] += 1

    # -- the pass --------------------------------------------------------------------------------
    def census(self) -> None:
        """Page tables at the start of the pass: file PTEs by young / UNTOUCHED (whole-array
        counts), ``seen_old`` for the next pass, huge PMDs."""
        s, a, last = self.s, self.a, self.last
        pte = s.pte
        file = ((pte & PTE.PRESENT) != 0) & ((pte & PTE.ANON) == 0)
        young = file & ((pte & PTE.YOUNG) != 0)
        untouched = file & ((pte & PTE.UNTOUCHED) != 0)
        last[AgeStat.MAPPED_PTES] += int(file.sum())
        last[AgeStat.YOUNG_PTES] += int(young.sum())
        last[AgeStat.FALSE_YOUNG] += int((young & untouched).sum())
        last[AgeStat.OLD_UNTOUCHED] += int((untouched & ~young).sum())
        last[AgeStat.PREFAULT_OLD_LATER_ACCESSED] += int((file & (a.seen_old != 0) & ~untouched).sum())
        a.seen_old[:] = untouched & ~young
        huge = (s.pmd & PMD.KIND_MASK) == PMD.HUGE
        last[AgeStat.HUGE_PMDS] += int(huge.sum())
        last[AgeStat.YOUNG_PMDS] += int((huge & ((s.pmd & PMD.YOUNG) != 0)).sum())

    def folio(self, vmas: list[int], fbase: int, head: int, n: int, cap: int) -> None:
        s, last = self.s, self.last
        h = fbase + head
        promoted = self.mglru and h in self.promoted
        mapped = False
        referencing_flags: list[int] = []
        untouched = used = 0
        dirty = False
        for v in vmas:
            if not self.maps(v, head, n):
                continue
            flags = self.vma(v)["FLAGS"]
            recency = not flags & (VmaFlag.SEQ_READ | VmaFlag.RAND_READ) and not promoted
            young_here = False
            for what, idx, k, vpn, npages in self.visits(v, head, n):
                if what == "pmd":
                    e = int(s.pmd[idx])
                    mapped = True
                    used += npages
                    dirty |= bool(e & PMD.DIRTY)
                    if recency and e & PMD.YOUNG:
                        s.pmd[idx] = e & ~PMD.YOUNG
                        last[AgeStat.YOUNG_CLEARED] += 1
                        self.record(self.cleared, vpn - vpn % 512)
                        young_here = True
                    continue
                e = int(s.pte[idx])
                if not _is_file_pte(e):
                    continue
                mapped = True
                if e & PTE.UNTOUCHED:
                    untouched += 1
                else:
                    used += 1
                dirty |= bool(e & PTE.DIRTY)
                if not recency:
                    continue
                if self.mglru:
                    if e & PTE.YOUNG:
                        self.look_around(v, vpn, fbase, h)
                        young_here = True
                elif self.clear_young(v, k, vpn, True, AgeStat.YOUNG_CLEARED):
                    young_here = True
            if young_here:
                referencing_flags.append(flags)
        if not mapped:
            return
        last[AgeStat.FOLIOS] += 1
        self.decided.add(h)
        if promoted:
            d = Decision.PROMOTED
        else:
            referenced = len(referencing_flags)
            last[AgeStat.REFERENCED_VMAS] += referenced
            had_ref = bool(int(s.pc_flags[h]) & PG.REFERENCED)
            s.pc_flags[h] = int(s.pc_flags[h]) & ~PG.REFERENCED & 0xFF
            if referenced:
                s.pc_flags[h] = int(s.pc_flags[h]) | PG.REFERENCED
                if had_ref or referenced > 1:
                    d = Decision.ACTIVATE
                elif any(fl & VmaFlag.EXEC for fl in referencing_flags):
                    d = Decision.ACTIVATE
                    last[AgeStat.ACTIVATE_EXEC] += 1
                else:
                    d = Decision.KEEP
            else:
                d = Decision.RECLAIM_CLEAN if had_ref else Decision.RECLAIM
        self.a.decision[h] = d
        last[_COUNTER[d]] += 1
        if d in (Decision.RECLAIM, Decision.RECLAIM_CLEAN):
            last[AgeStat.RECLAIM_UNTOUCHED] += untouched
            last[AgeStat.RECLAIM_USED] += used
            if self.a.cfg[AgeCfg.EVICT]:
                if int(s.pc_flags[h]) & PG.LOCKED:
                    last[AgeStat.EVICT_SKIPPED_LOCKED] += 1
                elif dirty or int(s.pc_flags[h]) & PG.DIRTY:
                    last[AgeStat.EVICT_SKIPPED_DIRTY] += 1
                else:
                    self.evict(vmas, fbase, head, n, cap)
        else:
            last[AgeStat.PROTECTED_UNTOUCHED] += untouched
            last[AgeStat.PROTECTED_USED] += used

    def evict(self, vmas: list[int], fbase: int, head: int, n: int, cap: int) -> None:
        s, last = self.s, self.last
        for v in vmas:
            for what, idx, _, vpn, _ in list(self.visits(v, head, n)):
                if what == "pmd":
                    s.pmd[idx] = PMD.NONE
                    s.stats[Stat.MM_FILEPAGES] -= 512
                    last[AgeStat.PMDS_ZAPPED] += 1
                    self.record(self.unmapped, vpn - vpn % 512)
                elif _is_file_pte(int(s.pte[idx])):
                    s.pte[idx] = 0
                    s.stats[Stat.MM_FILEPAGES] -= 1
                    last[AgeStat.PTES_ZAPPED] += 1
                    self.record(self.unmapped, vpn)
        for i in range(n):
            if head + i < cap:
                j = fbase + head + i
                s.pc_order[j] = -1
                s.pc_flags[j] = (int(s.pc_flags[j]) & PG.HWPOISON) | PG.SHADOW
        last[AgeStat.EVICTED_FOLIOS] += 1
        last[AgeStat.EVICTED_PAGES] += n

    def mapped_pages(self, vmas: list[int]) -> list[int]:
        """File indices mapped by a file PTE or a huge PMD of one of ``vmas``, in order: the pages of
        the folios the pass examines (a folio none of whose pages is mapped is not looked at)."""
        s = self.s
        pages: set[int] = set()
        for v in vmas:
            vm = self.vma(v)
            ptes = s.pte[vm["PTE_BASE"] : vm["PTE_BASE"] + vm["PAGES"]]
            ks = np.flatnonzero(((ptes & PTE.PRESENT) != 0) & ((ptes & PTE.ANON) == 0))
            pages.update((ks + vm["PGOFF"]).tolist())
            for vpn in range(vm["START"] - vm["START"] % 512, vm["START"] + vm["PAGES"], 512):
                if int(s.pmd[self.pmd_slot(vm, vpn)]) & PMD.KIND_MASK == PMD.HUGE:
                    k0 = max(vpn, vm["START"]) - vm["START"]
                    k1 = min(vpn + 512, vm["START"] + vm["PAGES"]) - vm["START"]
                    pages.update(range(vm["PGOFF"] + k0, vm["PGOFF"] + k1))
        return sorted(pages)

    def run(self) -> int:
        s, a = self.s, self.a
        a.decision[:] = -1
        a.promoted[:] = 0
        self.last[AgeStat.PASSES] = 1
        self.census()
        for f in range(s.files.shape[0]):
            vmas = [v for v in range(s.vmas.shape[0]) if s.vmas[v, VmaField.FILE] == f]
            if not vmas:
                continue
            fbase = int(s.files[f, FileField.BASE])
            cap = int(s.files[f, FileField.CAPACITY])
            idx = 0
            for pg in self.mapped_pages(vmas):
                order = int(s.pc_order[fbase + pg]) if idx <= pg < cap else -1
                if order < 0:
                    continue
                n = 1 << order
                head = pg - pg % n
                self.folio(vmas, fbase, head, n, cap)
                idx = head + n
        for h in self.promoted:
            a.promoted[h] = 1
        a.nvpn[0] = len(self.cleared)
        a.nvpn[1] = len(self.unmapped)
        a.cleared_vpn[: len(self.cleared)] = self.cleared
        a.unmapped_vpn[: len(self.unmapped)] = self.unmapped
        for m, val in self.last.items():
            if m is not AgeStat.NFIELDS:
                a.last[m] = val
                a.stats[m] += val
        return len(self.cleared)


def age_pass(s, a, policy: int) -> int:
    """Mirror of :func:`fastfault.reclaim.age_pass` (same arguments, same effects)."""
    return _Pass(s, a, int(policy)).run()
