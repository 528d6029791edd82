"""Plain-Python mirror of :mod:`fastfault.tlb.model` (the test oracle; no numba).

Same functions, same semantics, different data structures: each set is a list of way slots
``[size, key, dirty]`` (or ``None``), LRU order is an explicit recency list per set, and tree
pseudo-LRU is a recursive walk over way ranges. :meth:`RefTlb.tags` and :meth:`RefTlb.flags`
export the contents in the layout of ``TlbState.tags`` / ``TlbState.flags`` so tests can compare
them element by element.
"""

from __future__ import annotations

from fastfault.tlb.presets import (
    KIND_SIZE,
    SIZE_NAMES,
    SIZE_SHIFT,
    PageKind,
    TlbArray,
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

    def arrays(self) -> list[RefArray]:
        """Every array in the order of ``TlbState.geom`` rows."""
        out = [a for lvl in self._own for a in lvl]
        out += [self.pwc[lvl] for lvl in (4, 3, 2) if lvl in self.pwc]
        return out

    def route(self, level: int, kind: int) -> tuple[RefArray, int] | None:
        """The array and entry size a page of ``kind`` uses at ``level``: the largest held size
        not larger than the page."""
        natural = SIZE_SHIFT[KIND_SIZE[kind]]
        best = None
        for arr in self.levels[level]:
            for size in arr.sizes:
                if SIZE_SHIFT[size] <= natural and (best is None or SIZE_SHIFT[size] > SIZE_SHIFT[best[1]]):
                    best = (arr, size)
        return best

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


def build_tlb(spec: TlbSpec) -> RefTlb:
    """An empty hierarchy."""
    return RefTlb(spec)


def tlb_lookup(t: RefTlb, vpn: int, size_kind: int, write: bool, ifetch: bool) -> int:
    """0 L1 hit, 1 L2 hit (L1 refilled), 2 miss; a write to a clean entry is a miss."""
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

    r1 = t.route(1 if ifetch else 0, size_kind)
    if r1 is not None:
        arr, size = r1
        hit = arr.find(size, vpn >> SIZE_SHIFT[size])
        if hit is not None:
            s, w = hit
            if write and not arr.slots[s][w][2]:
                return miss(True)
            arr.touch(s, w)
            st[TlbStat.L1_HITS] += 1
            return L1_HIT
    r2 = t.route(3 if ifetch else 2, size_kind)
    if r2 is not None:
        arr2, size2 = r2
        hit = arr2.find(size2, vpn >> SIZE_SHIFT[size2])
        if hit is not None:
            s, w = hit
            dirty = arr2.slots[s][w][2]
            if write and not dirty:
                return miss(True)
            arr2.touch(s, w)
            st[TlbStat.L2_HITS] += 1
            if r1 is not None:
                arr, size = r1
                st[TlbStat.L1_EVICTIONS] += arr.insert(size, vpn >> SIZE_SHIFT[size], dirty)
            return L2_HIT
    return miss(False)


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
    if not t.enabled:
        return
    t.stats[TlbStat.FLUSH_PAGE] += 1
    _flush_where(t, lambda lo, hi: lo <= vpn < hi)


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


def mapping_kind(s, v: int, vpn: int, coalesce: int) -> int:
    """Mirror of :func:`fastfault.tlb.model.mapping_kind` (0 none, 1 AMD 16K, 2 arm64 contpte)."""
    from fastfault.fault.state import PMD, PTE, FileField, VmaField

    vm = {f: int(s.vmas[v, f]) for f in VmaField if f is not VmaField.NFIELDS}
    slot = vm[VmaField.PMD_BASE] + vpn // 512 - vm[VmaField.START] // 512
    if int(s.pmd[slot]) & PMD.KIND_MASK == PMD.HUGE:
        return PageKind.PMD_2M
    k = vpn - vm[VmaField.START]
    ptes = [int(x) for x in s.pte[vm[VmaField.PTE_BASE] : vm[VmaField.PTE_BASE] + vm[VmaField.PAGES]]]
    if coalesce == 2:
        return PageKind.CONT_64K if ptes[k] & PTE.CONT else PageKind.PTE_4K
    if coalesce != 1:
        return PageKind.PTE_4K
    group = range(k - vpn % 4, k - vpn % 4 + 4)
    if group.start < 0 or group.stop > len(ptes):
        return PageKind.PTE_4K
    pgoffs = [vm[VmaField.PGOFF] + i for i in group]
    fbase = int(s.files[vm[VmaField.FILE], FileField.BASE])
    orders = {int(s.pc_order[fbase + p]) for p in pgoffs}
    same_folio = pgoffs[0] % 4 == 0 and min(orders) >= 2
    # A cached translation implies its accessed bit is set, so only all-young groups coalesce.
    ok = all(ptes[i] & PTE.PRESENT and ptes[i] & PTE.YOUNG and not ptes[i] & PTE.ANON for i in group)
    same_perm = len({ptes[i] & PTE.WRITE for i in group}) == 1
    return PageKind.COALESCED_16K if same_folio and ok and same_perm else PageKind.PTE_4K
