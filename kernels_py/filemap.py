"""``mm/filemap.c``: fault-around's ``filemap_map_pages`` and ``filemap_fault``, in plain Python.

Written from the Linux 6.18.5 text (the upstream 6.18.5 release tarball), with the v6.6 and v5.12 (v5.15-era text)
differences as profile branches. Functions keep the signatures of :mod:`fastfault.fault.filemap`:
``s`` first, then the VMA row ``v`` or file row ``f``; ``k`` is a page index inside the VMA,
``pgoff``/``index`` a page index inside the file, ``vpn`` a virtual page number.

Simulator conventions kept from the jitted code: the ``FAULTAROUND_SKIP_*`` counters count skipped
page-cache entries (a hole or shadow entry counts once per index), ``FAULTAROUND_PAGES`` the PTEs
installed by fault-around; ``s.vmf[VMF_MMAP_MISS]`` is fault-around's local ``mmap_miss``.
``VM_FAULT_LOCKED`` is not represented: a successful ``filemap_fault`` returns 0 or
``VM_FAULT_MAJOR``.
"""

from __future__ import annotations

from fastfault.fault.state import (
    HPAGE_PMD_NR,
    HPAGE_PMD_ORDER,
    MMAP_LOTSAMISS,
    PAGE_SIZE,
    PG,
    Cfg,
    FileField,
    Profile,
    SimState,
    Stat,
    VmaField,
    VmaFlag,
)
from kernels_py.pgtable import (
    VMF_MMAP_MISS,
    Vma,
    Vmf,
    do_set_pmd,
    pmd_install,
    pmd_none,
    pmd_trans_huge,
    profile_of,
    set_pte_range,
)
from kernels_py.readahead import (
    filemap_add_folio,
    folio_flags,
    page_cache_async_ra,
    page_cache_ra_order,
    page_cache_sync_ra,
    xa_load,
)

__all__ = [
    "VM_FAULT_HWPOISON",
    "VM_FAULT_MAJOR",
    "VM_FAULT_NOPAGE",
    "VM_FAULT_RETRY",
    "VM_FAULT_SIGBUS",
    "do_async_mmap_readahead",
    "do_sync_mmap_readahead",
    "filemap_fault",
    "filemap_map_folio_range",
    "filemap_map_order0_folio",
    "filemap_map_pages",
    "filemap_map_pmd",
    "next_uptodate_folio",
]

# VM_FAULT_* codes as the jitted code spells them (HWPOISON is reference-only).
VM_FAULT_NOPAGE = 1
VM_FAULT_MAJOR = 2
VM_FAULT_RETRY = 4
VM_FAULT_SIGBUS = 8
VM_FAULT_HWPOISON = 16
VM_FAULT_ERROR = VM_FAULT_SIGBUS | VM_FAULT_HWPOISON


def _div_round_up_pages(nbytes: int) -> int:
    """``DIV_ROUND_UP(i_size, PAGE_SIZE)``."""
    return (nbytes + PAGE_SIZE - 1) // PAGE_SIZE


def next_uptodate_folio(s: SimState, f: int, index: int, end_pgoff: int) -> int:
    """Walk the page cache from ``index`` to ``end_pgoff`` to the first folio fault-around may map.

    Parameters
    ----------
    s : SimState
    f : int
        File row.
    index : int
        ``xas.xa_index`` to start from.
    end_pgoff : int
        Last index (inclusive).

    Returns
    -------
    int
        The XArray position of the folio (``index`` itself when a large folio starts before it), or
        -1 when none.

    Notes
    -----
    ``next_uptodate_folio(xas, mapping, end_pgoff)``, mm/filemap.c, Linux 6.18.5::

        if (!folio) return NULL;
        if (xas_retry(xas, folio)) continue;
        if (xa_is_value(folio)) continue;
        if (!folio_try_get(folio)) continue;
        if (folio_test_locked(folio)) goto skip;
        if (unlikely(folio != xas_reload(xas))) goto skip;
        if (!folio_test_uptodate(folio) || folio_test_readahead(folio)) goto skip;
        if (!folio_trylock(folio)) goto skip;
        if (folio->mapping != mapping) goto unlock;
        if (!folio_test_uptodate(folio)) goto unlock;
        max_idx = DIV_ROUND_UP(i_size_read(mapping->host), PAGE_SIZE);
        if (xas->xa_index >= max_idx) goto unlock;
        return folio;
        ...
        } while ((folio = xas_next_entry(xas, end_pgoff)) != NULL);

    A skipped folio does not end the walk: the next entry is tried (a folio past EOF is followed
    only by entries past EOF). v6.6 tests the lock before taking the reference (same outcome).
    v5.12 (``next_uptodate_page``, v5.15 text) runs on pages: a large folio's head page sat in
    every slot of its range (v5.3-v5.16), so each index is visited and skipped on its own, and a
    hwpoisoned head page is skipped too.
    """
    per_page = profile_of(s) == Profile.LINUX_5_12
    base = int(s.files[f, FileField.BASE])
    max_idx = _div_round_up_pages(int(s.files[f, FileField.ISIZE]))
    st = s.stats
    pos = int(index)
    end_pgoff = int(end_pgoff)
    while pos <= end_pgoff:
        entry = xa_load(s, f, pos)
        if entry is None:  # no entry, or xa_is_value(): a workingset shadow
            st[Stat.FAULTAROUND_SKIP_HOLE] += 1
            pos += 1
            continue
        head, order = entry
        flags = folio_flags(s, f, head)
        if flags & PG.LOCKED:
            st[Stat.FAULTAROUND_SKIP_LOCKED] += 1
        elif not (flags & PG.UPTODATE):
            st[Stat.FAULTAROUND_SKIP_NOT_UPTODATE] += 1
        elif flags & PG.READAHEAD:
            st[Stat.FAULTAROUND_SKIP_READAHEAD] += 1
        elif per_page and s.pc_flags[base + head] & PG.HWPOISON:
            st[Stat.FAULTAROUND_SKIP_HWPOISON] += 1  # v5.15: if (PageHWPoison(page)) goto skip;
        elif pos >= max_idx:
            st[Stat.FAULTAROUND_SKIP_EOF] += 1
        else:
            return pos
        # xas_next_entry(): the next slot (v5.12) or the entry after this folio (v6.x)
        pos = pos + 1 if per_page else head + (1 << order)
    return -1


def filemap_map_pmd(s: SimState, v: int, fault_vpn: int, cache_head: int, order: int) -> bool:
    """Map the window's first folio with a PMD if possible, else install the pre-allocated table.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    fault_vpn : int
        ``vmf->address``.
    cache_head : int
        The folio's head in the page-cache arrays.
    order : int
        Folio order.

    Returns
    -------
    bool
        True: the PMD maps a huge page now (``filemap_map_pages`` returns ``VM_FAULT_NOPAGE``).

    Notes
    -----
    ``filemap_map_pmd(vmf, folio, start)``, mm/filemap.c, Linux 6.18.5 (v6.6 identical)::

        if (pmd_trans_huge(*vmf->pmd)) { ... return true; }
        if (pmd_none(*vmf->pmd) && folio_test_pmd_mappable(folio)) {
            ...
            vm_fault_t ret = do_set_pmd(vmf, folio, page);
            if (!ret) { ... return true; }
        }
        if (pmd_none(*vmf->pmd) && vmf->prealloc_pte)
            pmd_install(mm, vmf->pmd, &vmf->prealloc_pte);
        return false;

    v5.12 (v5.15 text) tries ``do_set_pmd`` for any compound head (``PageTransHuge``), populates
    the PMD with ``vmf->prealloc_pte`` unconditionally and returns true if a huge PMD appeared
    meanwhile (``pmd_devmap_trans_unstable``). Fault-around never writes: ``do_set_pmd`` gets a
    read fault.
    """
    vmf = Vmf.at(s, v, fault_vpn)
    if pmd_trans_huge(s, vmf.pmd):  # /* Huge page is mapped? No need to proceed. */
        return True
    if profile_of(s) == Profile.LINUX_5_12:
        if pmd_none(s, vmf.pmd) and order > 0:  # PageTransHuge(page)
            if do_set_pmd(s, v, fault_vpn, cache_head, order, False) == 0:
                return True
        if pmd_none(s, vmf.pmd):
            pmd_install(s, vmf)  # pmd_populate(mm, vmf->pmd, vmf->prealloc_pte)
            vmf.prealloc_pte = False
        return pmd_trans_huge(s, vmf.pmd)  # pmd_devmap_trans_unstable(vmf->pmd)
    if pmd_none(s, vmf.pmd) and order >= HPAGE_PMD_ORDER:  # folio_test_pmd_mappable(folio)
        if do_set_pmd(s, v, fault_vpn, cache_head, order, False) == 0:
            return True
    if pmd_none(s, vmf.pmd) and vmf.prealloc_pte:
        pmd_install(s, vmf)
        vmf.prealloc_pte = False
    return False


def _map_run(s: SimState, v: int, k0: int, count: int, fault_k: int) -> int:
    """``set_pte_range(vmf, folio, page, count, addr); *rss += count;`` for fault-around.

    Returns ``VM_FAULT_NOPAGE`` when the run covers ``vmf->address``. ``MM_FILEPAGES`` is added
    here (v6.18 adds the summed ``rss`` once per ``filemap_map_pages``; v6.6 in
    ``set_pte_range``; v5.12 in ``do_set_pte``: the total is the same).
    """
    set_pte_range(s, v, k0, count, fault_k, False, False)
    s.stats[Stat.MM_FILEPAGES] += count
    s.stats[Stat.FAULTAROUND_PAGES] += count
    # if (in_range(vmf->address, addr, count * PAGE_SIZE)) ret = VM_FAULT_NOPAGE;
    return VM_FAULT_NOPAGE if k0 <= fault_k < k0 + count else 0


def filemap_map_folio_range(
    s: SimState,
    v: int,
    f: int,
    head: int,
    order: int,
    start: int,
    k: int,
    nr_pages: int,
    file_end: int,
    fault_k: int,
) -> int:
    """Map ``nr_pages`` pages of a large folio, from its page ``start`` at VMA page ``k``.

    Parameters
    ----------
    s : SimState
    v, f : int
        VMA and file rows.
    head, order : int
        The folio (file index of its head, order).
    start : int
        First page to map, relative to the folio.
    k : int
        VMA page index of that page (``addr``).
    nr_pages : int
        Pages to map (the window, clamped to EOF).
    file_end : int
        Index of the file's last page (``DIV_ROUND_UP(i_size, PAGE_SIZE) - 1``).
    fault_k : int
        VMA page index of ``vmf->address``.

    Returns
    -------
    int
        ``VM_FAULT_NOPAGE`` if a run covered the faulting page.

    Notes
    -----
    ``filemap_map_folio_range()``, mm/filemap.c, Linux 6.18.5::

        addr0 = addr - start * PAGE_SIZE;
        if ((file_end >= folio_next_index(folio) || shmem_mapping(mapping)) &&
            folio_within_vma(folio, vmf->vma) &&
            (addr0 & PMD_MASK) == ((addr0 + folio_size(folio) - 1) & PMD_MASK)) {
            vmf->pte -= start; page -= start; addr = addr0;
            nr_pages = folio_nr_pages(folio);
        }
        do {
            if (PageHWPoison(page + count))
                goto skip;
            if (!folio_test_workingset(folio))
                (*mmap_miss)++;
            if (!pte_none(ptep_get(&vmf->pte[count])))
                goto skip;
            count++;
            continue;
    skip:
            if (count) {
                set_pte_range(vmf, folio, page, count, addr);
                ...
                if (in_range(vmf->address, addr, count * PAGE_SIZE))
                    ret = VM_FAULT_NOPAGE;
            }
            count++; page += count; vmf->pte += count; addr += count * PAGE_SIZE; count = 0;
        } while (--nr_pages > 0);

    v6.6: no whole-folio extension, and every candidate page counts in ``mmap_miss`` (the
    workingset exception came later).
    """
    profile = profile_of(s)
    vma = Vma.of(s, v)
    base = int(s.files[f, FileField.BASE])
    npages = 1 << int(order)
    start = int(start)
    addr = int(k)
    nr_pages = int(nr_pages)
    fault_k = int(fault_k)
    if profile >= Profile.LINUX_6_18:
        addr0 = addr - start
        # folio_within_vma(): in_range(folio->index, vm_pgoff, vma_pages) && vm_end - addr >= size
        within_vma = 0 <= head - vma.vm_pgoff < vma.pages() and vma.pages() - addr0 >= npages
        va0 = vma.vm_start + addr0
        one_pmd = (va0 >> 9) == ((va0 + npages - 1) >> 9)
        if file_end >= head + npages and within_vma and one_pmd:
            addr = addr0
            start = 0
            nr_pages = npages
    count_miss = profile < Profile.LINUX_6_18 or not (folio_flags(s, f, head) & PG.WORKINGSET)
    pte = s.pte
    pc_flags = s.pc_flags
    st = s.stats
    page = base + head + start
    ptep = vma.pte_base + addr
    ret = 0
    count = 0
    for _ in range(nr_pages):
        if pc_flags[page + count] & PG.HWPOISON:
            st[Stat.FAULTAROUND_SKIP_HWPOISON] += 1
        else:
            if count_miss:
                s.vmf[VMF_MMAP_MISS] += 1
            if pte[ptep + count] == 0:
                count += 1
                continue
            st[Stat.FAULTAROUND_SKIP_PRESENT] += 1
        # skip:
        if count:
            ret |= _map_run(s, v, addr, count, fault_k)
        count += 1
        page += count
        ptep += count
        addr += count
        count = 0
    if count:
        ret |= _map_run(s, v, addr, count, fault_k)
    return ret


def filemap_map_order0_folio(s: SimState, v: int, f: int, pgoff: int, k: int, fault_k: int) -> int:
    """Map one order-0 folio at VMA page ``k``.

    Notes
    -----
    ``filemap_map_order0_folio()``, mm/filemap.c, Linux 6.18.5::

        if (PageHWPoison(page))
            goto out;
        if (!folio_test_workingset(folio))
            (*mmap_miss)++;
        if (!pte_none(ptep_get(vmf->pte)))
            goto out;
        if (vmf->address == addr)
            ret = VM_FAULT_NOPAGE;
        set_pte_range(vmf, folio, page, 1, addr);

    v6.6 counts ``mmap_miss`` for every page.
    """
    page = int(s.files[f, FileField.BASE]) + int(pgoff)
    flags = int(s.pc_flags[page])
    if flags & PG.HWPOISON:
        s.stats[Stat.FAULTAROUND_SKIP_HWPOISON] += 1
        return 0
    if profile_of(s) < Profile.LINUX_6_18 or not (flags & PG.WORKINGSET):
        s.vmf[VMF_MMAP_MISS] += 1
    vma = Vma.of(s, v)
    if s.pte[vma.pte_base + int(k)] != 0:
        s.stats[Stat.FAULTAROUND_SKIP_PRESENT] += 1
        return 0
    return _map_run(s, v, int(k), 1, int(fault_k))


def _map_pages_v512(s: SimState, vmf: Vmf, start_pgoff: int, end_pgoff: int, fault_k: int) -> int:
    """v5.12 ``filemap_map_pages()`` (E2, page based; v5.15 text)::

        head = first_map_page(mapping, &xas, end_pgoff);
        if (!head) goto out;
        if (filemap_map_pmd(vmf, head)) { ret = VM_FAULT_NOPAGE; goto out; }
        ...
        do {
            page = find_subpage(head, xas.xa_index);
            if (PageHWPoison(page)) goto unlock;
            if (mmap_miss > 0) mmap_miss--;
            ...
            if (!pte_none(*vmf->pte)) goto unlock;
            if (vmf->address == addr) ret = VM_FAULT_NOPAGE;
            do_set_pte(vmf, page, addr);
            ...
        } while ((head = next_map_page(mapping, &xas, end_pgoff)) != NULL);
    out:
        WRITE_ONCE(file->f_ra.mmap_miss, mmap_miss);
    """
    vma = vmf.vma
    f = vma.file
    base = int(s.files[f, FileField.BASE])
    mmap_miss = int(s.files[f, FileField.MMAP_MISS])  # READ_ONCE(file->f_ra.mmap_miss)
    ret = 0
    pos = next_uptodate_folio(s, f, start_pgoff, end_pgoff)
    if pos >= 0:
        head, order = xa_load(s, f, pos)
        if filemap_map_pmd(s, vma.row, vmf.address, base + head, order):
            ret = VM_FAULT_NOPAGE
        else:
            while pos >= 0:
                if s.pc_flags[base + pos] & PG.HWPOISON:
                    s.stats[Stat.FAULTAROUND_SKIP_HWPOISON] += 1
                else:
                    if mmap_miss > 0:
                        mmap_miss -= 1
                    k = pos - vma.vm_pgoff
                    if s.pte[vma.pte_base + k] != 0:
                        s.stats[Stat.FAULTAROUND_SKIP_PRESENT] += 1
                    else:
                        ret |= _map_run(s, vma.row, k, 1, fault_k)  # do_set_pte(vmf, page, addr)
                pos = next_uptodate_folio(s, f, pos + 1, end_pgoff)
    s.files[f, FileField.MMAP_MISS] = mmap_miss
    return ret


def filemap_map_pages(s: SimState, v: int, start_pgoff: int, end_pgoff: int, fault_k: int, fault_vpn: int) -> int:
    """Fault-around's ``->map_pages``: map the cached, uptodate pages of ``[start_pgoff, end_pgoff]``.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    start_pgoff, end_pgoff : int
        File window (inclusive).
    fault_k, fault_vpn : int
        The faulting page as a VMA page index and as a virtual page number.

    Returns
    -------
    int
        ``VM_FAULT_NOPAGE`` when the PTE or PMD covering the faulting page was installed here.

    Notes
    -----
    ``filemap_map_pages(vmf, start_pgoff, end_pgoff)``, mm/filemap.c, Linux 6.18.5::

        folio = next_uptodate_folio(&xas, mapping, end_pgoff);
        if (!folio) goto out;
        file_end = DIV_ROUND_UP(i_size_read(mapping->host), PAGE_SIZE) - 1;
        end_pgoff = min(end_pgoff, file_end);
        if ((file_end >= folio_next_index(folio) || shmem_mapping(mapping)) &&
            filemap_map_pmd(vmf, folio, start_pgoff)) {
            ret = VM_FAULT_NOPAGE;
            goto out;
        }
        addr = vma->vm_start + ((start_pgoff - vma->vm_pgoff) << PAGE_SHIFT);
        vmf->pte = pte_offset_map_lock(vma->vm_mm, vmf->pmd, addr, &vmf->ptl);
        if (!vmf->pte) { ... goto out; }
        do {
            ...
            end = folio_next_index(folio) - 1;
            nr_pages = min(end, end_pgoff) - xas.xa_index + 1;
            if (!folio_test_large(folio))
                ret |= filemap_map_order0_folio(vmf, folio, addr, &rss, &mmap_miss);
            else
                ret |= filemap_map_folio_range(vmf, folio, xas.xa_index - folio->index, addr,
                                               nr_pages, &rss, &mmap_miss, file_end);
        } while ((folio = next_uptodate_folio(&xas, mapping, end_pgoff)) != NULL);
    out:
        mmap_miss_saved = READ_ONCE(file->f_ra.mmap_miss);
        if (mmap_miss >= mmap_miss_saved)
            WRITE_ONCE(file->f_ra.mmap_miss, 0);
        else
            WRITE_ONCE(file->f_ra.mmap_miss, mmap_miss_saved - mmap_miss);

    ``file_end`` is the index of the last page, so a folio ending exactly at EOF fails the
    ``file_end >= folio_next_index`` test: no PMD attempt, and its prealloc table is not installed
    (``pte_offset_map_lock`` then finds no table and nothing is mapped). v6.6: no i_size logic at
    all (``filemap_map_pmd`` always tried, ``end_pgoff`` not clamped, so a folio straddling EOF is
    PTE-mapped past it). v5.12: see :func:`_map_pages_v512`.
    """
    profile = profile_of(s)
    vmf = Vmf.at(s, v, fault_vpn)
    if profile == Profile.LINUX_5_12:
        return _map_pages_v512(s, vmf, int(start_pgoff), int(end_pgoff), int(fault_k))
    vma = vmf.vma
    f = vma.file
    base = int(s.files[f, FileField.BASE])
    end_pgoff = int(end_pgoff)
    s.vmf[VMF_MMAP_MISS] = 0  # unsigned short mmap_miss = 0
    ret = 0
    pos = next_uptodate_folio(s, f, int(start_pgoff), end_pgoff)
    if pos >= 0:
        head, order = xa_load(s, f, pos)
        file_end = _div_round_up_pages(int(s.files[f, FileField.ISIZE])) - 1
        if profile >= Profile.LINUX_6_18:
            end_pgoff = min(end_pgoff, file_end)
            try_pmd = file_end >= head + (1 << order)  # ... || shmem_mapping(mapping)
        else:
            try_pmd = True
        if try_pmd and filemap_map_pmd(s, v, vmf.address, base + head, order):
            ret = VM_FAULT_NOPAGE
        elif not pmd_none(s, vmf.pmd) and not pmd_trans_huge(s, vmf.pmd):  # pte_offset_map_lock()
            while pos >= 0:
                head, order = xa_load(s, f, pos)
                next_index = head + (1 << order)  # folio_next_index(folio)
                nr_pages = min(next_index - 1, end_pgoff) - pos + 1
                if order == 0:
                    ret |= filemap_map_order0_folio(s, v, f, pos, pos - vma.vm_pgoff, fault_k)
                else:
                    ret |= filemap_map_folio_range(
                        s, v, f, head, order, pos - head, pos - vma.vm_pgoff, nr_pages, file_end, fault_k
                    )
                pos = next_uptodate_folio(s, f, next_index, end_pgoff)
    mmap_miss = int(s.vmf[VMF_MMAP_MISS])
    saved = int(s.files[f, FileField.MMAP_MISS])
    s.files[f, FileField.MMAP_MISS] = 0 if mmap_miss >= saved else saved - mmap_miss
    return ret


def do_sync_mmap_readahead(s: SimState, v: int, f: int, pgoff: int, *, tried: bool = False) -> bool:
    """Readahead for a fault on a page that is not in the page cache.

    Parameters
    ----------
    s : SimState
    v, f : int
        VMA and file rows.
    pgoff : int
        ``vmf->pgoff``.
    tried : bool
        ``FAULT_FLAG_TRIED``: the mmap/VMA lock may not be dropped again.

    Returns
    -------
    bool
        True when the fault lock was dropped for the I/O (``fpin`` returned).

    Notes
    -----
    ``do_sync_mmap_readahead()``, mm/filemap.c, Linux 6.18.5::

        if ((vm_flags & VM_HUGEPAGE) && HPAGE_PMD_ORDER <= MAX_PAGECACHE_ORDER) {
            fpin = maybe_unlock_mmap_for_io(vmf, fpin);
            ractl._index &= ~((unsigned long)HPAGE_PMD_NR - 1);
            ra->size = HPAGE_PMD_NR;
            if (!(vm_flags & VM_RAND_READ))
                ra->size *= 2;
            ra->async_size = HPAGE_PMD_NR;
            ra->order = HPAGE_PMD_ORDER;
            page_cache_ra_order(&ractl, ra);
            return fpin;
        }
        if ((vm_flags & (VM_RAND_READ | VM_EXEC)) == VM_RAND_READ)
            return fpin;
        if (!ra->ra_pages)
            return fpin;
        if (vm_flags & VM_SEQ_READ) {
            fpin = maybe_unlock_mmap_for_io(vmf, fpin);
            page_cache_sync_ra(&ractl, ra->ra_pages);
            return fpin;
        }
        mmap_miss = READ_ONCE(ra->mmap_miss);
        if (mmap_miss < MMAP_LOTSAMISS * 10)
            WRITE_ONCE(ra->mmap_miss, ++mmap_miss);
        if (mmap_miss > MMAP_LOTSAMISS)
            return fpin;
        if (vm_flags & VM_EXEC) {
            ra->order = exec_folio_order();
            ra->start = round_down(vmf->pgoff, 1UL << ra->order);
            ra->start = max(ra->start, start);
            ra_end = round_up(ra->start + ra->ra_pages, 1UL << ra->order);
            ra_end = min(ra_end, end);
            ra->size = ra_end - ra->start;
            ra->async_size = 0;
        } else {
            ra->start = max_t(long, 0, vmf->pgoff - ra->ra_pages / 2);
            ra->size = ra->ra_pages;
            ra->async_size = ra->ra_pages / 4;
            ra->order = 0;
        }
        fpin = maybe_unlock_mmap_for_io(vmf, fpin);
        ractl._index = ra->start;
        page_cache_ra_order(&ractl, ra);

    The VM_HUGEPAGE branch does not look at ``mapping_max_folio_order`` (``page_cache_ra_order``
    falls back to order-0 pages) and does not set ``ra->start``. Profiles: the VM_HUGEPAGE branch
    arrived in v5.18 (absent in v5.12); the VM_EXEC branch in v6.16 (before it VM_RAND_READ alone
    returns). ``maybe_unlock_mmap_for_io`` drops the lock only on the first attempt.
    """
    files = s.files
    vma = Vma.of(s, v)
    vm_flags = vma.vm_flags
    profile = profile_of(s)
    first_attempt = not tried  # fault_flag_allow_retry_first(vmf->flags)
    if profile >= Profile.LINUX_6_6 and (vm_flags & VmaFlag.HUGEPAGE):
        index = int(pgoff) & ~(HPAGE_PMD_NR - 1)
        files[f, FileField.RA_SIZE] = HPAGE_PMD_NR if vm_flags & VmaFlag.RAND_READ else 2 * HPAGE_PMD_NR
        files[f, FileField.RA_ASYNC] = HPAGE_PMD_NR
        files[f, FileField.RA_ORDER] = HPAGE_PMD_ORDER
        s.stats[Stat.RA_SYNC] += 1
        page_cache_ra_order(s, f, index)
        return first_attempt
    exec_readaround = profile >= Profile.LINUX_6_18 and bool(vm_flags & VmaFlag.EXEC)
    if (vm_flags & VmaFlag.RAND_READ) and not exec_readaround:
        return False
    ra_pages = int(files[f, FileField.RA_PAGES])
    if ra_pages == 0:
        return False
    if vm_flags & VmaFlag.SEQ_READ:
        s.stats[Stat.RA_SYNC] += 1
        page_cache_sync_ra(s, f, int(pgoff), ra_pages)
        return first_attempt
    mmap_miss = int(files[f, FileField.MMAP_MISS])
    if mmap_miss < MMAP_LOTSAMISS * 10:
        mmap_miss += 1
        files[f, FileField.MMAP_MISS] = mmap_miss
    if mmap_miss > MMAP_LOTSAMISS:
        s.stats[Stat.RA_NO_READAROUND] += 1
        return False
    if exec_readaround:
        order = int(s.cfg[Cfg.EXEC_ORDER])  # exec_folio_order()
        start = vma.vm_pgoff
        end = start + vma.pages()
        ra_start = max(int(pgoff) & ~((1 << order) - 1), start)
        ra_end = (ra_start + ra_pages + (1 << order) - 1) & ~((1 << order) - 1)
        ra_end = min(ra_end, end)
        files[f, FileField.RA_ORDER] = order
        files[f, FileField.RA_START] = ra_start
        files[f, FileField.RA_SIZE] = ra_end - ra_start
        files[f, FileField.RA_ASYNC] = 0
    else:
        files[f, FileField.RA_START] = max(0, int(pgoff) - ra_pages // 2)
        files[f, FileField.RA_SIZE] = ra_pages
        files[f, FileField.RA_ASYNC] = ra_pages // 4
        files[f, FileField.RA_ORDER] = 0
    s.stats[Stat.RA_SYNC] += 1
    page_cache_ra_order(s, f, int(files[f, FileField.RA_START]))
    return first_attempt


def do_async_mmap_readahead(s: SimState, v: int, f: int, head: int, order: int, pgoff: int) -> bool:
    """Readahead for a fault on a cached page: mmap hit accounting and the ``PG_readahead`` marker.

    Returns
    -------
    bool
        True when the fault lock was dropped for I/O (a ``PG_readahead`` hit).

    Notes
    -----
    ``do_async_mmap_readahead(vmf, folio)``, mm/filemap.c, Linux 6.18.5 (called only when
    ``!(vmf->flags & FAULT_FLAG_TRIED)``, so ``maybe_unlock_mmap_for_io`` always drops)::

        if (vmf->vma->vm_flags & VM_RAND_READ || !ra->ra_pages)
            return fpin;
        if (likely(!folio_test_locked(folio))) {
            mmap_miss = READ_ONCE(ra->mmap_miss);
            if (mmap_miss)
                WRITE_ONCE(ra->mmap_miss, --mmap_miss);
        }
        if (folio_test_readahead(folio)) {
            fpin = maybe_unlock_mmap_for_io(vmf, fpin);
            page_cache_async_ra(&ractl, folio, ra->ra_pages);
        }

    The locked-folio exception is a 6.18.y fix; v6.6 and v5.12 decrement unconditionally.
    """
    files = s.files
    if (int(s.vmas[v, VmaField.FLAGS]) & VmaFlag.RAND_READ) or int(files[f, FileField.RA_PAGES]) == 0:
        return False
    flags = folio_flags(s, f, head)
    if profile_of(s) < Profile.LINUX_6_18 or not (flags & PG.LOCKED):
        mmap_miss = int(files[f, FileField.MMAP_MISS])
        if mmap_miss:
            files[f, FileField.MMAP_MISS] = mmap_miss - 1
    if flags & PG.READAHEAD:
        page_cache_async_ra(s, f, head, order, int(pgoff))
        return True
    return False


def filemap_fault(s: SimState, v: int, pgoff: int, tried: bool) -> int:
    """``->fault``: find or read the faulting page.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    pgoff : int
        ``vmf->pgoff``.
    tried : bool
        ``vmf->flags & FAULT_FLAG_TRIED``.

    Returns
    -------
    int
        ``VM_FAULT_*`` bits: 0 (page found, ``VM_FAULT_LOCKED``), ``VM_FAULT_MAJOR``,
        ``VM_FAULT_MAJOR | VM_FAULT_RETRY``, ``VM_FAULT_RETRY`` or ``VM_FAULT_SIGBUS``.

    Notes
    -----
    ``filemap_fault(vmf)``, mm/filemap.c, Linux 6.18.5 (abridged)::

        max_idx = DIV_ROUND_UP(i_size_read(inode), PAGE_SIZE);
        if (unlikely(index >= max_idx))
            return VM_FAULT_SIGBUS;
        folio = filemap_get_folio(mapping, index);
        if (likely(!IS_ERR(folio))) {
            if (!(vmf->flags & FAULT_FLAG_TRIED))
                fpin = do_async_mmap_readahead(vmf, folio);
            if (unlikely(!folio_test_uptodate(folio))) { ... mapping_locked = true; }
        } else {
            ...
            count_vm_event(PGMAJFAULT);
            ret = VM_FAULT_MAJOR;
            fpin = do_sync_mmap_readahead(vmf);
    retry_find:
            ...
            folio = __filemap_get_folio(mapping, index, FGP_CREAT|FGP_FOR_MMAP, vmf->gfp_mask);
        }
        if (!lock_folio_maybe_drop_mmap(vmf, folio, &fpin))
            goto out_retry;
        ...
        if (unlikely(!folio_test_uptodate(folio))) {
            ...
            goto page_not_uptodate;
        }
        if (fpin) {
            folio_unlock(folio);
            goto out_retry;
        }
        ...
        return ret | VM_FAULT_LOCKED;
    page_not_uptodate:
        fpin = maybe_unlock_mmap_for_io(vmf, fpin);
        error = filemap_read_folio(file, mapping->a_ops->read_folio, folio);
        if (fpin)
            goto out_retry;
        ...
        goto retry_find;
    out_retry:
        ...
        return ret | VM_FAULT_RETRY;

    ``lock_folio_maybe_drop_mmap`` drops the lock (on the first attempt) before sleeping on a
    locked folio. The simulated I/O holder finishes at once: the folio comes back unlocked and
    uptodate. A folio created by ``FGP_CREAT`` is read through ``page_not_uptodate``.
    """
    vma = Vma.of(s, v)
    f = vma.file
    base = int(s.files[f, FileField.BASE])
    index = int(pgoff)
    first_attempt = not tried
    max_idx = _div_round_up_pages(int(s.files[f, FileField.ISIZE]))
    if index >= max_idx:
        return VM_FAULT_SIGBUS
    ret = 0
    fpin = False
    not_uptodate = False
    entry = xa_load(s, f, index)
    if entry is not None:
        head, order = entry
        if not tried:
            fpin = do_async_mmap_readahead(s, v, f, head, order, index)
        not_uptodate = not (folio_flags(s, f, head) & PG.UPTODATE)
    else:
        # filemap_fault_recheck_pte_none(): only for VM_LOCKED VMAs (not simulated)
        s.stats[Stat.PGMAJFAULT] += 1
        ret = VM_FAULT_MAJOR
        fpin = do_sync_mmap_readahead(s, v, f, index, tried=tried)
        # retry_find: __filemap_get_folio(FGP_CREAT | FGP_FOR_MMAP)
        entry = xa_load(s, f, index)
        if entry is None:
            filemap_add_folio(s, f, index, 0, False)  # a new folio, read below
            entry = xa_load(s, f, index)
            not_uptodate = True
        else:
            not_uptodate = not (folio_flags(s, f, entry[0]) & PG.UPTODATE)
    head, _order = entry
    # lock_folio_maybe_drop_mmap(): folio_trylock() fails on a locked folio
    if folio_flags(s, f, head) & PG.LOCKED:
        if first_attempt:
            fpin = True  # *fpin = maybe_unlock_mmap_for_io(vmf, *fpin);
        # __folio_lock(): the lock holder completes its read and unlocks
        s.pc_flags[base + head] = (int(s.pc_flags[base + head]) & ~PG.LOCKED) | PG.UPTODATE
        not_uptodate = False
    if not_uptodate:
        # page_not_uptodate: fpin = maybe_unlock_mmap_for_io(vmf, fpin); filemap_read_folio()
        if first_attempt:
            fpin = True
        s.pc_flags[base + head] |= PG.UPTODATE
        if fpin:
            return ret | VM_FAULT_RETRY
        # goto retry_find: the folio is found uptodate
    if fpin:
        return ret | VM_FAULT_RETRY
    return ret
