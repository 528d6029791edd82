"""``mm/filemap.c``: fault-around's ``filemap_map_pages`` and the page-cache side of a fault.

Functions take the :class:`~fastfault.fault.state.SimState` ``s`` first, then the
VMA row ``v`` and indices: ``k`` is a page index inside the VMA, ``pgoff`` a page
index inside the file. ``vmf`` scratch values (``prealloc_pte``) live in
``s.vmf``.

Notes
-----
Models Linux v6.18 (``next_uptodate_folio`` skip rules, the i_size test
``file_end >= folio_next_index(folio)`` before ``filemap_map_pmd`` -- an
off-by-one that treats a folio ending exactly at EOF as crossing it -- and
whole-large-folio mapping in ``filemap_map_folio_range``), v6.6 (folio
batches, no whole-folio mapping, ``filemap_map_pmd`` always tried) and v5.12
(page-based ``filemap_map_pages`` with ``do_set_pte`` per page). ``mmap_miss``
is decremented per candidate page, only for non-workingset folios since v6.10.
"""

from __future__ import annotations

import numpy as np

from fastfault._jit import jit
from fastfault.fault.pgtable import do_set_pmd, pmd_slot, set_pte_range
from fastfault.fault.readahead import (
    filemap_add_folio,
    page_cache_async_ra,
    page_cache_ra_order,
    page_cache_sync_ra,
)
from fastfault.fault.state import (
    MMAP_LOTSAMISS,
    PG,
    PMD,
    Cfg,
    FileField,
    Profile,
    Stat,
    VmaField,
    VmaFlag,
)

VM_FAULT_NOPAGE = 1
VM_FAULT_MAJOR = 2
VM_FAULT_RETRY = 4
VM_FAULT_SIGBUS = 8

VMF_PREALLOC = 0  # s.vmf[VMF_PREALLOC]: a pre-allocated PTE table is pending
VMF_MMAP_MISS = 1  # s.vmf[VMF_MMAP_MISS]: filemap_map_pages' local mmap_miss count

_CLEAR_LOCKED = np.uint8(0xFF ^ PG.LOCKED)


@jit(inline="always")
def next_uptodate_folio(s, f, index, end_pgoff):
    """``next_uptodate_folio()``: first mappable folio at or after file page ``index``.

    Returns the xarray position (``index`` itself when a large folio starts before it),
    or -1 when none up to ``end_pgoff``.
    """
    files = s.files
    base = files[f, FileField.BASE]
    cap = files[f, FileField.CAPACITY]
    max_idx = (files[f, FileField.ISIZE] + 4095) >> 12
    st = s.stats
    while index <= end_pgoff:
        if index >= cap:  # past the page-cache arrays: every index is a hole
            st[Stat.FAULTAROUND_SKIP_HOLE] += end_pgoff - index + 1
            break
        order = np.int64(s.pc_order[base + index])
        if order < 0:
            st[Stat.FAULTAROUND_SKIP_HOLE] += 1
            index += 1
            continue
        head = index & ~((1 << order) - 1)
        flags = s.pc_flags[base + head]
        nxt = head + (1 << order)
        per_page = s.cfg[Cfg.PROFILE] == Profile.LINUX_5_12
        if per_page:
            nxt = index + 1  # v5.3-v5.16: the head page sits in every slot: one entry per index
        if flags & PG.LOCKED:
            st[Stat.FAULTAROUND_SKIP_LOCKED] += 1
        elif not (flags & PG.UPTODATE):
            st[Stat.FAULTAROUND_SKIP_NOT_UPTODATE] += 1
        elif flags & PG.READAHEAD:
            st[Stat.FAULTAROUND_SKIP_READAHEAD] += 1
        elif per_page and (s.pc_flags[base + head] & PG.HWPOISON):
            st[Stat.FAULTAROUND_SKIP_HWPOISON] += 1  # v5.15 next_uptodate_page(): PageHWPoison(head)
        elif index >= max_idx:
            st[Stat.FAULTAROUND_SKIP_EOF] += 1  # skipped; the walk goes on (xas_next_entry)
        else:
            return index
        index = nxt
    return -1


@jit(inline="always")
def filemap_map_pmd(s, v, fault_vpn, cache_head, order):
    """``filemap_map_pmd()``: PMD-map the first folio of the window if possible, else install the
    pre-allocated PTE table. True means "done" (the caller returns ``VM_FAULT_NOPAGE``)."""
    slot = pmd_slot(s, v, fault_vpn)
    kind = s.pmd[slot] & PMD.KIND_MASK
    if kind == PMD.HUGE:
        return True
    if kind == PMD.NONE and order == 9:
        if do_set_pmd(s, v, fault_vpn, cache_head, order, False) == 0:
            return True
    if (s.pmd[slot] & PMD.KIND_MASK) == PMD.NONE and s.vmf[VMF_PREALLOC] != 0:
        s.pmd[slot] = PMD.TABLE
        s.vmf[VMF_PREALLOC] = 0
        s.stats[Stat.PTE_TABLES] += 1
    return False


@jit(inline="always")
def _flush_run(s, v, k0, count, fault_k):
    set_pte_range(s, v, k0, count, fault_k, False, False)
    s.stats[Stat.MM_FILEPAGES] += count
    s.stats[Stat.FAULTAROUND_PAGES] += count
    return VM_FAULT_NOPAGE if k0 <= fault_k < k0 + count else 0


@jit
def filemap_map_folio_range(s, v, f, head, order, start, k, nr_pages, file_end, fault_k):
    """``filemap_map_folio_range()``: map ``nr_pages`` pages of a large folio from page ``start``
    of the folio (VMA page ``k``), in runs of none PTEs; v6.18 maps the whole folio when it lies
    inside i_size, the VMA and one PMD range."""
    profile = s.cfg[Cfg.PROFILE]
    base = s.files[f, FileField.BASE]
    npages = 1 << order
    vm_start = s.vmas[v, VmaField.START]
    if profile >= Profile.LINUX_6_18 and file_end >= head + npages:
        k_head = k - start
        vpn0 = vm_start + k_head
        if k_head >= 0 and k_head + npages <= s.vmas[v, VmaField.PAGES] and (vpn0 >> 9) == ((vpn0 + npages - 1) >> 9):
            k = k_head
            start = 0
            nr_pages = npages
    workingset = (s.pc_flags[base + head] & PG.WORKINGSET) != 0
    count_miss = profile < Profile.LINUX_6_18 or not workingset
    per_page = profile == Profile.LINUX_5_12
    pte_base = s.vmas[v, VmaField.PTE_BASE]
    ret = 0
    count = 0
    run_k = k
    for i in range(nr_pages + 1):  # i == nr_pages: flush the last run (one call site of _flush_run)
        skip = i == nr_pages
        if not skip:
            page = base + head + start + i
            if s.pc_flags[page] & PG.HWPOISON:
                s.stats[Stat.FAULTAROUND_SKIP_HWPOISON] += 1
                skip = True
            else:
                if count_miss:
                    s.vmf[VMF_MMAP_MISS] += 1
                if s.pte[pte_base + k + i] != 0:
                    s.stats[Stat.FAULTAROUND_SKIP_PRESENT] += 1
                    skip = True
        if not skip:
            count += 1
            if not per_page:
                continue
        if count:
            ret |= _flush_run(s, v, run_k, count, fault_k)
        count = 0
        run_k = k + i + 1
    return ret


@jit(inline="always")
def filemap_map_order0_folio(s, v, f, pgoff, k, fault_k):
    """``filemap_map_order0_folio()``: map one order-0 folio at VMA page ``k``."""
    page = s.files[f, FileField.BASE] + pgoff
    flags = s.pc_flags[page]
    if flags & PG.HWPOISON:
        s.stats[Stat.FAULTAROUND_SKIP_HWPOISON] += 1
        return 0
    if s.cfg[Cfg.PROFILE] < Profile.LINUX_6_18 or not (flags & PG.WORKINGSET):
        s.vmf[VMF_MMAP_MISS] += 1
    if s.pte[s.vmas[v, VmaField.PTE_BASE] + k] != 0:
        s.stats[Stat.FAULTAROUND_SKIP_PRESENT] += 1
        return 0
    return _flush_run(s, v, k, 1, fault_k)


@jit(inline="always")
def filemap_map_pages(s, v, start_pgoff, end_pgoff, fault_k, fault_vpn):
    """``filemap_map_pages()``: map the cached, uptodate pages of ``[start_pgoff, end_pgoff]``.

    Returns ``VM_FAULT_NOPAGE`` when it installed the PTE or PMD covering the faulting page.
    """
    f = s.vmas[v, VmaField.FILE]
    files = s.files
    base = files[f, FileField.BASE]
    vm_pgoff = s.vmas[v, VmaField.PGOFF]
    profile = s.cfg[Cfg.PROFILE]
    s.vmf[VMF_MMAP_MISS] = 0
    ret = 0
    file_end = ((files[f, FileField.ISIZE] + 4095) >> 12) - 1
    first = True
    nxt = start_pgoff
    while True:  # one call site per helper: they are inlined here
        pos = next_uptodate_folio(s, f, nxt, end_pgoff)
        if pos < 0:
            break
        order = np.int64(s.pc_order[base + pos])
        head = pos & ~((1 << order) - 1)
        if first:
            first = False
            if profile >= Profile.LINUX_6_18:
                end_pgoff = min(end_pgoff, file_end)  # v6.6 / v5.12: no i_size clamp here
            try_pmd = profile < Profile.LINUX_6_18 or file_end >= head + (1 << order)
            if try_pmd and filemap_map_pmd(s, v, fault_vpn, base + head, order):
                ret = VM_FAULT_NOPAGE
                break
            if (s.pmd[pmd_slot(s, v, fault_vpn)] & PMD.KIND_MASK) != PMD.TABLE:
                break
        fend = head + (1 << order) - 1
        nr_pages = min(fend, end_pgoff) - pos + 1
        if profile == Profile.LINUX_5_12:
            fend = pos  # page-based loop: one page per entry
            nr_pages = 1
        if order == 0:
            ret |= filemap_map_order0_folio(s, v, f, pos, pos - vm_pgoff, fault_k)
        else:
            ret |= filemap_map_folio_range(
                s, v, f, head, order, pos - head, pos - vm_pgoff, nr_pages, file_end, fault_k
            )
        nxt = fend + 1
    miss = s.vmf[VMF_MMAP_MISS]
    saved = files[f, FileField.MMAP_MISS]
    files[f, FileField.MMAP_MISS] = 0 if miss >= saved else saved - miss
    return ret


@jit
def do_sync_mmap_readahead(s, v, f, pgoff):
    """``do_sync_mmap_readahead()``: the faulting page is not cached."""
    files = s.files
    flags = s.vmas[v, VmaField.FLAGS]
    profile = s.cfg[Cfg.PROFILE]
    if profile >= Profile.LINUX_6_6 and (flags & VmaFlag.HUGEPAGE):
        start = pgoff & ~511
        files[f, FileField.RA_SIZE] = 512 if (flags & VmaFlag.RAND_READ) else 1024
        files[f, FileField.RA_ASYNC] = 512
        files[f, FileField.RA_ORDER] = 9  # ra->start is not set here (only ractl._index)
        s.stats[Stat.RA_SYNC] += 1
        page_cache_ra_order(s, f, start)
        return
    exec_ok = profile >= Profile.LINUX_6_18 and (flags & VmaFlag.EXEC) != 0
    if (flags & VmaFlag.RAND_READ) and not exec_ok:
        return
    ra_pages = files[f, FileField.RA_PAGES]
    if ra_pages == 0:
        return
    if flags & VmaFlag.SEQ_READ:
        s.stats[Stat.RA_SYNC] += 1
        page_cache_sync_ra(s, f, pgoff, ra_pages)
        return
    mmap_miss = files[f, FileField.MMAP_MISS]
    if mmap_miss < MMAP_LOTSAMISS * 10:
        mmap_miss += 1
        files[f, FileField.MMAP_MISS] = mmap_miss
    if mmap_miss > MMAP_LOTSAMISS:
        s.stats[Stat.RA_NO_READAROUND] += 1
        return
    if exec_ok:
        order = s.cfg[Cfg.EXEC_ORDER]
        vstart = s.vmas[v, VmaField.PGOFF]
        vend = vstart + s.vmas[v, VmaField.PAGES]
        start = max(pgoff & ~((1 << order) - 1), vstart)
        ra_end = (start + ra_pages + (1 << order) - 1) & ~((1 << order) - 1)
        ra_end = min(ra_end, vend)
        files[f, FileField.RA_ORDER] = order
        files[f, FileField.RA_START] = start
        files[f, FileField.RA_SIZE] = ra_end - start
        files[f, FileField.RA_ASYNC] = 0
    else:
        files[f, FileField.RA_START] = max(0, pgoff - ra_pages // 2)
        files[f, FileField.RA_SIZE] = ra_pages
        files[f, FileField.RA_ASYNC] = ra_pages // 4
        files[f, FileField.RA_ORDER] = 0
    s.stats[Stat.RA_SYNC] += 1
    page_cache_ra_order(s, f, files[f, FileField.RA_START])


@jit(inline="always")
def do_async_mmap_readahead(s, v, f, head, order, pgoff):
    """``do_async_mmap_readahead()``: the faulting page is cached. Returns True when the mmap lock
    is dropped for I/O (a ``PG_readahead`` hit), which makes ``filemap_fault`` return RETRY."""
    files = s.files
    if (s.vmas[v, VmaField.FLAGS] & VmaFlag.RAND_READ) or files[f, FileField.RA_PAGES] == 0:
        return False
    flags = s.pc_flags[files[f, FileField.BASE] + head]
    if s.cfg[Cfg.PROFILE] < Profile.LINUX_6_18 or not (flags & PG.LOCKED):
        if files[f, FileField.MMAP_MISS] > 0:
            files[f, FileField.MMAP_MISS] -= 1
    if flags & PG.READAHEAD:
        page_cache_async_ra(s, f, head, order, pgoff)
        return True
    return False


@jit(inline="always")
def filemap_fault(s, v, pgoff, tried):
    """``filemap_fault()``: find or read the faulting page; returns ``VM_FAULT_*`` bits.

    ``VM_FAULT_RETRY`` stands for "the mmap/VMA lock was dropped to wait for I/O": after a
    page-cache miss (the retry carries ``VM_FAULT_MAJOR``), on a ``PG_readahead`` hit, or on a
    locked or not-uptodate folio. I/O completes at once, so the retried fault finds the page.
    """
    f = s.vmas[v, VmaField.FILE]
    files = s.files
    base = files[f, FileField.BASE]
    if pgoff >= (files[f, FileField.ISIZE] + 4095) >> 12:
        return VM_FAULT_SIGBUS
    order = np.int64(s.pc_order[base + pgoff])
    if order >= 0:
        head = pgoff & ~((1 << order) - 1)
        dropped = False
        if not tried:
            dropped = do_async_mmap_readahead(s, v, f, head, order, pgoff)
        flags = s.pc_flags[base + head]
        if (flags & PG.LOCKED) or not (flags & PG.UPTODATE):
            s.pc_flags[base + head] = (flags & _CLEAR_LOCKED) | PG.UPTODATE
            return VM_FAULT_RETRY
        if dropped:
            return VM_FAULT_RETRY
        return 0
    s.stats[Stat.PGMAJFAULT] += 1
    do_sync_mmap_readahead(s, v, f, pgoff)
    if s.pc_order[base + pgoff] < 0:
        filemap_add_folio(s, f, pgoff, 0, False)
    return VM_FAULT_MAJOR | VM_FAULT_RETRY
