"""``mm/readahead.c`` (and the page-cache insertion of ``mm/filemap.c``), re-derived in plain Python.

I/O is instantaneous, as in :mod:`fastfault.fault.readahead`: a folio added by readahead is
uptodate and unlocked at once. The page cache is the ``pc_order``/``pc_flags`` pair of the
:class:`~fastfault.fault.state.SimState`; ``f`` is a row of the file table, which also holds the
open file's ``struct file_ra_state`` (``RA_START``, ``RA_SIZE``, ``RA_ASYNC``, ``RA_ORDER``,
``RA_PAGES``, ``MMAP_MISS``).

Notes
-----
Linux 6.18.5 ``page_cache_ra_unbounded``, ``do_page_cache_ra``, ``page_cache_ra_order``,
``ra_alloc_folio``, ``get_init_ra_size``, ``get_next_ra_size``, ``page_cache_sync_ra``,
``page_cache_async_ra`` and ``page_cache_{next,prev}_miss`` (mm/filemap.c). The readahead engine is
the v6.18 one for every profile (as in the jitted code); in the v5.12 profile the page cache has no
large folios (``mapping_large_folio_support()`` is false: large-folio readahead arrived in v5.18),
so every readahead is order-0.
"""

from __future__ import annotations

import numpy as np

from fastfault.fault.state import PAGE_SHIFT, PG, FileField, Profile, SimState, Stat
from kernels_py.pgtable import profile_of

__all__ = [
    "do_page_cache_ra",
    "filemap_add_folio",
    "get_init_ra_size",
    "get_next_ra_size",
    "page_cache_async_ra",
    "page_cache_next_miss",
    "page_cache_prev_miss",
    "page_cache_ra_order",
    "page_cache_ra_unbounded",
    "page_cache_sync_ra",
    "xa_load",
]

ULONG_MAX = (1 << 64) - 1


# --- the page cache as an XArray ----------------------------------------------------------------


def xa_load(s: SimState, f: int, index: int) -> tuple[int, int] | None:
    """``xa_load(&mapping->i_pages, index)`` for a folio entry.

    Returns ``(head, order)`` (file indices) of the folio covering ``index``, or None for a hole or a
    shadow (value) entry. Indices past the page-cache arrays are holes.
    """
    if index < 0 or index >= int(s.files[f, FileField.CAPACITY]):
        return None
    order = int(s.pc_order[int(s.files[f, FileField.BASE]) + index])
    if order < 0:
        return None
    return index & ~((1 << order) - 1), order


def folio_flags(s: SimState, f: int, head: int) -> int:
    """Folio flags (kept on the head page)."""
    return int(s.pc_flags[int(s.files[f, FileField.BASE]) + head])


def mapping_large_folio_support(s: SimState, f: int) -> bool:
    """``mapping_max_folio_order(mapping) > 0``; never in the v5.12 profile (no large-folio readahead
    before v5.18)."""
    if profile_of(s) == Profile.LINUX_5_12:
        return False
    return int(s.files[f, FileField.MAX_ORDER]) > 0


def _ra(s: SimState, f: int, field: FileField) -> int:
    return int(s.files[f, field])


def _set_ra(s: SimState, f: int, field: FileField, value: int) -> None:
    s.files[f, field] = value


def filemap_add_folio(s: SimState, f: int, index: int, order: int, readahead_mark: bool) -> bool:
    """Insert a new, uptodate folio of ``1 << order`` pages at file index ``index``.

    Parameters
    ----------
    s : SimState
    f : int
        File row.
    index : int
        First page (naturally aligned to the order).
    order : int
        Folio order.
    readahead_mark : bool
        ``folio_set_readahead()`` before insertion (``ra_alloc_folio``/``page_cache_ra_unbounded``).

    Returns
    -------
    bool
        False for ``-EEXIST`` (a folio already covers part of the range); also when the range passes
        the simulator's page-cache arrays (cannot happen below i_size).

    Notes
    -----
    ``__filemap_add_folio()``, mm/filemap.c, Linux 6.18.5: ``xas_for_each_conflict()`` fails with
    ``-EEXIST`` on any non-value entry; value entries (workingset shadows) are replaced and
    ``filemap_add_folio()`` calls ``workingset_refault(folio, shadow)``, which the simulator models as
    "the folio is PG_workingset". Per-page ``PG.HWPOISON`` marks survive (simulator convention).
    ``RA_PAGES``/``RA_MARKERS`` count insertions and markers.
    """
    base = _ra(s, f, FileField.BASE)
    n = 1 << int(order)
    if index + n > _ra(s, f, FileField.CAPACITY):
        return False
    pc_order = s.pc_order
    pc_flags = s.pc_flags
    shadow = False
    for i in range(base + index, base + index + n):
        if pc_order[i] >= 0:  # if (!xa_is_value(entry)) { xas_set_err(&xas, -EEXIST); ...
            return False
        if pc_flags[i] & PG.SHADOW:
            shadow = True
    flags = PG.UPTODATE  # instantaneous read_pages()
    if shadow:
        flags |= PG.WORKINGSET  # workingset_refault()
    if readahead_mark:
        flags |= PG.READAHEAD
        s.stats[Stat.RA_MARKERS] += 1
    pc_order[base + index : base + index + n] = order
    pc_flags[base + index : base + index + n] &= np.uint8(PG.HWPOISON)
    pc_flags[base + index] |= flags
    s.stats[Stat.RA_PAGES] += n
    return True


def page_cache_ra_unbounded(s: SimState, f: int, index: int, nr_to_read: int, lookahead_size: int) -> None:
    """Read ``nr_to_read`` pages from ``index`` in order-0 folios, skipping cached pages.

    Parameters
    ----------
    s : SimState
    f : int
        File row.
    index : int
        ``readahead_index(ractl)``.
    nr_to_read : int
    lookahead_size : int
        The page ``nr_to_read - lookahead_size`` pages in gets ``PG_readahead``.

    Notes
    -----
    ``page_cache_ra_unbounded()``, mm/readahead.c, Linux 6.18.5, with ``min_nrpages == 1``::

        if (lookahead_size <= nr_to_read) {
            ra_folio_index = round_up(readahead_index(ractl) + nr_to_read - lookahead_size,
                                      min_nrpages);
            mark = ra_folio_index - index;
        }
        while (i < nr_to_read) {
            struct folio *folio = xa_load(&mapping->i_pages, index + i);
            if (folio && !xa_is_value(folio)) {
                /* Page already present?  Kick off the current batch ... */
                ...  i = ractl->_index + ractl->_nr_pages - index;   /* skip it */
                continue;
            }
            ...
            if (i == mark)
                folio_set_readahead(folio);
    """
    mark = ULONG_MAX
    if lookahead_size <= nr_to_read:
        mark = nr_to_read - lookahead_size
    i = 0
    while i < nr_to_read:
        if xa_load(s, f, index + i) is not None:
            i += 1  # ractl->_index += min_nrpages
            continue
        # filemap_add_folio() of an order-0 folio cannot fail with -EEXIST here
        filemap_add_folio(s, f, index + i, 0, i == mark)
        i += 1


def do_page_cache_ra(s: SimState, f: int, index: int, nr_to_read: int, lookahead_size: int) -> None:
    """Clamp a readahead request to i_size, then read it unbounded.

    Notes
    -----
    ``do_page_cache_ra()``, mm/readahead.c, Linux 6.18.5::

        if (isize == 0)
            return;
        end_index = (isize - 1) >> PAGE_SHIFT;
        if (index > end_index)
            return;
        /* Don't read past the page containing the last byte of the file */
        if (nr_to_read > end_index - index)
            nr_to_read = end_index - index + 1;
    """
    isize = _ra(s, f, FileField.ISIZE)
    if isize == 0:
        return
    end_index = (isize - 1) >> PAGE_SHIFT
    if index > end_index:
        return
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    page_cache_ra_unbounded(s, f, index, nr_to_read, lookahead_size)


def _ilog2(x: int) -> int:
    return x.bit_length() - 1


def _ffs0(x: int) -> int:
    """``__ffs(x)``: bit number of the lowest set bit (x > 0)."""
    return (x & -x).bit_length() - 1


def page_cache_ra_order(s: SimState, f: int, start: int) -> None:
    """Read the window ``f_ra`` describes (size, async_size, order) from ``start`` in large folios.

    Parameters
    ----------
    s : SimState
    f : int
        File row.
    start : int
        ``readahead_index(ractl)`` (``ractl->_index``).

    Notes
    -----
    ``page_cache_ra_order(ractl, ra)`` and ``ra_alloc_folio()``, mm/readahead.c, Linux 6.18.5::

        pgoff_t limit = (i_size_read(mapping->host) - 1) >> PAGE_SHIFT;
        pgoff_t mark = index + ra->size - ra->async_size;
        if (!mapping_large_folio_support(mapping)) {
            ra->order = 0;
            goto fallback;
        }
        limit = min(limit, index + ra->size - 1);
        new_order = min(mapping_max_folio_order(mapping), new_order);
        new_order = min_t(unsigned int, new_order, ilog2(ra->size));
        new_order = max(new_order, min_order);
        ra->order = new_order;
        while (index <= limit) {
            unsigned int order = new_order;
            /* Align with smaller pages if needed */
            if (index & ((1UL << order) - 1))
                order = __ffs(index);
            /* Don't allocate pages past EOF */
            while (order > min_order && index + (1UL << order) - 1 > limit)
                order--;
            err = ra_alloc_folio(ractl, index, mark, order, gfp);   /* marks round_down(mark) */
            if (err)
                break;
            index += 1UL << order;
        }
        ...
        if (!err)
            return;
    fallback:
        if (ra->size > index - start)
            do_page_cache_ra(ractl, ra->size - (index - start), ra->async_size);

    ``min_order`` (``mapping_min_folio_order``) is 0 for the simulated file systems. i_size == 0
    never reaches here (``filemap_fault`` raises SIGBUS first).
    """
    index = start
    ra_size = _ra(s, f, FileField.RA_SIZE)
    ra_async = _ra(s, f, FileField.RA_ASYNC)
    isize = _ra(s, f, FileField.ISIZE)
    limit = (isize - 1) >> PAGE_SHIFT
    mark = index + ra_size - ra_async
    err = False
    if not mapping_large_folio_support(s, f):
        _set_ra(s, f, FileField.RA_ORDER, 0)
    else:
        limit = min(limit, index + ra_size - 1)
        new_order = min(_ra(s, f, FileField.MAX_ORDER), _ra(s, f, FileField.RA_ORDER))
        new_order = min(new_order, _ilog2(ra_size))
        new_order = max(new_order, 0)
        _set_ra(s, f, FileField.RA_ORDER, new_order)
        while index <= limit:
            order = new_order
            if index & ((1 << order) - 1):
                order = _ffs0(index)
            while order > 0 and index + (1 << order) - 1 > limit:
                order -= 1
            # ra_alloc_folio(): mark = round_down(mark, 1UL << order); if (index == mark) ...
            marked = index == (mark & ~((1 << order) - 1))
            if not filemap_add_folio(s, f, index, order, marked):
                err = True
                break
            index += 1 << order
        if not err:
            return
    # fallback:
    if ra_size > index - start:
        do_page_cache_ra(s, f, index, ra_size - (index - start), ra_async)


def get_init_ra_size(size: int, max_pages: int) -> int:
    """Initial readahead window: ``get_init_ra_size()``, mm/readahead.c, Linux 6.18.5.

    Notes
    -----
    ::

        unsigned long newsize = roundup_pow_of_two(size);
        if (newsize <= max / 32)
            newsize = newsize * 4;
        else if (newsize <= max / 4)
            newsize = newsize * 2;
        else
            newsize = max;
    """
    newsize = 1 << max(int(size) - 1, 0).bit_length()
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(cur: int, max_pages: int) -> int:
    """Ramp-up of the readahead window: ``get_next_ra_size()``, mm/readahead.c, Linux 6.18.5.

    Notes
    -----
    ::

        if (cur < max / 16)
            return 4 * cur;
        if (cur <= max / 2)
            return 2 * cur;
        return max;
    """
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def page_cache_next_miss(s: SimState, f: int, index: int, max_scan: int) -> int:
    """First hole in ``[index, index + max_scan)``, else ``index + max_scan``.

    Notes
    -----
    ``page_cache_next_miss()``, mm/filemap.c, Linux 6.18.5 (the first ``xas_next()`` of a fresh
    ``xa_state`` loads ``index`` itself)::

        while (nr--) {
            void *entry = xas_next(&xas);
            if (!entry || xa_is_value(entry))
                return xas.xa_index;
            if (xas.xa_index == 0)
                return 0;
        }
        return index + max_scan;
    """
    for j in range(index, index + max_scan):
        if xa_load(s, f, j) is None:
            return j
    return index + max_scan


def page_cache_prev_miss(s: SimState, f: int, index: int, max_scan: int) -> int:
    """Last hole in ``[index - max_scan + 1, index]`` scanning down; see Notes for "no hole".

    Notes
    -----
    ``page_cache_prev_miss()``, mm/filemap.c, Linux 6.18.5::

        while (max_scan--) {
            void *entry = xas_prev(&xas);
            if (!entry || xa_is_value(entry))
                break;
            if (xas.xa_index == ULONG_MAX)
                break;
        }
        return xas.xa_index;

    The first ``xas_prev()`` of a fresh state loads ``index`` itself; when every scanned index is
    cached the function returns the last one scanned (``index - max_scan + 1``), not an index
    outside the range as its comment claims. Below 0 the index wraps to ``ULONG_MAX`` (returned as
    -1 here).
    """
    j = index
    for step in range(max_scan):
        if step:
            j -= 1  # xas_prev(): xa_index--
        if j < 0:
            return -1  # wrapped to ULONG_MAX: no entry there
        if xa_load(s, f, j) is None:
            return j
    return j


def page_cache_sync_ra(s: SimState, f: int, index: int, req_count: int) -> None:
    """Synchronous readahead for a page-cache miss at ``index`` (the ``VM_SEQ_READ`` mmap path).

    Notes
    -----
    ``page_cache_sync_ra()``, mm/readahead.c, Linux 6.18.5::

        if (!ra->ra_pages || blk_cgroup_congested()) { ... do_forced_ra = true; }
        max_pages = ractl_max_pages(ractl, req_count);
        prev_index = (unsigned long long)ra->prev_pos >> PAGE_SHIFT;
        if (!index || req_count > max_pages || index - prev_index <= 1UL) {
            ra->start = index;
            ra->size = get_init_ra_size(req_count, max_pages);
            ra->async_size = ra->size > req_count ? ra->size - req_count : ra->size >> 1;
            goto readit;
        }
        miss = page_cache_prev_miss(ractl->mapping, index - 1, max_pages);
        contig_count = index - miss - 1;
        if (contig_count <= req_count) {
            do_page_cache_ra(ractl, req_count, 0);
            return;
        }
        if (miss == ULONG_MAX)
            contig_count *= 2;
        ra->start = index;
        ra->size = min(contig_count + req_count, max_pages);
        ra->async_size = 1;
    readit:
        ra->order = 0;
        ractl->_index = ra->start;
        page_cache_ra_order(ractl, ra);

    ``ra->prev_pos`` is only updated by ``read()`` (``filemap_read``), never by faults: it stays at
    ``file_ra_state_init()``'s -1, so ``index - prev_index <= 1`` is false for every real index.
    ``ractl_max_pages(ractl, ra_pages)`` is ``ra_pages``. The mmap path never calls this with
    ``ra_pages == 0`` (``do_sync_mmap_readahead`` returns first), so ``force_page_cache_ra`` is not
    modelled.
    """
    max_pages = _ra(s, f, FileField.RA_PAGES)
    if max_pages == 0:
        return  # force_page_cache_ra(): unreachable from the fault path
    if req_count > max_pages:
        max_pages = req_count  # ractl_max_pages() with bdi->io_pages >= req_count
    prev_index = ULONG_MAX >> PAGE_SHIFT  # (unsigned long long)(loff_t)-1 >> PAGE_SHIFT
    if index == 0 or req_count > max_pages or ((index - prev_index) & ULONG_MAX) <= 1:
        _set_ra(s, f, FileField.RA_START, index)
        size = get_init_ra_size(req_count, max_pages)
        _set_ra(s, f, FileField.RA_SIZE, size)
        _set_ra(s, f, FileField.RA_ASYNC, size - req_count if size > req_count else size >> 1)
    else:
        miss = page_cache_prev_miss(s, f, index - 1, max_pages)
        contig_count = index - miss - 1
        if contig_count <= req_count:
            do_page_cache_ra(s, f, index, req_count, 0)
            return
        if miss == -1:
            contig_count *= 2
        _set_ra(s, f, FileField.RA_START, index)
        _set_ra(s, f, FileField.RA_SIZE, min(contig_count + req_count, max_pages))
        _set_ra(s, f, FileField.RA_ASYNC, 1)
    _set_ra(s, f, FileField.RA_ORDER, 0)
    page_cache_ra_order(s, f, _ra(s, f, FileField.RA_START))


def page_cache_async_ra(s: SimState, f: int, head: int, order: int, index: int) -> None:
    """Asynchronous readahead: the fault at ``index`` hit the ``PG_readahead`` folio ``head``.

    Parameters
    ----------
    s : SimState
    f : int
        File row.
    head, order : int
        The marked folio.
    index : int
        ``readahead_index(ractl)``: the faulting page (``vmf->pgoff``).

    Notes
    -----
    ``page_cache_async_ra(ractl, folio, req_count)``, mm/readahead.c, Linux 6.18.5
    (``req_count = ra->ra_pages``)::

        if (!ra->ra_pages)
            return;
        if (folio_test_writeback(folio))
            return;
        folio_clear_readahead(folio);
        max_pages = ractl_max_pages(ractl, req_count);
        expected = round_down(ra->start + ra->size - ra->async_size, folio_nr_pages(folio));
        if (index == expected) {
            ra->start += ra->size;
            ra->size = max(ra->size, get_next_ra_size(ra, max_pages));
            goto readit;
        }
        start = page_cache_next_miss(ractl->mapping, index + 1, max_pages);
        if (!start || start - index > max_pages)
            return;
        ra->start = start;
        ra->size = start - index;    /* old async_size */
        ra->size += req_count;
        ra->size = get_next_ra_size(ra, max_pages);
    readit:
        ra->order += 2;
        align = 1UL << min(ra->order, ffs(max_pages) - 1);
        end = ra->start + ra->size;
        aligned_end = round_down(end, align);
        if (aligned_end > ra->start)
            ra->size -= end - aligned_end;
        ra->async_size = ra->size;
        ractl->_index = ra->start;
        page_cache_ra_order(ractl, ra);

    No folio is under writeback in the simulator. ``RA_ASYNC`` counts the calls that cleared a
    marker.
    """
    req_count = _ra(s, f, FileField.RA_PAGES)
    if req_count == 0:
        return
    base = _ra(s, f, FileField.BASE)
    s.pc_flags[base + head] &= ~PG.READAHEAD & 0xFF  # folio_clear_readahead(folio)
    s.stats[Stat.RA_ASYNC] += 1
    max_pages = req_count
    ra_start = _ra(s, f, FileField.RA_START)
    ra_size = _ra(s, f, FileField.RA_SIZE)
    ra_async = _ra(s, f, FileField.RA_ASYNC)
    nr = 1 << int(order)
    expected = (ra_start + ra_size - ra_async) & ~(nr - 1)
    if index == expected:
        ra_start += ra_size
        ra_size = max(ra_size, get_next_ra_size(ra_size, max_pages))
    else:
        start = page_cache_next_miss(s, f, index + 1, max_pages)
        if start == 0 or start - index > max_pages:
            return
        ra_start = start
        ra_size = get_next_ra_size(start - index + req_count, max_pages)
    ra_order = _ra(s, f, FileField.RA_ORDER) + 2
    align = 1 << min(ra_order, _ffs0(max_pages))
    end = ra_start + ra_size
    aligned_end = end & ~(align - 1)
    if aligned_end > ra_start:
        ra_size -= end - aligned_end
    _set_ra(s, f, FileField.RA_START, ra_start)
    _set_ra(s, f, FileField.RA_SIZE, ra_size)
    _set_ra(s, f, FileField.RA_ASYNC, ra_size)
    _set_ra(s, f, FileField.RA_ORDER, ra_order)
    page_cache_ra_order(s, f, ra_start)
