"""Build a simulated machine (page cache, address space, knobs) and run traces through it.

This is the validating, allocating layer over the jitted fault path in
:mod:`fastfault.fault`: every public function checks its input and raises
:class:`~fastfault.errors.InputError` with a one-line reason, then hands flat
arrays to the kernels.

Examples
--------
>>> import numpy as np
>>> from fastfault.model import FileSpec, VmaSpec, Config, Simulator
>>> f = FileSpec.from_folio_sizes(np.full(1024, 16))        # a 4 MiB file in 64 KiB folios
>>> sim = Simulator([f], [VmaSpec(start=0x7f0000000000, pages=1024)], Config())
>>> sim.run(np.arange(1024) + (0x7f0000000000 >> 12))
>>> sim.counters()["minflt"]
64
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fastfault.errors import InputError
from fastfault.fault.state import (
    HIST_LEN,
    PAGE_SIZE,
    PG,
    PROFILE_NAMES,
    PTE,
    PTRS_PER_PTE,
    VM_READAHEAD_PAGES,
    Cfg,
    FileField,
    SimState,
    Stat,
    VmaField,
    VmaFlag,
)

__all__ = [
    "ARCHES",
    "Arch",
    "Config",
    "FileSpec",
    "Simulator",
    "VmaSpec",
    "fault_around_pages",
    "folio_sizes_from_orders",
]


@dataclass(frozen=True)
class Arch:
    """An architecture preset.

    Attributes
    ----------
    name : str
    hw_af : bool
        The MMU sets the accessed (and dirty) bit itself; otherwise an access through an old PTE
        is an access-flag fault.
    old_prefault : bool
        ``arch_wants_old_prefaulted_pte()``.
    exec_folio_order : int
        ``exec_folio_order()`` for VM_EXEC read-around (v6.16+).
    """

    name: str
    hw_af: bool
    old_prefault: bool
    exec_folio_order: int


#: Architecture presets: x86-64 (hardware accessed bit, young prefault), arm64 with FEAT_HAFDBS
#: (hardware AF, old prefault), arm64 without it (young prefault, access-flag faults).
ARCHES = {
    "x86_64": Arch("x86_64", hw_af=True, old_prefault=False, exec_folio_order=0),
    "arm64": Arch("arm64", hw_af=True, old_prefault=True, exec_folio_order=4),
    "arm64-nohaf": Arch("arm64-nohaf", hw_af=False, old_prefault=False, exec_folio_order=4),
}


def fault_around_pages(fault_around_bytes: int) -> int:
    """The kernel's ``fault_around_bytes`` debugfs setter: bytes -> ``fault_around_pages``.

    Parameters
    ----------
    fault_around_bytes : int
        Value written to ``/sys/kernel/debug/fault_around_bytes``.

    Returns
    -------
    int
        Pages: the value rounded down to a power of two, at least one page.

    Raises
    ------
    InputError
        Negative, or more than ``PTRS_PER_PTE`` pages (the kernel answers ``-EINVAL``).

    Notes
    -----
    ``fault_around_bytes_set()`` of Linux v6.4+ (``mm/memory.c``); v3.16-v6.3 round the same way.
    """
    val = int(fault_around_bytes)
    if val < 0:
        raise InputError(f"fault_around_bytes: {val} is negative")
    if val // PAGE_SIZE > PTRS_PER_PTE:
        raise InputError(
            f"fault_around_bytes: {val} is more than PTRS_PER_PTE pages "
            f"({PTRS_PER_PTE * PAGE_SIZE} bytes); the kernel rejects it with EINVAL"
        )
    val = max(val, PAGE_SIZE)
    return (1 << (val.bit_length() - 1)) // PAGE_SIZE


@dataclass(frozen=True)
class Config:
    """Knobs of one simulation.

    Attributes
    ----------
    profile : str
        ``linux-6.18`` (default), ``linux-6.6`` or ``linux-5.12``.
    arch : str
        ``x86_64``, ``arm64`` or ``arm64-nohaf``.
    fault_around_bytes : int
        As written to debugfs (rounded like the kernel does).
    prefault : str or None
        ``young`` or ``old`` to override the architecture's ``arch_wants_old_prefaulted_pte()``.
    thp_disabled : bool
        No PMD mappings of page-cache THPs (``thp_disabled_by_hw()`` / ``PR_SET_THP_DISABLE``).
    flush_on_clear_young : bool or None
        Whether clearing an accessed bit flushes the TLB entry (``ptep_clear_flush_young``): arm64
        yes, x86 no (the default per architecture).
    """

    profile: str = "linux-6.18"
    arch: str = "x86_64"
    fault_around_bytes: int = 65536
    prefault: str | None = None
    thp_disabled: bool = False
    flush_on_clear_young: bool | None = None

    def __post_init__(self):
        if self.profile not in PROFILE_NAMES:
            raise InputError(f"profile: unknown {self.profile!r} (one of {', '.join(PROFILE_NAMES)})")
        if self.arch not in ARCHES:
            raise InputError(f"arch: unknown {self.arch!r} (one of {', '.join(ARCHES)})")
        if self.prefault not in (None, "young", "old"):
            raise InputError(f"prefault: {self.prefault!r} is not 'young' or 'old'")
        fault_around_pages(self.fault_around_bytes)

    @property
    def fault_around_pages(self) -> int:
        return fault_around_pages(self.fault_around_bytes)

    def vector(self) -> np.ndarray:
        """The ``int64`` configuration vector the kernels read (indexed by :class:`Cfg`)."""
        arch = ARCHES[self.arch]
        cfg = np.zeros(Cfg.NFIELDS, dtype=np.int64)
        cfg[Cfg.FA_PAGES] = self.fault_around_pages
        cfg[Cfg.PROFILE] = PROFILE_NAMES[self.profile]
        old = arch.old_prefault if self.prefault is None else self.prefault == "old"
        cfg[Cfg.OLD_PREFAULT] = int(old)
        cfg[Cfg.HW_AF] = int(arch.hw_af)
        cfg[Cfg.THP_DISABLED] = int(self.thp_disabled)
        cfg[Cfg.EXEC_ORDER] = arch.exec_folio_order
        arm = self.arch.startswith("arm64")
        cfg[Cfg.CONTPTE] = int(arm and cfg[Cfg.PROFILE] >= PROFILE_NAMES["linux-6.18"])  # contpte: v6.9+
        flush = arm if self.flush_on_clear_young is None else self.flush_on_clear_young
        cfg[Cfg.FLUSH_ON_CLEAR_YOUNG] = int(flush)
        return cfg


def _check_folio_sizes(folio_size: np.ndarray, where: str) -> None:
    fs = folio_size
    bad = (fs != -1) & ((fs <= 0) | (fs > PTRS_PER_PTE) | ((fs & (fs - 1)) != 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where}: folio_size[{i}] = {int(fs[i])} is not -1 or a power of two up to 512")
    idx = np.flatnonzero(fs > 0)
    if idx.size == 0:
        return
    size = fs[idx]
    head = idx & ~(size - 1)
    wrong = fs[head] != size
    if wrong.any():
        i = int(idx[np.flatnonzero(wrong)[0]])
        raise InputError(f"{where}: page {i} is in a folio of {int(fs[i])} pages that is not naturally aligned")
    n = fs.shape[0]
    expect = np.minimum(fs[head], n - head)
    counts = np.bincount(head, minlength=n)[head]
    short = counts != expect
    if short.any():
        i = int(idx[np.flatnonzero(short)[0]])
        raise InputError(f"{where}: the folio holding page {i} is not cached on all of its pages")


@dataclass(frozen=True)
class FileSpec:
    """One file and its page-cache contents.

    Attributes
    ----------
    i_size : int
        File size in bytes.
    folio_size : numpy.ndarray
        int64, (ceil(i_size / 4096),): per page, the size in pages of its folio (naturally aligned,
        a power of two up to 512), -1 if not cached. The last folio may extend past EOF.
    name : str
    ra_pages : int
        ``read_ahead_kb`` in pages (default 32 = 128 KiB).
    max_folio_order : int
        ``mapping_max_folio_order()``: 9 for a file system with large folios (ext4, xfs), 0 without.
    locked, readahead, workingset : numpy.ndarray or None
        bool, same shape: folio flags on head pages (I/O in flight, PG_readahead, PG_workingset).
    """

    i_size: int
    folio_size: np.ndarray = field(repr=False)
    name: str = "file"
    ra_pages: int = VM_READAHEAD_PAGES
    max_folio_order: int = 9
    locked: np.ndarray | None = field(default=None, repr=False)
    readahead: np.ndarray | None = field(default=None, repr=False)
    workingset: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if int(self.i_size) < 0:
            raise InputError(f"{self.name}: i_size {self.i_size} is negative")
        npages = (int(self.i_size) + PAGE_SIZE - 1) // PAGE_SIZE
        fs = np.asarray(self.folio_size)
        if fs.ndim != 1 or fs.shape[0] != npages or not np.issubdtype(fs.dtype, np.integer):
            raise InputError(f"{self.name}: folio_size must be an integer array of {npages} pages, got {fs.shape}")
        fs = fs.astype(np.int64, copy=False)
        _check_folio_sizes(fs, self.name)
        object.__setattr__(self, "folio_size", fs)
        if not 0 <= self.max_folio_order <= 9:
            raise InputError(f"{self.name}: max_folio_order {self.max_folio_order} is not in 0..9")
        if self.ra_pages < 0:
            raise InputError(f"{self.name}: ra_pages {self.ra_pages} is negative")
        for attr in ("locked", "readahead", "workingset"):
            arr = getattr(self, attr)
            if arr is not None and np.asarray(arr).shape != (npages,):
                raise InputError(f"{self.name}: {attr} must have shape ({npages},)")

    @classmethod
    def from_folio_sizes(cls, folio_size, i_size: int | None = None, **kw) -> FileSpec:
        """A file whose size is ``len(folio_size)`` pages unless ``i_size`` (bytes) says otherwise."""
        folio_size = np.asarray(folio_size, dtype=np.int64)
        if i_size is None:
            i_size = folio_size.shape[0] * PAGE_SIZE
        return cls(i_size=int(i_size), folio_size=folio_size, **kw)

    @classmethod
    def uncached(cls, i_size: int, **kw) -> FileSpec:
        """A file with nothing in the page cache (every access starts with a major fault)."""
        npages = (int(i_size) + PAGE_SIZE - 1) // PAGE_SIZE
        return cls(i_size=int(i_size), folio_size=np.full(npages, -1, dtype=np.int64), **kw)

    @property
    def npages(self) -> int:
        return self.folio_size.shape[0]


def folio_sizes_from_orders(npages: int, order_weights: dict[int, float], rng: np.random.Generator) -> np.ndarray:
    """A page-cache layout drawn from a folio-order distribution.

    Walking the file from page 0, each folio's order is drawn from ``order_weights`` among the
    orders that are naturally aligned at that index and fit in the file.

    Parameters
    ----------
    npages : int
        File size in pages.
    order_weights : dict of int to float
        Relative weight of each order 0..9 (a THP ratio r is ``{9: r, 0: 1 - r}``).
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller).

    Returns
    -------
    numpy.ndarray
        int64, (npages,): folio size per page, every page cached.
    """
    if npages < 0:
        raise InputError(f"npages {npages} is negative")
    orders = np.array(sorted(order_weights), dtype=np.int64)
    if orders.size == 0 or orders.min() < 0 or orders.max() > 9:
        raise InputError(f"folio orders must be in 0..9, got {sorted(order_weights)}")
    weights = np.array([float(order_weights[o]) for o in orders])
    if (weights < 0).any() or weights.sum() <= 0:
        raise InputError("folio order weights must be non-negative and not all zero")
    out = np.empty(npages, dtype=np.int64)
    draws = rng.random(npages + 1)
    from fastfault.fault.layout import fill_folio_sizes

    fill_folio_sizes(draws, orders, weights.astype(np.float64), out, np.empty(orders.size, np.float64))
    return out


@dataclass(frozen=True)
class VmaSpec:
    """One file mapping.

    Attributes
    ----------
    start : int
        Start address in bytes (page aligned).
    pages : int
        Length in pages.
    file : int
        Index of the mapped file in the simulator's file list.
    pgoff : int
        File offset in pages (``vm_pgoff``).
    shared : bool
        MAP_SHARED (True) or MAP_PRIVATE.
    writable, executable : bool
        PROT_WRITE, PROT_EXEC.
    advice : str or None
        ``random`` (MADV_RANDOM), ``sequential``, ``hugepage``, ``nohugepage``.
    uffd : bool
        Registered with userfaultfd (WP or minor mode): fault-around is disabled.
    """

    start: int
    pages: int
    file: int = 0
    pgoff: int = 0
    shared: bool = True
    writable: bool = False
    executable: bool = False
    advice: str | None = None
    uffd: bool = False

    _ADVICE = {
        "random": VmaFlag.RAND_READ,
        "sequential": VmaFlag.SEQ_READ,
        "hugepage": VmaFlag.HUGEPAGE,
        "nohugepage": VmaFlag.NOHUGEPAGE,
    }

    def __post_init__(self):
        if self.start < 0 or self.start % PAGE_SIZE:
            raise InputError(f"vma start {self.start:#x} is not a page-aligned address")
        if self.pages <= 0:
            raise InputError(f"vma at {self.start:#x}: length {self.pages} pages is not positive")
        if self.pgoff < 0:
            raise InputError(f"vma at {self.start:#x}: pgoff {self.pgoff} is negative")
        if self.advice is not None and self.advice not in self._ADVICE:
            raise InputError(f"vma advice {self.advice!r} is not one of {', '.join(self._ADVICE)}")

    @property
    def start_vpn(self) -> int:
        return self.start // PAGE_SIZE

    def flags(self) -> int:
        fl = 0
        if self.shared:
            fl |= VmaFlag.SHARED
        if self.writable:
            fl |= VmaFlag.WRITE
        if self.executable:
            fl |= VmaFlag.EXEC
        if self.advice is not None:
            fl |= self._ADVICE[self.advice]
        if self.uffd:
            fl |= VmaFlag.UFFD
        return int(fl)


def _build_page_cache(files: Sequence[FileSpec]):
    table = np.zeros((len(files), FileField.NFIELDS), dtype=np.int64)
    caps = []
    for fs in files:
        npages = fs.npages
        cap = -(-npages // PTRS_PER_PTE) * PTRS_PER_PTE
        if npages:
            last = fs.folio_size[-1]
            if last > 0:
                cap = max(cap, ((npages - 1) & ~(int(last) - 1)) + int(last))
        caps.append(cap)
    total = int(sum(caps))
    pc_order = np.full(total, -1, dtype=np.int8)
    pc_flags = np.zeros(total, dtype=np.uint8)
    base = 0
    for row, (fs, cap) in enumerate(zip(files, caps, strict=True)):
        n = fs.npages
        sizes = fs.folio_size
        cached = np.flatnonzero(sizes > 0)
        order = np.zeros(n, dtype=np.int8)
        order[cached] = np.log2(sizes[cached]).astype(np.int8)
        pc_order[base : base + n] = np.where(sizes > 0, order, -1)
        if n and sizes[-1] > 0:  # a last folio reaching past EOF
            head = (n - 1) & ~(int(sizes[-1]) - 1)
            pc_order[base + head : base + head + int(sizes[-1])] = order[-1]
        heads = cached[(cached & ~(sizes[cached] - 1)) == cached]
        pc_flags[base + heads] = PG.UPTODATE
        for attr, bit in (("locked", PG.LOCKED), ("readahead", PG.READAHEAD), ("workingset", PG.WORKINGSET)):
            arr = getattr(fs, attr)
            if arr is not None:
                sel = heads[np.asarray(arr, dtype=bool)[heads]]
                pc_flags[base + sel] |= np.uint8(bit)
        table[row, FileField.BASE] = base
        table[row, FileField.CAPACITY] = cap
        table[row, FileField.ISIZE] = fs.i_size
        table[row, FileField.RA_PAGES] = fs.ra_pages
        table[row, FileField.MAX_ORDER] = fs.max_folio_order
        base += cap
    return pc_order, pc_flags, table


def _build_vmas(vmas: Sequence[VmaSpec], nfiles: int):
    if not vmas:
        raise InputError("at least one file mapping (VMA) is needed")
    order = sorted(range(len(vmas)), key=lambda i: vmas[i].start)
    table = np.zeros((len(vmas), VmaField.NFIELDS), dtype=np.int64)
    pte_base = 0
    prev_end = -1
    pmd_numbers = []
    for row, i in enumerate(order):
        vm = vmas[i]
        if not 0 <= vm.file < nfiles:
            raise InputError(f"vma at {vm.start:#x}: file index {vm.file} does not name one of {nfiles} files")
        if vm.start_vpn < prev_end:
            raise InputError(f"vma at {vm.start:#x} overlaps the previous mapping")
        prev_end = vm.start_vpn + vm.pages
        table[row, VmaField.START] = vm.start_vpn
        table[row, VmaField.PAGES] = vm.pages
        table[row, VmaField.PGOFF] = vm.pgoff
        table[row, VmaField.FILE] = vm.file
        table[row, VmaField.FLAGS] = vm.flags()
        table[row, VmaField.PTE_BASE] = pte_base
        pte_base += vm.pages
        pmd_numbers.append(np.arange(vm.start_vpn >> 9, ((prev_end - 1) >> 9) + 1, dtype=np.int64))
    pmds = np.unique(np.concatenate(pmd_numbers))
    table[:, VmaField.PMD_BASE] = np.searchsorted(pmds, table[:, VmaField.START] >> 9)
    return table, np.zeros(pte_base, dtype=np.uint8), np.zeros(pmds.shape[0], dtype=np.uint8), order


_COUNTER_NAMES = [m.name.lower() for m in Stat if m is not Stat.NFIELDS]

_AGING_POLICIES = {"lru": 0, "mglru": 1}

#: TLB and cost presets ``auto`` picks per architecture.
AUTO_TLB = {"x86_64": "zen4", "arm64": "neoverse-n1", "arm64-nohaf": "neoverse-n1"}


def _tlb_spec(tlb, arch: str):
    """None, a preset name, ``auto``, a TOML path or a TlbSpec -> TlbSpec or None."""
    if tlb is None or tlb == "none":
        return None
    from fastfault.tlb import TlbSpec, load_tlb_toml, tlb_preset

    if isinstance(tlb, TlbSpec):
        return tlb
    name = str(tlb)
    if name == "auto":
        name = AUTO_TLB[arch]
    if name.endswith(".toml"):
        return load_tlb_toml(name)
    return tlb_preset(name)


def _spec_sizes(spec) -> set[str]:
    sizes = set()
    for level in ("l1d", "l1i", "l2", "l2i"):
        for arr in getattr(spec, level, ()) or ():
            sizes.update(arr.sizes)
    return sizes


def _cost_name(cost, tlb_spec, arch: str):
    if cost is None or cost == "none":
        return None
    from fastfault.cost import COST_PRESETS

    if cost == "auto":
        if tlb_spec is not None and tlb_spec.name in COST_PRESETS:
            return tlb_spec.name
        return "arm64" if arch.startswith("arm64") else "x86-64"
    if cost not in COST_PRESETS:
        raise InputError(f"cost: unknown model {cost!r} (one of {', '.join(COST_PRESETS)})")
    return cost


def _age_state(state: SimState, enabled: bool, evict: bool):
    """Aging state; when aging is off, zero-length arrays of the right types (nothing allocated)."""
    from fastfault.reclaim import AgeCfg, AgeStat, AgeState, new_age_state

    if enabled:
        return new_age_state(state, evict=evict)
    return AgeState(
        stats=np.zeros(AgeStat.NFIELDS, dtype=np.int64),
        last=np.zeros(AgeStat.NFIELDS, dtype=np.int64),
        decision=np.zeros(0, dtype=np.int8),
        seen_old=np.zeros(0, dtype=np.uint8),
        promoted=np.zeros(0, dtype=np.uint8),
        cleared_vpn=np.zeros(0, dtype=np.int64),
        unmapped_vpn=np.zeros(0, dtype=np.int64),
        nvpn=np.zeros(2, dtype=np.int64),
        cfg=np.zeros(AgeCfg.NFIELDS, dtype=np.int64),
        file_vmas=np.zeros(0, dtype=np.int64),
    )


class Simulator:
    """A simulated process: files in the page cache, file mappings, page tables, counters.

    Parameters
    ----------
    files : sequence of FileSpec
    vmas : sequence of VmaSpec
        Non-overlapping; ``VmaSpec.file`` indexes ``files``.
    config : Config
    tlb : str, TlbSpec or None
        A TLB preset name (``zen4``, ``golden-cove``, ``neoverse-n1``, ...; ``auto`` picks one for the
        architecture), a :class:`~fastfault.tlb.TlbSpec`, a TOML file path, or None for no TLB model
        (every access then walks, and sets the accessed bit).
    aging_interval : int
        Run a reclaim aging pass every this many accesses (0: never).
    aging_policy : str
        ``lru`` (``folio_referenced`` + ``folio_check_references``) or ``mglru`` (64-PTE look-around).
    aging_evict : bool
        Aging passes unmap and drop the folios they would reclaim (default: census only).
    cost : str or None
        A cost-model preset (see :data:`fastfault.cost.COST_PRESETS`; ``auto`` picks one for the TLB
        preset or architecture), or None.

    Notes
    -----
    Every ``run`` replays the whole trace in one jitted call
    (:func:`fastfault.fault.replay.replay_trace`).
    """

    def __init__(
        self,
        files: Sequence[FileSpec],
        vmas: Sequence[VmaSpec],
        config: Config | None = None,
        *,
        tlb=None,
        aging_interval: int = 0,
        aging_policy: str = "lru",
        aging_evict: bool = False,
        cost: str | None = None,
    ):
        self.config = config or Config()
        self.files = list(files)
        self.vmas = list(vmas)
        pc_order, pc_flags, ftable = _build_page_cache(self.files)
        vtable, pte, pmd, order = _build_vmas(self.vmas, len(self.files))
        self._vma_rows = {spec_index: row for row, spec_index in enumerate(order)}
        self.tlb_spec = _tlb_spec(tlb, self.config.arch)
        if int(aging_interval) < 0:
            raise InputError(f"aging_interval: {aging_interval} is negative")
        if aging_policy not in _AGING_POLICIES:
            raise InputError(f"aging_policy: {aging_policy!r} is not one of {', '.join(_AGING_POLICIES)}")
        self.aging_interval = int(aging_interval)
        self.aging_policy = aging_policy
        self.cost = _cost_name(cost, self.tlb_spec, self.config.arch)
        self.state = SimState(
            pc_order=pc_order,
            pc_flags=pc_flags,
            files=ftable,
            vmas=vtable,
            pte=pte,
            pmd=pmd,
            stats=np.zeros(Stat.NFIELDS, dtype=np.int64),
            fa_hist=np.zeros(HIST_LEN, dtype=np.int64),
            cfg=self.config.vector(),
            vmf=np.zeros(4, dtype=np.int64),
        )
        cfg = self.state.cfg
        cfg[Cfg.AGING_INTERVAL] = self.aging_interval
        cfg[Cfg.AGING_POLICY] = _AGING_POLICIES[aging_policy]
        from fastfault.tlb import build_tlb, tlb_preset

        spec = self.tlb_spec if self.tlb_spec is not None else tlb_preset("none")
        self.tlb = build_tlb(spec)
        if self.tlb_spec is not None:
            if self.config.arch.startswith("arm64") and cfg[Cfg.CONTPTE]:
                cfg[Cfg.COALESCE] = 2
            elif "16K" in _spec_sizes(self.tlb_spec):
                cfg[Cfg.COALESCE] = 1
        self.aging = _age_state(self.state, self.aging_interval > 0, aging_evict)

    def run(self, vpn, kind=None, count=None) -> None:
        """Replay accesses.

        Parameters
        ----------
        vpn : array_like of int64, (n,)
            Virtual page numbers (address >> 12).
        kind : array_like of uint8, (n,), optional
            :class:`~fastfault.codes.AccessKind` per access (default: all loads).
        count : array_like of int, (n,), optional
            Identical consecutive accesses per row (default: ones).
        """
        from fastfault.fault.replay import replay_trace

        vpn = np.ascontiguousarray(vpn, dtype=np.int64)
        if vpn.ndim != 1:
            raise InputError(f"trace: vpn must be one-dimensional, got shape {vpn.shape}")
        n = vpn.shape[0]
        kind = np.zeros(n, np.uint8) if kind is None else np.ascontiguousarray(kind, dtype=np.uint8)
        count = np.ones(n, np.int64) if count is None else np.ascontiguousarray(count, dtype=np.int64)
        if kind.shape != (n,) or count.shape != (n,):
            raise InputError("trace: vpn, kind and count must have the same length")
        if n and (count < 1).any():
            raise InputError("trace: every count must be at least 1")
        if n and kind.max(initial=0) > 2:
            raise InputError("trace: access kinds must be 0 (load), 1 (store) or 2 (ifetch)")
        replay_trace(self.state, self.tlb, self.aging, vpn, kind, count)

    def run_relative(self, pages, writes=None, vma: int = 0) -> None:
        """Replay accesses given as page indices relative to the start of VMA ``vma``."""
        spec = self.vmas[vma]
        pages = np.asarray(pages, dtype=np.int64)
        if pages.size and (pages.min() < 0 or pages.max() >= spec.pages):
            raise InputError(f"trace: page index outside the mapping of {spec.pages} pages")
        kind = None if writes is None else np.asarray(writes, dtype=bool).astype(np.uint8)
        self.run(pages + spec.start_vpn, kind)

    def clear_refs(self, flush_tlb: bool = False) -> None:
        """``echo 1 > /proc/PID/clear_refs``: every accessed bit and PG_referenced cleared.

        Linux 6.x does not flush the TLB for this; ``flush_tlb=True`` also empties it (what the case
        recorder achieves by sweeping a 128 MiB buffer between phases)."""
        from fastfault.fault.replay import clear_refs

        clear_refs(self.state)
        if flush_tlb:
            self.flush_tlb()

    def flush_tlb(self) -> None:
        """Invalidate every TLB entry."""
        from fastfault.fault.replay import flush_tlb

        flush_tlb(self.tlb)

    def age(self) -> dict[str, int]:
        """Run one reclaim aging pass now; returns that pass's counters."""
        from fastfault.fault.replay import aging_pass
        from fastfault.reclaim import age_stats

        if self.aging.decision.shape[0] == 0:
            self.aging = _age_state(self.state, True, False)
        aging_pass(self.state, self.tlb, self.aging)
        return age_stats(self.aging, last=True)

    def tlb_stats(self) -> dict[str, int]:
        """TLB counters (empty without a TLB model)."""
        if self.tlb_spec is None:
            return {}
        from fastfault.tlb import tlb_stats

        return tlb_stats(self.tlb)

    def aging_stats(self) -> dict[str, int]:
        """Cumulative reclaim-aging counters (empty when no pass ran)."""
        from fastfault.reclaim import age_stats

        st = age_stats(self.aging)
        return st if st.get("passes", 0) else {}

    def young_census(self) -> dict[str, int]:
        """Present PTEs now: young, old, and young but never accessed since installed (false young)."""
        pte = self.state.pte
        present = (pte & PTE.PRESENT) != 0
        young = present & ((pte & PTE.YOUNG) != 0)
        untouched = present & ((pte & PTE.UNTOUCHED) != 0)
        return {
            "present": int(present.sum()),
            "young": int(young.sum()),
            "old": int((present & ~young).sum()),
            "false_young": int((young & untouched).sum()),
            "old_untouched": int((untouched & ~young).sum()),
        }

    def extra_metrics(self) -> dict:
        """TLB, accessed-bit, aging and cost results: ``derived`` (flat metrics for result tables),
        ``tlb``, ``aging``, ``census``, ``cost`` and ``summary`` (lines for the readable report)."""
        c = self.counters()
        acc = max(c["accesses"], 1)
        census = self.young_census()
        tlb = self.tlb_stats()
        aging = self.aging_stats()
        derived: dict[str, float] = {
            "young_ptes": float(census["young"]),
            "false_young_now": float(census["false_young"]),
        }
        installed_young_prefault = c["prefault_young"]
        if aging:
            fy = aging.get("false_young", 0)
            derived["false_young_fraction"] = fy / installed_young_prefault if installed_young_prefault else 0.0
            for key in ("protected_untouched", "protected_used", "reclaim_untouched", "reclaim_used"):
                derived[f"aging_{key}"] = float(aging.get(key, 0))
        else:
            fy = census["false_young"]
            derived["false_young_fraction"] = fy / installed_young_prefault if installed_young_prefault else 0.0
        summary = {
            "accessed bits": f"{census['young']:,} young, {census['old']:,} old PTEs; {census['false_young']:,} "
            f"young but never used since installed (false young {derived['false_young_fraction']:.3f} of "
            f"{installed_young_prefault:,} prefaulted young)",
        }
        if tlb:
            derived["tlb_misses_per_1k"] = 1000.0 * tlb["misses"] / acc
            derived["tlb_l2_hits_per_1k"] = 1000.0 * tlb["l2_hits"] / acc
            derived["walk_refs_per_1k"] = 1000.0 * tlb["walk_refs"] / acc
            summary["TLB"] = (
                f"{self.tlb_spec.name}: {tlb['lookups']:,} lookups, {tlb['l1_hits']:,} L1 hits, "
                f"{tlb['l2_hits']:,} L2 hits, {tlb['misses']:,} misses ({derived['tlb_misses_per_1k']:.2f} "
                f"per 1000 accesses), {tlb['walk_refs']:,} walk references"
            )
        if aging:
            summary["reclaim aging"] = (
                f"{aging['passes']:,} passes ({self.aging_policy}): keep {aging.get('keep', 0):,}, activate "
                f"{aging.get('activate', 0):,}, reclaim {aging.get('reclaim', 0) + aging.get('reclaim_clean', 0):,}"
                f"; never-used prefaulted pages protected {aging.get('protected_untouched', 0):,}, used pages "
                f"it would evict {aging.get('reclaim_used', 0):,}"
            )
        cost = {}
        if self.cost is not None:
            from fastfault.cost import estimate

            cost = estimate(c, tlb, self.cost)
            derived["est_cycles"] = float(cost["total"])
            derived["est_cycles_per_access"] = float(cost["total"]) / acc
            for key, value in cost.items():
                if key not in ("model", "total", "total_ns") and isinstance(value, int | float):
                    derived[f"cost_{key}"] = float(value)
            parts = sorted(
                ((k, v) for k, v in cost.items() if k not in ("model", "total", "total_ns") and v),
                key=lambda kv: -kv[1],
            )
            summary["estimated cost"] = (
                f"{cost['total']:,.0f} cycles ({cost['model']}): "
                + ", ".join(f"{k} {100.0 * v / cost['total']:.1f}%" for k, v in parts[:5])
                if cost["total"]
                else "0 cycles"
            )
        return {"derived": derived, "tlb": tlb, "aging": aging, "census": census, "cost": cost, "summary": summary}

    def counters(self) -> dict[str, int]:
        """All counters (see :class:`~fastfault.fault.state.Stat`) by lower-case name."""
        return dict(zip(_COUNTER_NAMES, (int(x) for x in self.state.stats[: len(_COUNTER_NAMES)]), strict=True))

    def window_histogram(self) -> dict[int, int]:
        """Fault-around window sizes (pages) and how often each occurred."""
        h = self.state.fa_hist
        return {int(i): int(h[i]) for i in np.flatnonzero(h)}

    def smaps(self, vma: int = 0) -> dict[str, int]:
        """``Rss``, ``Referenced``, ``FilePmdMapped`` and ``Anonymous`` of one VMA, in pages."""
        from fastfault.fault.replay import smaps_vma

        row = self._vma_rows[vma]
        present = np.zeros(self.vmas[vma].pages, dtype=np.bool_)
        rss, ref, pmd, anon = smaps_vma(self.state, row, present)
        return {"Rss": int(rss), "Referenced": int(ref), "FilePmdMapped": int(pmd), "Anonymous": int(anon)}

    def present(self, vma: int = 0) -> np.ndarray:
        """bool, (vma_pages,): which pages of the VMA have a PTE or huge PMD (as pagemap reports)."""
        from fastfault.fault.replay import smaps_vma

        present = np.zeros(self.vmas[vma].pages, dtype=np.bool_)
        smaps_vma(self.state, self._vma_rows[vma], present)
        return present

    def mmap_miss(self, file: int = 0) -> int:
        """``f_ra.mmap_miss`` of a file."""
        return int(self.state.files[file, FileField.MMAP_MISS])
