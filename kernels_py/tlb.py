"""Plain-Python mirror of :mod:`fastfault.tlb.model` (the test oracle; no numba).

Same functions, same semantics, different data structures: each set is a list of way slots
``[size, key, dirty]`` (or ``None``), LRU order is an explicit recency list per set, and tree
pseudo-LRU is a recursive walk over way ranges. :meth:`RefTlb.tags`, :meth:`RefTlb.flags`,
:meth:`RefTlb.plru_bits` and :meth:`RefTlb.lru_order` export the contents and replacement state in
the layout of ``TlbState`` so tests can compare them element by element; :func:`from_state` goes
the other way (a ``RefTlb`` holding what a jitted ``TlbState`` holds).
"""

from __future__ import annotations

from fastfault.fault.state import PMD, PTE, FileField, VmaField
from fastfault.tlb.presets import (
    ENTRY_DIRTY,
    KIND_SIZE,
    SIZE_NAMES,
    SIZE_SHIFT,
    ArrayField,
    PageKind,
    PwcSpec,
    TlbArray,
    TlbCtl,
    TlbLevel,
    TlbSpec,
    TlbStat,
)

L1_HIT, L2_HIT, MISS = 0, 1, 2
_LEAF_LEVEL = {
    PageKind.PTE_4K: 1,
    PageKind.COALESCED_16K: 1,
    PageKind.CONT_64K: 1,
    PageKind.PMD_2M: 2,
    PageKind.PUD_1G: 3,
}
_PWC_HIT = {4: TlbStat.PWC_HITS_PML4E, 3: TlbStat.PWC_HITS_PDPTE, 2: TlbStat.PWC_HITS_PDE}
_LEVEL_REFS = {4: TlbStat.WALK_REFS_PML4, 3: TlbStat.WALK_REFS_PDPT, 2: TlbStat.WALK_REFS_PD, 1: TlbStat.WALK_REFS_PT}
#: Walk-cache level (4 PML4E, 3 PDPTE, 2 PDE) of the ``TlbLevel`` codes of the geometry table.
_PWC_LEVEL = {TlbLevel.PWC_PML4E: 4, TlbLevel.PWC_PDPTE: 3, TlbLevel.PWC_PDE: 2}


class RefArray:
    """One set-associative array."""

    def __init__(self, spec: TlbArray, cached_level: int = 0):
        self.sets = spec.entries // spec.ways
        self.ways = spec.ways
        self.lru = spec.replacement == "lru"
        self.sizes = [SIZE_NAMES.index(s) for s in spec.sizes]
        self.cached_level = cached_level  # walk caches: level of the entries held (4, 3 or 2)
        self.slots = [[None] * self.ways for _ in range(self.sets)]
        self.recency = [[] for _ in range(self.sets)]  # valid ways, least recent first
        self.leaves = 1
        while self.leaves < self.ways:
            self.leaves *= 2
        self.tree = [[0] * self.leaves for _ in range(self.sets)]

    # -- replacement -------------------------------------------------------------------------
    def _tree_touch(self, s: int, way: int, node: int, lo: int, span: int) -> None:
        if span == 1:
            return
        half = span // 2
        if way < lo + half:
            self.tree[s][node] = 1
            self._tree_touch(s, way, 2 * node, lo, half)
        else:
            self.tree[s][node] = 0
            self._tree_touch(s, way, 2 * node + 1, lo + half, half)

    def _tree_victim(self, s: int, node: int, lo: int, span: int) -> int:
        if span == 1:
            return lo
        half = span // 2
        if self.tree[s][node] == 1 and lo + half < self.ways:
            return self._tree_victim(s, 2 * node + 1, lo + half, half)
        return self._tree_victim(s, 2 * node, lo, half)

    def touch(self, s: int, way: int) -> None:
        if self.lru:
            if way in self.recency[s]:
                self.recency[s].remove(way)
            self.recency[s].append(way)
        else:
            self._tree_touch(s, way, 1, 0, self.leaves)

    # -- contents ----------------------------------------------------------------------------
    def find(self, size: int, key: int) -> tuple[int, int] | None:
        s = key % self.sets
        for w, slot in enumerate(self.slots[s]):
            if slot is not None and slot[0] == size and slot[1] == key:
                return s, w
        return None

    def insert(self, size: int, key: int, dirty: bool) -> bool:
        """Install or refresh; True when a valid entry was evicted."""
        found = self.find(size, key)
        evicted = False
        if found is None:
            s = key % self.sets
            free = [w for w, slot in enumerate(self.slots[s]) if slot is None]
            if free:
                w = free[0]
            else:
                w = self.recency[s][0] if self.lru else self._tree_victim(s, 1, 0, self.leaves)
                evicted = True
        else:
            s, w = found
        self.slots[s][w] = [size, key, bool(dirty)]
        self.touch(s, w)
        return evicted

    def invalidate(self, s: int, w: int) -> bool:
        if self.slots[s][w] is None:
            return False
        self.slots[s][w] = None
        if w in self.recency[s]:
            self.recency[s].remove(w)
        return True

    def coverage(self, slot) -> tuple[int, int]:
        """Virtual pages [lo, hi) an entry covers."""
        shift = 9 * (self.cached_level - 1) if self.cached_level else SIZE_SHIFT[slot[0]]
        return slot[1] << shift, (slot[1] + 1) << shift

    def keys_covering(self, vpn: int) -> list[tuple[int, int]]:
        """``(size, key)`` of every entry this array could hold that covers ``vpn``."""
        if self.cached_level:
            return [(0, vpn >> (9 * (self.cached_level - 1)))]
        return [(size, vpn >> SIZE_SHIFT[size]) for size in self.sizes]


class RefTlb:
    """A TLB hierarchy (mirror of ``TlbState``)."""

    def __init__(self, spec: TlbSpec):
        self.enabled = spec.enabled
        own = [[RefArray(a) for a in arrays] for arrays in (spec.l1d, spec.l1i, spec.l2, spec.l2i)]
        self._own = own
        # Instruction-side levels fall back to the data-side ones when absent.
        self.levels = [own[0], own[1] or own[0], own[2], own[3] or own[2]]
        self.pwc = {}  # cached level -> array
        for lvl, arr in zip((4, 3, 2), spec.pwc.arrays(), strict=True):
            if arr is not None:
                self.pwc[lvl] = RefArray(arr, cached_level=lvl)
        self.stats = {m: 0 for m in TlbStat if m is not TlbStat.NFIELDS}
        self._routes: dict[tuple[int, int], tuple[RefArray, int] | None] = {}

    def arrays(self) -> list[RefArray]:
        """Every array in the order of ``TlbState.geom`` rows."""
        out = [a for lvl in self._own for a in lvl]
        out += [self.pwc[lvl] for lvl in (4, 3, 2) if lvl in self.pwc]
        return out

    def route(self, level: int, kind: int) -> tuple[RefArray, int] | None:
        """The array and entry size a page of ``kind`` uses at ``level``: the largest held size
        not larger than the page (the first array listed on ties)."""
        if (level, kind) not in self._routes:
            natural = SIZE_SHIFT[KIND_SIZE[kind]]
            best = None
            for arr in self.levels[level]:
                for size in arr.sizes:
                    if SIZE_SHIFT[size] <= natural and (best is None or SIZE_SHIFT[size] > SIZE_SHIFT[best[1]]):
                        best = (arr, size)
            self._routes[(level, kind)] = best
        return self._routes[(level, kind)]

    # -- export in the jitted layout ---------------------------------------------------------
    def tags(self) -> list[int]:
        out = []
        for arr in self.arrays():
            for s in range(arr.sets):
                for slot in arr.slots[s]:
                    if slot is None:
                        out.append(-1)
                    elif arr.cached_level:
                        out.append(slot[1])
                    else:
                        out.append(slot[1] * 8 + slot[0])
        return out

    def flags(self) -> list[int]:
        return [int(slot is not None and slot[2]) for arr in self.arrays() for row in arr.slots for slot in row]

    def stat_vector(self) -> list[int]:
        return [self.stats[m] for m in sorted(self.stats)]

    def plru_bits(self) -> list[int]:
        """Tree-PLRU node bits of every PLRU array, set by set (``TlbState.plru``)."""
        return [bit for arr in self.arrays() if not arr.lru for row in arr.tree for bit in row]

    def lru_order(self) -> list[list[int]]:
        """Per set of every LRU array: the valid ways, least recently used first."""
        return [list(arr.recency[s]) for arr in self.arrays() if arr.lru for s in range(arr.sets)]


def build_tlb(spec: TlbSpec) -> RefTlb:
    """An empty hierarchy."""
    return RefTlb(spec)


def from_state(t) -> RefTlb:
    """A :class:`RefTlb` holding what the jitted ``TlbState`` ``t`` holds.

    The geometry comes from ``t.geom`` (one array per row, in order), the entries from
    ``t.tags``/``t.flags``, the LRU order from ``t.stamp``, the tree bits from ``t.plru`` and
    the counters from ``t.stats``. A disabled state (the ``none`` preset) gives a disabled mirror.
    """
    g = [[int(x) for x in row] for row in t.geom]
    levels: list[list[TlbArray]] = [[], [], [], []]
    pwc: dict[int, TlbArray] = {}
    for row in g:
        sizes = tuple(name for i, name in enumerate(SIZE_NAMES) if row[ArrayField.SIZE_MASK] >> i & 1)
        policy = "lru" if row[ArrayField.POLICY] == 0 else "plru"
        arr = TlbArray(row[ArrayField.SETS] * row[ArrayField.WAYS], row[ArrayField.WAYS], sizes, policy)
        if row[ArrayField.LEVEL] >= TlbLevel.PWC_PML4E:
            pwc[_PWC_LEVEL[TlbLevel(row[ArrayField.LEVEL])]] = arr
        else:
            levels[row[ArrayField.LEVEL]].append(arr)
    if int(t.ctl[TlbCtl.ENABLED]) == 0:
        levels = [[], [], [], []]
    spec = TlbSpec("from_state", *(tuple(x) for x in levels), pwc=PwcSpec(pwc.get(4), pwc.get(3), pwc.get(2)))
    r = RefTlb(spec)
    if not r.enabled:
        return r
    tags = [int(x) for x in t.tags]
    flags = [int(x) for x in t.flags]
    stamp = [int(x) for x in t.stamp]
    plru = [int(x) for x in t.plru]
    for arr, row in zip(r.arrays(), g, strict=True):
        base = row[ArrayField.ENTRY_BASE]
        for s in range(arr.sets):
            for w in range(arr.ways):
                tag = tags[base + s * arr.ways + w]
                if tag >= 0:
                    size, key = (0, tag) if arr.cached_level else (tag & 7, tag >> 3)
                    arr.slots[s][w] = [size, key, bool(flags[base + s * arr.ways + w] & ENTRY_DIRTY)]
            if arr.lru:
                valid = [w for w in range(arr.ways) if arr.slots[s][w] is not None]
                arr.recency[s] = sorted(valid, key=lambda w, s=s: (stamp[base + s * arr.ways + w], w))
            else:
                pb = row[ArrayField.PLRU_BASE] + s * arr.leaves
                arr.tree[s] = plru[pb : pb + arr.leaves]
    for m in r.stats:
        r.stats[m] = int(t.stats[m])
    return r


def _lookup(t: RefTlb, vpn: int, kinds: tuple[int, ...], write: bool, ifetch: bool) -> int:
    """One lookup, L1 then L2; at each level the entries the page may be cached as, in the order of
    ``kinds``. An L2 hit refills L1 with an entry of the kind found."""
    if not t.enabled:
        return L1_HIT
    st = t.stats
    st[TlbStat.LOOKUPS] += 1
    st[TlbStat.IFETCH_LOOKUPS] += bool(ifetch)
    st[TlbStat.WRITE_LOOKUPS] += bool(write)

    def miss(dirty_miss: bool) -> int:
        st[TlbStat.MISSES] += 1
        st[TlbStat.IFETCH_MISSES] += bool(ifetch)
        st[TlbStat.DIRTY_MISSES] += dirty_miss
        return MISS

    def probe(level: int):
        for kind in kinds:
            r = t.route(level, kind)
            if r is not None:
                arr, size = r
                hit = arr.find(size, vpn >> SIZE_SHIFT[size])
                if hit is not None:
                    return kind, arr, hit
        return None

    found = probe(1 if ifetch else 0)
    if found is not None:
        _, arr, (s, w) = found
        if write and not arr.slots[s][w][2]:
            return miss(True)
        arr.touch(s, w)
        st[TlbStat.L1_HITS] += 1
        return L1_HIT
    found = probe(3 if ifetch else 2)
    if found is not None:
        kind, arr2, (s, w) = found
        dirty = arr2.slots[s][w][2]
        if write and not dirty:
            return miss(True)
        arr2.touch(s, w)
        st[TlbStat.L2_HITS] += 1
        r1 = t.route(1 if ifetch else 0, kind)
        if r1 is not None:
            arr, size = r1
            st[TlbStat.L1_EVICTIONS] += arr.insert(size, vpn >> SIZE_SHIFT[size], dirty)
        return L2_HIT
    return miss(False)


def tlb_lookup(t: RefTlb, vpn: int, size_kind: int, write: bool, ifetch: bool) -> int:
    """0 L1 hit, 1 L2 hit (L1 refilled), 2 miss; a write to a clean entry is a miss."""
    return _lookup(t, vpn, (size_kind,), write, ifetch)


def tlb_lookup_coalesced(t: RefTlb, vpn: int, write: bool, ifetch: bool) -> int:
    """Lookup of a page of a group Zen 4 may hold as one coalesced 16K entry or as its own 4K entry
    (whichever the fill that cached it made): each level is probed for the 16K entry, then the 4K one.

    Not in :mod:`fastfault.tlb.model` yet: the fix proposed in finding T5 of ``/tmp/full_findings.md``.
    """
    return _lookup(t, vpn, (PageKind.COALESCED_16K, PageKind.PTE_4K), write, ifetch)


def tlb_fill(t: RefTlb, vpn: int, size_kind: int, dirty: bool, ifetch: bool) -> None:
    """Install in L1 and L2."""
    if not t.enabled:
        return
    st = t.stats
    st[TlbStat.FILLS] += 1
    st[TlbStat(TlbStat.FILLS_4K + size_kind)] += 1
    coalesced = False
    levels = ((1 if ifetch else 0, TlbStat.L1_EVICTIONS), (3 if ifetch else 2, TlbStat.L2_EVICTIONS))
    for level, evict_stat in levels:
        r = t.route(level, size_kind)
        if r is None:
            continue
        arr, size = r
        st[evict_stat] += arr.insert(size, vpn >> SIZE_SHIFT[size], bool(dirty))
        coalesced |= SIZE_NAMES[size] in ("16K", "64K")
    st[TlbStat.COALESCED_FILLS] += coalesced


def tlb_walk(t: RefTlb, vpn: int, size_kind: int) -> int:
    """Memory references of the walk (root = level 4 down to the leaf), given and filling the PWC."""
    if not t.enabled:
        return 0
    st = t.stats
    st[TlbStat.WALKS] += 1
    leaf = _LEAF_LEVEL[PageKind(size_kind)]
    start = 4
    for cached in (2, 3, 4):  # deepest first
        if cached <= leaf or cached not in t.pwc:
            continue
        arr = t.pwc[cached]
        hit = arr.find(0, vpn >> (9 * (cached - 1)))
        if hit is not None:
            arr.touch(*hit)
            st[_PWC_HIT[cached]] += 1
            start = cached - 1
            break
    if start == 4:
        st[TlbStat.PWC_MISSES] += 1
    refs = 0
    for level in range(start, leaf - 1, -1):
        refs += 1
        st[_LEVEL_REFS[level]] += 1
        if level > leaf and level in t.pwc:
            t.pwc[level].insert(0, vpn >> (9 * (level - 1)), False)
    st[TlbStat.WALK_REFS] += refs
    return refs


def tlb_access(t: RefTlb, vpn: int, size_kind: int, write: bool, ifetch: bool, pte_dirty: bool) -> int:
    """Lookup; on a miss walk and fill."""
    r = tlb_lookup(t, vpn, size_kind, write, ifetch)
    if r == MISS:
        tlb_walk(t, vpn, size_kind)
        tlb_fill(t, vpn, size_kind, write or pte_dirty, ifetch)
    return r


def tlb_add_hits(t: RefTlb, n: int, write: bool, ifetch: bool) -> None:
    """``n`` more L1 hits (the repeats of a collapsed row); replacement state unchanged."""
    if not t.enabled or n <= 0:
        return
    t.stats[TlbStat.LOOKUPS] += n
    t.stats[TlbStat.L1_HITS] += n
    t.stats[TlbStat.IFETCH_LOOKUPS] += n if ifetch else 0
    t.stats[TlbStat.WRITE_LOOKUPS] += n if write else 0


def _flush_where(t: RefTlb, covers) -> None:
    for arr in t.arrays():
        for s in range(arr.sets):
            for w in range(arr.ways):
                slot = arr.slots[s][w]
                if slot is not None and covers(*arr.coverage(slot)) and arr.invalidate(s, w):
                    t.stats[TlbStat.FLUSHED_ENTRIES] += 1


def tlb_flush_page(t: RefTlb, vpn: int) -> None:
    """Every entry covering ``vpn``, of every size, walk-cache entries on its path included."""
    if not t.enabled:
        return
    t.stats[TlbStat.FLUSH_PAGE] += 1
    for arr in t.arrays():
        for size, key in arr.keys_covering(vpn):
            hit = arr.find(size, key)
            if hit is not None and arr.invalidate(*hit):
                t.stats[TlbStat.FLUSHED_ENTRIES] += 1


def tlb_flush_range(t: RefTlb, vpn: int, npages: int) -> None:
    if not t.enabled:
        return
    t.stats[TlbStat.FLUSH_RANGE] += 1
    if npages <= 0:
        return
    _flush_where(t, lambda lo, hi: lo < vpn + npages and hi > vpn)


def tlb_flush_all(t: RefTlb) -> None:
    if not t.enabled:
        return
    t.stats[TlbStat.FLUSH_ALL] += 1
    _flush_where(t, lambda lo, hi: True)


def run_tlb(t: RefTlb, vpn, kind=None, write=None, ifetch=None) -> list[int]:
    """Replay accesses through the TLB alone."""
    n = len(vpn)
    kind = [0] * n if kind is None else kind
    write = [False] * n if write is None else write
    ifetch = [False] * n if ifetch is None else ifetch
    return [tlb_access(t, int(vpn[i]), int(kind[i]), bool(write[i]), bool(ifetch[i]), False) for i in range(n)]


def _kind(s, v: int, vpn: int, coalesce: int, need_young: bool) -> int:
    vpn = int(vpn)
    start = int(s.vmas[v, VmaField.START])
    slot = int(s.vmas[v, VmaField.PMD_BASE]) + vpn // 512 - start // 512
    if int(s.pmd[slot]) & PMD.KIND_MASK == PMD.HUGE:
        return PageKind.PMD_2M
    k = vpn - start
    base = int(s.vmas[v, VmaField.PTE_BASE])
    if coalesce == 2:
        return PageKind.CONT_64K if int(s.pte[base + k]) & PTE.CONT else PageKind.PTE_4K
    if coalesce != 1:
        return PageKind.PTE_4K
    first = k - vpn % 4
    if first < 0 or first + 4 > int(s.vmas[v, VmaField.PAGES]):
        return PageKind.PTE_4K
    group = [int(x) for x in s.pte[base + first : base + first + 4]]
    if not all(e & PTE.PRESENT and not e & PTE.ANON and (e & PTE.YOUNG or not need_young) for e in group):
        return PageKind.PTE_4K
    if len({e & PTE.WRITE for e in group}) != 1:
        return PageKind.PTE_4K
    pgoff = int(s.vmas[v, VmaField.PGOFF]) + first
    head = int(s.files[int(s.vmas[v, VmaField.FILE]), FileField.BASE]) + pgoff
    if pgoff % 4 or int(s.pc_order[head]) < 2:
        return PageKind.PTE_4K
    return PageKind.COALESCED_16K


def mapping_kind(s, v: int, vpn: int, coalesce: int) -> int:
    """Mirror of :func:`fastfault.tlb.model.mapping_kind` (``coalesce``: 0 none, 1 AMD 16K, 2 arm64 contpte):
    the kind of the entry a walk fills.

    A huge PMD is a 2M page. On arm64 a PTE with the contiguous bit is one 64K entry. On Zen 4 the
    4-aligned group of PTEs holding ``vpn`` is one 16K entry when the four map four consecutive
    pages of one naturally aligned page-cache folio (file index 4-aligned, folio order >= 2: the
    physical pages are contiguous and 16K-aligned), are present, young (a cached translation
    implies its accessed bit is set), not anonymous COW copies, and agree on write permission.
    """
    return _kind(s, v, vpn, coalesce, need_young=True)


def lookup_kind(s, v: int, vpn: int, coalesce: int) -> int:
    """The kind a lookup considers: :func:`mapping_kind` except that a Zen 4 group qualifies whatever
    its accessed bits -- clearing them does not flush on x86, so a 16K entry filled while the group
    was young stays usable (use :func:`tlb_lookup_coalesced` for it; finding T5)."""
    return _kind(s, v, vpn, coalesce, need_young=False)
