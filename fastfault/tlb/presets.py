"""TLB hierarchies: integer codes, the :class:`TlbSpec` description, presets and TOML loading.

This module never imports numba: the codes and specs are shared by the jitted model
(:mod:`fastfault.tlb.model`) and the plain-Python mirror (``kernels_py/tlb.py``).

A hierarchy has up to four levels of translation arrays and a page-walk cache:

- ``l1d`` and ``l1i``: first-level data and instruction TLBs. Each level is a tuple of
  :class:`TlbArray`; an array holds one or more entry sizes (separate arrays per size as on
  Intel cores, or one shared array as on AMD and Arm cores). Without ``l1i`` instruction
  fetches use the ``l1d`` arrays.
- ``l2``: the second-level (unified) TLB; ``l2i`` an optional separate second-level
  instruction TLB (AMD). Without ``l2i`` instruction fetches use ``l2``.
- ``pwc``: the paging-structure (page-walk) caches for PML4E, PDPTE and PDE entries.

Entry sizes are ``4K``, ``16K`` (AMD Zen 4 coalesced group of 4 PTEs), ``64K`` (arm64 contpte
block of 16 PTEs), ``2M`` and ``1G``. A page of a given :class:`PageKind` goes, at each level,
to the one array holding the largest entry size not larger than the page (ties: the first
listed). So a 1 GiB page is "smashed" into a 2 MiB entry in an array holding 2M but not 1G
(AMD Zen 2 L2 DTLB), and a coalesced 16 KiB group falls back to a 4 KiB entry in an array
without 16K support (Zen 4 L1 ITLB).

Sources for the preset numbers: the design notes' ``hardware-and-peers.md`` section 2.1
(geometries) and 2.2 (walk caches), which cite the Intel Optimization Manual, AMD Software
Optimization Guides, Arm TRMs, WikiChip, 7-cpu.com, ChampSim defaults and jiegec's
measurements. Associativities not given there are marked *assumed* in the preset docstrings.
"""

from __future__ import annotations

import numbers
import tomllib
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from fastfault.errors import InputError

__all__ = [
    "ArrayField",
    "EntrySize",
    "PageKind",
    "PwcSpec",
    "Replacement",
    "TLB_PRESETS",
    "TlbArray",
    "TlbCtl",
    "TlbLevel",
    "TlbLookup",
    "TlbSpec",
    "TlbStat",
    "ENTRY_DIRTY",
    "KIND_SIZE",
    "SIZE_NAMES",
    "SIZE_SHIFT",
    "load_tlb_toml",
    "tlb_preset",
]


# --------------------------------------------------------------------------------------------
# Integer codes (shared by the jitted model and the mirror)
# --------------------------------------------------------------------------------------------


class PageKind(IntEnum):
    """How a page is currently mapped, as the caller tells :func:`~fastfault.tlb.model.tlb_lookup`.

    ``CONT_64K``: a PTE of a 16-aligned block of 16 PTEs with the arm64 contiguous bit.
    ``COALESCED_16K``: a PTE of a 4-aligned group of 4 PTEs that AMD Zen 4 hardware would
    coalesce (present, contiguous physical pages, same attributes) -- the caller decides.
    ``PUD_1G`` is for completeness; the simulator maps no 1 GiB pages.
    """

    PTE_4K = 0
    PMD_2M = 1
    CONT_64K = 2
    COALESCED_16K = 3
    PUD_1G = 4


N_KINDS = len(PageKind)


class EntrySize(IntEnum):
    """Size of one TLB entry (what an array holds)."""

    S4K = 0
    S16K = 1
    S64K = 2
    S2M = 3
    S1G = 4


#: log2(entry size / 4 KiB), indexed by :class:`EntrySize`.
SIZE_SHIFT = (0, 2, 4, 9, 18)
#: Spelling of each entry size in specs and TOML, indexed by :class:`EntrySize`.
SIZE_NAMES = ("4K", "16K", "64K", "2M", "1G")
#: Natural entry size of each :class:`PageKind`.
KIND_SIZE = (EntrySize.S4K, EntrySize.S2M, EntrySize.S64K, EntrySize.S16K, EntrySize.S1G)


class TlbLevel(IntEnum):
    """Level of an array (column ``LEVEL`` of the geometry table; rows of the routing table)."""

    L1D = 0
    L1I = 1
    L2 = 2
    L2I = 3
    PWC_PML4E = 4  # caches PML4 entries: the walk starts at the PDPT
    PWC_PDPTE = 5  # caches PDPT entries: the walk starts at the page directory
    PWC_PDE = 6  # caches (non-leaf) PD entries: the walk reads only the PTE


#: Number of translation levels (rows of ``TlbState.route``).
N_TLB_LEVELS = 4


class Replacement(IntEnum):
    """Replacement policy of one array."""

    LRU = 0  # true LRU (per-entry stamps)
    PLRU = 1  # tree pseudo-LRU (one bit per internal node of a binary tree over the ways)


REPLACEMENT_NAMES = {"lru": Replacement.LRU, "plru": Replacement.PLRU}


class ArrayField(IntEnum):
    """Columns of the geometry table ``TlbState.geom`` (``int64``, one row per array)."""

    LEVEL = 0  # TlbLevel
    ENTRY_BASE = 1  # first entry of the array in tags/flags/stamp
    SETS = 2
    WAYS = 3
    POLICY = 4  # Replacement
    PLRU_BASE = 5  # first node of set 0 in plru
    PLRU_LEAVES = 6  # ways rounded up to a power of two (tree nodes per set, node 0 unused)
    SIZE_MASK = 7  # bit i set: holds EntrySize i (0 for walk-cache arrays)
    SET_BASE = 8  # first set of the array in ``TlbState.ninvalid``
    SET_MASK = 9  # sets - 1 when sets is a power of two, else -1 (the set is then key % sets)
    HASH_BASE = 10  # first slot of the array's tag index in ``TlbState.index``
    HASH_MASK = 11  # slots of that index - 1 (a power of two, at least twice the entries)
    NFIELDS = 12


class TlbCtl(IntEnum):
    """Fields of ``TlbState.ctl`` (``int64``)."""

    ENABLED = 0  # 0: the "none" preset, every call is a no-op and lookups report L1 hits
    CLOCK = 1  # LRU clock (advanced by every touch)
    NFIELDS = 2


class TlbLookup(IntEnum):
    """Result of :func:`~fastfault.tlb.model.tlb_lookup`."""

    L1_HIT = 0
    L2_HIT = 1
    MISS = 2


class TlbStat(IntEnum):
    """Counters of ``TlbState.stats`` (``int64``)."""

    LOOKUPS = 0
    IFETCH_LOOKUPS = 1
    WRITE_LOOKUPS = 2
    L1_HITS = 3
    L2_HITS = 4
    MISSES = 5  # includes DIRTY_MISSES
    IFETCH_MISSES = 6
    DIRTY_MISSES = 7  # a write found an entry whose dirty bit is clear: a walk must set D
    WALKS = 8
    WALK_REFS = 9  # memory references of all walks
    WALK_REFS_PML4 = 10  # reads of PML4 entries (level 4)
    WALK_REFS_PDPT = 11  # level 3
    WALK_REFS_PD = 12  # level 2
    WALK_REFS_PT = 13  # level 1 (PTEs)
    PWC_HITS_PML4E = 14
    PWC_HITS_PDPTE = 15
    PWC_HITS_PDE = 16
    PWC_MISSES = 17  # walks that started at the root
    FILLS = 18  # tlb_fill calls
    FILLS_4K = 19  # fills by PageKind (FILLS_4K + kind)
    FILLS_2M = 20
    FILLS_64K = 21
    FILLS_16K = 22
    FILLS_1G = 23
    COALESCED_FILLS = 24  # fills that installed a 16K or 64K entry at some level
    L1_EVICTIONS = 25  # valid L1 entries replaced
    L2_EVICTIONS = 26
    FLUSH_PAGE = 27
    FLUSH_RANGE = 28
    FLUSH_ALL = 29
    FLUSHED_ENTRIES = 30  # valid entries invalidated by flushes (walk-cache entries included)
    NFIELDS = 31


#: Bit of ``TlbState.flags``: the entry was filled from a dirty, writable PTE (writes may use it).
ENTRY_DIRTY = 1


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------


def _parse_size(value: Any, where: str) -> str:
    name = str(value).strip().upper().removesuffix("B").removesuffix("I")
    if not isinstance(value, str) or name not in SIZE_NAMES:
        raise InputError(f"{where}: unknown page size {value!r} (one of {', '.join(SIZE_NAMES)})")
    return name


def _check_count(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{where}: {value!r} is not an integer number of {what}")
    if value <= 0:
        raise InputError(f"{where}: {value} {what} is not positive")
    return int(value)


@dataclass(frozen=True)
class TlbArray:
    """One set-associative translation array.

    Attributes
    ----------
    entries : int
        Number of entries.
    ways : int
        Associativity; ``sets = entries // ways`` (any number of sets, e.g. 1536 entries 12-way =
        128 sets). ``ways == entries`` is fully associative.
    sizes : tuple of str
        Entry sizes held: ``4K``, ``16K``, ``64K``, ``2M``, ``1G`` (empty for walk-cache arrays).
    replacement : str
        ``lru`` (true LRU) or ``plru`` (tree pseudo-LRU).
    """

    entries: int
    ways: int
    sizes: tuple[str, ...] = ("4K",)
    replacement: str = "lru"

    def __post_init__(self):
        # Canonical spelling of the sizes ("4k", "4KiB" -> "4K"); bad ones are left for validate().
        if isinstance(self.sizes, list | tuple):
            canon = []
            for sz in self.sizes:
                try:
                    canon.append(_parse_size(sz, ""))
                except InputError:
                    canon.append(sz)
            object.__setattr__(self, "sizes", tuple(canon))

    @property
    def sets(self) -> int:
        return self.entries // self.ways

    def validate(self, where: str, walk_cache: bool = False) -> None:
        """Raise :class:`InputError` naming ``where.<field>`` if the array is impossible."""
        _check_count(self.entries, f"{where}.entries", "entries")
        _check_count(self.ways, f"{where}.ways", "ways")
        if self.ways > self.entries:
            raise InputError(f"{where}.ways: {self.ways} ways is more than the {self.entries} entries")
        if self.entries % self.ways:
            raise InputError(f"{where}.entries: {self.entries} is not a multiple of the {self.ways} ways")
        if self.replacement not in REPLACEMENT_NAMES:
            raise InputError(
                f"{where}.replacement: unknown policy {self.replacement!r} (one of {', '.join(REPLACEMENT_NAMES)})"
            )
        if walk_cache:
            if self.sizes:
                raise InputError(f"{where}.sizes: a page-walk cache holds no page sizes")
            return
        if isinstance(self.sizes, str) or not self.sizes:
            raise InputError(f"{where}.sizes: must be a non-empty list of page sizes")
        for i, sz in enumerate(self.sizes):
            _parse_size(sz, f"{where}.sizes[{i}]")
        if len(set(self.sizes)) != len(self.sizes):
            raise InputError(f"{where}.sizes: a page size is listed twice")

    def size_mask(self) -> int:
        m = 0
        for sz in self.sizes:
            m |= 1 << SIZE_NAMES.index(sz)
        return m


@dataclass(frozen=True)
class PwcSpec:
    """Paging-structure caches (x86 names; Arm walk caches map onto the same three levels).

    Attributes
    ----------
    pml4e, pdpte, pde : TlbArray or None
        Cache of PML4 entries (a hit skips 1 reference), of PDPT entries (skips 2) and of
        non-leaf page-directory entries (skips 3: only the PTE is read). ``None``: not modelled.
    """

    pml4e: TlbArray | None = None
    pdpte: TlbArray | None = None
    pde: TlbArray | None = None

    def arrays(self) -> tuple[TlbArray | None, TlbArray | None, TlbArray | None]:
        return (self.pml4e, self.pdpte, self.pde)


_LEVEL_FIELDS = ("l1d", "l1i", "l2", "l2i")


@dataclass(frozen=True)
class TlbSpec:
    """A TLB hierarchy.

    Attributes
    ----------
    name : str
    l1d, l1i, l2, l2i : tuple of TlbArray
        Arrays of each level (see the module docstring). An empty ``l1d`` means "no TLB model"
        (the ``none`` preset): :func:`~fastfault.tlb.model.build_tlb` then returns a disabled state.
    pwc : PwcSpec
    source : str
        Where the numbers come from.

    Notes
    -----
    Inclusion policy: non-inclusive, non-exclusive. A walk fills the L1 array and the L2 array
    of the page's kind; an L2 hit refills L1; an eviction at one level leaves the other alone.
    Every non-empty level must be able to hold 4 KiB pages, and two arrays of one level may not
    hold the same entry size.
    """

    name: str
    l1d: tuple[TlbArray, ...] = ()
    l1i: tuple[TlbArray, ...] = ()
    l2: tuple[TlbArray, ...] = ()
    l2i: tuple[TlbArray, ...] = ()
    pwc: PwcSpec = field(default_factory=PwcSpec)
    source: str = ""

    def __post_init__(self):
        for lvl in _LEVEL_FIELDS:
            arrays = getattr(self, lvl)
            if isinstance(arrays, TlbArray):
                arrays = (arrays,)
            object.__setattr__(self, lvl, tuple(arrays))
        self.validate()

    @property
    def enabled(self) -> bool:
        """False for the ``none`` preset (no L1 data TLB)."""
        return bool(self.l1d)

    def validate(self, prefix: str = "tlb") -> None:
        """Raise :class:`InputError` with ``prefix.<level>[i].<field>: reason`` for an impossible hierarchy."""
        if not self.l1d:
            for lvl in _LEVEL_FIELDS[1:]:
                if getattr(self, lvl):
                    raise InputError(f"{prefix}.l1d: a hierarchy with {lvl} arrays needs an L1 data TLB")
        for lvl in _LEVEL_FIELDS:
            arrays = getattr(self, lvl)
            seen: dict[str, int] = {}
            for i, arr in enumerate(arrays):
                if not isinstance(arr, TlbArray):
                    raise InputError(f"{prefix}.{lvl}[{i}]: not a TlbArray")
                arr.validate(f"{prefix}.{lvl}[{i}]")
                for sz in arr.sizes:
                    if sz in seen:
                        raise InputError(
                            f"{prefix}.{lvl}[{i}].sizes: {sz} is already held by {prefix}.{lvl}[{seen[sz]}]"
                        )
                    seen[sz] = i
            if arrays and "4K" not in seen:
                raise InputError(f"{prefix}.{lvl}: no array holds 4K pages")
        for name, arr in zip(("pml4e", "pdpte", "pde"), self.pwc.arrays(), strict=True):
            if arr is not None:
                arr.validate(f"{prefix}.pwc.{name}", walk_cache=True)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------


def _a(entries: int, ways: int, *sizes: str, replacement: str = "lru") -> TlbArray:
    return TlbArray(entries=entries, ways=ways, sizes=tuple(sizes), replacement=replacement)


def _pwc(entries: int, ways: int) -> TlbArray:
    return TlbArray(entries=entries, ways=ways, sizes=(), replacement="lru")


#: ChampSim's default paging-structure cache sizes (PSCL4 4, PSCL3 8, PSCL2 32 entries;
#: hardware-and-peers.md section 2.2). Associativity assumed (fully associative, PDE cache 4-way).
CHAMPSIM_PWC = PwcSpec(pml4e=_pwc(4, 4), pdpte=_pwc(8, 8), pde=_pwc(32, 4))

_COMMON = (
    " Replacement: LRU everywhere (the cores' policies are not published). Page-walk caches:"
    " ChampSim defaults PML4E 4, PDPTE 8, PDE 32 entries (section 2.2), associativity assumed."
)

SKYLAKE = TlbSpec(
    name="skylake",
    l1d=(_a(64, 4, "4K"), _a(32, 4, "2M"), _a(4, 4, "1G")),
    l1i=(_a(128, 8, "4K"), _a(8, 8, "2M")),
    l2=(_a(1536, 12, "4K", "2M"), _a(16, 4, "1G")),
    pwc=CHAMPSIM_PWC,
    source=(
        "Intel Skylake client: L1 DTLB 4K 64 4-way, 2M 32 4-way, 1G 4 4-way; L1 ITLB 4K 128 8-way,"
        " 2M 8 per thread (fully associative assumed); STLB 1536 12-way 4K+2M (cpuid leaf 2 says"
        " 6-way), 1G 16 4-way [unverified]. Intel Optimization Manual Table 2-15 via the Intel"
        " community thread (McCalpin); WikiChip; ChampSim defaults match (hardware-and-peers.md 2.1)." + _COMMON
    ),
)

GOLDEN_COVE = TlbSpec(
    name="golden-cove",
    l1d=(_a(96, 6, "4K"), _a(32, 4, "2M"), _a(8, 8, "1G")),
    l1i=(_a(256, 8, "4K"), _a(32, 32, "2M")),
    l2=(_a(2048, 16, "4K", "2M"),),
    pwc=CHAMPSIM_PWC,
    source=(
        "Intel Golden Cove (Alder Lake P / Sapphire Rapids): L1 DTLB loads 4K 96 6-way, 2M 32 4-way,"
        " 1G 8 (fully associative assumed); the 16-entry store DTLB is not modelled; L1 ITLB 4K 256"
        " (32 sets x 8 ways measured), 2M 32 (fully associative assumed); STLB 2048 entries 4K+2M"
        " (16-way assumed; measured usable ~1600 for data). jiegec 'Intel Golden Cove' quoting the"
        " Intel Optimization Manual (hardware-and-peers.md 2.1)." + _COMMON
    ),
)

ZEN2 = TlbSpec(
    name="zen2",
    l1d=(_a(64, 64, "4K", "2M", "1G"),),
    l1i=(_a(64, 64, "4K", "2M", "1G"),),
    l2=(_a(2040, 12, "4K", "2M"),),
    l2i=(_a(512, 8, "4K", "2M"),),
    pwc=CHAMPSIM_PWC,
    source=(
        "AMD Zen 2: L1 DTLB and ITLB 64 fully associative, 4K/2M/1G; L2 DTLB '2048 entries 12-way'"
        " 4K/2M (+PDEs), 1G smashed into 2M (WikiChip quoting the AMD SOG; hardware-and-peers.md 2.1)."
        " 2048 is not a multiple of 12 (the real array is skewed): modelled as 2040 entries 12-way"
        " (170 sets). L2 ITLB 512 8-way 4K/2M (7-cpu.com Zen2). The PDEs the L2 DTLB caches are"
        " modelled by the separate PDE walk cache." + _COMMON
    ),
)

ZEN4 = TlbSpec(
    name="zen4",
    l1d=(_a(72, 72, "4K", "16K", "2M", "1G"),),
    l1i=(_a(64, 64, "4K", "2M", "1G"),),
    l2=(_a(3072, 24, "4K", "16K", "2M"),),
    l2i=(_a(512, 8, "4K", "2M"),),
    pwc=CHAMPSIM_PWC,
    source=(
        "AMD Zen 4: L1 DTLB 72 fully associative 4K/16K/2M/1G ('16K' = 4 coalesced contiguous 4K"
        " PTEs); L1 ITLB 64 fully associative 4K/2M/1G; L2 DTLB 3072 24-way 4K/16K/2M/PDE (1G only"
        " in L1: smashed into 2M here); L2 ITLB 512 8-way (4K/2M assumed). AMD SOG notes and jiegec"
        " (hardware-and-peers.md 2.1)." + _COMMON
    ),
)

NEOVERSE_N1 = TlbSpec(
    name="neoverse-n1",
    l1d=(_a(48, 48, "4K", "64K", "2M"),),
    l1i=(_a(48, 48, "4K", "64K", "2M"),),
    l2=(_a(1280, 5, "4K", "64K", "2M", "1G"),),
    pwc=CHAMPSIM_PWC,
    source=(
        "Arm Neoverse N1 = Cortex-A76 geometry [N1 TRM not retrieved]: L1 DTLB and ITLB 48 fully"
        " associative (block sizes of a 4K granule: 4K, 64K contiguous, 2M); L2 TLB 1280 5-way, all"
        " block sizes. Cortex-A76 TRM A5.2 (hardware-and-peers.md 2.1). The L2 TLB's cached"
        " intermediate walk entries are modelled by the walk caches." + _COMMON
    ),
)

NEOVERSE_V2 = TlbSpec(
    name="neoverse-v2",
    l1d=(_a(48, 48, "4K", "64K", "2M"),),
    l1i=(_a(48, 48, "4K", "64K", "2M"),),
    l2=(_a(2048, 8, "4K", "64K", "2M", "1G"),),
    pwc=CHAMPSIM_PWC,
    source=(
        "Arm Neoverse V2 (Graviton 4): L1 DTLB 48 fully associative, L1 ITLB 48 fully associative"
        " (4K/64K/2M with a 4K granule); L2 TLB 2048 8-way unified. jiegec 'ARM Neoverse V2' quoting"
        " TRM 102375 (hardware-and-peers.md 2.1)." + _COMMON
    ),
)

NONE = TlbSpec(name="none", source="No TLB model: every TLB call is a no-op and lookups report L1 hits.")

#: Presets by name.
TLB_PRESETS: dict[str, TlbSpec] = {
    s.name: s for s in (SKYLAKE, GOLDEN_COVE, ZEN2, ZEN4, NEOVERSE_N1, NEOVERSE_V2, NONE)
}


def tlb_preset(name: str) -> TlbSpec:
    """The preset called ``name`` (see :data:`TLB_PRESETS`).

    Raises
    ------
    InputError
        Unknown name.
    """
    try:
        return TLB_PRESETS[name]
    except KeyError:
        raise InputError(f"tlb: unknown preset {name!r} (one of {', '.join(TLB_PRESETS)})") from None


# --------------------------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------------------------

_ARRAY_KEYS = {"entries", "ways", "sizes", "replacement"}
_SPEC_KEYS = {"name", "preset", "source", "pwc", *_LEVEL_FIELDS}


def _array_from(table: Any, where: str, walk_cache: bool) -> TlbArray:
    if not isinstance(table, dict):
        raise InputError(f"{where}: expected a table with entries and ways")
    unknown = sorted(set(table) - _ARRAY_KEYS)
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown key (one of {', '.join(sorted(_ARRAY_KEYS))})")
    for key in ("entries", "ways"):
        if key not in table:
            raise InputError(f"{where}.{key}: missing")
    if walk_cache:
        sizes: tuple[str, ...] = ()
        if "sizes" in table:
            raise InputError(f"{where}.sizes: a page-walk cache holds no page sizes")
    else:
        raw = table.get("sizes", ["4K"])
        if isinstance(raw, str) or not isinstance(raw, list):
            raise InputError(f'{where}.sizes: must be a list of page sizes such as ["4K", "2M"]')
        sizes = tuple(_parse_size(v, f"{where}.sizes[{i}]") for i, v in enumerate(raw))
    arr = TlbArray(
        entries=table["entries"], ways=table["ways"], sizes=sizes, replacement=table.get("replacement", "lru")
    )
    arr.validate(where, walk_cache=walk_cache)
    return arr


def load_tlb_toml(path_or_dict: str | Path | dict) -> TlbSpec:
    """A :class:`TlbSpec` from a TOML file or an already parsed table.

    Parameters
    ----------
    path_or_dict : str, pathlib.Path or dict
        A TOML file, or its parsed contents. The hierarchy is the ``[tlb]`` table (or the whole
        document if it has none)::

            [tlb]
            name = "mycore"
            [[tlb.l1d]]
            entries = 64
            ways = 4
            sizes = ["4K"]
            replacement = "plru"      # or "lru" (default)
            [[tlb.l1d]]
            entries = 32
            ways = 4
            sizes = ["2M"]
            [[tlb.l2]]
            entries = 1536
            ways = 12
            sizes = ["4K", "2M"]
            [tlb.pwc]
            pde = { entries = 32, ways = 4 }

        ``preset = "zen4"`` (alone) selects a preset, ``preset = "none"`` disables the model.

    Returns
    -------
    TlbSpec

    Raises
    ------
    InputError
        One line naming the field (``tlb.l2[0].ways: ...``): unreadable TOML, unknown key, zero
        ways, more ways than entries, entries not a multiple of ways, unknown page size or
        replacement policy, a level that cannot hold 4K pages.
    """
    where_file = ""
    if isinstance(path_or_dict, dict):
        doc = path_or_dict
    else:
        p = Path(path_or_dict)
        where_file = f"{p}: "
        try:
            doc = tomllib.loads(p.read_text())
        except OSError as err:
            raise InputError(f"{p}: cannot read ({err.strerror})") from None
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"{p}: not valid TOML ({err})") from None
    try:
        return _spec_from(doc)
    except InputError as err:
        raise InputError(f"{where_file}{err}") from None


def _spec_from(doc: dict) -> TlbSpec:
    table = doc.get("tlb", doc) if isinstance(doc, dict) else doc
    if not isinstance(table, dict):
        raise InputError("tlb: expected a table")
    unknown = sorted(set(table) - _SPEC_KEYS)
    if unknown:
        raise InputError(f"tlb.{unknown[0]}: unknown key (one of {', '.join(sorted(_SPEC_KEYS))})")
    if "preset" in table:
        others = sorted(set(table) - {"preset"})
        if others:
            raise InputError(f"tlb.{others[0]}: not allowed together with preset")
        if not isinstance(table["preset"], str):
            raise InputError("tlb.preset: must be a preset name")
        return tlb_preset(table["preset"])
    levels = {}
    for lvl in _LEVEL_FIELDS:
        raw = table.get(lvl, [])
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            raise InputError(f"tlb.{lvl}: expected an array of tables ([[tlb.{lvl}]])")
        levels[lvl] = tuple(_array_from(t, f"tlb.{lvl}[{i}]", False) for i, t in enumerate(raw))
    pwc_raw = table.get("pwc", {})
    if not isinstance(pwc_raw, dict):
        raise InputError("tlb.pwc: expected a table")
    unknown = sorted(set(pwc_raw) - {"pml4e", "pdpte", "pde"})
    if unknown:
        raise InputError(f"tlb.pwc.{unknown[0]}: unknown key (one of pml4e, pdpte, pde)")
    pwc = PwcSpec(**{k: _array_from(v, f"tlb.pwc.{k}", True) for k, v in pwc_raw.items()})
    name = table.get("name", "custom")
    if not isinstance(name, str):
        raise InputError("tlb.name: must be a string")
    source = table.get("source", "user-defined (TOML)")
    return TlbSpec(name=name, pwc=pwc, source=str(source), **levels)
