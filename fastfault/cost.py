"""Cycle estimates from event counts: faults, PTE installation, accessed bits, TLB and walks.

:func:`estimate` multiplies the simulator's counters (``Simulator.counters()``) and the TLB
counters (:func:`fastfault.tlb.model.tlb_stats`) by per-event costs from a :class:`CostModel`
and returns the total and the breakdown by component:

=================  =====================================================  ===========================
component          events                                                 counter(s)
=================  =====================================================  ===========================
``minor_fault``    minor faults other than access-flag faults             ``minflt - fault_af``
``major_fault``    major faults                                           ``majflt``
``af_fault``       access-flag faults (old PTE/PMD, no hardware AF)       ``fault_af``
``pte_set``        PTEs set by fault-around and ``finish_fault`` batches  ``ptes_installed``
``pmd_install``    huge PMDs installed                                    ``pmd_mapped``
``hw_young_set``   hardware setting the accessed bit of an old PTE/PMD    ``old_to_young_hw``
``l1_tlb_hit``     L1 TLB hits                                            ``l1_hits``
``l2_tlb_hit``     L2 TLB hits                                            ``l2_hits``
``walk_pml4``      walk references to PML4 entries (and so on down)       ``walk_refs_pml4``
``walk_pdpt``                                                             ``walk_refs_pdpt``
``walk_pd``                                                               ``walk_refs_pd``
``walk_pt``                                                               ``walk_refs_pt``
``pwc_hit``        page-walk-cache hits                                   ``pwc_hits_pml4e + _pdpte + _pde``
=================  =====================================================  ===========================

A minor fault's cost is the trap and handler *without* the PTEs it sets (those are ``pte_set``),
so a fault-around of 16 pages costs ``minor_fault + 16 * pte_set``.

Sources (the design notes' ``hardware-and-peers.md``, section 2): fault costs were measured on
a 2-vCPU AMD EPYC VM running Linux 6.18 (section 2.4) in microseconds and are converted at the
preset's ``ghz`` (3.0 assumed; the VM's clock is not recorded); TLB and walk costs are cycle
counts from section 2.2; the x86 accessed-bit cost is Nadav Amit's (section 2.3). Every number is
an estimate: calibrate against your own machine before reading absolute times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from fastfault.errors import InputError

__all__ = ["COST_PRESETS", "CostModel", "cost_model", "estimate"]


@dataclass(frozen=True)
class CostModel:
    """Cycles per event (see the module docstring for which counter each field multiplies).

    Attributes
    ----------
    name : str
    ghz : float
        Clock used to convert measured times into cycles, and ``total`` cycles into ``total_ns``.
    minor_fault, major_fault, af_fault : float
        One fault (trap, handler, return), excluding the PTEs it sets.
    pte_set : float
        One PTE set by fault-around or a ``finish_fault`` batch.
    pmd_install : float
        One huge PMD installed by ``do_set_pmd``.
    hw_young_set : float
        The MMU setting the accessed bit of an old PTE/PMD on first use.
    l1_tlb_hit, l2_tlb_hit : float
        Extra cycles of a translation found in the L1 / L2 TLB.
    walk_pml4, walk_pdpt, walk_pd, walk_pt : float
        One page-walk memory reference at each level.
    pwc_hit : float
        One page-walk-cache hit.
    source : str
    """

    name: str
    ghz: float
    minor_fault: float
    major_fault: float
    af_fault: float
    pte_set: float
    pmd_install: float
    hw_young_set: float
    l1_tlb_hit: float
    l2_tlb_hit: float
    walk_pml4: float
    walk_pdpt: float
    walk_pd: float
    walk_pt: float
    pwc_hit: float
    source: str = ""

    def __post_init__(self):
        for f in fields(self):
            if f.name in ("name", "source"):
                continue
            val = getattr(self, f.name)
            if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val):
                raise InputError(f"cost.{f.name}: {val!r} is not a finite number of cycles")
            if val < 0:
                raise InputError(f"cost.{f.name}: {val} is negative")
        if self.ghz <= 0:
            raise InputError(f"cost.ghz: {self.ghz} is not a positive clock rate")

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if f.name not in ("name", "source", "ghz"))


_GHZ = 3.0  # assumed clock of the measurement VM (hardware-and-peers.md section 2.4)
_NS = _GHZ  # cycles per nanosecond

#: Measured on the project VM, Linux 6.18 (hardware-and-peers.md 2.4).
_MINOR = 2280.0 * _NS  # anon write fault incl. zeroing, 4K, MADV_NOHUGEPAGE: 2.28 us/fault (upper bound)
_MAJOR = 128_000.0 * _NS  # cold MADV_RANDOM read: 65 536 major faults in 8.4 s (virtio disk)
# Warm MAP_PRIVATE read, whole 1 MiB folios mapped: 271 faults for 65 536 pages at 17.5 us/fault;
# what is left after one fault's fixed cost, per page mapped.
_PTE = (17_500.0 - 2280.0) * _NS / (65536 / 271)

_FAULTS = (
    f"Faults at {_GHZ} GHz (assumed): minor {_MINOR:.0f} cycles = 2.28 us (anon write fault incl."
    f" zeroing, an upper bound), major {_MAJOR:.0f} = 128 us (virtio disk), access-flag fault = a minor"
    f" fault (no published number, section 2.3); pte_set {_PTE:.0f} = (17.5 us - 2.28 us) / 241.8 pages"
    " (6.18 warm file read, 271 faults for 65 536 pages); pmd_install = pte_set (assumed, no number)."
    " hardware-and-peers.md 2.4."
)
_WARM_WALK = (
    " Walks: 20 cycles per reference (Haswell: an STLB miss costs ~+20 cycles when the PTEs are cached,"
    " mynavi, section 2.2); page-walk-cache hits and L1 TLB hits 0 (inside the load-to-use latency)."
)


def _preset(name, l2, hw_young, walk_ref=20.0, extra=""):
    return CostModel(
        name=name,
        ghz=_GHZ,
        minor_fault=_MINOR,
        major_fault=_MAJOR,
        af_fault=_MINOR,
        pte_set=_PTE,
        pmd_install=_PTE,
        hw_young_set=hw_young,
        l1_tlb_hit=0.0,
        l2_tlb_hit=l2,
        walk_pml4=walk_ref,
        walk_pdpt=walk_ref,
        walk_pd=walk_ref,
        walk_pt=walk_ref,
        pwc_hit=0.0,
        source=_FAULTS + extra,
    )


_X86_A = " Accessed bit: ~600 cycles to use an old PTE on x86 (Nadav Amit, commit ad1b8120bf00; section 2.3)."
_ARM_A = (
    " Accessed flag set by hardware (FEAT_HAFDBS): 0, 'experimentally cheap' per arm64 pgtable.h, no number"
    " (section 2.3)."
)

#: Cost presets by name (fault costs shared; TLB and accessed-bit costs per core).
COST_PRESETS: dict[str, CostModel] = {
    p.name: p
    for p in (
        _preset(
            "x86-64", 7.0, 600.0, extra=" L2 TLB hit +7 (Golden Cove, Zen 4, Zen 5; section 2.2)." + _WARM_WALK + _X86_A
        ),
        _preset(
            "x86-64-cold-walks",
            7.0,
            600.0,
            walk_ref=180.0,
            extra=(
                " L2 TLB hit +7. Walks: 180 cycles per reference (a 4-level walk missing to DDR5 at every level"
                " takes 720-1000 cycles, The MMU Handbook ch. 17, secondary; section 2.2)." + _X86_A
            ),
        ),
        _preset(
            "skylake",
            7.0,
            600.0,
            extra=(
                " L2 TLB hit +7 (assumed: Haswell's STLB-hit load takes 12 cycles vs ~5 for an L1 hit)."
                + _WARM_WALK
                + _X86_A
            ),
        ),
        _preset("golden-cove", 7.0, 600.0, extra=" L2 TLB hit +7 (jiegec, section 2.2)." + _WARM_WALK + _X86_A),
        _preset("zen2", 7.0, 600.0, extra=" L2 TLB hit +7 (assumed = Zen 4/5)." + _WARM_WALK + _X86_A),
        _preset("zen4", 7.0, 600.0, extra=" L2 TLB hit +7 (jiegec, section 2.2)." + _WARM_WALK + _X86_A),
        _preset(
            "neoverse-n1",
            3.0,
            0.0,
            extra=" L2 TLB access 'usually three cycles' (Cortex-A76 TRM, section 2.2)." + _WARM_WALK + _ARM_A,
        ),
        _preset(
            "neoverse-v2",
            6.0,
            0.0,
            extra=" L1 miss, L2 hit: 6-cycle penalty (TRM 102375, section 2.2)." + _WARM_WALK + _ARM_A,
        ),
        _preset("arm64", 6.0, 0.0, extra=" As neoverse-v2." + _WARM_WALK + _ARM_A),
    )
}


def cost_model(preset: str | CostModel = "x86-64", **overrides: float) -> CostModel:
    """A cost model: a preset, optionally with some costs replaced.

    Parameters
    ----------
    preset : str or CostModel
        A name from :data:`COST_PRESETS` or a model.
    **overrides : float
        Cycles per event by field name, e.g. ``minor_fault=3000``.

    Returns
    -------
    CostModel

    Raises
    ------
    InputError
        Unknown preset or field, or a negative / non-finite cost.
    """
    if isinstance(preset, str):
        if preset not in COST_PRESETS:
            raise InputError(f"cost: unknown preset {preset!r} (one of {', '.join(COST_PRESETS)})")
        model = COST_PRESETS[preset]
    elif isinstance(preset, CostModel):
        model = preset
    else:
        raise InputError(f"cost: expected a preset name or a CostModel, got {type(preset).__name__}")
    known = {f.name for f in fields(CostModel)}
    for key in overrides:
        if key not in known:
            raise InputError(f"cost.{key}: unknown cost (one of {', '.join(model.components)})")
    if not overrides:
        return model
    return replace(model, name=overrides.pop("name", f"{model.name}+custom"), **overrides)


def _count(d: Mapping, key: str, where: str) -> int:
    val = d.get(key, 0)
    if isinstance(val, bool) or not isinstance(val, int | float) or val < 0 or not math.isfinite(val):
        raise InputError(f"{where}.{key}: {val!r} is not a non-negative count")
    return int(val)


def estimate(counters: Mapping[str, int], tlb_stats: Mapping[str, int] | None, preset: str | CostModel) -> dict:
    """Estimated cycles of a run, in total and by component.

    Parameters
    ----------
    counters : mapping of str to int
        ``Simulator.counters()`` (missing keys count as zero).
    tlb_stats : mapping of str to int or None
        :func:`fastfault.tlb.model.tlb_stats` of the run's TLB; ``None`` or empty without a TLB model.
    preset : str or CostModel
        A :data:`COST_PRESETS` name or a model from :func:`cost_model`.

    Returns
    -------
    dict
        ``total`` (cycles, float), ``total_ns`` (at the model's ``ghz``), ``model`` (its name), and
        one entry per component with its cycles (see the module docstring).

    Raises
    ------
    InputError
        Not mappings, a negative count, more access-flag faults than minor faults, or a bad model.
    """
    model = cost_model(preset)
    if not isinstance(counters, Mapping):
        raise InputError(f"counters: expected a mapping of counter names, got {type(counters).__name__}")
    tlb = {} if tlb_stats is None else tlb_stats
    if not isinstance(tlb, Mapping):
        raise InputError(f"tlb_stats: expected a mapping of counter names, got {type(tlb).__name__}")
    c = lambda k: _count(counters, k, "counters")  # noqa: E731
    t = lambda k: _count(tlb, k, "tlb_stats")  # noqa: E731
    if c("fault_af") > c("minflt"):
        raise InputError(f"counters.fault_af: {c('fault_af')} access-flag faults but only {c('minflt')} minor faults")
    events = {
        "minor_fault": c("minflt") - c("fault_af"),
        "major_fault": c("majflt"),
        "af_fault": c("fault_af"),
        "pte_set": c("ptes_installed"),
        "pmd_install": c("pmd_mapped"),
        "hw_young_set": c("old_to_young_hw"),
        "l1_tlb_hit": t("l1_hits"),
        "l2_tlb_hit": t("l2_hits"),
        "walk_pml4": t("walk_refs_pml4"),
        "walk_pdpt": t("walk_refs_pdpt"),
        "walk_pd": t("walk_refs_pd"),
        "walk_pt": t("walk_refs_pt"),
        "pwc_hit": t("pwc_hits_pml4e") + t("pwc_hits_pdpte") + t("pwc_hits_pde"),
    }
    costs = asdict(model)
    out: dict = {"model": model.name}
    total = 0.0
    for name, n in events.items():
        cycles = float(n) * float(costs[name])
        out[name] = cycles
        total += cycles
    out["total"] = total
    out["total_ns"] = total / model.ghz
    return out
