"""Readahead of ``mm/readahead.c`` as the mmap fault path drives it.

The simulated I/O is instantaneous: a folio added by readahead is uptodate and
unlocked at once. Page-cache state is the ``pc_order``/``pc_flags`` pair of
:class:`~fastfault.fault.state.SimState`; ``file`` is a row of the file table.

Notes
-----
Models Linux v6.18 ``page_cache_ra_order``, ``page_cache_ra_unbounded``,
``do_page_cache_ra``, ``page_cache_sync_ra`` and ``page_cache_async_ra`` (with
``ra->order`` ramping by 2 per async window). A file whose
``mapping_max_folio_order`` is 0 (the ``MAX_ORDER`` column; the v5.12 profile
forces it) gets order-0 readahead only.
"""

from __future__ import annotations

import numpy as np

from fastfault._jit import jit
from fastfault.fault.state import PG, Cfg, FileField, Profile, Stat

_CLEAR_READAHEAD = np.uint8(0xFF ^ PG.READAHEAD)


@jit
def _ilog2(x):
    r = 0
    while x > 1:
        x >>= 1
        r += 1
    return r


@jit
def _ffs0(x):
    """``__ffs``: index of the lowest set bit (``x`` > 0)."""
    r = 0
    while (x & 1) == 0:
        x >>= 1
        r += 1
    return r


@jit
def _range_cached(s, base, index, n):
    for i in range(n):
        if s.pc_order[base + index + i] >= 0:
            return True
    return False


@jit
def filemap_add_folio(s, f, index, order, readahead_mark):
    """Insert an uptodate folio of ``1 << order`` pages at file page ``index`` (naturally aligned).

    Returns False (``-EEXIST``) when any page of the range is already cached or the range
    passes the page-cache arrays.
    """
    base = s.files[f, FileField.BASE]
    n = 1 << order
    if index + n > s.files[f, FileField.CAPACITY]:
        return False
    if _range_cached(s, base, index, n):
        return False
    flags = PG.UPTODATE
    for i in range(n):
        if s.pc_flags[base + index + i] & PG.SHADOW:
            flags |= PG.WORKINGSET  # a refault of a recently evicted page
        s.pc_order[base + index + i] = order
        s.pc_flags[base + index + i] = s.pc_flags[base + index + i] & PG.HWPOISON
    if readahead_mark:
        flags |= PG.READAHEAD
        s.stats[Stat.RA_MARKERS] += 1
    s.pc_flags[base + index] |= flags
    s.stats[Stat.RA_PAGES] += n
    return True


@jit
def page_cache_ra_unbounded(s, f, index, nr_to_read, lookahead_size):
    """``page_cache_ra_unbounded()``: order-0 folios for every uncached page of the range."""
    mark = -1
    if lookahead_size <= nr_to_read:
        mark = nr_to_read - lookahead_size
    base = s.files[f, FileField.BASE]
    for i in range(nr_to_read):
        idx = index + i
        if idx >= s.files[f, FileField.CAPACITY]:
            break
        if s.pc_order[base + idx] >= 0:
            continue
        filemap_add_folio(s, f, idx, 0, i == mark)


@jit
def do_page_cache_ra(s, f, index, nr_to_read, lookahead_size):
    """``do_page_cache_ra()``: clamp the request to i_size, then read it unbounded."""
    isize = s.files[f, FileField.ISIZE]
    if isize == 0:
        return
    end_index = (isize - 1) >> 12
    if index > end_index:
        return
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    page_cache_ra_unbounded(s, f, index, nr_to_read, lookahead_size)


@jit
def page_cache_ra_order(s, f, start):
    """``page_cache_ra_order()``: read ``f_ra`` (size, async_size, order) at ``start`` in large folios."""
    files = s.files
    ra_size = files[f, FileField.RA_SIZE]
    ra_async = files[f, FileField.RA_ASYNC]
    index = start
    if files[f, FileField.MAX_ORDER] == 0 or s.cfg[Cfg.PROFILE] == Profile.LINUX_5_12:
        files[f, FileField.RA_ORDER] = 0  # no large-folio readahead before v5.18
        do_page_cache_ra(s, f, start, ra_size, ra_async)
        return
    isize = files[f, FileField.ISIZE]
    if isize == 0:
        return
    limit = (isize - 1) >> 12
    mark = index + ra_size - ra_async
    limit = min(limit, index + ra_size - 1)
    new_order = min(files[f, FileField.MAX_ORDER], files[f, FileField.RA_ORDER])
    new_order = min(new_order, _ilog2(ra_size))
    new_order = max(new_order, 0)
    files[f, FileField.RA_ORDER] = new_order
    err = False
    while index <= limit:
        order = new_order
        if index & ((1 << order) - 1):
            order = _ffs0(index)
        while order > 0 and index + (1 << order) - 1 > limit:
            order -= 1
        m = mark & ~((1 << order) - 1)
        if not filemap_add_folio(s, f, index, order, index == m):
            err = True
            break
        index += 1 << order
    if not err:
        return
    if ra_size > index - start:
        do_page_cache_ra(s, f, index, ra_size - (index - start), ra_async)


@jit
def get_init_ra_size(size, max_pages):
    newsize = 1
    while newsize < size:
        newsize <<= 1
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


@jit
def get_next_ra_size(cur, max_pages):
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


@jit
def page_cache_sync_ra(s, f, index, req_count):
    """``page_cache_sync_ra()`` for the ``VM_SEQ_READ`` mmap path (``f_ra.prev_pos`` is not updated by
    faults, so every miss not at index 0 looks back for cached history)."""
    files = s.files
    max_pages = files[f, FileField.RA_PAGES]
    if max_pages == 0:
        return
    if req_count > max_pages:
        max_pages = req_count
    base = files[f, FileField.BASE]
    if index == 0 or req_count > max_pages:
        files[f, FileField.RA_START] = index
        size = get_init_ra_size(req_count, max_pages)
        files[f, FileField.RA_SIZE] = size
        files[f, FileField.RA_ASYNC] = size - req_count if size > req_count else size >> 1
    else:
        miss = index - 1
        stop = max(index - 1 - max_pages, -1)
        while miss > stop and s.pc_order[base + miss] >= 0:
            miss -= 1
        contig = index - miss - 1
        if contig <= req_count:
            do_page_cache_ra(s, f, index, req_count, 0)
            return
        if miss < 0:
            contig *= 2
        files[f, FileField.RA_START] = index
        files[f, FileField.RA_SIZE] = min(contig + req_count, max_pages)
        files[f, FileField.RA_ASYNC] = 1
    files[f, FileField.RA_ORDER] = 0
    page_cache_ra_order(s, f, files[f, FileField.RA_START])


@jit
def page_cache_async_ra(s, f, head, order, index):
    """``page_cache_async_ra()``: the application reached a ``PG_readahead`` folio at ``index``."""
    files = s.files
    max_pages = files[f, FileField.RA_PAGES]
    if max_pages == 0:
        return
    base = files[f, FileField.BASE]
    s.pc_flags[base + head] &= _CLEAR_READAHEAD
    s.stats[Stat.RA_ASYNC] += 1
    nr = 1 << order
    expected = (files[f, FileField.RA_START] + files[f, FileField.RA_SIZE] - files[f, FileField.RA_ASYNC]) & ~(nr - 1)
    if index == expected:
        files[f, FileField.RA_START] += files[f, FileField.RA_SIZE]
        files[f, FileField.RA_SIZE] = max(
            files[f, FileField.RA_SIZE], get_next_ra_size(files[f, FileField.RA_SIZE], max_pages)
        )
    else:
        start = index + 1
        cap = files[f, FileField.CAPACITY]
        while start < cap and start - index <= max_pages and s.pc_order[base + start] >= 0:
            start += 1
        if start - index > max_pages:
            return
        files[f, FileField.RA_START] = start
        files[f, FileField.RA_SIZE] = get_next_ra_size(start - index + max_pages, max_pages)
    files[f, FileField.RA_ORDER] += 2
    align = 1 << min(files[f, FileField.RA_ORDER], _ffs0(max_pages))
    end = files[f, FileField.RA_START] + files[f, FileField.RA_SIZE]
    aligned_end = end & ~(align - 1)
    if aligned_end > files[f, FileField.RA_START]:
        files[f, FileField.RA_SIZE] -= end - aligned_end
    files[f, FileField.RA_ASYNC] = files[f, FileField.RA_SIZE]
    page_cache_ra_order(s, f, files[f, FileField.RA_START])
