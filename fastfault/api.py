"""One simulation point, from a workload and knobs to counters and derived metrics.

This is what ``fastfault run`` prints and what every row of a sweep's
``results.parquet`` holds. Notebooks use it directly::

    from fastfault.api import run
    r = run("zipf", workload_params={"npages": 65536, "n": 1_000_000}, fault_around_bytes="128KiB")
    r.counters["minflt"], r.derived["faults_per_1k"]

Everything is reproducible from the arguments: the page-cache layout of each
file is drawn from ``seed`` (one child seed per file), the workload from the
same seed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastfault.errors import InputError
from fastfault.fault.state import PAGE_SIZE
from fastfault.model import Config, FileSpec, Simulator, VmaSpec, folio_sizes_from_orders

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: int | str, what: str = "size") -> int:
    """``"64KiB"``, ``"2MiB"``, ``"4096"`` or an int -> bytes."""
    if isinstance(value, bool):
        raise InputError(f"{what}: {value!r} is not a size")
    if isinstance(value, int | np.integer):
        return int(value)
    m = _SIZE_RE.match(str(value))
    if not m:
        raise InputError(f"{what}: {value!r} is not a size like 4096, 64KiB or 2MiB")
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * _UNITS[unit]


@dataclass(frozen=True)
class Layout:
    """How the page cache of every traced file is filled.

    Attributes
    ----------
    thp_ratio : float or None
        Share of 2 MiB-aligned regions held by one PMD-size folio; the rest by ``base_order`` folios.
    folio_orders : dict or None
        Folio-order distribution ``{order: weight}`` (overrides ``thp_ratio``).
    base_order : int
        Order of the folios that are not THPs when ``thp_ratio`` is used.
    cached : float
        Fraction of each file that is in the page cache (1.0: hot; 0.0: cold, every first touch a
        major fault). Uncached pages are chosen per 2 MiB-aligned folio-free region at random.
    layouts : dict
        ``path -> folio_size`` arrays recorded from a live page cache (``fastfault kernel layout``);
        they take precedence for their files.
    """

    thp_ratio: float | None = None
    folio_orders: dict[int, float] | None = None
    base_order: int = 0
    cached: float = 1.0
    layouts: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if self.thp_ratio is not None and not 0.0 <= self.thp_ratio <= 1.0:
            raise InputError(f"thp_ratio: {self.thp_ratio} is not in [0, 1]")
        if not 0.0 <= self.cached <= 1.0:
            raise InputError(f"cached: {self.cached} is not in [0, 1]")
        if not 0 <= self.base_order <= 9:
            raise InputError(f"base_order: {self.base_order} is not in 0..9")

    def weights(self) -> dict[int, float]:
        if self.folio_orders is not None:
            return {int(k): float(v) for k, v in self.folio_orders.items()}
        r = 0.0 if self.thp_ratio is None else float(self.thp_ratio)
        if self.base_order == 9:
            return {9: 1.0}
        return {9: r, self.base_order: 1.0 - r} if r > 0 else {self.base_order: 1.0}

    def folio_sizes(self, path: str, npages: int, rng: np.random.Generator) -> np.ndarray:
        if path in self.layouts:
            fs = np.asarray(self.layouts[path], dtype=np.int64)
            if fs.shape[0] != npages:
                raise InputError(f"layout for {path}: {fs.shape[0]} pages, but the file has {npages}")
            return fs
        fs = folio_sizes_from_orders(npages, self.weights(), rng)
        if self.cached < 1.0 and npages:
            drop = rng.random(npages) >= self.cached
            heads = np.flatnonzero(drop & ((np.arange(npages) & (fs - 1)) == 0))
            for h in heads:
                fs[h : h + fs[h]] = -1
        return fs


@dataclass
class RunResult:
    """What one simulation produced.

    Attributes
    ----------
    counters : dict
        Every counter of :class:`~fastfault.fault.state.Stat`.
    derived : dict
        Faults per 1000 accesses, pages mapped per fault-around call, and so on.
    window_hist : dict
        Fault-around window sizes (pages) -> calls.
    params : dict
        The knobs and workload parameters that produced it.
    """

    counters: dict[str, int]
    derived: dict[str, float]
    window_hist: dict[int, int]
    params: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """One flat, tidy row: parameters, counters and derived metrics."""
        out = {f"param_{k}": v for k, v in self.params.items()}
        out.update(self.counters)
        out.update(self.derived)
        return out


def derived_metrics(c: dict[str, int]) -> dict[str, float]:
    """Ratios users compare across runs."""
    acc = max(c["accesses"], 1)
    faults = c["minflt"] + c["majflt"]
    fa_calls = c["faultaround_calls"]
    prefaulted = c["ptes_installed"] - (c["pgfault"] - c["fault_af"] - c["fault_wp_shared"] - c["fault_wp_cow"])
    return {
        "faults": float(faults),
        "faults_per_1k": 1000.0 * faults / acc,
        "pages_per_faultaround": c["faultaround_pages"] / fa_calls if fa_calls else 0.0,
        "faultaround_hit_rate": c["faultaround_nopage"] / fa_calls if fa_calls else 0.0,
        "pages_mapped": float(c["mm_filepages"] + c["mm_anonpages"]),
        "prefaulted_ptes": float(max(prefaulted, 0)),
        "prefault_used_fraction": c["prefault_used"] / prefaulted if prefaulted > 0 else 0.0,
    }


def _vma_specs(trace, layout: Layout, seed: int):
    """Files and VMAs for the file mappings of a trace (mappings of one path share one page cache)."""
    paths: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for m in trace.mappings:
        if not m.is_file:
            continue
        end = m.offset + (m.end - m.start)
        size = m.file_size if m.file_size >= 0 else end
        sizes[m.path] = max(sizes.get(m.path, 0), size)
        paths.setdefault(m.path, len(paths))
    if not paths:
        raise InputError("the trace has no file mappings to simulate")
    children = np.random.SeedSequence(seed).spawn(len(paths))
    files = []
    for path, idx in paths.items():
        npages = -(-sizes[path] // PAGE_SIZE)
        rng = np.random.default_rng(children[idx])
        files.append(FileSpec(i_size=sizes[path], folio_size=layout.folio_sizes(path, npages, rng), name=path))
    vmas = [
        VmaSpec(
            start=m.start,
            pages=(m.end - m.start) // PAGE_SIZE,
            file=paths[m.path],
            pgoff=m.offset // PAGE_SIZE,
            shared=m.shared,
            writable=m.writable,
            executable=m.executable,
        )
        for m in trace.mappings
        if m.is_file
    ]
    return files, vmas


def build(trace, *, config: Config, layout: Layout, seed: int = 0, **sim_kwargs) -> Simulator:
    """A :class:`~fastfault.model.Simulator` for a trace's file mappings."""
    files, vmas = _vma_specs(trace, layout, seed)
    return Simulator(files, vmas, config, **sim_kwargs)


def load_workload(workload, workload_params: MappingABC[str, Any] | None, seed: int):
    """A :class:`~fastfault.trace.format.Trace` from a workload name, a trace file or a Trace."""
    from fastfault.trace.format import Trace, load_trace

    if isinstance(workload, Trace):
        return workload
    name = str(workload)
    if name.endswith(".fftrace"):
        return load_trace(name)
    from fastfault.workloads import make_workload

    return make_workload(name, seed=seed, **dict(workload_params or {}))


def run(
    workload="sequential",
    *,
    workload_params: MappingABC[str, Any] | None = None,
    seed: int = 0,
    profile: str = "linux-6.18",
    arch: str = "x86_64",
    fault_around_bytes: int | str = 65536,
    prefault: str | None = None,
    thp_disabled: bool = False,
    thp_ratio: float | None = None,
    folio_orders: dict[int, float] | None = None,
    base_order: int = 0,
    cached: float = 1.0,
    layouts: dict[str, np.ndarray] | None = None,
    tlb="auto",
    cost: str | None = "auto",
    aging_interval: int = 0,
    aging_policy: str = "lru",
    aging_evict: bool = False,
) -> RunResult:
    """Simulate one point: build the page cache and the mappings, replay the workload, measure.

    Parameters
    ----------
    workload : str or Trace
        A generated workload's name (see :data:`fastfault.workloads.WORKLOADS`), a ``.fftrace`` file,
        or a Trace.
    workload_params : dict, optional
        Parameters of a generated workload.
    seed : int
        Seeds the workload and the page-cache layout.
    profile, arch, fault_around_bytes, prefault, thp_disabled
        See :class:`~fastfault.model.Config` (sizes may be strings like ``"64KiB"``).
    thp_ratio, folio_orders, base_order, cached, layouts
        See :class:`Layout`.
    tlb, cost, aging_interval, aging_policy, aging_evict
        See :class:`~fastfault.model.Simulator` (``auto``: the TLB and cost presets of the architecture).

    Returns
    -------
    RunResult
    """
    config = Config(
        profile=profile,
        arch=arch,
        fault_around_bytes=parse_size(fault_around_bytes, "fault_around_bytes"),
        prefault=prefault,
        thp_disabled=thp_disabled,
    )
    layout = Layout(
        thp_ratio=thp_ratio,
        folio_orders=folio_orders,
        base_order=base_order,
        cached=cached,
        layouts=layouts or {},
    )
    trace = load_workload(workload, workload_params, seed)
    sim = build(
        trace,
        config=config,
        layout=layout,
        seed=seed,
        tlb=tlb,
        cost=cost,
        aging_interval=aging_interval,
        aging_policy=aging_policy,
        aging_evict=aging_evict,
    )
    sim.run(trace.vpn, trace.kind, trace.count)
    counters = sim.counters()
    params = {
        "workload": workload if isinstance(workload, str) else trace.meta.get("name", "trace"),
        "seed": seed,
        "profile": profile,
        "arch": arch,
        "fault_around_bytes": config.fault_around_pages * PAGE_SIZE,
        "prefault": prefault or ("old" if config.vector()[2] else "young"),
        "thp_disabled": thp_disabled,
        "thp_ratio": -1.0 if thp_ratio is None else float(thp_ratio),
        "base_order": base_order,
        "cached": cached,
        "tlb": sim.tlb_spec.name if sim.tlb_spec is not None else "none",
        "cost": sim.cost or "none",
        "aging_interval": aging_interval,
        "aging_policy": aging_policy if aging_interval else "none",
        "aging_evict": aging_evict,
    }
    for k, v in (workload_params or {}).items():
        params[f"wl_{k}"] = v
    derived = derived_metrics(counters)
    extra = sim.extra_metrics()
    derived.update(extra.pop("derived"))
    return RunResult(counters, derived, sim.window_histogram(), params, extra)
