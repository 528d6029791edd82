"""Read the page-cache folio layout of a file on the running kernel.

The layout is read back the way the public kernel cases were made: the file is mapped read-only, the pages
that ``mincore`` reports as cached are touched (so each gets a page-table entry; pages that are not cached are
never touched, so reading the layout does not read the file), ``/proc/self/pagemap`` gives each page's frame
number and ``/proc/kpageflags`` gives the frame's compound head/tail bits. A folio is a head page followed by
its tail pages at consecutive frames. Needs root (``/proc/kpageflags`` and the frame numbers in pagemap are
root-only).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
from pathlib import Path

import numpy as np

from fastfault.errors import InputError

__all__ = [
    "PAGE_SIZE",
    "KPF_COMPOUND_HEAD",
    "KPF_COMPOUND_TAIL",
    "layout_access_problem",
    "require_layout_access",
    "read_file_layout",
    "cached_pages",
    "describe_layout",
]

PAGE_SIZE = 4096
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
_PM_PRESENT = np.uint64(1) << np.uint64(63)
_PM_PFN_MASK = (np.uint64(1) << np.uint64(55)) - np.uint64(1)
_MADV_RANDOM = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FAILED = ctypes.c_void_p(-1).value


def layout_access_problem() -> str | None:
    """Say why folio layouts cannot be read here, or return None when they can.

    Returns
    -------
    str or None
        A one-line reason (not Linux, page size is not 4096, not root, ``/proc/kpageflags`` unreadable).
    """
    if not Path("/proc/self/pagemap").exists():
        return "needs Linux with /proc/self/pagemap"
    if mmap.PAGESIZE != PAGE_SIZE:
        return f"page size is {mmap.PAGESIZE}, only 4096-byte pages are supported"
    if os.geteuid() != 0:
        return (
            "reading folio layouts needs root: /proc/kpageflags and the frame numbers in /proc/self/pagemap "
            "are root-only (run as root)"
        )
    try:
        with open("/proc/kpageflags", "rb") as f:
            f.read(8)
    except OSError as e:
        return f"cannot read /proc/kpageflags: {e.strerror or e}"
    return None


def require_layout_access() -> None:
    """Raise `InputError` unless folio layouts can be read on this machine.

    Raises
    ------
    InputError
        With the reason from `layout_access_problem`.
    """
    problem = layout_access_problem()
    if problem is not None:
        raise InputError(problem)


def _mmap_file(fd: int, length: int) -> int:
    addr = _libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap failed: {os.strerror(err)}")
    return int(addr)


def _mincore(addr: int, length: int, npages: int) -> np.ndarray:
    vec = (ctypes.c_ubyte * npages)()
    if _libc.mincore(ctypes.c_void_p(addr), length, vec) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mincore failed: {os.strerror(err)}")
    return (np.frombuffer(vec, dtype=np.uint8) & 1).astype(bool)


def cached_pages(path: str | os.PathLike) -> np.ndarray:
    """Return which pages of a file are in the page cache (``mincore``), without touching any.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        ``bool``, one entry per file page (``ceil(size / 4096)``).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        npages = -(-size // PAGE_SIZE)
        if npages == 0:
            return np.zeros(0, dtype=bool)
        length = npages * PAGE_SIZE
        addr = _mmap_file(fd, length)
        try:
            return _mincore(addr, length, npages)
        finally:
            _libc.munmap(ctypes.c_void_p(addr), length)
    finally:
        os.close(fd)


def _read_pagemap(addr: int, npages: int) -> np.ndarray:
    with open("/proc/self/pagemap", "rb", buffering=0) as f:
        raw = os.pread(f.fileno(), 8 * npages, (addr // PAGE_SIZE) * 8)
    if len(raw) != 8 * npages:
        raise OSError(errno.EIO, "short read from /proc/self/pagemap")
    return np.frombuffer(raw, dtype=np.uint64)


def _read_kpageflags(pfn: np.ndarray) -> np.ndarray:
    """Flags of each frame in ``pfn`` (uint64), reading runs of consecutive frames in one pread."""
    flags = np.zeros(len(pfn), dtype=np.uint64)
    if len(pfn) == 0:
        return flags
    breaks = np.flatnonzero(np.diff(pfn.astype(np.int64)) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(pfn)]))
    with open("/proc/kpageflags", "rb", buffering=0) as f:
        fd = f.fileno()
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            raw = os.pread(fd, 8 * (e - s), int(pfn[s]) * 8)
            if len(raw) != 8 * (e - s):
                raise OSError(errno.EIO, "short read from /proc/kpageflags")
            flags[s:e] = np.frombuffer(raw, dtype=np.uint64)
    return flags


def _sizes_from_flags(present: np.ndarray, pfn: np.ndarray, flags: np.ndarray) -> np.ndarray:
    n = len(present)
    out = np.full(n, -1, dtype=np.int64)
    head = ((flags >> np.uint64(KPF_COMPOUND_HEAD)) & np.uint64(1)).astype(bool) & present
    tail = ((flags >> np.uint64(KPF_COMPOUND_TAIL)) & np.uint64(1)).astype(bool) & present
    pfn_i = pfn.astype(np.int64)
    out[present & ~head & ~tail] = 1
    # A tail continues the folio of the page before it when its frame is the next one.
    cont = np.zeros(n, dtype=bool)
    if n > 1:
        cont[1:] = tail[1:] & present[:-1] & (head[:-1] | tail[:-1]) & (pfn_i[1:] == pfn_i[:-1] + 1)
    i = 0
    heads = np.flatnonzero(head)
    for h in heads.tolist():
        if h < i:
            continue
        j = h + 1
        while j < n and cont[j]:
            j += 1
        out[h:j] = j - h
        i = j
    # Tails without a head inside the file (the file starts mid-folio: impossible for page-cache folios, which
    # are naturally aligned) or broken runs: size unknown.
    bad = tail & (out < 0)
    if bad.any():
        raise RuntimeError(f"{int(bad.sum())} tail pages without a head page; cannot determine folio sizes")
    return out


def read_file_layout(path: str | os.PathLike) -> np.ndarray:
    """Read which page-cache folio holds each page of a file.

    The file is mapped read-only (``MAP_SHARED``, ``MADV_RANDOM``); only pages that ``mincore`` reports as
    cached are touched, so the call never brings pages into the cache (it does map the cached ones for a
    moment and marks their page-table entries young; the mapping is removed before returning).

    Parameters
    ----------
    path : str or os.PathLike
        The file (any filesystem; pages beyond the last whole page of ``i_size`` count as one page).

    Returns
    -------
    numpy.ndarray
        ``int64``, shape ``(ceil(size / 4096),)``: for each file page the size in pages of the folio that
        holds it, ``-1`` if the page is not cached.

    Raises
    ------
    InputError
        Not root, ``/proc/kpageflags`` unreadable, page size is not 4096, or the file cannot be opened.
    RuntimeError
        The frame flags are inconsistent (a tail page without its head), e.g. the cache changed meanwhile.
    """
    require_layout_access()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror or e}") from None
    try:
        size = os.fstat(fd).st_size
        npages = -(-size // PAGE_SIZE)
        if npages == 0:
            return np.zeros(0, dtype=np.int64)
        length = npages * PAGE_SIZE
        addr = _mmap_file(fd, length)
        try:
            _libc.madvise(ctypes.c_void_p(addr), length, _MADV_RANDOM)
            cached = _mincore(addr, length, npages)
            view = np.ctypeslib.as_array((ctypes.c_uint8 * length).from_address(addr))
            for _ in range(3):
                idx = np.flatnonzero(cached)
                int(view[idx * PAGE_SIZE].sum())  # one load per cached page
                pm = _read_pagemap(addr, npages)
                present = (pm & _PM_PRESENT) != 0
                missing = cached & ~present
                if not missing.any():
                    break
                cached = _mincore(addr, length, npages)
            del view
            pfn = pm & _PM_PFN_MASK
            use = present & cached
            if use.any() and not pfn[use].any():
                raise InputError("/proc/self/pagemap shows no frame numbers (needs CAP_SYS_ADMIN)")
            flags = np.zeros(npages, dtype=np.uint64)
            flags[use] = _read_kpageflags(pfn[use])
            return _sizes_from_flags(use, pfn, flags)
        finally:
            _libc.munmap(ctypes.c_void_p(addr), length)
    finally:
        os.close(fd)


def describe_layout(folio_size: np.ndarray) -> str:
    """Summarise a layout in one line, e.g. ``"8192 pages: 16x512, 0 uncached"``.

    Parameters
    ----------
    folio_size : numpy.ndarray
        As returned by `read_file_layout`.

    Returns
    -------
    str
        Folio counts by size (largest first) and the number of uncached pages.
    """
    fs = np.asarray(folio_size, dtype=np.int64)
    cached = fs > 0
    parts = []
    for size in sorted(np.unique(fs[cached]).tolist(), reverse=True):
        pages = int((fs == size).sum())
        parts.append(f"{pages // size}x{size}")
    return f"{len(fs)} pages: {', '.join(parts) or 'none cached'}, {int((~cached).sum())} uncached"
