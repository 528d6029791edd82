"""``mm/memory.c``: the fault handlers from ``handle_mm_fault`` down to ``finish_fault``, in plain Python.

Written from the Linux 6.18.5 text (the upstream 6.18.5 release tarball) with the v6.6 and v5.12 differences as profile
branches. Functions keep the signatures of :mod:`fastfault.fault.memory`; the extra keyword
``vma_lock`` says that the attempt runs under the per-VMA lock (``FAULT_FLAG_VMA_LOCK``), which
only changes anything in the v6.6 profile.

Notes
-----
Per-VMA locks (``CONFIG_PER_VMA_LOCK``, v6.4+): the arch fault handler first tries
``handle_mm_fault()`` under the VMA lock; a ``VM_FAULT_RETRY`` sends it to the mmap_lock path. In
v6.6 every path that has to call ``->fault`` or ``->page_mkwrite`` (and a COW without an
``anon_vma``) gives up under the VMA lock and returns ``VM_FAULT_RETRY`` (v6.7 moved read, COW and
shared faults under the VMA lock: ``vmf_can_call_fault()``). v5.12 has no per-VMA lock.
"""

from __future__ import annotations

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
from kernels_py.filemap import (
    VM_FAULT_ERROR,
    VM_FAULT_HWPOISON,
    VM_FAULT_MAJOR,
    VM_FAULT_NOPAGE,
    VM_FAULT_RETRY,
    filemap_fault,
    filemap_map_pages,
)
from kernels_py.pgtable import (
    CONT_PTES,
    VM_ANON_VMA_PREPARED,
    VM_FAULT_FALLBACK,
    Vma,
    Vmf,
    contpte_block,
    contpte_unfold,
    do_set_pmd,
    pmd_install,
    pmd_none,
    pmd_trans_huge,
    profile_of,
    set_pte_range,
)
from kernels_py.readahead import xa_load

__all__ = [
    "__do_fault",
    "__handle_mm_fault",
    "do_cow_fault",
    "do_fault",
    "do_fault_around",
    "do_read_fault",
    "do_shared_fault",
    "do_wp_page",
    "finish_fault",
    "handle_mm_fault",
]


def _fault_around_pages(s: SimState) -> int:
    return int(s.cfg[Cfg.FA_PAGES])


def do_fault_around(s: SimState, v: int, k: int, vpn: int, pgoff: int) -> int:
    """Map the cached pages around a read fault: compute the window, call ``->map_pages``.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    k : int
        VMA page index of the fault.
    vpn : int
        ``vmf->address`` (page number).
    pgoff : int
        ``vmf->pgoff``.

    Returns
    -------
    int
        ``filemap_map_pages()``'s result (``VM_FAULT_NOPAGE`` when the faulting page got mapped).

    Notes
    -----
    ``do_fault_around(vmf)``, mm/memory.c, Linux 6.18.5 (same in v6.6)::

        pgoff_t nr_pages = READ_ONCE(fault_around_pages);
        pgoff_t pte_off = pte_index(vmf->address);
        /* The page offset of vmf->address within the VMA. */
        pgoff_t vma_off = vmf->pgoff - vmf->vma->vm_pgoff;
        /* The PTE offset of the start address, clamped to the VMA. */
        from_pte = max(ALIGN_DOWN(pte_off, nr_pages), pte_off - min(pte_off, vma_off));
        /* The PTE offset of the end address, clamped to the VMA and PTE. */
        to_pte = min3(from_pte + nr_pages, (pgoff_t)PTRS_PER_PTE,
                      pte_off + vma_pages(vmf->vma) - vma_off) - 1;
        if (pmd_none(*vmf->pmd)) {
            vmf->prealloc_pte = pte_alloc_one(vmf->vma->vm_mm);
            ...
        }
        ret = vmf->vma->vm_ops->map_pages(vmf, vmf->pgoff + from_pte - pte_off,
                                          vmf->pgoff + to_pte - pte_off);

    v5.12 uses the older mask form (v5.1x text)::

        mask = ~(nr_pages * PAGE_SIZE - 1) & PAGE_MASK;
        address = max(address & mask, vmf->vma->vm_start);
        off = ((vmf->address - address) >> PAGE_SHIFT) & (PTRS_PER_PTE - 1);
        start_pgoff -= off;
        end_pgoff = start_pgoff - ((address >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)) + PTRS_PER_PTE - 1;
        end_pgoff = min3(end_pgoff, vma_pages(vmf->vma) + vmf->vma->vm_pgoff - 1,
                         start_pgoff + nr_pages - 1);

    Counters: ``FAULTAROUND_CALLS``, the window size in ``fa_hist``, ``FAULTAROUND_NOPAGE``.
    """
    vmf = Vmf.at(s, v, vpn)
    vma = vmf.vma
    pgoff = int(pgoff)
    nr_pages = _fault_around_pages(s)
    if profile_of(s) == Profile.LINUX_5_12:
        mask = ~(nr_pages - 1)
        address = max(vmf.address & mask, vma.vm_start)
        off = (vmf.address - address) & (PTRS_PER_PTE - 1)
        start_pgoff = pgoff - off
        end_pgoff = start_pgoff - (address & (PTRS_PER_PTE - 1)) + PTRS_PER_PTE - 1
        end_pgoff = min(end_pgoff, vma.pages() + vma.vm_pgoff - 1, start_pgoff + nr_pages - 1)
    else:
        pte_off = vmf.address & (PTRS_PER_PTE - 1)
        vma_off = pgoff - vma.vm_pgoff
        from_pte = max(pte_off & ~(nr_pages - 1), pte_off - min(pte_off, vma_off))
        to_pte = min(from_pte + nr_pages, PTRS_PER_PTE, pte_off + vma.pages() - vma_off) - 1
        start_pgoff = pgoff + from_pte - pte_off
        end_pgoff = pgoff + to_pte - pte_off
    if pmd_none(s, vmf.pmd):
        vmf.prealloc_pte = True  # pte_alloc_one()
        s.stats[Stat.PREALLOC_PTE] += 1
    s.stats[Stat.FAULTAROUND_CALLS] += 1
    s.fa_hist[end_pgoff - start_pgoff + 1] += 1
    ret = filemap_map_pages(s, v, start_pgoff, end_pgoff, int(k), vmf.address)
    if ret:
        s.stats[Stat.FAULTAROUND_NOPAGE] += 1
    return ret


def _should_fault_around(s: SimState, vma: Vma) -> bool:
    """``should_fault_around(vmf)``, mm/memory.c, Linux 6.18.5::

        if (!vmf->vma->vm_ops->map_pages) return false;
        if (uffd_disable_fault_around(vmf->vma)) return false;   /* VM_UFFD_WP | VM_UFFD_MINOR */
        return fault_around_pages > 1;

    (The v5.1x text tests ``fault_around_bytes >> PAGE_SHIFT > 1`` and ``!userfaultfd_minor()``.)
    """
    if vma.vm_flags & VmaFlag.UFFD:
        return False
    return _fault_around_pages(s) > 1


def finish_fault(s: SimState, v: int, k: int, vpn: int, pgoff: int, write: bool, is_cow: bool) -> int:
    """Map the page ``->fault`` returned (or its COW copy) after a fault.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    k, vpn, pgoff : int
        The faulting page: VMA page index, virtual page number, file page.
    write : bool
        ``FAULT_FLAG_WRITE``.
    is_cow : bool
        ``write && !(vma->vm_flags & VM_SHARED)``: map ``vmf->cow_page``, a new order-0 anon folio.

    Returns
    -------
    int
        0, or ``VM_FAULT_NOPAGE`` when the PTE had changed or no PTE table can be mapped.

    Notes
    -----
    ``finish_fault(vmf)``, mm/memory.c, Linux 6.18.5 (abridged)::

        fallback:
        addr = vmf->address;
        page = is_cow ? vmf->cow_page : vmf->page;
        folio = page_folio(page);
        if (!needs_fallback && vma->vm_file) {
            file_end = DIV_ROUND_UP(i_size_read(mapping->host), PAGE_SIZE);
            needs_fallback = !shmem_mapping(mapping) && file_end < folio_next_index(folio);
        }
        if (pmd_none(*vmf->pmd)) {
            if (!needs_fallback && folio_test_pmd_mappable(folio)) {
                ret = do_set_pmd(vmf, folio, page);
                if (ret != VM_FAULT_FALLBACK)
                    return ret;
            }
            if (vmf->prealloc_pte)
                pmd_install(vma->vm_mm, vmf->pmd, &vmf->prealloc_pte);
            else if (unlikely(pte_alloc(vma->vm_mm, vmf->pmd)))
                return VM_FAULT_OOM;
        }
        nr_pages = folio_nr_pages(folio);
        /* Using per-page fault to maintain the uffd semantics */
        if (unlikely(userfaultfd_armed(vma)) || unlikely(needs_fallback)) {
            nr_pages = 1;
        } else if (nr_pages > 1) {
            pgoff_t idx = folio_page_idx(folio, page);
            pgoff_t vma_off = vmf->pgoff - vmf->vma->vm_pgoff;
            pgoff_t pte_off = pte_index(vmf->address);
            if (unlikely(vma_off < idx ||
                    vma_off + (nr_pages - idx) > vma_pages(vma) ||
                    pte_off < idx ||
                    pte_off + (nr_pages - idx)  > PTRS_PER_PTE)) {
                nr_pages = 1;
            } else {
                addr = vmf->address - idx * PAGE_SIZE;
                page = &folio->page;
            }
        }
        vmf->pte = pte_offset_map_lock(vma->vm_mm, vmf->pmd, addr, &vmf->ptl);
        if (!vmf->pte)
            return VM_FAULT_NOPAGE;
        if (nr_pages == 1 && unlikely(vmf_pte_changed(vmf))) {
            ret = VM_FAULT_NOPAGE;
            goto unlock;
        } else if (nr_pages > 1 && !pte_range_none(vmf->pte, nr_pages)) {
            needs_fallback = true;
            pte_unmap_unlock(vmf->pte, vmf->ptl);
            goto fallback;
        }
        folio_ref_add(folio, nr_pages - 1);
        set_pte_range(vmf, folio, page, nr_pages, addr);
        add_mm_counter(vma->vm_mm, type, nr_pages);

    The COW folio is order 0, so ``needs_fallback`` cannot change anything for it. v6.6: one PTE
    always, ``do_set_pmd`` tried for every large folio (no i_size test). v5.12 (f9ce0be71d1f as
    merged): the same, but the table comes from ``pte_alloc()`` even when ``vmf->prealloc_pte`` is
    set (the pre-allocated one is freed by ``do_fault``); a huge PMD appearing meanwhile returns 0.
    """
    profile = profile_of(s)
    vmf = Vmf.at(s, v, vpn, 1 if write else 0)
    vma = vmf.vma
    f = vma.file
    base = int(s.files[f, FileField.BASE])
    k = int(k)
    pgoff = int(pgoff)
    if is_cow != (bool(write) and not (vma.vm_flags & VmaFlag.SHARED)):
        raise ValueError("finish_fault: is_cow must be write && !VM_SHARED")
    if is_cow:
        head, order = pgoff, 0  # vmf->cow_page: a new order-0 anon folio
    else:
        head, order = xa_load(s, f, pgoff)  # page_folio(vmf->page)
    nr_folio = 1 << order
    needs_fallback = False
    if profile >= Profile.LINUX_6_18 and not is_cow:
        file_end = (int(s.files[f, FileField.ISIZE]) + 4095) >> 12
        needs_fallback = file_end < head + nr_folio  # file_end < folio_next_index(folio)
    while True:  # fallback:
        if pmd_none(s, vmf.pmd):
            mappable = order >= HPAGE_PMD_ORDER if profile >= Profile.LINUX_6_18 else order > 0
            if not needs_fallback and mappable:  # (v6.6/v5.12: PageTransCompound(page))
                ret = do_set_pmd(s, v, vmf.address, base + head, order, write)
                if ret != VM_FAULT_FALLBACK:
                    return ret
            if vmf.prealloc_pte and profile != Profile.LINUX_5_12:
                vmf.prealloc_pte = False  # pmd_install(vma->vm_mm, vmf->pmd, &vmf->prealloc_pte)
            pmd_install(s, vmf)  # ... else pte_alloc(vma->vm_mm, vmf->pmd)
        elif pmd_trans_huge(s, vmf.pmd):
            # v6.x: pte_offset_map_lock() fails on a huge PMD -> VM_FAULT_NOPAGE;
            # v5.12: if (pmd_devmap_trans_unstable(vmf->pmd)) return 0;
            return 0 if profile == Profile.LINUX_5_12 else VM_FAULT_NOPAGE
        nr_pages = nr_folio
        addr = k
        if profile < Profile.LINUX_6_18:
            nr_pages = 1
        elif (vma.vm_flags & VmaFlag.UFFD) or needs_fallback:  # userfaultfd_armed(vma)
            nr_pages = 1
        elif nr_pages > 1:
            idx = pgoff - head  # folio_page_idx(folio, page)
            vma_off = pgoff - vma.vm_pgoff
            pte_off = vmf.address & (PTRS_PER_PTE - 1)
            if (
                vma_off < idx
                or vma_off + (nr_pages - idx) > vma.pages()
                or pte_off < idx
                or pte_off + (nr_pages - idx) > PTRS_PER_PTE
            ):
                nr_pages = 1
            else:
                addr = k - idx  # addr = vmf->address - idx * PAGE_SIZE
        ptep = vma.pte_base + addr
        if nr_pages == 1:
            if s.pte[ptep] != 0:  # vmf_pte_changed(vmf): the PTE was none when we started
                return VM_FAULT_NOPAGE
        elif s.pte[ptep : ptep + nr_pages].any():  # !pte_range_none(vmf->pte, nr_pages)
            needs_fallback = True
            continue
        set_pte_range(s, v, addr, nr_pages, k, write, is_cow)
        s.stats[Stat.MM_ANONPAGES if is_cow else Stat.MM_FILEPAGES] += nr_pages
        return 0


def __do_fault(s: SimState, v: int, vpn: int, pgoff: int, tried: bool) -> int:
    """Pre-allocate a PTE table if the PMD is none, then call ``->fault`` (``filemap_fault``).

    Notes
    -----
    ``__do_fault(vmf)``, mm/memory.c, Linux 6.18.5::

        if (pmd_none(*vmf->pmd) && !vmf->prealloc_pte) {
            vmf->prealloc_pte = pte_alloc_one(vma->vm_mm);
            ...
        }
        ret = vma->vm_ops->fault(vmf);
        if (unlikely(ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY |
                            VM_FAULT_DONE_COW)))
            return ret;
        folio = page_folio(vmf->page);
        if (unlikely(PageHWPoison(vmf->page))) {
            ...
            return poisonret;    /* VM_FAULT_HWPOISON */
        }
    """
    vmf = Vmf.at(s, v, vpn)
    if pmd_none(s, vmf.pmd) and not vmf.prealloc_pte:
        vmf.prealloc_pte = True
        s.stats[Stat.PREALLOC_PTE] += 1
    ret = filemap_fault(s, v, pgoff, tried)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    f = vmf.vma.file
    if s.pc_flags[int(s.files[f, FileField.BASE]) + int(pgoff)] & PG.HWPOISON:
        return VM_FAULT_HWPOISON
    return ret


def do_read_fault(s: SimState, v: int, k: int, vpn: int, pgoff: int, tried: bool, vma_lock: bool = False) -> int:
    """Read fault on a missing PTE: fault-around first, then ``->fault`` and ``finish_fault``.

    Notes
    -----
    ``do_read_fault(vmf)``, mm/memory.c, Linux 6.18.5::

        if (should_fault_around(vmf)) {
            ret = do_fault_around(vmf);
            if (ret)
                return ret;
        }
        ret = vmf_can_call_fault(vmf);   /* 0: the file has ->map_pages */
        if (ret)
            return ret;
        ret = __do_fault(vmf);
        if (unlikely(ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY)))
            return ret;
        ret |= finish_fault(vmf);

    v6.6 instead has, after fault-around::

        if (vmf->flags & FAULT_FLAG_VMA_LOCK) {
            vma_end_read(vmf->vma);
            return VM_FAULT_RETRY;
        }

    Counters: ``FAULT_READ_FAULTAROUND`` (fault-around mapped the page), ``FAULT_READ_FINISH``
    (``->fault`` found the page; counted before ``finish_fault``).
    """
    vma = Vma.of(s, v)
    if _should_fault_around(s, vma):
        ret = do_fault_around(s, v, k, vpn, pgoff)
        if ret:
            s.stats[Stat.FAULT_READ_FAULTAROUND] += 1
            return ret
    if vma_lock and profile_of(s) == Profile.LINUX_6_6:
        return VM_FAULT_RETRY
    ret = __do_fault(s, v, vpn, pgoff, tried)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    s.stats[Stat.FAULT_READ_FINISH] += 1
    return ret | finish_fault(s, v, k, vpn, pgoff, False, False)


def _anon_vma_prepare(s: SimState, v: int) -> None:
    """``anon_vma_prepare(vma)`` / ``vmf_anon_prepare(vmf)``: the VMA gets an ``anon_vma``."""
    s.vmas[v, VmaField.FLAGS] |= VM_ANON_VMA_PREPARED


def do_cow_fault(s: SimState, v: int, k: int, vpn: int, pgoff: int, tried: bool, vma_lock: bool = False) -> int:
    """Write fault on a missing PTE of a private mapping: copy the page into a new anon page.

    Notes
    -----
    ``do_cow_fault(vmf)``, mm/memory.c, Linux 6.18.5::

        ret = vmf_can_call_fault(vmf);
        if (!ret)
            ret = vmf_anon_prepare(vmf);
        if (ret)
            return ret;
        folio = folio_prealloc(vma->vm_mm, vma, vmf->address, false);
        vmf->cow_page = &folio->page;
        ret = __do_fault(vmf);
        if (unlikely(ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY)))
            goto uncharge_out;
        ...
        ret |= finish_fault(vmf);

    ``vmf_anon_prepare`` under the VMA lock takes the mmap_lock with a trylock, which succeeds in a
    single-threaded process. v6.6 returns ``VM_FAULT_RETRY`` first under the VMA lock.
    """
    if vma_lock and profile_of(s) == Profile.LINUX_6_6:
        return VM_FAULT_RETRY
    _anon_vma_prepare(s, v)
    ret = __do_fault(s, v, vpn, pgoff, tried)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    s.stats[Stat.FAULT_COW] += 1
    return ret | finish_fault(s, v, k, vpn, pgoff, True, True)


def _folio_mark_dirty(s: SimState, f: int, pgoff: int) -> None:
    """``folio_mark_dirty()`` of the page-cache folio holding ``pgoff`` (``filemap_page_mkwrite``)."""
    entry = xa_load(s, f, pgoff)
    if entry is not None:
        s.pc_flags[int(s.files[f, FileField.BASE]) + entry[0]] |= PG.DIRTY


def do_shared_fault(s: SimState, v: int, k: int, vpn: int, pgoff: int, tried: bool, vma_lock: bool = False) -> int:
    """Write fault on a missing PTE of a shared mapping: ``page_mkwrite``, then map it writable.

    Notes
    -----
    ``do_shared_fault(vmf)``, mm/memory.c, Linux 6.18.5::

        ret = vmf_can_call_fault(vmf);
        if (ret)
            return ret;
        ret = __do_fault(vmf);
        if (unlikely(ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY)))
            return ret;
        folio = page_folio(vmf->page);
        if (vma->vm_ops->page_mkwrite) {
            folio_unlock(folio);
            tmp = do_page_mkwrite(vmf, folio);     /* filemap_page_mkwrite: folio_mark_dirty() */
            ...
        }
        ret |= finish_fault(vmf);
        ...
        ret |= fault_dirty_shared_page(vmf);

    v6.6 returns ``VM_FAULT_RETRY`` first under the VMA lock.
    """
    if vma_lock and profile_of(s) == Profile.LINUX_6_6:
        return VM_FAULT_RETRY
    ret = __do_fault(s, v, vpn, pgoff, tried)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    _folio_mark_dirty(s, int(s.vmas[v, VmaField.FILE]), int(pgoff))
    s.stats[Stat.FAULT_SHARED] += 1
    return ret | finish_fault(s, v, k, vpn, pgoff, True, False)


def do_fault(
    s: SimState, v: int, k: int, vpn: int, pgoff: int, write: bool, tried: bool, vma_lock: bool = False
) -> int:
    """Fault on a missing PTE of a file VMA: read, private write or shared write.

    Notes
    -----
    ``do_fault(vmf)``, mm/memory.c, Linux 6.18.5::

        } else if (!(vmf->flags & FAULT_FLAG_WRITE))
            ret = do_read_fault(vmf);
        else if (!(vma->vm_flags & VM_SHARED))
            ret = do_cow_fault(vmf);
        else
            ret = do_shared_fault(vmf);
        /* preallocated pagetable is unused: free it */
        if (vmf->prealloc_pte) {
            pte_free(vm_mm, vmf->prealloc_pte);
            vmf->prealloc_pte = NULL;
        }
    """
    flags = int(s.vmas[v, VmaField.FLAGS])
    if not write:
        ret = do_read_fault(s, v, k, vpn, pgoff, tried, vma_lock=vma_lock)
    elif not (flags & VmaFlag.SHARED):
        ret = do_cow_fault(s, v, k, vpn, pgoff, tried, vma_lock=vma_lock)
    else:
        ret = do_shared_fault(s, v, k, vpn, pgoff, tried, vma_lock=vma_lock)
    vmf = Vmf.at(s, v, vpn)
    if vmf.prealloc_pte:
        vmf.prealloc_pte = False
        s.stats[Stat.PREALLOC_PTE_FREED] += 1
    return ret


def do_wp_page(s: SimState, v: int, k: int, pgoff: int, vma_lock: bool = False) -> int:
    """Write to a present, read-only PTE: write-notify reuse (shared) or COW copy (private).

    Notes
    -----
    ``do_wp_page(vmf)``, mm/memory.c, Linux 6.18.5::

        if (vma->vm_flags & (VM_SHARED | VM_MAYSHARE)) {
            ...
            return wp_page_shared(vmf, folio);
        }
        if (folio && folio_test_anon(folio) &&
            (PageAnonExclusive(vmf->page) || wp_can_reuse_anon_folio(folio, vma))) {
            ...
            wp_page_reuse(vmf, folio);
            return 0;
        }
        ...
        return wp_page_copy(vmf);

    ``wp_page_shared`` calls ``->page_mkwrite`` (``filemap_page_mkwrite``: ``folio_mark_dirty``)
    and ``wp_page_reuse``: ``entry = pte_mkyoung(vmf->orig_pte); entry =
    maybe_mkwrite(pte_mkdirty(entry), vma);``. ``wp_page_copy`` maps a new anon page
    (``pte_sw_mkyoung``, ``maybe_mkwrite(pte_mkdirty())``) and moves one page from
    ``MM_FILEPAGES`` to ``MM_ANONPAGES``. On arm64 (v6.9+) a contpte block holding the PTE is
    unfolded first (``__contpte_try_unfold``: the block's young/dirty bits are ORed into every
    PTE). v6.6 returns ``VM_FAULT_RETRY`` under the VMA lock in
    ``wp_page_shared`` (``->page_mkwrite``) and before copying when ``!vma->anon_vma``.
    """
    vma = Vma.of(s, v)
    p = vma.pte_base + int(k)
    v66_vma_lock = vma_lock and profile_of(s) == Profile.LINUX_6_6
    if int(s.pte[p]) & PTE.CONT and not v66_vma_lock:
        # wp_page_reuse()'s ptep_set_access_flags() changes the write bit / wp_page_copy()'s
        # ptep_clear_flush(): either way the contpte block is unfolded first
        contpte_unfold(s, vma, int(k))
    e = int(s.pte[p])
    mkwrite = PTE.WRITE if vma.vm_flags & VmaFlag.WRITE else 0
    if vma.vm_flags & VmaFlag.SHARED:
        if v66_vma_lock:
            return VM_FAULT_RETRY
        _folio_mark_dirty(s, vma.file, int(pgoff))  # do_page_mkwrite()
        s.pte[p] = (e & ~PTE.UNTOUCHED) | PTE.YOUNG | PTE.DIRTY | mkwrite  # wp_page_reuse()
        s.stats[Stat.FAULT_WP_SHARED] += 1
        return 0
    if e & PTE.ANON:
        # an exclusive anon page of this process: wp_page_reuse()
        s.pte[p] = (e & ~PTE.UNTOUCHED) | PTE.YOUNG | PTE.DIRTY | mkwrite
        s.stats[Stat.FAULT_WP_COW] += 1
        return 0
    if v66_vma_lock and not (vma.vm_flags & VM_ANON_VMA_PREPARED):
        return VM_FAULT_RETRY  # copy: if ((vmf->flags & FAULT_FLAG_VMA_LOCK) && !vma->anon_vma)
    _anon_vma_prepare(s, v)
    s.pte[p] = PTE.PRESENT | PTE.YOUNG | PTE.DIRTY | mkwrite | PTE.ANON  # wp_page_copy()
    s.stats[Stat.MM_FILEPAGES] -= 1
    s.stats[Stat.MM_ANONPAGES] += 1
    s.stats[Stat.FAULT_WP_COW] += 1
    return 0


def _split_file_pmd(s: SimState, vmf: Vmf) -> None:
    """``__split_huge_pmd_locked()`` for a file VMA: the PMD is zapped, not split into PTEs::

    if (!vma_is_anonymous(vma)) {
        old_pmd = pmdp_huge_clear_flush(vma, haddr, pmd);
        ...
        if (!folio_test_dirty(folio) && pmd_dirty(old_pmd))
            folio_mark_dirty(folio);
        if (!folio_test_referenced(folio) && pmd_young(old_pmd))
            folio_set_referenced(folio);
        folio_remove_rmap_pmd(folio, page, vma);
        ...
        add_mm_counter(mm, mm_counter_file(folio), -HPAGE_PMD_NR);
        return;
    }
    """
    old_pmd = int(s.pmd[vmf.pmd])
    s.pmd[vmf.pmd] = PMD.NONE
    f = vmf.vma.file
    head_pgoff = vmf.pgoff & ~(HPAGE_PMD_NR - 1)
    entry = xa_load(s, f, head_pgoff)
    if entry is not None:
        head = int(s.files[f, FileField.BASE]) + entry[0]
        if old_pmd & PMD.DIRTY:
            s.pc_flags[head] |= PG.DIRTY
        if old_pmd & PMD.YOUNG:
            s.pc_flags[head] |= PG.REFERENCED
    s.stats[Stat.MM_FILEPAGES] -= HPAGE_PMD_NR
    s.stats[Stat.PMD_SPLIT] += 1


def __handle_mm_fault(
    s: SimState, v: int, k: int, vpn: int, pgoff: int, write: bool, tried: bool, vma_lock: bool = False
) -> int:
    """One attempt at a fault on a file VMA: the PMD level, then ``handle_pte_fault``.

    Notes
    -----
    ``__handle_mm_fault(vma, address, flags)``, mm/memory.c, Linux 6.18.5::

        if (pmd_none(*vmf.pmd) &&
            thp_vma_allowable_order(vma, vm_flags, TVA_PAGEFAULT, PMD_ORDER)) {
            ret = create_huge_pmd(&vmf);     /* no ->huge_fault for page-cache files */
            if (!(ret & VM_FAULT_FALLBACK))
                return ret;
        } else {
            ...
            if (pmd_trans_huge(vmf.orig_pmd)) {
                ...
                if ((flags & (FAULT_FLAG_WRITE|FAULT_FLAG_UNSHARE)) &&
                    !pmd_write(vmf.orig_pmd)) {
                    ret = wp_huge_pmd(&vmf);       /* file: __split_huge_pmd(), FALLBACK */
                    if (!(ret & VM_FAULT_FALLBACK))
                        return ret;
                } else {
                    huge_pmd_set_accessed(&vmf);
                    return 0;
                }
            }
        }
        return handle_pte_fault(&vmf);

    ``handle_pte_fault(vmf)``::

        if (!vmf->pte)
            return do_pte_missing(vmf);          /* -> do_fault() */
        ...
        if (vmf->flags & (FAULT_FLAG_WRITE|FAULT_FLAG_UNSHARE)) {
            if (!pte_write(entry))
                return do_wp_page(vmf);
            else if (likely(vmf->flags & FAULT_FLAG_WRITE))
                entry = pte_mkdirty(entry);
        }
        entry = pte_mkyoung(entry);
        if (ptep_set_access_flags(vmf->vma, vmf->address, vmf->pte, entry, ...))

    On a contpte block ``ptep_set_access_flags()`` is ``contpte_ptep_set_access_flags()``, which
    sets the bits on all 16 PTEs (the write bit does not change here). Counters:
    ``FAULT_PMD_WP``/``PMD_SPLIT`` for the split, ``FAULT_AF`` (and
    ``OLD_TO_YOUNG_FAULT`` when the entry was old) for the access-flag path.
    """
    vmf = Vmf.at(s, v, vpn, 1 if write else 0)
    slot = vmf.pmd
    if pmd_trans_huge(s, slot):
        pmdv = int(s.pmd[slot])
        if write and not (pmdv & PMD.WRITE):
            _split_file_pmd(s, vmf)  # wp_huge_pmd(): COW or write-notify handled on pte level
            s.stats[Stat.FAULT_PMD_WP] += 1
        else:
            # huge_pmd_set_accessed() -> touch_pmd(): pmd_mkyoung (+ pmd_mkdirty)
            if not (pmdv & PMD.YOUNG):
                s.stats[Stat.OLD_TO_YOUNG_FAULT] += 1
            s.pmd[slot] = pmdv | PMD.YOUNG | (PMD.DIRTY if write else 0)
            s.stats[Stat.FAULT_AF] += 1
            return 0
    # handle_pte_fault()
    p = vmf.vma.pte_base + int(k)
    entry = int(s.pte[p])
    if pmd_none(s, slot) or entry == 0:
        return do_fault(s, v, k, vpn, pgoff, write, tried, vma_lock=vma_lock)
    if write and not (entry & PTE.WRITE):
        return do_wp_page(s, v, k, pgoff, vma_lock=vma_lock)
    if not (entry & PTE.YOUNG):
        s.stats[Stat.OLD_TO_YOUNG_FAULT] += 1
    bits = PTE.YOUNG | (PTE.DIRTY if write else 0)
    if entry & PTE.CONT:
        # contpte_ptep_set_access_flags(): "for SW access management, we need to update all the
        # ptes to prevent extra faults" -- every PTE of the block gets the bits
        p0 = contpte_block(vmf.vma, int(k))
        for i in range(CONT_PTES):
            s.pte[p0 + i] = int(s.pte[p0 + i]) | bits
    else:
        s.pte[p] = entry | bits
    s.stats[Stat.FAULT_AF] += 1
    return 0


def handle_mm_fault(s: SimState, v: int, k: int, vpn: int, write: bool) -> int:
    """A user fault, as the arch handler drives it, with ``mm_account_fault()``.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row.
    k, vpn : int
        Faulting page (VMA page index, virtual page number).
    write : bool
        A store.

    Returns
    -------
    int
        The final attempt's ``VM_FAULT_*`` bits.

    Notes
    -----
    x86 ``do_user_addr_fault()`` / arm64 ``do_page_fault()`` (v6.8+ with per-VMA locks)::

        vma = lock_vma_under_rcu(mm, address);
        fault = handle_mm_fault(vma, address, flags | FAULT_FLAG_VMA_LOCK, regs);
        if (!(fault & VM_FAULT_RETRY))
            goto done;
        if (fault & VM_FAULT_MAJOR)
            flags |= FAULT_FLAG_TRIED;
    lock_mmap:
    retry:
        vma = lock_mm_and_find_vma(mm, address, regs);
        fault = handle_mm_fault(vma, address, flags, regs);
        if (unlikely(fault & VM_FAULT_RETRY)) {
            flags |= FAULT_FLAG_TRIED;
            goto retry;
        }

    v6.6 lacks the ``VM_FAULT_MAJOR`` test (46e714c729c8, v6.8; a v6.6 VMA-lock attempt never
    returns ``VM_FAULT_MAJOR`` for a file fault anyway); v5.12 has only the mmap_lock loop.
    ``mm_account_fault()``, mm/memory.c, Linux 6.18.5::

        if (ret & VM_FAULT_RETRY)
            return;
        count_vm_event(PGFAULT);
        if (ret & VM_FAULT_ERROR)
            return;
        major = (ret & VM_FAULT_MAJOR) || (flags & FAULT_FLAG_TRIED);

    Counters: ``FAULT_RETRY`` per attempt that returned ``VM_FAULT_RETRY``; ``SIGBUS`` for an error.
    """
    profile = profile_of(s)
    pgoff = int(s.vmas[v, VmaField.PGOFF]) + int(k)
    st = s.stats
    tried = False
    ret = VM_FAULT_RETRY
    if profile >= Profile.LINUX_6_6:  # CONFIG_PER_VMA_LOCK: lock_vma_under_rcu() succeeds
        ret = __handle_mm_fault(s, v, k, vpn, pgoff, write, False, vma_lock=True)
        if ret & VM_FAULT_RETRY:
            st[Stat.FAULT_RETRY] += 1
            if profile >= Profile.LINUX_6_18 and (ret & VM_FAULT_MAJOR):
                tried = True
    while ret & VM_FAULT_RETRY:
        ret = __handle_mm_fault(s, v, k, vpn, pgoff, write, tried)
        if ret & VM_FAULT_RETRY:
            st[Stat.FAULT_RETRY] += 1
            tried = True
    # mm_account_fault()
    st[Stat.PGFAULT] += 1
    if ret & VM_FAULT_ERROR:
        st[Stat.SIGBUS] += 1
        return ret
    if (ret & VM_FAULT_MAJOR) or tried:
        st[Stat.MAJFLT] += 1
    else:
        st[Stat.MINFLT] += 1
    return ret
