"""A TLB hierarchy with page-walk caches, as jitted kernels over flat arrays.

:func:`build_tlb` (plain Python) validates a :class:`~fastfault.tlb.presets.TlbSpec` and
allocates a :class:`TlbState`; the jitted functions below are what the replay loop calls per
access:

- ``tlb_lookup(t, vpn, size_kind, write, ifetch) -> int``: 0 L1 hit, 1 L2 hit (L1 refilled), 2 miss;
- ``tlb_walk(t, vpn, size_kind) -> int``: memory references of the walk (fills the walk caches);
- ``tlb_fill(t, vpn, size_kind, dirty, ifetch)``: install the walked translation in L1 and L2;
- ``tlb_access(t, vpn, size_kind, write, ifetch, pte_dirty) -> int``: lookup, and on a miss walk + fill;
- ``tlb_add_hits(t, n, ifetch)``: count ``n`` repeated L1 hits (the rest of a collapsed trace row);
- ``tlb_flush_page(t, vpn)``, ``tlb_flush_range(t, vpn, npages)``, ``tlb_flush_all(t)``;
- ``mapping_kind(s, v, vpn, coalesce) -> int``: the :class:`~fastfault.tlb.presets.PageKind` of a
  present mapping in the simulator's page tables.

Notes
-----
What is modelled:

- **Tags.** An entry of size ``S`` (4K, 16K, 64K, 2M, 1G) holding virtual page ``vpn`` has the key
  ``vpn >> log2(S / 4K)`` and the tag ``key * 8 + S``; its set is ``key % sets`` (any number of
  sets, e.g. the 128 sets of Skylake's 1536-entry 12-way STLB). A lookup probes, at each level,
  the one array the page's :class:`~fastfault.tlb.presets.PageKind` is routed to, with that
  array's entry size (see :mod:`fastfault.tlb.presets` for routing and smashing). An entry of
  another size that also covers ``vpn`` (left over from an earlier mapping of the page) is not
  found; flushing keeps such leftovers from being *wrong*.
- **Dirty bit.** An entry records whether the walk saw a dirty, writable PTE. A write that
  finds an entry with the bit clear is a miss (``DIRTY_MISSES``): x86 re-walks the tables to
  set the PTE's D bit (SDM Vol. 3 4.8), arm64 with hardware DBM likewise, and without hardware
  dirty management the write faults. The caller walks and fills with ``dirty=True``, which
  updates the entry in place.
- **Coalescing.** AMD Zen 4 keeps 4 contiguous, aligned 4K PTEs in one "16K" entry; arm64 keeps
  a contpte block (16 x 4K with the contiguous bit) in one 64K entry. The caller says so with
  ``COALESCED_16K`` / ``CONT_64K``; an array without that entry size stores a 4K entry instead.
- **Inclusion.** Non-inclusive, non-exclusive: a walk fills L1 and L2, an L2 hit refills L1, and
  an eviction at one level does not touch the other.
- **Replacement.** Invalid ways first; then true LRU (a global clock stamped on every touch; the
  oldest stamp, lowest way on ties) or tree pseudo-LRU (a binary tree over the ways rounded up
  to a power of two; each touch points the nodes on its path away from the touched way; the
  victim follows the pointers, never into the padding leaves).
- **Walks.** A 4-level x86-64 / arm64 (4K granule, 48-bit) walk reads one entry per level from
  the root down to the leaf: 4 references for a 4K page, 3 for 2M, 2 for 1G. The walk caches are
  probed deepest first, as Intel's paging-structure caches are (SDM Vol. 3 4.10.3): a PDE-cache
  hit leaves 1 reference, a PDPTE-cache hit 2 (1 for a 2M page), a PML4E-cache hit 3 (2, 1).
  Leaf PDEs (2M pages) are not held in the PDE cache. Every non-leaf entry read is inserted in
  its walk cache. Walks of 16K/64K pages are 4K walks.
- **Flushes.** ``tlb_flush_page`` invalidates every entry of any size covering ``vpn`` in every
  array and the walk-cache entries on ``vpn``'s path (x86 ``INVLPG`` drops paging-structure
  cache entries too; arm64's last-level ``TLBI VALE1IS`` would keep them -- keeping or dropping
  them changes only walk costs, never correctness).

Sources: hardware-and-peers.md section 2.1-2.2 (geometries, coalescing, walk caches); Intel SDM
Vol. 3 chapter 4 for walk and A/D semantics.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastfault._jit import inlined, jit
from fastfault.errors import InputError
from fastfault.fault.state import PMD, PTE, FileField, VmaField
from fastfault.tlb.presets import (
    ENTRY_DIRTY,
    KIND_SIZE,
    N_KINDS,
    N_TLB_LEVELS,
    REPLACEMENT_NAMES,
    SIZE_NAMES,
    SIZE_SHIFT,
    ArrayField,
    EntrySize,
    PageKind,
    TlbCtl,
    TlbLevel,
    TlbLookup,
    TlbSpec,
    TlbStat,
)

__all__ = [
    "COALESCE_AMD",
    "COALESCE_CONTPTE",
    "COALESCE_NONE",
    "TlbState",
    "build_tlb",
    "lookup_kind",
    "mapping_kind",
    "run_tlb",
    "tlb_access",
    "tlb_add_hits",
    "tlb_fill",
    "tlb_flush_all",
    "tlb_flush_page",
    "tlb_flush_range",
    "tlb_lookup",
    "tlb_lookup_coalesced",
    "tlb_stats",
    "tlb_walk",
]


class TlbState(NamedTuple):
    """All state of one TLB hierarchy: flat arrays only.

    Attributes
    ----------
    tags : int64, (n_entries,)
        ``key * 8 + EntrySize`` of each entry (walk caches: the key), -1 when invalid. Arrays are
        laid out one after the other; inside an array set ``s`` way ``w`` is
        ``ENTRY_BASE + s * ways + w``.
    flags : uint8, (n_entries,)
        :data:`~fastfault.tlb.presets.ENTRY_DIRTY`.
    stamp : int64, (n_entries,)
        LRU stamps (clock value of the last touch).
    plru : uint8, (n_plru_nodes,)
        Tree-PLRU node bits, ``PLRU_LEAVES`` per set (node 0 unused; 1 = the victim is on the right).
    geom : int64, (n_arrays, ArrayField.NFIELDS)
        One row per array: level, layout, geometry, policy, sizes held.
    route : int64, (4, N_KINDS)
        Per translation level (:class:`~fastfault.tlb.presets.TlbLevel` L1D..L2I) and page kind,
        the array row used, -1 when the level has no array for it. A level absent from the spec
        uses its fallback (L1I -> L1D, L2I -> L2).
    route_size : int64, (4, N_KINDS)
        The :class:`~fastfault.tlb.presets.EntrySize` the array stores for that kind.
    pwc : int64, (3,)
        Array rows of the PML4E, PDPTE and PDE walk caches (-1 when absent).
    ctl : int64, (TlbCtl.NFIELDS,)
        Enabled flag and LRU clock.
    stats : int64, (TlbStat.NFIELDS,)
        Counters.
    index : int32, (n_index_slots,)
        Per array of 16 ways or more, an open-addressing (linear probing, load factor <= 1/4) table
        from tag to entry index, -1 for an empty slot: a lookup costs O(1) probes instead of a scan
        of the set's ways. It holds exactly the valid entries; it is a cache of ``tags`` and
        changes no result. Arrays with fewer ways are scanned.
    ninvalid : int32, (n_sets,)
        Invalid ways per set (the victim search scans for the first one only when there is one).
    lru_prev, lru_next : int32, (n_entries + n_sets,)
        Per LRU set of an indexed array (16 ways or more), a circular doubly-linked list of its
        valid entries in recency order through a sentinel node (``n_entries + set``):
        ``lru_next[sentinel]`` is the most recently used entry, ``lru_prev[sentinel]`` the least,
        the victim of a full set, in O(1). Every other entry links to itself. The same order as
        ``stamp``, which is kept too (sets of fewer ways scan it for their victim).
    eset : int32, (n_entries,)
        Global set number of each entry (its sentinel is ``n_entries + eset``).
    """

    tags: np.ndarray
    flags: np.ndarray
    stamp: np.ndarray
    plru: np.ndarray
    geom: np.ndarray
    route: np.ndarray
    route_size: np.ndarray
    pwc: np.ndarray
    ctl: np.ndarray
    stats: np.ndarray
    index: np.ndarray
    ninvalid: np.ndarray
    lru_prev: np.ndarray
    lru_next: np.ndarray
    eset: np.ndarray


# Plain integers for the jitted code.
_LEVEL = int(ArrayField.LEVEL)
_EBASE = int(ArrayField.ENTRY_BASE)
_SETS = int(ArrayField.SETS)
_WAYS = int(ArrayField.WAYS)
_POLICY = int(ArrayField.POLICY)
_PBASE = int(ArrayField.PLRU_BASE)
_LEAVES = int(ArrayField.PLRU_LEAVES)
_SMASK = int(ArrayField.SIZE_MASK)
_SBASE = int(ArrayField.SET_BASE)
_SETMASK = int(ArrayField.SET_MASK)
_HBASE = int(ArrayField.HASH_BASE)
_HMASK = int(ArrayField.HASH_MASK)
_LRU = 0
_INDEX_MIN_WAYS = 16  # arrays of this many ways or more get a tag index and per-set recency lists
_ENABLED = int(TlbCtl.ENABLED)
_CLOCK = int(TlbCtl.CLOCK)
_L1D = int(TlbLevel.L1D)
_L1I = int(TlbLevel.L1I)
_L2 = int(TlbLevel.L2)
_L2I = int(TlbLevel.L2I)
_PWC_PML4E = int(TlbLevel.PWC_PML4E)
_PWC_PDE = int(TlbLevel.PWC_PDE)
_DIRTY = ENTRY_DIRTY
_K4K = int(PageKind.PTE_4K)
_K2M = int(PageKind.PMD_2M)
_K1G = int(PageKind.PUD_1G)
_K64 = int(PageKind.CONT_64K)
_K16 = int(PageKind.COALESCED_16K)
_S16K = int(EntrySize.S16K)
_S64K = int(EntrySize.S64K)
_N_SIZES = len(SIZE_NAMES)
_HIT1 = int(TlbLookup.L1_HIT)
_HIT2 = int(TlbLookup.L2_HIT)
_MISS = int(TlbLookup.MISS)

_ST_LOOKUPS = int(TlbStat.LOOKUPS)
_ST_ILOOKUPS = int(TlbStat.IFETCH_LOOKUPS)
_ST_WLOOKUPS = int(TlbStat.WRITE_LOOKUPS)
_ST_L1 = int(TlbStat.L1_HITS)
_ST_L2 = int(TlbStat.L2_HITS)
_ST_MISS = int(TlbStat.MISSES)
_ST_IMISS = int(TlbStat.IFETCH_MISSES)
_ST_DMISS = int(TlbStat.DIRTY_MISSES)
_ST_WALKS = int(TlbStat.WALKS)
_ST_REFS = int(TlbStat.WALK_REFS)
_ST_REFS_PML4 = int(TlbStat.WALK_REFS_PML4)
_ST_PWC_PML4E = int(TlbStat.PWC_HITS_PML4E)
_ST_PWC_MISS = int(TlbStat.PWC_MISSES)
_ST_FILLS = int(TlbStat.FILLS)
_ST_FILLS_4K = int(TlbStat.FILLS_4K)
_ST_COALESCED = int(TlbStat.COALESCED_FILLS)
_ST_L1_EVICT = int(TlbStat.L1_EVICTIONS)
_ST_FPAGE = int(TlbStat.FLUSH_PAGE)
_ST_FRANGE = int(TlbStat.FLUSH_RANGE)
_ST_FALL = int(TlbStat.FLUSH_ALL)
_ST_FLUSHED = int(TlbStat.FLUSHED_ENTRIES)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def _route_level(arrays, rows) -> tuple[list[int], list[int]]:
    """Per page kind: the row of the array holding the largest entry size not larger than the
    page (first listed on ties), and that size."""
    route = [-1] * N_KINDS
    size = [-1] * N_KINDS
    for kind in range(N_KINDS):
        natural = int(KIND_SIZE[kind])
        best = -1
        for arr, row in zip(arrays, rows, strict=True):
            held = [SIZE_NAMES.index(s) for s in arr.sizes]
            fit = [h for h in held if SIZE_SHIFT[h] <= SIZE_SHIFT[natural]]
            if fit:
                cand = max(fit, key=lambda h: SIZE_SHIFT[h])
                if best < 0 or SIZE_SHIFT[cand] > SIZE_SHIFT[best]:
                    best = cand
                    route[kind] = row
                    size[kind] = cand
    return route, size


def build_tlb(spec: TlbSpec) -> TlbState:
    """Allocate an empty TLB hierarchy.

    Parameters
    ----------
    spec : TlbSpec
        The hierarchy (a preset from :data:`~fastfault.tlb.presets.TLB_PRESETS` or
        :func:`~fastfault.tlb.presets.load_tlb_toml`). The ``none`` preset gives a disabled state.

    Returns
    -------
    TlbState
        Every entry invalid, counters zero.

    Raises
    ------
    InputError
        ``spec`` is not a :class:`TlbSpec` or is impossible (one line naming the field).
    """
    if not isinstance(spec, TlbSpec):
        raise InputError(f"tlb: expected a TlbSpec, got {type(spec).__name__}")
    spec.validate()
    levels = [spec.l1d, spec.l1i, spec.l2, spec.l2i]
    table = []  # (level, array)
    for lvl, arrays in enumerate(levels):
        for arr in arrays:
            table.append((lvl, arr))
    pwc_rows = [-1, -1, -1]
    for i, arr in enumerate(spec.pwc.arrays()):
        if arr is not None:
            pwc_rows[i] = len(table)
            table.append((_PWC_PML4E + i, arr))
    geom = np.zeros((len(table), ArrayField.NFIELDS), dtype=np.int64)
    ebase = 0
    pbase = 0
    sbase = 0
    hbase = 0
    ninvalid = []
    for row, (lvl, arr) in enumerate(table):
        # A tag index for arrays with many ways (a fully associative L1, say): a scan of a set of up
        # to 15 ways is as cheap as the index's upkeep. Load factor at most 1/4: short probe runs.
        hslots = max(8, 1 << (4 * arr.entries - 1).bit_length()) if arr.ways >= _INDEX_MIN_WAYS else 0
        geom[row, ArrayField.SET_BASE] = sbase
        geom[row, ArrayField.SET_MASK] = arr.sets - 1 if arr.sets & (arr.sets - 1) == 0 else -1
        geom[row, ArrayField.HASH_BASE] = hbase
        geom[row, ArrayField.HASH_MASK] = hslots - 1  # -1: no index, sets are scanned
        sbase += arr.sets
        hbase += hslots
        ninvalid += [arr.ways] * arr.sets
        leaves = 1 << max(0, (arr.ways - 1).bit_length())
        geom[row, ArrayField.LEVEL] = lvl
        geom[row, ArrayField.ENTRY_BASE] = ebase
        geom[row, ArrayField.SETS] = arr.sets
        geom[row, ArrayField.WAYS] = arr.ways
        geom[row, ArrayField.POLICY] = REPLACEMENT_NAMES[arr.replacement]
        geom[row, ArrayField.PLRU_BASE] = pbase
        geom[row, ArrayField.PLRU_LEAVES] = leaves
        geom[row, ArrayField.SIZE_MASK] = arr.size_mask()
        ebase += arr.entries
        if REPLACEMENT_NAMES[arr.replacement] == 1:
            pbase += arr.sets * leaves
    route = np.full((N_TLB_LEVELS, N_KINDS), -1, dtype=np.int64)
    route_size = np.full((N_TLB_LEVELS, N_KINDS), -1, dtype=np.int64)
    row = 0
    for lvl, arrays in enumerate(levels):
        rows = list(range(row, row + len(arrays)))
        row += len(arrays)
        r, sz = _route_level(arrays, rows)
        route[lvl] = r
        route_size[lvl] = sz
    if not spec.l1i:
        route[_L1I], route_size[_L1I] = route[_L1D], route_size[_L1D]
    if not spec.l2i:
        route[_L2I], route_size[_L2I] = route[_L2], route_size[_L2]
    ctl = np.zeros(TlbCtl.NFIELDS, dtype=np.int64)
    ctl[TlbCtl.ENABLED] = int(spec.enabled)
    return TlbState(
        tags=np.full(ebase, -1, dtype=np.int64),
        flags=np.zeros(ebase, dtype=np.uint8),
        stamp=np.zeros(ebase, dtype=np.int64),
        plru=np.zeros(pbase, dtype=np.uint8),
        geom=geom,
        route=route,
        route_size=route_size,
        pwc=np.array(pwc_rows, dtype=np.int64),
        ctl=ctl,
        stats=np.zeros(TlbStat.NFIELDS, dtype=np.int64),
        index=np.full(hbase, -1, dtype=np.int32),
        ninvalid=np.array(ninvalid, dtype=np.int32),
        lru_prev=np.arange(ebase + sbase, dtype=np.int32),
        lru_next=np.arange(ebase + sbase, dtype=np.int32),
        eset=np.repeat(np.arange(sbase, dtype=np.int32), [ways for _, arr in table for ways in [arr.ways] * arr.sets]),
    )


def tlb_stats(t: TlbState) -> dict[str, int]:
    """Counters by lower-case :class:`~fastfault.tlb.presets.TlbStat` name (what
    :func:`fastfault.cost.estimate` takes as ``tlb_stats``)."""
    return {m.name.lower(): int(t.stats[m]) for m in TlbStat if m is not TlbStat.NFIELDS}


# --------------------------------------------------------------------------------------------
# Array primitives
# --------------------------------------------------------------------------------------------


@jit(inline="always")
def _size_shift(sz):
    """log2(entry size / 4 KiB) of an EntrySize code."""
    if sz == 0:
        return 0
    if sz == 1:
        return 2
    if sz == 2:
        return 4
    if sz == 3:
        return 9
    return 18


@jit(inline="always")
def _pwc_shift(level):
    """Pages covered by one walk-cache entry of ``level``, as a shift (PML4E 27, PDPTE 18, PDE 9)."""
    return 9 * (3 - (level - _PWC_PML4E))


@jit(inline="always")
def _home(tag, hmask):
    """Home slot of ``tag`` in a tag index of ``hmask + 1`` slots: Fibonacci hashing of the tag folded
    to 31 bits (the product stays below 2**62, so it is the same in jitted code and plain Python)."""
    x = (tag ^ (tag >> 31)) & 0x7FFFFFFF
    return ((x * 0x61C88647) >> 16) & hmask


@jit(inline="always")
def _set_of(g, a, key):
    """Set of ``key`` in array ``a``."""
    m = g[a, _SETMASK]
    if m >= 0:
        return key & m
    return key % g[a, _SETS]


@jit(inline="always")
def _probe(t, a, key, tag):
    """Entry index of ``tag`` in array ``a`` (in the set of ``key``), -1 if absent.

    A tag names one key, hence one set, and an array holds it at most once, so the array's tag
    index answers in O(1) probes what a scan of the set's ways would."""
    g = t.geom
    hm = g[a, _HMASK]
    if hm < 0:
        ways = g[a, _WAYS]
        base = g[a, _EBASE] + _set_of(g, a, key) * ways
        for w in range(ways):
            if t.tags[base + w] == tag:
                return np.int64(base + w)
        return np.int64(-1)
    hb = g[a, _HBASE]
    h = _home(tag, hm)
    while True:
        i = t.index[hb + h]
        if i < 0:
            return np.int64(-1)
        if t.tags[i] == tag:
            return np.int64(i)
        h = (h + 1) & hm


@jit(inline="always")
def _index_add(index, tags, hb, hm, idx):
    """Enter valid entry ``idx`` in the tag index at ``index[hb : hb + hm + 1]`` (its array's).
    Takes the two arrays it needs, not the whole state: a call costs per array passed."""
    h = _home(tags[idx], hm)
    while index[hb + h] >= 0:
        h = (h + 1) & hm
    index[hb + h] = idx


@jit(inline="always")
def _index_del(index, tags, hb, hm, idx):
    """Remove entry ``idx`` (still holding its tag) from the tag index at ``index[hb : hb + hm + 1]``:
    linear probing's backward-shift deletion, which leaves every remaining tag reachable from its
    home slot."""
    i = _home(tags[idx], hm)
    while index[hb + i] != idx:
        i = (i + 1) & hm
    j = i
    while True:
        j = (j + 1) & hm
        e = index[hb + j]
        if e < 0:
            break
        home = _home(tags[e], hm)
        if ((j - home) & hm) >= ((j - i) & hm):  # its home is not in (i, j]: it may move back to i
            index[hb + i] = e
            i = j
    index[hb + i] = -1


@jit(inline="always")
def _touch(t, a, idx):
    """Make entry ``idx`` of array ``a`` the most recently used."""
    g = t.geom
    if g[a, _POLICY] == _LRU:
        t.ctl[_CLOCK] += 1
        t.stamp[idx] = t.ctl[_CLOCK]
        if g[a, _WAYS] < _INDEX_MIN_WAYS:
            return  # a set of few ways: its victim is found by scanning the stamps
        # move to the front of the set's list (an entry just made valid links to itself: unlinking
        # it changes nothing)
        prev = t.lru_prev
        nxt = t.lru_next
        sent = t.tags.shape[0] + t.eset[idx]
        p = prev[idx]
        n = nxt[idx]
        nxt[p] = n
        prev[n] = p
        first = nxt[sent]
        nxt[idx] = first
        prev[first] = idx
        prev[idx] = sent
        nxt[sent] = idx
        return
    ways = g[a, _WAYS]
    rel = idx - g[a, _EBASE]
    s = rel // ways
    way = rel - s * ways
    leaves = g[a, _LEAVES]
    pb = g[a, _PBASE] + s * leaves
    node = 1
    lo = 0
    span = leaves
    while span > 1:
        half = span >> 1
        if way < lo + half:
            t.plru[pb + node] = 1  # touched on the left: the victim is on the right
            node = 2 * node
        else:
            t.plru[pb + node] = 0
            node = 2 * node + 1
            lo += half
        span = half


@jit(inline="always")
def _victim(t, a, key):
    """Entry index to replace in the set of ``key``: the first invalid way, else LRU / tree PLRU."""
    g = t.geom
    ways = g[a, _WAYS]
    s = _set_of(g, a, key)
    base = g[a, _EBASE] + s * ways
    if t.ninvalid[g[a, _SBASE] + s] > 0:
        for w in range(ways):
            if t.tags[base + w] < 0:
                return np.int64(base + w)
    if g[a, _POLICY] == _LRU:
        # Every way is valid, each with a distinct stamp (a clock value): the lowest is the LRU way.
        if ways >= _INDEX_MIN_WAYS:
            return np.int64(t.lru_prev[t.tags.shape[0] + g[a, _SBASE] + s])  # the tail of the list
        best = base
        low = t.stamp[base]
        for w in range(1, ways):
            x = t.stamp[base + w]
            if x < low:
                low = x
                best = base + w
        return best
    leaves = g[a, _LEAVES]
    pb = g[a, _PBASE] + s * leaves
    node = 1
    lo = 0
    span = leaves
    while span > 1:
        half = span >> 1
        right = t.plru[pb + node] == 1 and lo + half < ways
        if right:
            node = 2 * node + 1
            lo += half
        else:
            node = 2 * node
        span = half
    return base + lo


@jit(inline="always")
def _insert(t, a, key, tag, flags):
    """Install ``tag`` (or refresh it in place); True when a valid entry was evicted."""
    idx = _probe(t, a, key, tag)
    evicted = False
    if idx < 0:
        idx = _victim(t, a, key)
        hb = t.geom[a, _HBASE]
        hm = t.geom[a, _HMASK]
        if t.tags[idx] >= 0:
            evicted = True
            if hm >= 0:
                _index_del(t.index, t.tags, hb, hm, idx)
        else:
            t.ninvalid[t.geom[a, _SBASE] + _set_of(t.geom, a, key)] -= 1
        t.tags[idx] = tag
        if hm >= 0:
            _index_add(t.index, t.tags, hb, hm, idx)
    t.flags[idx] = flags
    _touch(t, a, idx)
    return evicted


@jit
def _invalidate(t, a, idx):
    """Invalidate entry ``idx`` of array ``a`` if it is valid."""
    if t.tags[idx] >= 0:
        g = t.geom
        if g[a, _HMASK] >= 0:
            _index_del(t.index, t.tags, g[a, _HBASE], g[a, _HMASK], idx)
        t.tags[idx] = -1
        t.flags[idx] = 0
        t.stamp[idx] = 0
        p = t.lru_prev[idx]
        n = t.lru_next[idx]
        t.lru_next[p] = n
        t.lru_prev[n] = p
        t.lru_prev[idx] = idx
        t.lru_next[idx] = idx
        t.ninvalid[t.eset[idx]] += 1
        t.stats[_ST_FLUSHED] += 1


# --------------------------------------------------------------------------------------------
# The per-access API
# --------------------------------------------------------------------------------------------


@jit(inline="always")
def _lookup(t, vpn, size_kind, alt_kind, write, ifetch):
    """:func:`tlb_lookup`, where an entry for ``alt_kind`` (unless -1) may also hold the page: each
    level is probed for ``size_kind``, then ``alt_kind``; an L2 hit refills L1 with the kind found.
    (Written with one call site per helper: it is inlined into the replay loop.)"""
    if t.ctl[_ENABLED] == 0:
        return _HIT1
    st = t.stats
    st[_ST_LOOKUPS] += 1
    if ifetch:
        st[_ST_ILOOKUPS] += 1
    if write:
        st[_ST_WLOOKUPS] += 1
    l1 = _L1I if ifetch else _L1D
    for level in range(2):
        lvl = l1 if level == 0 else (_L2I if ifetch else _L2)
        idx = np.int64(-1)
        kind = size_kind
        for k in range(2):
            kind = size_kind if k == 0 else alt_kind
            if kind < 0:
                break
            a = t.route[lvl, kind]
            if a >= 0:
                sz = t.route_size[lvl, kind]
                key = vpn >> _size_shift(sz)
                idx = _probe(t, a, key, key * 8 + sz)
                if idx >= 0:
                    break
        if idx < 0:
            continue
        if write and (t.flags[idx] & _DIRTY) == 0:
            _count_dirty_miss(st, ifetch)
            return _MISS
        _touch(t, t.route[lvl, kind], idx)
        if level == 0:
            st[_ST_L1] += 1
            return _HIT1
        st[_ST_L2] += 1
        a1 = t.route[l1, kind]
        if a1 >= 0:
            sz = t.route_size[l1, kind]
            key1 = vpn >> _size_shift(sz)
            if _insert(t, a1, key1, key1 * 8 + sz, t.flags[idx]):
                st[_ST_L1_EVICT] += 1
        return _HIT2
    st[_ST_MISS] += 1
    if ifetch:
        st[_ST_IMISS] += 1
    return _MISS


@jit(inline="always")
def _count_dirty_miss(st, ifetch):
    """A store found a clean entry: it counts as a miss (the walk will set the dirty bit)."""
    st[_ST_DMISS] += 1
    st[_ST_MISS] += 1
    if ifetch:
        st[_ST_IMISS] += 1


@jit
def tlb_lookup(t, vpn, size_kind, write, ifetch):
    """Look a translation up in L1, then L2.

    Parameters
    ----------
    t : TlbState
    vpn : int
        Virtual page number (address >> 12).
    size_kind : int
        :class:`~fastfault.tlb.presets.PageKind` of the current mapping of ``vpn``; selects the
        array and the tag.
    write : bool
        A store: an entry whose dirty bit is clear does not satisfy it (counted as a miss and in
        ``DIRTY_MISSES``; the caller walks and fills with ``dirty=True``).
    ifetch : bool
        An instruction fetch (L1I / L2I, or their L1D / L2 fallbacks).

    Returns
    -------
    int
        0 L1 hit, 1 L2 hit (the L1 array is refilled from it), 2 miss. Always 0 when the model
        is disabled (``none`` preset), with no counting.
    """
    return _lookup(t, vpn, size_kind, -1, write, ifetch)


@jit
def tlb_lookup_coalesced(t, vpn, write, ifetch):
    """:func:`tlb_lookup` of a page of a group Zen 4 may hold as one coalesced 16K entry or as its
    own 4K entry (whichever the fill that cached it made, see :func:`lookup_kind`): each level is
    probed for the 16K entry, then the 4K one."""
    return _lookup(t, vpn, _K16, _K4K, write, ifetch)


@jit
def tlb_fill(t, vpn, size_kind, dirty, ifetch):
    """Install the translation a walk found, in L1 and in L2 (non-inclusive, non-exclusive).

    Parameters
    ----------
    t : TlbState
    vpn : int
    size_kind : int
        :class:`~fastfault.tlb.presets.PageKind` of the mapping the walk found.
    dirty : bool
        The PTE/PMD is dirty *and* writable (stores may use the entry).
    ifetch : bool
        Fill the instruction-side arrays.

    Notes
    -----
    An entry already holding the tag is refreshed in place (flags replaced, made MRU), so a
    dirty fill after a ``DIRTY_MISSES`` miss upgrades the entry rather than duplicating it.
    """
    if t.ctl[_ENABLED] == 0:
        return
    st = t.stats
    st[_ST_FILLS] += 1
    st[_ST_FILLS_4K + size_kind] += 1
    flags = _DIRTY if dirty else 0
    coalesced = False
    for level in range(2):
        if level == 0:
            lvl = _L1I if ifetch else _L1D
        else:
            lvl = _L2I if ifetch else _L2
        a = t.route[lvl, size_kind]
        if a >= 0:
            sz = t.route_size[lvl, size_kind]
            key = vpn >> _size_shift(sz)
            if _insert(t, a, key, key * 8 + sz, flags):
                st[_ST_L1_EVICT + level] += 1  # L1_EVICTIONS, L2_EVICTIONS
            coalesced = coalesced or sz == _S16K or sz == _S64K
    if coalesced:
        st[_ST_COALESCED] += 1


@jit
def tlb_walk(t, vpn, size_kind):
    """Memory references of the page walk for ``vpn``, given the walk caches (which it fills).

    Parameters
    ----------
    t : TlbState
    vpn : int
    size_kind : int
        :class:`~fastfault.tlb.presets.PageKind`: the leaf is a PTE (4K, 16K, 64K), a PMD (2M)
        or a PUD (1G).

    Returns
    -------
    int
        1..4 references (4K: up to 4, 2M: up to 3, 1G: up to 2); 0 when the model is disabled.
        Counted in ``WALK_REFS`` and per level in ``WALK_REFS_PML4 .. WALK_REFS_PT``.
    """
    if t.ctl[_ENABLED] == 0:
        return 0
    st = t.stats
    st[_ST_WALKS] += 1
    leaf = 1
    if size_kind == _K2M:
        leaf = 2
    elif size_kind == _K1G:
        leaf = 3
    # Deepest walk-cache hit first: the walk starts at level `start` (4 = the root, PML4).
    start = 4
    for i in range(2, -1, -1):  # PDE (i=2), PDPTE (1), PML4E (0)
        lvl_cached = 3 - i + 1  # level of the entry cached: PML4E 4, PDPTE 3, PDE 2
        if lvl_cached <= leaf:
            continue  # a leaf entry is never in a walk cache
        a = t.pwc[i]
        if a < 0:
            continue
        key = vpn >> (9 * (lvl_cached - 1))
        idx = _probe(t, a, key, key)
        if idx >= 0:
            _touch(t, a, idx)
            st[_ST_PWC_PML4E + i] += 1
            start = lvl_cached - 1
            break
    if start == 4:
        st[_ST_PWC_MISS] += 1
    refs = start - leaf + 1
    st[_ST_REFS] += refs
    for lvl in range(leaf, start + 1):
        st[_ST_REFS_PML4 + 4 - lvl] += 1
    # Every non-leaf entry read goes into its walk cache.
    for lvl in range(leaf + 1, start + 1):
        a = t.pwc[4 - lvl]
        if a >= 0:
            key = vpn >> (9 * (lvl - 1))
            _insert(t, a, key, key, 0)
    return refs


#: The inlined twins of :func:`tlb_fill` and :func:`tlb_walk`, for the replay loop's walk-and-fill.
_fill = inlined(tlb_fill)
_walk = inlined(tlb_walk)


@jit
def tlb_access(t, vpn, size_kind, write, ifetch, pte_dirty):
    """What the MMU does for one access whose translation exists: lookup, and on a miss walk and
    fill (the entry is dirty if ``write`` or ``pte_dirty``). Returns the lookup result."""
    r = tlb_lookup(t, vpn, size_kind, write, ifetch)
    if r == _MISS:
        tlb_walk(t, vpn, size_kind)
        tlb_fill(t, vpn, size_kind, write or pte_dirty, ifetch)
    return r


@jit
def tlb_add_hits(t, n, write, ifetch):
    """Count ``n`` more lookups that hit L1 (the repeats of a collapsed trace row, after the first
    access left the entry most recently used and, for a store, dirty). Replacement state is unchanged."""
    if t.ctl[_ENABLED] == 0 or n <= 0:
        return
    t.stats[_ST_LOOKUPS] += n
    t.stats[_ST_L1] += n
    if ifetch:
        t.stats[_ST_ILOOKUPS] += n
    if write:
        t.stats[_ST_WLOOKUPS] += n


# --------------------------------------------------------------------------------------------
# Flushes
# --------------------------------------------------------------------------------------------


@jit
def tlb_flush_page(t, vpn):
    """Invalidate every entry covering ``vpn``: all sizes (4K, coalesced 16K, contpte 64K, 2M, 1G)
    in every array, and the walk-cache entries on its path (``flush_tlb_page``)."""
    if t.ctl[_ENABLED] == 0:
        return
    t.stats[_ST_FPAGE] += 1
    g = t.geom
    for a in range(g.shape[0]):
        level = g[a, _LEVEL]
        if level >= _PWC_PML4E:
            key = vpn >> _pwc_shift(level)
            idx = _probe(t, a, key, key)
            if idx >= 0:
                _invalidate(t, a, idx)
            continue
        mask = g[a, _SMASK]
        for sz in range(_N_SIZES):
            if mask & (1 << sz):
                key = vpn >> _size_shift(sz)
                idx = _probe(t, a, key, key * 8 + sz)
                if idx >= 0:
                    _invalidate(t, a, idx)


@jit
def tlb_flush_range(t, vpn, npages):
    """Invalidate every entry overlapping ``[vpn, vpn + npages)`` (``flush_tlb_range``), walk-cache
    entries included. Per array, whichever is cheaper: probe the index for every key of every size
    the range overlaps, or scan the array's entries once."""
    if t.ctl[_ENABLED] == 0:
        return
    t.stats[_ST_FRANGE] += 1
    if npages <= 0:
        return
    end = vpn + npages
    g = t.geom
    for a in range(g.shape[0]):
        level = g[a, _LEVEL]
        base = g[a, _EBASE]
        n = g[a, _SETS] * g[a, _WAYS]
        mask = g[a, _SMASK]
        if level >= _PWC_PML4E:
            shift = _pwc_shift(level)
            nkeys = ((end - 1) >> shift) - (vpn >> shift) + 1
        else:
            nkeys = 0
            for sz in range(_N_SIZES):
                if mask & (1 << sz):
                    shift = _size_shift(sz)
                    nkeys += ((end - 1) >> shift) - (vpn >> shift) + 1
        if nkeys <= n:
            if level >= _PWC_PML4E:
                shift = _pwc_shift(level)
                for key in range(vpn >> shift, ((end - 1) >> shift) + 1):
                    idx = _probe(t, a, key, key)
                    if idx >= 0:
                        _invalidate(t, a, idx)
            else:
                for sz in range(_N_SIZES):
                    if mask & (1 << sz):
                        shift = _size_shift(sz)
                        for key in range(vpn >> shift, ((end - 1) >> shift) + 1):
                            idx = _probe(t, a, key, key * 8 + sz)
                            if idx >= 0:
                                _invalidate(t, a, idx)
            continue
        for idx in range(base, base + n):
            tag = t.tags[idx]
            if tag < 0:
                continue
            if level >= _PWC_PML4E:
                shift = _pwc_shift(level)
                lo = tag << shift
            else:
                shift = _size_shift(tag & 7)
                lo = (tag >> 3) << shift
            if lo < end and lo + (1 << shift) > vpn:
                _invalidate(t, a, idx)


@jit
def tlb_flush_all(t):
    """Invalidate every entry, walk caches included (``flush_tlb_mm`` / a context switch without PCID)."""
    if t.ctl[_ENABLED] == 0:
        return
    t.stats[_ST_FALL] += 1
    for idx in range(t.tags.shape[0]):
        if t.tags[idx] >= 0:
            t.tags[idx] = -1
            t.flags[idx] = 0
            t.stamp[idx] = 0
            t.stats[_ST_FLUSHED] += 1
    for i in range(t.index.shape[0]):
        t.index[i] = -1
    for i in range(t.lru_prev.shape[0]):
        t.lru_prev[i] = i
        t.lru_next[i] = i
    g = t.geom
    for a in range(g.shape[0]):
        for s in range(g[a, _SETS]):
            t.ninvalid[g[a, _SBASE] + s] = g[a, _WAYS]


# --------------------------------------------------------------------------------------------
# Page kind from the simulator's page tables
# --------------------------------------------------------------------------------------------

#: ``coalesce`` argument of :func:`mapping_kind`: which hardware coalescing to report.
COALESCE_NONE = 0
COALESCE_AMD = 1  # Zen 4: 4 contiguous, aligned 4K PTEs -> one 16K entry
COALESCE_CONTPTE = 2  # arm64: PTEs with the contiguous bit -> one 64K entry

_PTE_PRESENT = int(PTE.PRESENT)
_PTE_WRITE = int(PTE.WRITE)
_PTE_YOUNG = int(PTE.YOUNG)
_PTE_ANON = int(PTE.ANON)
_PTE_CONT = int(PTE.CONT)
_PMD_KIND = int(PMD.KIND_MASK)
_PMD_HUGE = int(PMD.HUGE)
_V_START = int(VmaField.START)
_V_PAGES = int(VmaField.PAGES)
_V_PGOFF = int(VmaField.PGOFF)
_V_FILE = int(VmaField.FILE)
_V_PTE_BASE = int(VmaField.PTE_BASE)
_V_PMD_BASE = int(VmaField.PMD_BASE)
_F_BASE = int(FileField.BASE)


@jit(inline="always")
def _kind(s, v, vpn, coalesce, need_young):
    """:func:`mapping_kind` (``need_young``) or :func:`lookup_kind`."""
    start = s.vmas[v, _V_START]
    slot = s.vmas[v, _V_PMD_BASE] + (vpn >> 9) - (start >> 9)
    if (s.pmd[slot] & _PMD_KIND) == _PMD_HUGE:
        return _K2M
    k = vpn - start
    base = s.vmas[v, _V_PTE_BASE]
    e = s.pte[base + k]
    if coalesce == COALESCE_CONTPTE:
        if e & _PTE_CONT:
            return _K64
        return _K4K
    if coalesce != COALESCE_AMD:
        return _K4K
    k0 = k - (vpn & 3)
    if k0 < 0 or k0 + 4 > s.vmas[v, _V_PAGES]:
        return _K4K
    fbase = s.files[s.vmas[v, _V_FILE], _F_BASE]
    pgoff0 = s.vmas[v, _V_PGOFF] + k0
    if pgoff0 & 3:
        return _K4K  # the physical pages would not be 16K-aligned
    if np.int64(s.pc_order[fbase + pgoff0]) < 2:
        return _K4K  # a naturally aligned folio of 4+ pages holds the whole group
    w = e & _PTE_WRITE
    for i in range(4):
        q = s.pte[base + k0 + i]
        if (q & _PTE_PRESENT) == 0 or (q & _PTE_ANON) != 0 or (q & _PTE_WRITE) != w:
            return _K4K
        if need_young and (q & _PTE_YOUNG) == 0:
            return _K4K  # a cached translation implies its accessed bit is set: only all-young groups coalesce
    return _K16


@jit(inline="always")
def mapping_kind(s, v, vpn, coalesce):
    """:class:`~fastfault.tlb.presets.PageKind` of the present mapping of ``vpn`` in VMA row ``v``.

    Parameters
    ----------
    s : SimState
    v : int
        VMA row holding ``vpn``.
    vpn : int
        A page mapped by a present PTE or a huge PMD.
    coalesce : int
        :data:`COALESCE_NONE`, :data:`COALESCE_AMD` (x86 Zen 4) or :data:`COALESCE_CONTPTE` (arm64).

    Returns
    -------
    int
        ``PMD_2M`` under a huge PMD; ``CONT_64K`` for a PTE with the contiguous bit (contpte);
        ``COALESCED_16K`` when the 4-aligned group of PTEs holding ``vpn`` are all present, young file
        PTEs with the same write permission mapping 4 consecutive, 4-aligned file pages of one
        page-cache folio (physically contiguous and 16K-aligned, since folios are naturally
        aligned; anonymous COW copies never qualify); else ``PTE_4K``.

    Notes
    -----
    Which groups Zen 4 really coalesces is not documented beyond "4 contiguous, aligned 4K PTEs"
    (hardware-and-peers.md 2.1); same permissions and physical contiguity are the assumptions here.
    """
    return _kind(s, v, vpn, coalesce, True)


@jit(inline="always")
def lookup_kind(s, v, vpn, coalesce):
    """The kind a TLB lookup for ``vpn`` considers: :func:`mapping_kind`, except that a Zen 4 group
    qualifies for the coalesced 16K entry whatever its accessed bits -- clearing them does not flush
    on x86, so a 16K entry filled while the group was young stays usable, and a group cached as 4K
    entries before it turned all-young still is. Look such a page up with :func:`tlb_lookup_coalesced`."""
    return _kind(s, v, vpn, coalesce, False)


# --------------------------------------------------------------------------------------------
# A trace through the TLB alone
# --------------------------------------------------------------------------------------------


@jit
def _run_tlb(t, vpn, kind, write, ifetch, out):
    for i in range(vpn.shape[0]):
        out[i] = tlb_access(t, vpn[i], kind[i], write[i], ifetch[i], False)


def run_tlb(t: TlbState, vpn, kind=None, write=None, ifetch=None) -> np.ndarray:
    """Replay accesses through the TLB alone (every page mapped; a miss walks and fills).

    Parameters
    ----------
    t : TlbState
    vpn : array_like of int64, (n,)
    kind : array_like of int, (n,), optional
        :class:`~fastfault.tlb.presets.PageKind` per access (default 4K).
    write, ifetch : array_like of bool, (n,), optional
        Stores; instruction fetches (default all False). A store fills a dirty entry.

    Returns
    -------
    numpy.ndarray
        int8, (n,): lookup results (0 L1 hit, 1 L2 hit, 2 miss).
    """
    vpn = np.ascontiguousarray(vpn, dtype=np.int64)
    if vpn.ndim != 1:
        raise InputError(f"trace: vpn must be one-dimensional, got shape {vpn.shape}")
    n = vpn.shape[0]
    if n and vpn.min() < 0:
        raise InputError("trace: vpn must not be negative")
    kind = np.zeros(n, np.int64) if kind is None else np.ascontiguousarray(kind, dtype=np.int64)
    write = np.zeros(n, np.bool_) if write is None else np.ascontiguousarray(write, dtype=np.bool_)
    ifetch = np.zeros(n, np.bool_) if ifetch is None else np.ascontiguousarray(ifetch, dtype=np.bool_)
    if kind.shape != (n,) or write.shape != (n,) or ifetch.shape != (n,):
        raise InputError("trace: vpn, kind, write and ifetch must have the same length")
    if n and (kind.min() < 0 or kind.max() >= N_KINDS):
        raise InputError(f"trace: kind must be a PageKind code 0..{N_KINDS - 1}")
    out = np.empty(n, dtype=np.int8)
    _run_tlb(t, vpn, kind, write, ifetch, out)
    return out
